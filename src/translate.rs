//! `opensandbox-volume translate`: OpenSandbox Lifecycle API volume entries →
//! what to pass to Docker, so the sandbox server's integration is a driver
//! name and options.
//!
//! Input is the API's own JSON: one `Volume` object, a list of them, or an
//! object with a `volumes` list (a whole `CreateSandboxRequest` will do; its
//! other fields are ignored). Each entry is checked with the API's rules
//! and, where the API words a rule, with its wording (from the OpenSandbox
//! server's `api/schema.py` models and `services/validators.py`; the rules it
//! does not word carry our sentence, listed in docs/SANDBOX_SERVER.md), then
//! with the plugin's own option parser ([`crate::spec`]), so a volume that
//! passes here is not refused by the plugin's Create for its options. Every
//! problem is reported, each prefixed with the JSON path of what it is
//! about (`volumes[1].mountPath: …`).
//!
//! Output is either `docker run` arguments (one `--mount` per volume,
//! CSV-quoted inside and shell-quoted outside), the Engine API's
//! `HostConfig.Mounts` array, or the arguments as a JSON array for an exec
//! without a shell.
//!
//! Everything but [`run_translate`] is pure (no I/O), so the server can link
//! this crate and call [`translate_json`] or [`translate`] instead.

use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;

/// The driver name of a legacy install (`scripts/install.sh`).
pub const DEFAULT_DRIVER: &str = "opensandbox";

/// The backends, in the order the messages list them.
const BACKEND_NAMES: &str = "host, pvc, ossfs, nfs, s3";

/// What `translate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `--mount '…'` arguments for `docker run`/`docker create`, shell-quoted, on one line.
    Cli,
    /// The Engine API's `HostConfig.Mounts` JSON array.
    Api,
    /// The same arguments as the cli format, as a JSON array of strings
    /// (for an exec without a shell).
    Argv,
}

#[derive(Debug, clap::Args)]
pub struct TranslateArgs {
    /// JSON file with one volume, a list of volumes or an object with
    /// `volumes` (a whole CreateSandboxRequest); `-` or nothing: standard input.
    pub input: Option<PathBuf>,

    /// Output: `cli` (`--mount` arguments), `api` (HostConfig.Mounts JSON)
    /// or `argv` (the cli arguments as a JSON array).
    #[arg(long, value_enum, default_value = "cli")]
    pub format: Format,

    /// The plugin's driver name: `opensandbox` for a legacy install, the
    /// plugin's name (e.g. `opensandbox/volume:latest`) for a managed one.
    #[arg(long, default_value = DEFAULT_DRIVER)]
    pub driver: String,

    /// Make named volumes PREFIX+NAME (for reuse across sandboxes) instead
    /// of anonymous ones, whose Docker record goes with the container.
    #[arg(long, value_name = "PREFIX")]
    pub name_prefix: Option<String>,

    /// Refuse `host` volumes outside these path prefixes (a lexical check,
    /// as the API server does; the plugin checks again with symlinks
    /// resolved).
    #[arg(long, value_name = "P1,P2", value_delimiter = ',')]
    pub allowed_host_paths: Option<Vec<String>>,
}

/// How volumes become Docker mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The volume driver (the plugin's name as Docker knows it).
    pub driver: String,
    /// `None`: anonymous volumes. `Some(prefix)`: named volumes
    /// `prefix + entry name`, sanitised to Docker's volume name characters.
    pub name_prefix: Option<String>,
    /// `Some`: `host.path` must be one of these or under one of them.
    pub allowed_host_paths: Option<Vec<String>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            driver: DEFAULT_DRIVER.to_string(),
            name_prefix: None,
            allowed_host_paths: None,
        }
    }
}

/// One thing wrong with the input: where (a JSON path such as
/// `volumes[1].ossfs.bucket`) and what, in one sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why input could not be translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not JSON, or JSON of the wrong shape: one sentence.
    Input(String),
    /// Volume entries that break the rules: every problem found.
    Invalid(Vec<Problem>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(sentence) => f.write_str(sentence),
            Error::Invalid(problems) => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

/// A Docker volume mount of the plugin's driver, as `docker run --mount`
/// and the Engine API's `HostConfig.Mounts` express it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerMount {
    /// The volume name; `None` for an anonymous volume.
    pub source: Option<String>,
    /// The entry's `mountPath`.
    pub target: String,
    /// The container mount's read-only flag: the entry's `readOnly` for a
    /// named volume; always false for an anonymous one, which Docker
    /// refuses to mount read-only ("must not set ReadOnly mode when using
    /// anonymous volumes"). Either way a read-only entry also gets the
    /// `readOnly=true` option, which makes the plugin's own mount
    /// read-only: writes fail with EROFS however the container mounts it.
    pub read_only: bool,
    pub driver: String,
    /// Volume options, in a fixed order: `type`, the backend's, `subPath`,
    /// `readOnly`.
    pub options: Vec<(String, String)>,
}

impl DockerMount {
    /// The value of `--mount`: Docker reads it as one CSV record, so each
    /// field that needs it is CSV-quoted (see [`csv_field`]).
    pub fn mount_value(&self) -> String {
        let mut fields = vec!["type=volume".to_string()];
        if let Some(source) = &self.source {
            fields.push(format!("src={source}"));
        }
        fields.push(format!("dst={}", self.target));
        if self.read_only {
            fields.push("readonly".to_string());
        }
        fields.push(format!("volume-driver={}", self.driver));
        for (key, value) in &self.options {
            fields.push(format!("volume-opt={key}={value}"));
        }
        fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One element of the Engine API's `HostConfig.Mounts`.
    pub fn to_api(&self) -> Value {
        let options: Map<String, Value> = self
            .options
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        json!({
            "Type": "volume",
            "Source": self.source.clone().unwrap_or_default(),
            "Target": self.target,
            "ReadOnly": self.read_only,
            "VolumeOptions": {
                "DriverConfig": {"Name": self.driver, "Options": options}
            }
        })
    }
}

/// Quotes one field of a CSV record the way Go's encoding/csv (which the
/// docker CLI uses for `--mount`) reads it back: in double quotes, with
/// each `"` doubled, when it holds a comma, a quote or a line break, or
/// starts or ends with white space (newer CLIs trim the whole value).
pub fn csv_field(field: &str) -> Cow<'_, str> {
    let needs = field.contains([',', '"', '\n', '\r'])
        || field.starts_with(char::is_whitespace)
        || field.ends_with(char::is_whitespace);
    if needs {
        Cow::Owned(format!("\"{}\"", field.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(field)
    }
}

/// One shell word: single quotes, each `'` written as `'\''`.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The arguments for `docker run`: `--mount VALUE` per volume.
pub fn cli_args(mounts: &[DockerMount]) -> Vec<String> {
    mounts
        .iter()
        .flat_map(|m| ["--mount".to_string(), m.mount_value()])
        .collect()
}

/// The cli format: `--mount '…' --mount '…'` and a newline (nothing for
/// no volumes), ready to paste after `docker run`.
pub fn render_cli(mounts: &[DockerMount]) -> String {
    if mounts.is_empty() {
        return String::new();
    }
    let words: Vec<String> = mounts
        .iter()
        .map(|m| format!("--mount {}", shell_quote(&m.mount_value())))
        .collect();
    format!("{}\n", words.join(" "))
}

/// The api format: the `HostConfig.Mounts` array, pretty-printed.
pub fn render_api(mounts: &[DockerMount]) -> String {
    let list: Vec<Value> = mounts.iter().map(DockerMount::to_api).collect();
    let mut text = serde_json::to_string_pretty(&Value::Array(list)).expect("JSON values print");
    text.push('\n');
    text
}

/// The argv format: [`cli_args`] as a JSON array.
pub fn render_argv(mounts: &[DockerMount]) -> String {
    let mut text = serde_json::to_string(&cli_args(mounts)).expect("strings print");
    text.push('\n');
    text
}

pub fn render(mounts: &[DockerMount], format: Format) -> String {
    match format {
        Format::Cli => render_cli(mounts),
        Format::Api => render_api(mounts),
        Format::Argv => render_argv(mounts),
    }
}

/// Parses `text` as JSON and translates it.
pub fn translate_json(text: &str, options: &Options) -> Result<Vec<DockerMount>, Error> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Error::Input(format!(
            "The input is not valid JSON ({e}); give one volume object, a list of them, \
             or an object with a `volumes` list."
        ))
    })?;
    translate(&value, options)
}

/// Translates parsed JSON: one volume object, a list of them, or an object
/// with `volumes`.
pub fn translate(value: &Value, options: &Options) -> Result<Vec<DockerMount>, Error> {
    let (entries, single): (Vec<&Value>, bool) = match value {
        Value::Array(list) => (list.iter().collect(), false),
        Value::Object(map) if map.contains_key("volumes") => match &map["volumes"] {
            Value::Array(list) => (list.iter().collect(), false),
            Value::Null => (Vec::new(), false),
            _ => {
                return Err(Error::Invalid(vec![Problem {
                    path: "volumes".into(),
                    message: "Input should be a valid list".into(),
                }]));
            }
        },
        Value::Object(_) => (vec![value], true),
        other => {
            return Err(Error::Input(format!(
                "The input is {}, not a volume; give one volume object, a list of them, \
                 or an object with a `volumes` list.",
                json_kind(other)
            )));
        }
    };
    let mut problems = Vec::new();
    let mut volumes = Vec::new();
    let mut seen = Seen::default();
    for (index, entry) in entries.iter().enumerate() {
        let at = Path::entry(index, single);
        volumes.extend(check_entry(entry, &at, options, &mut problems));
        seen.check(entry, index, &at, &mut problems);
    }
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    Ok(volumes.into_iter().map(|v| to_mount(v, options)).collect())
}

/// JSON paths of one entry and its fields.
struct Path {
    entry: String,
    /// Prefix of a field's path: `volumes[1].` or `` for a lone object.
    fields: String,
}

impl Path {
    fn entry(index: usize, single: bool) -> Path {
        if single {
            Path {
                entry: "volume".into(),
                fields: String::new(),
            }
        } else {
            Path {
                entry: format!("volumes[{index}]"),
                fields: format!("volumes[{index}]."),
            }
        }
    }
    fn field(&self, name: &str) -> String {
        format!("{}{name}", self.fields)
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A JSON field's expected type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    Number,
    Integer,
    StrList,
    /// A string, or a list of strings joined with commas.
    StrOrList,
}

/// What becomes of a field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Use {
    /// A volume option of the same name.
    Option,
    /// Accepted and type-checked, not passed on (the server's business).
    Ignored,
}

struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
    used: Use,
}

const fn req(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: true,
        used: Use::Option,
    }
}

const fn opt(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
        used: Use::Option,
    }
}

const fn ignored(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        required: false,
        used: Use::Ignored,
    }
}

/// A backend struct: its JSON key (also the plugin's `type`), the API's
/// model name (pydantic says "instance of Host") and its fields.
struct Backend {
    key: &'static str,
    model: &'static str,
    fields: &'static [Field],
}

const BACKENDS: &[Backend] = &[
    Backend {
        key: "host",
        model: "Host",
        fields: &[req("path", Kind::Str)],
    },
    Backend {
        key: "pvc",
        model: "PVC",
        fields: &[
            req("claimName", Kind::Str),
            // Provisioning hints of the API: the server's, not Docker's.
            ignored("createIfNotExists", Kind::Bool),
            ignored("deleteOnSandboxTermination", Kind::Bool),
            ignored("storageClass", Kind::Str),
            ignored("storage", Kind::Str),
            ignored("accessModes", Kind::StrList),
        ],
    },
    Backend {
        key: "ossfs",
        model: "OSSFS",
        fields: &[
            req("bucket", Kind::Str),
            req("endpoint", Kind::Str),
            // OSEP-0003's key prefix inside the bucket.
            opt("path", Kind::Str),
            opt("version", Kind::Str),
            opt("options", Kind::StrList),
            opt("accessKeyId", Kind::Str),
            opt("accessKeySecret", Kind::Str),
            // Ours: temporary keys, and a plugin-side credential profile.
            opt("sessionToken", Kind::Str),
            opt("credentials", Kind::Str),
        ],
    },
    Backend {
        key: "nfs",
        model: "NFS",
        fields: &[
            req("server", Kind::Str),
            req("path", Kind::Str),
            opt("options", Kind::StrOrList),
        ],
    },
    Backend {
        key: "s3",
        model: "S3",
        fields: &[
            req("bucket", Kind::Str),
            opt("endpoint", Kind::Str),
            opt("region", Kind::Str),
            opt("prefix", Kind::Str),
            opt("pathStyle", Kind::Bool),
            opt("accessKeyId", Kind::Str),
            opt("accessKeySecret", Kind::Str),
            opt("sessionToken", Kind::Str),
            opt("credentials", Kind::Str),
            opt("upload", Kind::Str),
            opt("metadataTtl", Kind::Number),
            opt("attrsFromListing", Kind::Bool),
            opt("uid", Kind::Integer),
            opt("gid", Kind::Integer),
            opt("umask", Kind::Str),
        ],
    },
];

const VOLUME_FIELDS: &[&str] = &["name", "mountPath", "readOnly", "subPath"];

/// A field's value, type-checked.
#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Bool(bool),
    /// A number's JSON text.
    Number(String),
    List(Vec<String>),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Str(s) | Val::Number(s) => s.clone(),
            Val::Bool(b) => b.to_string(),
            Val::List(items) => items.join(","),
        }
    }
}

/// A valid entry, ready to become a mount.
struct Checked {
    name: String,
    mount_path: String,
    read_only: bool,
    sub_path: Option<String>,
    backend: &'static str,
    /// Backend options in table order.
    options: Vec<(&'static str, String)>,
}

/// Type-checks `value` as `kind`, with pydantic's wording for a wrong type
/// (the API answers 422 with those). `None` when it is wrong.
fn typed(value: &Value, kind: Kind, path: &str, problems: &mut Vec<Problem>) -> Option<Val> {
    match (kind, value) {
        (Kind::Str | Kind::StrOrList, Value::String(s)) => text(s, path, problems).map(Val::Str),
        (Kind::Str, _) => refuse(problems, path, "Input should be a valid string"),
        (Kind::Bool, v) => match lax_bool(v) {
            Some(b) => Some(Val::Bool(b)),
            None => refuse(problems, path, "Input should be a valid boolean"),
        },
        (Kind::Number, Value::Number(n)) => Some(Val::Number(n.to_string())),
        (Kind::Number, _) => refuse(problems, path, "Input should be a valid number"),
        (Kind::Integer, Value::Number(n)) if n.is_u64() || n.is_i64() => {
            Some(Val::Number(n.to_string()))
        }
        (Kind::Integer, _) => refuse(problems, path, "Input should be a valid integer"),
        (Kind::StrList | Kind::StrOrList, Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let at = format!("{path}[{i}]");
                out.push(match item {
                    Value::String(s) => text(s, &at, problems),
                    _ => refuse(problems, &at, "Input should be a valid string"),
                });
            }
            out.into_iter()
                .collect::<Option<Vec<String>>>()
                .map(Val::List)
        }
        (Kind::StrList | Kind::StrOrList, _) => {
            refuse(problems, path, "Input should be a valid list")
        }
    }
}

/// Records a problem; `None` for the value it was about.
fn refuse<T>(problems: &mut Vec<Problem>, path: &str, message: &str) -> Option<T> {
    problems.push(Problem {
        path: path.to_string(),
        message: message.to_string(),
    });
    None
}

/// A string value. Every string ends up in a CSV field of `--mount` or in a
/// mount option: a control character has no business in either.
fn text(s: &str, path: &str, problems: &mut Vec<Problem>) -> Option<String> {
    if s.chars().any(char::is_control) {
        refuse(
            problems,
            path,
            "Value must not contain control characters (such as a line break).",
        )
    } else {
        Some(s.to_string())
    }
}

/// A boolean as pydantic's lax mode reads one (what the API accepts).
fn lax_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
            "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Checks one entry; pushes its problems and returns it if it has none.
fn check_entry(
    entry: &Value,
    at: &Path,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> Option<Checked> {
    let before = problems.len();
    let push = |problems: &mut Vec<Problem>, path: String, message: String| {
        problems.push(Problem { path, message })
    };
    let Value::Object(map) = entry else {
        push(
            problems,
            at.entry.clone(),
            "Input should be a valid dictionary or instance of Volume".into(),
        );
        return None;
    };
    for key in map.keys() {
        let known = VOLUME_FIELDS.contains(&key.as_str()) || BACKENDS.iter().any(|b| b.key == key);
        if !known {
            push(
                problems,
                at.field(key),
                "Extra inputs are not permitted".into(),
            );
        }
    }

    // name: a DNS label.
    let name = required_str(map, "name", at, problems);
    if let Some(name) = &name
        && let Some(message) = name_problem(name)
    {
        push(problems, at.field("name"), message);
    }

    // mountPath: absolute.
    let mount_path = required_str(map, "mountPath", at, problems);
    if let Some(mp) = &mount_path {
        let message = if mp.is_empty() {
            Some("Mount path cannot be empty.".to_string())
        } else if !mp.starts_with('/') {
            Some(format!(
                "Mount path '{mp}' must be an absolute path starting with '/'."
            ))
        } else if clean_path(mp) == "/" {
            Some(format!(
                "Mount path '{mp}' is the container's root directory; mount the volume on a \
                 directory under it."
            ))
        } else {
            None
        };
        if let Some(message) = message {
            push(problems, at.field("mountPath"), message);
        }
    }

    let read_only = match map.get("readOnly") {
        None | Some(Value::Null) => false,
        Some(v) => match typed(v, Kind::Bool, &at.field("readOnly"), problems) {
            Some(Val::Bool(b)) => b,
            _ => false,
        },
    };

    // subPath: relative, no `..`.
    let sub_path = match map.get("subPath") {
        None | Some(Value::Null) => None,
        Some(v) => match typed(v, Kind::Str, &at.field("subPath"), problems) {
            Some(Val::Str(s)) => {
                if s.starts_with('/') {
                    push(
                        problems,
                        at.field("subPath"),
                        format!("SubPath '{s}' must be a relative path, not absolute."),
                    );
                } else if s.split('/').any(|c| c == "..") {
                    push(
                        problems,
                        at.field("subPath"),
                        format!("SubPath '{s}' contains path traversal '..' which is not allowed."),
                    );
                }
                (!s.is_empty()).then_some(s)
            }
            _ => None,
        },
    };

    // Exactly one backend.
    let given: Vec<&Backend> = BACKENDS
        .iter()
        .filter(|b| map.get(b.key).is_some_and(|v| !v.is_null()))
        .collect();
    let who = match &name {
        Some(n) => format!("Volume '{n}'"),
        None => "Volume".to_string(),
    };
    let backend = match given.as_slice() {
        [] => {
            push(
                problems,
                at.entry.clone(),
                format!(
                    "{who} must specify exactly one backend ({BACKEND_NAMES}), but none was provided."
                ),
            );
            None
        }
        [one] => Some(*one),
        _ => {
            push(
                problems,
                at.entry.clone(),
                format!(
                    "{who} must specify exactly one backend ({BACKEND_NAMES}), but multiple were provided."
                ),
            );
            None
        }
    };
    let backend_options =
        backend.and_then(|b| check_backend(b, &map[b.key], at, options, problems));

    if problems.len() > before {
        return None;
    }
    let checked = Checked {
        name: name?,
        mount_path: mount_path?,
        read_only,
        sub_path,
        backend: backend?.key,
        options: backend_options?,
    };
    // The plugin's own parser: what its Create would refuse, refused here.
    if let Some(message) = plugin_refusal(&checked) {
        push(problems, at.entry.clone(), message);
        return None;
    }
    Some(checked)
}

/// A required string field of the volume (pydantic's wording when missing
/// or not a string).
fn required_str(
    map: &Map<String, Value>,
    field: &str,
    at: &Path,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    match map.get(field) {
        None => {
            problems.push(Problem {
                path: at.field(field),
                message: "Field required".into(),
            });
            None
        }
        Some(v) => match typed(v, Kind::Str, &at.field(field), problems) {
            Some(Val::Str(s)) => Some(s),
            _ => None,
        },
    }
}

/// The API's volume name rule: a DNS label of at most 63 characters.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("Volume name cannot be empty.".into())
    } else if name.len() > 63 {
        Some(format!(
            "Volume name '{name}' exceeds maximum length of 63 characters."
        ))
    } else if !crate::spec::is_dns_label(name) {
        Some(format!(
            "Volume name '{name}' is not a valid DNS label. Must be lowercase alphanumeric with \
             optional hyphens."
        ))
    } else {
        None
    }
}

/// Checks a backend struct; returns its options in table order.
fn check_backend(
    backend: &Backend,
    value: &Value,
    at: &Path,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> Option<Vec<(&'static str, String)>> {
    let before = problems.len();
    let base = at.field(backend.key);
    let Value::Object(map) = value else {
        problems.push(Problem {
            path: base,
            message: format!(
                "Input should be a valid dictionary or instance of {}",
                backend.model
            ),
        });
        return None;
    };
    let path = |field: &str| format!("{base}.{field}");
    for key in map.keys() {
        if !backend.fields.iter().any(|f| f.name == key) {
            problems.push(Problem {
                path: path(key),
                message: "Extra inputs are not permitted".into(),
            });
        }
    }
    let mut values: Vec<(&Field, Val)> = Vec::new();
    for field in backend.fields {
        match map.get(field.name) {
            None | Some(Value::Null) if field.required => {
                let message = match map.get(field.name) {
                    None => "Field required",
                    Some(_) => "Input should be a valid string",
                };
                problems.push(Problem {
                    path: path(field.name),
                    message: message.into(),
                });
            }
            None | Some(Value::Null) => {}
            Some(v) => {
                if let Some(val) = typed(v, field.kind, &path(field.name), problems) {
                    values.push((field, val));
                }
            }
        }
    }
    let get = |name: &str| {
        values
            .iter()
            .find(|(f, _)| f.name == name)
            .map(|(_, v)| v.clone())
    };
    let get_str = |name: &str| match get(name) {
        Some(Val::Str(s)) => Some(s),
        _ => None,
    };
    let mut say = |field: &str, message: String| {
        problems.push(Problem {
            path: path(field),
            message,
        })
    };
    match backend.key {
        "host" => {
            if let Some(p) = get_str("path")
                && let Some(message) = host_path_problem(&p, options.allowed_host_paths.as_deref())
            {
                say("path", message);
            }
        }
        "pvc" => {
            if let Some(claim) = get_str("claimName") {
                let message = if claim.trim().is_empty() {
                    Some("PVC claim name cannot be empty.".to_string())
                } else if claim.len() > 63 {
                    Some(format!(
                        "PVC claim name '{claim}' exceeds maximum length of 63 characters."
                    ))
                } else if !crate::spec::is_dns_label(&claim) {
                    Some(format!(
                        "PVC claim name '{claim}' is not a valid Kubernetes resource name."
                    ))
                } else {
                    None
                };
                if let Some(message) = message {
                    say("claimName", message);
                }
            }
        }
        "ossfs" => {
            if let Some(bucket) = get_str("bucket") {
                if bucket.trim().is_empty() {
                    say("bucket", "OSSFS bucket cannot be empty.".into());
                } else if bucket.chars().count() < 3 {
                    say("bucket", "String should have at least 3 characters".into());
                } else if bucket.chars().count() > 63 {
                    say("bucket", "String should have at most 63 characters".into());
                }
            }
            if let Some(endpoint) = get_str("endpoint")
                && endpoint.trim().is_empty()
            {
                say("endpoint", "OSSFS endpoint cannot be empty.".into());
            }
            if let Some(version) = get_str("version")
                && version != "1.0"
                && version != "2.0"
            {
                say("version", "Input should be '1.0' or '2.0'".into());
            }
            if let Some(Val::List(items)) = get("options") {
                if items.iter().any(|o| o.trim().is_empty()) {
                    say("options", "OSSFS options must be non-empty strings.".into());
                } else if items.iter().any(|o| o.trim().starts_with('-')) {
                    say(
                        "options",
                        "OSSFS options must be raw option payloads without '-' prefix \
                         (e.g. 'allow_other', 'uid=1000')."
                            .into(),
                    );
                }
            }
            // The API requires inline keys; a credential profile (ours)
            // stands in for them.
            let has = |name: &str| get_str(name).is_some_and(|s| !s.is_empty());
            if !has("credentials") && (!has("accessKeyId") || !has("accessKeySecret")) {
                problems.push(Problem {
                    path: base.clone(),
                    message: "OSSFS inline credentials are required: accessKeyId and \
                              accessKeySecret must be provided."
                        .into(),
                });
            }
        }
        "nfs" => {
            if let Some(server) = get_str("server") {
                if server.trim().is_empty() {
                    say("server", "NFS server cannot be empty.".into());
                } else if !crate::spec::is_nfs_server(&server) {
                    say(
                        "server",
                        format!(
                            "NFS server '{server}' is not a valid hostname or IP address \
                             (an IPv6 address goes in brackets, e.g. [fd00::1])."
                        ),
                    );
                }
            }
            if let Some(p) = get_str("path") {
                if p.is_empty() {
                    say("path", "NFS path cannot be empty.".into());
                } else if !p.starts_with('/') {
                    say(
                        "path",
                        format!("NFS path '{p}' must be an absolute path starting with '/'."),
                    );
                }
            }
            if let Some(Val::List(items)) = get("options")
                && items.iter().any(|o| o.trim().is_empty())
            {
                say("options", "NFS options must be non-empty strings.".into());
            }
        }
        "s3" => {
            if let Some(bucket) = get_str("bucket")
                && bucket.trim().is_empty()
            {
                say("bucket", "S3 bucket cannot be empty.".into());
            }
        }
        _ => unreachable!("every backend has its checks"),
    }
    if problems.len() > before {
        return None;
    }
    Some(
        values
            .into_iter()
            .filter(|(f, _)| f.used == Use::Option)
            .map(|(f, v)| (f.name, v.text()))
            .collect(),
    )
}

/// The API's host path rules (absolute, no `..`, normalised, under an
/// allowed prefix when there is a list), with its wording; Windows drive
/// paths, which the API also accepts, are refused: the plugin serves Linux.
fn host_path_problem(path: &str, allowed: Option<&[String]>) -> Option<String> {
    if path.is_empty() {
        return Some("Host path cannot be empty.".into());
    }
    if !path.starts_with('/') {
        return Some(format!(
            "Host path '{path}' must be an absolute path starting with '/'."
        ));
    }
    if path.split('/').any(|c| c == "..") {
        return Some(format!(
            "Host path '{path}' contains path traversal component '..'."
        ));
    }
    if path.contains("//") || (path.len() > 1 && path.ends_with('/')) {
        return Some(format!(
            "Host path '{path}' is not normalized. Remove redundant slashes."
        ));
    }
    if let Some(allowed) = allowed {
        let under = |prefix: &String| {
            let prefix = if prefix.len() > 1 {
                prefix.trim_end_matches('/')
            } else {
                prefix.as_str()
            };
            path == prefix
                || prefix == "/"
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        if !allowed.iter().any(under) {
            let list: Vec<String> = allowed.iter().map(|p| format!("'{p}'")).collect();
            return Some(format!(
                "Host path '{path}' is not under any allowed prefix. Allowed prefixes: [{}]",
                list.join(", ")
            ));
        }
    }
    None
}

/// The plugin's refusal of the options this entry becomes, if any.
fn plugin_refusal(v: &Checked) -> Option<String> {
    let map: Map<String, Value> = volume_options(v)
        .into_iter()
        .map(|(k, val)| (k, Value::String(val)))
        .collect();
    crate::spec::parse_options(Some(&map))
        .err()
        .map(|e| format!("the plugin refuses this volume: {e}"))
}

/// `type`, the backend's options, `subPath`, `readOnly` (only when true:
/// `readOnly=false` would contradict `ro` in ossfs `options`).
fn volume_options(v: &Checked) -> Vec<(String, String)> {
    let mut out = vec![("type".to_string(), v.backend.to_string())];
    out.extend(
        v.options
            .iter()
            .map(|(k, val)| (k.to_string(), val.clone())),
    );
    if let Some(sub) = &v.sub_path {
        out.push(("subPath".into(), sub.clone()));
    }
    if v.read_only {
        out.push(("readOnly".into(), "true".into()));
    }
    out
}

fn to_mount(v: Checked, options: &Options) -> DockerMount {
    let source = options
        .name_prefix
        .as_deref()
        .map(|prefix| volume_name(prefix, &v.name));
    DockerMount {
        read_only: v.read_only && source.is_some(),
        source,
        target: v.mount_path.clone(),
        driver: options.driver.clone(),
        options: volume_options(&v),
    }
}

/// `prefix + name` in Docker's volume name characters
/// (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`): others become `-`, and a prefix may not
/// start with anything but a letter or digit. `name` is a DNS label already.
pub fn volume_name(prefix: &str, name: &str) -> String {
    let prefix: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let prefix = prefix.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    format!("{prefix}{name}")
}

/// Collapses `//`, `.` and a trailing `/`, for comparing mount paths as
/// Docker does (it cleans them).
fn clean_path(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Names and mount paths seen in earlier entries, to refuse repeats.
#[derive(Default)]
struct Seen {
    names: Vec<String>,
    /// Cleaned mount path and the index of the entry that has it.
    mount_paths: Vec<(String, usize)>,
}

impl Seen {
    /// Unique names (the API's rule) and unique mount paths (Docker
    /// refuses two mounts on one path); the later entry of a pair is
    /// the one reported.
    fn check(&mut self, entry: &Value, index: usize, at: &Path, problems: &mut Vec<Problem>) {
        if let Some(name) = entry.get("name").and_then(Value::as_str) {
            if self.names.iter().any(|n| n == name) {
                problems.push(Problem {
                    path: at.field("name"),
                    message: format!(
                        "Duplicate volume name '{name}'. Each volume must have a unique name."
                    ),
                });
            } else {
                self.names.push(name.to_string());
            }
        }
        if let Some(mp) = entry.get("mountPath").and_then(Value::as_str) {
            if !mp.starts_with('/') {
                return;
            }
            let clean = clean_path(mp);
            match self.mount_paths.iter().find(|(p, _)| *p == clean) {
                Some((_, j)) => problems.push(Problem {
                    path: at.field("mountPath"),
                    message: format!(
                        "Duplicate mount path '{mp}' (volumes[{j}] mounts there too). Each volume \
                         must have a unique mountPath."
                    ),
                }),
                None => self.mount_paths.push((clean, index)),
            }
        }
    }
}

/// The `translate` command: reads, translates, prints. Returns the exit
/// status: 0 done, 1 the input could not be read, 2 the input is not valid.
pub fn run_translate(args: TranslateArgs) -> i32 {
    let mut text = String::new();
    let read = match &args.input {
        None => std::io::stdin().read_to_string(&mut text).map(drop),
        Some(p) if p.as_os_str() == "-" => std::io::stdin().read_to_string(&mut text).map(drop),
        Some(p) => std::fs::read_to_string(p).map(|t| text = t),
    };
    if let Err(e) = read {
        let what = match &args.input {
            Some(p) if p.as_os_str() != "-" => p.display().to_string(),
            _ => "standard input".to_string(),
        };
        eprintln!("opensandbox-volume translate: cannot read {what}: {e}");
        return 1;
    }
    let options = Options {
        driver: args.driver,
        name_prefix: args.name_prefix,
        allowed_host_paths: args.allowed_host_paths,
    };
    match translate_json(&text, &options) {
        Ok(mounts) => {
            print!("{}", render(&mounts, args.format));
            0
        }
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("volume-opt=bucket=b"), "volume-opt=bucket=b");
        assert_eq!(
            csv_field("volume-opt=options=allow_other,umask=0022"),
            "\"volume-opt=options=allow_other,umask=0022\""
        );
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field(" a"), "\" a\"");
    }

    #[test]
    fn shell_quote_escapes_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn volume_names_are_sanitised() {
        assert_eq!(volume_name("sb 1/", "work"), "sb-1-work");
        assert_eq!(volume_name("_x.", "work"), "x.work");
        assert_eq!(volume_name("", "work"), "work");
    }

    #[test]
    fn lax_booleans() {
        assert_eq!(lax_bool(&json!("yes")), Some(true));
        assert_eq!(lax_bool(&json!(0)), Some(false));
        assert_eq!(lax_bool(&json!("maybe")), None);
    }
}
