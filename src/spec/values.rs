//! The shapes of option values shared by several types: booleans, ids,
//! modes, seconds, cache sizes, region names, the two ossfs words
//! (`upload`, `version`), and paths and names (a normalised absolute path,
//! a relative `subPath`, a DNS label, a claim name).

use super::error::SpecError;

/// Longest path we accept in an option; PATH_MAX on Linux.
pub(super) const MAX_PATH_LEN: usize = 4096;

/// Longest single path component; NAME_MAX on Linux.
pub(super) const MAX_COMPONENT_LEN: usize = 255;

/// Longest metadata cache: beyond this, changes made by other clients of
/// the bucket would stay invisible for longer than anyone expects.
pub(super) const MAX_METADATA_TTL_SECS: f64 = 3600.0;

/// Smallest cache a mount may be given: below it, a few files being
/// written at once would already fill it and make writers wait.
pub const MIN_CACHE_SIZE: u64 = 64 << 20;

/// What a cache size may be, in the words of every error that refuses one:
/// the `cacheSize` option's (the option table's `expected`) and the
/// `--cache-size` and `--default-cache-size` flags'. The minimum it names
/// is [`MIN_CACHE_SIZE`] (a unit test holds the two together).
macro_rules! cache_size_words {
    () => {
        "a size of at least 64MiB: a number of bytes, or a whole number with KiB, MiB, GiB or TiB (powers of 1024) or KB, MB, GB or TB (powers of 1000)"
    };
}
pub(crate) use cache_size_words;

/// The units of a cache size, matched case-insensitively.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// A cache size in bytes: `1073741824`, `512MiB`, `2GiB`, `100MB` (as
/// [`parse_size`] reads them), at least [`MIN_CACHE_SIZE`].
pub fn parse_cache_size(value: &str) -> Option<u64> {
    parse_size(value).filter(|bytes| *bytes >= MIN_CACHE_SIZE)
}

/// A size in bytes: digits, then a unit of [`SIZE_UNITS`] or none; no
/// sign, fraction or space inside.
pub fn parse_size(value: &str) -> Option<u64> {
    let v = value.trim();
    let digits_end = v
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    let (number, unit) = v.split_at(digits_end);
    if number.is_empty() {
        return None;
    }
    let (_, scale) = SIZE_UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))?;
    number.parse::<u64>().ok()?.checked_mul(*scale)
}

/// Longest region name we accept (real ones are far shorter).
const MAX_REGION_LEN: usize = 64;

/// A region name: letters, digits and `-`, at most 64 (`us-west-2`,
/// `cn-hangzhou`).
pub(super) fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= MAX_REGION_LEN
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

pub(super) fn parse_bool(option: &'static str, value: &str) -> Result<bool, SpecError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(SpecError::BadBool {
            option,
            value: value.to_string(),
        }),
    }
}

/// A uid or gid; `u32::MAX` is `(uid_t)-1`, "no change" to the kernel.
pub(super) fn parse_id(value: &str) -> Option<u32> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u32>().ok().filter(|id| *id != u32::MAX)
}

/// `022`, `0022`, `7`: octal digits only, at most `777`.
pub(super) fn parse_umask(value: &str) -> Option<u32> {
    let v = value.trim();
    if v.is_empty() || v.len() > 4 || !v.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o777)
}

pub(super) fn parse_upload(value: &str) -> Option<objectfs::UploadMode> {
    value.trim().parse().ok()
}

pub(super) fn parse_version(value: &str) -> Option<String> {
    let v = value.trim();
    matches!(v, "1.0" | "2.0").then(|| v.to_string())
}

/// Seconds (`5`, `0.25`; no sign, exponent or `inf`) → milliseconds,
/// rounded, at most an hour.
pub(super) fn parse_seconds_ms(value: &str) -> Option<u64> {
    let v = value.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return None;
    }
    let secs: f64 = v.parse().ok()?;
    (secs <= MAX_METADATA_TTL_SECS).then(|| (secs * 1000.0).round() as u64)
}

/// A `subPath`, normalised: empty and `.` components are dropped (`a/./b`,
/// `a//b`, `./a/` and `a/b/` name the directories `a/b` and `a`, as the
/// OpenSandbox server, which accepts them, joins them onto a path). `..`
/// stays refused, and so do a leading `/`, NUL and over-long components.
/// Nothing left (`""`, `.`, `./`) means the whole volume.
pub(super) fn parse_sub_path(value: &str) -> Result<Option<String>, SpecError> {
    let bad = || SpecError::BadSubPath(value.to_string());
    if value.starts_with('/') || value.len() > MAX_PATH_LEN {
        return Err(bad());
    }
    let mut parts = Vec::new();
    for c in value.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if !is_plain_component(c) {
            return Err(bad());
        }
        parts.push(c);
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// True for a path like `/srv/data`: absolute, no empty, `.` or `..`
/// components, no trailing slash (except `/` itself), no NUL.
pub fn is_normalised_absolute(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    match path.strip_prefix('/') {
        None => false,
        Some(rest) => path.len() <= MAX_PATH_LEN && rest.split('/').all(is_plain_component),
    }
}

pub(super) fn is_plain_component(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains('\0') && c.len() <= MAX_COMPONENT_LEN
}

/// RFC 1123 label: 1–63 of `[a-z0-9-]`, alphanumeric at both ends (the
/// API's rule for a volume's `name`).
pub fn is_dns_label(name: &str) -> bool {
    name.len() <= 63 && is_claim_name(name)
}

/// Longest `pvc.claimName`: the OpenSandbox server's limit for a Kubernetes
/// resource name. Docker's local driver has no limit of its own below it
/// (its volume directory's name, at most 255 bytes, is the name).
pub const MAX_CLAIM_NAME_LEN: usize = 253;

/// A `pvc.claimName` as the OpenSandbox server accepts it: 1–253 of
/// `[a-z0-9-]`, alphanumeric at both ends. Every such name of two or more
/// characters is also a name Docker's local driver accepts
/// (`[a-zA-Z0-9][a-zA-Z0-9_.-]+`).
pub fn is_claim_name(name: &str) -> bool {
    (1..=MAX_CLAIM_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && starts_and_ends_alphanumeric(name)
}

pub(super) fn starts_and_ends_alphanumeric(name: &str) -> bool {
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    alnum(name.as_bytes().first()) && alnum(name.as_bytes().last())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;
    use serde_json::json;

    #[test]
    fn upload_mode() {
        use objectfs::UploadMode::{Async, Sync};
        for (given, want) in [("async", Async), ("Sync", Sync), (" ASYNC ", Async)] {
            assert_eq!(
                tuning(with(&s3(), json!({"upload": given}))).upload,
                Some(want)
            );
        }
        let e = err(with(&s3(), json!({"upload": "later"})));
        assert_eq!(
            e.to_string(),
            r#"option `upload`="later" must be async or sync"#
        );
        assert!(parse(with(&ossfs(), json!({"upload": "sync"}))).is_ok());
    }

    #[test]
    fn metadata_ttl_seconds_to_milliseconds() {
        for (given, ms) in [
            (json!("0"), 0),
            (json!("1"), 1000),
            (json!("0.25"), 250),
            (json!("1.0005"), 1001),
            (json!("3600"), 3_600_000),
            (json!("3600.0"), 3_600_000),
            (json!(5), 5000),
            (json!(1.5), 1500),
        ] {
            assert_eq!(
                tuning(with(&s3(), json!({"metadataTtl": given}))).metadata_ttl_ms,
                Some(ms),
                "{given}"
            );
        }
        for bad in [
            "", "-1", "+1", "1e3", "inf", "NaN", ".5", "5.", "3600.5", "3601", "1,5", "1 s", "1s",
        ] {
            let e = err(with(&s3(), json!({"metadataTtl": bad})));
            assert_eq!(
                e,
                SpecError::BadValue {
                    option: "metadataTtl",
                    value: bad.into(),
                    expected: crate::spec::table::find(crate::spec::VolumeType::S3, "metadataTtl")
                        .unwrap()
                        .expected
                },
                "{bad:?}"
            );
        }
    }

    #[test]
    fn cache_size_in_bytes() {
        for (given, bytes) in [
            (json!("67108864"), MIN_CACHE_SIZE),
            (json!("64MiB"), MIN_CACHE_SIZE),
            (json!("512MiB"), 512 << 20),
            (json!("2GiB"), 2 << 30),
            (json!(" 2gib "), 2 << 30),
            (json!("065536KiB"), 64 << 20),
            (json!("1TiB"), 1 << 40),
            (json!("100MB"), 100_000_000),
            (json!("100mb"), 100_000_000),
            (json!("67109KB"), 67_109_000),
            (json!("1GB"), 1_000_000_000),
            (json!("2TB"), 2_000_000_000_000),
            (json!(1073741824), 1 << 30),
            (json!("16777215TiB"), 16_777_215 << 40),
        ] {
            assert_eq!(
                tuning(with(&s3(), json!({"cacheSize": given}))).cache_size,
                Some(bytes),
                "{given}"
            );
        }
        assert_eq!(
            tuning(with(&ossfs(), json!({"CACHESIZE": "3GiB"}))).cache_size,
            Some(3 << 30)
        );
        assert_eq!(tuning(s3()).cache_size, None, "unset: the daemon's default");
        assert_eq!(tuning(ossfs()).cache_size, None);
    }

    #[test]
    fn cache_size_refusals_name_the_option_and_the_minimum() {
        for bad in [
            "",
            "0",
            "67108863",
            "63MiB",
            "67108KB",
            "1.5GiB",
            "2 GiB",
            "512M",
            "1G",
            "2GiBs",
            "1B",
            "-1GiB",
            "+1GiB",
            "GiB",
            "1e9",
            "0x4000000",
            "16777216TiB",
            "99999999999999999999",
            "\u{ff11}GiB",
        ] {
            let e = err(with(&s3(), json!({"cacheSize": bad})));
            assert_eq!(
                e.to_string(),
                format!(
                    "option `cacheSize`={bad:?} must be a size of at least 64MiB: a number of \
                     bytes, or a whole number with KiB, MiB, GiB or TiB (powers of 1024) or KB, \
                     MB, GB or TB (powers of 1000), e.g. cacheSize=2GiB"
                ),
                "{bad:?}"
            );
            assert_sentence(&e);
        }
        let e = err(with(&ossfs(), json!({"cacheSize": "1MiB"})));
        assert!(
            e.to_string()
                .starts_with("option `cacheSize`=\"1MiB\" must be a size of at least 64MiB"),
            "{e}"
        );
        // The minimum the words name is the one the parser applies.
        assert_eq!(parse_cache_size("64MiB"), Some(MIN_CACHE_SIZE));
        assert_eq!(parse_cache_size(&(MIN_CACHE_SIZE - 1).to_string()), None);
    }

    #[test]
    fn uid_gid_umask() {
        let t = tuning(with(
            &s3(),
            json!({"uid": "0", "gid": " 4294967294 ", "umask": "0"}),
        ));
        assert_eq!(
            (t.uid, t.gid, t.umask),
            (Some(0), Some(u32::MAX - 1), Some(0))
        );
        for (umask, want) in [("022", 0o022), ("0022", 0o022), ("777", 0o777), ("7", 7)] {
            assert_eq!(
                tuning(with(&s3(), json!({"umask": umask}))).umask,
                Some(want)
            );
        }
        for bad in ["", "-1", "1.5", "abc", "4294967295", "99999999999", "0x10"] {
            for option in ["uid", "gid"] {
                let e = err(with(&s3(), json!({ option: bad })));
                assert!(
                    matches!(&e, SpecError::BadValue { option: o, .. } if *o == option),
                    "{option}={bad:?}: {e:?}"
                );
            }
        }
        for bad in ["", "8", "1000", "0o22", "00777", "-22", "abc"] {
            let e = err(with(&s3(), json!({"umask": bad})));
            assert_eq!(
                e.to_string(),
                format!(
                    "option `umask`={bad:?} must be an octal mode from 000 to 777, e.g. umask=022"
                )
            );
        }
    }
}
