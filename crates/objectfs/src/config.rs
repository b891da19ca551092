//! The one typed description of a mount, [`MountConfig`]: where the bucket
//! is and with which keys ([`S3Config`]), how the filesystem behaves
//! ([`FsOptions`]) and how the kernel mount is set up ([`MountSettings`]).
//!
//! The plugin builds it once from a volume's spec and writes it as JSON to
//! the standard input of `opensandbox-volume mount MOUNTPOINT --config-stdin`,
//! so keys are in neither the mount process's arguments nor its environment
//! (both readable in /proc); the standalone `mount` command builds the same
//! value from its flags. Both then call [`crate::mount::run`]. Durations and
//! modes stay typed on the way (serde's `Duration`, `u32` modes): nothing is
//! printed as text and parsed back. The defaults both builders use are
//! declared here.

use crate::FsOptions;
use crate::store::s3::S3Config;
use std::path::PathBuf;
use std::time::Duration;

/// How long attributes and negative lookups are trusted unless a volume or
/// `--metadata-ttl` says otherwise.
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(1);
/// How long unmount waits for uploads unless `--flush-timeout` says otherwise.
pub const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a closed file waits before its background upload starts.
pub const DEFAULT_UPLOAD_DELAY: Duration = Duration::from_secs(1);
/// Default bound of a mount's cached file data (`--cache-size`).
pub const DEFAULT_CACHE_SIZE: u64 = 1024 * 1024 * 1024;
/// How long a writer waits for uploads to free cache space before ENOSPC.
pub const DIRTY_WAIT: Duration = Duration::from_secs(30);
/// Umask applied to objects without mode metadata.
pub const DEFAULT_UMASK: u32 = 0o022;
/// FUSE request threads of a mount.
pub const FUSE_THREADS: usize = 8;
/// Longest configuration accepted on standard input; a real one is a few
/// hundred bytes.
const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// Everything one mount process needs, secrets included. `Debug` shows no
/// secret ([`S3Config`]'s own `Debug` hides them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    pub store: S3Config,
    pub fs: FsOptions,
    pub mount: MountSettings,
}

/// How the kernel side of the mount is set up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MountSettings {
    pub mountpoint: PathBuf,
    /// Let users other than the mounting one in (containers' users).
    pub allow_other: bool,
    /// Shown as the mount's source in /proc/mounts.
    pub fs_name: String,
    /// FUSE request threads.
    pub threads: usize,
}

impl MountSettings {
    /// A mount of `bucket` at `mountpoint`, named `osv:BUCKET` in the mount
    /// table.
    pub fn new(mountpoint: PathBuf, bucket: &str, allow_other: bool) -> MountSettings {
        MountSettings {
            mountpoint,
            allow_other,
            fs_name: format!("osv:{bucket}"),
            threads: FUSE_THREADS,
        }
    }
}

/// A configuration that cannot be used. The message never quotes the
/// input, which holds the keys.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the mount configuration could not be read from standard input: {0}")]
    Read(std::io::Error),
    #[error(
        "the mount configuration on standard input is not valid ({kind} error at line {line}, column {column})"
    )]
    Invalid {
        kind: &'static str,
        line: usize,
        column: usize,
    },
    #[error("the mount configuration's prefix {0:?} is not a normalised key prefix")]
    Prefix(String),
}

impl MountConfig {
    /// The JSON the plugin writes to a mount process.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a mount configuration is always serialisable")
    }

    /// Parses what [`MountConfig::to_json`] wrote. The prefix is checked,
    /// not normalised again: whoever built the value normalised it.
    pub fn from_json(bytes: &[u8]) -> Result<MountConfig, ConfigError> {
        let config: MountConfig = serde_json::from_slice(bytes).map_err(|e| {
            use serde_json::error::Category;
            ConfigError::Invalid {
                kind: match e.classify() {
                    Category::Io => "input",
                    Category::Syntax => "syntax",
                    Category::Data => "data",
                    Category::Eof => "end of input",
                },
                line: e.line(),
                column: e.column(),
            }
        })?;
        if crate::layout::normalise_prefix(&config.fs.prefix).as_deref()
            != Ok(config.fs.prefix.as_str())
        {
            return Err(ConfigError::Prefix(config.fs.prefix));
        }
        Ok(config)
    }

    /// Reads one configuration from `input` (standard input) to its end.
    pub fn read_from(input: impl std::io::Read) -> Result<MountConfig, ConfigError> {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut input.take(MAX_CONFIG_LEN), &mut bytes)
            .map_err(ConfigError::Read)?;
        MountConfig::from_json(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::UploadMode;
    use crate::layout::Defaults;

    fn config() -> MountConfig {
        MountConfig {
            store: S3Config {
                bucket: "b".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                access_key_id: Some("AKID-in-config".into()),
                access_key_secret: Some("secret-in-config".into()),
                session_token: Some("token-in-config".into()),
                ..Default::default()
            },
            fs: FsOptions {
                prefix: "agents/run1/".into(),
                defaults: Defaults {
                    uid: 1000,
                    gid: 100,
                    umask: 0o027,
                },
                read_only: true,
                upload: UploadMode::Sync,
                cache_dir: "/c/v".into(),
                metadata_ttl: Duration::from_millis(1500),
                flush_timeout: DEFAULT_FLUSH_TIMEOUT,
                upload_delay: Duration::from_nanos(1_000_000_007),
                attrs_from_listing: true,
                cache_size: 5 << 20,
                dirty_wait: crate::config::DIRTY_WAIT,
                label: "volume v".into(),
            },
            mount: MountSettings::new("/m/v".into(), "b", true),
        }
    }

    #[test]
    fn json_round_trip_keeps_every_value_exact() {
        let c = config();
        let back = MountConfig::from_json(&c.to_json()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.fs.metadata_ttl, Duration::from_millis(1500));
        assert_eq!(back.fs.defaults.umask, 0o027);
        assert_eq!(back.mount.fs_name, "osv:b");
        assert_eq!(back.mount.threads, FUSE_THREADS);
        // Read as a stream too (what the mount process does).
        let read = MountConfig::read_from(&c.to_json()[..]).unwrap();
        assert_eq!(read, c);
    }

    #[test]
    fn debug_shows_no_secret() {
        let text = format!("{:?}", config());
        assert!(!text.contains("secret-in-config"), "{text}");
        assert!(!text.contains("token-in-config"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn bad_input_is_refused_without_quoting_it() {
        let mut json: serde_json::Value = serde_json::from_slice(&config().to_json()).unwrap();
        json["store"]["access_key_secret"] = serde_json::json!(["secret-in-config"]);
        let err = MountConfig::from_json(json.to_string().as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not valid (data error"), "{text}");
        assert!(!text.contains("secret-in-config"), "{text}");
        let err = MountConfig::from_json(b"{\"store\": \"secret-in-config").unwrap_err();
        assert!(!err.to_string().contains("secret-in-config"), "{err}");
        // Unknown fields are refused, not ignored.
        let mut json: serde_json::Value = serde_json::from_slice(&config().to_json()).unwrap();
        json["extra"] = serde_json::json!(1);
        assert!(MountConfig::from_json(json.to_string().as_bytes()).is_err());
    }

    #[test]
    fn a_prefix_not_in_normal_form_is_refused() {
        for bad in ["/agents/", "agents", "a/../b/"] {
            let mut c = config();
            c.fs.prefix = bad.into();
            let err = MountConfig::from_json(&c.to_json()).unwrap_err();
            assert!(
                err.to_string().contains("is not a normalised key prefix"),
                "{bad}: {err}"
            );
        }
        let mut c = config();
        c.fs.prefix = String::new();
        assert!(MountConfig::from_json(&c.to_json()).is_ok());
    }
}
