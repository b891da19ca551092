//! `type=pvc`: a Docker named volume (OpenSandbox's `pvc`), named as the
//! OpenSandbox server names claims, with the API's two lifecycle fields
//! (`createIfNotExists`, `deleteOnSandboxTermination`).

use super::error::SpecError;
use super::model::BackendSpec;
use super::opts::Opts;
use super::values::is_claim_name;

/// `createIfNotExists` when the option is left out: the API's default.
pub const DEFAULT_CREATE_IF_NOT_EXISTS: bool = true;

pub(super) fn parse_pvc(opts: &Opts) -> Result<BackendSpec, SpecError> {
    let claim = opts.required("claimName")?;
    if !is_claim_name(claim) {
        return Err(SpecError::BadClaimName(claim.to_string()));
    }
    Ok(BackendSpec::Pvc {
        claim_name: claim.to_string(),
        create_if_not_exists: opts
            .bool("createIfNotExists")?
            .unwrap_or(DEFAULT_CREATE_IF_NOT_EXISTS),
        delete_on_sandbox_termination: opts.bool("deleteOnSandboxTermination")?.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;
    use serde_json::json;

    fn pvc_of(spec: &crate::spec::VolumeSpec) -> (&str, bool, bool) {
        match &spec.backend {
            BackendSpec::Pvc {
                claim_name,
                create_if_not_exists,
                delete_on_sandbox_termination,
            } => (
                claim_name.as_str(),
                *create_if_not_exists,
                *delete_on_sandbox_termination,
            ),
            other => panic!("not a pvc spec: {other:?}"),
        }
    }

    #[test]
    fn pvc_claims_follow_the_servers_rule() {
        let spec = parse(
            json!({"type": "PVC", "claimName": "team-data", "subPath": "a/b", "readOnly": "true"}),
        )
        .unwrap();
        assert_eq!(pvc_of(&spec), ("team-data", true, false));
        assert_eq!(spec.sub_path.as_deref(), Some("a/b"));
        assert!(spec.read_only);
        // Up to 253 characters, as the server allows (Kubernetes resource
        // names); 64 was refused before.
        for good in ["a", "a1", "0-0", &"a".repeat(64), &"b".repeat(253)] {
            let spec = parse(json!({"type": "pvc", "claimName": good})).unwrap();
            assert_eq!(pvc_of(&spec).0, good);
        }
        for bad in [
            "Team",
            "-a",
            "a-",
            "a_b",
            "a.b",
            &"a".repeat(254),
            "../x",
            "a/b",
            "a b",
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
        let e = parse(json!({"type": "pvc", "claimName": "Team_Data"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "option `claimName`=\"Team_Data\" is not a claim name; use 1–253 lowercase letters, \
             digits and `-`, starting and ending with a letter or digit, e.g. claimName=team-data"
        );
        assert_sentence(&e);
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

    #[test]
    fn lifecycle_fields_default_as_the_api_does() {
        let spec = parse(json!({"type": "pvc", "claimName": "c1"})).unwrap();
        assert_eq!(pvc_of(&spec), ("c1", DEFAULT_CREATE_IF_NOT_EXISTS, false));
        const { assert!(DEFAULT_CREATE_IF_NOT_EXISTS, "the API's default is true") };
        let spec = parse(json!({"type": "pvc", "claimName": "c1",
            "CreateIfNotExists": "false", "deleteonsandboxtermination": true}))
        .unwrap();
        assert_eq!(pvc_of(&spec), ("c1", false, true));
        for option in ["createIfNotExists", "deleteOnSandboxTermination"] {
            let e = parse(json!({"type": "pvc", "claimName": "c1", option: "maybe"})).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("option `{option}`=\"maybe\" must be true or false")
            );
        }
        // The API's provisioning hints have no Docker meaning: translate
        // drops them with a warning, the plugin does not take them.
        for hint in ["storageClass", "storage", "accessModes"] {
            let e = parse(json!({"type": "pvc", "claimName": "c1", hint: "x"})).unwrap_err();
            assert!(matches!(e, SpecError::UnknownOption { .. }), "{hint}: {e}");
        }
    }

    #[test]
    fn records_written_before_the_lifecycle_fields_keep_refusing_missing_claims() {
        let old = r#"{"backend":{"type":"pvc","claim_name":"team-data"},"read_only":false}"#;
        let spec: crate::spec::VolumeSpec = serde_json::from_str(old).unwrap();
        assert_eq!(pvc_of(&spec), ("team-data", false, false));
        let spec = parse(json!({"type": "pvc", "claimName": "c1",
            "deleteOnSandboxTermination": "yes"}))
        .unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        let back: crate::spec::VolumeSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, spec, "{text}");
    }
}
