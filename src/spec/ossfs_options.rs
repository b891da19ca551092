//! ossfs's `options` list (`allow_other,umask=022,ro`), as the OpenSandbox
//! API sends it for an `ossfs` volume: THE table of the ossfs options the
//! plugin knows, per ossfs version, with what each does here; their
//! parsing; and how the ones that set something merge with the volume's
//! direct options (`uid`, `readOnly`, `region`, …).
//!
//! The OpenSandbox server passes every entry through to ossfs: to ossfs 1.0
//! as `-o ENTRY` on its command line, to ossfs 2.0 as a `--ENTRY` line of
//! its configuration file (server/opensandbox_server/services/docker/
//! ossfs_mixin.py). So a sandbox configuration may carry any option of the
//! version it names. Here each known option either sets an objectfs
//! setting, is accepted without effect (ossfs tuning objectfs has no
//! setting for; the reason is logged at Create and shown in Status), or is
//! refused with what to do instead (options that would take the endpoint,
//! the bucket or the keys from somewhere else than the volume's fields).
//! An option of the other version, or one not in the table, is refused.
//! Option names and meanings: Alibaba Cloud's "ossfs 1.0 mount options"
//! and "ossfs 2.0 mount options" pages, and FUSE's own options (`ro`,
//! `allow_other`, the `*_timeout`s) for ossfs 1.0.

use super::error::SpecError;
use super::model::MountTuning;
use super::opts::Opts;
use super::values::{is_region_name, parse_id, parse_seconds_ms, parse_umask};

/// The ossfs versions an option belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Versions {
    Both,
    /// ossfs 1.0 (an s3fs fork, FUSE options included).
    V1,
    /// ossfs 2.0.
    V2,
}

impl Versions {
    fn has(self, version: &str) -> bool {
        match self {
            Versions::Both => true,
            Versions::V1 => version == "1.0",
            Versions::V2 => version == "2.0",
        }
    }

    /// As the docs and errors name them.
    pub(super) fn label(self) -> &'static str {
        match self {
            Versions::Both => "1.0, 2.0",
            Versions::V1 => "1.0",
            Versions::V2 => "2.0",
        }
    }
}

/// What an option's value is.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    /// A switch: no value; ossfs 2.0 (gflags) also takes `=true`/`=false`.
    Flag,
    /// A number, read by the function (ids and modes widened to u64,
    /// seconds as milliseconds). The words say what it takes.
    Number(fn(&str) -> Option<u64>, &'static str),
    /// A region name (letters, digits and `-`).
    Region,
    /// Any text, not used by the plugin (a path, a level).
    Text,
}

/// The objectfs settings an ossfs option can set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Setting {
    /// Nothing to set: objectfs volumes always let every user in.
    AllowOther,
    ReadOnly,
    Uid,
    Gid,
    Umask,
    MetadataTtl,
    Region,
}

impl Setting {
    /// The docs' words for what the option does.
    #[cfg(test)]
    pub(super) fn words(self) -> &'static str {
        match self {
            Setting::AllowOther => {
                "nothing to do: objectfs volumes always let every user in (containers run as any uid; the kernel still checks file modes)"
            }
            Setting::ReadOnly => "the volume is read-only, as `readOnly=true`",
            Setting::Uid => "as the `uid` option",
            Setting::Gid => "as the `gid` option",
            Setting::Umask => "as the `umask` option (`022` and `0022` are the same)",
            Setting::MetadataTtl => {
                "`metadataTtl` (0–3600 s, fractions allowed); objectfs has one cache for attributes and negative lookups, so when several of these are given the smallest is used"
            }
            Setting::Region => "as the `region` option: the signing region",
        }
    }
}

/// What the plugin does with an option.
#[derive(Clone, Copy)]
pub(super) enum Effect {
    Sets(Setting),
    /// Accepted without effect; why.
    Ignored(&'static str),
    /// Refused; what to do instead.
    Refused(&'static str),
}

/// One ossfs option the plugin knows.
pub(super) struct OssfsOption {
    pub(super) name: &'static str,
    pub(super) versions: Versions,
    pub(super) shape: Shape,
    pub(super) effect: Effect,
}

/// Reasons shared by several rows.
const PART_SIZES: &str = "objectfs chooses its multipart part sizes itself";
const PARALLEL: &str = "objectfs chooses itself how many parts it transfers at once";
const OWN_CACHE: &str = "objectfs keeps its own cache in the plugin's state directory, bounded by the volume's `cacheSize`";
const TIMEOUTS: &str = "objectfs has its own request timeouts and retries";
const LOGS: &str = "objectfs logs to the volume's log in the plugin's state directory, rotated by the plugin's `--log-max-size` and `--log-max-files`";
const RUN_MODE: &str = "objectfs runs as a process of its own, started by the plugin";
const KEYS: &str = "give the keys as `accessKeyId` and `accessKeySecret`, or a credential profile as `credentials`";

fn id(value: &str) -> Option<u64> {
    parse_id(value).map(u64::from)
}

fn mode(value: &str) -> Option<u64> {
    parse_umask(value).map(u64::from)
}

/// A count or a size: digits only.
fn count(value: &str) -> Option<u64> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

const SECONDS: Shape = Shape::Number(parse_seconds_ms, "seconds from 0 to 3600");
const COUNT: Shape = Shape::Number(count, "a whole number");

const fn row(name: &'static str, versions: Versions, shape: Shape, effect: Effect) -> OssfsOption {
    OssfsOption {
        name,
        versions,
        shape,
        effect,
    }
}

use Effect::{Ignored, Refused, Sets};
use Versions::{Both, V1, V2};

/// The table, in the order the docs list it: the options that set
/// something, those accepted without effect, those refused.
pub(super) const OSSFS_OPTIONS: &[OssfsOption] = &[
    row("allow_other", Both, Shape::Flag, Sets(Setting::AllowOther)),
    row("ro", Both, Shape::Flag, Sets(Setting::ReadOnly)),
    row(
        "uid",
        Both,
        Shape::Number(id, "a numeric user id"),
        Sets(Setting::Uid),
    ),
    row(
        "gid",
        Both,
        Shape::Number(id, "a numeric group id"),
        Sets(Setting::Gid),
    ),
    row(
        "umask",
        Both,
        Shape::Number(mode, "an octal mode from 000 to 777"),
        Sets(Setting::Umask),
    ),
    row("attr_timeout", Both, SECONDS, Sets(Setting::MetadataTtl)),
    row(
        "negative_timeout",
        Both,
        SECONDS,
        Sets(Setting::MetadataTtl),
    ),
    row("stat_cache_expire", V1, SECONDS, Sets(Setting::MetadataTtl)),
    row("entry_timeout", V1, SECONDS, Sets(Setting::MetadataTtl)),
    row(
        "oss_negative_cache_timeout",
        V2,
        SECONDS,
        Sets(Setting::MetadataTtl),
    ),
    row("region", V1, Shape::Region, Sets(Setting::Region)),
    row("oss_region", V2, Shape::Region, Sets(Setting::Region)),
    // ---- accepted without effect ----
    row(
        "sigv4",
        V1,
        Shape::Flag,
        Ignored("objectfs always signs requests with Signature Version 4"),
    ),
    row(
        "max_stat_cache_size",
        V1,
        COUNT,
        Ignored(
            "objectfs's attribute cache has no entry limit; entries expire after `metadataTtl`",
        ),
    ),
    row(
        "enable_noobj_cache",
        V1,
        Shape::Flag,
        Ignored("objectfs always caches negative lookups, for `metadataTtl`"),
    ),
    row(
        "kernel_cache",
        V1,
        Shape::Flag,
        Ignored(
            "objectfs lets the kernel keep its page cache of a file for as long as the object is unchanged",
        ),
    ),
    row(
        "direct_io",
        V1,
        Shape::Flag,
        Ignored("objectfs decides per open whether the kernel keeps its page cache of a file"),
    ),
    row(
        "close_to_open",
        V2,
        Shape::Flag,
        Ignored(
            "objectfs revalidates a file at open once what it knows of it is older than `metadataTtl` (default 1 s); `metadataTtl=0` checks at every open",
        ),
    ),
    row(
        "readdirplus",
        V2,
        Shape::Flag,
        Ignored(
            "objectfs takes attributes from listings only when the volume sets `attrsFromListing=true`",
        ),
    ),
    row("multipart_size", V1, COUNT, Ignored(PART_SIZES)),
    row("upload_buffer_size", V2, COUNT, Ignored(PART_SIZES)),
    row("parallel_count", V1, COUNT, Ignored(PARALLEL)),
    row("upload_concurrency", V2, COUNT, Ignored(PARALLEL)),
    row("use_cache", V1, Shape::Text, Ignored(OWN_CACHE)),
    row("ensure_diskfree", V1, COUNT, Ignored(OWN_CACHE)),
    row("del_cache", V1, Shape::Flag, Ignored(OWN_CACHE)),
    row("connect_timeout", V1, COUNT, Ignored(TIMEOUTS)),
    row("readwrite_timeout", V1, COUNT, Ignored(TIMEOUTS)),
    row("retries", V1, COUNT, Ignored(TIMEOUTS)),
    row(
        "storage_class",
        V1,
        Shape::Text,
        Ignored("objectfs writes objects in the bucket's default storage class"),
    ),
    row(
        "default_acl",
        V1,
        Shape::Text,
        Ignored("objectfs writes objects with the bucket's default ACL"),
    ),
    row(
        "no_check_certificate",
        V1,
        Shape::Flag,
        Ignored("objectfs always checks the store's TLS certificate"),
    ),
    row(
        "use_path_request_style",
        V1,
        Shape::Flag,
        Ignored("objectfs addresses OSS endpoints virtual-hosted style, as OSS requires"),
    ),
    row(
        "noxmlns",
        V1,
        Shape::Flag,
        Ignored("objectfs reads OSS's S3-compatible answers either way"),
    ),
    row(
        "nonempty",
        V1,
        Shape::Flag,
        Ignored("objectfs mounts on a directory of the plugin's own"),
    ),
    row(
        "mp_umask",
        V1,
        Shape::Number(mode, "an octal mode from 000 to 777"),
        Ignored("the mount point is a directory of the plugin's own"),
    ),
    row("dbglevel", V1, Shape::Text, Ignored(LOGS)),
    row("curldbg", V1, Shape::Flag, Ignored(LOGS)),
    row("log_level", V2, Shape::Text, Ignored(LOGS)),
    row("log_dir", V2, Shape::Text, Ignored(LOGS)),
    row("log_file_max_size", V2, COUNT, Ignored(LOGS)),
    row("log_file_max_count", V2, COUNT, Ignored(LOGS)),
    row("f", V2, Shape::Flag, Ignored(RUN_MODE)),
    row("d", V2, Shape::Flag, Ignored(RUN_MODE)),
    // ---- refused ----
    row(
        "url",
        V1,
        Shape::Text,
        Refused("the endpoint comes from the volume's `endpoint`; give it there"),
    ),
    row(
        "oss_endpoint",
        V2,
        Shape::Text,
        Refused("the endpoint comes from the volume's `endpoint`; give it there"),
    ),
    row(
        "oss_bucket",
        V2,
        Shape::Text,
        Refused("the bucket comes from the volume's `bucket`; give it there"),
    ),
    row(
        "oss_bucket_prefix",
        V2,
        Shape::Text,
        Refused("the key prefix comes from the volume's `path` and `subPath`; give it there"),
    ),
    row("passwd_file", V1, Shape::Text, Refused(KEYS)),
    row("oss_access_key_id", V2, Shape::Text, Refused(KEYS)),
    row("oss_access_key_secret", V2, Shape::Text, Refused(KEYS)),
    row("ram_role", V2, Shape::Text, Refused(KEYS)),
    row(
        "credential_process",
        V2,
        Shape::Text,
        Refused(
            "the plugin runs no command named in a volume's options; give the keys as `accessKeyId` and `accessKeySecret`, or a credential profile as `credentials`",
        ),
    ),
];

fn find(name: &str) -> Option<&'static OssfsOption> {
    OSSFS_OPTIONS.iter().find(|o| o.name == name)
}

/// The options of `version` the plugin maps or accepts, for the error
/// that refuses an unknown one.
pub fn ossfs_option_names(version: &str) -> Vec<&'static str> {
    OSSFS_OPTIONS
        .iter()
        .filter(|o| o.versions.has(version) && !matches!(o.effect, Refused(_)))
        .map(|o| o.name)
        .collect()
}

/// Why an item of `options` recorded as accepted without effect has none
/// (for the log, Status and translate's warnings).
pub fn ignored_reason(item: &str) -> Option<&'static str> {
    let name = item.split_once('=').map_or(item, |(n, _)| n).trim();
    match find(&name.to_ascii_lowercase())?.effect {
        Ignored(reason) => Some(reason),
        Sets(_) | Refused(_) => None,
    }
}

/// What a value of `option` must look like, in `version`'s words.
pub(super) fn takes(option: &OssfsOption, version: &str) -> String {
    let what = match option.shape {
        Shape::Flag if version == "2.0" => "no value, or true or false",
        Shape::Flag => "no value",
        Shape::Number(_, words) => words,
        Shape::Region => "a region name of letters, digits and `-`, e.g. cn-hangzhou",
        Shape::Text => "a value",
    };
    format!("{} takes {what}", option.name)
}

/// A value of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    /// A flag that is on.
    On,
    /// A flag set to false (ossfs 2.0): as if not given.
    Off,
    Num(u64),
    Text(String),
}

/// One item of `options`, with the text it came from (for errors, Status).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    option: &'static str,
    val: Val,
    text: String,
}

/// What an ossfs `options` string asks for, each option given once.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct OssfsMountOptions {
    items: Vec<Item>,
}

impl OssfsMountOptions {
    fn setting(&self, setting: Setting) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| {
            matches!(find(i.option).map(|o| o.effect), Some(Sets(s)) if s == setting)
                && i.val != Val::Off
        })
    }

    fn number(&self, setting: Setting) -> Option<&Item> {
        self.setting(setting).next()
    }

    /// `ro` was given (and not `=false`).
    pub(super) fn read_only(&self) -> bool {
        self.setting(Setting::ReadOnly).next().is_some()
    }

    /// objectfs has one metadata cache where ossfs has several; the
    /// shortest is the promise the user can rely on, so it wins.
    fn metadata_ttl(&self) -> Option<&Item> {
        self.setting(Setting::MetadataTtl)
            .min_by_key(|i| match i.val {
                Val::Num(ms) => ms,
                _ => u64::MAX,
            })
    }

    fn region(&self) -> Option<&Item> {
        self.setting(Setting::Region).next()
    }

    /// The items accepted without effect, as given.
    pub(super) fn ignored(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|i| matches!(find(i.option).map(|o| o.effect), Some(Ignored(_))))
            .map(|i| i.text.clone())
            .collect()
    }
}

/// ossfs mount options of `version`, `allow_other,umask=022,ro` with an
/// optional leading `-o ` (as written on an ossfs command line). Empty
/// items are ignored.
pub(super) fn parse_ossfs_options(
    value: &str,
    version: &str,
) -> Result<OssfsMountOptions, SpecError> {
    let list = value.trim();
    let list = list.strip_prefix("-o").map(str::trim_start).unwrap_or(list);
    let mut out = OssfsMountOptions::default();
    for text in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        apply_ossfs_option(&mut out, text, version)?;
    }
    Ok(out)
}

/// One item, `name` or `name=value`. The same setting twice is fine; two
/// different values are refused since ossfs (last wins) and a reader of the
/// options may disagree on which.
fn apply_ossfs_option(
    out: &mut OssfsMountOptions,
    text: &str,
    version: &str,
) -> Result<(), SpecError> {
    let (name, arg) = match text.split_once('=') {
        Some((n, a)) => (n.trim(), Some(a.trim())),
        None => (text, None),
    };
    let option = match find(&name.to_ascii_lowercase()) {
        Some(o) if o.versions.has(version) => o,
        Some(o) => {
            return Err(SpecError::OssfsOptionOfOtherVersion {
                option: o.name,
                of: o.versions.label(),
                version: version.to_string(),
            });
        }
        None => {
            return Err(SpecError::UnsupportedOssfsOption {
                option: name.to_string(),
                version: version.to_string(),
            });
        }
    };
    if let Refused(instead) = option.effect {
        return Err(SpecError::RefusedOssfsOption {
            option: option.name,
            instead,
        });
    }
    let val = match (option.shape, arg) {
        (Shape::Flag, None) => Some(Val::On),
        (Shape::Flag, Some(a)) if version == "2.0" => match a.to_ascii_lowercase().as_str() {
            "true" => Some(Val::On),
            "false" => Some(Val::Off),
            _ => None,
        },
        (Shape::Flag, Some(_)) => None,
        (Shape::Number(parse, _), arg) => arg.and_then(parse).map(Val::Num),
        (Shape::Region, Some(a)) if is_region_name(a) => Some(Val::Text(a.to_string())),
        (Shape::Region, _) => None,
        (Shape::Text, Some(a)) if !a.is_empty() => Some(Val::Text(a.to_string())),
        (Shape::Text, _) => None,
    };
    let Some(val) = val else {
        return Err(SpecError::BadOssfsOption {
            item: text.to_string(),
            expected: takes(option, version),
        });
    };
    match out.items.iter().find(|i| i.option == option.name) {
        Some(old) if old.val != val => {
            Err(SpecError::DuplicateOssfsOption(option.name.to_string()))
        }
        Some(_) => Ok(()),
        None => {
            out.items.push(Item {
                option: option.name,
                val,
                text: text.to_string(),
            });
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
        uid: id("uid", direct.uid, mount.number(Setting::Uid))?,
        gid: id("gid", direct.gid, mount.number(Setting::Gid))?,
        umask: id("umask", direct.umask, mount.number(Setting::Umask))?,
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
    let value = item.map(|i| match i.val {
        Val::Num(n) => n,
        _ => unreachable!("numeric settings hold numbers"),
    });
    match (direct, item.zip(value)) {
        (Some(d), Some((i, v))) if d != v => Err(conflict(opts, option, i)),
        (Some(d), _) => Ok(Some(d)),
        (None, _) => Ok(value),
    }
}

fn conflict(opts: &Opts, option: &'static str, item: &Item) -> SpecError {
    SpecError::OptionsConflict {
        option,
        value: opts.get(option).unwrap_or_default().to_string(),
        item: item.text.clone(),
    }
}

/// `region`/`oss_region` in `options` against the volume's `region`.
pub(super) fn merge_region(
    opts: &Opts,
    direct: Option<String>,
    mount: &OssfsMountOptions,
) -> Result<Option<String>, SpecError> {
    let item = mount.region();
    let given = item.and_then(|i| match &i.val {
        Val::Text(t) => Some(t.clone()),
        _ => None,
    });
    match (direct, item) {
        (Some(d), Some(i)) if Some(&d) != given.as_ref() => Err(conflict(opts, "region", i)),
        (Some(d), _) => Ok(Some(d)),
        (None, _) => Ok(given),
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

    /// `options` on a volume of `version`.
    fn of(version: &str, options: &str) -> Result<VolumeSpec, SpecError> {
        parse(with(
            &ossfs(),
            json!({ "options": options, "version": version }),
        ))
    }

    /// Names are unique and lowercase, and each setting is read from the
    /// value shape it needs (the merges rely on it).
    #[test]
    fn table_names_are_unique_and_settings_have_their_shapes() {
        for (i, o) in OSSFS_OPTIONS.iter().enumerate() {
            assert_eq!(o.name, o.name.to_ascii_lowercase());
            assert!(
                OSSFS_OPTIONS[i + 1..].iter().all(|p| p.name != o.name),
                "{} twice",
                o.name
            );
            if let Sets(setting) = o.effect {
                let fits = match setting {
                    Setting::AllowOther | Setting::ReadOnly => matches!(o.shape, Shape::Flag),
                    Setting::Uid | Setting::Gid | Setting::Umask | Setting::MetadataTtl => {
                        matches!(o.shape, Shape::Number(..))
                    }
                    Setting::Region => matches!(o.shape, Shape::Region),
                };
                assert!(fits, "{} sets {setting:?} from the wrong shape", o.name);
            }
        }
    }

    #[test]
    fn ossfs_options_map_to_tuning() {
        let spec = of(
            "1.0",
            "allow_other,umask=022,uid=1000,gid=1000,ro,stat_cache_expire=5",
        )
        .unwrap();
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
        assert!(object(&spec).ignored_options.is_empty());
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
            ("ro=true", true),
            ("ro=false", false),
            ("ro=FALSE,allow_other=true", false),
        ] {
            assert_eq!(
                ossfs_opts(options).unwrap().read_only,
                read_only,
                "{options:?}"
            );
        }
        let t = |v: &str, o: &str| object(&of(v, o).unwrap()).tuning.clone();
        assert_eq!(t("2.0", "attr_timeout=0.5").metadata_ttl_ms, Some(500));
        assert_eq!(t("1.0", "attr_timeout=0.5").metadata_ttl_ms, Some(500));
        assert_eq!(
            t("1.0", "stat_cache_expire=900").metadata_ttl_ms,
            Some(900_000)
        );
        assert_eq!(
            t("1.0", "stat_cache_expire=5,attr_timeout=2").metadata_ttl_ms,
            Some(2000)
        );
        assert_eq!(
            t("1.0", "attr_timeout=7,stat_cache_expire=3,entry_timeout=4").metadata_ttl_ms,
            Some(3000)
        );
        assert_eq!(
            t("2.0", "attr_timeout=60,negative_timeout=0").metadata_ttl_ms,
            Some(0)
        );
        assert_eq!(
            t("2.0", "oss_negative_cache_timeout=2,attr_timeout=9").metadata_ttl_ms,
            Some(2000)
        );
        assert_eq!(t("2.0", "uid=5,uid=5").uid, Some(5));
        assert_eq!(t("2.0", "umask = 077").umask, Some(0o077));
        assert_eq!(t("2.0", "UID=3").uid, Some(3));
        // The signing region, per version.
        let r = |v: &str, o: &str| object(&of(v, o).unwrap()).region.clone();
        assert_eq!(
            r("1.0", "sigv4,region=cn-hangzhou").as_deref(),
            Some("cn-hangzhou")
        );
        assert_eq!(
            r("2.0", "oss_region=cn-beijing").as_deref(),
            Some("cn-beijing")
        );
        assert_eq!(r("2.0", "allow_other"), None);
    }

    /// Every option the issue names, per version: mapped, accepted with a
    /// note, or refused as documented.
    #[test]
    fn the_options_sandbox_configurations_carry_today() {
        // ossfs 1.0.
        let spec = of(
            "1.0",
            "allow_other,max_stat_cache_size=100000,stat_cache_expire=10,kernel_cache,\
             multipart_size=64,parallel_count=20,sigv4,region=cn-hangzhou",
        )
        .unwrap();
        let o = object(&spec);
        assert_eq!(o.tuning.metadata_ttl_ms, Some(10_000));
        assert_eq!(o.region.as_deref(), Some("cn-hangzhou"));
        assert_eq!(
            o.ignored_options,
            [
                "max_stat_cache_size=100000",
                "kernel_cache",
                "multipart_size=64",
                "parallel_count=20",
                "sigv4"
            ]
        );
        for item in &o.ignored_options {
            assert!(ignored_reason(item).is_some(), "{item}");
        }
        // ossfs 2.0.
        let spec = of(
            "2.0",
            "allow_other,attr_timeout=30,close_to_open=true,upload_concurrency=64,\
             upload_buffer_size=8388608",
        )
        .unwrap();
        let o = object(&spec);
        assert_eq!(o.tuning.metadata_ttl_ms, Some(30_000));
        assert_eq!(
            o.ignored_options,
            [
                "close_to_open=true",
                "upload_concurrency=64",
                "upload_buffer_size=8388608"
            ]
        );
        assert!(
            ignored_reason("close_to_open=true")
                .unwrap()
                .contains("metadataTtl")
        );
        assert!(ignored_reason("Upload_Concurrency").is_some());
        assert_eq!(ignored_reason("uid=1"), None, "mapped, not ignored");
        assert_eq!(ignored_reason("nope"), None);
        // The default version is 2.0.
        assert!(ossfs_opts("close_to_open").is_ok());
        // Each version's options are refused for the other, with a sentence.
        for (version, item, of_version) in [
            ("2.0", "stat_cache_expire=5", "1.0"),
            ("2.0", "max_stat_cache_size=1000", "1.0"),
            ("2.0", "kernel_cache", "1.0"),
            ("2.0", "multipart_size=10", "1.0"),
            ("2.0", "parallel_count=5", "1.0"),
            ("2.0", "sigv4", "1.0"),
            ("2.0", "region=cn-hangzhou", "1.0"),
            ("1.0", "close_to_open", "2.0"),
            ("1.0", "upload_concurrency=64", "2.0"),
            ("1.0", "upload_buffer_size=1", "2.0"),
            ("1.0", "oss_region=cn-hangzhou", "2.0"),
        ] {
            let e = of(version, item).unwrap_err();
            let name = item.split('=').next().unwrap();
            assert_eq!(
                e.to_string(),
                format!(
                    "ossfs option `{name}` in `options` is an ossfs {of_version} option, and this \
                     volume is version={version}; remove it or set version={of_version}"
                ),
            );
            assert_sentence(&e);
        }
    }

    #[test]
    fn ossfs_options_refusals() {
        let e = ossfs_opts("allow_other,no_such_option=1").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "ossfs option `no_such_option` in `options` is not an ossfs 2.0 option this plugin \
                 knows; remove it, or use one it maps or accepts: {}",
                ossfs_option_names("2.0").join(", ")
            )
        );
        assert!(e.to_string().contains("upload_concurrency"), "{e}");
        assert!(
            !e.to_string().contains("oss_endpoint"),
            "refused ones not offered"
        );
        let e = of("1.0", "bogus").unwrap_err();
        assert!(e.to_string().contains("not an ossfs 1.0 option"), "{e}");
        assert!(e.to_string().contains("stat_cache_expire"), "{e}");
        for other in ["nonempty2", "-o", "o", "=x"] {
            let e = ossfs_opts(&format!("ro,{other}")).unwrap_err();
            assert!(
                matches!(e, SpecError::UnsupportedOssfsOption { .. }),
                "{other}: {e:?}"
            );
        }
        // Refused: what would take the endpoint, bucket or keys elsewhere.
        for (version, item, says) in [
            ("1.0", "url=http://VALUE123", "`endpoint`"),
            ("1.0", "passwd_file=/VALUE123", "`accessKeyId`"),
            ("2.0", "oss_endpoint=VALUE123", "`endpoint`"),
            ("2.0", "oss_bucket=VALUE123", "`bucket`"),
            ("2.0", "oss_bucket_prefix=VALUE123/", "`path`"),
            ("2.0", "oss_access_key_id=VALUE123", "`credentials`"),
            ("2.0", "oss_access_key_secret=VALUE123", "`credentials`"),
            ("2.0", "ram_role=VALUE123", "`credentials`"),
            ("2.0", "credential_process=/VALUE123", "runs no command"),
        ] {
            let e = of(version, item).unwrap_err();
            let name = item.split('=').next().unwrap();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("ossfs option `{name}` in `options` is refused: ")),
                "{msg}"
            );
            assert!(msg.contains(says), "{msg}");
            assert!(!msg.contains("VALUE123"), "no value: {msg}");
            assert_sentence(&e);
        }
        for (version, item, expected) in [
            ("1.0", "ro=1", "ro takes no value"),
            ("1.0", "ro=true", "ro takes no value"),
            ("2.0", "ro=1", "ro takes no value, or true or false"),
            (
                "2.0",
                "allow_other=yes",
                "allow_other takes no value, or true or false",
            ),
            ("2.0", "uid=x", "uid takes a numeric user id"),
            ("2.0", "uid", "uid takes a numeric user id"),
            ("2.0", "gid=-1", "gid takes a numeric group id"),
            ("2.0", "umask=999", "umask takes an octal mode"),
            ("2.0", "umask=", "umask takes an octal mode"),
            (
                "1.0",
                "stat_cache_expire=-5",
                "stat_cache_expire takes seconds",
            ),
            (
                "1.0",
                "stat_cache_expire=3601",
                "stat_cache_expire takes seconds",
            ),
            ("2.0", "attr_timeout=1e2", "attr_timeout takes seconds"),
            (
                "1.0",
                "multipart_size=big",
                "multipart_size takes a whole number",
            ),
            (
                "2.0",
                "upload_concurrency=-1",
                "upload_concurrency takes a whole number",
            ),
            ("1.0", "region=cn hangzhou", "region takes a region name"),
            ("1.0", "region", "region takes a region name"),
            ("1.0", "use_cache", "use_cache takes a value"),
        ] {
            let e = of(version, item).unwrap_err();
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
            "ro,ro=false",
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
    fn accepted_without_effect_is_recorded_as_given() {
        let spec = of(
            "1.0",
            " use_cache=/tmp/c , ensure_diskfree=1024,Kernel_Cache,dbglevel=info",
        )
        .unwrap();
        assert_eq!(
            object(&spec).ignored_options,
            [
                "use_cache=/tmp/c",
                "ensure_diskfree=1024",
                "Kernel_Cache",
                "dbglevel=info"
            ]
        );
        // Same options, same record: a repeated Create is no conflict.
        assert_eq!(
            spec,
            of(
                "1.0",
                "use_cache=/tmp/c,ensure_diskfree=1024,Kernel_Cache,dbglevel=info"
            )
            .unwrap()
        );
        let text = serde_json::to_string(&spec).unwrap();
        let back: VolumeSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, spec);
        assert!(
            !serde_json::to_string(&parse(ossfs()).unwrap())
                .unwrap()
                .contains("ignored")
        );
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
        let e = conflict(
            json!({"version": "1.0", "options": "stat_cache_expire=9,attr_timeout=4", "metadataTtl": "9"}),
        );
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
        let e = conflict(json!({"options": "oss_region=cn-beijing", "region": "cn-hangzhou"}));
        assert_eq!(
            e.to_string(),
            r#"option `region`="cn-hangzhou" conflicts with `oss_region=cn-beijing` in `options`; give the setting in one place or make the two agree"#
        );
        // Agreeing values, written differently, are fine.
        let spec = parse(with(
            &ossfs(),
            json!({"options": "ro,uid=7,umask=0022,attr_timeout=1.5,oss_region=cn-hangzhou",
                   "readOnly": "true", "uid": 7, "umask": "022", "metadataTtl": "1.500",
                   "region": "cn-hangzhou"}),
        ))
        .unwrap();
        assert!(spec.read_only);
        let t = &object(&spec).tuning;
        assert_eq!(
            (t.uid, t.umask, t.metadata_ttl_ms),
            (Some(7), Some(0o022), Some(1500))
        );
        // `ro=false` (ossfs 2.0) says nothing against `readOnly=true`.
        let spec = parse(with(
            &ossfs(),
            json!({"options": "ro=false", "readOnly": true}),
        ))
        .unwrap();
        assert!(spec.read_only);
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
