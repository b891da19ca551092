//! Volume names → safe file names.
//!
//! Docker does not validate volume names for plugin drivers, so a name may
//! hold `/`, `..`, NUL or anything else. Every path the plugin builds from a
//! name (state file, mount directory) goes through [`file_stem`], which maps
//! any name to one path component that cannot escape its directory.

/// Longest volume name accepted, in bytes. Docker's own limit is far larger
/// in theory, but nobody names a volume with a kilobyte.
pub const MAX_NAME_LEN: usize = 255;

/// Encoded stems longer than this are shortened and suffixed with a hash so
/// they always fit in NAME_MAX (255) with room for `.json.tmp`.
const MAX_STEM_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the volume name is empty; give the volume a name")]
    Empty,
    #[error("the volume name is longer than {MAX_NAME_LEN} bytes; use a shorter name")]
    TooLong,
    #[error("the volume name contains a NUL or control character; use printable characters only")]
    ControlCharacter,
}

/// Refuses names no person would choose and no path can hold safely.
pub fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(())
}

/// One path component derived from `name`: `[A-Za-z0-9_-]` kept, every
/// other byte (including `.` and `/`) percent-encoded, so the result is never
/// `.`, `..` or anything with a separator. Distinct names give distinct
/// stems; long ones are cut and given a hash of the whole name, marked by
/// `~`, which encoding never produces.
pub fn file_stem(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_STEM_LEN {
        // Cut on a char boundary; the stem is pure ASCII so any index is one.
        out.truncate(MAX_STEM_LEN - 17);
        out.push_str(&format!("~{:016x}", fnv1a64(name.as_bytes())));
    }
    out
}

/// FNV-1a: tiny, stable across builds and platforms (unlike std's hasher),
/// which matters because stems name files that outlive the process.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_are_kept() {
        assert_eq!(file_stem("my_vol-1"), "my_vol-1");
    }

    #[test]
    fn dangerous_names_become_one_harmless_component() {
        for name in ["..", ".", "../../etc/passwd", "/abs", "a/b", "~x", "%2F"] {
            let stem = file_stem(name);
            assert!(!stem.contains('/'), "{name} -> {stem}");
            assert!(stem != "." && stem != "..", "{name} -> {stem}");
            assert!(!stem.contains('.'), "{name} -> {stem}");
        }
        assert_eq!(file_stem(".."), "%2E%2E");
        assert_eq!(file_stem("a/b"), "a%2Fb");
    }

    #[test]
    fn encoding_is_injective_on_tricky_pairs() {
        assert_ne!(file_stem("a/b"), file_stem("a%2Fb"));
        assert_ne!(file_stem("x~1"), file_stem("x%7E1"));
    }

    #[test]
    fn long_names_fit_and_stay_distinct() {
        let a = "é".repeat(120);
        let b = format!("{}x", "é".repeat(119));
        let (sa, sb) = (file_stem(&a), file_stem(&b));
        assert!(sa.len() <= MAX_STEM_LEN && sb.len() <= MAX_STEM_LEN);
        assert_ne!(sa, sb);
        assert!(sa.contains('~'));
    }

    #[test]
    fn validation() {
        assert_eq!(validate(""), Err(NameError::Empty));
        assert_eq!(validate(&"a".repeat(256)), Err(NameError::TooLong));
        assert_eq!(validate("a\0b"), Err(NameError::ControlCharacter));
        assert_eq!(validate("a\nb"), Err(NameError::ControlCharacter));
        assert!(validate("ok-name.1").is_ok());
    }
}
