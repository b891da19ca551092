//! Every error a user can cause with `-o key=value`: [`SpecError`], each
//! variant one sentence declared once, and [`printable`], which escapes what
//! a caller sent before an error quotes it.

use super::nfs::NFS_MOUNT_OPTIONS;
use super::ossfs_options::ossfs_option_names;
use super::table::ALL_TYPES;

/// naming the option and what is accepted. No variant ever holds the value
/// of `accessKeyId`, `accessKeySecret` or `sessionToken`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("option `type` is required; set it to one of: {types}", types = ALL_TYPES.join(", "))]
    MissingType,
    #[error("type={0:?} is not a volume type; use one of: {types}", types = ALL_TYPES.join(", "))]
    UnknownType(String),
    #[error("option `{}` is not accepted for type={ty}; accepted options: {accepted}", printable(.key))]
    UnknownOption {
        key: String,
        ty: String,
        accepted: String,
    },
    #[error(
        "option `{}` is given more than once (option names are case-insensitive); give it once",
        printable(.0)
    )]
    Duplicate(String),
    #[error("option `{}` must be a string, number or boolean", printable(.0))]
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
        "option `subPath`={0:?} must be a relative path inside the volume (no leading `/`, no `..` components, no NUL, components of at most 255 bytes), e.g. subPath=work/run1"
    )]
    BadSubPath(String),
    #[error("option `{option}`={value:?} must be true or false")]
    BadBool { option: &'static str, value: String },
    #[error("option `{option}` is required for type={ty}; set it, e.g. {example}")]
    MissingOption {
        option: &'static str,
        ty: &'static str,
        example: &'static str,
    },
    #[error("option `{option}` is empty; {hint}")]
    EmptyOption {
        option: &'static str,
        hint: &'static str,
    },
    #[error("option `{option}`={value:?} must be {expected}")]
    BadValue {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "option `bucket`={0:?} is not an S3 bucket name; use 3–63 lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit, without `..` and not shaped like an IP address, e.g. bucket=my-bucket"
    )]
    BadS3Bucket(String),
    #[error(
        "option `bucket`={0:?} is not an OSS bucket name; use 3–63 lowercase letters, digits and `-`, starting and ending with a letter or digit, e.g. bucket=my-bucket"
    )]
    BadOssBucket(String),
    #[error(
        "option `region`={0:?} is not a region name; use at most 64 letters, digits and `-`, e.g. region=us-west-2"
    )]
    BadRegion(String),
    #[error(
        "option `endpoint`={value:?} is not an endpoint ({reason}); give a host name or an http(s) URL, e.g. endpoint=oss-cn-hangzhou.aliyuncs.com or endpoint=http://127.0.0.1:9000"
    )]
    BadEndpoint { value: String, reason: String },
    #[error(
        "option `endpoint` must not contain user information (`user:password@`); give the keys with accessKeyId and accessKeySecret, or credentials=NAME"
    )]
    EndpointUserInfo,
    #[error(
        "option `{option}`={value:?} must be a relative key prefix (a leading `/` is ignored; no empty, `.` or `..` components, no control characters, at most 1024 bytes), e.g. {option}=agents/run1"
    )]
    BadPrefix { option: &'static str, value: String },
    #[error(
        "option `credentials`={0:?} is not a credential profile name; use 1–64 letters, digits, `_`, `.` or `-`, not starting with `.`, e.g. credentials=team-a"
    )]
    BadProfileName(String),
    #[error(
        "option `credentials` cannot be combined with {keys}; give either a credential profile name or the keys"
    )]
    CredentialsAndKeys { keys: String },
    #[error(
        "option `{missing}` is required when `{given}` is given; give both keys, or neither (then credentials=NAME names a profile, and no credentials at all means anonymous access)"
    )]
    HalfKeyPair {
        missing: &'static str,
        given: &'static str,
    },
    #[error(
        "option `sessionToken` is only accepted together with `accessKeyId` and `accessKeySecret`"
    )]
    TokenWithoutKeys,
    #[error(
        "option `credentialSource` cannot be combined with {keys}; give either a credential source, a credential profile name or the keys"
    )]
    SourceAndKeys { keys: String },
    #[error("option `{option}` is only accepted with credentialSource={with}")]
    OnlyWithSource {
        option: &'static str,
        with: &'static str,
    },
    #[error(
        "option `{0}` contains whitespace or control characters, which no key has; give the key exactly as issued"
    )]
    BadKey(&'static str),
    #[error(
        "ossfs option `{}` in `options` is not an ossfs {version} option this plugin knows; remove it, or use one it maps or accepts: {known}",
        printable(.option),
        known = ossfs_option_names(.version).join(", ")
    )]
    UnsupportedOssfsOption { option: String, version: String },
    #[error(
        "ossfs option `{option}` in `options` is an ossfs {of} option, and this volume is version={version}; remove it or set version={of}"
    )]
    OssfsOptionOfOtherVersion {
        option: &'static str,
        of: &'static str,
        version: String,
    },
    #[error("ossfs option `{option}` in `options` is refused: {instead}")]
    RefusedOssfsOption {
        option: &'static str,
        instead: &'static str,
    },
    #[error("ossfs option `{}` in `options` is not valid; {expected}", printable(.item))]
    BadOssfsOption { item: String, expected: String },
    #[error("ossfs option `{0}` is given twice in `options` with different values; give it once")]
    DuplicateOssfsOption(String),
    #[error(
        "option `{option}`={value:?} conflicts with `{}` in `options`; give the setting in one place or make the two agree",
        printable(.item)
    )]
    OptionsConflict {
        option: &'static str,
        value: String,
        item: String,
    },
    #[error(
        "option `claimName`={0:?} is not a claim name; use 1–253 lowercase letters, digits and `-`, starting and ending with a letter or digit, e.g. claimName=team-data"
    )]
    BadClaimName(String),
    #[error(
        "option `server`={0:?} is not an NFS server; give a host name, an IPv4 address or an IPv6 address in brackets, e.g. server=nfs.example.com"
    )]
    BadNfsServer(String),
    #[error(
        "option `path`={0:?} must be the export's absolute, normalised path, e.g. path=/exports/team"
    )]
    BadNfsPath(String),
    #[error(
        "NFS option `{0}` in `options` is not supported; supported: {supported}",
        supported = NFS_MOUNT_OPTIONS.join(", ")
    )]
    UnsupportedNfsOption(String),
    #[error(
        "NFS option `{}` in `options` is malformed; give name or name=value with letters, digits, `.`, `_` or `-` only",
        printable(.0)
    )]
    BadNfsOption(String),
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), for errors that
/// quote what a caller sent (an option name, an item of `options`, a volume
/// name): an error is one line, and a terminal shows it without escape
/// sequences.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::spec::test_util::*;
    use serde_json::json;

    #[test]
    fn every_error_is_one_sentence() {
        let cases = [
            json!({}),
            json!({"type": "ftp"}),
            json!({"type": "nfs"}),
            with(&s3(), json!({"x": 1})),
            with(&s3(), json!({"bucket": "A"})),
            with(&ossfs(), json!({"bucket": "a.b"})),
            with(&s3(), json!({"region": "a b"})),
            with(&s3(), json!({"endpoint": "ftp://x"})),
            with(&s3(), json!({"endpoint": "http://u@x"})),
            with(&s3(), json!({"prefix": ".."})),
            with(&s3(), json!({"metadataTtl": "-1"})),
            with(&s3(), json!({"credentials": ".x"})),
            with(&s3(), json!({"credentials": "x", "accessKeyId": "i"})),
            with(&s3(), json!({"accessKeyId": "i"})),
            with(&s3(), json!({"sessionToken": "t"})),
            with(&ossfs(), json!({"options": "x"})),
            with(&ossfs(), json!({"options": "ro=1"})),
            with(&ossfs(), json!({"options": "ro", "readOnly": false})),
        ];
        for case in cases {
            assert_sentence(&err(case));
        }
    }
}
