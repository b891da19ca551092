//! Running one objectfs mount in the foreground: check the bucket, recover
//! staged data, mount with fuser, and on SIGTERM/SIGINT or an external
//! unmount, unmount and upload everything before exiting.

use super::fuse::FuseAdapter;
use super::{FsOptions, ObjectFs};

use crate::config::{MountConfig, MountSettings};
use crate::store::ObjectStore;
use crate::store::s3::S3Store;
use fuser::{Config, MountOption, SessionACL};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A FUSE mount whose server died leaves "Transport endpoint is not
/// connected" behind; detach it so the mount point can be used again.
fn clear_stale_mount(path: &Path) {
    if let Err(e) = statfs(path)
        && e.raw_os_error() == Some(libc::ENOTCONN)
    {
        tracing::warn!(mountpoint = %path.display(), "detaching a dead FUSE mount");
        let _ = detach(path);
    }
}

/// statfs(2): unlike stat, always a request to a FUSE mount's process (no
/// kernel cache answers it), so a dead mount says ENOTCONN at once.
fn statfs(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `p` is NUL-terminated and `buf` is a statfs-sized buffer the
    // call fills; neither outlives the call.
    match unsafe { libc::statfs(p.as_ptr(), buf.as_mut_ptr()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Detaches the mount at `target` lazily (MNT_DETACH); a path that is not
/// a mount point, or is gone, counts as done. The plugin's bind mounts use
/// the same call.
pub fn detach(target: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let dst = std::ffi::CString::new(target.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `dst` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
        _ => Err(err),
    }
}

/// Runs the mount `config` describes until it is unmounted or the process
/// is told to stop: the one entry point of the plugin's mount processes and
/// of the standalone `mount` command. Returns the number of files that
/// could not be uploaded in time (they stay journalled in the cache
/// directory for the next mount).
pub async fn run(config: MountConfig) -> anyhow::Result<usize> {
    let store = Arc::new(S3Store::new(&config.store)?);
    let opts = config.fs;
    tracing::info!(bucket = %config.store.bucket, endpoint = ?config.store.endpoint, prefix = %opts.prefix,
        cache_dir = %opts.cache_dir.display(), upload = ?opts.upload, "mounting");
    serve(store, opts, config.mount).await
}

/// [`run`] on any store.
async fn serve(
    store: Arc<dyn ObjectStore>,
    opts: FsOptions,
    settings: MountSettings,
) -> anyhow::Result<usize> {
    // Caught from here on: a SIGTERM that comes as soon as the mount
    // appears still unmounts and uploads.
    let signals = StopSignals::install();
    // Fail early, with the storage's own reason, if the bucket is unusable.
    store
        .list(&opts.prefix, Some("/"), None, 1)
        .await
        .map_err(|e| anyhow::anyhow!("the bucket cannot be listed: {e}"))?;

    clear_stale_mount(&settings.mountpoint);
    let rt = tokio::runtime::Handle::current();
    let ttl = opts.metadata_ttl;
    let read_only = opts.read_only;
    let status_path = opts.cache_dir.join(STATUS_FILE);
    // ObjectFs::new blocks on the runtime (recovery uploads): not on a
    // runtime thread.
    let fs = tokio::task::spawn_blocking(move || ObjectFs::new(store, rt, opts)).await??;

    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(settings.fs_name.clone()),
        MountOption::Subtype("objectfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if read_only {
        config.mount_options.push(MountOption::RO);
    }
    config.acl = if settings.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(settings.threads.max(1));
    config.clone_fd = true;

    let adapter = FuseAdapter::new(fs.clone(), ttl);
    let session = fuser::spawn_mount(adapter, &settings.mountpoint, &config).map_err(|e| {
        anyhow::anyhow!("could not mount at {}: {e}", settings.mountpoint.display())
    })?;
    tracing::info!(mountpoint = %settings.mountpoint.display(), "mounted");
    let reporter = tokio::spawn(report_status(fs.clone(), status_path.clone()));

    let stopped_by_signal = wait_for_stop(&session, signals).await;
    reporter.abort();
    write_status(&status_path, &status_of(&fs, "flushing"));
    if stopped_by_signal {
        tracing::info!("unmounting");
        let mountpoint = settings.mountpoint.clone();
        // The session ends once the kernel drops the last copy of the mount;
        // a copy in another mount namespace (a container or plugin that
        // rbinds the host's /) may never go. Upload after a grace period
        // regardless: the copies fail with ENOTCONN once this process exits.
        let (ended_tx, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = ended_tx.send(session.umount_and_join());
        });
        let outcome =
            tokio::task::spawn_blocking(move || ended.recv_timeout(SESSION_END_GRACE)).await?;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                // Busy (a process still inside): detach lazily instead.
                tracing::warn!(error = %e, "unmount failed; detaching lazily");
                let _ = detach(&mountpoint);
            }
            Err(_) => tracing::warn!(
                "the filesystem is still mounted elsewhere (a copy in another mount namespace); uploading now, the copies stop working when this process exits"
            ),
        }
    } else {
        tracing::info!("unmounted from outside");
        let _ = tokio::task::spawn_blocking(move || session.join()).await;
    }
    let flushing = fs.clone();
    let pending = tokio::task::spawn_blocking(move || flushing.flush_all()).await?;
    write_status(&status_path, &status_of(&fs, "stopped"));
    if pending > 0 {
        tracing::error!(
            files = pending,
            "uploads did not finish in time; the data stays in the cache directory and is uploaded at the next mount"
        );
    } else {
        tracing::info!("every write is in the bucket");
    }
    Ok(pending)
}

/// How long a stopping mount waits for the kernel to end the FUSE session
/// before it uploads anyway.
const SESSION_END_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The file in the cache directory where a running mount reports itself,
/// so the plugin can show it in `docker volume inspect` without talking to
/// the mount (or to storage).
pub const STATUS_FILE: &str = "status.json";

/// What a mount process reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountStatus {
    pub pid: u32,
    /// `mounted`, `flushing` (unmounted, uploading what is left) or `stopped`.
    pub state: String,
    /// Bytes written but not yet in the bucket.
    pub pending_bytes: u64,
    /// Namespace changes (mkdir, unlink, rename, ...) not yet in the bucket.
    #[serde(default)]
    pub pending_changes: usize,
    /// Bytes of file data in the cache directory (written or cached).
    #[serde(default)]
    pub cache_bytes: u64,
    /// Opens the kernel served from the local copy itself (passthrough),
    /// with no read request to the mount process.
    #[serde(default)]
    pub passthrough_opens: u64,
    /// Uploads and namespace changes are failing: the last error (never a
    /// key) and since when (RFC 3339). What waits stays queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error_since: Option<String>,
}

/// What the status file reports of `fs` now, in state `state`.
fn status_of(fs: &ObjectFs, state: &str) -> MountStatus {
    let failing = fs.store_failing();
    MountStatus {
        pid: std::process::id(),
        state: state.into(),
        pending_bytes: fs.pending_bytes(),
        pending_changes: fs.pending_ops(),
        cache_bytes: fs.cache_bytes().0,
        passthrough_opens: fs.passthrough_opens(),
        store_error: failing.as_ref().map(|(_, m)| m.clone()),
        store_error_since: failing.map(|(since, _)| rfc3339(since)),
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

fn write_status(path: &Path, status: &MountStatus) {
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec(status)
        .map_err(std::io::Error::other)
        .and_then(|b| std::fs::write(&tmp, b))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::debug!(error = %e, "could not write the status file");
    }
}

/// Rewrites the status file whenever what it reports changes (checked
/// once a second).
async fn report_status(fs: ObjectFs, path: PathBuf) {
    let mut last = None;
    loop {
        let status = status_of(&fs, "mounted");
        if last.as_ref() != Some(&status) {
            write_status(&path, &status);
            last = Some(status);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reads a mount's status file; `None` when absent or unreadable.
pub fn read_status(cache_dir: &Path) -> Option<MountStatus> {
    let bytes = std::fs::read(cache_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// SIGTERM and SIGINT, caught (and kept until asked for) once installed.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> StopSignals {
        use tokio::signal::unix::{SignalKind, signal};
        StopSignals {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("SIGINT handler"),
        }
    }
}

/// True on SIGTERM/SIGINT, false when the session ended on its own.
async fn wait_for_stop(session: &fuser::BackgroundSession, signals: StopSignals) -> bool {
    let StopSignals { mut term, mut int } = signals;
    loop {
        tokio::select! {
            _ = term.recv() => return true,
            _ = int.recv() => return true,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if session.guard.is_finished() {
                    return false;
                }
            }
        }
    }
}
