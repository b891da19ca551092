//! Volume options → a typed [`VolumeSpec`], parsed once at Create.
//!
//! Every error a user can cause with `-o key=value` is produced here, as one
//! sentence that names the option and says what is accepted; none of them
//! ever contains a key (`accessKeyId`, `accessKeySecret`, `sessionToken`).
//! Nothing in this module touches the filesystem or the network: whether a
//! host path exists or is allowed is the backend's business (see
//! `backend::host`), whether a credential profile exists is
//! `credentials::profile_exists`'s.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Every backend type the OpenSandbox volume model names; the plugin
/// serves them all.
pub const ALL_TYPES: &[&str] = &["host", "pvc", "ossfs", "s3", "nfs"];

/// Options every type accepts, in the spelling the documentation uses.
const COMMON_OPTIONS: &[&str] = &["type", "subPath", "readOnly"];
/// Options of `type=host`, besides the common ones.
const HOST_OPTIONS: &[&str] = &["path"];
/// Options of `type=pvc`, besides the common ones.
const PVC_OPTIONS: &[&str] = &["claimName"];
/// Options of `type=nfs`, besides the common ones.
const NFS_OPTIONS: &[&str] = &["server", "path", "options"];
/// NFS mount options `options` may hold: the client-side tuning an agent's
/// volume may need. Anything else (e.g. `mountproto`, `fsc`, `local_lock`)
/// is refused by name.
pub const NFS_MOUNT_OPTIONS: &[&str] = &[
    "vers",
    "nfsvers",
    "minorversion",
    "hard",
    "soft",
    "softreval",
    "timeo",
    "retrans",
    "rsize",
    "wsize",
    "ac",
    "noac",
    "actimeo",
    "acregmin",
    "acregmax",
    "acdirmin",
    "acdirmax",
    "lookupcache",
    "proto",
    "port",
    "nconnect",
    "sec",
    "lock",
    "nolock",
    "cto",
    "nocto",
    "ro",
    "rw",
    "noatime",
    "nodiratime",
    "relatime",
    "nosuid",
    "nodev",
    "noexec",
];
/// Options of `type=s3`, besides the common ones.
const S3_OPTIONS: &[&str] = &[
    "bucket",
    "endpoint",
    "region",
    "prefix",
    "pathStyle",
    "credentials",
    "accessKeyId",
    "accessKeySecret",
    "sessionToken",
    "upload",
    "metadataTtl",
    "attrsFromListing",
    "uid",
    "gid",
    "umask",
];
/// Options of `type=ossfs` (the OpenSandbox API's fields, then ours),
/// besides the common ones.
const OSSFS_OPTIONS: &[&str] = &[
    "bucket",
    "endpoint",
    "path",
    "version",
    "options",
    "accessKeyId",
    "accessKeySecret",
    "sessionToken",
    "credentials",
    "region",
    "upload",
    "metadataTtl",
    "attrsFromListing",
    "uid",
    "gid",
    "umask",
];
/// The ossfs mount options objectfs understands inside `options`.
const OSSFS_MOUNT_OPTIONS: &[&str] = &[
    "allow_other",
    "umask",
    "uid",
    "gid",
    "ro",
    "stat_cache_expire",
    "attr_timeout",
];

/// A validated volume: one backend plus the options common to all backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub backend: BackendSpec,
    /// Relative, normalised (no empty, `.` or `..` component), no leading `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// The backend-specific part of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendSpec {
    /// A directory of the Docker host; absolute and normalised, not yet
    /// resolved (symlinks are resolved and checked at every use).
    Host { path: PathBuf },
    /// A bucket (or a prefix of one) of AWS S3 or any S3-compatible store,
    /// mounted with objectfs.
    S3(ObjectSpec),
    /// An Alibaba Cloud OSS bucket, as OpenSandbox's `ossfs` volume
    /// describes it; mounted with objectfs through OSS's S3-compatible API.
    Ossfs(ObjectSpec),
    /// An existing Docker named volume (OpenSandbox's `pvc`), looked up at
    /// Mount; `subPath` selects a directory inside it.
    Pvc {
        /// A DNS label (≤ 63 characters), so also a valid Docker volume name.
        claim_name: String,
    },
    /// An NFS export, mounted by the kernel.
    Nfs(NfsSpec),
}

/// An NFS volume, validated at Create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NfsSpec {
    /// Host name, IPv4 address or bracketed IPv6 address.
    pub server: String,
    /// The export: absolute and normalised.
    pub path: String,
    /// Mount options, each from [`NFS_MOUNT_OPTIONS`], in the given order.
    #[serde(default)]
    pub options: Vec<String>,
}

impl BackendSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendSpec::Host { .. } => "host",
            BackendSpec::S3(_) => "s3",
            BackendSpec::Ossfs(_) => "ossfs",
            BackendSpec::Pvc { .. } => "pvc",
            BackendSpec::Nfs(_) => "nfs",
        }
    }

    /// The object-storage part, for `s3` and `ossfs` volumes.
    pub fn object(&self) -> Option<&ObjectSpec> {
        match self {
            BackendSpec::S3(o) | BackendSpec::Ossfs(o) => Some(o),
            BackendSpec::Host { .. } | BackendSpec::Pvc { .. } | BackendSpec::Nfs(_) => None,
        }
    }
}

/// An object-storage volume, validated at Create (no storage contacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSpec {
    pub bucket: String,
    /// As given, scheme optional (`http://127.0.0.1:9000`,
    /// `oss-cn-hangzhou.aliyuncs.com`); `None`: AWS S3 for the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Key prefix from `prefix` (s3) or `path` (ossfs): empty or ending in
    /// `/`, without the volume's `subPath` (the backend appends that).
    #[serde(default)]
    pub prefix: String,
    /// `None`: path style for IP addresses and localhost, virtual-hosted
    /// style otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    pub credentials: Credentials,
    /// ossfs `version` as given (`1.0` or `2.0`); both are served by objectfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub tuning: MountTuning,
}

/// Where a mount's keys come from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Credentials {
    /// No keys given: anonymous (unsigned) requests, for public buckets;
    /// the store never reads keys from the plugin's environment.
    Default,
    /// `credentials=NAME`: a profile file on the plugin side; only the name
    /// is recorded.
    Profile { name: String },
    /// Keys passed as volume options (what the OpenSandbox API sends).
    Inline {
        access_key_id: String,
        access_key_secret: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_token: Option<String>,
    },
}

/// Debug by hand: a spec in a log line or an error never shows a secret.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Default => f.write_str("Default"),
            Credentials::Profile { name } => f.debug_struct("Profile").field("name", name).finish(),
            Credentials::Inline { .. } => f.write_str("Inline(<redacted>)"),
        }
    }
}

/// objectfs settings a volume may choose (`None`: the mount's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountTuning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umask: Option<u32>,
    /// `async` or `sync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    /// Attribute and negative-lookup cache, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_ttl_ms: Option<u64>,
    /// Listed files take their attributes from the listing (no HEAD each):
    /// `mount --attrs-from-listing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs_from_listing: Option<bool>,
}

/// Every error a user can cause with `-o key=value`, each one sentence
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
        "option `subPath`={0:?} must be a relative path inside the volume (no leading `/`, no `.` or `..` components, no NUL), e.g. subPath=work/run1"
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
        "option `{0}` contains whitespace or control characters, which no key has; give the key exactly as issued"
    )]
    BadKey(&'static str),
    #[error(
        "ossfs option `{}` in `options` is not supported; supported: {supported}",
        printable(.0),
        supported = OSSFS_MOUNT_OPTIONS.join(", ")
    )]
    UnsupportedOssfsOption(String),
    #[error("ossfs option `{}` in `options` is not valid; {expected}", printable(.item))]
    BadOssfsOption {
        item: String,
        expected: &'static str,
    },
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
        "option `claimName`={0:?} is not a DNS label; use 1–63 lowercase letters, digits and `-`, starting and ending with a letter or digit, e.g. claimName=team-data"
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

/// Longest path we accept in an option; PATH_MAX on Linux.
const MAX_PATH_LEN: usize = 4096;
/// Longest single path component; NAME_MAX on Linux.
const MAX_COMPONENT_LEN: usize = 255;
/// Longest key prefix; S3's and OSS's limit on a whole key.
const MAX_PREFIX_LEN: usize = 1024;
/// Longest metadata cache: beyond this, changes made by other clients of
/// the bucket would stay invisible for longer than anyone expects.
const MAX_METADATA_TTL_SECS: f64 = 3600.0;
/// Longest region name we accept (real ones are far shorter).
const MAX_REGION_LEN: usize = 64;
/// The ossfs `version` when none is given.
const DEFAULT_OSSFS_VERSION: &str = "2.0";

const EXPECT_SECONDS: &str =
    "a number of seconds from 0 to 3600 (fractions allowed), e.g. metadataTtl=1.5";
const EXPECT_UID: &str = "a numeric user id, e.g. uid=1000";
const EXPECT_GID: &str = "a numeric group id, e.g. gid=1000";
const EXPECT_UMASK: &str = "an octal mode from 000 to 777, e.g. umask=022";
const EXPECT_UPLOAD: &str = "async or sync";
const EXPECT_VERSION: &str = "1.0 or 2.0";
const HINT_KEY: &str = "give the key or leave the option out";

/// Parses Docker's `Opts` (which may be `null`, i.e. `None`) into a spec.
///
/// Keys are matched case-insensitively because the OpenSandbox API spells
/// them in camelCase while people typing `-o` rarely do.
pub fn parse_options(opts: Option<&Map<String, Value>>) -> Result<VolumeSpec, SpecError> {
    let opts = Opts::new(opts)?;
    let ty = parse_type(&opts)?;
    opts.refuse_unknown(ty)?;

    let sub_path = match opts.get("subPath") {
        None => None,
        Some(v) => parse_sub_path(v)?,
    };
    let read_only = opts
        .get("readOnly")
        .map(|v| parse_bool("readOnly", v))
        .transpose()?;
    let (backend, read_only) = match ty {
        "host" => (parse_host(&opts)?, read_only.unwrap_or(false)),
        "s3" => (
            BackendSpec::S3(parse_s3(&opts)?),
            read_only.unwrap_or(false),
        ),
        "ossfs" => {
            let (object, read_only) = parse_ossfs(&opts, read_only)?;
            (BackendSpec::Ossfs(object), read_only)
        }
        "pvc" => (parse_pvc(&opts)?, read_only.unwrap_or(false)),
        "nfs" => (
            BackendSpec::Nfs(parse_nfs(&opts)?),
            read_only.unwrap_or(false),
        ),
        _ => unreachable!("checked against ALL_TYPES by parse_type"),
    };
    Ok(VolumeSpec {
        backend,
        sub_path,
        read_only,
    })
}

/// Docker's options as strings, each key kept as given (for errors).
struct Opts(Vec<(String, String)>);

impl Opts {
    /// Refuses keys that differ only in case (which one would win is
    /// otherwise arbitrary) and values that are not scalars.
    fn new(opts: Option<&Map<String, Value>>) -> Result<Opts, SpecError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for (key, value) in opts.into_iter().flatten() {
            if entries.iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
                return Err(SpecError::Duplicate(key.clone()));
            }
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => return Err(SpecError::NotAString(key.clone())),
            };
            entries.push((key.clone(), value));
        }
        Ok(Opts(entries))
    }

    /// The value of an option, `name` in its documented spelling.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// An option of another type (or a typo) is refused rather than
    /// ignored: a silently ignored `readonly=true` would be a surprise.
    fn refuse_unknown(&self, ty: &str) -> Result<(), SpecError> {
        let accepted: Vec<&str> = COMMON_OPTIONS
            .iter()
            .chain(type_options(ty))
            .copied()
            .collect();
        match self
            .0
            .iter()
            .find(|(k, _)| !accepted.iter().any(|a| a.eq_ignore_ascii_case(k)))
        {
            None => Ok(()),
            Some((key, _)) => Err(SpecError::UnknownOption {
                key: key.clone(),
                ty: ty.to_string(),
                accepted: accepted.join(", "),
            }),
        }
    }
}

/// Every option name of every type, in its documented spelling, once each.
pub fn option_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for name in ALL_TYPES
        .iter()
        .flat_map(|ty| COMMON_OPTIONS.iter().chain(type_options(ty)))
    {
        if !names.contains(name) {
            names.push(name);
        }
    }
    names
}

fn type_options(ty: &str) -> &'static [&'static str] {
    match ty {
        "host" => HOST_OPTIONS,
        "s3" => S3_OPTIONS,
        "ossfs" => OSSFS_OPTIONS,
        "pvc" => PVC_OPTIONS,
        "nfs" => NFS_OPTIONS,
        _ => &[],
    }
}

/// The volume type, as one of the [`ALL_TYPES`].
fn parse_type(opts: &Opts) -> Result<&'static str, SpecError> {
    let ty = opts
        .get("type")
        .ok_or(SpecError::MissingType)?
        .trim()
        .to_ascii_lowercase();
    ALL_TYPES
        .iter()
        .find(|t| **t == ty)
        .copied()
        .ok_or(SpecError::UnknownType(ty))
}

fn parse_host(opts: &Opts) -> Result<BackendSpec, SpecError> {
    let path = match opts.get("path") {
        None | Some("") => return Err(SpecError::MissingHostPath),
        Some(v) => v,
    };
    if !is_normalised_absolute(path) {
        return Err(SpecError::BadHostPath(path.to_string()));
    }
    Ok(BackendSpec::Host {
        path: PathBuf::from(path),
    })
}

fn parse_pvc(opts: &Opts) -> Result<BackendSpec, SpecError> {
    let claim = required(opts, "claimName", "pvc", "claimName=team-data")?;
    if !is_dns_label(claim) {
        return Err(SpecError::BadClaimName(claim.to_string()));
    }
    Ok(BackendSpec::Pvc {
        claim_name: claim.to_string(),
    })
}

/// RFC 1123 label, as Kubernetes names claims: 1–63 of `[a-z0-9-]`,
/// alphanumeric at both ends.
pub fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && starts_and_ends_alphanumeric(name)
}

fn parse_nfs(opts: &Opts) -> Result<NfsSpec, SpecError> {
    let server = required(opts, "server", "nfs", "server=nfs.example.com")?;
    if !is_nfs_server(server) {
        return Err(SpecError::BadNfsServer(server.to_string()));
    }
    let path = required(opts, "path", "nfs", "path=/exports/team")?;
    if !is_normalised_absolute(path) {
        return Err(SpecError::BadNfsPath(path.to_string()));
    }
    let mut options = Vec::new();
    for item in opts.get("options").unwrap_or("").split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, value) = item.split_once('=').unwrap_or((item, ""));
        let plain = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if name.is_empty() || !plain(name) || !plain(value) || item.ends_with('=') {
            return Err(SpecError::BadNfsOption(item.to_string()));
        }
        if !NFS_MOUNT_OPTIONS.contains(&name) {
            return Err(SpecError::UnsupportedNfsOption(name.to_string()));
        }
        options.push(item.to_string());
    }
    Ok(NfsSpec {
        server: server.to_string(),
        path: path.to_string(),
        options,
    })
}

/// A host name (labels of letters, digits and `-`), an IPv4 address, or an
/// IPv6 address in brackets: nothing that could smuggle options or paths
/// into the mount source `server:/path`.
pub fn is_nfs_server(server: &str) -> bool {
    if let Some(inner) = server.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    server.len() <= 253
        && server.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn parse_s3(opts: &Opts) -> Result<ObjectSpec, SpecError> {
    let bucket = required(opts, "bucket", "s3", "bucket=my-bucket")?;
    if !is_s3_bucket_name(bucket) {
        return Err(SpecError::BadS3Bucket(bucket.to_string()));
    }
    let endpoint = match opts.get("endpoint") {
        None => None,
        Some(v) if v.trim().is_empty() => {
            return Err(SpecError::EmptyOption {
                option: "endpoint",
                hint: "leave it out for AWS S3 or give a host name or an http(s) URL",
            });
        }
        Some(v) => Some(parse_endpoint(v)?),
    };
    Ok(ObjectSpec {
        bucket: bucket.to_string(),
        endpoint,
        region: parse_region(opts)?,
        prefix: parse_prefix("prefix", opts.get("prefix"))?,
        path_style: opts
            .get("pathStyle")
            .map(|v| parse_bool("pathStyle", v))
            .transpose()?,
        credentials: parse_credentials(opts)?,
        version: None,
        tuning: parse_tuning(opts)?,
    })
}

/// An OpenSandbox `ossfs` volume. Returns the spec and the volume's
/// read-only flag, which `ro` in `options` may set.
fn parse_ossfs(opts: &Opts, read_only: Option<bool>) -> Result<(ObjectSpec, bool), SpecError> {
    let bucket = required(opts, "bucket", "ossfs", "bucket=my-bucket")?;
    if !is_oss_bucket_name(bucket) {
        return Err(SpecError::BadOssBucket(bucket.to_string()));
    }
    let endpoint = required(
        opts,
        "endpoint",
        "ossfs",
        "endpoint=oss-cn-hangzhou.aliyuncs.com",
    )?;
    let endpoint = parse_endpoint(endpoint)?;
    let version = parse_with(opts, "version", EXPECT_VERSION, parse_version)?
        .unwrap_or_else(|| DEFAULT_OSSFS_VERSION.to_string());
    let mut mount = match opts.get("options") {
        None => OssfsMountOptions::default(),
        Some(v) => parse_ossfs_options(v)?,
    };
    let tuning = merge_ossfs_tuning(opts, parse_tuning(opts)?, &mut mount)?;
    let read_only = merge_read_only(opts, read_only, mount.read_only)?;
    let object = ObjectSpec {
        bucket: bucket.to_string(),
        endpoint: Some(endpoint),
        region: parse_region(opts)?,
        prefix: parse_prefix("path", opts.get("path"))?,
        path_style: None,
        credentials: parse_credentials(opts)?,
        version: Some(version),
        tuning,
    };
    Ok((object, read_only))
}

/// A required option; empty counts as missing.
fn required<'a>(
    opts: &'a Opts,
    option: &'static str,
    ty: &'static str,
    example: &'static str,
) -> Result<&'a str, SpecError> {
    match opts.get(option) {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(SpecError::MissingOption {
            option,
            ty,
            example,
        }),
    }
}

/// An optional option whose value `parse` checks; `expected` says in the
/// error what a good value looks like.
fn parse_with<T>(
    opts: &Opts,
    option: &'static str,
    expected: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, SpecError> {
    match opts.get(option) {
        None => Ok(None),
        Some(v) => parse(v).map(Some).ok_or_else(|| SpecError::BadValue {
            option,
            value: v.to_string(),
            expected,
        }),
    }
}

fn parse_tuning(opts: &Opts) -> Result<MountTuning, SpecError> {
    Ok(MountTuning {
        uid: parse_with(opts, "uid", EXPECT_UID, parse_id)?,
        gid: parse_with(opts, "gid", EXPECT_GID, parse_id)?,
        umask: parse_with(opts, "umask", EXPECT_UMASK, parse_umask)?,
        upload: parse_with(opts, "upload", EXPECT_UPLOAD, parse_upload)?,
        metadata_ttl_ms: parse_with(opts, "metadataTtl", EXPECT_SECONDS, parse_seconds_ms)?,
        attrs_from_listing: opts
            .get("attrsFromListing")
            .map(|v| parse_bool("attrsFromListing", v))
            .transpose()?,
    })
}

/// Checked by the store's own endpoint parser (pure, no network), so a
/// volume that passes Create cannot fail at Mount on its endpoint's shape.
/// Stored trimmed, since that is what the store uses.
fn parse_endpoint(value: &str) -> Result<String, SpecError> {
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

fn parse_region(opts: &Opts) -> Result<Option<String>, SpecError> {
    match opts.get("region") {
        None => Ok(None),
        Some("") => Err(SpecError::EmptyOption {
            option: "region",
            hint: "leave it out or name a region, e.g. region=us-west-2",
        }),
        Some(r) if is_region_name(r) => Ok(Some(r.to_string())),
        Some(r) => Err(SpecError::BadRegion(r.to_string())),
    }
}

fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= MAX_REGION_LEN
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// AWS's rules for new buckets (which S3-compatible servers follow), so a
/// typo is caught at Create instead of as a signature or DNS error later.
fn is_s3_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && starts_and_ends_alphanumeric(name)
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

/// OSS's rules: like S3's, without dots.
fn is_oss_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && starts_and_ends_alphanumeric(name)
}

fn starts_and_ends_alphanumeric(name: &str) -> bool {
    let alnum = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    alnum(name.as_bytes().first()) && alnum(name.as_bytes().last())
}

/// A key prefix (`prefix` for s3, `path` for ossfs) → "" or "a/b/".
///
/// A leading `/` is tolerated because OpenSandbox users write
/// `path=/agents/run1` for an ossfs volume, as ossfs's `bucket:/path` does.
fn parse_prefix(option: &'static str, value: Option<&str>) -> Result<String, SpecError> {
    let Some(value) = value else {
        return Ok(String::new());
    };
    if value.is_empty() || value == "/" {
        return Ok(String::new());
    }
    let bad = || SpecError::BadPrefix {
        option,
        value: value.to_string(),
    };
    let rest = value.strip_prefix('/').unwrap_or(value);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let plain = |c: &str| !c.is_empty() && c != "." && c != "..";
    if rest.chars().any(char::is_control) || !rest.split('/').all(plain) {
        return Err(bad());
    }
    let prefix = format!("{rest}/");
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(bad());
    }
    Ok(prefix)
}

/// Where the keys come from. A profile and inline keys together would make
/// it unclear which one a mount uses, so that is refused.
fn parse_credentials(opts: &Opts) -> Result<Credentials, SpecError> {
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

fn parse_bool(option: &'static str, value: &str) -> Result<bool, SpecError> {
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
fn parse_id(value: &str) -> Option<u32> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u32>().ok().filter(|id| *id != u32::MAX)
}

/// `022`, `0022`, `7`: octal digits only, at most `777`.
fn parse_umask(value: &str) -> Option<u32> {
    let v = value.trim();
    if v.is_empty() || v.len() > 4 || !v.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(v, 8).ok().filter(|m| *m <= 0o777)
}

fn parse_upload(value: &str) -> Option<String> {
    let v = value.trim().to_ascii_lowercase();
    matches!(v.as_str(), "async" | "sync").then_some(v)
}

fn parse_version(value: &str) -> Option<String> {
    let v = value.trim();
    matches!(v, "1.0" | "2.0").then(|| v.to_string())
}

/// Seconds (`5`, `0.25`; no sign, exponent or `inf`) → milliseconds,
/// rounded, at most an hour.
fn parse_seconds_ms(value: &str) -> Option<u64> {
    let v = value.trim();
    let (int, frac) = v.split_once('.').unwrap_or((v, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !digits(frac) {
        return None;
    }
    let secs: f64 = v.parse().ok()?;
    (secs <= MAX_METADATA_TTL_SECS).then(|| (secs * 1000.0).round() as u64)
}

/// One setting from ossfs's `options`, with the text it came from (for a
/// conflict's error).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item<T> {
    value: T,
    text: String,
}

/// What an ossfs `options` string asks for, in objectfs terms.
#[derive(Debug, Default, PartialEq, Eq)]
struct OssfsMountOptions {
    read_only: bool,
    uid: Option<Item<u32>>,
    gid: Option<Item<u32>>,
    umask: Option<Item<u32>>,
    stat_cache_expire: Option<Item<u64>>,
    attr_timeout: Option<Item<u64>>,
}

impl OssfsMountOptions {
    /// objectfs has one metadata cache where ossfs has two; the shorter
    /// one is the promise the user can rely on, so it wins.
    fn metadata_ttl(&self) -> Option<Item<u64>> {
        match (&self.stat_cache_expire, &self.attr_timeout) {
            (Some(a), Some(b)) if b.value < a.value => Some(b.clone()),
            (Some(a), _) => Some(a.clone()),
            (None, b) => b.clone(),
        }
    }
}

/// ossfs mount options, `allow_other,umask=022,ro` with an optional leading
/// `-o ` (as written on an ossfs command line). Empty items are ignored.
fn parse_ossfs_options(value: &str) -> Result<OssfsMountOptions, SpecError> {
    let list = value.trim();
    let list = list.strip_prefix("-o").map(str::trim_start).unwrap_or(list);
    let mut out = OssfsMountOptions::default();
    for text in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        apply_ossfs_option(&mut out, text)?;
    }
    Ok(out)
}

fn apply_ossfs_option(out: &mut OssfsMountOptions, text: &str) -> Result<(), SpecError> {
    let (name, arg) = match text.split_once('=') {
        Some((n, a)) => (n.trim(), Some(a.trim())),
        None => (text, None),
    };
    let bad = |expected| SpecError::BadOssfsOption {
        item: text.to_string(),
        expected,
    };
    match name.to_ascii_lowercase().as_str() {
        // objectfs volumes always let other users in (containers run as
        // any uid), so allow_other asks for nothing more.
        "allow_other" if arg.is_none() => Ok(()),
        "allow_other" => Err(bad("allow_other takes no value")),
        "ro" if arg.is_none() => {
            out.read_only = true;
            Ok(())
        }
        "ro" => Err(bad("ro takes no value")),
        "uid" => {
            let v = ossfs_value(
                text,
                arg,
                parse_id,
                "uid takes a numeric user id, e.g. uid=1000",
            )?;
            set_once(&mut out.uid, "uid", text, v)
        }
        "gid" => {
            let v = ossfs_value(
                text,
                arg,
                parse_id,
                "gid takes a numeric group id, e.g. gid=1000",
            )?;
            set_once(&mut out.gid, "gid", text, v)
        }
        "umask" => {
            let v = ossfs_value(
                text,
                arg,
                parse_umask,
                "umask takes an octal mode from 000 to 777, e.g. umask=022",
            )?;
            set_once(&mut out.umask, "umask", text, v)
        }
        "stat_cache_expire" => {
            let v = ossfs_value(
                text,
                arg,
                parse_seconds_ms,
                "stat_cache_expire takes seconds from 0 to 3600, e.g. stat_cache_expire=5",
            )?;
            set_once(&mut out.stat_cache_expire, "stat_cache_expire", text, v)
        }
        "attr_timeout" => {
            let v = ossfs_value(
                text,
                arg,
                parse_seconds_ms,
                "attr_timeout takes seconds from 0 to 3600, e.g. attr_timeout=5",
            )?;
            set_once(&mut out.attr_timeout, "attr_timeout", text, v)
        }
        _ => Err(SpecError::UnsupportedOssfsOption(name.to_string())),
    }
}

/// The value of `name=value` in ossfs's `options`, checked by `parse`.
fn ossfs_value<T>(
    text: &str,
    arg: Option<&str>,
    parse: fn(&str) -> Option<T>,
    expected: &'static str,
) -> Result<T, SpecError> {
    arg.and_then(parse)
        .ok_or_else(|| SpecError::BadOssfsOption {
            item: text.to_string(),
            expected,
        })
}

/// The same setting twice is fine; two different values are refused since
/// ossfs (last wins) and a reader of the options may disagree on which.
fn set_once<T: PartialEq>(
    slot: &mut Option<Item<T>>,
    name: &str,
    text: &str,
    value: T,
) -> Result<(), SpecError> {
    match slot {
        Some(old) if old.value != value => Err(SpecError::DuplicateOssfsOption(name.to_string())),
        Some(_) => Ok(()),
        None => {
            *slot = Some(Item {
                value,
                text: text.to_string(),
            });
            Ok(())
        }
    }
}

/// Settings given both directly and in `options` must agree.
fn merge_ossfs_tuning(
    opts: &Opts,
    direct: MountTuning,
    mount: &mut OssfsMountOptions,
) -> Result<MountTuning, SpecError> {
    let ttl = mount.metadata_ttl();
    Ok(MountTuning {
        uid: merge_setting(opts, "uid", direct.uid, mount.uid.take())?,
        gid: merge_setting(opts, "gid", direct.gid, mount.gid.take())?,
        umask: merge_setting(opts, "umask", direct.umask, mount.umask.take())?,
        upload: direct.upload,
        metadata_ttl_ms: merge_setting(opts, "metadataTtl", direct.metadata_ttl_ms, ttl)?,
        attrs_from_listing: direct.attrs_from_listing,
    })
}

fn merge_setting<T: PartialEq>(
    opts: &Opts,
    option: &'static str,
    direct: Option<T>,
    item: Option<Item<T>>,
) -> Result<Option<T>, SpecError> {
    match (direct, item) {
        (Some(d), Some(i)) if d != i.value => Err(SpecError::OptionsConflict {
            option,
            value: opts.get(option).unwrap_or_default().to_string(),
            item: i.text,
        }),
        (Some(d), _) => Ok(Some(d)),
        (None, i) => Ok(i.map(|i| i.value)),
    }
}

/// `ro` in `options` makes the volume read-only unless `readOnly=false`
/// says otherwise, which is a contradiction rather than an override.
fn merge_read_only(opts: &Opts, read_only: Option<bool>, ro: bool) -> Result<bool, SpecError> {
    match (read_only, ro) {
        (Some(false), true) => Err(SpecError::OptionsConflict {
            option: "readOnly",
            value: opts.get("readOnly").unwrap_or_default().to_string(),
            item: "ro".to_string(),
        }),
        (explicit, ro) => Ok(explicit.unwrap_or(false) || ro),
    }
}

/// An empty `subPath` means "the whole volume"; trailing slashes are
/// tolerated because `work/` and `work` name the same directory.
fn parse_sub_path(value: &str) -> Result<Option<String>, SpecError> {
    let trimmed = value.trim_end_matches('/');
    if value.is_empty() {
        return Ok(None);
    }
    let bad = || SpecError::BadSubPath(value.to_string());
    if trimmed.is_empty() || trimmed.starts_with('/') || trimmed.len() > MAX_PATH_LEN {
        return Err(bad());
    }
    if !trimmed.split('/').all(is_plain_component) {
        return Err(bad());
    }
    Ok(Some(trimmed.to_string()))
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

fn is_plain_component(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains('\0') && c.len() <= MAX_COMPONENT_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<VolumeSpec, SpecError> {
        parse_options(v.as_object())
    }

    /// `base` with `extra` added (overriding keys of the same spelling).
    fn with(base: &Value, extra: Value) -> Value {
        let mut all = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            all[k] = v.clone();
        }
        all
    }

    fn s3() -> Value {
        json!({"type": "s3", "bucket": "my-bucket"})
    }

    fn ossfs() -> Value {
        json!({"type": "ossfs", "bucket": "my-bucket", "endpoint": "oss-cn-hangzhou.aliyuncs.com"})
    }

    fn object(spec: &VolumeSpec) -> &ObjectSpec {
        spec.backend.object().expect("an object-storage spec")
    }

    fn tuning(v: Value) -> MountTuning {
        object(&parse(v).unwrap()).tuning.clone()
    }

    fn err(v: Value) -> SpecError {
        parse(v).unwrap_err()
    }

    /// Every error is one sentence: no line break, one final clause.
    fn assert_sentence(e: &SpecError) {
        let msg = e.to_string();
        assert!(!msg.contains('\n') && !msg.ends_with('.'), "{msg}");
    }

    // ---- host (unchanged behaviour) ----

    #[test]
    fn host_with_all_options_case_insensitive() {
        let spec = parse(
            json!({"TYPE": "Host", "Path": "/srv/data", "subpath": "a/b/", "READONLY": "TRUE"}),
        )
        .unwrap();
        assert_eq!(
            spec,
            VolumeSpec {
                backend: BackendSpec::Host {
                    path: "/srv/data".into()
                },
                sub_path: Some("a/b".into()),
                read_only: true,
            }
        );
    }

    #[test]
    fn null_options_means_missing_type() {
        assert_eq!(parse_options(None), Err(SpecError::MissingType));
        assert_eq!(parse(json!({})), Err(SpecError::MissingType));
    }

    #[test]
    fn unknown_types_are_refused() {
        assert!(
            matches!(parse(json!({"type": "ftp"})), Err(SpecError::UnknownType(t)) if t == "ftp")
        );
    }

    #[test]
    fn pvc_claims_are_dns_labels() {
        let spec = parse(
            json!({"type": "PVC", "claimName": "team-data", "subPath": "a/b", "readOnly": "true"}),
        )
        .unwrap();
        assert_eq!(
            spec.backend,
            BackendSpec::Pvc {
                claim_name: "team-data".into()
            }
        );
        assert_eq!(spec.sub_path.as_deref(), Some("a/b"));
        assert!(spec.read_only);
        for bad in [
            "Team",
            "-a",
            "a-",
            "a_b",
            "a.b",
            &"a".repeat(64),
            "../x",
            "",
        ] {
            let err = parse(json!({"type": "pvc", "claimName": bad})).unwrap_err();
            assert!(
                matches!(
                    err,
                    SpecError::BadClaimName(_) | SpecError::MissingOption { .. }
                ),
                "{bad}: {err}"
            );
        }
        assert!(parse(json!({"type": "pvc", "claimName": "a".repeat(63)})).is_ok());
        assert!(matches!(
            parse(json!({"type": "pvc"})).unwrap_err(),
            SpecError::MissingOption {
                option: "claimName",
                ..
            }
        ));
        assert!(matches!(
            parse(json!({"type": "pvc", "claimName": "x", "path": "/x"})).unwrap_err(),
            SpecError::UnknownOption { .. }
        ));
    }

    #[test]
    fn nfs_server_path_and_options_are_checked() {
        let spec = parse(
            json!({"type": "nfs", "server": "nfs.example.com", "path": "/exports/team",
            "options": "nfsvers=4.1, hard,timeo=600"}),
        )
        .unwrap();
        assert_eq!(
            spec.backend,
            BackendSpec::Nfs(NfsSpec {
                server: "nfs.example.com".into(),
                path: "/exports/team".into(),
                options: vec!["nfsvers=4.1".into(), "hard".into(), "timeo=600".into()],
            })
        );
        assert!(parse(json!({"type": "nfs", "server": "[fd00::1]", "path": "/x"})).is_ok());
        assert!(parse(json!({"type": "nfs", "server": "10.0.0.2", "path": "/"})).is_ok());
        for server in ["a b", "x:/y", "-o", "host,ro", "[zz]", "a..b", ""] {
            let err = parse(json!({"type": "nfs", "server": server, "path": "/x"})).unwrap_err();
            assert!(
                matches!(
                    err,
                    SpecError::BadNfsServer(_) | SpecError::MissingOption { .. }
                ),
                "{server}: {err}"
            );
        }
        for path in ["exports", "/a/../b", "/a//b", "/a/"] {
            let err = parse(json!({"type": "nfs", "server": "s", "path": path})).unwrap_err();
            assert!(matches!(err, SpecError::BadNfsPath(_)), "{path}: {err}");
        }
        let err = parse(json!({"type": "nfs", "server": "s", "path": "/x", "options": "hard,fsc"}))
            .unwrap_err();
        assert_eq!(err, SpecError::UnsupportedNfsOption("fsc".into()));
        for bad in ["vers=4 x", "sec=sys;rm", "timeo=", "=1"] {
            let err = parse(json!({"type": "nfs", "server": "s", "path": "/x", "options": bad}))
                .unwrap_err();
            assert!(matches!(err, SpecError::BadNfsOption(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_option_lists_accepted_ones() {
        let err = parse(json!({"type": "host", "path": "/x", "bucket": "b"})).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`bucket`"), "{msg}");
        assert!(msg.contains("type, subPath, readOnly, path"), "{msg}");
    }

    #[test]
    fn duplicate_keys_differing_in_case_are_refused() {
        let err = parse(json!({"type": "host", "path": "/x", "Path": "/y"})).unwrap_err();
        assert!(matches!(err, SpecError::Duplicate(_)));
    }

    #[test]
    fn host_path_must_be_absolute_and_normalised() {
        for bad in [
            "rel", "/a/../b", "/a/./b", "/a//b", "/a/", "./a", "/a\0b", "",
        ] {
            let err = parse(json!({"type": "host", "path": bad})).unwrap_err();
            assert!(
                matches!(err, SpecError::BadHostPath(_) | SpecError::MissingHostPath),
                "{bad:?} gave {err:?}"
            );
        }
        assert!(parse(json!({"type": "host", "path": "/"})).is_ok());
        assert_eq!(
            parse(json!({"type": "host"})),
            Err(SpecError::MissingHostPath)
        );
    }

    #[test]
    fn sub_path_must_stay_inside() {
        for bad in [
            "/abs",
            "..",
            "a/../../b",
            "a/..",
            "./a",
            "a//b",
            "a/./b",
            "/",
        ] {
            let err = parse(json!({"type": "host", "path": "/x", "subPath": bad})).unwrap_err();
            assert!(
                matches!(err, SpecError::BadSubPath(_)),
                "{bad:?} gave {err:?}"
            );
        }
        let long = "a".repeat(256);
        assert!(parse(json!({"type": "host", "path": "/x", "subPath": long})).is_err());
        let spec = parse(json!({"type": "host", "path": "/x", "subPath": ""})).unwrap();
        assert_eq!(spec.sub_path, None);
        let spec = parse(json!({"type": "host", "path": "/x", "subPath": "..a/b..c"})).unwrap();
        assert_eq!(spec.sub_path.as_deref(), Some("..a/b..c"));
    }

    #[test]
    fn booleans_and_non_string_values() {
        let spec = parse(json!({"type": "host", "path": "/x", "readOnly": true})).unwrap();
        assert!(spec.read_only);
        let spec = parse(json!({"type": "host", "path": "/x", "readOnly": "no"})).unwrap();
        assert!(!spec.read_only);
        let e = err(json!({"type": "host", "path": "/x", "readOnly": "maybe"}));
        assert!(matches!(
            e,
            SpecError::BadBool {
                option: "readOnly",
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            r#"option `readOnly`="maybe" must be true or false"#
        );
        assert!(matches!(
            parse(json!({"type": "host", "path": ["/x"]})),
            Err(SpecError::NotAString(_))
        ));
    }

    #[test]
    fn spec_round_trips_through_json() {
        let spec = parse(json!({"type": "host", "path": "/srv", "subPath": "x"})).unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        assert!(text.contains(r#""type":"host""#), "{text}");
        let back: VolumeSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back, spec);
    }

    // ---- s3 ----

    #[test]
    fn s3_defaults() {
        let spec = parse(s3()).unwrap();
        assert_eq!(
            spec,
            VolumeSpec {
                backend: BackendSpec::S3(ObjectSpec {
                    bucket: "my-bucket".into(),
                    endpoint: None,
                    region: None,
                    prefix: String::new(),
                    path_style: None,
                    credentials: Credentials::Default,
                    version: None,
                    tuning: MountTuning::default(),
                }),
                sub_path: None,
                read_only: false,
            }
        );
        assert_eq!(spec.backend.type_name(), "s3");
    }

    #[test]
    fn s3_with_every_option_case_insensitive() {
        let spec = parse(json!({
            "Type": "S3", "BUCKET": "logs.example-1", "endpoint": " http://127.0.0.1:9000 ",
            "Region": "eu-west-1", "prefix": "/agents/run1/", "pathstyle": "true",
            "accesskeyid": "AKID", "ACCESSKEYSECRET": "s3cr3t/+=", "sessionToken": "tok",
            "upload": "SYNC", "metadatattl": "2.5", "uid": "1000", "gid": 100, "umask": "027",
            "attrsFromListing": "true", "subPath": "work", "readOnly": "yes",
        }))
        .unwrap();
        assert_eq!(
            spec,
            VolumeSpec {
                backend: BackendSpec::S3(ObjectSpec {
                    bucket: "logs.example-1".into(),
                    endpoint: Some("http://127.0.0.1:9000".into()),
                    region: Some("eu-west-1".into()),
                    prefix: "agents/run1/".into(),
                    path_style: Some(true),
                    credentials: Credentials::Inline {
                        access_key_id: "AKID".into(),
                        access_key_secret: "s3cr3t/+=".into(),
                        session_token: Some("tok".into()),
                    },
                    version: None,
                    tuning: MountTuning {
                        uid: Some(1000),
                        gid: Some(100),
                        umask: Some(0o027),
                        upload: Some("sync".into()),
                        metadata_ttl_ms: Some(2500),
                        attrs_from_listing: Some(true),
                    },
                }),
                sub_path: Some("work".into()),
                read_only: true,
            }
        );
    }

    #[test]
    fn s3_unknown_option_lists_accepted_ones() {
        let e = err(with(&s3(), json!({"version": "2.0"})));
        assert_eq!(
            e.to_string(),
            "option `version` is not accepted for type=s3; accepted options: type, subPath, readOnly, \
             bucket, endpoint, region, prefix, pathStyle, credentials, accessKeyId, accessKeySecret, \
             sessionToken, upload, metadataTtl, attrsFromListing, uid, gid, umask"
        );
        assert!(matches!(
            err(with(&s3(), json!({"options": "ro"}))),
            SpecError::UnknownOption { .. }
        ));
    }

    #[test]
    fn s3_bucket_is_required_and_checked() {
        for missing in [json!({"type": "s3"}), json!({"type": "s3", "bucket": ""})] {
            let e = err(missing);
            assert_eq!(
                e.to_string(),
                "option `bucket` is required for type=s3; set it, e.g. bucket=my-bucket"
            );
        }
        for good in ["abc", "a.b-c", "1bucket", &"a".repeat(63), "192.168.5"] {
            assert!(
                parse(with(&s3(), json!({"bucket": good}))).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-bucket",
            "my_bucket",
            "-abc",
            "abc-",
            ".abc",
            "abc.",
            "a..b",
            "192.168.5.4",
            "a b",
            "ab/c",
        ] {
            let e = err(with(&s3(), json!({"bucket": bad})));
            assert_eq!(e, SpecError::BadS3Bucket(bad.to_string()), "{bad}");
            assert!(e.to_string().contains("not an S3 bucket name"));
        }
    }

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

    #[test]
    fn region_rules() {
        for good in ["us-east-1", "cn-hangzhou", "EU-West-1", &"a".repeat(64)] {
            let spec = parse(with(&s3(), json!({"region": good}))).unwrap();
            assert_eq!(object(&spec).region.as_deref(), Some(good));
        }
        for bad in [
            "us east",
            "us_east_1",
            "eu/1",
            &"a".repeat(65),
            " us-east-1",
        ] {
            let e = err(with(&s3(), json!({"region": bad})));
            assert_eq!(e, SpecError::BadRegion(bad.to_string()), "{bad}");
        }
        assert!(matches!(
            err(with(&s3(), json!({"region": ""}))),
            SpecError::EmptyOption {
                option: "region",
                ..
            }
        ));
        let spec = parse(with(&ossfs(), json!({"region": "cn-hangzhou"}))).unwrap();
        assert_eq!(object(&spec).region.as_deref(), Some("cn-hangzhou"));
    }

    #[test]
    fn prefix_is_normalised() {
        for (given, want) in [
            ("", ""),
            ("/", ""),
            ("a", "a/"),
            ("a/", "a/"),
            ("/agents/run1", "agents/run1/"),
            ("/agents/run1/", "agents/run1/"),
            ("a b/ü..x/.c", "a b/ü..x/.c/"),
        ] {
            let spec = parse(with(&s3(), json!({"prefix": given}))).unwrap();
            assert_eq!(object(&spec).prefix, want, "{given:?}");
            let spec = parse(with(&ossfs(), json!({"path": given}))).unwrap();
            assert_eq!(object(&spec).prefix, want, "{given:?}");
        }
        let longest = "a".repeat(MAX_PREFIX_LEN - 1);
        assert!(parse(with(&s3(), json!({"prefix": longest}))).is_ok());
        let too_long = "a".repeat(MAX_PREFIX_LEN);
        for bad in [
            "//",
            "//a",
            "a//b",
            "a//",
            ".",
            "..",
            "a/./b",
            "a/../b",
            "/..",
            "a\0b",
            "a\nb",
            "a\u{7f}",
            too_long.as_str(),
        ] {
            let e = err(with(&s3(), json!({"prefix": bad})));
            assert_eq!(
                e,
                SpecError::BadPrefix {
                    option: "prefix",
                    value: bad.into()
                },
                "{bad:?}"
            );
            let e = err(with(&ossfs(), json!({"path": bad})));
            assert!(e.to_string().starts_with("option `path`="), "{bad:?}: {e}");
        }
    }

    #[test]
    fn path_style_is_a_boolean() {
        let spec = parse(with(&s3(), json!({"pathStyle": false}))).unwrap();
        assert_eq!(object(&spec).path_style, Some(false));
        let e = err(with(&s3(), json!({"pathStyle": "sometimes"})));
        assert_eq!(
            e.to_string(),
            r#"option `pathStyle`="sometimes" must be true or false"#
        );
    }

    #[test]
    fn upload_mode() {
        for (given, want) in [("async", "async"), ("Sync", "sync"), (" ASYNC ", "async")] {
            assert_eq!(
                tuning(with(&s3(), json!({"upload": given})))
                    .upload
                    .as_deref(),
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
                    expected: EXPECT_SECONDS
                },
                "{bad:?}"
            );
        }
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

    // ---- credentials ----

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

    // ---- ossfs ----

    #[test]
    fn ossfs_defaults() {
        let spec = parse(ossfs()).unwrap();
        assert_eq!(
            spec,
            VolumeSpec {
                backend: BackendSpec::Ossfs(ObjectSpec {
                    bucket: "my-bucket".into(),
                    endpoint: Some("oss-cn-hangzhou.aliyuncs.com".into()),
                    region: None,
                    prefix: String::new(),
                    path_style: None,
                    credentials: Credentials::Default,
                    version: Some("2.0".into()),
                    tuning: MountTuning::default(),
                }),
                sub_path: None,
                read_only: false,
            }
        );
        assert_eq!(spec.backend.type_name(), "ossfs");
    }

    #[test]
    fn ossfs_as_the_opensandbox_api_sends_it() {
        let spec = parse(json!({
            "type": "ossfs", "bucket": "my-bucket", "endpoint": "oss-cn-hangzhou.aliyuncs.com",
            "path": "/sandbox/user-a", "accessKeyId": "AKIDEXAMPLE",
            "accessKeySecret": "SECRETEXAMPLE", "version": "1.0",
            "options": "allow_other,umask=0022", "subPath": "task-001",
        }))
        .unwrap();
        let o = object(&spec);
        assert_eq!(o.prefix, "sandbox/user-a/");
        assert_eq!(o.version.as_deref(), Some("1.0"));
        assert_eq!(o.tuning.umask, Some(0o022));
        assert_eq!(spec.sub_path.as_deref(), Some("task-001"));
        assert!(!spec.read_only);
    }

    #[test]
    fn ossfs_requires_bucket_and_endpoint() {
        let e = err(json!({"type": "ossfs", "endpoint": "oss-cn-hangzhou.aliyuncs.com"}));
        assert_eq!(
            e.to_string(),
            "option `bucket` is required for type=ossfs; set it, e.g. bucket=my-bucket"
        );
        for missing in [
            json!({"type": "ossfs", "bucket": "b-1"}),
            json!({"type": "ossfs", "bucket": "b-1", "endpoint": ""}),
        ] {
            assert_eq!(
                err(missing).to_string(),
                "option `endpoint` is required for type=ossfs; set it, e.g. endpoint=oss-cn-hangzhou.aliyuncs.com"
            );
        }
        let e = err(with(&ossfs(), json!({"endpoint": "ftp://oss"})));
        assert!(matches!(e, SpecError::BadEndpoint { .. }), "{e:?}");
        let spec = parse(with(
            &ossfs(),
            json!({"endpoint": "https://oss-cn-beijing-internal.aliyuncs.com"}),
        ))
        .unwrap();
        assert_eq!(
            object(&spec).endpoint.as_deref(),
            Some("https://oss-cn-beijing-internal.aliyuncs.com")
        );
    }

    #[test]
    fn ossfs_bucket_rules() {
        for good in ["abc", "a-1-b", &"a".repeat(63)] {
            assert!(
                parse(with(&ossfs(), json!({"bucket": good}))).is_ok(),
                "{good}"
            );
        }
        for bad in ["ab", &"a".repeat(64), "a.b", "Abc", "a_b", "-ab", "ab-"] {
            let e = err(with(&ossfs(), json!({"bucket": bad})));
            assert_eq!(e, SpecError::BadOssBucket(bad.into()), "{bad}");
            assert!(e.to_string().contains("not an OSS bucket name"));
        }
    }

    #[test]
    fn ossfs_version() {
        for v in ["1.0", "2.0", " 2.0 "] {
            let spec = parse(with(&ossfs(), json!({"VERSION": v}))).unwrap();
            assert_eq!(object(&spec).version.as_deref(), Some(v.trim()));
        }
        for bad in ["1", "2", "3.0", "", "v2"] {
            let e = err(with(&ossfs(), json!({"version": bad})));
            assert_eq!(
                e.to_string(),
                format!("option `version`={bad:?} must be 1.0 or 2.0")
            );
        }
    }

    #[test]
    fn ossfs_unknown_option_lists_accepted_ones() {
        let e = err(with(&ossfs(), json!({"prefix": "a"})));
        assert_eq!(
            e.to_string(),
            "option `prefix` is not accepted for type=ossfs; accepted options: type, subPath, readOnly, \
             bucket, endpoint, path, version, options, accessKeyId, accessKeySecret, sessionToken, \
             credentials, region, upload, metadataTtl, attrsFromListing, uid, gid, umask"
        );
        assert!(matches!(
            err(with(&ossfs(), json!({"pathStyle": "true"}))),
            SpecError::UnknownOption { .. }
        ));
    }

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
            }
        );
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

    #[test]
    fn object_specs_round_trip_through_json() {
        for opts in [
            with(
                &s3(),
                json!({"endpoint": "http://127.0.0.1:9000", "prefix": "a", "pathStyle": true,
                               "accessKeyId": "i", "accessKeySecret": "s", "sessionToken": "t",
                               "metadataTtl": "0.1", "subPath": "x", "readOnly": true}),
            ),
            with(&s3(), json!({"credentials": "team-a", "umask": "022"})),
            with(
                &ossfs(),
                json!({"options": "ro,uid=1", "path": "/p", "version": "1.0",
                                  "region": "cn-hangzhou", "upload": "sync"}),
            ),
            ossfs(),
        ] {
            let spec = parse(opts).unwrap();
            let text = serde_json::to_string(&spec).unwrap();
            let back: VolumeSpec = serde_json::from_str(&text).unwrap();
            assert_eq!(back, spec, "{text}");
        }
        let spec = parse(with(&ossfs(), json!({"credentials": "p"}))).unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        assert!(text.contains(r#""type":"ossfs""#), "{text}");
        assert!(
            text.contains(r#""credentials":{"source":"profile","name":"p"}"#),
            "{text}"
        );
    }

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
