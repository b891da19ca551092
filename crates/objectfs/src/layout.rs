//! The bucket layout objectfs shares with s3fs and ossfs 1.0.
//!
//! A file is an object at `prefix + path`; a directory is a zero-byte
//! `path/` marker (or only implied by deeper keys); a symlink is an object
//! whose body is its target. POSIX attributes travel as user metadata
//! (`x-amz-meta-mode` in decimal with the file-type bits, `-uid`, `-gid`,
//! `-mtime` and `-ctime` in seconds, with a fraction when they have one).
//! Objects other tools wrote without them get the mount's defaults.

use crate::store::PutMeta;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const S_IFMT: u32 = libc::S_IFMT;
pub const S_IFREG: u32 = libc::S_IFREG;
pub const S_IFDIR: u32 = libc::S_IFDIR;
pub const S_IFLNK: u32 = libc::S_IFLNK;

/// Content type s3fs gives directory markers.
pub const DIR_CONTENT_TYPE: &str = "application/x-directory";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

impl Kind {
    pub fn type_bits(self) -> u32 {
        match self {
            Kind::File => S_IFREG,
            Kind::Dir => S_IFDIR,
            Kind::Symlink => S_IFLNK,
        }
    }
}

/// Owner and permissions given to objects without metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Defaults {
    pub uid: u32,
    pub gid: u32,
    /// Applied to 0666 for files and 0777 for directories.
    pub umask: u32,
}

impl Defaults {
    /// The given owner, else this process's (which a mount process shares
    /// with whoever started it), and the given umask.
    pub fn or_this_process(uid: Option<u32>, gid: Option<u32>, umask: u32) -> Defaults {
        // SAFETY: getuid and getgid cannot fail and touch no memory.
        let (own_uid, own_gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Defaults {
            uid: uid.unwrap_or(own_uid),
            gid: gid.unwrap_or(own_gid),
            umask,
        }
    }

    pub fn perm(&self, kind: Kind) -> u32 {
        match kind {
            Kind::File => 0o666 & !self.umask,
            Kind::Dir => 0o777 & !self.umask,
            Kind::Symlink => 0o777,
        }
    }
}

/// `perm` as a write, truncate or chown leaves it (POSIX, as Linux does
/// it): without set-user-ID, and without set-group-ID where group execute
/// is set (without it, the bit means mandatory locking and stays).
pub fn without_set_ids(perm: u32) -> u32 {
    let sgid = if perm & libc::S_IXGRP != 0 {
        libc::S_ISGID
    } else {
        0
    };
    perm & !(libc::S_ISUID | sgid)
}

/// POSIX attributes as stored in (or derived for) one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posix {
    pub kind: Kind,
    /// Permission bits only (no type bits).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    /// The status-change time: the `ctime` metadata (s3fs writes it too)
    /// when there is one, else the object's date in whole seconds
    /// ([`ctime_from_date`]), else the mtime.
    pub ctime: SystemTime,
}

/// Reads attributes from user metadata, falling back to `defaults` field by
/// field. `kind_hint` is what the key says (a `/` marker is a directory);
/// a mode with the symlink or directory type bits overrides it for plain
/// keys, as s3fs writes them.
pub fn decode(
    metadata: &BTreeMap<String, String>,
    kind_hint: Kind,
    last_modified: Option<SystemTime>,
    defaults: &Defaults,
) -> Posix {
    let mode = metadata
        .get("mode")
        .and_then(|m| m.trim().parse::<u32>().ok());
    let kind = match (kind_hint, mode.map(|m| m & S_IFMT)) {
        (Kind::File, Some(S_IFLNK)) => Kind::Symlink,
        (Kind::File, Some(S_IFDIR)) => Kind::Dir,
        (hint, _) => hint,
    };
    let perm = mode
        .map(|m| m & 0o7777)
        .filter(|_| kind != Kind::Symlink)
        .unwrap_or_else(|| defaults.perm(kind));
    let num = |k: &str| metadata.get(k).and_then(|v| v.trim().parse::<u32>().ok());
    let mtime = metadata
        .get("mtime")
        .and_then(|v| parse_seconds(v))
        .or(last_modified)
        .unwrap_or(UNIX_EPOCH);
    let ctime = metadata
        .get("ctime")
        .and_then(|v| parse_seconds(v))
        .unwrap_or_else(|| ctime_from_date(last_modified, mtime));
    Posix {
        kind,
        perm,
        uid: num("uid").unwrap_or(defaults.uid),
        gid: num("gid").unwrap_or(defaults.gid),
        mtime,
        ctime,
    }
}

/// The ctime of an object without `ctime` metadata: its date (LastModified,
/// the store's time of its last change) in whole seconds, which a HEAD and
/// a listing give alike; `mtime` when there is no object (a directory
/// without a marker).
pub fn ctime_from_date(date: Option<SystemTime>, mtime: SystemTime) -> SystemTime {
    date.map_or(mtime, whole_seconds)
}

/// `t` without its fraction of a second (as an object's date from a HEAD).
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// Seconds since the epoch, whole (as s3fs writes them) or with a fraction
/// of up to nine digits (as objectfs and rclone write them), read exactly.
fn parse_seconds(v: &str) -> Option<SystemTime> {
    let (secs, frac) = v.trim().split_once('.').unwrap_or((v.trim(), ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || !all_digits(secs) || !all_digits(frac) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let nanos = format!("{digits:0<9}").parse::<u32>().ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs.parse().ok()?, nanos))
}

/// `t` as seconds since the epoch, with nine digits of fraction when it has
/// one: s3fs 1.90 reads both forms to the nanosecond.
fn format_seconds(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        n => format!("{}.{n:09}", d.as_secs()),
    }
}

/// The headers of an object that stores `posix`.
pub fn encode(posix: &Posix) -> PutMeta {
    let mut metadata = BTreeMap::new();
    metadata.insert(
        "mode".to_string(),
        (posix.kind.type_bits() | posix.perm).to_string(),
    );
    metadata.insert("uid".to_string(), posix.uid.to_string());
    metadata.insert("gid".to_string(), posix.gid.to_string());
    metadata.insert("mtime".to_string(), format_seconds(posix.mtime));
    metadata.insert("ctime".to_string(), format_seconds(posix.ctime));
    PutMeta {
        content_type: match posix.kind {
            Kind::Dir => Some(DIR_CONTENT_TYPE.to_string()),
            _ => Some("application/octet-stream".to_string()),
        },
        metadata,
    }
}

/// The object key of `path` (relative, `/`-separated, "" for the root)
/// under `prefix` (empty or ending in `/`).
pub fn object_key(prefix: &str, path: &str) -> String {
    format!("{prefix}{path}")
}

/// The key prefix that lists a directory's children (ends in `/`, except
/// the root of an unprefixed mount, which is "").
pub fn dir_prefix(prefix: &str, path: &str) -> String {
    if path.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}{path}/")
    }
}

/// Normalises a user-given prefix: no leading `/`, exactly one trailing `/`
/// (or empty). Refuses `.`/`..` components, which S3 would keep literally
/// and s3fs would not show.
pub fn normalise_prefix(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'))
    {
        return Err(format!(
            "prefix {raw:?} must be a relative key prefix without empty, `.` or `..` components"
        ));
    }
    Ok(format!("{trimmed}/"))
}

/// The key recovered data goes to when another client changed its object
/// meanwhile: beside it, saying so and when (`dir/f.txt` →
/// `dir/f.txt.conflict-20261130T103300Z`), so both versions are kept.
pub fn conflict_key(key: &str, at: std::time::SystemTime) -> String {
    let stamp = aws_smithy_types::DateTime::from(at)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default();
    let stamp: String = stamp
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .take_while(|c| *c != '.')
        .collect();
    let stamp = if stamp.ends_with('Z') {
        stamp
    } else {
        format!("{stamp}Z")
    };
    format!("{key}.conflict-{stamp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Defaults = Defaults {
        uid: 1000,
        gid: 100,
        umask: 0o022,
    };

    #[test]
    fn objects_without_metadata_get_defaults() {
        let t = UNIX_EPOCH + Duration::from_secs(42);
        let p = decode(&BTreeMap::new(), Kind::File, Some(t), &D);
        assert_eq!(
            p,
            Posix {
                kind: Kind::File,
                perm: 0o644,
                uid: 1000,
                gid: 100,
                mtime: t,
                ctime: t,
            }
        );
        assert_eq!(decode(&BTreeMap::new(), Kind::Dir, None, &D).perm, 0o755);
    }

    #[test]
    fn round_trip_through_s3fs_headers() {
        let p = Posix {
            kind: Kind::File,
            perm: 0o4750,
            uid: 7,
            gid: 8,
            mtime: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ctime: UNIX_EPOCH + Duration::new(1_700_000_001, 987_654_321),
        };
        let meta = encode(&p);
        assert_eq!(meta.metadata["mode"], (0o100000 | 0o4750).to_string());
        assert_eq!(meta.metadata["mtime"], "1700000000");
        assert_eq!(meta.metadata["ctime"], "1700000001.987654321");
        assert_eq!(decode(&meta.metadata, Kind::File, None, &D), p);
        // To the nanosecond, where a float would round.
        let p = Posix {
            mtime: UNIX_EPOCH + Duration::new(1_764_640_000, 123_456_789),
            ..p
        };
        assert_eq!(encode(&p).metadata["mtime"], "1764640000.123456789");
        assert_eq!(decode(&encode(&p).metadata, Kind::File, None, &D), p);
    }

    #[test]
    fn without_ctime_metadata_ctime_is_the_date_in_whole_seconds() {
        let date = UNIX_EPOCH + Duration::from_millis(100_999);
        let p = decode(&BTreeMap::new(), Kind::File, Some(date), &D);
        assert_eq!(p.ctime, UNIX_EPOCH + Duration::from_secs(100));
        let mut m = BTreeMap::new();
        m.insert("mtime".to_string(), "7".to_string());
        let p = decode(&m, Kind::Dir, None, &D);
        assert_eq!(p.ctime, UNIX_EPOCH + Duration::from_secs(7));
    }

    #[test]
    fn s3fs_symlink_and_directory_modes_are_recognised() {
        let mut m = BTreeMap::new();
        m.insert("mode".to_string(), (S_IFLNK | 0o777).to_string());
        assert_eq!(decode(&m, Kind::File, None, &D).kind, Kind::Symlink);
        m.insert("mode".to_string(), (S_IFDIR | 0o700).to_string());
        let p = decode(&m, Kind::File, None, &D);
        assert_eq!((p.kind, p.perm), (Kind::Dir, 0o700));
    }

    #[test]
    fn garbage_metadata_falls_back_field_by_field() {
        let mut m = BTreeMap::new();
        m.insert("mode".to_string(), "rwx".to_string());
        m.insert("uid".to_string(), "-1".to_string());
        m.insert("gid".to_string(), "5".to_string());
        m.insert("mtime".to_string(), "12.5".to_string());
        m.insert("ctime".to_string(), "-3".to_string());
        let p = decode(&m, Kind::File, None, &D);
        assert_eq!((p.perm, p.uid, p.gid), (0o644, 1000, 5));
        assert_eq!(p.mtime, UNIX_EPOCH + Duration::from_millis(12_500));
        assert_eq!(p.ctime, p.mtime);
        for bad in ["", ".5", "1e9", "12.x", " 1 2", "18446744073709551615"] {
            m.insert("mtime".to_string(), bad.to_string());
            assert_eq!(
                decode(&m, Kind::File, None, &D).mtime,
                UNIX_EPOCH,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_and_prefixes() {
        assert_eq!(normalise_prefix("").unwrap(), "");
        assert_eq!(normalise_prefix("/a/b/").unwrap(), "a/b/");
        assert!(normalise_prefix("a/../b").is_err());
        assert!(normalise_prefix("a//b").is_err());
        assert_eq!(object_key("p/", "d/f"), "p/d/f");
        assert_eq!(dir_prefix("p/", ""), "p/");
        assert_eq!(dir_prefix("p/", "d"), "p/d/");
        assert_eq!(dir_prefix("", ""), "");
    }

    #[test]
    fn a_conflict_key_says_so_and_when() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_034_780_500);
        assert_eq!(
            super::conflict_key("dir/f.txt", at),
            "dir/f.txt.conflict-20261130T103300Z"
        );
    }

    #[test]
    fn writes_and_chowns_drop_set_ids() {
        assert_eq!(without_set_ids(0o4755), 0o755);
        assert_eq!(without_set_ids(0o2755), 0o755);
        assert_eq!(without_set_ids(0o6711), 0o711);
        // Set-group-ID without group execute is mandatory locking: kept.
        assert_eq!(without_set_ids(0o2644), 0o2644);
        assert_eq!(without_set_ids(0o1777), 0o1777, "sticky stays");
    }
}
