//! An object volume's `endpoint`, checked by the store's own endpoint
//! parser (pure, no network) so a volume that passes Create cannot fail at
//! Mount on its endpoint's shape. The one place spec calls the store.

use super::error::SpecError;

/// Checked by the store's own endpoint parser (pure, no network), so a
/// volume that passes Create cannot fail at Mount on its endpoint's shape.
/// Stored trimmed, since that is what the store uses.
pub(super) fn parse_endpoint(value: &str) -> Result<String, SpecError> {
    let endpoint = value.trim();
    // Refused before the store's parser sees it: its message quotes the
    // endpoint, and user information may be a password.
    if endpoint.contains('@') {
        return Err(SpecError::EndpointUserInfo);
    }
    let config = objectfs::store::s3::S3Config {
        endpoint: Some(endpoint.to_string()),
        ..Default::default()
    };
    match objectfs::store::s3::resolve_endpoint(&config) {
        Ok(_) => Ok(endpoint.to_string()),
        // Our sentence names the endpoint already: only the reason.
        Err(e) => Err(SpecError::BadEndpoint {
            value: endpoint.to_string(),
            reason: e.reason(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;
    use serde_json::json;

    #[test]
    fn s3_endpoint_scheme_is_optional_http_or_https() {
        for (given, stored) in [
            ("s3.us-west-2.amazonaws.com", "s3.us-west-2.amazonaws.com"),
            (
                "https://s3.us-west-2.amazonaws.com",
                "https://s3.us-west-2.amazonaws.com",
            ),
            ("HTTP://127.0.0.1:9000", "HTTP://127.0.0.1:9000"),
            ("http://[::1]:9000/", "http://[::1]:9000/"),
            (
                "oss-cn-hangzhou.aliyuncs.com",
                "oss-cn-hangzhou.aliyuncs.com",
            ),
            ("  localhost:9000\t", "localhost:9000"),
        ] {
            let spec = parse(with(&s3(), json!({"endpoint": given}))).unwrap();
            assert_eq!(object(&spec).endpoint.as_deref(), Some(stored), "{given}");
        }
        for (bad, reason) in [
            ("ftp://x", "the scheme must be http or https"),
            ("http://", "it has no host"),
            ("http://h:port", "the port is not a number"),
            ("a b", "spaces or control characters"),
            ("http://h/?q", "query or fragment"),
            ("http://h!st", "characters a host name cannot have"),
        ] {
            let e = err(with(&s3(), json!({"endpoint": bad})));
            assert!(matches!(e, SpecError::BadEndpoint { .. }), "{bad}: {e:?}");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!(
                    "option `endpoint`={:?} is not an endpoint (",
                    bad.trim()
                )),
                "{msg}"
            );
            assert!(msg.contains(reason), "{msg}");
            // The store's own wording of the endpoint is not repeated.
            assert!(!msg.contains("the S3 endpoint"), "{msg}");
            assert_sentence(&e);
        }
        let e = err(with(&s3(), json!({"endpoint": " "})));
        assert!(
            matches!(
                e,
                SpecError::EmptyOption {
                    option: "endpoint",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn endpoint_with_user_information_is_refused_without_echo() {
        let e = err(with(
            &s3(),
            json!({"endpoint": "http://AKID:pa55word@minio:9000"}),
        ));
        assert_eq!(e, SpecError::EndpointUserInfo);
        assert!(!e.to_string().contains("pa55word"));
    }
}
