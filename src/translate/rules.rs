//! The Lifecycle API's rules for a volume entry, with its messages: the
//! JSON shape of each field (pydantic's wording), the name, mount path and
//! subPath rules, exactly one backend, each backend's own checks, unique
//! names and mount paths, and finally the plugin's own option parser. The
//! fields of each backend struct come from the option table
//! ([`crate::spec::table`]); only the API's own extras are named here.

use super::{Options, Problem};
use crate::spec::table::{self, Types, ValueType, VolumeType};
use serde_json::{Map, Value};

/// The backends, in the order the messages list them.
const BACKEND_NAMES: &str = "host, pvc, ossfs, nfs, s3";
/// JSON paths of one entry and its fields.
pub(super) struct Path {
    entry: String,
    /// Prefix of a field's path: `volumes[1].` or `` for a lone object.
    fields: String,
}

impl Path {
    pub(super) fn entry(index: usize, single: bool) -> Path {
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

pub(super) fn json_kind(v: &Value) -> &'static str {
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
    /// Accepted and type-checked, not passed on: it has no meaning on
    /// Docker, which the warning says.
    Ignored(&'static str),
}

#[derive(Clone, Copy)]
struct Field {
    name: &'static str,
    kind: Kind,
    required: bool,
    used: Use,
}

/// A field of the API that is accepted and type-checked, not passed on,
/// with the warning `translate` gives when it is there.
const fn ignored(name: &'static str, kind: Kind, warning: &'static str) -> Field {
    Field {
        name,
        kind,
        required: false,
        used: Use::Ignored(warning),
    }
}

/// A backend struct: its JSON key (also the plugin's `type`), the API's
/// model name (pydantic says "instance of Host"), and the API's fields
/// that are not volume options (its fields that are come from the table).
pub(super) struct Backend {
    pub(super) key: &'static str,
    ty: VolumeType,
    model: &'static str,
    extra: &'static [Field],
}

pub(super) const BACKENDS: &[Backend] = &[
    Backend {
        key: VolumeType::Host.name(),
        ty: VolumeType::Host,
        model: "Host",
        extra: &[],
    },
    Backend {
        key: VolumeType::Pvc.name(),
        ty: VolumeType::Pvc,
        model: "PVC",
        extra: &[
            // Provisioning hints of the API for Kubernetes; its schema
            // says Docker ignores them.
            ignored(
                "storageClass",
                Kind::Str,
                "Ignored on Docker: a missing claim is created as a volume of Docker's local \
                 driver, which has no storage classes.",
            ),
            ignored(
                "storage",
                Kind::Str,
                "Ignored on Docker: a volume of Docker's local driver has no size of its own; it \
                 can fill the disk it is on.",
            ),
            ignored(
                "accessModes",
                Kind::StrList,
                "Ignored on Docker: every container on this host can mount the claim, read-write \
                 unless the volume is readOnly.",
            ),
        ],
    },
    Backend {
        key: VolumeType::Ossfs.name(),
        ty: VolumeType::Ossfs,
        model: "OSSFS",
        extra: &[],
    },
    Backend {
        key: VolumeType::Nfs.name(),
        ty: VolumeType::Nfs,
        model: "NFS",
        extra: &[],
    },
    Backend {
        key: VolumeType::S3.name(),
        ty: VolumeType::S3,
        model: "S3",
        extra: &[],
    },
];

impl Backend {
    /// The struct's fields: the type's options that the API's JSON has, in
    /// table order, then the API's extras.
    fn fields(&self) -> Vec<Field> {
        table::OPTIONS
            .iter()
            .filter(|o| matches!(o.types, Types::Only(_)))
            .filter(|o| o.on(self.ty).is_some_and(|on| on.api))
            .map(|o| Field {
                name: o.name,
                kind: kind_of(o.value),
                required: o.required,
                used: Use::Option,
            })
            .chain(self.extra.iter().copied())
            .collect()
    }
}

/// The JSON type the API gives an option's value.
fn kind_of(value: ValueType) -> Kind {
    match value {
        ValueType::Text | ValueType::Octal | ValueType::Size => Kind::Str,
        ValueType::Bool => Kind::Bool,
        ValueType::Seconds => Kind::Number,
        ValueType::Id => Kind::Integer,
        ValueType::List => Kind::StrList,
        ValueType::ListOrText => Kind::StrOrList,
    }
}

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
pub(super) struct Checked {
    pub(super) name: String,
    pub(super) mount_path: String,
    pub(super) read_only: bool,
    pub(super) sub_path: Option<String>,
    pub(super) backend: &'static str,
    /// Backend options in table order.
    pub(super) options: Vec<(&'static str, String)>,
    /// What the entry asks for that has no effect on Docker.
    pub(super) warnings: Vec<Problem>,
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
pub(super) fn check_entry(
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
    let backend_checked =
        backend.and_then(|b| check_backend(b, &map[b.key], at, options, problems));

    if problems.len() > before {
        return None;
    }
    let (backend_options, warnings) = backend_checked?;
    let mut checked = Checked {
        name: name?,
        mount_path: mount_path?,
        read_only,
        sub_path,
        backend: backend?.key,
        options: backend_options,
        warnings,
    };
    // The plugin's own parser: what its Create would refuse, refused here;
    // the ossfs options it accepts without effect, warned about.
    match plugin_spec(&checked) {
        Err(message) => {
            push(problems, at.entry.clone(), message);
            return None;
        }
        Ok(spec) => {
            let ignored = spec
                .backend
                .object()
                .map_or(&[][..], |o| &o.ignored_options);
            for item in ignored {
                checked.warnings.push(Problem {
                    path: at.field(&format!("{}.options", checked.backend)),
                    message: format!(
                        "ossfs option `{item}` is accepted without effect: {}.",
                        crate::spec::ignored_ossfs_reason(item).unwrap_or_default()
                    ),
                });
            }
        }
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

/// A checked backend struct: its options in table order, and the warnings
/// about its ignored fields.
type BackendChecked = (Vec<(&'static str, String)>, Vec<Problem>);

/// Checks a backend struct.
fn check_backend(
    backend: &Backend,
    value: &Value,
    at: &Path,
    options: &Options,
    problems: &mut Vec<Problem>,
) -> Option<BackendChecked> {
    let before = problems.len();
    let fields = backend.fields();
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
        if !fields.iter().any(|f| f.name == key) {
            problems.push(Problem {
                path: path(key),
                message: "Extra inputs are not permitted".into(),
            });
        }
    }
    let mut values: Vec<(&Field, Val)> = Vec::new();
    for field in &fields {
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
                let max = crate::spec::MAX_CLAIM_NAME_LEN;
                let message = if claim.trim().is_empty() {
                    Some("PVC claim name cannot be empty.".to_string())
                } else if claim.len() > max {
                    Some(format!(
                        "PVC claim name '{claim}' exceeds maximum length of {max} characters."
                    ))
                } else if !crate::spec::is_claim_name(&claim) {
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
            if let Some(storage) = get_str("storage")
                && !is_quantity(&storage)
            {
                say(
                    "storage",
                    format!("String should match pattern '{QUANTITY}'"),
                );
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
    let warnings = values
        .iter()
        .filter_map(|(f, _)| match f.used {
            Use::Ignored(warning) => Some(Problem {
                path: path(f.name),
                message: warning.to_string(),
            }),
            Use::Option => None,
        })
        .collect();
    let options = values
        .into_iter()
        .filter(|(f, _)| f.used == Use::Option)
        .map(|(f, v)| (f.name, v.text()))
        .collect();
    Some((options, warnings))
}

/// The API's pattern for `pvc.storage` (a Kubernetes quantity in binary
/// units), as its schema and pydantic's message give it.
const QUANTITY: &str = r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei)?$";

/// Whether `s` matches [`QUANTITY`]: digits, an optional fraction, an
/// optional binary unit.
fn is_quantity(s: &str) -> bool {
    let unit_at = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(unit_at);
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let number_ok = match number.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(number),
    };
    number_ok && ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].contains(&unit)
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

/// What the plugin's Create makes of the options this entry becomes, or
/// its refusal.
fn plugin_spec(v: &Checked) -> Result<crate::spec::VolumeSpec, String> {
    let map: Map<String, Value> = volume_options(v)
        .into_iter()
        .map(|(k, val)| (k, Value::String(val)))
        .collect();
    crate::spec::parse_options(Some(&map))
        .map_err(|e| format!("the plugin refuses this volume: {e}"))
}

/// `type`, the backend's options, `subPath`, `readOnly` (only when true:
/// `readOnly=false` would contradict `ro` in ossfs `options`).
pub(super) fn volume_options(v: &Checked) -> Vec<(String, String)> {
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
pub(super) struct Seen {
    names: Vec<String>,
    /// Cleaned mount path and the index of the entry that has it.
    mount_paths: Vec<(String, usize)>,
}

impl Seen {
    /// Unique names (the API's rule) and unique mount paths (Docker
    /// refuses two mounts on one path); the later entry of a pair is
    /// the one reported.
    pub(super) fn check(
        &mut self,
        entry: &Value,
        index: usize,
        at: &Path,
        problems: &mut Vec<Problem>,
    ) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn storage_quantities_as_the_api_matches_them() {
        for good in ["1", "10Gi", "1.5Ti", "0.5Mi", "100Ki", "2Ei"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in [
            "", "Gi", "10G", "10gi", "1.Gi", ".5Gi", "1.5.5Gi", "-1Gi", "10 Gi", "1e3",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn lax_booleans() {
        assert_eq!(lax_bool(&json!("yes")), Some(true));
        assert_eq!(lax_bool(&json!(0)), Some(false));
        assert_eq!(lax_bool(&json!("maybe")), None);
    }
}
