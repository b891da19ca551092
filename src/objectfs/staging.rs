//! Local staging files and their journal, in the mount's cache directory.
//!
//! Every file being written lives in `staging/N.data`. While it holds data
//! the bucket does not have yet, `staging/N.json` records where it belongs
//! (key and attributes). The journal is what makes "never lose a byte"
//! survive a crash: the next mount with the same cache directory uploads
//! every journalled file before anything else touches it. A lock file keeps
//! two mounts from sharing one cache directory.

use crate::objectfs::layout::{Kind, Posix};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

/// Where a staged file's data belongs, as written to its journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub key: String,
    /// Permission bits.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: u64,
}

impl JournalEntry {
    pub fn new(key: &str, posix: &Posix) -> Self {
        JournalEntry {
            key: key.to_string(),
            perm: posix.perm,
            uid: posix.uid,
            gid: posix.gid,
            mtime: posix
                .mtime
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    pub fn posix(&self) -> Posix {
        Posix {
            kind: Kind::File,
            perm: self.perm,
            uid: self.uid,
            gid: self.gid,
            mtime: UNIX_EPOCH + Duration::from_secs(self.mtime),
        }
    }
}

pub struct StagingArea {
    dir: PathBuf,
    next_id: AtomicU64,
    // Held for the mount's lifetime: the flock is released when it closes.
    _lock: File,
}

impl StagingArea {
    /// Opens `cache_dir/staging`, refusing a cache directory another live
    /// mount holds.
    pub fn open(cache_dir: &Path) -> io::Result<StagingArea> {
        let dir = cache_dir.join("staging");
        fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cache_dir.join("lock"))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "cache directory {} is in use by another mount; give each mount its own --cache-dir",
                    cache_dir.display()
                ),
            ));
        }
        let mut max = 0;
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name();
            if let Some(id) = name
                .to_str()
                .and_then(|n| n.split('.').next())
                .and_then(|n| n.parse::<u64>().ok())
            {
                max = max.max(id);
            }
        }
        Ok(StagingArea {
            dir,
            next_id: AtomicU64::new(max + 1),
            _lock: lock,
        })
    }

    pub fn data_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.data"))
    }

    fn journal_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// A new, empty staging file.
    pub fn create(&self) -> io::Result<(u64, File)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.data_path(id))?;
        Ok((id, file))
    }

    /// Records that staging file `id` holds data for `entry`.
    ///
    /// Written with a rename (never half a file) but not fsynced: the
    /// journal protects against the mount process dying, and the page cache
    /// outlives the process. Against power loss the guarantee is fsync(2),
    /// which puts the data in the bucket. Three fsyncs per created file
    /// would cap small-file throughput at the local disk's flush rate.
    pub fn journal(&self, id: u64, _file: &File, entry: &JournalEntry) -> io::Result<()> {
        let path = self.journal_path(id);
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, serde_json::to_vec(entry).map_err(io::Error::other)?)?;
        fs::rename(&tmp, &path)
    }

    /// The data is in the bucket (or was deleted): forget the journal entry.
    pub fn clear_journal(&self, id: u64) {
        let _ = fs::remove_file(self.journal_path(id));
    }

    /// Deletes staging file `id` and its journal entry.
    pub fn remove(&self, id: u64) {
        self.clear_journal(id);
        let _ = fs::remove_file(self.data_path(id));
    }

    /// Journalled files left by an earlier mount, oldest first. Data files
    /// without a journal entry held nothing unsaved and are deleted.
    pub fn leftovers(&self) -> io::Result<Vec<(u64, JournalEntry)>> {
        let mut found = Vec::new();
        let mut data_ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some((id, ext)) = name.split_once('.') else {
                continue;
            };
            let Ok(id) = id.parse::<u64>() else { continue };
            match ext {
                "json" => match fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<JournalEntry>(&b).ok())
                {
                    Some(j) => found.push((id, j)),
                    None => tracing::error!(path = %path.display(),
                        "unreadable staging journal entry left in place for inspection"),
                },
                "data" => data_ids.push(id),
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        for id in data_ids {
            if !found.iter().any(|(j, _)| *j == id) {
                let _ = fs::remove_file(self.data_path(id));
            }
        }
        found.sort_by_key(|(id, _)| *id);
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn journal_survives_reopen_and_unjournalled_data_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let entry = JournalEntry {
            key: "p/a".into(),
            perm: 0o644,
            uid: 1,
            gid: 2,
            mtime: 3,
        };
        {
            let area = StagingArea::open(dir.path()).unwrap();
            let (id, mut f) = area.create().unwrap();
            f.write_all(b"unsaved").unwrap();
            area.journal(id, &f, &entry).unwrap();
            let (_clean, _) = area.create().unwrap();
            // A second mount of the same cache dir is refused while held.
            let err = StagingArea::open(dir.path()).err().unwrap();
            assert!(err.to_string().contains("in use by another mount"));
        }
        let area = StagingArea::open(dir.path()).unwrap();
        let left = area.leftovers().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1, entry);
        assert_eq!(fs::read(area.data_path(left[0].0)).unwrap(), b"unsaved");
        assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 2);
        // New ids never collide with leftovers.
        let (id, _) = area.create().unwrap();
        assert!(id > left[0].0);
    }
}
