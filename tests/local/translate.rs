//! `opensandbox-volume translate`: golden outputs for every backend (the
//! binary on tests/data/translate/CASE.json, compared with CASE.cli and
//! CASE.api.json), every validation rule and its message, the CSV and shell
//! quoting of values with commas and quotes, and a round trip of the cli
//! form through a shell split and a CSV parse (as the docker CLI reads
//! `--mount`) back to the api form.
//!
//! Warnings (fields and ossfs options accepted without effect on Docker)
//! are compared with CASE.warnings, the standard error of a case that has
//! any. `OSV_BLESS=1 cargo test --test local translate::` rewrites the
//! golden files from the current output; review the diff before committing
//! it.

use opensandbox_volume::translate::{Error, Options, translate_json};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_opensandbox-volume");

/// Each golden case: tests/data/translate/NAME.json and its extra arguments.
const CASES: &[(&str, &[&str])] = &[
    ("host", &[]),
    ("pvc", &[]),
    ("ossfs", &[]),
    ("ossfs_profile", &[]),
    ("nfs", &[]),
    ("s3", &[]),
    (
        "request",
        &[
            "--driver",
            "opensandbox/volume:latest",
            "--name-prefix",
            "sandbox 42/",
        ],
    ),
    ("quoting", &[]),
    ("empty", &[]),
];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/translate")
}

/// Runs `translate ARGS` with `stdin` as standard input.
fn run(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("translate")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `translate --format FORMAT ARGS CASE.json`, which must succeed, with
/// the warnings of CASE.warnings (none when there is no such file).
fn translate_case(case: &str, format: &str, extra: &[&str]) -> String {
    let input = data_dir().join(format!("{case}.json"));
    let mut args = vec!["--format", format];
    args.extend_from_slice(extra);
    let input = input.to_str().unwrap();
    args.push(input);
    let out = run(&args, "");
    assert!(
        out.status.success(),
        "translate {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings = String::from_utf8(out.stderr).unwrap();
    let file = format!("{case}.warnings");
    if !warnings.is_empty() || data_dir().join(&file).exists() {
        check_golden(&file, &warnings);
    }
    String::from_utf8(out.stdout).unwrap()
}

fn check_golden(file: &str, actual: &str) {
    let path = data_dir().join(file);
    if std::env::var_os("OSV_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path:?}: {e} (OSV_BLESS=1 writes it)"));
    assert_eq!(actual, expected, "{file} differs from the golden file");
}

#[test]
fn golden_outputs_of_every_backend() {
    for (case, extra) in CASES {
        check_golden(&format!("{case}.cli"), &translate_case(case, "cli", extra));
        check_golden(
            &format!("{case}.api.json"),
            &translate_case(case, "api", extra),
        );
    }
}

#[test]
fn stdin_and_dash_read_standard_input() {
    let text = std::fs::read_to_string(data_dir().join("host.json")).unwrap();
    let expected = translate_case("host", "cli", &[]);
    for args in [&[][..], &["-"][..]] {
        let out = run(args, &text);
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    }
}

// ---------------------------------------------------------------------------
// Round trip: cli form → shell words → CSV fields (as docker's CLI parses
// `--mount`) → a HostConfig.Mounts element, equal to the api form.

/// Splits a line the way sh does for what `render_cli` prints: words
/// separated by blanks, single quotes, and `\'` outside quotes.
fn shell_split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => panic!("unclosed single quote in {line:?}"),
                    }
                }
            }
            '\\' => word
                .get_or_insert_with(String::new)
                .push(chars.next().expect("a character after \\")),
            '"' | '$' | '`' | ';' | '&' | '|' | '<' | '>' | '(' | ')' | '*' | '?' => {
                panic!("unquoted shell metacharacter {c:?} in {line:?}")
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// One CSV record as Go's encoding/csv reads it (the docker CLI's parser
/// of `--mount`): fields separated by commas; a field starting with `"` is
/// quoted, `""` inside it being one `"`; a `"` in an unquoted field is an
/// error ("bare \" in non-quoted field").
fn go_csv_record(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut field = String::new();
            let mut chars = quoted.char_indices();
            let after = loop {
                match chars.next() {
                    Some((i, '"')) => {
                        if quoted[i + 1..].starts_with('"') {
                            field.push('"');
                            chars.next();
                        } else {
                            break &quoted[i + 1..];
                        }
                    }
                    Some((_, c)) => field.push(c),
                    None => panic!("unclosed quoted field in {line:?}"),
                }
            };
            fields.push(field);
            match after.strip_prefix(',') {
                Some(next) => rest = next,
                None if after.is_empty() => return fields,
                None => panic!("extraneous \" in field of {line:?}"),
            }
        } else {
            let (field, next) = match rest.split_once(',') {
                Some((f, n)) => (f, Some(n)),
                None => (rest, None),
            };
            assert!(
                !field.contains('"'),
                "bare \" in non-quoted field of {line:?}"
            );
            fields.push(field.to_string());
            match next {
                Some(n) => rest = n,
                None => return fields,
            }
        }
    }
}

/// A `--mount` value → a HostConfig.Mounts element, with the docker CLI's
/// rules for the fields translate prints.
fn parse_mount(value: &str) -> Value {
    let mut mount = json!({"Type": "", "Source": "", "Target": "", "ReadOnly": false});
    let mut driver = String::new();
    let mut options = serde_json::Map::new();
    for field in go_csv_record(value) {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        match (key.as_str(), val) {
            ("type", Some(v)) => mount["Type"] = json!(v),
            ("src" | "source", Some(v)) => mount["Source"] = json!(v),
            ("dst" | "destination" | "target", Some(v)) => mount["Target"] = json!(v),
            ("readonly" | "ro", None) => mount["ReadOnly"] = json!(true),
            ("volume-driver", Some(v)) => driver = v,
            ("volume-opt", Some(v)) => {
                let (k, v) = v.split_once('=').expect("volume-opt=KEY=VALUE");
                assert!(
                    options.insert(k.to_string(), json!(v)).is_none(),
                    "option {k} twice in {value:?}"
                );
            }
            (k, v) => panic!("unexpected --mount field {k}={v:?} in {value:?}"),
        }
    }
    mount["VolumeOptions"] = json!({"DriverConfig": {"Name": driver, "Options": options}});
    mount
}

#[test]
fn cli_form_parses_back_to_the_api_form() {
    for (case, extra) in CASES {
        let cli = translate_case(case, "cli", extra);
        let api: Value = serde_json::from_str(&translate_case(case, "api", extra)).unwrap();
        let words = shell_split(&cli);
        assert_eq!(words.len() % 2, 0, "{case}: {words:?}");
        let mut parsed = Vec::new();
        for pair in words.chunks(2) {
            assert_eq!(pair[0], "--mount", "{case}");
            parsed.push(parse_mount(&pair[1]));
        }
        assert_eq!(
            Value::Array(parsed),
            api,
            "{case}: cli and api forms differ"
        );

        // The argv form holds the same words.
        let argv: Vec<String> = serde_json::from_str(&translate_case(case, "argv", extra)).unwrap();
        assert_eq!(argv, words, "{case}: argv and cli forms differ");
    }
}

#[test]
fn commas_and_quotes_are_quoted_for_csv_and_shell() {
    let cli = translate_case("quoting", "cli", &[]);
    let words = shell_split(&cli);
    // Shell level: the apostrophes survive.
    assert!(words[1].contains("'d'"), "{words:?}");
    // CSV level: fields with a comma or a quote are in double quotes, with
    // the quotes doubled; the others are not quoted.
    assert!(
        words[1].starts_with(r#"type=volume,"dst=/mnt/a,b ""c"" 'd'","#),
        "{}",
        words[1]
    );
    assert!(words[3].contains(r#","volume-opt=options=allow_other,umask=0022,uid=1000","#));
    assert!(words[3].contains(",volume-opt=bucket=my-bucket,"));
    let api: Value = serde_json::from_str(&translate_case("quoting", "api", &[])).unwrap();
    assert_eq!(api[0]["Target"], r#"/mnt/a,b "c" 'd'"#);
    assert_eq!(
        api[0]["VolumeOptions"]["DriverConfig"]["Options"]["path"],
        r#"/srv/sandboxes/it's, "quoted""#
    );
    assert_eq!(
        api[1]["VolumeOptions"]["DriverConfig"]["Options"]["accessKeySecret"],
        r#"SEC,RET"'EXAMPLE"#
    );
}

#[test]
fn volume_options_and_mount_fields() {
    let api: Value = serde_json::from_str(&translate_case(
        "request",
        "api",
        &[
            "--driver",
            "opensandbox/volume:latest",
            "--name-prefix",
            "sandbox 42/",
        ],
    ))
    .unwrap();
    // Named volumes: the prefix sanitised, then the entry's name.
    let sources: Vec<&str> = api
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        ["sandbox-42-workdir", "sandbox-42-data", "sandbox-42-models"]
    );
    for m in api.as_array().unwrap() {
        assert_eq!(m["Type"], "volume");
        assert_eq!(
            m["VolumeOptions"]["DriverConfig"]["Name"],
            "opensandbox/volume:latest"
        );
    }
    // readOnly: the mount's flag and the plugin's option; false leaves both out.
    assert_eq!(api[2]["ReadOnly"], true);
    assert_eq!(
        api[2]["VolumeOptions"]["DriverConfig"]["Options"],
        json!({"type": "pvc", "claimName": "shared-models", "readOnly": "true"})
    );
    assert_eq!(api[1]["ReadOnly"], false);
    assert!(
        api[1]["VolumeOptions"]["DriverConfig"]["Options"]
            .get("readOnly")
            .is_none()
    );

    // Anonymous by default: no src, an empty Source, and never a read-only
    // mount (Docker refuses one); the plugin option keeps it read-only.
    let api: Value = serde_json::from_str(&translate_case("request", "api", &[])).unwrap();
    assert!(api.as_array().unwrap().iter().all(|m| m["Source"] == ""));
    assert_eq!(api[2]["ReadOnly"], false);
    assert_eq!(
        api[2]["VolumeOptions"]["DriverConfig"]["Options"]["readOnly"],
        "true"
    );
    assert!(!translate_case("request", "cli", &[]).contains(",readonly,"));
    assert!(!translate_case("request", "cli", &[]).contains("src="));
    assert!(translate_case("request", "cli", &[]).contains("volume-driver=opensandbox,"));
}

// ---------------------------------------------------------------------------
// Validation: every rule, with its message.

/// The problems `input` gets, one `path: message` per line.
fn problems_with(input: &str, options: &Options) -> String {
    match translate_json(input, options) {
        Ok(mounts) => panic!("expected problems with {input}, got {mounts:?}"),
        Err(Error::Input(sentence)) => panic!("expected problems, got {sentence:?}"),
        Err(e @ Error::Invalid(_)) => e.to_string(),
    }
}

fn problems(input: &str) -> String {
    problems_with(input, &Options::default())
}

/// A `volumes` list with one entry: `fields` merged over a valid host volume.
fn entry(fields: Value) -> String {
    let mut v = json!({"name": "work", "mountPath": "/mnt/work", "host": {"path": "/srv/a"}});
    for (k, val) in fields.as_object().unwrap() {
        v[k] = val.clone();
    }
    json!({ "volumes": [v] }).to_string()
}

/// A `volumes` list with one entry of `backend` set to `body`.
fn backend(name: &str, body: Value) -> String {
    json!({"volumes": [{"name": "v", "mountPath": "/mnt/v", name: body}]}).to_string()
}

fn ossfs(fields: Value) -> String {
    let mut body = json!({
        "bucket": "my-bucket",
        "endpoint": "oss-cn-hangzhou.aliyuncs.com",
        "accessKeyId": "AKIDEXAMPLE",
        "accessKeySecret": "SECRETEXAMPLE"
    });
    for (k, val) in fields.as_object().unwrap() {
        if val.is_null() {
            body.as_object_mut().unwrap().remove(k);
        } else {
            body[k] = val.clone();
        }
    }
    backend("ossfs", body)
}

#[test]
fn volume_name_rules() {
    let cases = [
        (
            json!({"name": null}),
            "volumes[0].name: Input should be a valid string",
        ),
        (
            json!({"name": 7}),
            "volumes[0].name: Input should be a valid string",
        ),
        (
            json!({"name": ""}),
            "volumes[0].name: Volume name cannot be empty.",
        ),
        (
            json!({"name": "a".repeat(64)}),
            "volumes[0].name: Volume name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' exceeds maximum length of 63 characters.",
        ),
        (
            json!({"name": "Work_1"}),
            "volumes[0].name: Volume name 'Work_1' is not a valid DNS label. Must be lowercase alphanumeric with optional hyphens.",
        ),
        (
            json!({"name": "-work"}),
            "volumes[0].name: Volume name '-work' is not a valid DNS label. Must be lowercase alphanumeric with optional hyphens.",
        ),
    ];
    for (fields, expected) in cases {
        assert_eq!(problems(&entry(fields)), expected);
    }
    let missing = json!({"volumes": [{"mountPath": "/m", "host": {"path": "/srv/a"}}]});
    assert_eq!(
        problems(&missing.to_string()),
        "volumes[0].name: Field required"
    );
    // 63 characters is fine.
    assert!(translate_json(&entry(json!({"name": "a".repeat(63)})), &Options::default()).is_ok());
}

#[test]
fn names_and_mount_paths_are_unique() {
    let input = json!({"volumes": [
        {"name": "a", "mountPath": "/mnt/x", "host": {"path": "/srv/a"}},
        {"name": "a", "mountPath": "/mnt/y", "host": {"path": "/srv/b"}},
        {"name": "c", "mountPath": "/mnt/x/", "host": {"path": "/srv/c"}},
        {"name": "d", "mountPath": "/mnt//y", "host": {"path": "/srv/d"}},
    ]});
    assert_eq!(
        problems(&input.to_string()),
        "volumes[1].name: Duplicate volume name 'a'. Each volume must have a unique name.\n\
         volumes[2].mountPath: Duplicate mount path '/mnt/x/' (volumes[0] mounts there too). Each volume must have a unique mountPath.\n\
         volumes[3].mountPath: Duplicate mount path '/mnt//y' (volumes[1] mounts there too). Each volume must have a unique mountPath."
    );
}

#[test]
fn mount_path_rules() {
    let cases = [
        (
            json!({"mountPath": ""}),
            "volumes[0].mountPath: Mount path cannot be empty.",
        ),
        (
            json!({"mountPath": "mnt/work"}),
            "volumes[0].mountPath: Mount path 'mnt/work' must be an absolute path starting with '/'.",
        ),
        (
            json!({"mountPath": "//"}),
            "volumes[0].mountPath: Mount path '//' is the container's root directory; mount the volume on a directory under it.",
        ),
        (
            json!({"mountPath": ["/m"]}),
            "volumes[0].mountPath: Input should be a valid string",
        ),
    ];
    for (fields, expected) in cases {
        assert_eq!(problems(&entry(fields)), expected);
    }
    let missing = json!({"volumes": [{"name": "w", "host": {"path": "/srv/a"}}]});
    assert_eq!(
        problems(&missing.to_string()),
        "volumes[0].mountPath: Field required"
    );
}

#[test]
fn read_only_and_sub_path_rules() {
    assert_eq!(
        problems(&entry(json!({"readOnly": "maybe"}))),
        "volumes[0].readOnly: Input should be a valid boolean"
    );
    // What the API's (lax) boolean accepts is accepted.
    for yes in [json!(true), json!("true"), json!("yes"), json!(1)] {
        let mounts = translate_json(&entry(json!({"readOnly": yes})), &Options::default())
            .unwrap()
            .mounts;
        let read_only = ("readOnly".to_string(), "true".to_string());
        assert!(mounts[0].options.contains(&read_only));
        // Docker refuses a read-only anonymous volume: the plugin's own
        // mount is what is read-only.
        assert!(!mounts[0].read_only);
    }
    let cases = [
        (
            json!({"subPath": "/abs"}),
            "volumes[0].subPath: SubPath '/abs' must be a relative path, not absolute.",
        ),
        (
            json!({"subPath": "a/../../b"}),
            "volumes[0].subPath: SubPath 'a/../../b' contains path traversal '..' which is not allowed.",
        ),
        (
            json!({"subPath": ".."}),
            "volumes[0].subPath: SubPath '..' contains path traversal '..' which is not allowed.",
        ),
        (
            json!({"subPath": 1}),
            "volumes[0].subPath: Input should be a valid string",
        ),
        // The API lets a component of 256 bytes through; the plugin does
        // not, in its words.
        (
            json!({"subPath": format!("a/{}", "x".repeat(256))}),
            &format!(
                "volumes[0]: the plugin refuses this volume: option `subPath`=\"a/{}\" must be a relative path inside the volume (no leading `/`, no `..` components, no NUL, components of at most 255 bytes), e.g. subPath=work/run1",
                "x".repeat(256)
            ),
        ),
    ];
    for (fields, expected) in cases {
        assert_eq!(problems(&entry(fields)), expected);
    }
    // An empty subPath is the whole volume.
    let mounts = translate_json(&entry(json!({"subPath": ""})), &Options::default())
        .unwrap()
        .mounts;
    assert!(mounts[0].options.iter().all(|(k, _)| k != "subPath"));
    // What the API accepts and the plugin normalises (`a/./b`, `a//b`) is
    // passed on as given, without a warning.
    for sub in ["a/./b", "a//b", "./a/", "."] {
        let t = translate_json(&entry(json!({"subPath": sub})), &Options::default()).unwrap();
        let option = ("subPath".to_string(), sub.to_string());
        assert!(t.mounts[0].options.contains(&option), "{sub}");
        assert!(t.warnings.is_empty(), "{sub}: {:?}", t.warnings);
    }
}

#[test]
fn exactly_one_backend() {
    let none = json!({"volumes": [{"name": "w", "mountPath": "/m", "host": null}]});
    assert_eq!(
        problems(&none.to_string()),
        "volumes[0]: Volume 'w' must specify exactly one backend (host, pvc, ossfs, nfs, s3), but none was provided."
    );
    let two = entry(json!({"pvc": {"claimName": "c"}}));
    assert_eq!(
        problems(&two),
        "volumes[0]: Volume 'work' must specify exactly one backend (host, pvc, ossfs, nfs, s3), but multiple were provided."
    );
    assert_eq!(
        problems(&entry(json!({"host": "/srv/a"}))),
        "volumes[0].host: Input should be a valid dictionary or instance of Host"
    );
}

#[test]
fn unknown_fields_are_refused() {
    // A misspelt `readonly` silently ignored would make a volume writable.
    assert_eq!(
        problems(&entry(json!({"readonly": true}))),
        "volumes[0].readonly: Extra inputs are not permitted"
    );
    assert_eq!(
        problems(&entry(json!({"host": {"path": "/srv/a", "type": "dir"}}))),
        "volumes[0].host.type: Extra inputs are not permitted"
    );
}

#[test]
fn host_path_rules() {
    let cases = [
        (json!({}), "volumes[0].host.path: Field required"),
        (
            json!({"path": ""}),
            "volumes[0].host.path: Host path cannot be empty.",
        ),
        (
            json!({"path": "srv/a"}),
            "volumes[0].host.path: Host path 'srv/a' must be an absolute path starting with '/'.",
        ),
        (
            json!({"path": "C:\\data"}),
            "volumes[0].host.path: Host path 'C:\\data' must be an absolute path starting with '/'.",
        ),
        (
            json!({"path": "/srv/../etc"}),
            "volumes[0].host.path: Host path '/srv/../etc' contains path traversal component '..'.",
        ),
        (
            json!({"path": "/srv//a"}),
            "volumes[0].host.path: Host path '/srv//a' is not normalized. Remove redundant slashes.",
        ),
        (
            json!({"path": "/srv/a/"}),
            "volumes[0].host.path: Host path '/srv/a/' is not normalized. Remove redundant slashes.",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(problems(&backend("host", body)), expected);
    }
}

#[test]
fn host_paths_outside_the_allowed_prefixes_are_refused() {
    let options = Options {
        allowed_host_paths: Some(vec!["/srv/sandboxes".into(), "/data/shared/".into()]),
        ..Options::default()
    };
    for ok in ["/srv/sandboxes", "/srv/sandboxes/a/b", "/data/shared/x"] {
        let input = backend("host", json!({"path": ok}));
        assert!(translate_json(&input, &options).is_ok(), "{ok}");
    }
    for bad in ["/srv/sandboxes2", "/srv", "/etc"] {
        assert_eq!(
            problems_with(&backend("host", json!({"path": bad})), &options),
            format!(
                "volumes[0].host.path: Host path '{bad}' is not under any allowed prefix. \
                 Allowed prefixes: ['/srv/sandboxes', '/data/shared/']"
            )
        );
    }
}

#[test]
fn pvc_rules() {
    let cases = [
        (json!({}), "volumes[0].pvc.claimName: Field required"),
        (
            json!({"claimName": " "}),
            "volumes[0].pvc.claimName: PVC claim name cannot be empty.",
        ),
        (
            json!({"claimName": "c".repeat(254)}),
            &format!(
                "volumes[0].pvc.claimName: PVC claim name '{}' exceeds maximum length of 253 characters.",
                "c".repeat(254)
            ),
        ),
        (
            json!({"claimName": "My.Claim"}),
            "volumes[0].pvc.claimName: PVC claim name 'My.Claim' is not a valid Kubernetes resource name.",
        ),
        (
            json!({"claimName": "my.claim"}),
            "volumes[0].pvc.claimName: PVC claim name 'my.claim' is not a valid Kubernetes resource name.",
        ),
        (
            json!({"claimName": "c", "createIfNotExists": "sometimes"}),
            "volumes[0].pvc.createIfNotExists: Input should be a valid boolean",
        ),
        (
            json!({"claimName": "c", "deleteOnSandboxTermination": []}),
            "volumes[0].pvc.deleteOnSandboxTermination: Input should be a valid boolean",
        ),
        (
            json!({"claimName": "c", "storage": "10G"}),
            r"volumes[0].pvc.storage: String should match pattern '^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei)?$'",
        ),
        (
            json!({"claimName": "c", "accessModes": "ReadWriteOnce"}),
            "volumes[0].pvc.accessModes: Input should be a valid list",
        ),
        (
            json!({"claimName": "c", "storageclass": "x"}),
            "volumes[0].pvc.storageclass: Extra inputs are not permitted",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(problems(&backend("pvc", body)), expected);
    }
    // The server's limit is 253 characters; every one of them is passed on.
    let long = "c".repeat(253);
    let t = translate_json(
        &backend("pvc", json!({"claimName": long})),
        &Options::default(),
    )
    .unwrap();
    assert!(
        t.mounts[0]
            .options
            .contains(&("claimName".to_string(), long.clone()))
    );
}

/// `createIfNotExists` and `deleteOnSandboxTermination` become the
/// plugin's options; `storageClass`, `storage` and `accessModes`, which have
/// no meaning on Docker, are dropped with a warning each.
#[test]
fn pvc_lifecycle_fields_pass_on_and_provisioning_hints_warn() {
    let input = backend(
        "pvc",
        json!({"claimName": "team-data", "createIfNotExists": false,
               "deleteOnSandboxTermination": "yes", "storageClass": "standard",
               "storage": "1.5Gi", "accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}),
    );
    let t = translate_json(&input, &Options::default()).unwrap();
    let options: Vec<(&str, &str)> = t.mounts[0]
        .options
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        options,
        [
            ("type", "pvc"),
            ("claimName", "team-data"),
            ("createIfNotExists", "false"),
            ("deleteOnSandboxTermination", "true"),
        ]
    );
    let warnings: Vec<String> = t.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "volumes[0].pvc.storageClass: Ignored on Docker: a missing claim is created as a volume of Docker's local driver, which has no storage classes.",
            "volumes[0].pvc.storage: Ignored on Docker: a volume of Docker's local driver has no size of its own; it can fill the disk it is on.",
            "volumes[0].pvc.accessModes: Ignored on Docker: every container on this host can mount the claim, read-write unless the volume is readOnly.",
        ]
    );
    // Without the hints, no warning; the lone-object form names the field
    // without `volumes[I].`.
    let plain = translate_json(
        &json!({"name": "v", "mountPath": "/v", "pvc": {"claimName": "c1", "storage": "1Gi"}})
            .to_string(),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(plain.warnings.len(), 1);
    assert_eq!(plain.warnings[0].path, "pvc.storage");
    let none = translate_json(
        &backend("pvc", json!({"claimName": "c1"})),
        &Options::default(),
    )
    .unwrap();
    assert!(none.warnings.is_empty());
    // The command prints them on standard error, prefixed, and succeeds.
    let out = run(&[], &input);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    assert!(
        stderr
            .lines()
            .all(|l| l.starts_with("warning: volumes[0].pvc.")),
        "{stderr}"
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("createIfNotExists=false")
    );
}

/// The options sandbox configurations carry today, per ossfs version:
/// mapped ones pass quietly, tuning without an objectfs setting passes with
/// a warning, an option of the other version is refused.
#[test]
fn ossfs_options_of_each_version_pass_with_warnings() {
    let v1 = ossfs(json!({"version": "1.0", "options": [
        "allow_other", "max_stat_cache_size=100000", "stat_cache_expire=10", "kernel_cache",
        "multipart_size=64", "parallel_count=20", "sigv4", "region=cn-hangzhou"]}));
    let t = translate_json(&v1, &Options::default()).unwrap();
    assert!(t.mounts[0].options.contains(&(
        "options".to_string(),
        "allow_other,max_stat_cache_size=100000,stat_cache_expire=10,kernel_cache,multipart_size=64,parallel_count=20,sigv4,region=cn-hangzhou".to_string()
    )));
    let warned: Vec<&str> = t
        .warnings
        .iter()
        .map(|w| {
            assert_eq!(w.path, "volumes[0].ossfs.options");
            w.message
                .strip_prefix("ossfs option `")
                .and_then(|m| m.split_once('`'))
                .map(|(item, rest)| {
                    assert!(rest.starts_with(" is accepted without effect: "), "{rest}");
                    item
                })
                .unwrap()
        })
        .collect();
    assert_eq!(
        warned,
        [
            "max_stat_cache_size=100000",
            "kernel_cache",
            "multipart_size=64",
            "parallel_count=20",
            "sigv4"
        ]
    );
    let v2 = ossfs(json!({"options": [
        "attr_timeout=30", "close_to_open=true", "upload_concurrency=64", "upload_buffer_size=8388608"]}));
    let t = translate_json(&v2, &Options::default()).unwrap();
    let warnings: Vec<String> = t.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert_eq!(
        warnings[0],
        "volumes[0].ossfs.options: ossfs option `close_to_open=true` is accepted without effect: objectfs revalidates a file at open once what it knows of it is older than `metadataTtl` (default 1 s); `metadataTtl=0` checks at every open."
    );
    for (fields, expected) in [
        (
            json!({"version": "1.0", "options": ["upload_concurrency=64"]}),
            "volumes[0]: the plugin refuses this volume: ossfs option `upload_concurrency` in `options` is an ossfs 2.0 option, and this volume is version=1.0; remove it or set version=2.0",
        ),
        (
            json!({"options": ["kernel_cache"]}),
            "volumes[0]: the plugin refuses this volume: ossfs option `kernel_cache` in `options` is an ossfs 1.0 option, and this volume is version=2.0; remove it or set version=1.0",
        ),
        (
            json!({"version": "1.0", "options": ["passwd_file=/etc/passwd-ossfs"]}),
            "volumes[0]: the plugin refuses this volume: ossfs option `passwd_file` in `options` is refused: give the keys as `accessKeyId` and `accessKeySecret`, or a credential profile as `credentials`",
        ),
    ] {
        assert_eq!(problems(&ossfs(fields)), expected);
    }
}

#[test]
fn ossfs_rules() {
    let cases = [
        (
            json!({"bucket": null}),
            "volumes[0].ossfs.bucket: Field required",
        ),
        (
            json!({"bucket": "  "}),
            "volumes[0].ossfs.bucket: OSSFS bucket cannot be empty.",
        ),
        (
            json!({"bucket": "ab"}),
            "volumes[0].ossfs.bucket: String should have at least 3 characters",
        ),
        (
            json!({"bucket": "b".repeat(64)}),
            "volumes[0].ossfs.bucket: String should have at most 63 characters",
        ),
        (
            json!({"endpoint": null}),
            "volumes[0].ossfs.endpoint: Field required",
        ),
        (
            json!({"endpoint": ""}),
            "volumes[0].ossfs.endpoint: OSSFS endpoint cannot be empty.",
        ),
        (
            json!({"version": "3.0"}),
            "volumes[0].ossfs.version: Input should be '1.0' or '2.0'",
        ),
        (
            json!({"version": 2}),
            "volumes[0].ossfs.version: Input should be a valid string",
        ),
        (
            json!({"options": "allow_other"}),
            "volumes[0].ossfs.options: Input should be a valid list",
        ),
        (
            json!({"options": ["allow_other", 5]}),
            "volumes[0].ossfs.options[1]: Input should be a valid string",
        ),
        (
            json!({"options": ["allow_other", " "]}),
            "volumes[0].ossfs.options: OSSFS options must be non-empty strings.",
        ),
        (
            json!({"options": ["-o allow_other"]}),
            "volumes[0].ossfs.options: OSSFS options must be raw option payloads without '-' prefix (e.g. 'allow_other', 'uid=1000').",
        ),
        (
            json!({"accessKeyId": null}),
            "volumes[0].ossfs: OSSFS inline credentials are required: accessKeyId and accessKeySecret must be provided.",
        ),
        (
            json!({"accessKeyId": null, "accessKeySecret": null}),
            "volumes[0].ossfs: OSSFS inline credentials are required: accessKeyId and accessKeySecret must be provided.",
        ),
        // What the plugin refuses, in its words.
        (
            json!({"bucket": "my.bucket"}),
            "volumes[0]: the plugin refuses this volume: option `bucket`=\"my.bucket\" is not an OSS bucket name; use 3–63 lowercase letters, digits and `-`, starting and ending with a letter or digit, e.g. bucket=my-bucket",
        ),
        (
            json!({"options": ["allow_other", "no_such_option=1"]}),
            "volumes[0]: the plugin refuses this volume: ossfs option `no_such_option` in `options` is not an ossfs 2.0 option this plugin knows; remove it, or use one it maps or accepts: allow_other, ro, uid, gid, umask, attr_timeout, negative_timeout, oss_negative_cache_timeout, oss_region, close_to_open, readdirplus, upload_buffer_size, upload_concurrency, log_level, log_dir, log_file_max_size, log_file_max_count, f, d",
        ),
        (
            json!({"credentials": "team-a"}),
            "volumes[0]: the plugin refuses this volume: option `credentials` cannot be combined with `accessKeyId`, `accessKeySecret`; give either a credential profile name or the keys",
        ),
    ];
    for (fields, expected) in cases {
        assert_eq!(problems(&ossfs(fields)), expected);
    }
    // A credential profile stands in for the inline keys.
    let profile =
        ossfs(json!({"accessKeyId": null, "accessKeySecret": null, "credentials": "team-a"}));
    assert!(translate_json(&profile, &Options::default()).is_ok());
}

#[test]
fn nfs_rules() {
    let ok = json!({"server": "nfs.example.com", "path": "/exports/a"});
    let with = |fields: Value| {
        let mut body = ok.clone();
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        backend("nfs", body)
    };
    let cases = [
        (
            json!({"server": ""}),
            "volumes[0].nfs.server: NFS server cannot be empty.",
        ),
        (
            json!({"server": "nfs server"}),
            "volumes[0].nfs.server: NFS server 'nfs server' is not a valid hostname or IP address (an IPv6 address goes in brackets, e.g. [fd00::1]).",
        ),
        (
            json!({"path": ""}),
            "volumes[0].nfs.path: NFS path cannot be empty.",
        ),
        (
            json!({"path": "exports/a"}),
            "volumes[0].nfs.path: NFS path 'exports/a' must be an absolute path starting with '/'.",
        ),
        (
            json!({"options": ["hard", ""]}),
            "volumes[0].nfs.options: NFS options must be non-empty strings.",
        ),
        (
            json!({"options": 4.1}),
            "volumes[0].nfs.options: Input should be a valid list",
        ),
    ];
    for (fields, expected) in cases {
        assert_eq!(problems(&with(fields)), expected);
    }
    assert_eq!(
        problems(&backend("nfs", json!({"path": "/x"}))),
        "volumes[0].nfs.server: Field required"
    );
    assert_eq!(
        problems(&with(json!({"server": "fd00::1"}))),
        "volumes[0].nfs.server: NFS server 'fd00::1' is not a valid hostname or IP address (an IPv6 address goes in brackets, e.g. [fd00::1])."
    );
    // Mount options and paths the plugin refuses, in its words.
    for (fields, named) in [
        (json!({"options": "nfsvers=4.1,fsc"}), "`fsc`"),
        (json!({"path": "/exports//a"}), "/exports//a"),
    ] {
        let text = problems(&with(fields));
        assert!(
            text.starts_with("volumes[0]: the plugin refuses this volume: ")
                && text.contains(named),
            "{text}"
        );
    }
    for server in ["10.1.2.3", "[fd00::1]", "nfs-1.internal"] {
        assert!(
            translate_json(&with(json!({"server": server})), &Options::default()).is_ok(),
            "{server}"
        );
    }
}

#[test]
fn s3_rules() {
    let cases = [
        (json!({}), "volumes[0].s3.bucket: Field required"),
        (
            json!({"bucket": ""}),
            "volumes[0].s3.bucket: S3 bucket cannot be empty.",
        ),
        (
            json!({"bucket": "b", "pathStyle": "sometimes"}),
            "volumes[0].s3.pathStyle: Input should be a valid boolean",
        ),
        (
            json!({"bucket": "bkt", "metadataTtl": "1s"}),
            "volumes[0].s3.metadataTtl: Input should be a valid number",
        ),
        (
            json!({"bucket": "bkt", "cacheSize": 1073741824}),
            "volumes[0].s3.cacheSize: Input should be a valid string",
        ),
        (
            json!({"bucket": "bkt", "uid": 1.5}),
            "volumes[0].s3.uid: Input should be a valid integer",
        ),
        (
            json!({"bucket": "Bad_Bucket"}),
            "volumes[0]: the plugin refuses this volume: option `bucket`=\"Bad_Bucket\" is not an S3 bucket name; use 3–63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit, without `..` and not shaped like an IP address, e.g. bucket=my-bucket",
        ),
        (
            json!({"bucket": "bkt", "uid": -1}),
            "volumes[0]: the plugin refuses this volume: option `uid`=\"-1\" must be a numeric user id, e.g. uid=1000",
        ),
        (
            json!({"bucket": "bkt", "upload": "later"}),
            "volumes[0]: the plugin refuses this volume: option `upload`=\"later\" must be async or sync",
        ),
        (
            json!({"bucket": "bkt", "cacheSize": "10MiB"}),
            "volumes[0]: the plugin refuses this volume: option `cacheSize`=\"10MiB\" must be a size of at least 64MiB: a number of bytes, or a whole number with KiB, MiB, GiB or TiB (powers of 1024) or KB, MB, GB or TB (powers of 1000), e.g. cacheSize=2GiB",
        ),
        (
            json!({"bucket": "bkt", "version": "2.0"}),
            "volumes[0].s3.version: Extra inputs are not permitted",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(problems(&backend("s3", body)), expected);
    }
}

#[test]
fn control_characters_are_refused_in_every_string() {
    assert_eq!(
        problems(&entry(json!({"mountPath": "/mnt/a\nb"}))),
        "volumes[0].mountPath: Value must not contain control characters (such as a line break)."
    );
    assert_eq!(
        problems(&ossfs(json!({"options": ["allow_other", "uid=1\r"]}))),
        "volumes[0].ossfs.options[1]: Value must not contain control characters (such as a line break)."
    );
}

#[test]
fn secrets_never_appear_in_problems() {
    const SECRET: &str = "sEcReT-zz-never-shown";
    for body in [
        ossfs(json!({"accessKeySecret": format!("{SECRET} ")})),
        ossfs(json!({"accessKeySecret": format!("{SECRET}\n")})),
        ossfs(json!({"accessKeySecret": SECRET, "credentials": "team-a"})),
        backend("s3", json!({"bucket": "bkt", "accessKeyId": SECRET})),
    ] {
        let text = problems(&body);
        assert!(!text.contains(SECRET), "{text}");
    }
}

#[test]
fn every_problem_is_reported_in_entry_order() {
    let input = json!({"volumes": [
        {"name": "Bad", "mountPath": "rel", "subPath": "/abs", "host": {"path": "/a"}, "pvc": {"claimName": "c"}},
        {"name": "ok", "mountPath": "/ok", "ossfs": {"bucket": "ab", "endpoint": ""}, "extra": 1},
        5,
        {"name": "ok", "mountPath": "/ok/", "s3": {"bucket": "bkt"}},
    ]});
    assert_eq!(
        problems(&input.to_string()),
        "volumes[0].name: Volume name 'Bad' is not a valid DNS label. Must be lowercase alphanumeric with optional hyphens.\n\
         volumes[0].mountPath: Mount path 'rel' must be an absolute path starting with '/'.\n\
         volumes[0].subPath: SubPath '/abs' must be a relative path, not absolute.\n\
         volumes[0]: Volume 'Bad' must specify exactly one backend (host, pvc, ossfs, nfs, s3), but multiple were provided.\n\
         volumes[1].extra: Extra inputs are not permitted\n\
         volumes[1].ossfs.bucket: String should have at least 3 characters\n\
         volumes[1].ossfs.endpoint: OSSFS endpoint cannot be empty.\n\
         volumes[1].ossfs: OSSFS inline credentials are required: accessKeyId and accessKeySecret must be provided.\n\
         volumes[2]: Input should be a valid dictionary or instance of Volume\n\
         volumes[3].name: Duplicate volume name 'ok'. Each volume must have a unique name.\n\
         volumes[3].mountPath: Duplicate mount path '/ok/' (volumes[1] mounts there too). Each volume must have a unique mountPath."
    );
}

#[test]
fn a_lone_object_has_paths_without_an_index() {
    let input = json!({"name": "w", "mountPath": "m", "host": {"path": "/srv/a"}, "pvc": {"claimName": "c"}});
    assert_eq!(
        problems(&input.to_string()),
        "mountPath: Mount path 'm' must be an absolute path starting with '/'.\n\
         volume: Volume 'w' must specify exactly one backend (host, pvc, ossfs, nfs, s3), but multiple were provided."
    );
}

#[test]
fn shapes_that_are_not_volumes() {
    let input = |text: &str| match translate_json(text, &Options::default()) {
        Err(Error::Input(sentence)) => sentence,
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(
        input("{\"volumes\": [}"),
        "The input is not valid JSON (expected value at line 1 column 14); give one volume \
         object, a list of them, or an object with a `volumes` list."
    );
    assert_eq!(
        input("\"/mnt/work\""),
        "The input is a string, not a volume; give one volume object, a list of them, or an \
         object with a `volumes` list."
    );
    assert_eq!(
        problems("{\"volumes\": {\"name\": \"w\"}}"),
        "volumes: Input should be a valid list"
    );
    for empty in ["[]", "{\"volumes\": []}", "{\"volumes\": null}"] {
        assert!(
            translate_json(empty, &Options::default())
                .unwrap()
                .mounts
                .is_empty()
        );
    }
}

#[test]
fn exit_status_and_stderr_of_the_command() {
    let bad = entry(json!({"mountPath": "rel", "subPath": "../x"}));
    let out = run(&[], &bad);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "volumes[0].mountPath: Mount path 'rel' must be an absolute path starting with '/'.\n\
         volumes[0].subPath: SubPath '../x' contains path traversal '..' which is not allowed.\n"
    );

    let out = run(&["--format", "api"], "not json");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("The input is not valid JSON ("),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = run(&["/nonexistent/volumes.json"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("opensandbox-volume translate: cannot read /nonexistent/volumes.json: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(
        &["--allowed-host-paths", "/srv/x,/srv/y"],
        &entry(json!({})),
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "volumes[0].host.path: Host path '/srv/a' is not under any allowed prefix. Allowed \
         prefixes: ['/srv/x', '/srv/y']\n"
    );
}
