//! Volume options → a typed [`VolumeSpec`], parsed once at Create.
//!
//! Every error a user can cause with `-o key=value` is produced here, as one
//! sentence that names the option and says what is accepted. Nothing in this
//! module touches the filesystem: whether a host path exists or is allowed is
//! the backend's business (see `backend::host`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Every backend type the OpenSandbox volume model names.
pub const ALL_TYPES: &[&str] = &["host", "pvc", "ossfs", "s3", "nfs"];
/// The types this build can serve.
pub const SERVED_TYPES: &[&str] = &["host"];

/// Options every type accepts, in the spelling the documentation uses.
const COMMON_OPTIONS: &[&str] = &["type", "subPath", "readOnly"];
/// Options of `type=host`, besides the common ones.
const HOST_OPTIONS: &[&str] = &["path"];

/// A validated volume: one backend plus the options common to all backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub backend: BackendSpec,
    /// Relative, normalised (no empty, `.` or `..` component), no leading `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// The backend-specific part of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendSpec {
    /// A directory of the Docker host; absolute and normalised, not yet
    /// resolved (symlinks are resolved and checked at every use).
    Host { path: PathBuf },
}

impl BackendSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendSpec::Host { .. } => "host",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("option `type` is required; set it to one of: {types}", types = ALL_TYPES.join(", "))]
    MissingType,
    #[error("type={0:?} is not a volume type; use one of: {types}", types = ALL_TYPES.join(", "))]
    UnknownType(String),
    #[error(
        "type={0} is not supported by this build of the plugin yet; supported types: {served}",
        served = SERVED_TYPES.join(", ")
    )]
    UnsupportedType(String),
    #[error("option `{key}` is not accepted for type={ty}; accepted options: {accepted}")]
    UnknownOption {
        key: String,
        ty: String,
        accepted: String,
    },
    #[error(
        "option `{0}` is given more than once (option names are case-insensitive); give it once"
    )]
    Duplicate(String),
    #[error("option `{0}` must be a string, number or boolean")]
    NotAString(String),
    #[error(
        "option `path` is required for type=host; set it to an absolute host directory, e.g. path=/srv/data"
    )]
    MissingHostPath,
    #[error(
        "option `path`={0:?} must be an absolute, normalised path (starting with `/`, without `.`, `..`, `//`, a trailing `/` or NUL)"
    )]
    BadHostPath(String),
    #[error(
        "option `subPath`={0:?} must be a relative path inside the volume (no leading `/`, no `.` or `..` components, no NUL), e.g. subPath=work/run1"
    )]
    BadSubPath(String),
    #[error("option `readOnly`={0:?} must be true or false")]
    BadBool(String),
}

/// Longest path we accept in an option; PATH_MAX on Linux.
const MAX_PATH_LEN: usize = 4096;
/// Longest single path component; NAME_MAX on Linux.
const MAX_COMPONENT_LEN: usize = 255;

/// Parses Docker's `Opts` (which may be `null`, i.e. `None`) into a spec.
///
/// Keys are matched case-insensitively because the OpenSandbox API spells
/// them in camelCase while people typing `-o` rarely do.
pub fn parse_options(opts: Option<&Map<String, Value>>) -> Result<VolumeSpec, SpecError> {
    let empty = Map::new();
    let opts = opts.unwrap_or(&empty);

    // Normalise keys to lower case once, refusing duplicates that differ
    // only in case (which one would win is otherwise arbitrary).
    let mut lowered: Vec<(String, String, String)> = Vec::with_capacity(opts.len());
    for (key, value) in opts {
        let lower = key.to_ascii_lowercase();
        if lowered.iter().any(|(l, _, _)| *l == lower) {
            return Err(SpecError::Duplicate(key.clone()));
        }
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            _ => return Err(SpecError::NotAString(key.clone())),
        };
        lowered.push((lower, key.clone(), value));
    }
    let take = |name: &str| -> Option<&(String, String, String)> {
        lowered.iter().find(|(l, _, _)| l == name)
    };

    let ty = match take("type") {
        None => return Err(SpecError::MissingType),
        Some((_, _, v)) => v.trim().to_ascii_lowercase(),
    };
    if !ALL_TYPES.contains(&ty.as_str()) {
        return Err(SpecError::UnknownType(ty));
    }
    if !SERVED_TYPES.contains(&ty.as_str()) {
        return Err(SpecError::UnsupportedType(ty));
    }

    let type_options: &[&str] = match ty.as_str() {
        "host" => HOST_OPTIONS,
        _ => unreachable!("checked against SERVED_TYPES above"),
    };
    for (lower, original, _) in &lowered {
        let known = COMMON_OPTIONS
            .iter()
            .chain(type_options)
            .any(|k| k.eq_ignore_ascii_case(lower));
        if !known {
            let accepted: Vec<&str> = COMMON_OPTIONS.iter().chain(type_options).copied().collect();
            return Err(SpecError::UnknownOption {
                key: original.clone(),
                ty: ty.clone(),
                accepted: accepted.join(", "),
            });
        }
    }

    let sub_path = match take("subpath") {
        None => None,
        Some((_, _, v)) => parse_sub_path(v)?,
    };
    let read_only = match take("readonly") {
        None => false,
        Some((_, _, v)) => parse_bool(v)?,
    };
    let backend = match ty.as_str() {
        "host" => {
            let path = match take("path") {
                None => return Err(SpecError::MissingHostPath),
                Some((_, _, v)) if v.is_empty() => return Err(SpecError::MissingHostPath),
                Some((_, _, v)) => v,
            };
            if !is_normalised_absolute(path) {
                return Err(SpecError::BadHostPath(path.clone()));
            }
            BackendSpec::Host {
                path: PathBuf::from(path),
            }
        }
        _ => unreachable!("checked against SERVED_TYPES above"),
    };
    Ok(VolumeSpec {
        backend,
        sub_path,
        read_only,
    })
}

fn parse_bool(value: &str) -> Result<bool, SpecError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(SpecError::BadBool(value.to_string())),
    }
}

/// An empty `subPath` means "the whole volume"; trailing slashes are
/// tolerated because `work/` and `work` name the same directory.
fn parse_sub_path(value: &str) -> Result<Option<String>, SpecError> {
    let trimmed = value.trim_end_matches('/');
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || SpecError::BadSubPath(value.to_string());
    if trimmed.is_empty() || trimmed.starts_with('/') || trimmed.len() > MAX_PATH_LEN {
        return Err(bad());
    }
    if !trimmed.split('/').all(is_plain_component) {
        return Err(bad());
    }
    Ok(Some(trimmed.to_string()))
}

/// True for a path like `/srv/data`: absolute, no empty, `.` or `..`
/// components, no trailing slash (except `/` itself), no NUL.
pub fn is_normalised_absolute(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    match path.strip_prefix('/') {
        None => false,
        Some(rest) => path.len() <= MAX_PATH_LEN && rest.split('/').all(is_plain_component),
    }
}

fn is_plain_component(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains('\0') && c.len() <= MAX_COMPONENT_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<VolumeSpec, SpecError> {
        parse_options(v.as_object())
    }

    #[test]
    fn host_with_all_options_case_insensitive() {
        let spec = parse(
            json!({"TYPE": "Host", "Path": "/srv/data", "subpath": "a/b/", "READONLY": "TRUE"}),
        )
        .unwrap();
        assert_eq!(
            spec,
            VolumeSpec {
                backend: BackendSpec::Host {
                    path: "/srv/data".into()
                },
                sub_path: Some("a/b".into()),
                read_only: true,
            }
        );
    }

    #[test]
    fn null_options_means_missing_type() {
        assert_eq!(parse_options(None), Err(SpecError::MissingType));
        assert_eq!(parse(json!({})), Err(SpecError::MissingType));
    }

    #[test]
    fn unknown_and_unsupported_types_are_distinguished() {
        assert!(
            matches!(parse(json!({"type": "ftp"})), Err(SpecError::UnknownType(t)) if t == "ftp")
        );
        for ty in ["pvc", "ossfs", "s3", "nfs"] {
            let err = parse(json!({"type": ty})).unwrap_err();
            assert_eq!(err, SpecError::UnsupportedType(ty.into()));
            assert!(err.to_string().contains("supported types: host"));
        }
    }

    #[test]
    fn unknown_option_lists_accepted_ones() {
        let err = parse(json!({"type": "host", "path": "/x", "bucket": "b"})).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`bucket`"), "{msg}");
        assert!(msg.contains("type, subPath, readOnly, path"), "{msg}");
    }

    #[test]
    fn duplicate_keys_differing_in_case_are_refused() {
        let err = parse(json!({"type": "host", "path": "/x", "Path": "/y"})).unwrap_err();
        assert!(matches!(err, SpecError::Duplicate(_)));
    }

    #[test]
    fn host_path_must_be_absolute_and_normalised() {
        for bad in [
            "rel", "/a/../b", "/a/./b", "/a//b", "/a/", "./a", "/a\0b", "",
        ] {
            let err = parse(json!({"type": "host", "path": bad})).unwrap_err();
            assert!(
                matches!(err, SpecError::BadHostPath(_) | SpecError::MissingHostPath),
                "{bad:?} gave {err:?}"
            );
        }
        assert!(parse(json!({"type": "host", "path": "/"})).is_ok());
        assert_eq!(
            parse(json!({"type": "host"})),
            Err(SpecError::MissingHostPath)
        );
    }

    #[test]
    fn sub_path_must_stay_inside() {
        for bad in [
            "/abs",
            "..",
            "a/../../b",
            "a/..",
            "./a",
            "a//b",
            "a/./b",
            "/",
        ] {
            let err = parse(json!({"type": "host", "path": "/x", "subPath": bad})).unwrap_err();
            assert!(
                matches!(err, SpecError::BadSubPath(_)),
                "{bad:?} gave {err:?}"
            );
        }
        let long = "a".repeat(256);
        assert!(parse(json!({"type": "host", "path": "/x", "subPath": long})).is_err());
        let spec = parse(json!({"type": "host", "path": "/x", "subPath": ""})).unwrap();
        assert_eq!(spec.sub_path, None);
        let spec = parse(json!({"type": "host", "path": "/x", "subPath": "..a/b..c"})).unwrap();
        assert_eq!(spec.sub_path.as_deref(), Some("..a/b..c"));
    }

    #[test]
    fn booleans_and_non_string_values() {
        let spec = parse(json!({"type": "host", "path": "/x", "readOnly": true})).unwrap();
        assert!(spec.read_only);
        let spec = parse(json!({"type": "host", "path": "/x", "readOnly": "no"})).unwrap();
        assert!(!spec.read_only);
        assert!(matches!(
            parse(json!({"type": "host", "path": "/x", "readOnly": "maybe"})),
            Err(SpecError::BadBool(_))
        ));
        assert!(matches!(
            parse(json!({"type": "host", "path": ["/x"]})),
            Err(SpecError::NotAString(_))
        ));
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = parse(json!({"type": "host", "path": "/srv", "subPath": "x"})).unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        assert!(text.contains(r#""type":"host""#), "{text}");
        let back: VolumeSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, spec);
    }
}
