//! Volume options → a typed [`VolumeSpec`], parsed once at Create.
//!
//! Every error a user can cause with `-o key=value` is produced here, as one
//! sentence that names the option and says what is accepted; none of them
//! ever contains a key (`accessKeyId`, `accessKeySecret`, `sessionToken`).
//! Nothing in this module touches the filesystem or the network: whether a
//! host path exists or is allowed is the backend's business (see
//! `backend::host`), whether a credential profile exists is
//! `credentials::profile_exists`'s.
//!
//! One concern per file: [`model`] (the types a Create records), [`error`]
//! (every sentence), [`table`] (each option declared once), `opts` (the
//! given options, looked up by the table's names), `values` (shared value
//! shapes), and the per-type parsers `host`, `pvc`, `nfs`, `object` (s3
//! and ossfs), `credentials`, `endpoint` and `ossfs_options`. This file is
//! the entry point, [`parse_options`].

mod credentials;
#[cfg(test)]
mod docs;
mod endpoint;
pub mod error;
mod host;
pub mod model;
mod nfs;
mod object;
mod opts;
mod ossfs_options;
mod pvc;
pub mod table;
#[cfg(test)]
mod test_util;
mod values;

pub use error::{SpecError, printable};
pub use model::{BackendSpec, Credentials, MountTuning, NfsSpec, ObjectSpec, VolumeSpec};
pub use nfs::{NFS_MOUNT_OPTIONS, is_nfs_server};
pub use ossfs_options::ignored_reason as ignored_ossfs_reason;
pub use table::{ALL_TYPES, VolumeType, option_names};
pub(crate) use values::cache_size_words;
pub use values::{
    MAX_CLAIM_NAME_LEN, MIN_CACHE_SIZE, is_claim_name, is_dns_label, is_normalised_absolute,
    parse_cache_size, parse_size,
};

use opts::Given;
use serde_json::{Map, Value};

/// Parses Docker's `Opts` (which may be `null`, i.e. `None`) into a spec.
///
/// Keys are matched case-insensitively because the OpenSandbox API spells
/// them in camelCase while people typing `-o` rarely do.
pub fn parse_options(opts: Option<&Map<String, Value>>) -> Result<VolumeSpec, SpecError> {
    let given = Given::new(opts)?;
    let ty = parse_type(&given)?;
    let opts = given.of_type(ty)?;

    let sub_path = match opts.get("subPath") {
        None => None,
        Some(v) => values::parse_sub_path(v)?,
    };
    let read_only = opts.bool("readOnly")?;
    let (backend, read_only) = match ty {
        VolumeType::Host => (host::parse_host(&opts)?, read_only.unwrap_or(false)),
        VolumeType::S3 => (
            BackendSpec::S3(object::parse_s3(&opts)?),
            read_only.unwrap_or(false),
        ),
        VolumeType::Ossfs => {
            let (object, read_only) = object::parse_ossfs(&opts, read_only)?;
            (BackendSpec::Ossfs(object), read_only)
        }
        VolumeType::Pvc => (pvc::parse_pvc(&opts)?, read_only.unwrap_or(false)),
        VolumeType::Nfs => (
            BackendSpec::Nfs(nfs::parse_nfs(&opts)?),
            read_only.unwrap_or(false),
        ),
    };
    Ok(VolumeSpec {
        backend,
        sub_path,
        read_only,
    })
}

/// The volume type, as one of the [`ALL_TYPES`].
fn parse_type(given: &Given) -> Result<VolumeType, SpecError> {
    let ty = given
        .get("type")
        .ok_or(SpecError::MissingType)?
        .trim()
        .to_ascii_lowercase();
    VolumeType::from_name(&ty).ok_or(SpecError::UnknownType(ty))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;
    use serde_json::json;

    #[test]
    fn null_options_means_missing_type() {
        assert_eq!(parse_options(None), Err(SpecError::MissingType));
        assert_eq!(parse(json!({})), Err(SpecError::MissingType));
    }

    #[test]
    fn unknown_types_are_refused() {
        assert!(
            matches!(parse(json!({"type": "ftp"})), Err(SpecError::UnknownType(t)) if t == "ftp")
        );
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
    fn sub_path_must_stay_inside() {
        for bad in [
            "/abs",
            "..",
            "a/../../b",
            "a/..",
            "a/../a",
            "./..",
            "/",
            "a\0b",
        ] {
            let err = parse(json!({"type": "host", "path": "/x", "subPath": bad})).unwrap_err();
            assert!(
                matches!(err, SpecError::BadSubPath(_)),
                "{bad:?} gave {err:?}"
            );
        }
        let long = "a".repeat(256);
        assert!(parse(json!({"type": "host", "path": "/x", "subPath": long})).is_err());
        assert!(
            parse(json!({"type": "host", "path": "/x", "subPath": "s/".repeat(2100)})).is_err()
        );
        for (given, want) in [
            ("", None),
            (".", None),
            ("./", None),
            ("a/", Some("a")),
            ("a/./b", Some("a/b")),
            ("a//b", Some("a/b")),
            ("./a", Some("a")),
            ("a/b//./c/.", Some("a/b/c")),
            ("..a/b..c", Some("..a/b..c")),
        ] {
            let spec = parse(json!({"type": "host", "path": "/x", "subPath": given})).unwrap();
            assert_eq!(spec.sub_path.as_deref(), want, "{given:?}");
        }
        // Normalised alike for every type; for s3 and ossfs it extends the
        // key prefix.
        let spec =
            parse(json!({"type": "pvc", "claimName": "c1", "subPath": "runs//./a"})).unwrap();
        assert_eq!(spec.sub_path.as_deref(), Some("runs/a"));
        let spec = parse(test_util::with(
            &test_util::s3(),
            json!({"subPath": "x/./y"}),
        ))
        .unwrap();
        assert_eq!(spec.sub_path.as_deref(), Some("x/y"));
    }

    #[test]
    fn booleans_and_non_string_values() {
        let spec = parse(json!({"type": "host", "path": "/x", "readOnly": true})).unwrap();
        assert!(spec.read_only);
        let spec = parse(json!({"type": "host", "path": "/x", "readOnly": "no"})).unwrap();
        assert!(!spec.read_only);
        let e = err(json!({"type": "host", "path": "/x", "readOnly": "maybe"}));
        assert!(matches!(
            e,
            SpecError::BadBool {
                option: "readOnly",
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            r#"option `readOnly`="maybe" must be true or false"#
        );
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
