//! Local copies of file data and the cache bound: a node's copy is taken
//! from the cache when it still equals the object (same ETag and size),
//! given back to the cache once clean and closed, fetched whole for small
//! objects at their first read, and every byte a copy grows by is charged
//! against the bound (clean copies evicted first; then the writer waits for
//! uploads, `FsOptions::dirty_wait` at most, and gets ENOSPC). A write the
//! cache directory's disk refuses is tried again as
//! [`ObjectFs::write_staged`] says.

use super::super::staging::CacheTag;
use super::super::store::{PutMeta, StoreError};
use super::super::transfer::{DownloadError, RetryPolicy, download_to_file, retry};
use super::super::{FsResult, Kind};
use super::cache::{CacheIndex, Cached};
use super::inodes::{InodeTable, Node, Staged};
use super::{ObjectFs, errno_of, errno_of_local};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

/// Objects up to this size are copied whole into the cache at their first
/// read (one GET); larger ones are read in ranges and not cached.
pub(super) const WHOLE_FILE_MAX: u64 = 8 * 1024 * 1024;

/// How long a write the disk refused waits for space on its way back
/// ([`ObjectFs::write_staged`]).
pub(super) const DISK_SPACE_WAIT: Duration = Duration::from_secs(2);
/// Clean copies evicted when the disk refuses a write: at least this much.
const DISK_EVICT_MIN: u64 = 1024 * 1024;
/// How long a reader's copy waits for fetches ahead in flight to land
/// before it evicts used copies to fit ([`ObjectFs::wait_for_speculation`]).
const SPECULATION_WAIT: Duration = Duration::from_millis(500);

impl ObjectFs {
    pub(super) fn cache(&self) -> MutexGuard<'_, CacheIndex> {
        self.inner.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn delete_copies(&self, gone: Vec<Cached>) {
        for c in gone {
            self.inner.staging.delete(c.id);
        }
    }

    /// Takes in the clean copies an earlier mount left, then trims them to
    /// the bound.
    pub(super) fn restore_cache(&self, found: Vec<(u64, CacheTag, u64)>) {
        let mut cache = self.cache();
        let mut gone = Vec::new();
        for (id, tag, size) in found {
            gone.extend(cache.restore(&tag.key, id, &tag.etag, size));
        }
        gone.extend(cache.evict_for(0));
        drop(cache);
        if !gone.is_empty() {
            tracing::debug!(evicted = gone.len(), "cache trimmed to its bound");
        }
        self.delete_copies(gone);
    }

    /// A server-side copy a process waits for (a rename, a metadata
    /// rewrite) of `src`, of size `size`, whose ETag the node knows as
    /// `etag`: the copy's ETag when it is of that version (the same bytes
    /// the mount may hold); when another client rewrote `src` since, it is
    /// copied all the same and the ETag is not given.
    pub(super) fn copy_known(
        &self,
        src: &str,
        size: u64,
        dst: &str,
        meta: Option<&PutMeta>,
        etag: Option<&str>,
    ) -> FsResult<Option<String>> {
        let store = &self.inner.store;
        if let Some(etag) = etag {
            let policy = RetryPolicy::INTERACTIVE;
            let copied = self.block_on(retry(policy, "copy", || {
                store.copy_if(src, Some(size), dst, meta, etag)
            }));
            match copied {
                Err(StoreError::PreconditionFailed { .. }) => {}
                other => return other.map_err(|e| errno_of(&e)),
            }
        }
        self.call("copy", || store.copy(src, Some(size), dst, meta))
            .map(|_| None)
    }

    /// This mount rewrote node `n`'s object at `key` with the same bytes
    /// (its metadata copied onto itself, a marker or link written) and the
    /// store gave it `etag`: the node takes it (S3 gives a copy of an
    /// object uploaded in parts another one), and so does a cached copy.
    pub(super) fn rewrote(&self, n: &mut Node, key: &str, etag: Option<String>) {
        let Some(new) = etag else { return };
        let size = n.size;
        if let Some(old) = n.etag.replace(new.clone())
            && n.kind == Kind::File
        {
            self.relabel_cached(key, &old, &new, size);
        }
    }

    /// This mount copied the object at `key` onto itself (its metadata
    /// rewritten) and the store gave the copy ETag `to`: a cached copy of
    /// it at `from` holds the same bytes and is labelled `to` (else the
    /// next open would fetch them again).
    fn relabel_cached(&self, key: &str, from: &str, to: &str, size: u64) {
        if from != to {
            self.move_cached((key, from), (key, to), size);
        }
    }

    /// A server-side copy of object `src` at version `was` landed at `dst`
    /// as version `now` (a rename, a metadata rewrite): a cached copy of
    /// `src` at `was` (`size` bytes) holds the copy's bytes and becomes the
    /// cached copy of `dst` (else the next open would fetch them again).
    pub(super) fn move_cached(
        &self,
        (src, was): (&str, &str),
        (dst, now): (&str, &str),
        size: u64,
    ) {
        let c = match self.cache().take(src, was, size) {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(stale) => return self.delete_copies(vec![stale]),
        };
        let tag = CacheTag {
            key: dst.to_string(),
            etag: now.to_string(),
        };
        match self.inner.staging.reopen(c.id) {
            Ok(file) => {
                self.inner.staging.tag_clean(&file, &tag);
                let replaced = self.cache().insert(dst, c.id, now, c.size);
                self.delete_copies(replaced.into_iter().collect());
            }
            Err(_) => {
                self.cache().credit(c.size);
                self.inner.staging.delete(c.id);
            }
        }
    }

    /// A directory rename's copy of object `src`, listed with `size` and
    /// `etag`, to `dst`: of that version when the ETag is known, and then
    /// its ETags are returned (the version copied, the copy's: S3 gives a
    /// copy of an object uploaded in parts a new one); another client's
    /// rewrite since is copied all the same, without them.
    pub(super) async fn copy_listed(
        &self,
        (src, size, etag): (&str, Option<u64>, Option<&str>),
        dst: &str,
        policy: RetryPolicy,
    ) -> Result<Option<(String, String)>, StoreError> {
        let store = &self.inner.store;
        if let Some(etag) = etag {
            let copy = || store.copy_if(src, size, dst, None, etag);
            match retry(policy, "copy", copy).await {
                Ok(now) => return Ok(now.map(|now| (etag.to_string(), now))),
                Err(StoreError::PreconditionFailed { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        retry(policy, "copy", || store.copy(src, size, dst, None))
            .await
            .map(|_| None)
    }

    /// Object `src` (`size` bytes) was copied to `dst` by a rename, as
    /// version `etags.1` of version `etags.0` when known: its cached copy
    /// goes with it, or away.
    pub(super) fn renamed_cached(
        &self,
        src: &str,
        dst: &str,
        size: u64,
        etags: Option<(&str, &str)>,
    ) {
        match etags {
            Some((was, now)) => self.move_cached((src, was), (dst, now), size),
            None => self.forget_cached(src),
        }
    }

    /// Gives node `ino` (at `key`, without a local copy) the cached copy of
    /// its object, when the cache has one of the node's ETag and size.
    pub(super) fn attach_cached(&self, st: &mut InodeTable, ino: u64, key: &str) -> bool {
        let Some(n) = st.nodes.get_mut(&ino) else {
            return false;
        };
        let Some(etag) = n.etag.clone() else {
            return false;
        };
        if n.staged.is_some() {
            return true;
        }
        let taken = self.cache().take(key, &etag, n.size);
        let c = match taken {
            Ok(Some(c)) => c,
            Ok(None) => return false,
            Err(stale) => {
                self.delete_copies(vec![stale]);
                return false;
            }
        };
        match self.inner.staging.reopen(c.id) {
            Ok(file) => {
                let mut s = Staged::new(c.id, Arc::new(file));
                s.charged = c.size;
                // An earlier open may have lent it to the kernel, whose
                // mapping can outlive that open (the cache does not keep
                // the flag): never recycled.
                s.lent = true;
                n.stage(s);
                true
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "a cached copy could not be opened; fetching the object again");
                self.cache().credit(c.size);
                self.inner.staging.delete(c.id);
                false
            }
        }
    }

    /// A node's copy is clean and closed: it goes to the cache as a copy of
    /// the object it equals, or away when that is not known.
    pub(super) fn retire_copy(&self, st: &mut InodeTable, ino: u64) {
        let key = self.key_of(st, ino);
        let Some(n) = st.nodes.get_mut(&ino) else {
            return;
        };
        let Some(s) = n.staged.as_ref() else { return };
        if s.dirty() || s.uploading || n.open_handles > 0 {
            return;
        }
        let etag = match (&n.etag, n.unlinked) {
            (Some(e), false) => e.clone(),
            _ => return self.discard_staged(n),
        };
        let s = n.staged.take().expect("checked above");
        self.keep_clean(CacheTag { key, etag }, s.id, &s.file, s.charged, false);
    }

    /// Keeps copy `id` (in `file`, `size` bytes already counted) in the
    /// cache as the clean copy of `tag`, tagged so a later mount finds it
    /// too; `cold` for a copy nobody has opened yet (fetched ahead), which
    /// goes first when space is needed. Trims the cache to its bound.
    pub(super) fn keep_clean(&self, tag: CacheTag, id: u64, file: &File, size: u64, cold: bool) {
        self.inner.staging.tag_clean(file, &tag);
        let mut cache = self.cache();
        let replaced = match cold {
            true => cache.insert_cold(&tag.key, id, &tag.etag, size),
            false => cache.insert(&tag.key, id, &tag.etag, size),
        };
        let mut gone: Vec<Cached> = replaced.into_iter().collect();
        gone.extend(cache.evict_for(0));
        drop(cache);
        self.delete_copies(gone);
    }

    /// Forgets the cached copies of `key` (its object is being replaced or
    /// deleted by this mount), or of every key below it when it ends in `/`.
    pub(super) fn forget_cached(&self, key: &str) {
        let gone = if key.ends_with('/') {
            self.cache().remove_prefix(key)
        } else {
            self.cache().remove(key).into_iter().collect()
        };
        self.delete_copies(gone);
    }

    /// Counts `bytes` more of local copies against the bound: clean copies
    /// are evicted to make room; failing that, and while uploads in flight
    /// or queued will free space, the caller waits (`dirty_wait` at
    /// most); then ENOSPC. `st` is released while waiting.
    pub(super) fn reserve<'a>(
        &'a self,
        mut st: MutexGuard<'a, InodeTable>,
        bytes: u64,
        wait: bool,
    ) -> (MutexGuard<'a, InodeTable>, FsResult<()>) {
        if bytes == 0 {
            return (st, Ok(()));
        }
        let deadline = Instant::now() + self.opts().dirty_wait;
        loop {
            let mut cache = self.cache();
            let gone = cache.evict_for(bytes);
            if cache.fits(bytes) {
                cache.charge(bytes);
                drop(cache);
                self.delete_copies(gone);
                return (st, Ok(()));
            }
            drop(cache);
            self.delete_copies(gone);
            let left = deadline.saturating_duration_since(Instant::now());
            if !wait || left.is_zero() || !uploads_will_free_space(&st) {
                if wait {
                    tracing::error!(
                        bound = self.opts().cache_size,
                        "the cache is full of data not yet uploaded; a write gets ENOSPC (raise cacheSize or let uploads catch up)"
                    );
                }
                return (st, Err(libc::ENOSPC));
            }
            st = self
                .inner
                .changed
                .wait_timeout(st, left.min(std::time::Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Writes `data` at `offset` of node `ino`'s staged copy. When the
    /// disk refuses (full, or over quota) and the cache holds clean copies,
    /// the least recently used of them go (at least the bytes refused, and
    /// [`DISK_EVICT_MIN`]). Space also comes back a moment after it is
    /// given up: files given up are deleted by the data pool's thread, and
    /// the release of a file removed while open may still be on its way
    /// from the kernel (FUSE sends it after `close` has returned, and its
    /// request threads take requests in parallel). While any of that is
    /// pending the write is tried again, [`DISK_SPACE_WAIT`] at most; then
    /// the writer gets the disk's error.
    pub(super) fn write_staged(
        &self,
        ino: u64,
        file: &File,
        data: &[u8],
        offset: u64,
    ) -> FsResult<()> {
        let deadline = Instant::now() + DISK_SPACE_WAIT;
        let mut evicted = false;
        loop {
            let Err(e) = file.write_all_at(data, offset) else {
                return Ok(());
            };
            if !out_of_space(&e) || Instant::now() >= deadline {
                return Err(self.local_failure(&e));
            }
            if !evicted {
                evicted = true;
                self.evict_for_disk(data.len() as u64);
            }
            if !self.disk_space_coming(ino) {
                // One last try: space may have come back since.
                return file
                    .write_all_at(data, offset)
                    .map_err(|e| self.local_failure(&e));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The disk refused `bytes` (full, or over quota): pauses copies that
    /// only spare a GET, and evicts clean copies, least recently used first,
    /// at least `bytes` and [`DISK_EVICT_MIN`] of them (their files go on
    /// the pool's thread: see [`Self::disk_space_coming`]).
    fn evict_for_disk(&self, bytes: u64) {
        let mut cache = self.cache();
        cache.disk_refused(Instant::now());
        let gone = cache.evict_bytes(bytes.max(DISK_EVICT_MIN));
        drop(cache);
        self.delete_copies(gone);
    }

    /// A copy of `bytes` for node `writer` found the disk full: makes room
    /// as a refused write does ([`Self::write_staged`]) and waits while it
    /// comes back. Whether the copy is worth trying again.
    pub(super) fn room_for_copy(&self, writer: u64, bytes: u64) -> bool {
        self.evict_for_disk(bytes);
        let deadline = Instant::now() + DISK_SPACE_WAIT;
        let mut coming = false;
        while Instant::now() < deadline && self.disk_space_coming(writer) {
            coming = true;
            std::thread::sleep(Duration::from_millis(10));
        }
        coming
    }

    /// Disk space is on its way back to a writer of node `writer`: files
    /// given up not yet deleted, or the copy of another file removed while
    /// open within [`DISK_SPACE_WAIT`], which goes at its last release.
    /// (Nodes first: a release that hands its copy to the pool meanwhile
    /// is then seen in the pool.)
    fn disk_space_coming(&self, writer: u64) -> bool {
        let now = Instant::now();
        let removed = self.lock().nodes.iter().any(|(&i, n)| {
            i != writer
                && n.open_handles > 0
                && n.staged.is_some()
                && n.unlinked_at
                    .is_some_and(|t| now.saturating_duration_since(t) < DISK_SPACE_WAIT)
        });
        removed || self.inner.staging.freeing()
    }

    /// A local I/O error as the caller's errno; one that says the disk is
    /// full also pauses copies made only to spare a GET.
    pub(super) fn local_failure(&self, e: &std::io::Error) -> super::Errno {
        if out_of_space(e) {
            self.cache().disk_refused(Instant::now());
        }
        errno_of_local(e)
    }

    /// A reader's copy of `bytes` does not fit while fetches ahead are in
    /// flight: they hold their share of the bound but cannot be evicted
    /// until they land (as copies nobody opened, evicted first). Waits for
    /// them ([`SPECULATION_WAIT`] at most) rather than let the reader's
    /// copy evict a copy that was used.
    fn wait_for_speculation<'a>(
        &'a self,
        st: MutexGuard<'a, InodeTable>,
        bytes: u64,
    ) -> MutexGuard<'a, InodeTable> {
        self.wait_while_for(st, SPECULATION_WAIT, |st| {
            st.data_ahead.values().any(|started| *started) && !self.cache().fits(bytes)
        })
    }

    /// Grows node `ino`'s charged size to `size` (see [`Self::reserve`]);
    /// a smaller size gives the difference back.
    pub(super) fn charge_to<'a>(
        &'a self,
        st: MutexGuard<'a, InodeTable>,
        ino: u64,
        size: u64,
        wait: bool,
    ) -> (MutexGuard<'a, InodeTable>, FsResult<()>) {
        let charged = match st.nodes.get(&ino).and_then(|n| n.staged.as_ref()) {
            Some(s) => s.charged,
            None => return (st, Ok(())),
        };
        if size <= charged {
            self.cache().credit(charged - size);
            let mut st = st;
            if let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut()) {
                s.charged = size;
            }
            return (st, Ok(()));
        }
        let (mut st, r) = self.reserve(st, size - charged, wait);
        if r.is_ok() {
            match st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut()) {
                Some(s) => s.charged += size - charged,
                // The copy went away while we waited: give the bytes back.
                None => self.cache().credit(size - charged),
            }
        }
        (st, r)
    }

    /// First read of a small object without a local copy: fetch it whole
    /// into the cache and attach it, so later reads (and later opens, while
    /// the object is unchanged) are local. `Ok(false)` when it is not to be
    /// cached (no ETag known, no room): the caller reads the range. A failed
    /// GET is the read's error (it was retried already).
    pub(super) fn fetch_whole(&self, ino: u64, key: &str) -> FsResult<bool> {
        let st = self.lock();
        let n = st.node(ino)?;
        let size = n.size;
        if n.staged.is_some() || n.etag.is_none() || !n.remote || size > WHOLE_FILE_MAX {
            return Ok(n.staged.is_some());
        }
        if !self.cache().copies_welcome(Instant::now()) {
            return Ok(false);
        }
        let st = self.wait_for_speculation(st, size);
        let (st, room) = self.reserve(st, size, false);
        drop(st);
        if room.is_err() {
            return Ok(false);
        }
        let Ok((id, file)) = self.inner.staging.create() else {
            self.cache().credit(size);
            return Ok(false);
        };
        let file = Arc::new(file);
        let fetched = self.block_on(download_to_file(
            &self.inner.store,
            RetryPolicy::INTERACTIVE,
            key,
            file.clone(),
            size,
        ));
        let give_back = |file| {
            self.cache().credit(size);
            self.inner.staging.discard(id, file, true);
        };
        let label = match fetched {
            Ok(label) => label,
            // No room on the cache directory's disk: read in ranges.
            Err(DownloadError::Local(e)) => {
                tracing::debug!(key, error = %e, "no local copy");
                self.local_failure(&e);
                give_back(file);
                return Ok(false);
            }
            Err(DownloadError::Store(e)) => {
                give_back(file);
                return Err(errno_of(&e));
            }
            // Rewritten elsewhere since the mount last looked: no copy of
            // a size the node does not describe. This read goes by ranges;
            // the next lookup or open revalidates.
            Err(DownloadError::Changed) => {
                give_back(file);
                if let Some(n) = self.lock().nodes.get_mut(&ino) {
                    self.expire(n);
                }
                return Ok(false);
            }
        };
        let mut st = self.lock();
        let usable = label.is_some()
            && st
                .nodes
                .get(&ino)
                .is_some_and(|n| n.staged.is_none() && n.size == size && !n.unlinked);
        if !usable {
            drop(st);
            give_back(file);
            return Ok(false);
        }
        let n = st.nodes.get_mut(&ino).expect("checked above");
        // The copy is of the object the GET saw, which may be newer than
        // what the node knew: label it with what was read.
        n.note_etag(label);
        let mut s = Staged::new(id, file);
        s.charged = size;
        n.stage(s);
        Ok(true)
    }
}

/// The disk (or the quota) has no room for the bytes.
pub(super) fn out_of_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Whether waiting can free cache space: some dirty copy is closed (its
/// upload will make it clean and evictable) or being uploaded.
fn uploads_will_free_space(st: &InodeTable) -> bool {
    st.nodes.values().any(|n: &Node| {
        n.staged
            .as_ref()
            .is_some_and(|s| s.uploading || (s.dirty() && n.open_handles == 0 && !n.unlinked))
    })
}
