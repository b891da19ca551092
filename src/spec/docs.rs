//! The option tables of docs/OPTIONS.md, rendered from the option table,
//! and the test that fails when the file says something else. Each table
//! sits between `<!-- options: GROUP -->` and `<!-- end options: GROUP -->`;
//! on failure the test prints the expected text of every table to paste.
//! Each refusal is the parser's own sentence for the row's example value.
//! The table of ossfs `options` is rendered from its own table
//! (`ossfs_options`) the same way.

use super::ossfs_options::{Effect, OSSFS_OPTIONS, Shape, Versions};
use super::table::{OPTIONS, Types, VolumeOption, VolumeType};
use serde_json::{Map, Value, json};

/// The docs' tables: a marker name and the types whose rows it holds
/// (empty: the common options).
const GROUPS: &[(&str, &[VolumeType])] = &[
    ("common", &[]),
    ("host", &[VolumeType::Host]),
    ("pvc", &[VolumeType::Pvc]),
    ("nfs", &[VolumeType::Nfs]),
    ("s3", &[VolumeType::S3]),
    ("ossfs", &[VolumeType::Ossfs]),
    ("s3+ossfs", &[VolumeType::Ossfs, VolumeType::S3]),
];

/// The types of a row, in table order (empty for the common options).
fn types_of(row: &VolumeOption) -> Vec<VolumeType> {
    match row.types {
        Types::Every => Vec::new(),
        Types::Only(on) => VolumeType::ALL
            .into_iter()
            .filter(|t| on.iter().any(|o| o.ty == *t))
            .collect(),
    }
}

/// A valid volume of `ty` with as few options as it needs.
fn minimal(ty: VolumeType) -> Map<String, Value> {
    let v = match ty {
        VolumeType::Host => json!({"type": "host", "path": "/srv/data"}),
        VolumeType::Pvc => json!({"type": "pvc", "claimName": "team-data"}),
        VolumeType::Nfs => {
            json!({"type": "nfs", "server": "nfs.example.com", "path": "/exports/team"})
        }
        VolumeType::S3 => json!({"type": "s3", "bucket": "my-bucket"}),
        VolumeType::Ossfs => json!({"type": "ossfs", "bucket": "my-bucket",
                                    "endpoint": "oss-cn-hangzhou.aliyuncs.com"}),
    };
    v.as_object().expect("an object").clone()
}

/// Markdown code for `text`, which may hold single backticks.
fn code(text: &str) -> String {
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("``{pad}{text}{pad}``")
}

/// The "refused when" cell: each example's error (for the row's first
/// type), then `more`.
fn refusals(row: &VolumeOption) -> String {
    let ty = match row.types {
        Types::Every => VolumeType::Host,
        Types::Only(on) => on[0].ty,
    };
    let mut parts: Vec<String> = Vec::new();
    for bad in row.bad {
        let mut opts = minimal(ty);
        match bad.value {
            None => opts.remove(row.name),
            Some(v) => opts.insert(row.name.to_string(), Value::String(v.to_string())),
        };
        let error = match super::parse_options(Some(&opts)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!(
                "{}={:?} is accepted for type={}",
                row.name,
                bad.value,
                ty.name()
            ),
        };
        parts.push(if bad.when.is_empty() {
            code(&error)
        } else {
            format!("{}: {}", bad.when, code(&error))
        });
    }
    if !row.more.is_empty() {
        parts.push(row.more.to_string());
    }
    parts.join("; ")
}

/// The Markdown table of one group.
fn render(types: &[VolumeType]) -> String {
    let mut out = String::from(
        "| option | values | default | refused when (the error says) |\n|---|---|---|---|\n",
    );
    for row in OPTIONS.iter().filter(|r| types_of(r) == types) {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            row.name,
            row.help,
            row.default,
            refusals(row)
        ));
    }
    out
}

fn start_marker(group: &str) -> String {
    format!("<!-- options: {group} (generated from src/spec/table.rs; see src/spec/docs.rs) -->\n")
}

fn end_marker(group: &str) -> String {
    format!("<!-- end options: {group} -->")
}

/// What the docs hold for `group`, if its markers are there.
fn block<'a>(doc: &'a str, group: &str) -> Option<&'a str> {
    let start = doc.find(&start_marker(group))? + start_marker(group).len();
    let end = start + doc[start..].find(&end_marker(group))?;
    Some(&doc[start..end])
}

/// The table of ossfs `options` (docs/OPTIONS.md, "ossfs `options`").
fn render_ossfs() -> String {
    let mut out = String::from(
        "| ossfs option | versions | value | what the plugin does |\n|---|---|---|---|\n",
    );
    for o in OSSFS_OPTIONS {
        let value = match (o.shape, o.versions) {
            (Shape::Flag, Versions::V1) => "none".to_string(),
            (Shape::Flag, Versions::V2) => "none, `true` or `false`".to_string(),
            (Shape::Flag, Versions::Both) => "none (2.0: also `true` or `false`)".to_string(),
            (Shape::Number(_, words), _) => words.to_string(),
            (Shape::Region, _) => "a region name, e.g. `cn-hangzhou`".to_string(),
            (Shape::Text, _) => "any (not used)".to_string(),
        };
        let effect = match o.effect {
            Effect::Sets(setting) => setting.words().to_string(),
            Effect::Ignored(why) => format!("accepted without effect: {why}"),
            Effect::Refused(instead) => format!("refused: {instead}"),
        };
        out.push_str(&format!(
            "| `{}` | {} | {value} | {effect} |\n",
            o.name,
            o.versions.label()
        ));
    }
    out
}

const OSSFS_START: &str =
    "<!-- ossfs options (generated from src/spec/ossfs_options.rs; see src/spec/docs.rs) -->\n";
const OSSFS_END: &str = "<!-- end ossfs options -->";

#[test]
fn docs_ossfs_options_table_agrees_with_the_ossfs_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPTIONS.md");
    let doc = std::fs::read_to_string(path).expect("docs/OPTIONS.md");
    let want = render_ossfs();
    let got = doc.find(OSSFS_START).and_then(|start| {
        let start = start + OSSFS_START.len();
        doc[start..]
            .find(OSSFS_END)
            .map(|end| &doc[start..start + end])
    });
    assert!(
        got == Some(want.as_str()),
        "docs/OPTIONS.md disagrees with src/spec/ossfs_options.rs; the table should read:\n\n{OSSFS_START}{want}{OSSFS_END}\n"
    );
}

#[test]
fn every_row_is_in_one_docs_table() {
    for row in OPTIONS {
        let types = types_of(row);
        assert!(
            GROUPS.iter().any(|(_, g)| *g == types.as_slice()),
            "{} ({types:?}) has no table in docs/OPTIONS.md",
            row.name
        );
    }
}

#[test]
fn docs_options_tables_agree_with_the_option_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/OPTIONS.md");
    let doc = std::fs::read_to_string(path).expect("docs/OPTIONS.md");
    let mut wrong = Vec::new();
    let mut expected = String::new();
    for (group, types) in GROUPS {
        let want = render(types);
        if block(&doc, group) != Some(want.as_str()) {
            wrong.push(*group);
        }
        expected.push_str(&format!(
            "{}{want}{}\n\n",
            start_marker(group),
            end_marker(group)
        ));
    }
    assert!(
        wrong.is_empty(),
        "docs/OPTIONS.md disagrees with src/spec/table.rs in the tables {wrong:?}; \
         the tables should read:\n\n{expected}"
    );
}
