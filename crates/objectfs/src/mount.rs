//! Running one objectfs mount in the foreground: check the bucket, recover
//! staged data, mount with fuser, report in the status file (`status`),
//! and on SIGTERM/SIGINT or an external unmount, unmount and upload
//! everything before exiting. The store it mounts is wrapped so every
//! request is counted (`store::metered`), and the FUSE adapter counts the
//! kernel's requests, into the one `Metrics` the status file reports.

use super::fuse::FuseAdapter;
use super::{FsOptions, ObjectFs};

use crate::config::{MountConfig, MountSettings};
use crate::metrics::Metrics;
use crate::status::{self, Reporter};
use crate::store::ObjectStore;
use crate::store::metered::Metered;
use crate::store::s3::{CredentialState, S3Store};
use fuser::{Config, MountOption, SessionACL};
use std::path::Path;
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
    let s3 = S3Store::new(&config.store)?;
    let credentials = s3.credential_state();
    let opts = config.fs;
    tracing::info!(bucket = %config.store.bucket, endpoint = ?config.store.endpoint, prefix = %opts.prefix,
        cache_dir = %opts.cache_dir.display(), upload = ?opts.upload, "mounting");
    serve(Arc::new(s3), Some(credentials), opts, config.mount).await
}

/// [`run`] on any store (`credentials`: where its keys come from, if known).
async fn serve(
    store: Arc<dyn ObjectStore>,
    credentials: Option<Arc<CredentialState>>,
    opts: FsOptions,
    settings: MountSettings,
) -> anyhow::Result<usize> {
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn ObjectStore> = Arc::new(Metered::new(store, metrics.clone()));
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
    let reporter = Arc::new(Reporter::new(
        &opts.cache_dir,
        &settings.mountpoint,
        metrics.clone(),
        credentials,
    ));
    // Reported while it uploads what an earlier mount left (maybe long).
    let recovering = tokio::spawn(reporter.clone().keep_reporting(None, status::RECOVERING));
    // ObjectFs::new blocks on the runtime (recovery uploads): not on a
    // runtime thread.
    let fs = tokio::task::spawn_blocking(move || ObjectFs::new(store, rt, opts)).await;
    stop_reporting(recovering).await;
    let fs = fs??;

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

    let adapter = FuseAdapter::new(fs.clone(), ttl, metrics);
    let session = fuser::spawn_mount(adapter, &settings.mountpoint, &config).map_err(|e| {
        anyhow::anyhow!("could not mount at {}: {e}", settings.mountpoint.display())
    })?;
    tracing::info!(mountpoint = %settings.mountpoint.display(), "mounted");
    let mounted = tokio::spawn(
        reporter
            .clone()
            .keep_reporting(Some(fs.clone()), status::MOUNTED),
    );

    let stopped_by_signal = wait_for_stop(&session, signals).await;
    stop_reporting(mounted).await;
    let flushing = tokio::spawn(
        reporter
            .clone()
            .keep_reporting(Some(fs.clone()), status::FLUSHING),
    );
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
    let fs_ = fs.clone();
    let pending = tokio::task::spawn_blocking(move || fs_.flush_all()).await?;
    stop_reporting(flushing).await;
    reporter.report(Some(&fs), status::STOPPED);
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

pub use crate::status::{MountStatus, STATUS_FILE, read_status};

/// How long a stopping mount waits for the kernel to end the FUSE session
/// before it uploads anyway.
const SESSION_END_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends a status reporting task, and waits until it has: two writers of
/// the status file at once could leave a reader half a file.
async fn stop_reporting(task: tokio::task::JoinHandle<()>) {
    task.abort();
    let _ = task.await;
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
