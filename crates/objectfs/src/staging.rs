//! Local staging files and their journal, in the mount's cache directory.
//!
//! Every file being written lives in `staging/N.data`. While it holds data
//! the bucket does not have yet, its journal entry records where it belongs
//! (key and attributes): an extended attribute `user.osv.journal` on the
//! data file itself, or, where the file system has no user xattrs, a
//! sidecar `staging/N.json`. The journal is what makes "never lose a byte"
//! survive a crash: the next mount with the same cache directory uploads
//! every journalled file before anything else touches it. A lock file keeps
//! two mounts from sharing one cache directory.
//!
//! Once its data is in the bucket, a file may stay as a clean copy of the
//! object (the cache): its extended attribute `user.osv.cache` then names
//! the key and the ETag it equals, so a later mount finds it again. Where
//! the file system has no user xattrs, clean copies last one mount.
//!
//! Data files come from a pool ([`crate::datapool`]): recycled (truncated
//! and kept open) rather than deleted, and made ahead by a background
//! thread: creating thousands of small files, ext4 spends more time
//! allocating inodes for new staging files than everything else together,
//! and an xattr journal costs no inode at all.

use crate::datapool::DataPool;
use crate::layout::{Kind, Posix};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// What the bucket had at `key` when this mount began changing the
    /// file; `None` when not known (journals of earlier versions, a file
    /// renamed while dirty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Base>,
}

/// An object as a mount last saw it at a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// No object.
    Absent,
    /// The object with this ETag.
    Etag(String),
}

impl JournalEntry {
    /// An entry for `key` with `posix`'s attributes, its base not known.
    pub fn new(key: &str, posix: &Posix) -> Self {
        let (perm, mtime) = JournalEntry::changing(posix);
        JournalEntry {
            base: None,
            key: key.to_string(),
            perm,
            uid: posix.uid,
            gid: posix.gid,
            mtime,
        }
    }

    /// What an entry holds of the attributes a write changes by itself
    /// (the mtime, in seconds; the mode, set-ID bits cleared): an entry
    /// whose differ from the node's is out of date.
    pub fn changing(posix: &Posix) -> (u32, u64) {
        let mtime = posix
            .mtime
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        (posix.perm, mtime)
    }

    pub fn posix(&self) -> Posix {
        Posix {
            kind: Kind::File,
            perm: self.perm,
            uid: self.uid,
            gid: self.gid,
            mtime: UNIX_EPOCH + Duration::from_secs(self.mtime),
            // Not journalled: the upload after a crash is a change now.
            ctime: SystemTime::now(),
        }
    }
}

/// Which object a clean data file is a copy of, as written to its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheTag {
    pub key: String,
    pub etag: String,
}

/// What an earlier mount left in the staging directory.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Data not in the bucket yet, oldest first.
    pub journalled: Vec<(u64, JournalEntry)>,
    /// Clean copies: id, tag and size.
    pub cached: Vec<(u64, CacheTag, u64)>,
}

/// The extended attribute holding a data file's journal entry.
const JOURNAL_XATTR: &std::ffi::CStr = c"user.osv.journal";
/// The extended attribute naming the object a clean data file copies.
const CACHE_XATTR: &std::ffi::CStr = c"user.osv.cache";

pub struct StagingArea {
    dir: PathBuf,
    /// False once the file system refused a user xattr: sidecar files then.
    xattrs: AtomicBool,
    pool: DataPool,
    _lock: File,
}

/// Removes `file`'s cache tag, if any.
fn drop_tag(file: &File) {
    // SAFETY: the descriptor is open for as long as `file` is borrowed and
    // the name is a NUL-terminated constant.
    unsafe { libc::fremovexattr(file.as_raw_fd(), CACHE_XATTR.as_ptr()) };
}

fn cvt(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn clone_err(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

fn xattr_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM))
}

fn read_xattr_journal(file: &File) -> io::Result<Option<JournalEntry>> {
    read_xattr(file, JOURNAL_XATTR)
}

fn read_xattr<T: serde::de::DeserializeOwned>(
    file: &File,
    name: &std::ffi::CStr,
) -> io::Result<Option<T>> {
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: the descriptor is open for as long as `file` is borrowed,
    // the name is a NUL-terminated constant, and the kernel writes at most
    // `buf.len()` bytes into `buf`, which lives across the call.
    let n = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(n as usize);
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(io::Error::other)
}

/// What the cache directory `cache_dir` holds that the bucket does not
/// have yet: journalled data files and their bytes, as a mount of it would
/// find them, but read only (no lock taken, nothing deleted), so a plugin
/// can tell whether the directory may go. An entry that cannot be read
/// counts as pending: nothing unproven is ever called uploaded.
pub fn journalled(cache_dir: &Path) -> io::Result<(usize, u64)> {
    let dir = cache_dir.join("staging");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let mut sidecars = std::collections::BTreeSet::new();
    let mut data = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let Some((id, ext)) = name.to_str().and_then(|n| n.split_once('.')) else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        match ext {
            "json" => {
                sidecars.insert(id);
            }
            "data" => data.push(id),
            _ => {}
        }
    }
    let (mut files, mut bytes) = (0, 0);
    for id in data {
        let path = dir.join(format!("{id}.data"));
        let Ok(file) = File::open(&path) else {
            // Gone meanwhile (recycled or deleted): nothing to upload.
            continue;
        };
        let pending = sidecars.contains(&id) || !matches!(read_xattr_journal(&file), Ok(None));
        if pending {
            files += 1;
            bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    Ok((files, bytes))
}

/// Takes the lock a mount process holds on its cache directory for its
/// whole life (held: someone uses the directory; taken: none can start in
/// it while the returned file is open). `None` when another holds it.
pub fn lock_cache_dir(cache_dir: &Path) -> io::Result<Option<File>> {
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache_dir.join("lock"))?;
    // SAFETY: flock takes no pointers; the descriptor is open, owned by
    // `lock`, which outlives the call.
    let taken = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    Ok(taken.then_some(lock))
}

impl StagingArea {
    pub fn open(cache_dir: &Path) -> io::Result<StagingArea> {
        let dir = cache_dir.join("staging");
        fs::create_dir_all(&dir)?;
        let Some(lock) = lock_cache_dir(cache_dir)? else {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "cache directory {} is in use by another mount; give each mount its own --cache-dir",
                    cache_dir.display()
                ),
            ));
        };
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
            pool: DataPool::new(dir.clone(), "data", max + 1),
            dir,
            xattrs: AtomicBool::new(true),
            _lock: lock,
        })
    }

    pub fn data_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.data"))
    }

    fn journal_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// An empty, unjournalled and untagged data file, from the pool.
    pub fn create(&self) -> io::Result<(u64, File)> {
        self.pool.take()
    }

    /// Records (or updates) where `id`'s data belongs.
    pub fn journal(&self, id: u64, file: &File, entry: &JournalEntry) -> io::Result<()> {
        let json = serde_json::to_vec(entry).map_err(io::Error::other)?;
        if self.xattrs.load(Ordering::Relaxed) {
            // SAFETY: the descriptor is open for as long as `file` is
            // borrowed, the name is a NUL-terminated constant, and the
            // kernel reads `json.len()` bytes from `json`, alive across the
            // call.
            let rc = unsafe {
                libc::fsetxattr(
                    file.as_raw_fd(),
                    JOURNAL_XATTR.as_ptr(),
                    json.as_ptr().cast(),
                    json.len(),
                    0,
                )
            };
            match cvt(rc) {
                Ok(()) => return Ok(()),
                Err(e) if xattr_unsupported(&e) => {
                    tracing::info!(dir = %self.dir.display(),
                        "the cache directory has no user xattrs; journalling in sidecar files");
                    self.xattrs.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        let path = self.journal_path(id);
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, json)?;
        fs::rename(&tmp, &path)
    }

    /// `id`'s data is in the bucket: forget where it belongs.
    pub fn clear_journal(&self, id: u64, file: &File) {
        if self.xattrs.load(Ordering::Relaxed) {
            // SAFETY: the descriptor is open for as long as `file` is
            // borrowed and the name is a NUL-terminated constant.
            unsafe { libc::fremovexattr(file.as_raw_fd(), JOURNAL_XATTR.as_ptr()) };
        } else {
            let _ = fs::remove_file(self.journal_path(id));
        }
    }

    /// Marks `file` a clean copy of `tag` so a later mount can use it.
    /// Best effort: without the tag the copy only lasts this mount.
    pub fn tag_clean(&self, file: &File, tag: &CacheTag) {
        if !self.xattrs.load(Ordering::Relaxed) {
            return;
        }
        let Ok(json) = serde_json::to_vec(tag) else {
            return;
        };
        // SAFETY: the descriptor is open for as long as `file` is borrowed,
        // the name is a NUL-terminated constant, and the kernel reads
        // `json.len()` bytes from `json`, alive across the call.
        unsafe {
            libc::fsetxattr(
                file.as_raw_fd(),
                CACHE_XATTR.as_ptr(),
                json.as_ptr().cast(),
                json.len(),
                0,
            )
        };
    }

    /// `file` is about to change: it no longer copies the object its tag
    /// names.
    pub fn untag_clean(&self, file: &File) {
        drop_tag(file);
    }

    /// Opens a kept data file again.
    pub fn reopen(&self, id: u64) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.data_path(id))
    }

    /// Deletes a clean copy nobody holds (soon, off the caller's path:
    /// a crash before then leaves a tagged copy, which the next mount
    /// takes for a copy of the object it names, or drops).
    pub fn delete(&self, id: u64) {
        self.pool.delete_later(id);
    }

    /// Files given up are still being deleted or emptied in the background
    /// (their disk space is on its way back).
    pub fn freeing(&self) -> bool {
        !self.pool.idle()
    }

    /// Done with `id`: recycled when `recycle` allows it and nobody else
    /// holds the file (an upload still reading it keeps it), deleted
    /// otherwise. A file the kernel was given for passthrough is never
    /// recycled: a mapping of it may outlive every open file, and must not
    /// see another file's data (deleted, its inode lives on for the map).
    ///
    /// The journal entry goes now: a crash must never find the data of a
    /// file given up journalled for upload (nor an emptied file). The rest
    /// (its cache tag and length, or the file itself) is left to the pool's
    /// thread: a crash before then leaves at most a tagged clean copy,
    /// which equals the object its tag names.
    pub fn discard(&self, id: u64, file: Arc<File>, recycle: bool) {
        self.clear_journal(id, &file);
        if recycle && let Ok(file) = Arc::try_unwrap(file) {
            // Pool files carry no tag.
            self.pool.recycle_later(id, file, drop_tag);
            return;
        }
        self.pool.delete_later(id);
    }

    /// What an earlier mount left: journal entries, oldest first, and
    /// tagged clean copies. Other data files held nothing worth keeping and
    /// are deleted.
    pub fn leftovers(&self) -> io::Result<Leftovers> {
        let mut found = Vec::new();
        let mut cached = Vec::new();
        let mut sidecars = Vec::new();
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
                    Some(j) => sidecars.push((id, j)),
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
            let path = self.data_path(id);
            // The sidecar wins: it is only written where xattrs failed.
            if let Some(i) = sidecars.iter().position(|(j, _)| *j == id) {
                found.push(sidecars.swap_remove(i));
                continue;
            }
            let file = File::open(&path);
            match file
                .as_ref()
                .map_err(clone_err)
                .and_then(read_xattr_journal)
            {
                Ok(Some(j)) => found.push((id, j)),
                Ok(None) => {
                    let clean = file.ok().and_then(|f| {
                        let tag = read_xattr::<CacheTag>(&f, CACHE_XATTR).ok()??;
                        Some((tag, f.metadata().ok()?.len()))
                    });
                    match clean {
                        Some((tag, size)) => cached.push((id, tag, size)),
                        None => {
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => tracing::error!(path = %path.display(), error = %e,
                    "unreadable staging journal entry left in place for inspection"),
            }
        }
        // A sidecar without data: nothing to upload.
        for (id, _) in sidecars {
            let _ = fs::remove_file(self.journal_path(id));
        }
        found.sort_by_key(|(id, _)| *id);
        cached.sort_by_key(|(id, _, _)| *id);
        Ok(Leftovers {
            journalled: found,
            cached,
        })
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
            base: Some(Base::Etag("\"e1\"".into())),
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
        let left = area.leftovers().unwrap().journalled;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1, entry);
        assert_eq!(fs::read(area.data_path(left[0].0)).unwrap(), b"unsaved");
        // Only the journalled data file is left; the journal is its xattr.
        assert_eq!(fs::read_dir(dir.path().join("staging")).unwrap().count(), 1);
        // New ids never collide with leftovers.
        let (id, _) = area.create().unwrap();
        assert!(id > left[0].0);
    }

    fn entry(key: &str) -> JournalEntry {
        JournalEntry {
            key: key.into(),
            perm: 0o600,
            uid: 0,
            gid: 0,
            mtime: 9,
            base: None,
        }
    }

    #[test]
    fn discarded_files_are_recycled_empty_and_unjournalled() {
        let dir = tempfile::tempdir().unwrap();
        let area = StagingArea::open(dir.path()).unwrap();
        let (id, mut f) = area.create().unwrap();
        f.write_all(b"old bytes").unwrap();
        area.journal(id, &f, &entry("k")).unwrap();
        area.discard(id, Arc::new(f), true);
        crate::datapool::tests::wait_for(|| area.pool.idle());
        let (again, f) = area.create().unwrap();
        assert_eq!(again, id, "the pooled file is handed out again");
        assert_eq!(f.metadata().unwrap().len(), 0);
        assert_eq!(read_xattr_journal(&f).unwrap(), None);
        // A file still held elsewhere (an upload reading it) is deleted, not reused.
        let shared = Arc::new(f);
        let _reader = shared.clone();
        area.discard(again, shared, true);
        crate::datapool::tests::wait_for(|| area.pool.idle());
        assert!(!area.data_path(again).exists());
        let (fresh, mut f) = area.create().unwrap();
        assert_ne!(fresh, again);
        // A file lent to the kernel (passthrough) is deleted, never reused:
        // a mapping of it keeps its bytes.
        f.write_all(b"mapped").unwrap();
        area.discard(fresh, Arc::new(f), false);
        crate::datapool::tests::wait_for(|| area.pool.idle());
        assert!(!area.data_path(fresh).exists());
        let (next, f) = area.create().unwrap();
        assert_ne!(next, fresh);
        assert_eq!(f.metadata().unwrap().len(), 0);
    }

    #[test]
    fn tagged_clean_copies_are_found_again_and_untagged_ones_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let tag = CacheTag {
            key: "p/k".into(),
            etag: "\"e1\"".into(),
        };
        let (kept, dropped) = {
            let area = StagingArea::open(dir.path()).unwrap();
            let (id, mut f) = area.create().unwrap();
            f.write_all(b"clean copy").unwrap();
            area.tag_clean(&f, &tag);
            let (id2, mut f2) = area.create().unwrap();
            f2.write_all(b"tagged, then changed").unwrap();
            area.tag_clean(&f2, &tag);
            area.untag_clean(&f2);
            (id, id2)
        };
        let area = StagingArea::open(dir.path()).unwrap();
        let left = area.leftovers().unwrap();
        assert!(left.journalled.is_empty());
        assert_eq!(left.cached, vec![(kept, tag.clone(), 10)]);
        assert!(!area.data_path(dropped).exists());
        assert_eq!(
            fs::read(area.reopen(kept).map(|_| area.data_path(kept)).unwrap()).unwrap(),
            b"clean copy"
        );
        // Deleted off the caller's path, soon.
        area.delete(kept);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while area.data_path(kept).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(!area.data_path(kept).exists());
        // And at the latest when the area closes.
        let (id3, f3) = area.create().unwrap();
        area.tag_clean(&f3, &tag);
        drop(f3);
        area.delete(id3);
        let path = area.data_path(id3);
        drop(area);
        assert!(!path.exists());
    }

    /// A file carries its cache tag and its journal entry at once for a
    /// moment (tagged before the entry goes after an upload; journalled
    /// before the tag goes when it changes): a crash then finds it
    /// journalled, never a clean copy.
    #[test]
    fn a_file_both_tagged_and_journalled_is_journalled() {
        let dir = tempfile::tempdir().unwrap();
        let entry = entry("p/a");
        let id = {
            let area = StagingArea::open(dir.path()).unwrap();
            let (id, mut f) = area.create().unwrap();
            f.write_all(b"changed").unwrap();
            area.tag_clean(
                &f,
                &CacheTag {
                    key: "p/a".into(),
                    etag: "\"e1\"".into(),
                },
            );
            area.journal(id, &f, &entry).unwrap();
            id
        };
        let area = StagingArea::open(dir.path()).unwrap();
        let left = area.leftovers().unwrap();
        assert_eq!(left.journalled, vec![(id, entry)]);
        assert!(left.cached.is_empty());
    }

    #[test]
    fn journalled_counts_what_a_mount_would_upload_without_touching_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(journalled(dir.path()).unwrap(), (0, 0), "no staging yet");
        let area = StagingArea::open(dir.path()).unwrap();
        let (id, mut f) = area.create().unwrap();
        io::Write::write_all(&mut f, b"12345").unwrap();
        area.journal(id, &f, &entry("a")).unwrap();
        let (clean, mut g) = area.create().unwrap();
        io::Write::write_all(&mut g, b"clean copy").unwrap();
        area.tag_clean(
            &g,
            &CacheTag {
                key: "b".into(),
                etag: "e".into(),
            },
        );
        // Read while the area is open (its lock held): counted, unchanged.
        assert_eq!(journalled(dir.path()).unwrap(), (1, 5));
        area.clear_journal(id, &f);
        assert_eq!(journalled(dir.path()).unwrap(), (0, 0));
        assert!(area.data_path(clean).exists() && area.data_path(id).exists());
        // A sidecar journal (no xattrs) counts the same.
        std::fs::write(area.journal_path(id), b"{}").unwrap();
        assert_eq!(journalled(dir.path()).unwrap(), (1, 5));
    }

    #[test]
    fn sidecar_journal_where_xattrs_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let area = StagingArea::open(dir.path()).unwrap();
            area.xattrs.store(false, Ordering::Relaxed);
            let (id, mut f) = area.create().unwrap();
            f.write_all(b"kept").unwrap();
            area.journal(id, &f, &entry("a")).unwrap();
            assert!(area.journal_path(id).exists());
            let (id2, f2) = area.create().unwrap();
            area.journal(id2, &f2, &entry("b")).unwrap();
            area.clear_journal(id2, &f2);
            assert!(!area.journal_path(id2).exists());
        }
        let area = StagingArea::open(dir.path()).unwrap();
        let left = area.leftovers().unwrap().journalled;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1, entry("a"));
        assert_eq!(fs::read(area.data_path(left[0].0)).unwrap(), b"kept");
    }
}
