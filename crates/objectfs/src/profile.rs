//! Credential profiles: object-storage keys kept on the plugin's side, so a
//! volume can say `credentials=NAME` instead of passing its keys through
//! Docker (which shows every option in `docker volume inspect`).
//!
//! A profile is the file `DIR/NAME.json`:
//!
//! ```json
//! {"accessKeyId": "…", "accessKeySecret": "…", "sessionToken": "…",
//!  "expiration": "2025-06-01T12:00:00Z"}
//! ```
//!
//! (`sessionToken` and `expiration` optional; `expiration` is an RFC 3339
//! time, as STS answers and credential sidecars write it), readable by its
//! owner only. The plugin checks at Create that the file exists
//! ([`profile_exists`]) and reads it at every Mount ([`load_profile`]); a
//! mount whose keys come from the profile reads it again itself when the
//! file changes and before its `expiration` (`store::s3::credentials`).
//! Nothing here ever puts a key, or any other part of a profile file's
//! content, into an error message or a `Debug` output.
//!
//! The plugin uses this module as its `credentials` module; it lives in
//! objectfs because the mount process reads profiles too.

use serde_json::{Map, Value};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where profiles live unless the operator says otherwise.
pub const DEFAULT_DIR: &str = "/etc/opensandbox-volume/credentials";

/// Longest profile name.
const MAX_NAME_LEN: usize = 64;
/// A profile is three short strings; anything much larger is not a profile,
/// and reading it whole would let a wrong path eat memory.
const MAX_FILE_LEN: u64 = 64 * 1024;
/// The fields a profile file may have, in the spelling of the volume options.
const FIELDS: &[&str] = &[
    "accessKeyId",
    "accessKeySecret",
    "sessionToken",
    "expiration",
];

/// Keys read from a profile.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub session_token: Option<String>,
    /// When the keys stop working, if the profile says (temporary keys).
    pub expiration: Option<SystemTime>,
}

/// Debug by hand: the key id is treated as a secret too, since together
/// with a leaked secret it is all an attacker needs.
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access_key_id", &"<redacted>")
            .field("access_key_secret", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expiration", &self.expiration)
            .finish()
    }
}

/// Every way a profile can be unusable; each is one sentence naming the
/// profile or its file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "{0:?} is not a credential profile name; use 1–64 letters, digits, `_`, `.` or `-`, not starting with `.`, e.g. credentials=team-a"
    )]
    BadName(String),
    #[error(
        "credential profile {name:?} does not exist; create {path} (mode 0600) holding {{\"accessKeyId\": \"…\", \"accessKeySecret\": \"…\"}}",
        path = path.display()
    )]
    Missing { name: String, path: PathBuf },
    #[error(
        "credential profile {name:?} is not a regular file ({path}); make it a JSON file holding the keys",
        path = path.display()
    )]
    NotAFile { name: String, path: PathBuf },
    #[error(
        "credential profile {name:?} cannot be read from {path} ({source}); check that the plugin can read it",
        path = path.display()
    )]
    Unreadable {
        name: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "credential profile file {path} is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`",
        path = path.display()
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "credential profile file {path} is not valid: {reason}; it must be a JSON object with the string fields accessKeyId, accessKeySecret and optionally sessionToken and expiration (an RFC 3339 time)",
        path = path.display()
    )]
    Malformed { path: PathBuf, reason: String },
}

/// The profile name rule: short, one path component, not hidden. Because no
/// name can contain `/` or start with `.`, `DIR/NAME.json` never leaves DIR.
pub fn is_valid_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// True for a key as issued by a provider: no whitespace or control
/// characters, which only get there by a bad copy and would otherwise
/// surface much later as a signature mismatch.
pub fn is_clean_key(key: &str) -> bool {
    !key.is_empty() && !key.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The file a profile lives in, after checking the name.
pub fn profile_path(dir: &Path, name: &str) -> Result<PathBuf, CredentialsError> {
    if !is_valid_profile_name(name) {
        return Err(CredentialsError::BadName(name.to_string()));
    }
    Ok(dir.join(format!("{name}.json")))
}

/// For Create: the profile's file exists and is a file. Its content is
/// checked at every Mount, so keys can be put in place or rotated later.
pub fn profile_exists(dir: &Path, name: &str) -> Result<(), CredentialsError> {
    let path = profile_path(dir, name)?;
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => Err(CredentialsError::NotAFile {
            name: name.to_string(),
            path,
        }),
        Err(e) => Err(open_error(name, path, e)),
    }
}

/// For Mount: reads and checks a profile's keys.
pub fn load_profile(dir: &Path, name: &str) -> Result<Keys, CredentialsError> {
    let path = profile_path(dir, name)?;
    let text = read_private_file(name, &path)?;
    parse_profile(&path, &text)
}

fn open_error(name: &str, path: PathBuf, e: io::Error) -> CredentialsError {
    if e.kind() == io::ErrorKind::NotFound {
        CredentialsError::Missing {
            name: name.to_string(),
            path,
        }
    } else {
        CredentialsError::Unreadable {
            name: name.to_string(),
            path,
            source: e,
        }
    }
}

/// Reads the file, refusing one that others can read: keys that have
/// already leaked to every local user are not worth protecting here, and a
/// loud refusal gets the mode fixed. The mode is checked on the opened file
/// so a swap between check and read cannot slip through.
fn read_private_file(name: &str, path: &Path) -> Result<String, CredentialsError> {
    let unreadable = |source| CredentialsError::Unreadable {
        name: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(|e| open_error(name, path.to_path_buf(), e))?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(CredentialsError::NotAFile {
            name: name.to_string(),
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CredentialsError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(malformed(path, "it is larger than 64 KiB"));
    }
    let mut text = String::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => malformed(path, "it is not UTF-8 text"),
            _ => unreadable(e),
        })?;
    Ok(text)
}

fn malformed(path: &Path, reason: &str) -> CredentialsError {
    CredentialsError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Parses a profile by hand rather than with a derived Deserialize: serde's
/// messages quote the offending value or field name, which here would be a
/// key. Every reason below names only our own field names.
fn parse_profile(path: &Path, text: &str) -> Result<Keys, CredentialsError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // Only the position: serde_json's syntax messages carry no content,
        // but being explicit keeps that true whatever it prints tomorrow.
        malformed(
            path,
            &format!(
                "it is not JSON (error at line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let Value::Object(fields) = value else {
        return Err(malformed(path, "it is not a JSON object"));
    };
    if fields.keys().any(|k| !FIELDS.contains(&k.as_str())) {
        return Err(malformed(
            path,
            "it has a field other than accessKeyId, accessKeySecret, sessionToken and expiration (names are case-sensitive)",
        ));
    }
    let access_key_id = required_key(path, &fields, "accessKeyId")?;
    let access_key_secret = required_key(path, &fields, "accessKeySecret")?;
    let session_token = match fields.get("sessionToken") {
        None | Some(Value::Null) => None,
        Some(_) => Some(required_key(path, &fields, "sessionToken")?),
    };
    let expiration = match fields.get("expiration") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_rfc3339(s).ok_or_else(|| {
            malformed(
                path,
                "field `expiration` is not an RFC 3339 time such as 2025-06-01T12:00:00Z",
            )
        })?),
        Some(_) => return Err(malformed(path, "field `expiration` is not a string")),
    };
    Ok(Keys {
        access_key_id,
        access_key_secret,
        session_token,
        expiration,
    })
}

/// An RFC 3339 time (`2025-06-01T12:00:00Z`, with fractional seconds or
/// an offset), as STS and instance metadata services write expirations.
/// (Smithy's `Format::DateTime` refuses offsets; `DateTimeWithOffset`
/// takes both forms.)
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    use aws_smithy_types::date_time::{DateTime, Format};
    let t = DateTime::from_str(s.trim(), Format::DateTimeWithOffset).ok()?;
    SystemTime::try_from(t).ok()
}

fn required_key(
    path: &Path,
    fields: &Map<String, Value>,
    field: &str,
) -> Result<String, CredentialsError> {
    match fields.get(field) {
        None => Err(malformed(path, &format!("field `{field}` is missing"))),
        Some(Value::String(s)) if is_clean_key(s) => Ok(s.clone()),
        Some(Value::String(_)) => Err(malformed(
            path,
            &format!("field `{field}` is empty or contains whitespace or control characters"),
        )),
        Some(_) => Err(malformed(path, &format!("field `{field}` is not a string"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const SECRET: &str = "zz-SECRET-value-9Qx";
    const KEY_ID: &str = "zz-KEYID-value-7Wb";
    const TOKEN: &str = "zz-TOKEN-value-3Jk";

    fn write(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn assert_no_secret(text: &str) {
        for s in [SECRET, KEY_ID, TOKEN] {
            assert!(!text.contains(s), "{s} leaked into: {text}");
        }
    }

    /// The message and the Debug of an error, both checked for secrets.
    fn both(e: &CredentialsError) -> String {
        format!("{e} || {e:?}")
    }

    #[test]
    fn loads_a_profile_with_and_without_token() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a",
            &format!(r#"{{"accessKeyId":"{KEY_ID}","accessKeySecret":"{SECRET}"}}"#),
            0o600,
        );
        let keys = load_profile(dir.path(), "a").unwrap();
        assert_eq!(keys.access_key_id, KEY_ID);
        assert_eq!(keys.access_key_secret, SECRET);
        assert_eq!(keys.session_token, None);
        assert!(profile_exists(dir.path(), "a").is_ok());

        write(
            dir.path(),
            "team_b.prod-1",
            &format!(
                r#"{{"accessKeyId":"{KEY_ID}","accessKeySecret":"{SECRET}","sessionToken":"{TOKEN}"}}"#
            ),
            0o400,
        );
        let keys = load_profile(dir.path(), "team_b.prod-1").unwrap();
        assert_eq!(keys.session_token.as_deref(), Some(TOKEN));
        let debug = format!("{keys:?}");
        assert_no_secret(&debug);
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn an_expiration_is_read_as_a_time() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "sts",
            &format!(
                r#"{{"accessKeyId":"{KEY_ID}","accessKeySecret":"{SECRET}","sessionToken":"{TOKEN}","expiration":"2025-06-01T12:00:00Z"}}"#
            ),
            0o600,
        );
        let keys = load_profile(dir.path(), "sts").unwrap();
        let expected = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_748_779_200);
        assert_eq!(keys.expiration, Some(expected));
        assert_eq!(keys.session_token.as_deref(), Some(TOKEN));
        // The expiration is no secret: Debug shows it, and nothing else.
        let debug = format!("{keys:?}");
        assert!(debug.contains("expiration: Some("), "{debug}");
        assert_no_secret(&debug);

        write(
            dir.path(),
            "n",
            r#"{"accessKeyId":"k","accessKeySecret":"s","expiration":null}"#,
            0o600,
        );
        assert_eq!(load_profile(dir.path(), "n").unwrap().expiration, None);
    }

    #[test]
    fn rfc3339_times_with_fractions_and_offsets() {
        let base = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_748_779_200);
        assert_eq!(parse_rfc3339("2025-06-01T12:00:00Z"), Some(base));
        assert_eq!(
            parse_rfc3339("2025-06-01T12:00:00.250Z"),
            Some(base + std::time::Duration::from_millis(250))
        );
        assert_eq!(parse_rfc3339("2025-06-01T20:00:00+08:00"), Some(base));
        for bad in [
            "",
            "tomorrow",
            "2025-06-01",
            "1748779200",
            "2025-13-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_null_session_token_is_no_token() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a",
            r#"{"accessKeyId":"k","accessKeySecret":"s","sessionToken":null}"#,
            0o600,
        );
        assert_eq!(load_profile(dir.path(), "a").unwrap().session_token, None);
    }

    #[test]
    fn missing_profile_names_the_file_to_create() {
        let dir = tempfile::tempdir().unwrap();
        for err in [
            profile_exists(dir.path(), "nope").unwrap_err(),
            load_profile(dir.path(), "nope").unwrap_err(),
        ] {
            assert!(matches!(err, CredentialsError::Missing { .. }), "{err:?}");
            let msg = err.to_string();
            let file = dir.path().join("nope.json");
            assert!(msg.contains("\"nope\""), "{msg}");
            assert!(msg.contains(&file.display().to_string()), "{msg}");
            assert!(msg.contains("0600"), "{msg}");
        }
    }

    #[test]
    fn a_directory_is_not_a_profile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d.json")).unwrap();
        assert!(matches!(
            profile_exists(dir.path(), "d"),
            Err(CredentialsError::NotAFile { .. })
        ));
        assert!(matches!(
            load_profile(dir.path(), "d"),
            Err(CredentialsError::NotAFile { .. })
        ));
    }

    #[test]
    fn a_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let content = format!(r#"{{"accessKeyId":"{KEY_ID}","accessKeySecret":"{SECRET}"}}"#);
        for mode in [0o644, 0o640, 0o604, 0o610, 0o601] {
            let path = write(dir.path(), "open", &content, mode);
            let err = load_profile(dir.path(), "open").unwrap_err();
            assert!(matches!(err, CredentialsError::TooOpen { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert_no_secret(&both(&err));
        }
    }

    #[test]
    fn malformed_files_are_named_without_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(String, &str)> = vec![
            (format!("{KEY_ID}:{SECRET}"), "not JSON"),
            (format!(r#"{{"accessKeyId":"{KEY_ID}","#), "not JSON"),
            (format!(r#""{SECRET}""#), "not a JSON object"),
            (format!(r#"["{SECRET}"]"#), "not a JSON object"),
            (
                format!(r#"{{"accessKeyId":"{KEY_ID}"}}"#),
                "`accessKeySecret` is missing",
            ),
            (
                format!(r#"{{"accessKeySecret":"{SECRET}"}}"#),
                "`accessKeyId` is missing",
            ),
            (
                format!(
                    r#"{{"accessKeyId":"{KEY_ID}","accessKeySecret":"{SECRET}","{TOKEN}":"x"}}"#
                ),
                "a field other than",
            ),
            (
                format!(r#"{{"accessKeyID":"{KEY_ID}","accessKeySecret":"{SECRET}"}}"#),
                "a field other than",
            ),
            (
                format!(r#"{{"accessKeyId":7,"accessKeySecret":"{SECRET}"}}"#),
                "`accessKeyId` is not a string",
            ),
            (
                format!(r#"{{"accessKeyId":"{KEY_ID}","accessKeySecret":"{SECRET} "}}"#),
                "`accessKeySecret` is empty or contains whitespace",
            ),
            (
                format!(r#"{{"accessKeyId":"","accessKeySecret":"{SECRET}"}}"#),
                "`accessKeyId` is empty",
            ),
            (
                format!(
                    r#"{{"accessKeyId":"{KEY_ID}","accessKeySecret":"{SECRET}","sessionToken":["{TOKEN}"]}}"#
                ),
                "`sessionToken` is not a string",
            ),
            (
                format!(
                    r#"{{"accessKeyId":"{KEY_ID}","accessKeySecret":"{SECRET}","expiration":"{TOKEN}"}}"#
                ),
                "`expiration` is not an RFC 3339 time",
            ),
            (
                format!(
                    r#"{{"accessKeyId":"{KEY_ID}","accessKeySecret":"{SECRET}","expiration":1748779200}}"#
                ),
                "`expiration` is not a string",
            ),
            (
                format!(
                    r#"{{"accessKeyId":"{KEY_ID}","accessKeySecret":"{SECRET}","Expiration":"2025-06-01T12:00:00Z"}}"#
                ),
                "a field other than accessKeyId, accessKeySecret, sessionToken and expiration",
            ),
        ];
        for (content, expected) in cases {
            let path = write(dir.path(), "bad", &content, 0o600);
            let err = load_profile(dir.path(), "bad").unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, CredentialsError::Malformed { .. }), "{err:?}");
            assert!(msg.contains(expected), "{content}: {msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert_no_secret(&both(&err));
        }
    }

    #[test]
    fn non_utf8_and_huge_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin.json");
        std::fs::write(&path, [0xff, 0xfe, b'{']).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let err = load_profile(dir.path(), "bin").unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");

        write(dir.path(), "big", &" ".repeat(70 * 1024), 0o600);
        let err = load_profile(dir.path(), "big").unwrap_err();
        assert!(err.to_string().contains("larger than 64 KiB"), "{err}");
    }

    #[test]
    fn names_that_could_escape_the_directory_are_refused() {
        let outer = tempfile::tempdir().unwrap();
        let dir = outer.path().join("profiles");
        std::fs::create_dir(&dir).unwrap();
        // A valid profile just outside DIR that an escaping name would reach.
        write(
            outer.path(),
            "escaped",
            r#"{"accessKeyId":"k","accessKeySecret":"s"}"#,
            0o600,
        );
        for name in [
            "../escaped",
            "..",
            ".",
            "",
            ".hidden",
            "a/b",
            "/etc/passwd",
            "a\0b",
            "a b",
            "x\\y",
            &"a".repeat(65),
        ] {
            for err in [
                load_profile(&dir, name).unwrap_err(),
                profile_exists(&dir, name).unwrap_err(),
            ] {
                assert!(
                    matches!(err, CredentialsError::BadName(_)),
                    "{name:?}: {err:?}"
                );
            }
        }
        for name in ["a", "A-b_c.d", "x.", &"a".repeat(64), "0"] {
            assert!(is_valid_profile_name(name), "{name:?}");
        }
    }

    #[test]
    fn clean_keys() {
        assert!(is_clean_key("AKIA/abc+def="));
        for bad in ["", " a", "a\n", "a\tb", "a\u{7f}"] {
            assert!(!is_clean_key(bad), "{bad:?}");
        }
    }
}
