//! ossfs's `options` list (`allow_other,umask=022,ro`, what the OpenSandbox
//! API sends for an `ossfs` volume): its own small table of the ossfs mount
//! options objectfs understands, their parsing, and how they merge with the
//! volume's direct options (`uid`, `readOnly`, …).

use super::error::SpecError;
use super::model::MountTuning;
use super::opts::Opts;
use super::values::{parse_id, parse_seconds_ms, parse_umask};

/// One ossfs mount option objectfs understands.
struct OssfsOption {
    name: &'static str,
    /// `None`: a flag, which takes no value; otherwise how its value is
    /// read (ids and modes widened to u64, seconds as milliseconds).
    parse: Option<fn(&str) -> Option<u64>>,
    /// What the option takes, for the error of a bad value.
    expected: &'static str,
}

fn id(value: &str) -> Option<u64> {
    parse_id(value).map(u64::from)
}

fn mode(value: &str) -> Option<u64> {
    parse_umask(value).map(u64::from)
}

/// The ossfs mount options objectfs understands inside `options`, in the
/// order the "supported: …" error lists them.
const OSSFS_OPTIONS: &[OssfsOption] = &[
    // objectfs volumes always let other users in (containers run as any
    // uid), so allow_other asks for nothing more.
    OssfsOption {
        name: "allow_other",
        parse: None,
        expected: "allow_other takes no value",
    },
    OssfsOption {
        name: "umask",
        parse: Some(mode),
        expected: "umask takes an octal mode from 000 to 777, e.g. umask=022",
    },
    OssfsOption {
        name: "uid",
        parse: Some(id),
        expected: "uid takes a numeric user id, e.g. uid=1000",
    },
    OssfsOption {
        name: "gid",
        parse: Some(id),
        expected: "gid takes a numeric group id, e.g. gid=1000",
    },
    OssfsOption {
        name: "ro",
        parse: None,
        expected: "ro takes no value",
    },
    OssfsOption {
        name: "stat_cache_expire",
        parse: Some(parse_seconds_ms),
        expected: "stat_cache_expire takes seconds from 0 to 3600, e.g. stat_cache_expire=5",
    },
    OssfsOption {
        name: "attr_timeout",
        parse: Some(parse_seconds_ms),
        expected: "attr_timeout takes seconds from 0 to 3600, e.g. attr_timeout=5",
    },
];

/// The names of the ossfs mount options objectfs understands.
pub fn ossfs_option_names() -> Vec<&'static str> {
    OSSFS_OPTIONS.iter().map(|o| o.name).collect()
}

/// One setting from ossfs's `options`, with the text it came from (for a
/// conflict's error).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    value: u64,
    text: String,
}

/// What an ossfs `options` string asks for: each option given, by its
/// table name (a flag's value is 0).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct OssfsMountOptions {
    items: Vec<(&'static str, Item)>,
}

impl OssfsMountOptions {
    fn get(&self, name: &str) -> Option<&Item> {
        self.items.iter().find(|(n, _)| *n == name).map(|(_, i)| i)
    }

    /// `ro` was given.
    pub(super) fn read_only(&self) -> bool {
        self.get("ro").is_some()
    }

    /// objectfs has one metadata cache where ossfs has two; the shorter
    /// one is the promise the user can rely on, so it wins.
    fn metadata_ttl(&self) -> Option<&Item> {
        match (self.get("stat_cache_expire"), self.get("attr_timeout")) {
            (Some(a), Some(b)) if b.value < a.value => Some(b),
            (Some(a), _) => Some(a),
            (None, b) => b,
        }
    }
}

/// ossfs mount options, `allow_other,umask=022,ro` with an optional leading
/// `-o ` (as written on an ossfs command line). Empty items are ignored.
pub(super) fn parse_ossfs_options(value: &str) -> Result<OssfsMountOptions, SpecError> {
    let list = value.trim();
    let list = list.strip_prefix("-o").map(str::trim_start).unwrap_or(list);
    let mut out = OssfsMountOptions::default();
    for text in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        apply_ossfs_option(&mut out, text)?;
    }
    Ok(out)
}

/// One item, `name` or `name=value`. The same setting twice is fine; two
/// different values are refused since ossfs (last wins) and a reader of the
/// options may disagree on which.
fn apply_ossfs_option(out: &mut OssfsMountOptions, text: &str) -> Result<(), SpecError> {
    let (name, arg) = match text.split_once('=') {
        Some((n, a)) => (n.trim(), Some(a.trim())),
        None => (text, None),
    };
    let Some(option) = OSSFS_OPTIONS
        .iter()
        .find(|o| o.name == name.to_ascii_lowercase())
    else {
        return Err(SpecError::UnsupportedOssfsOption(name.to_string()));
    };
    let value = match (option.parse, arg) {
        (None, None) => Some(0),
        (None, Some(_)) => None,
        (Some(parse), arg) => arg.and_then(parse),
    };
    let Some(value) = value else {
        return Err(SpecError::BadOssfsOption {
            item: text.to_string(),
            expected: option.expected,
        });
    };
    match out.get(option.name) {
        Some(old) if old.value != value => {
            Err(SpecError::DuplicateOssfsOption(option.name.to_string()))
        }
        Some(_) => Ok(()),
        None => {
            let item = Item {
                value,
                text: text.to_string(),
            };
            out.items.push((option.name, item));
            Ok(())
        }
    }
}

/// Settings given both directly and in `options` must agree; the others
/// are the direct ones.
pub(super) fn merge_ossfs_tuning(
    opts: &Opts,
    direct: MountTuning,
    mount: &OssfsMountOptions,
) -> Result<MountTuning, SpecError> {
    let id = |option, direct: Option<u32>, item| {
        merge_setting(opts, option, direct.map(u64::from), item)
            .map(|v| v.map(|v| u32::try_from(v).expect("ids and modes fit in u32")))
    };
    Ok(MountTuning {
        uid: id("uid", direct.uid, mount.get("uid"))?,
        gid: id("gid", direct.gid, mount.get("gid"))?,
        umask: id("umask", direct.umask, mount.get("umask"))?,
        metadata_ttl_ms: merge_setting(
            opts,
            "metadataTtl",
            direct.metadata_ttl_ms,
            mount.metadata_ttl(),
        )?,
        ..direct
    })
}

fn merge_setting(
    opts: &Opts,
    option: &'static str,
    direct: Option<u64>,
    item: Option<&Item>,
) -> Result<Option<u64>, SpecError> {
    match (direct, item) {
        (Some(d), Some(i)) if d != i.value => Err(SpecError::OptionsConflict {
            option,
            value: opts.get(option).unwrap_or_default().to_string(),
            item: i.text.clone(),
        }),
        (Some(d), _) => Ok(Some(d)),
        (None, i) => Ok(i.map(|i| i.value)),
    }
}

/// `ro` in `options` makes the volume read-only unless `readOnly=false`
/// says otherwise, which is a contradiction rather than an override.
pub(super) fn merge_read_only(
    opts: &Opts,
    read_only: Option<bool>,
    ro: bool,
) -> Result<bool, SpecError> {
    match (read_only, ro) {
        (Some(false), true) => Err(SpecError::OptionsConflict {
            option: "readOnly",
            value: opts.get("readOnly").unwrap_or_default().to_string(),
            item: "ro".to_string(),
        }),
        (explicit, ro) => Ok(explicit.unwrap_or(false) || ro),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::test_util::*;
    use crate::spec::*;
    use serde_json::json;

    fn ossfs_opts(options: &str) -> Result<VolumeSpec, SpecError> {
        parse(with(&ossfs(), json!({ "options": options })))
    }

    #[test]
    fn ossfs_options_map_to_tuning() {
        let spec =
            ossfs_opts("allow_other,umask=022,uid=1000,gid=1000,ro,stat_cache_expire=5").unwrap();
        assert!(spec.read_only);
        assert_eq!(
            object(&spec).tuning,
            MountTuning {
                uid: Some(1000),
                gid: Some(1000),
                umask: Some(0o022),
                upload: None,
                metadata_ttl_ms: Some(5000),
                attrs_from_listing: None,
                cache_size: None,
            }
        );
        // A direct option that `options` has no word for is kept as given.
        let spec = parse(with(
            &ossfs(),
            json!({"options": "uid=1,ro", "cacheSize": "1GiB"}),
        ))
        .unwrap();
        assert_eq!(object(&spec).tuning.cache_size, Some(1 << 30));
        for (options, read_only) in [
            ("", false),
            ("allow_other", false),
            ("-o allow_other", false),
            ("-oro", true),
            ("  -o   ro , allow_other,", true),
            ("RO", true),
            (",,", false),
        ] {
            assert_eq!(
                ossfs_opts(options).unwrap().read_only,
                read_only,
                "{options:?}"
            );
        }
        let t = |o: &str| object(&ossfs_opts(o).unwrap()).tuning.clone();
        assert_eq!(t("attr_timeout=0.5").metadata_ttl_ms, Some(500));
        assert_eq!(t("stat_cache_expire=900").metadata_ttl_ms, Some(900_000));
        assert_eq!(
            t("stat_cache_expire=5,attr_timeout=2").metadata_ttl_ms,
            Some(2000)
        );
        assert_eq!(
            t("attr_timeout=7,stat_cache_expire=3").metadata_ttl_ms,
            Some(3000)
        );
        assert_eq!(t("uid=5,uid=5").uid, Some(5));
        assert_eq!(t("umask = 077").umask, Some(0o077));
        assert_eq!(t("UID=3").uid, Some(3));
    }

    #[test]
    fn ossfs_options_refusals() {
        let e = ossfs_opts("allow_other,use_cache=/tmp/cache").unwrap_err();
        assert_eq!(
            e.to_string(),
            "ossfs option `use_cache` in `options` is not supported; supported: allow_other, umask, uid, gid, ro, stat_cache_expire, attr_timeout"
        );
        for other in [
            "nonempty",
            "max_stat_cache_size=1000",
            "url=http://x",
            "-o",
            "o",
        ] {
            let e = ossfs_opts(&format!("ro,{other}")).unwrap_err();
            assert!(
                matches!(e, SpecError::UnsupportedOssfsOption(_)),
                "{other}: {e:?}"
            );
        }
        for (item, expected) in [
            ("ro=1", "ro takes no value"),
            ("allow_other=yes", "allow_other takes no value"),
            ("uid=x", "uid takes a numeric user id"),
            ("uid", "uid takes a numeric user id"),
            ("gid=-1", "gid takes a numeric group id"),
            ("umask=999", "umask takes an octal mode"),
            ("umask=", "umask takes an octal mode"),
            ("stat_cache_expire=-5", "stat_cache_expire takes seconds"),
            ("stat_cache_expire=3601", "stat_cache_expire takes seconds"),
            ("attr_timeout=1e2", "attr_timeout takes seconds"),
        ] {
            let e = ossfs_opts(item).unwrap_err();
            assert!(
                matches!(e, SpecError::BadOssfsOption { .. }),
                "{item}: {e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!(
                    "ossfs option `{item}` in `options` is not valid; "
                )),
                "{msg}"
            );
            assert!(msg.contains(expected), "{msg}");
        }
        for dup in [
            "uid=1,uid=2",
            "umask=022,umask=077",
            "attr_timeout=1,attr_timeout=2",
        ] {
            let e = ossfs_opts(dup).unwrap_err();
            assert!(
                matches!(e, SpecError::DuplicateOssfsOption(_)),
                "{dup}: {e:?}"
            );
            assert_sentence(&e);
        }
    }

    #[test]
    fn ossfs_options_conflicting_with_direct_options() {
        let conflict = |extra: Value| err(with(&ossfs(), extra));
        let e = conflict(json!({"options": "uid=1000", "uid": "0"}));
        assert_eq!(
            e.to_string(),
            r#"option `uid`="0" conflicts with `uid=1000` in `options`; give the setting in one place or make the two agree"#
        );
        assert!(matches!(
            conflict(json!({"options": "gid=1", "gid": "2"})),
            SpecError::OptionsConflict { option: "gid", .. }
        ));
        assert!(matches!(
            conflict(json!({"options": "umask=022", "umask": "077"})),
            SpecError::OptionsConflict {
                option: "umask",
                ..
            }
        ));
        let e =
            conflict(json!({"options": "stat_cache_expire=9,attr_timeout=4", "metadataTtl": "9"}));
        assert_eq!(
            e,
            SpecError::OptionsConflict {
                option: "metadataTtl",
                value: "9".into(),
                item: "attr_timeout=4".into()
            }
        );
        let e = conflict(json!({"options": "-o ro", "ReadOnly": "false"}));
        assert_eq!(
            e.to_string(),
            r#"option `readOnly`="false" conflicts with `ro` in `options`; give the setting in one place or make the two agree"#
        );
        // Agreeing values, written differently, are fine.
        let spec = parse(with(
            &ossfs(),
            json!({"options": "ro,uid=7,umask=0022,attr_timeout=1.5", "readOnly": "true",
                   "uid": 7, "umask": "022", "metadataTtl": "1.500"}),
        ))
        .unwrap();
        assert!(spec.read_only);
        let t = &object(&spec).tuning;
        assert_eq!(
            (t.uid, t.umask, t.metadata_ttl_ms),
            (Some(7), Some(0o022), Some(1500))
        );
        // Direct options alone, without `options`.
        let t = tuning(with(
            &ossfs(),
            json!({"uid": 1, "gid": 2, "umask": "077", "metadataTtl": 0}),
        ));
        assert_eq!(
            (t.uid, t.gid, t.umask, t.metadata_ttl_ms),
            (Some(1), Some(2), Some(0o077), Some(0))
        );
    }
}
