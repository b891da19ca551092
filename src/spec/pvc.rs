//! `type=pvc`: an existing Docker named volume, named by a DNS label.

use super::error::SpecError;
use super::model::BackendSpec;
use super::opts::Opts;
use super::values::is_dns_label;

pub(super) fn parse_pvc(opts: &Opts) -> Result<BackendSpec, SpecError> {
    let claim = opts.required("claimName")?;
    if !is_dns_label(claim) {
        return Err(SpecError::BadClaimName(claim.to_string()));
    }
    Ok(BackendSpec::Pvc {
        claim_name: claim.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;
    use serde_json::json;

    #[test]
    fn pvc_claims_are_dns_labels() {
        let spec = parse(
            json!({"type": "PVC", "claimName": "team-data", "subPath": "a/b", "readOnly": "true"}),
        )
        .unwrap();
        assert_eq!(
            spec.backend,
            BackendSpec::Pvc {
                claim_name: "team-data".into()
            }
        );
        assert_eq!(spec.sub_path.as_deref(), Some("a/b"));
        assert!(spec.read_only);
        for bad in [
            "Team",
            "-a",
            "a-",
            "a_b",
            "a.b",
            &"a".repeat(64),
            "../x",
            "",
        ] {
            let err = parse(json!({"type": "pvc", "claimName": bad})).unwrap_err();
            assert!(
                matches!(
                    err,
                    SpecError::BadClaimName(_) | SpecError::MissingOption { .. }
                ),
                "{bad}: {err}"
            );
        }
        assert!(parse(json!({"type": "pvc", "claimName": "a".repeat(63)})).is_ok());
        assert!(matches!(
            parse(json!({"type": "pvc"})).unwrap_err(),
            SpecError::MissingOption {
                option: "claimName",
                ..
            }
        ));
        assert!(matches!(
            parse(json!({"type": "pvc", "claimName": "x", "path": "/x"})).unwrap_err(),
            SpecError::UnknownOption { .. }
        ));
    }
}
