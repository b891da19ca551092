//! The upload queue: how staged data reaches the store. It owns the
//! background uploader (its workers, the upload delay and unmount's hurry),
//! the upload of one file (`upload_now`, shared by fsync, sync close and the
//! workers), the recovery of data an earlier mount journalled, and the
//! flush at unmount.

use super::super::layout;
use super::super::staging::{Base, CacheTag, JournalEntry};
use super::super::store::{StoreError, StoreResult, WriteCondition};
use super::super::transfer::{RetryPolicy, retry, upload_file_if};
use super::super::{FsResult, UploadMode};
use super::copies::DISK_SPACE_WAIT;
use super::inodes::{InodeTable, Staged};
use super::ops::{DRAIN_WAIT, JOURNAL_FULL};
use super::streaming;
use super::{ObjectFs, errno_of};
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};

/// Background uploads retry transient failures for a long time: the data
/// is safe on disk and the store may come back (a restart, a network blip).
const BACKGROUND: RetryPolicy = RetryPolicy {
    attempts: 12,
    first_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(10),
};
/// Between rounds of background retries after a round failed.
const BACKGROUND_ROUND_PAUSE: Duration = Duration::from_secs(2);
/// Parallel background uploads.
const UPLOAD_WORKERS: usize = 8;

/// The queue of inodes waiting for a background upload.
pub(super) struct UploadQueue {
    tx: mpsc::UnboundedSender<u64>,
    /// Set by unmount: queued uploads skip what is left of their delay.
    hurry: watch::Sender<bool>,
}

impl UploadQueue {
    /// The queue, and the receiving end the uploader consumes.
    pub(super) fn new() -> (UploadQueue, mpsc::UnboundedReceiver<u64>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = UploadQueue {
            tx,
            hurry: watch::Sender::new(false),
        };
        (queue, rx)
    }

    fn send(&self, ino: u64) {
        let _ = self.tx.send(ino);
    }

    /// Uploads still waiting out their delay start now.
    fn hurry(&self) {
        self.hurry.send_replace(true);
    }

    /// Watches for unmount's hurry.
    pub(super) fn hurry_signal(&self) -> watch::Receiver<bool> {
        self.hurry.subscribe()
    }

    /// Whether unmount has asked for every upload now.
    fn hurried(&self) -> bool {
        *self.hurry.borrow()
    }
}

/// Where recovered data goes.
enum Target {
    /// Its own key, written under the condition when there is one.
    Key(Option<WriteCondition>),
    /// A conflict name beside its key: another client changed the object.
    Beside,
}

/// Moves recovered data to a conflict name beside its key
/// (`layout::conflict_key`), so an object another client wrote after the
/// crashed mount last saw it is never overwritten, with one log line
/// naming both keys and what found the conflict.
fn beside(entry: &mut JournalEntry, found_by: &str) {
    let kept_as = layout::conflict_key(&entry.key, std::time::SystemTime::now());
    tracing::warn!(key = %entry.key, kept_as = %kept_as, found_by,
        "another client changed this object after the crashed mount last saw it; its object stays, and the data staged here is uploaded beside it");
    entry.key = kept_as;
}

impl ObjectFs {
    /// Uploads files journalled by an earlier mount of this cache directory
    /// before serving anything, so no one sees the bucket without them.
    pub(super) fn recover(&self) -> anyhow::Result<()> {
        let left = self.inner.staging.leftovers()?;
        self.restore_cache(left.cached);
        let leftovers = left.journalled;
        if leftovers.is_empty() {
            return Ok(());
        }
        tracing::info!(
            files = leftovers.len(),
            "uploading data staged by an earlier mount"
        );
        for (id, mut entry) in leftovers {
            let path = self.inner.staging.data_path(id);
            let file = Arc::new(File::open(&path)?);
            let size = file.metadata()?.len();
            let meta = layout::encode(&entry.posix());
            let store = &self.inner.store;
            let upload = |key: &str, condition: Option<&WriteCondition>| {
                self.block_on(upload_file_if(
                    store,
                    BACKGROUND,
                    key,
                    file.clone(),
                    size,
                    &meta,
                    condition,
                ))
            };
            let target = self.recovery_target(&entry).map_err(|e| {
                anyhow::anyhow!(
                    "could not check {:?} before uploading what an earlier mount staged for it ({e}); it stays in the cache directory and is retried at the next mount",
                    entry.key
                )
            })?;
            let uploaded = match target {
                Target::Key(None) => upload(&entry.key, None),
                Target::Key(Some(condition)) => match upload(&entry.key, Some(&condition)) {
                    // Another client wrote the key after the HEAD.
                    Err(e @ StoreError::PreconditionFailed { .. }) => {
                        beside(
                            &mut entry,
                            &format!("the conditional upload was refused: {e}"),
                        );
                        upload(&entry.key, None)
                    }
                    // A store that refuses the headers rather than
                    // ignoring them: the HEAD check has passed.
                    Err(e @ StoreError::Permanent { .. }) => {
                        tracing::warn!(key = %entry.key, error = %e,
                            "the store refused a conditional upload; uploading without the condition, checked by a HEAD only");
                        upload(&entry.key, None)
                    }
                    other => other,
                },
                Target::Beside => {
                    beside(&mut entry, "a HEAD found another object");
                    upload(&entry.key, None)
                }
            };
            let etag = match uploaded {
                // A key the store will never take (longer than it allows):
                // failing would stop every later mount of the volume too.
                Err(e @ (StoreError::Permanent { .. } | StoreError::PreconditionFailed { .. })) => {
                    tracing::error!(key = %entry.key, error = %e, path = %path.display(),
                        "the store refused for good to take data an earlier mount staged; it stays in the cache directory, and the mount goes on without it");
                    continue;
                }
                other => other,
            };
            let etag = etag.map_err(|e| {
                anyhow::anyhow!(
                    "could not upload {:?}, staged by an earlier mount ({e}); it stays in the cache directory and is retried at the next mount",
                    entry.key
                )
            })?;
            self.inner.staging.clear_journal(id, &file);
            match etag {
                // Now a clean copy of what is in the bucket: cached, within
                // the bound (this mount's may be smaller than the last one's).
                Some(etag) => {
                    let tag = CacheTag {
                        key: entry.key.clone(),
                        etag,
                    };
                    self.inner.staging.tag_clean(&file, &tag);
                    self.restore_cache(vec![(id, tag, size)]);
                }
                None => self.inner.staging.discard(id, file, true),
            }
            tracing::info!(key = %entry.key, bytes = size, "recovered staged file");
        }
        Ok(())
    }

    /// Where data an earlier mount staged goes, from a HEAD of its key:
    /// the key itself while the bucket still has there what that mount
    /// last saw, with that as the upload's condition (so a write by
    /// another client after the HEAD is caught too, where the store
    /// honours conditional writes), or without a condition when that is
    /// not known; else beside it.
    fn recovery_target(&self, entry: &JournalEntry) -> StoreResult<Target> {
        let Some(base) = &entry.base else {
            return Ok(Target::Key(None));
        };
        let store = &self.inner.store;
        let now = match self.block_on(retry(BACKGROUND, "head", || store.head(&entry.key)))? {
            None => Base::Absent,
            Some(meta) => match meta.etag {
                Some(etag) => Base::Etag(etag),
                // Nothing to compare: as before.
                None => return Ok(Target::Key(None)),
            },
        };
        Ok(match (&now == base, now) {
            (true, Base::Absent) => Target::Key(Some(WriteCondition::Absent)),
            (true, Base::Etag(etag)) => Target::Key(Some(WriteCondition::Etag(etag))),
            (false, _) => Target::Beside,
        })
    }

    /// Runs queued uploads, `UPLOAD_WORKERS` at a time, each once its
    /// `upload_delay` has passed (or at once when unmount hurries them).
    pub(super) fn start_uploader(&self, mut rx: mpsc::UnboundedReceiver<u64>) {
        let weak = Arc::downgrade(&self.inner);
        let permits = Arc::new(tokio::sync::Semaphore::new(UPLOAD_WORKERS));
        let delay = match self.opts().upload {
            UploadMode::Async => self.opts().upload_delay,
            UploadMode::Sync => Duration::ZERO,
        };
        let hurry = self.inner.uploads.hurry.subscribe();
        self.inner.rt.spawn(async move {
            while let Some(ino) = rx.recv().await {
                let (weak, permits, mut hurry) = (weak.clone(), permits.clone(), hurry.clone());
                tokio::spawn(async move {
                    if !delay.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = hurry.wait_for(|h| *h) => {}
                        }
                    }
                    let mut first = true;
                    loop {
                        // The semaphore is fair: uploads start in queue
                        // order, and a retry goes to the back.
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            return;
                        };
                        let Some(inner) = weak.upgrade() else { return };
                        let fs = ObjectFs { inner };
                        let again = tokio::task::spawn_blocking(move || {
                            let again = fs.background_upload(ino, first);
                            drop(permit);
                            again
                        });
                        if !again.await.unwrap_or(false) {
                            return;
                        }
                        first = false;
                        // Between rounds the worker is free: files the
                        // store keeps refusing (a key a bucket policy
                        // denies) do not hold up the others.
                        tokio::time::sleep(BACKGROUND_ROUND_PAUSE).await;
                    }
                });
            }
        });
    }

    /// Uploads `ino` if dirty, waiting for it: the fsync and sync-close path.
    pub(super) fn upload_now(&self, ino: u64, policy: RetryPolicy) -> FsResult<()> {
        loop {
            let (key, posix, size, file, gen_, stream) = {
                let mut st = self.lock();
                let began = Instant::now();
                let deadline = began + DRAIN_WAIT;
                let key = loop {
                    st = self.wait_uploads(st, &[ino]);
                    let key = self.key_of(&st, ino);
                    // Queued changes of this key go first (waiting deletes
                    // are dropped: the data replaces the object anyway),
                    // decided under the same lock as `uploading` below.
                    match self.clear_ops_for_upload(st, ino, &key) {
                        Ok(ready) => {
                            st = ready;
                            break key;
                        }
                        Err(waited)
                            if began.elapsed() >= DISK_SPACE_WAIT
                                && self.journal_holds_back(&[key.as_str()]) =>
                        {
                            drop(waited);
                            tracing::error!(key = %key, "{JOURNAL_FULL}");
                            return Err(libc::ENOSPC);
                        }
                        Err(waited) if Instant::now() < deadline => st = waited,
                        Err(_) => {
                            tracing::error!(key = %key,
                                "an upload waited too long for namespace changes of its name; the data stays staged");
                            return Err(libc::EIO);
                        }
                    }
                };
                let Ok(n) = st.node_mut(ino) else {
                    return Ok(());
                };
                if n.unlinked {
                    return Ok(());
                }
                let posix = n.posix();
                // Written by the kernel itself just now, maybe: upload
                // what the copy holds.
                let size = n
                    .staged
                    .as_ref()
                    .and_then(Staged::direct_len)
                    .unwrap_or(n.size);
                let Some(s) = n.staged.as_mut() else {
                    return Ok(());
                };
                if !s.dirty() {
                    return Ok(());
                }
                s.uploading = true;
                let stream = s.stream.take_active();
                (key, posix, size, s.file.clone(), s.dirty_gen, stream)
            };
            let started = std::time::SystemTime::now();
            let meta = layout::encode(&posix);
            // The upload begun while writing, if any, completed; else whole.
            let result = self.block_on(streaming::upload(
                &self.inner.store,
                policy,
                &key,
                file,
                size,
                &meta,
                &posix,
                stream,
            ));
            let answered = SystemTime::now();
            self.note_store_result(result.as_ref().map(drop));
            let mut st = self.lock();
            let finished = match st.node_mut(ino) {
                Ok(n) => {
                    let s = n.staged.as_mut().expect("staged while uploading");
                    s.uploading = false;
                    match &result {
                        Ok(etag) => {
                            s.cleaned(gen_, started);
                            // A direct writer may change the copy after
                            // this upload read it, and a write may be
                            // under way: the entry stays.
                            if !s.dirty() && s.direct_writers == 0 && s.writes_in_flight == 0 {
                                // Tagged as the clean copy it now is before
                                // the entry goes: ext4 frees and allocates
                                // an xattr block when a file's last one goes
                                // and comes (50-250 µs; an fsync of SQLite's
                                // paid it on every transaction).
                                if let Some(etag) = etag {
                                    let tag = CacheTag {
                                        key: key.clone(),
                                        etag: etag.clone(),
                                    };
                                    self.inner.staging.tag_clean(&s.file, &tag);
                                    s.maybe_tagged = true;
                                }
                                self.inner.staging.clear_journal(s.id, &s.file);
                                s.journaled = false;
                            }
                            n.remote = true;
                            n.validated = Instant::now();
                            n.meta_known = true;
                            n.other_bytes(etag.clone());
                            n.remote_modified = None;
                            n.own_write = Some(answered);
                            // An entry that stays (changed again meanwhile)
                            // now starts from this upload: a recovery must
                            // not take this mount's own object for another
                            // client's.
                            let entry = JournalEntry {
                                base: etag.clone().map(Base::Etag),
                                ..JournalEntry::new(&key, &n.posix())
                            };
                            if let Some(s) = n.staged.as_mut().filter(|s| s.journaled) {
                                self.journal_copy(s, &entry);
                            }
                            // Clean and closed: kept as a cached copy.
                            self.retire_copy(&mut st, ino);
                        }
                        Err(e) => {
                            tracing::debug!(key = %key, error = %e, "upload failed; the data stays staged");
                        }
                    }
                    true
                }
                Err(_) => true,
            };
            self.inner.changed.notify_all();
            if finished {
                st.prune(ino);
            }
            drop(st);
            match result {
                // Changed again while uploading: go round once more.
                Ok(_) => continue,
                Err(e) => return Err(errno_of(&e)),
            }
        }
    }

    /// Queues a background upload of `ino` if it has changes and none is
    /// queued yet.
    pub(super) fn enqueue_if_idle(&self, st: &mut InodeTable, ino: u64) {
        if let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut())
            && s.dirty()
            && !s.queued
        {
            s.queued = true;
            self.inner.uploads.send(ino);
        }
    }

    /// One round of a background upload (`first`: the round the queue
    /// started); whether another round is due. Rounds go on until it
    /// lands, the file is gone, or unmount gives up (the data stays
    /// journalled).
    fn background_upload(&self, ino: u64, first: bool) -> bool {
        {
            let mut st = self.lock();
            let defers = first && !self.inner.uploads.hurried() && self.stream_defers(&st, ino);
            let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut()) else {
                return false;
            };
            // A close from now on queues another upload (this one may have
            // read the copy before its last change).
            s.queued = false;
            if first {
                // Another task's rounds go on till the copy is clean (each
                // upload goes round again while it changed): this close
                // needs no rounds of its own, which would hold a worker
                // while they wait for that task's.
                if s.background || defers {
                    return false;
                }
                s.background = true;
            }
        }
        let again = match self.upload_now(ino, BACKGROUND) {
            Ok(()) => false,
            Err(errno) => {
                // The run of failures is logged once (`note_store_result`).
                tracing::debug!(ino, errno, "background upload failed; retrying");
                true
            }
        };
        let mut st = self.lock();
        if let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut()) {
            match again {
                // Queued till the next round: closes meanwhile queue none.
                true => s.queued = true,
                false => s.background = false,
            }
        }
        again
    }

    /// Uploads every dirty file and sends every queued namespace change,
    /// waiting up to the flush timeout; fetches ahead not started are
    /// dropped and those under way waited for. Returns how many files and
    /// changes are still not in the bucket (they stay journalled).
    pub fn flush_all(&self) -> usize {
        let deadline = Instant::now() + self.opts().flush_timeout;
        self.inner.uploads.hurry();
        {
            let mut st = self.lock();
            Self::drop_queued_fetches(&mut st);
            let dirty: Vec<u64> = st.dirty_files().map(|(i, _)| i).collect();
            for ino in dirty {
                self.enqueue_if_idle(&mut st, ino);
            }
        }
        loop {
            let st = self.lock();
            let pending = st
                .nodes
                .values()
                .filter(|n| {
                    !n.unlinked && n.staged.as_ref().is_some_and(|s| s.dirty() || s.uploading)
                })
                .count()
                + self.ops().len();
            // (Fetches ahead under way end too: what the cache holds is
            // then settled.)
            let fetching = st.data_ahead.values().any(|started| *started);
            if (pending == 0 && !fetching) || Instant::now() >= deadline {
                return pending;
            }
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            drop(self.inner.changed.wait_timeout(st, wait));
        }
    }

    /// Bytes of local copies counted against the cache bound, and of those
    /// the clean copies the cache may evict.
    pub fn cache_bytes(&self) -> (u64, u64) {
        let cache = self.cache();
        (cache.used(), cache.clean_bytes())
    }

    /// Bytes staged locally and not yet in the bucket.
    pub fn pending_bytes(&self) -> u64 {
        let st = self.lock();
        st.dirty_files().map(|(_, n)| n.size).sum()
    }

    /// What waits for the store now, for the mount's status: files with
    /// changes not in the bucket, their bytes, the bytes of their local
    /// copies counted against the cache bound, and since when the oldest
    /// change (of file data or of a name) has waited.
    pub fn pending(&self) -> Pending {
        let (files, bytes, cache_bytes, oldest) = {
            let st = self.lock();
            st.dirty_files().fold(
                (0, 0, 0, None::<std::time::SystemTime>),
                |(files, bytes, cached, oldest), (_, n)| {
                    let s = n.staged.as_ref().expect("dirty files are staged");
                    let since = match (oldest, s.dirty_since) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    (files + 1, bytes + n.size, cached + s.charged, since)
                },
            )
        };
        let ops = self.ops();
        // A change becomes ready one upload delay after it was queued.
        let delay = match self.opts().upload {
            UploadMode::Async => self.opts().upload_delay,
            UploadMode::Sync => Duration::ZERO,
        };
        let (now, wall) = (Instant::now(), std::time::SystemTime::now());
        let op_since = ops.oldest_ready().map(|ready| {
            let queued = ready.checked_sub(delay).unwrap_or(ready);
            wall - now.saturating_duration_since(queued)
        });
        let oldest = match (oldest, op_since) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Pending {
            files,
            bytes,
            changes: ops.len(),
            cache_bytes,
            oldest_since: oldest,
        }
    }
}

/// What waits for the store (see [`ObjectFs::pending`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pending {
    /// Files with changes not in the bucket.
    pub files: usize,
    /// Their sizes.
    pub bytes: u64,
    /// Namespace changes not in the bucket.
    pub changes: usize,
    /// Bytes of those files' local copies counted against the cache bound
    /// (the cache's dirty part; never evicted).
    pub cache_bytes: u64,
    /// Since when the oldest of them has waited.
    pub oldest_since: Option<std::time::SystemTime>,
}
