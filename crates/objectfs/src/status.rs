//! The status file: what a running mount reports about itself in its
//! cache directory (`status.json`), for the plugin (`docker volume
//! inspect`, `opensandbox-volume status`, the Prometheus endpoint) to read
//! without talking to the mount or to storage. It is the one channel from
//! a mount process to the daemon.
//!
//! The mount rewrites it whenever what it reports changes (looked at once
//! a second), and at least every [`HEARTBEAT`], stamping each write
//! (`updatedAt`): a file older than [`STALE_AFTER`] belongs to a process
//! that is gone or hung. Every field added since the first version has a
//! default, so the daemon reads the file of a mount process started by an
//! older binary, and the reverse.

use crate::core::ObjectFs;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::store::s3::CredentialState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The file in the cache directory where a running mount reports itself.
pub const STATUS_FILE: &str = "status.json";
/// A running mount rewrites its status file at least this often.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// A status file not rewritten for this long is a dead (or hung) mount's.
pub const STALE_AFTER: Duration = Duration::from_secs(20);

/// The states a mount process reports, in the order it goes through them.
pub const RECOVERING: &str = "recovering";
pub const MOUNTED: &str = "mounted";
pub const FLUSHING: &str = "flushing";
pub const STOPPED: &str = "stopped";

/// What a mount process reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountStatus {
    pub pid: u32,
    /// [`RECOVERING`] (uploading what an earlier mount of the cache
    /// directory left, before mounting), [`MOUNTED`], [`FLUSHING`]
    /// (unmounted, uploading what is left) or [`STOPPED`].
    pub state: String,
    /// Bytes written but not yet in the bucket.
    pub pending_bytes: u64,
    /// Namespace changes (mkdir, unlink, rename, ...) not yet in the bucket.
    #[serde(default)]
    pub pending_changes: usize,
    /// Files with data or attributes not yet in the bucket.
    #[serde(default)]
    pub pending_files: usize,
    /// Since when the oldest change not in the bucket (of data or of a
    /// name) has waited (RFC 3339); none while nothing waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_since: Option<String>,
    /// Bytes of file data in the cache directory (written or cached).
    #[serde(default)]
    pub cache_bytes: u64,
    /// Of those, the bytes of copies with changes not in the bucket (never
    /// evicted); the rest are clean.
    #[serde(default)]
    pub cache_dirty_bytes: u64,
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
    /// Where the keys come from and when they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialStatus>,
    /// The mount point the process serves (it names the process in `ps`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoint: Option<PathBuf>,
    /// The process's pid namespace (`pid:[INODE]`): `pid` means something
    /// only to a reader in the same one (not to the host, for a mount of
    /// the managed plugin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_namespace: Option<String>,
    /// When the file was written (RFC 3339); see [`STALE_AFTER`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// What the mount counted since it started.
    #[serde(default)]
    pub metrics: MetricsSnapshot,
}

/// A mount's credentials as its status reports them (never a key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialStatus {
    /// `profile team-a`, `ECS RAM role web-role`, `static keys`, …
    pub source: String,
    /// When the keys in use expire (RFC 3339); none for keys that do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The last failure to fetch keys, and since when (RFC 3339), until a
    /// fetch succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_error_since: Option<String>,
}

/// `t` as RFC 3339 (UTC).
pub fn rfc3339(t: SystemTime) -> String {
    aws_smithy_types::DateTime::from(t)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

/// This process's pid namespace, as `/proc/self/ns/pid` names it.
pub fn own_pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Reads a mount's status file; `None` when absent or unreadable.
pub fn read_status(cache_dir: &Path) -> Option<MountStatus> {
    let bytes = std::fs::read(cache_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes one mount's status file.
pub(crate) struct Reporter {
    path: PathBuf,
    mountpoint: PathBuf,
    metrics: Arc<Metrics>,
    credentials: Option<Arc<CredentialState>>,
    pid_namespace: Option<String>,
}

impl Reporter {
    pub(crate) fn new(
        cache_dir: &Path,
        mountpoint: &Path,
        metrics: Arc<Metrics>,
        credentials: Option<Arc<CredentialState>>,
    ) -> Reporter {
        Reporter {
            path: cache_dir.join(STATUS_FILE),
            mountpoint: mountpoint.to_path_buf(),
            metrics,
            credentials,
            pid_namespace: own_pid_namespace(),
        }
    }

    /// What the file reports now, in state `state`, of `fs` once it runs
    /// (`None` while recovering); not stamped yet.
    fn status(&self, fs: Option<&ObjectFs>, state: &str) -> MountStatus {
        let failing = fs.and_then(ObjectFs::store_failing);
        let pending = fs.map(ObjectFs::pending).unwrap_or_default();
        let credentials = self.credentials.as_ref().map(|c| {
            let failure = c.last_failure();
            CredentialStatus {
                source: c.describe(),
                expires_at: c.expires_at().map(rfc3339),
                refresh_error: failure.as_ref().map(|f| f.message.clone()),
                refresh_error_since: failure.map(|f| rfc3339(f.since)),
            }
        });
        MountStatus {
            pid: std::process::id(),
            state: state.into(),
            pending_bytes: pending.bytes,
            pending_changes: pending.changes,
            pending_files: pending.files,
            oldest_pending_since: pending.oldest_since.map(rfc3339),
            cache_bytes: fs.map_or(0, |fs| fs.cache_bytes().0),
            cache_dirty_bytes: pending.cache_bytes,
            passthrough_opens: fs.map_or(0, ObjectFs::passthrough_opens),
            store_error: failing.as_ref().map(|(_, m)| m.clone()),
            store_error_since: failing.map(|(since, _)| rfc3339(since)),
            credentials,
            mountpoint: Some(self.mountpoint.clone()),
            pid_namespace: self.pid_namespace.clone(),
            updated_at: None,
            metrics: self.metrics.snapshot(),
        }
    }

    /// Stamps and writes `status` (through a temporary file and a rename,
    /// so a reader never sees half of it).
    fn write(&self, mut status: MountStatus) {
        status.updated_at = Some(rfc3339(SystemTime::now()));
        let tmp = self.path.with_extension("json.tmp");
        let written = serde_json::to_vec(&status)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            tracing::debug!(error = %e, "could not write the status file");
        }
    }

    /// Writes the status now.
    pub(crate) fn report(&self, fs: Option<&ObjectFs>, state: &str) {
        self.write(self.status(fs, state));
    }

    /// Rewrites the status whenever what it reports changes (looked at
    /// once a second), and at least every [`HEARTBEAT`]; until aborted.
    pub(crate) async fn keep_reporting(self: Arc<Self>, fs: Option<ObjectFs>, state: &'static str) {
        let mut last: Option<(MountStatus, Instant)> = None;
        loop {
            let status = self.status(fs.as_ref(), state);
            let due = match &last {
                Some((was, at)) => *was != status || at.elapsed() >= HEARTBEAT,
                None => true,
            };
            if due {
                self.write(status.clone());
                last = Some((status, Instant::now()));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemon reads the status file of a mount process an older binary
    /// started (and the reverse): new fields default, old ones stay.
    #[test]
    fn an_older_status_file_still_reads() {
        let old = r#"{"pid":7,"state":"mounted","pendingBytes":3,"pendingChanges":1,"cacheBytes":9,"passthroughOpens":0}"#;
        let s: MountStatus = serde_json::from_str(old).unwrap();
        assert_eq!(
            (s.pid, s.state.as_str(), s.pending_bytes),
            (7, "mounted", 3)
        );
        assert_eq!((s.pending_files, s.cache_dirty_bytes), (0, 0));
        assert_eq!(
            (s.updated_at, s.credentials, s.mountpoint),
            (None, None, None)
        );
        assert_eq!(s.metrics, MetricsSnapshot::default());
    }

    #[test]
    fn a_written_status_is_stamped_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        metrics.fuse(crate::metrics::FuseOp::Write);
        let reporter = Reporter::new(dir.path(), Path::new("/m/v"), metrics, None);
        reporter.report(None, RECOVERING);
        let s = read_status(dir.path()).unwrap();
        assert_eq!(s.state, RECOVERING);
        assert_eq!(s.pid, std::process::id());
        assert_eq!(s.mountpoint.as_deref(), Some(Path::new("/m/v")));
        assert_eq!(s.metrics.fuse_ops["write"], 1);
        let stamped = s.updated_at.expect("stamped");
        assert!(stamped.ends_with('Z'), "{stamped}");
        assert_eq!(s.pid_namespace, own_pid_namespace());
        assert!(s.pid_namespace.unwrap().starts_with("pid:["));
        assert!(!dir.path().join("status.json.tmp").exists());
    }
}
