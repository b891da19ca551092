//! Object-storage volumes (`s3`, `ossfs`): each mounted volume is served by
//! its own `opensandbox-volume mount` process, started here.
//!
//! The mount process runs in its own session, so a crash, restart or
//! SIGKILL of the plugin daemon does not touch it: containers keep reading
//! and writing, and the restarted daemon finds the mount where it left it.
//! What the daemon needs to find it again lives in the volume's cache
//! directory: `mount.pid` (written here) and `status.json` (written by the
//! mount process: state and bytes not yet uploaded).
//!
//! A mount process is `opensandbox-volume mount MOUNTPOINT --config-stdin`:
//! its whole configuration, keys included, is one typed
//! [`MountConfig`] built here from the volume's spec and written as JSON to
//! its standard input, so keys are in neither its arguments nor its
//! environment (`ps e` and /proc show both). The mount point stays in the
//! arguments: it names the process in `ps` and lets a recycled pid be told
//! apart from the volume's mount process.

use crate::credentials::Keys;
use crate::logging::LogOutput;
use crate::spec::{BackendSpec, Credentials, ObjectSpec, VolumeSpec};
use objectfs::config::{self, MountConfig, MountSettings};
use objectfs::mount::{MountStatus, read_status};
use objectfs::store::s3::{CredentialSource, S3Config, StoreKind};
use objectfs::{FsOptions, UploadMode, layout};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a new mount may take to appear (the mount process lists the
/// bucket first, so an unreachable store fails within its retries).
const START_TIMEOUT: Duration = Duration::from_secs(45);
/// How long the last Unmount waits for the mount process to upload
/// everything and exit: under Docker's one-minute Unmount timeout.
const STOP_TIMEOUT: Duration = Duration::from_secs(50);
/// How long a Mount waits for the previous mount process of the same
/// volume to finish uploading before giving up.
const PREVIOUS_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(25);
const PID_FILE: &str = "mount.pid";

/// Where the daemon keeps what object-storage mounts need.
#[derive(Debug, Clone)]
pub struct ObjectSettings {
    /// The binary whose `mount` command serves a volume (normally this one).
    pub exe: PathBuf,
    /// One cache directory per volume (staged uploads and their journal).
    pub cache_root: PathBuf,
    /// One log file per volume, for the mount process's output.
    pub log_root: PathBuf,
    /// Credential profiles (`NAME.json`).
    pub credentials_dir: PathBuf,
    /// Upload mode of volumes whose options name none.
    pub default_upload: UploadMode,
    /// Cache bound, in bytes, of volumes whose options name none.
    pub default_cache_size: u64,
    /// How each mount process writes its log (size bound, files, format).
    pub log: LogOutput,
}

/// What a removed volume still has in the state directory after
/// [`ObjectBackend::discard`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// There was nothing: the volume never had a mount process.
    Nothing,
    /// Nothing now: its cache directory and log files were deleted.
    Gone,
    /// Its mount process still runs (uploading after a slow Unmount):
    /// everything stays until it has exited.
    Running { pid: Option<u32> },
    /// Data the bucket does not have yet (journalled files, namespace
    /// changes): the cache directory and log stay until it is uploaded.
    Pending {
        files: usize,
        bytes: u64,
        changes: usize,
        cache_dir: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialsError),
    #[error("could not start the mount process: {0}")]
    Spawn(io::Error),
    #[error("could not prepare {path:?}: {source}")]
    Prepare { path: PathBuf, source: io::Error },
    #[error("bucket {bucket:?} could not be mounted: {reason}")]
    MountFailed { bucket: String, reason: String },
    #[error(
        "bucket {bucket:?} was not mounted within {secs} s (the storage may be slow or unreachable); details in {log:?}"
    )]
    StartTimeout {
        bucket: String,
        secs: u64,
        log: PathBuf,
    },
    #[error(
        "the previous mount of this volume is still uploading ({pending} bytes left); retry when it is done"
    )]
    StillFlushing { pending: u64 },
}

/// Starts, adopts, checks and stops the mount processes.
pub struct ObjectBackend {
    settings: ObjectSettings,
}

/// The key prefix a volume mounts: the backend's prefix, then `subPath`.
pub fn mount_prefix(obj: &ObjectSpec, sub_path: Option<&str>) -> String {
    match sub_path {
        Some(sub) => format!("{}{}/", obj.prefix, sub.trim_matches('/')),
        None => obj.prefix.clone(),
    }
}

/// The mount process's arguments: the configuration comes on its stdin;
/// then where and how it logs.
fn mount_args(target: &Path, log: &LogOutput, log_file: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["mount".into(), target.into(), "--config-stdin".into()];
    args.extend(log.mount_args(log_file));
    args
}

/// The daemon's variables a `credentialSource=aws` mount process gets:
/// where the AWS chain finds a role, a token file or a metadata service.
/// Never `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`
/// or `AWS_CONTAINER_AUTHORIZATION_TOKEN`: secrets stay out of a child's
/// environment.
const AWS_CHAIN_ENV: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
];

/// How a mount gets its keys (see `ObjectBackend::keys`).
#[derive(Debug)]
pub enum StoreKeys {
    /// Anonymous (unsigned) requests.
    None,
    /// Inline keys, handed over as they are.
    Static(Keys),
    /// A source the mount reads itself, and again when the keys change.
    Source(CredentialSource),
}

/// Everything the mount process of a volume needs, built once from its
/// spec: `keys` says how the mount gets its keys; `default_upload` and `default_cache_size` apply when
/// the volume names no upload mode or cache size. Owner defaults are this
/// process's, which the mount process shares.
pub fn mount_config(
    spec: &VolumeSpec,
    obj: &ObjectSpec,
    keys: StoreKeys,
    target: &Path,
    cache_dir: &Path,
    default_upload: UploadMode,
    default_cache_size: u64,
) -> MountConfig {
    let tuning = &obj.tuning;
    let upload = tuning.upload.unwrap_or(default_upload);
    let (access_key_id, access_key_secret, session_token, credential_source) = match keys {
        StoreKeys::Static(k) => (
            Some(k.access_key_id),
            Some(k.access_key_secret),
            k.session_token,
            None,
        ),
        StoreKeys::Source(source) => (None, None, None, Some(source)),
        StoreKeys::None => (None, None, None, None),
    };
    MountConfig {
        store: S3Config {
            bucket: obj.bucket.clone(),
            endpoint: obj.endpoint.clone(),
            region: obj.region.clone(),
            access_key_id,
            access_key_secret,
            session_token,
            path_style: obj.path_style,
            // An ossfs volume is OSS whatever its endpoint (a custom
            // domain, say); an s3 volume's kind follows from its endpoint.
            kind: matches!(spec.backend, BackendSpec::Ossfs(_)).then_some(StoreKind::Oss),
            credential_source,
        },
        fs: FsOptions {
            // Normalised by the spec; subPath is validated there too.
            prefix: mount_prefix(obj, spec.sub_path.as_deref()),
            defaults: layout::Defaults::or_this_process(
                tuning.uid,
                tuning.gid,
                tuning.umask.unwrap_or(config::DEFAULT_UMASK),
            ),
            read_only: spec.read_only,
            upload,
            cache_dir: cache_dir.to_path_buf(),
            metadata_ttl: tuning
                .metadata_ttl_ms
                .map_or(config::DEFAULT_METADATA_TTL, Duration::from_millis),
            flush_timeout: config::DEFAULT_FLUSH_TIMEOUT,
            upload_delay: config::DEFAULT_UPLOAD_DELAY,
            attrs_from_listing: tuning.attrs_from_listing == Some(true),
            cache_size: tuning.cache_size.unwrap_or(default_cache_size),
            dirty_wait: objectfs::config::DIRTY_WAIT,
            // The mount point's name is the volume's (`names::file_stem`).
            label: format!(
                "volume {} (bucket {}, credentials: {})",
                target.file_name().unwrap_or_default().to_string_lossy(),
                obj.bucket,
                obj.credentials.describe()
            ),
        },
        // Containers run as any user; the kernel still checks the modes.
        mount: MountSettings::new(target.to_path_buf(), &obj.bucket, true),
    }
}

/// The process exists and has not exited. A zombie counts as gone: once
/// the daemon that started a mount process is restarted, nobody may reap it.
pub(crate) fn pid_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses.
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    pid > 0 && !state.starts_with('Z') && !state.starts_with('X')
}

/// True if `pid` is a mount process serving `target` (not a recycled pid).
pub(crate) fn serves(pid: u32, target: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = target.as_os_str().as_encoded_bytes();
    let mut args = cmdline.split(|b| *b == 0);
    args.any(|a| a == b"mount") && cmdline.split(|b| *b == 0).any(|a| a == want)
}

/// Where this run's output begins in the log file: the file (device and
/// inode) and its length when the mount process was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogStart {
    file: (u64, u64),
    len: u64,
}

impl LogStart {
    fn of(meta: &std::fs::Metadata) -> LogStart {
        use std::os::unix::fs::MetadataExt;
        LogStart {
            file: (meta.dev(), meta.ino()),
            len: meta.len(),
        }
    }

    /// Where to read this run's output from in `meta`'s file: after the
    /// old end while it is the same file; from its start once the process
    /// has rotated it (the new file holds only its own lines).
    fn offset_in(&self, meta: &std::fs::Metadata) -> u64 {
        if LogStart::of(meta).file == self.file {
            self.len
        } else {
            0
        }
    }
}

/// The last non-empty line the mount process wrote since `start`, skipping
/// the `note: run with RUST_BACKTRACE…` hint a panic ends with (the line
/// before it says what went wrong).
fn last_log_line(log: &Path, start: LogStart) -> Option<String> {
    let mut f = File::open(log).ok()?;
    let from = start.offset_in(&f.metadata().ok()?);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    f.take(64 * 1024).read_to_string(&mut text).ok()?;
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .map(|l| l.trim_start_matches("opensandbox-volume: ").to_string())
}

impl ObjectBackend {
    pub fn new(settings: ObjectSettings) -> Self {
        ObjectBackend { settings }
    }

    /// One cache directory per mount point, so per volume.
    fn cache_dir(&self, target: &Path) -> PathBuf {
        self.settings
            .cache_root
            .join(target.file_name().unwrap_or_default())
    }

    fn log_path(&self, target: &Path) -> PathBuf {
        let mut name = target.file_name().unwrap_or_default().to_os_string();
        name.push(".log");
        self.settings.log_root.join(name)
    }

    /// The pid of the live mount process serving `target`, if any.
    fn running(&self, target: &Path) -> Option<u32> {
        let text = std::fs::read_to_string(self.cache_dir(target).join(PID_FILE)).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        (pid_alive(pid) && serves(pid, target)).then_some(pid)
    }

    /// Whether a live mount process serves `target`.
    pub fn is_running(&self, target: &Path) -> bool {
        self.running(target).is_some()
    }

    /// Mounted and answering: a mount whose process died fails `stat` with
    /// ENOTCONN, and one not mounted at all is just a directory.
    pub fn is_healthy(&self, target: &Path) -> bool {
        crate::mounts::is_mount_point(target).unwrap_or(false) && std::fs::metadata(target).is_ok()
    }

    /// Checks at Create what can be checked locally: the profile exists.
    pub fn validate(&self, obj: &ObjectSpec) -> Result<(), ObjectError> {
        if let Credentials::Profile { name } = &obj.credentials {
            crate::credentials::profile_exists(&self.settings.credentials_dir, name)?;
        }
        Ok(())
    }

    /// Where the volume's mount gets its keys: inline keys are handed over;
    /// a profile (checked now, so a bad one fails this Mount with its
    /// sentence), an ECS RAM role or the AWS chain is a source the mount
    /// reads itself, again whenever the keys change or near their expiry;
    /// neither for anonymous access.
    fn keys(&self, obj: &ObjectSpec) -> Result<StoreKeys, ObjectError> {
        let dir = &self.settings.credentials_dir;
        if let Credentials::Profile { name } = &obj.credentials {
            crate::credentials::load_profile(dir, name)?;
        }
        Ok(match (&obj.credentials, obj.credentials.source(dir)) {
            (_, Some(source)) => StoreKeys::Source(source),
            (
                Credentials::Inline {
                    access_key_id,
                    access_key_secret,
                    session_token,
                },
                None,
            ) => StoreKeys::Static(Keys {
                access_key_id: access_key_id.clone(),
                access_key_secret: access_key_secret.clone(),
                session_token: session_token.clone(),
                expiration: None,
            }),
            (_, None) => StoreKeys::None,
        })
    }

    /// Mounts the volume at `target` with a new mount process, or adopts
    /// the live one already there.
    pub fn attach(
        &self,
        spec: &VolumeSpec,
        obj: &ObjectSpec,
        target: &Path,
    ) -> Result<(), ObjectError> {
        let prepare = |path: &Path| {
            std::fs::create_dir_all(path).map_err(|source| ObjectError::Prepare {
                path: path.into(),
                source,
            })
        };
        if self.is_healthy(target) && self.running(target).is_some() {
            tracing::info!(target = %target.display(), "adopting a running object-storage mount");
            return Ok(());
        }
        // A dead mount (ENOTCONN) or one with no process behind it; detached
        // before the directory is made (a dead mount fails that, EEXIST).
        if crate::mounts::is_mount_point(target).unwrap_or(false) {
            tracing::warn!(target = %target.display(), "detaching a mount whose process is gone");
            let _ = crate::mounts::unmount(target);
        }
        prepare(target)?;
        let cache_dir = self.cache_dir(target);
        prepare(&cache_dir)?;
        prepare(&self.settings.log_root)?;
        self.wait_for_previous(target)?;
        let config = mount_config(
            spec,
            obj,
            self.keys(obj)?,
            target,
            &cache_dir,
            self.settings.default_upload,
            self.settings.default_cache_size,
        );
        let log_path = self.log_path(target);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(|source| ObjectError::Prepare {
                path: log_path.clone(),
                source,
            })?;
        let log_start =
            log.metadata()
                .map(|m| LogStart::of(&m))
                .map_err(|source| ObjectError::Prepare {
                    path: log_path.clone(),
                    source,
                })?;
        let mut command = Command::new(&self.settings.exe);
        command
            // The process writes its log itself, rotated; its stdout and
            // stderr (the log file too, until then) follow the current file.
            .args(mount_args(target, &self.settings.log, &log_path))
            // Nothing of the daemon's: an inherited `OSV_*` would silently
            // change the mount.
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            // The AWS chain's pointers (role, token file, endpoints), none
            // of them a secret; keys in the daemon's environment stay there.
            .envs(
                AWS_CHAIN_ENV
                    .iter()
                    .filter(|_| matches!(obj.credentials, Credentials::Aws { .. }))
                    .filter_map(|k| std::env::var_os(k).map(|v| (*k, v))),
            )
            .stdin(Stdio::piped())
            .stdout(log.try_clone().map_err(ObjectError::Spawn)?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe; it detaches the child from the
        // daemon's session so signals to the daemon never reach the mount.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                // Whatever the daemon blocks, the mount must get SIGTERM.
                crate::supervisor::unblock_all_signals()
            });
        }
        let mut child = command.spawn().map_err(ObjectError::Spawn)?;
        // The pipe holds the whole configuration; closing it is the child's
        // end of input. A child that died first fails the write: its own
        // last words are then the error, found below.
        if let Some(mut stdin) = child.stdin.take()
            && let Err(e) = stdin.write_all(&config.to_json())
        {
            tracing::warn!(target = %target.display(), error = %e,
                "could not hand the configuration to the mount process");
        }
        drop(config);
        let pid = child.id();
        let pid_file = cache_dir.join(PID_FILE);
        std::fs::write(&pid_file, pid.to_string()).map_err(|source| ObjectError::Prepare {
            path: pid_file,
            source,
        })?;
        tracing::info!(target = %target.display(), pid, bucket = %obj.bucket, "mount process started");
        self.wait_until_mounted(child, obj, target, &log_path, log_start)
    }

    /// Waits for the mount to appear; on failure, the process's own last
    /// words (e.g. "the bucket cannot be listed: NoSuchBucket …") become
    /// the error.
    fn wait_until_mounted(
        &self,
        mut child: Child,
        obj: &ObjectSpec,
        target: &Path,
        log: &Path,
        log_start: LogStart,
    ) -> Result<(), ObjectError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let reason = last_log_line(log, log_start)
                    .unwrap_or_else(|| format!("the mount process exited with {status}"));
                return Err(ObjectError::MountFailed {
                    bucket: obj.bucket.clone(),
                    reason,
                });
            }
            if crate::mounts::is_mount_point(target).unwrap_or(false) {
                // Reap it whenever it exits; after a daemon restart the
                // orphan is reaped by init instead.
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let _ = crate::mounts::unmount(target);
                return Err(ObjectError::StartTimeout {
                    bucket: obj.bucket.clone(),
                    secs: START_TIMEOUT.as_secs(),
                    log: log.into(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// A mount process from an earlier use of this volume may still be
    /// uploading after its Unmount returned; it holds the cache directory.
    fn wait_for_previous(&self, target: &Path) -> Result<(), ObjectError> {
        let deadline = Instant::now() + PREVIOUS_TIMEOUT;
        while let Some(pid) = self.running(target) {
            if Instant::now() >= deadline {
                let pending = read_status(&self.cache_dir(target))
                    .filter(|s| s.pid == pid)
                    .map_or(0, |s| s.pending_bytes);
                return Err(ObjectError::StillFlushing { pending });
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// The last Unmount: the mount process unmounts, uploads everything and
    /// exits on SIGTERM. Waits for that within Docker's Unmount timeout;
    /// beyond it the process keeps uploading on its own (the data is
    /// journalled) and the next Mount waits for it.
    pub fn detach(&self, target: &Path) -> io::Result<()> {
        if let Some(pid) = self.running(target) {
            // SAFETY: plain kill(2) of a process verified to be our mount.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let deadline = Instant::now() + STOP_TIMEOUT;
            while pid_alive(pid) && serves(pid, target) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if pid_alive(pid) && serves(pid, target) {
                tracing::warn!(target = %target.display(), pid,
                    "the mount process is still uploading after {} s; it finishes in the background",
                    STOP_TIMEOUT.as_secs());
            }
        }
        // Not mounted by then (process gone, or never unmounted): detach.
        crate::mounts::unmount(target)?;
        let _ = std::fs::remove_dir(target);
        Ok(())
    }

    /// The file names (volume stems) of every cache directory, for the
    /// clean-up of volumes no longer registered.
    pub fn cache_stems(&self) -> io::Result<Vec<std::ffi::OsString>> {
        let entries = match std::fs::read_dir(&self.settings.cache_root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                out.push(entry.file_name());
            }
        }
        Ok(out)
    }

    /// Deletes what the volume mounted at `target`, which is no longer
    /// registered, left in the state directory (its cache directory and
    /// log files) unless a mount process still uses it or it holds data
    /// the bucket does not have yet; says which. The caller makes sure no
    /// Mount of a volume with the same name runs meanwhile.
    pub fn discard(&self, target: &Path) -> io::Result<Leftover> {
        let cache_dir = self.cache_dir(target);
        if let Some(pid) = self.running(target) {
            return Ok(Leftover::Running { pid: Some(pid) });
        }
        if cache_dir.is_dir() {
            // Held by a mount process: someone still uses the directory;
            // taken here: none can start in it until it is gone.
            let Some(_lock) = objectfs::staging::lock_cache_dir(&cache_dir)? else {
                return Ok(Leftover::Running { pid: None });
            };
            let (files, bytes) = objectfs::staging::journalled(&cache_dir)?;
            let changes = objectfs::oplog::recorded(&cache_dir)?;
            if files > 0 || changes > 0 {
                return Ok(Leftover::Pending {
                    files,
                    bytes,
                    changes,
                    cache_dir,
                });
            }
            // The log first: a crash in between leaves a cache directory,
            // which the next clean-up finds again.
            crate::logging::file::remove_log(&self.log_path(target))?;
            std::fs::remove_dir_all(&cache_dir)?;
            Ok(Leftover::Gone)
        } else if crate::logging::file::remove_log(&self.log_path(target))? > 0 {
            Ok(Leftover::Gone)
        } else {
            Ok(Leftover::Nothing)
        }
    }

    /// The mount as `docker volume inspect` shows it (no storage contacted).
    pub fn mount_status(&self, target: &Path) -> (String, Option<MountStatus>) {
        let status = read_status(&self.cache_dir(target));
        let state = match self.running(target) {
            Some(pid) => status
                .as_ref()
                .filter(|s| s.pid == pid)
                .map_or_else(|| "starting".to_string(), |s| s.state.clone()),
            None if crate::mounts::is_mount_point(target).unwrap_or(false) => {
                "dead (the next Mount starts a new mount process)".to_string()
            }
            None => "not mounted".to_string(),
        };
        (state, status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::MountTuning;

    fn obj() -> ObjectSpec {
        ObjectSpec {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: None,
            prefix: "agents/".into(),
            path_style: None,
            credentials: Credentials::Inline {
                access_key_id: "AKIDSECRET".into(),
                access_key_secret: "TOPSECRET".into(),
                session_token: None,
            },
            version: None,
            ignored_options: Vec::new(),
            tuning: MountTuning {
                uid: Some(1000),
                umask: Some(0o22),
                upload: Some(UploadMode::Sync),
                metadata_ttl_ms: Some(1500),
                attrs_from_listing: Some(true),
                cache_size: Some(256 << 20),
                ..Default::default()
            },
        }
    }

    fn spec_of(o: &ObjectSpec) -> VolumeSpec {
        VolumeSpec {
            backend: crate::spec::BackendSpec::S3(o.clone()),
            sub_path: Some("run1".into()),
            read_only: true,
        }
    }

    fn keys() -> Keys {
        Keys {
            access_key_id: "AKIDSECRET".into(),
            access_key_secret: "TOPSECRET".into(),
            session_token: Some("TOKENSECRET".into()),
            expiration: None,
        }
    }

    #[test]
    fn mount_config_carries_every_setting_and_argv_no_secret() {
        let o = obj();
        let config = mount_config(
            &spec_of(&o),
            &o,
            StoreKeys::Static(keys()),
            Path::new("/m/v"),
            Path::new("/c/v"),
            UploadMode::Async,
            3 << 30,
        );
        // SAFETY: getgid cannot fail.
        let gid = unsafe { libc::getgid() };
        assert_eq!(
            config,
            MountConfig {
                store: S3Config {
                    bucket: "b".into(),
                    endpoint: Some("http://127.0.0.1:9000".into()),
                    region: None,
                    access_key_id: Some("AKIDSECRET".into()),
                    access_key_secret: Some("TOPSECRET".into()),
                    session_token: Some("TOKENSECRET".into()),
                    path_style: None,
                    kind: None,
                    credential_source: None,
                },
                fs: FsOptions {
                    prefix: "agents/run1/".into(),
                    defaults: layout::Defaults {
                        uid: 1000,
                        gid,
                        umask: 0o022,
                    },
                    read_only: true,
                    upload: UploadMode::Sync,
                    cache_dir: "/c/v".into(),
                    metadata_ttl: Duration::from_millis(1500),
                    flush_timeout: Duration::from_secs(600),
                    upload_delay: Duration::from_secs(1),
                    attrs_from_listing: true,
                    cache_size: 256 << 20,
                    dirty_wait: objectfs::config::DIRTY_WAIT,
                    label: "volume v (bucket b, credentials: inline keys (hidden))".into(),
                },
                mount: MountSettings {
                    mountpoint: "/m/v".into(),
                    allow_other: true,
                    fs_name: "osv:b".into(),
                    threads: 8,
                },
            }
        );
        // What the mount process gets back from its stdin is the same value.
        assert_eq!(MountConfig::from_json(&config.to_json()).unwrap(), config);
        // Its arguments name the mount point and its log, nothing else.
        let log = LogOutput {
            bounds: crate::logging::rotation::Bounds {
                max_size: 4096,
                max_files: 2,
            },
            format: crate::logging::LogFormat::Text,
        };
        let args = mount_args(Path::new("/m/v"), &log, Path::new("/s/logs/v.log"));
        assert_eq!(
            args,
            [
                "mount",
                "/m/v",
                "--config-stdin",
                "--log-file",
                "/s/logs/v.log",
                "--log-max-size",
                "4096",
                "--log-max-files",
                "2",
                "--log-format",
                "text"
            ]
        );
        let line = args.join(" ".as_ref()).into_string().unwrap();
        assert!(!line.contains("SECRET") && !line.contains("AKID"), "{line}");
        let debug = format!("{config:?}");
        assert!(!debug.contains("TOPSECRET") && !debug.contains("TOKENSECRET"));
    }

    #[test]
    fn mount_config_defaults_and_the_daemons_upload_mode_and_cache_size() {
        let mut o = obj();
        o.tuning = MountTuning::default();
        o.prefix = String::new();
        o.path_style = Some(true);
        o.region = Some("eu-west-1".into());
        let spec = VolumeSpec {
            backend: crate::spec::BackendSpec::S3(o.clone()),
            sub_path: None,
            read_only: false,
        };
        let config = mount_config(
            &spec,
            &o,
            StoreKeys::None,
            Path::new("/m/v"),
            Path::new("/c/v"),
            UploadMode::Sync,
            3 << 30,
        );
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        assert_eq!(
            config.fs.defaults,
            layout::Defaults {
                uid,
                gid,
                umask: 0o022
            }
        );
        assert_eq!(config.fs.prefix, "");
        assert_eq!(config.fs.upload, UploadMode::Sync, "the daemon's default");
        assert_eq!(config.fs.cache_size, 3 << 30, "the daemon's default");
        assert_eq!(config.fs.metadata_ttl, Duration::from_secs(1));
        assert!(!config.fs.read_only && !config.fs.attrs_from_listing);
        assert_eq!(config.store.path_style, Some(true));
        assert_eq!(config.store.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.store.access_key_id, None);
        assert_eq!(config.store.access_key_secret, None);
        // A volume's own mode and cache size win over the daemon's defaults.
        o.tuning.upload = Some(UploadMode::Async);
        o.tuning.cache_size = Some(128 << 20);
        let config = mount_config(
            &spec,
            &o,
            StoreKeys::None,
            Path::new("/m/v"),
            Path::new("/c/v"),
            UploadMode::Sync,
            3 << 30,
        );
        assert_eq!(config.fs.upload, UploadMode::Async);
        assert_eq!(config.fs.cache_size, 128 << 20);
    }

    /// An ossfs volume tells the mount it is on OSS whatever its endpoint
    /// (its CopyObject limit follows); an s3 volume leaves it to the
    /// endpoint.
    #[test]
    fn mount_config_says_oss_for_ossfs_volumes() {
        let mut o = obj();
        o.endpoint = Some("files.example.cn".into());
        let config_of = |backend: BackendSpec| {
            let spec = VolumeSpec {
                backend,
                sub_path: None,
                read_only: false,
            };
            mount_config(
                &spec,
                &o,
                StoreKeys::None,
                Path::new("/m/v"),
                Path::new("/c/v"),
                UploadMode::Sync,
                3 << 30,
            )
        };
        let ossfs = config_of(BackendSpec::Ossfs(o.clone()));
        assert_eq!(ossfs.store.kind, Some(StoreKind::Oss));
        let resolved = objectfs::store::s3::resolve_endpoint(&ossfs.store).unwrap();
        assert_eq!(resolved.kind, StoreKind::Oss);
        let s3 = config_of(BackendSpec::S3(o.clone()));
        assert_eq!(s3.store.kind, None);
        let resolved = objectfs::store::s3::resolve_endpoint(&s3.store).unwrap();
        assert_eq!(resolved.kind, StoreKind::S3);
    }

    /// A backend whose cache, logs and credential profiles are under `dir`.
    fn backend_in(dir: &Path) -> ObjectBackend {
        ObjectBackend::new(ObjectSettings {
            exe: "/bin/false".into(),
            cache_root: dir.join("cache"),
            log_root: dir.join("logs"),
            credentials_dir: dir.into(),
            default_upload: UploadMode::Async,
            default_cache_size: objectfs::config::DEFAULT_CACHE_SIZE,
            log: LogOutput {
                bounds: crate::logging::rotation::Bounds {
                    max_size: 1 << 20,
                    max_files: 2,
                },
                format: crate::logging::LogFormat::Text,
            },
        })
    }

    #[test]
    fn keys_come_inline_or_from_a_source_the_mount_reads() {
        let dir = tempfile::tempdir().unwrap();
        let backend = backend_in(dir.path());
        let mut o = obj();
        let StoreKeys::Static(k) = backend.keys(&o).unwrap() else {
            panic!("inline keys are handed over")
        };
        assert_eq!(
            (k.access_key_id.as_str(), k.access_key_secret.as_str()),
            ("AKIDSECRET", "TOPSECRET")
        );
        o.credentials = Credentials::Profile {
            name: "team-a".into(),
        };
        // A profile that is not there fails the Mount at once.
        assert!(backend.keys(&o).is_err());
        let profile = dir.path().join("team-a.json");
        std::fs::write(
            &profile,
            r#"{"accessKeyId": "AKIDPROFILE", "accessKeySecret": "PROFILESECRET", "sessionToken": "T"}"#,
        )
        .unwrap();
        std::fs::set_permissions(
            &profile,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let StoreKeys::Source(CredentialSource::Profile { dir: d, name }) =
            backend.keys(&o).unwrap()
        else {
            panic!("a profile is read by the mount itself")
        };
        assert_eq!((d.as_path(), name.as_str()), (dir.path(), "team-a"));
        o.credentials = Credentials::EcsRamRole {
            role: Some("r".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
        };
        assert!(matches!(
            backend.keys(&o).unwrap(),
            StoreKeys::Source(CredentialSource::EcsRamRole {
                role: Some(_),
                endpoint: Some(_)
            })
        ));
        o.credentials = Credentials::Aws { endpoint: None };
        assert!(matches!(
            backend.keys(&o).unwrap(),
            StoreKeys::Source(CredentialSource::AwsDefault {
                imds_endpoint: None
            })
        ));
        o.credentials = Credentials::Default;
        assert!(matches!(backend.keys(&o).unwrap(), StoreKeys::None));
    }

    #[test]
    fn prefix_joins_sub_path() {
        let mut o = obj();
        assert_eq!(mount_prefix(&o, None), "agents/");
        assert_eq!(mount_prefix(&o, Some("a/b")), "agents/a/b/");
        o.prefix = String::new();
        assert_eq!(mount_prefix(&o, Some("x")), "x/");
        assert_eq!(mount_prefix(&o, None), "");
    }

    #[test]
    fn last_log_line_reads_only_this_run() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("v.log");
        let start_of = |p: &Path| LogStart::of(&std::fs::metadata(p).unwrap());
        std::fs::write(&log, "old failure\n").unwrap();
        let start = start_of(&log);
        std::fs::write(&log, "old failure\nINFO mounting\nopensandbox-volume: the bucket cannot be listed: NoSuchBucket\n\n").unwrap();
        assert_eq!(
            last_log_line(&log, start).unwrap(),
            "the bucket cannot be listed: NoSuchBucket"
        );
        assert_eq!(last_log_line(&log, start_of(&log)), None);
        // The process rotated the log: the new file is all this run's.
        let start = start_of(&log);
        std::fs::rename(&log, dir.path().join("v.log.1")).unwrap();
        std::fs::write(&log, "opensandbox-volume: after the rotation\n").unwrap();
        assert_eq!(last_log_line(&log, start).unwrap(), "after the rotation");
        // A panic: its message, not the hint that follows it.
        let start = start_of(&log);
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"thread 'main' panicked at x.rs:1:2:\nno root certificates\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n").unwrap();
        assert_eq!(last_log_line(&log, start).unwrap(), "no root certificates");
    }

    #[test]
    fn discard_deletes_only_what_nothing_uses_and_the_bucket_has() {
        let dir = tempfile::tempdir().unwrap();
        let backend = backend_in(dir.path());
        let target = dir.path().join("mounts/v");
        let cache = dir.path().join("cache/v");
        let logs = dir.path().join("logs");
        assert_eq!(backend.discard(&target).unwrap(), Leftover::Nothing);
        std::fs::create_dir_all(&logs).unwrap();
        let leave = || {
            std::fs::create_dir_all(cache.join("staging")).unwrap();
            std::fs::write(cache.join("mount.pid"), "999999999").unwrap();
            std::fs::write(cache.join("staging/1.data"), "clean").unwrap();
            std::fs::write(logs.join("v.log"), "a\n").unwrap();
            std::fs::write(logs.join("v.log.1"), "b\n").unwrap();
        };
        leave();
        std::fs::write(logs.join("w.log"), "another volume's\n").unwrap();
        assert_eq!(backend.discard(&target).unwrap(), Leftover::Gone);
        assert!(!cache.exists() && !logs.join("v.log").exists() && !logs.join("v.log.1").exists());
        assert!(logs.join("w.log").exists());
        // A mount of the directory holds its lock: everything stays.
        leave();
        let area = objectfs::staging::StagingArea::open(&cache).unwrap();
        assert_eq!(
            backend.discard(&target).unwrap(),
            Leftover::Running { pid: None }
        );
        drop(area);
        // A journalled file (a sidecar, as without xattrs) and a change.
        std::fs::write(cache.join("staging/2.data"), "pending").unwrap();
        std::fs::write(cache.join("staging/2.json"), "{}").unwrap();
        std::fs::create_dir_all(cache.join("ops")).unwrap();
        std::fs::write(cache.join("ops/00000000000000000001.json"), "{}").unwrap();
        assert_eq!(
            backend.discard(&target).unwrap(),
            Leftover::Pending {
                files: 1,
                bytes: 7,
                changes: 1,
                cache_dir: cache.clone()
            }
        );
        assert!(cache.join("staging/2.data").exists() && logs.join("v.log").exists());
        // Once uploaded (the journal cleared), it goes.
        std::fs::remove_file(cache.join("staging/2.json")).unwrap();
        std::fs::remove_file(cache.join("ops/00000000000000000001.json")).unwrap();
        assert_eq!(backend.discard(&target).unwrap(), Leftover::Gone);
        assert!(!cache.exists());
    }

    #[test]
    fn a_recycled_pid_is_not_taken_for_a_mount() {
        // Our own pid is alive but is not a mount process serving /m/v.
        assert!(pid_alive(std::process::id()));
        assert!(!serves(std::process::id(), Path::new("/m/v")));
        assert!(!pid_alive(0));
    }
}
