//! `opensandbox-volume translate`: golden outputs for every backend (the
//! binary on tests/data/translate/CASE.json, compared with CASE.cli and
//! CASE.api.json), every validation rule and its message, the CSV and shell
//! quoting of values with commas and quotes, and a round trip of the cli
//! form through a shell split and a CSV parse (as the docker CLI reads
//! `--mount`) back to the api form.
//!
//! `OSV_BLESS=1 cargo test --test local translate::` rewrites the golden files from
//! the current output; review the diff before committing it.

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

/// `translate --format FORMAT ARGS CASE.json`, which must succeed.
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
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        let mounts = translate_json(&entry(json!({"readOnly": yes})), &Options::default()).unwrap();
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
        // The API lets `a/./b` through; the plugin does not, in its words.
        (
            json!({"subPath": "a/./b"}),
            "volumes[0]: the plugin refuses this volume: option `subPath`=\"a/./b\" must be a relative path inside the volume (no leading `/`, no `.` or `..` components, no NUL), e.g. subPath=work/run1",
        ),
    ];
    for (fields, expected) in cases {
        assert_eq!(problems(&entry(fields)), expected);
    }
    // An empty subPath is the whole volume.
    let mounts = translate_json(&entry(json!({"subPath": ""})), &Options::default()).unwrap();
    assert!(mounts[0].options.iter().all(|(k, _)| k != "subPath"));
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
            json!({"claimName": "c".repeat(64)}),
            "volumes[0].pvc.claimName: PVC claim name 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc' exceeds maximum length of 63 characters.",
        ),
        (
            json!({"claimName": "My.Claim"}),
            "volumes[0].pvc.claimName: PVC claim name 'My.Claim' is not a valid Kubernetes resource name.",
        ),
        (
            json!({"claimName": "c", "createIfNotExists": "sometimes"}),
            "volumes[0].pvc.createIfNotExists: Input should be a valid boolean",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(problems(&backend("pvc", body)), expected);
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
            json!({"options": ["allow_other", "use_cache=/tmp"]}),
            "volumes[0]: the plugin refuses this volume: ossfs option `use_cache` in `options` is not supported; supported: allow_other, umask, uid, gid, ro, stat_cache_expire, attr_timeout",
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
