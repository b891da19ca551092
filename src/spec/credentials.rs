//! Where an object volume's keys come from: nothing (anonymous), a
//! credential profile (`credentials=NAME`), inline keys, or a source the
//! mount asks itself (`credentialSource`: an ECS RAM role, the AWS default
//! chain). No error here ever holds a key.

use super::error::SpecError;
use super::model::Credentials;
use super::opts::Opts;

const HINT_KEY: &str = "give the key or leave the option out";

/// Where the keys come from. A profile and inline keys together would make
/// it unclear which one a mount uses, so that is refused.
pub(super) fn parse_credentials(opts: &Opts) -> Result<Credentials, SpecError> {
    let source = opts.value("credentialSource", parse_source)?;
    let role = opts.value("ramRole", parse_role)?;
    let endpoint = opts.value("metadataEndpoint", parse_endpoint)?;
    if let Some(source) = source {
        let given: Vec<String> = [
            "credentials",
            "accessKeyId",
            "accessKeySecret",
            "sessionToken",
        ]
        .into_iter()
        .filter(|k| opts.has(k))
        .map(|k| format!("`{k}`"))
        .collect();
        if !given.is_empty() {
            return Err(SpecError::SourceAndKeys {
                keys: given.join(", "),
            });
        }
        return match source {
            Source::EcsRamRole => Ok(Credentials::EcsRamRole { role, endpoint }),
            Source::Aws if role.is_some() => Err(SpecError::OnlyWithSource {
                option: "ramRole",
                with: ECS_RAM_ROLE,
            }),
            Source::Aws => Ok(Credentials::Aws { endpoint }),
        };
    }
    if role.is_some() {
        return Err(SpecError::OnlyWithSource {
            option: "ramRole",
            with: ECS_RAM_ROLE,
        });
    }
    if endpoint.is_some() {
        return Err(SpecError::OnlyWithSource {
            option: "metadataEndpoint",
            with: "ecsRamRole or credentialSource=aws",
        });
    }
    let id = opts.get("accessKeyId");
    let secret = opts.get("accessKeySecret");
    let token = opts.get("sessionToken");
    if let Some(name) = opts.get("credentials") {
        let given: Vec<String> = ["accessKeyId", "accessKeySecret", "sessionToken"]
            .into_iter()
            .filter(|k| opts.has(k))
            .map(|k| format!("`{k}`"))
            .collect();
        if !given.is_empty() {
            return Err(SpecError::CredentialsAndKeys {
                keys: given.join(", "),
            });
        }
        if !crate::credentials::is_valid_profile_name(name) {
            return Err(SpecError::BadProfileName(name.to_string()));
        }
        return Ok(Credentials::Profile {
            name: name.to_string(),
        });
    }
    match (id, secret) {
        (None, None) if token.is_some() => Err(SpecError::TokenWithoutKeys),
        (None, None) => Ok(Credentials::Default),
        (Some(_), None) => Err(SpecError::HalfKeyPair {
            missing: "accessKeySecret",
            given: "accessKeyId",
        }),
        (None, Some(_)) => Err(SpecError::HalfKeyPair {
            missing: "accessKeyId",
            given: "accessKeySecret",
        }),
        (Some(id), Some(secret)) => Ok(Credentials::Inline {
            access_key_id: check_key("accessKeyId", id)?,
            access_key_secret: check_key("accessKeySecret", secret)?,
            session_token: token.map(|t| check_key("sessionToken", t)).transpose()?,
        }),
    }
}

const ECS_RAM_ROLE: &str = "ecsRamRole";

/// The values of `credentialSource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    EcsRamRole,
    Aws,
}

fn parse_source(value: &str) -> Option<Source> {
    match value.trim() {
        v if v.eq_ignore_ascii_case(ECS_RAM_ROLE) => Some(Source::EcsRamRole),
        v if v.eq_ignore_ascii_case("aws") => Some(Source::Aws),
        _ => None,
    }
}

/// A RAM role name as Alibaba Cloud allows it: 1–64 letters, digits,
/// `.`, `-` or `_`.
fn parse_role(value: &str) -> Option<String> {
    let v = value.trim();
    let ok = (1..=64).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    ok.then(|| v.to_string())
}

/// `http://HOST[:PORT]`: where the metadata service answers (plain HTTP,
/// as the real ones do; no path, the mount appends the service's own).
fn parse_endpoint(value: &str) -> Option<String> {
    let v = value.trim().trim_end_matches('/');
    let host = v.strip_prefix("http://")?;
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    ok.then(|| v.to_string())
}

/// A key's error names the option only, never the value.
fn check_key(option: &'static str, value: &str) -> Result<String, SpecError> {
    if value.is_empty() {
        return Err(SpecError::EmptyOption {
            option,
            hint: HINT_KEY,
        });
    }
    if !crate::credentials::is_clean_key(value) {
        return Err(SpecError::BadKey(option));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;
    use serde_json::json;

    #[test]
    fn credentials_profile_inline_and_default() {
        let spec = parse(with(&s3(), json!({"credentials": "team-a"}))).unwrap();
        assert_eq!(
            object(&spec).credentials,
            Credentials::Profile {
                name: "team-a".into()
            }
        );
        let spec = parse(with(
            &ossfs(),
            json!({"accessKeyId": "id", "accessKeySecret": "sec"}),
        ))
        .unwrap();
        assert_eq!(
            object(&spec).credentials,
            Credentials::Inline {
                access_key_id: "id".into(),
                access_key_secret: "sec".into(),
                session_token: None
            }
        );
        assert_eq!(
            object(&parse(ossfs()).unwrap()).credentials,
            Credentials::Default
        );
    }

    #[test]
    fn credentials_errors() {
        let e = err(with(
            &s3(),
            json!({"credentials": "a", "accessKeyId": "i", "sessionToken": "t"}),
        ));
        assert_eq!(
            e.to_string(),
            "option `credentials` cannot be combined with `accessKeyId`, `sessionToken`; give either a credential profile name or the keys"
        );
        let e = err(with(&s3(), json!({"accessKeyId": "i"})));
        assert_eq!(
            e,
            SpecError::HalfKeyPair {
                missing: "accessKeySecret",
                given: "accessKeyId"
            }
        );
        assert!(
            e.to_string()
                .starts_with("option `accessKeySecret` is required when `accessKeyId` is given;")
        );
        let e = err(with(&ossfs(), json!({"accessKeySecret": "s"})));
        assert_eq!(
            e,
            SpecError::HalfKeyPair {
                missing: "accessKeyId",
                given: "accessKeySecret"
            }
        );
        let e = err(with(&s3(), json!({"sessionToken": "t"})));
        assert_eq!(e, SpecError::TokenWithoutKeys);
        let e = err(with(
            &s3(),
            json!({"accessKeyId": "", "accessKeySecret": "s"}),
        ));
        assert_eq!(
            e.to_string(),
            "option `accessKeyId` is empty; give the key or leave the option out"
        );
        let e = err(with(
            &s3(),
            json!({"accessKeyId": "i", "accessKeySecret": "s\n"}),
        ));
        assert_eq!(e, SpecError::BadKey("accessKeySecret"));
        let e = err(with(
            &s3(),
            json!({"accessKeyId": "i", "accessKeySecret": "s", "sessionToken": "a b"}),
        ));
        assert_eq!(e, SpecError::BadKey("sessionToken"));
    }

    #[test]
    fn profile_names() {
        for good in ["a", "team_a.prod-1", "x.", &"a".repeat(64)] {
            assert!(
                parse(with(&s3(), json!({"credentials": good}))).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "../x",
            "a/b",
            "a b",
            &"a".repeat(65),
            "a\0",
        ] {
            let e = err(with(&s3(), json!({"credentials": bad})));
            assert_eq!(e, SpecError::BadProfileName(bad.into()), "{bad:?}");
        }
    }

    /// Distinctive secrets through every error path reachable with keys
    /// present: no message and no Debug output may contain them.
    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        const ID: &str = "AKID-zz-7Wb-unique";
        const SECRET: &str = "SECRET-zz-9Qx-unique";
        const TOKEN: &str = "TOKEN-zz-3Jk-unique";
        let keys = json!({"accessKeyId": ID, "accessKeySecret": SECRET, "sessionToken": TOKEN});
        let leaks = |text: &str| [ID, SECRET, TOKEN].iter().any(|s| text.contains(s));

        let faults = [
            json!({"bucket": "Bad_Bucket"}),
            json!({"bucket": ""}),
            json!({"endpoint": "ftp://x"}),
            json!({"endpoint": ""}),
            json!({"endpoint": format!("http://{ID}:{SECRET}@h")}),
            json!({"region": "a b"}),
            json!({"region": ""}),
            json!({"prefix": "a/../b"}),
            json!({"path": "a/../b"}),
            json!({"pathStyle": "x"}),
            json!({"readOnly": "x"}),
            json!({"subPath": "/x"}),
            json!({"upload": "x"}),
            json!({"metadataTtl": "x"}),
            json!({"uid": "x"}),
            json!({"gid": "x"}),
            json!({"umask": "x"}),
            json!({"version": "3"}),
            json!({"options": "use_cache=/tmp"}),
            json!({"options": "uid=x"}),
            json!({"options": "uid=1,uid=2"}),
            json!({"options": "uid=1", "uid": "2"}),
            json!({"options": "ro", "readOnly": "false"}),
            json!({"credentials": "team"}),
            json!({"credentials": "../x"}),
            json!({"accessKeySecret": null}),
            json!({"accessKeyId": null}),
            json!({"accessKeyId": null, "accessKeySecret": null}),
            json!({"accessKeySecret": format!("{SECRET} ")}),
            json!({"accessKeyId": format!("{ID}\n")}),
            json!({"sessionToken": format!("{TOKEN}\t")}),
            json!({"accessKeyId": ""}),
            json!({"ACCESSKEYID": ID}),
            json!({"sessionToken": [TOKEN]}),
            json!({"secretKey": SECRET}),
            json!({"type": "host", "path": "/x"}),
            json!({"type": "nfs"}),
        ];
        let mut reached = 0;
        for base in [s3(), ossfs()] {
            let full = with(&base, keys.clone());
            let spec = parse(full.clone()).unwrap();
            let debug = format!("{spec:?}");
            assert!(!leaks(&debug), "{debug}");
            for fault in &faults {
                let mut opts = with(&full, fault.clone());
                // `null` in a fault means "leave this key out".
                let map = opts.as_object_mut().unwrap();
                map.retain(|_, v| !v.is_null());
                let Err(e) = parse(opts.clone()) else {
                    continue;
                };
                reached += 1;
                let text = format!("{e} || {e:?}");
                assert!(!leaks(&text), "{opts}: {text}");
            }
        }
        assert!(reached >= 60, "only {reached} error paths reached");
    }

    #[test]
    fn credential_sources_and_their_options() {
        let spec = parse(with(
            &s3(),
            json!({"credentialSource": "ecsRamRole", "ramRole": "sandbox-writer",
                   "metadataEndpoint": "http://127.0.0.1:8080/"}),
        ))
        .unwrap();
        assert_eq!(
            object(&spec).credentials,
            Credentials::EcsRamRole {
                role: Some("sandbox-writer".into()),
                endpoint: Some("http://127.0.0.1:8080".into())
            }
        );
        let spec = parse(with(&ossfs(), json!({"credentialSource": "ECSRAMROLE"}))).unwrap();
        assert_eq!(
            object(&spec).credentials,
            Credentials::EcsRamRole {
                role: None,
                endpoint: None
            }
        );
        let spec = parse(with(&s3(), json!({"credentialSource": "aws"}))).unwrap();
        assert_eq!(
            object(&spec).credentials,
            Credentials::Aws { endpoint: None }
        );
        assert_eq!(object(&spec).credentials.describe(), "AWS default chain");
    }

    #[test]
    fn credential_source_errors() {
        let e = err(with(
            &s3(),
            json!({"credentialSource": "aws", "credentials": "a", "accessKeyId": "i"}),
        ));
        assert_eq!(
            e.to_string(),
            "option `credentialSource` cannot be combined with `credentials`, `accessKeyId`; give either a credential source, a credential profile name or the keys"
        );
        let e = err(with(&s3(), json!({"ramRole": "r"})));
        assert_eq!(
            e.to_string(),
            "option `ramRole` is only accepted with credentialSource=ecsRamRole"
        );
        let e = err(with(
            &s3(),
            json!({"credentialSource": "aws", "ramRole": "r"}),
        ));
        assert_eq!(
            e,
            SpecError::OnlyWithSource {
                option: "ramRole",
                with: ECS_RAM_ROLE
            }
        );
        let e = err(with(&s3(), json!({"metadataEndpoint": "http://x"})));
        assert!(matches!(
            e,
            SpecError::OnlyWithSource {
                option: "metadataEndpoint",
                ..
            }
        ));
        for (option, value) in [
            ("credentialSource", "vault"),
            ("ramRole", "a/b"),
            ("metadataEndpoint", "https://x/y"),
        ] {
            let e = err(with(
                &s3(),
                json!({"credentialSource": "ecsRamRole", option: value}),
            ));
            assert!(e.to_string().contains(option), "{e}");
        }
    }
}
