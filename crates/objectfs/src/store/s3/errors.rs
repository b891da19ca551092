//! How an S3 error answer becomes a [`StoreError`]: by SDK failure kind,
//! HTTP status and S3 error code, into not-found, access denied,
//! precondition failed, throttled, transient or permanent, with a message
//! that names the request.

use crate::store::StoreError;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Classifies an SDK error of request `op` on `key`; `context` names the
/// request in the message.
pub(super) fn classify<E>(
    op: &'static str,
    key: &str,
    context: &str,
    err: &SdkError<E>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let mut e = classify_service(
                op,
                key,
                context,
                status,
                service.err().code(),
                service.err().message(),
            );
            // A 2xx the SDK still calls an error (an <Error> document in a
            // 200 reply, or an unparsable body): say what the SDK saw.
            if (200..300).contains(&status)
                && let Some(text) = e.message_mut()
            {
                text.push_str(&format!(": {}", DisplayErrorContext(err)));
            }
            e
        }
        SdkError::TimeoutError(_) => {
            StoreError::transient(op, key, format!("{context}: timed out"))
        }
        SdkError::DispatchFailure(failure) => {
            let text = format!("{context}: {}", DisplayErrorContext(err));
            if failure.is_user() {
                StoreError::permanent(op, key, text)
            } else {
                StoreError::transient(op, key, text)
            }
        }
        // A response that could not be read or parsed: usually a dropped
        // connection or a proxy's error page.
        SdkError::ResponseError(_) => {
            StoreError::transient(op, key, format!("{context}: {}", DisplayErrorContext(err)))
        }
        SdkError::ConstructionFailure(_) => {
            StoreError::permanent(op, key, format!("{context}: {}", DisplayErrorContext(err)))
        }
        _ => StoreError::transient(op, key, format!("{context}: {}", DisplayErrorContext(err))),
    }
}

/// Classifies an error answer from the service by HTTP status and S3 code.
/// Also the failure of one key inside a 200 answer (a DeleteObjects
/// result's `<Error>` entry), with that answer's status.
pub(super) fn classify_service(
    op: &'static str,
    key: &str,
    context: &str,
    status: u16,
    code: Option<&str>,
    message: Option<&str>,
) -> StoreError {
    const NOT_FOUND: &[&str] = &["NoSuchKey", "NotFound", "NoSuchUpload"];
    const THROTTLED: &[&str] = &[
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
    ];
    const TRANSIENT: &[&str] = &[
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    ];
    // The keys or token are unknown, wrong or expired (S3 and OSS codes).
    const CREDENTIALS: &[&str] = &[
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidToken",
        "InvalidSecurityToken",
        "SecurityTokenExpired",
    ];
    // A conditional write refused: the condition no longer holds (412), a
    // concurrent write to the key won (S3's 409), an object is there
    // (OSS's 409 for `x-oss-forbid-overwrite`).
    const PRECONDITION: &[&str] = &[
        "PreconditionFailed",
        "ConditionalRequestConflict",
        "FileAlreadyExists",
    ];
    if let Some(code) = code {
        if NOT_FOUND.contains(&code) {
            return StoreError::not_found(op, key);
        }
    } else if status == 404 {
        // HEAD answers have no body, hence no code.
        return StoreError::not_found(op, key);
    }
    let reason = http_reason(status);
    let text = match (code, message) {
        (Some(c), Some(m)) if !m.is_empty() => format!("{c}: {m}"),
        (Some(c), _) => format!("{c}: HTTP {status} {reason}"),
        (None, Some(m)) if !m.is_empty() => format!("HTTP {status} {reason}: {m}"),
        (None, _) => format!("HTTP {status} {reason}"),
    };
    let text = format!("{text} ({context}, HTTP {status})");
    if status == 429 || code.is_some_and(|c| THROTTLED.contains(&c)) {
        StoreError::throttled(op, key, text)
    } else if status >= 500 || status == 408 || code.is_some_and(|c| TRANSIENT.contains(&c)) {
        StoreError::transient(op, key, text)
    } else if status == 401 || status == 403 || code.is_some_and(|c| CREDENTIALS.contains(&c)) {
        StoreError::access_denied(op, key, text)
    } else if status == 412 || code.is_some_and(|c| PRECONDITION.contains(&c)) {
        StoreError::precondition_failed(op, key, text)
    } else {
        StoreError::permanent(op, key, text)
    }
}

fn http_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_classified() {
        let c = |status, code: Option<&str>| {
            classify_service("Op", "k", "Op b/k", status, code, Some("msg"))
        };
        let not_found = StoreError::not_found("Op", "k");
        assert_eq!(c(404, Some("NoSuchKey")), not_found);
        assert_eq!(c(404, Some("NoSuchUpload")), not_found);
        assert_eq!(c(404, None), not_found);
        assert!(matches!(
            c(404, Some("NoSuchBucket")),
            StoreError::Permanent { .. }
        ));
        assert_eq!(
            c(403, Some("AccessDenied")),
            StoreError::access_denied("Op", "k", "AccessDenied: msg (Op b/k, HTTP 403)")
        );
        assert_eq!(
            c(403, Some("AccessDenied")).to_string(),
            "AccessDenied: msg (Op b/k, HTTP 403)"
        );
        // Keys that are wrong, unknown or expired can be fixed while the
        // mount runs (a rotated profile, a refreshed token): denied, not
        // permanent.
        for (status, code) in [
            (403, Some("SignatureDoesNotMatch")),
            (403, Some("InvalidAccessKeyId")),
            (400, Some("ExpiredToken")),
            (403, Some("SecurityTokenExpired")),
            (400, Some("InvalidToken")),
            (403, None),
            (401, None),
        ] {
            assert!(
                matches!(c(status, code), StoreError::AccessDenied { .. }),
                "{status} {code:?}"
            );
        }
        assert!(matches!(
            c(400, Some("InvalidRequest")),
            StoreError::Permanent { .. }
        ));
        for (status, code) in [
            (412, Some("PreconditionFailed")),
            (412, None),
            (409, Some("ConditionalRequestConflict")),
            (409, Some("FileAlreadyExists")),
        ] {
            assert!(
                matches!(c(status, code), StoreError::PreconditionFailed { .. }),
                "{status} {code:?}"
            );
        }
        assert!(matches!(
            c(503, Some("SlowDown")),
            StoreError::Throttled { .. }
        ));
        assert!(matches!(c(429, None), StoreError::Throttled { .. }));
        assert!(matches!(c(500, None), StoreError::Transient { .. }));
        assert!(c(503, Some("SlowDown")).is_transient());
        assert!(c(500, Some("InternalError")).is_transient());
        assert!(c(502, None).is_transient());
        assert!(c(429, None).is_transient());
        assert!(c(400, Some("RequestTimeout")).is_transient());
        assert!(c(409, Some("OperationAborted")).is_transient());
    }
}
