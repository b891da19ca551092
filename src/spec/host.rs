//! `type=host`: a directory of the Docker host. Only its shape is checked
//! here; whether it exists or is allowed is `backend::host`'s business.

use super::error::SpecError;
use super::model::BackendSpec;
use super::opts::Opts;
use super::values::is_normalised_absolute;
use std::path::PathBuf;

pub(super) fn parse_host(opts: &Opts) -> Result<BackendSpec, SpecError> {
    let path = match opts.get("path") {
        None | Some("") => return Err(SpecError::MissingHostPath),
        Some(v) => v,
    };
    if !is_normalised_absolute(path) {
        return Err(SpecError::BadHostPath(path.to_string()));
    }
    Ok(BackendSpec::Host {
        path: PathBuf::from(path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;
    use crate::spec::*;
    use serde_json::json;

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
}
