//! What a state directory says about each volume, read without the
//! daemon: the registry's records (inline keys left sealed) joined with
//! what each object volume's mount process last wrote in its status file,
//! and whether that process still runs. `status` prints it; the daemon's
//! metrics endpoint turns it into Prometheus series. Reading changes
//! nothing in the directory and opens no key.
//!
//! A mount process's state is derived in [`mount_state`] (pure): what the
//! process last reported, unless it is gone (a dead pid, or a status file
//! it stopped rewriting) without having stopped cleanly.

use crate::backend::object::{pid_alive, serves};
use crate::driver::state::{UnreadableRecord, VolumeRecord, load_for_display};
use crate::names;
use objectfs::status::{self, MountStatus, read_status};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// What a volume's mount is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountState {
    /// Served and reporting.
    Mounted,
    /// Its mount process is uploading what an earlier one left, before
    /// mounting.
    Recovering,
    /// Unmounted; its mount process uploads what is left, then exits.
    Flushing,
    /// Containers use it, or data waits for the bucket, but no mount
    /// process serves it (dead, hung, or stopped from outside).
    Failed,
    /// Not in use and nothing waiting.
    NotMounted,
}

impl MountState {
    pub const ALL: [MountState; 5] = [
        MountState::Mounted,
        MountState::Recovering,
        MountState::Flushing,
        MountState::Failed,
        MountState::NotMounted,
    ];

    /// As `status` prints it.
    pub fn words(self) -> &'static str {
        match self {
            MountState::Mounted => "mounted",
            MountState::Recovering => "recovering",
            MountState::Flushing => "flushing",
            MountState::Failed => "failed",
            MountState::NotMounted => "not mounted",
        }
    }

    /// As a label value (no spaces).
    pub fn label(self) -> &'static str {
        match self {
            MountState::NotMounted => "not_mounted",
            other => other.words(),
        }
    }
}

/// One volume of the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeReport {
    pub name: String,
    /// `host`, `pvc`, `nfs`, `s3`, `ossfs`.
    pub type_name: &'static str,
    /// The registry's mount IDs (one per container mount), each once.
    pub mount_ids: Vec<String>,
    /// Mounts in use, repeats of one ID included.
    pub mounts: u32,
    pub state: MountState,
    /// Object volumes: where the keys come from, as the registry says
    /// (never a key).
    pub credentials: Option<String>,
    /// Object volumes: what the mount process last reported, if it ever
    /// did.
    pub reported: Option<MountStatus>,
}

impl VolumeReport {
    pub fn is_object(&self) -> bool {
        self.credentials.is_some()
    }
}

/// Every volume of a state directory, at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub state_dir: PathBuf,
    pub taken_at: SystemTime,
    pub volumes: Vec<VolumeReport>,
    /// Registry files that could not be read (their volumes are not
    /// served).
    pub unreadable: Vec<(PathBuf, String)>,
    /// Cache directories of removed volumes that still hold data the
    /// bucket does not have (kept until a mount of that volume uploads it).
    pub removed_with_data: Vec<RemovedWithData>,
}

/// A removed object volume's cache directory with data not in the bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct RemovedWithData {
    /// The directory's name: the volume's name as a file stem.
    pub stem: String,
    pub cache_dir: PathBuf,
    /// Journalled files and their bytes, and recorded namespace changes.
    pub files: usize,
    pub bytes: u64,
    pub changes: usize,
}

/// Reads the registry and the status files of `state_dir`.
pub fn collect(state_dir: &Path) -> io::Result<Report> {
    let (records, unreadable) = load_for_display(state_dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot read the volume registry in {}: {e}",
                state_dir.join("volumes").display()
            ),
        )
    })?;
    let taken_at = SystemTime::now();
    let cache_root = state_dir.join("cache");
    let volumes = records
        .iter()
        .map(|r| volume_report(r, &cache_root, taken_at))
        .collect();
    let registered: Vec<String> = records.iter().map(|r| names::file_stem(&r.name)).collect();
    Ok(Report {
        state_dir: state_dir.to_path_buf(),
        taken_at,
        volumes,
        removed_with_data: removed_with_data(&cache_root, &registered),
        unreadable: unreadable
            .into_iter()
            .map(|UnreadableRecord { path, reason }| (path, reason))
            .collect(),
    })
}

/// The cache directories under `cache_root` that belong to no registered
/// volume (file stems `registered`) and whose journals are not empty.
/// Unreadable ones are skipped: the daemon's clean-up reports those.
fn removed_with_data(cache_root: &Path, registered: &[String]) -> Vec<RemovedWithData> {
    let Ok(entries) = std::fs::read_dir(cache_root) else {
        return Vec::new();
    };
    let mut out: Vec<RemovedWithData> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let stem = e.file_name().to_string_lossy().into_owned();
            if registered.contains(&stem) {
                return None;
            }
            let cache_dir = e.path();
            let (files, bytes) = objectfs::staging::journalled(&cache_dir).ok()?;
            let changes = objectfs::oplog::recorded(&cache_dir).ok()?;
            (files > 0 || changes > 0).then_some(RemovedWithData {
                stem,
                cache_dir,
                files,
                bytes,
                changes,
            })
        })
        .collect();
    out.sort_by(|a, b| a.stem.cmp(&b.stem));
    out
}

fn volume_report(record: &VolumeRecord, cache_root: &Path, now: SystemTime) -> VolumeReport {
    let mounts = record.mount_ids.total();
    let object = record.spec.backend.object();
    // The cache directory is named after the mount point, which is named
    // after the volume (backend::object).
    let reported =
        object.and_then(|_| read_status(&cache_root.join(names::file_stem(&record.name))));
    let state = match object {
        Some(_) => {
            let alive = reported.as_ref().and_then(process_alive);
            mount_state(reported.as_ref(), alive, now, mounts)
        }
        None if mounts > 0 => MountState::Mounted,
        None => MountState::NotMounted,
    };
    VolumeReport {
        name: record.name.clone(),
        type_name: record.spec.backend.type_name(),
        mount_ids: record.mount_ids.ids().map(str::to_string).collect(),
        mounts,
        state,
        credentials: object.map(|o| o.credentials.describe()),
        reported,
    }
}

/// Whether the process that wrote `status` still runs and serves its
/// mount point; `None` when this process cannot tell: the pid is in
/// another pid namespace (a mount of the managed plugin, seen from the
/// host), or the file does not say which.
fn process_alive(status: &MountStatus) -> Option<bool> {
    let theirs = status.pid_namespace.as_deref()?;
    if Some(theirs) != status::own_pid_namespace().as_deref() {
        return None;
    }
    Some(
        pid_alive(status.pid)
            && status
                .mountpoint
                .as_deref()
                .is_none_or(|m| serves(status.pid, m)),
    )
}

/// How long ago RFC 3339 time `at` was, at `now` (zero for a time ahead).
pub fn age(at: Option<&str>, now: SystemTime) -> Option<Duration> {
    let t = humantime::parse_rfc3339(at?).ok()?;
    Some(now.duration_since(t).unwrap_or_default())
}

/// The state of an object volume's mount from what its process last
/// reported (`reported`), whether that process runs (`alive`: `None` when
/// that cannot be told here, and only the file's age speaks) and how many
/// container mounts the registry holds.
pub fn mount_state(
    reported: Option<&MountStatus>,
    alive: Option<bool>,
    now: SystemTime,
    mounts: u32,
) -> MountState {
    let Some(s) = reported else {
        // Never reported: it never started (or the status file is gone).
        return match mounts {
            0 => MountState::NotMounted,
            _ => MountState::Failed,
        };
    };
    let in_use_or_waiting =
        mounts > 0 || s.pending_bytes > 0 || s.pending_files > 0 || s.pending_changes > 0;
    if s.state == status::STOPPED {
        // Stopped cleanly; what it could not upload waits for the next
        // mount (and shows as pending).
        return match mounts {
            0 => MountState::NotMounted,
            _ => MountState::Failed,
        };
    }
    // A file without a stamp is an older binary's: only the pid speaks.
    let fresh = age(s.updated_at.as_deref(), now).is_none_or(|a| a <= status::STALE_AFTER);
    if alive == Some(false) || !fresh {
        return match in_use_or_waiting {
            true => MountState::Failed,
            false => MountState::NotMounted,
        };
    }
    match s.state.as_str() {
        status::RECOVERING => MountState::Recovering,
        status::FLUSHING => MountState::Flushing,
        _ => MountState::Mounted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(state: &str, updated: SystemTime) -> MountStatus {
        serde_json::from_value(serde_json::json!({
            "pid": 42, "state": state, "pendingBytes": 0,
            "updatedAt": objectfs::status::rfc3339(updated),
        }))
        .unwrap()
    }

    #[test]
    fn a_running_process_is_what_it_reports() {
        let now = SystemTime::now();
        for (state, want) in [
            ("mounted", MountState::Mounted),
            ("recovering", MountState::Recovering),
            ("flushing", MountState::Flushing),
        ] {
            let s = reported(state, now);
            assert_eq!(mount_state(Some(&s), Some(true), now, 1), want);
            // From another pid namespace only the file's age speaks.
            assert_eq!(mount_state(Some(&s), None, now, 1), want);
        }
        // Flushing after the last Unmount: no container, still running.
        let s = reported("flushing", now);
        assert_eq!(mount_state(Some(&s), None, now, 0), MountState::Flushing);
    }

    #[test]
    fn a_dead_or_silent_process_fails_what_uses_or_waits_for_it() {
        let now = humantime::parse_rfc3339("2026-01-01T00:10:00Z").unwrap();
        let s = reported("mounted", now);
        assert_eq!(
            mount_state(Some(&s), Some(false), now, 1),
            MountState::Failed
        );
        // Nobody uses it and nothing waits (a host reboot, say).
        assert_eq!(
            mount_state(Some(&s), Some(false), now, 0),
            MountState::NotMounted
        );
        let mut waiting = s.clone();
        waiting.pending_changes = 2;
        assert_eq!(
            mount_state(Some(&waiting), Some(false), now, 0),
            MountState::Failed
        );
        // A file not rewritten for longer than STALE_AFTER: hung or gone,
        // whatever the pid says.
        let old = now - status::STALE_AFTER - Duration::from_secs(1);
        let stale = reported("mounted", old);
        assert_eq!(mount_state(Some(&stale), None, now, 1), MountState::Failed);
        assert_eq!(
            mount_state(Some(&stale), Some(true), now, 1),
            MountState::Failed
        );
        let just = reported("mounted", now - status::STALE_AFTER);
        assert_eq!(mount_state(Some(&just), None, now, 1), MountState::Mounted);
    }

    #[test]
    fn a_clean_stop_is_not_mounted_unless_containers_still_use_it() {
        let now = SystemTime::now();
        let long_ago = now - Duration::from_secs(3600);
        let stopped = reported("stopped", long_ago);
        assert_eq!(
            mount_state(Some(&stopped), Some(false), now, 0),
            MountState::NotMounted
        );
        assert_eq!(
            mount_state(Some(&stopped), Some(false), now, 2),
            MountState::Failed
        );
        assert_eq!(mount_state(None, None, now, 0), MountState::NotMounted);
        assert_eq!(mount_state(None, None, now, 1), MountState::Failed);
    }

    #[test]
    fn an_older_binarys_file_without_a_stamp_goes_by_the_pid() {
        let now = SystemTime::now();
        let mut s = reported("mounted", now);
        s.updated_at = None;
        assert_eq!(mount_state(Some(&s), None, now, 1), MountState::Mounted);
        assert_eq!(
            mount_state(Some(&s), Some(false), now, 1),
            MountState::Failed
        );
    }

    #[test]
    fn ages_are_read_from_rfc3339() {
        let now = humantime::parse_rfc3339("2026-01-01T00:01:00Z").unwrap();
        assert_eq!(
            age(Some("2026-01-01T00:00:30.5Z"), now),
            Some(Duration::from_millis(29_500))
        );
        assert_eq!(age(Some("2026-01-01T00:02:00Z"), now), Some(Duration::ZERO));
        assert_eq!(age(Some("yesterday"), now), None);
        assert_eq!(age(None, now), None);
        assert_eq!(MountState::NotMounted.label(), "not_mounted");
        assert_eq!(MountState::NotMounted.words(), "not mounted");
    }

    /// A whole state directory: a host volume, an object volume whose
    /// process reported and is gone, and one that never reported.
    #[test]
    fn a_state_directory_is_reported_volume_by_volume() {
        use crate::driver::state::{RECORD_VERSION, StateStore};
        use crate::spec::{BackendSpec, VolumeSpec};
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let object = |name: &str, ids: &[&str]| {
            let obj: crate::spec::ObjectSpec = serde_json::from_value(serde_json::json!({
                "bucket": "b", "credentials": {"source": "profile", "name": "team-a"}}))
            .unwrap();
            let mut r = VolumeRecord {
                version: RECORD_VERSION,
                name: name.into(),
                spec: VolumeSpec {
                    backend: BackendSpec::S3(obj),
                    sub_path: None,
                    read_only: false,
                },
                created_at: "2026-01-01T00:00:00Z".into(),
                mount_ids: Default::default(),
            };
            for id in ids {
                r.mount_ids.acquire(id);
            }
            r
        };
        let mut host = object("h", &["c1"]);
        host.spec.backend = BackendSpec::Host {
            path: "/srv".into(),
        };
        store.save(&host).unwrap();
        store.save(&object("gone/one", &["c2", "c3"])).unwrap();
        store.save(&object("never", &[])).unwrap();
        let cache = dir.path().join("cache").join(names::file_stem("gone/one"));
        std::fs::create_dir_all(&cache).unwrap();
        // Our pid namespace, a pid that is not a mount process (ours).
        let mut s = reported("mounted", SystemTime::now());
        s.pid = std::process::id();
        s.pid_namespace = status::own_pid_namespace();
        s.mountpoint = Some("/m/gone".into());
        s.pending_bytes = 5;
        std::fs::write(cache.join("status.json"), serde_json::to_vec(&s).unwrap()).unwrap();
        std::fs::write(dir.path().join("volumes/bad.json"), b"{").unwrap();

        let report = collect(dir.path()).unwrap();
        let names: Vec<&str> = report.volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["gone/one", "h", "never"]);
        let gone = &report.volumes[0];
        assert_eq!((gone.type_name, gone.mounts), ("s3", 2));
        assert_eq!(gone.mount_ids, ["c2", "c3"]);
        assert_eq!(gone.credentials.as_deref(), Some("profile team-a"));
        assert_eq!(gone.reported.as_ref().unwrap().pending_bytes, 5);
        assert_eq!(gone.state, MountState::Failed, "its pid serves no mount");
        let h = &report.volumes[1];
        assert_eq!(
            (h.type_name, h.state, h.is_object()),
            ("host", MountState::Mounted, false)
        );
        let never = &report.volumes[2];
        assert_eq!(
            (never.state, never.reported.is_none()),
            (MountState::NotMounted, true)
        );
        assert_eq!(report.unreadable.len(), 1);
        assert!(collect(&dir.path().join("nothing")).is_err());
    }
}
