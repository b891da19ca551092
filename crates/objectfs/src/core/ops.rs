//! Namespace changes off the critical path (`upload=async`): mkdir,
//! symlink, chmod/chown/utimens of objects, unlink and rmdir change the
//! inode table at once and are journalled (`oplog`), then sent to the store
//! by one background sender, in order per key, [`OP_PARALLEL`] at a time,
//! after the upload delay. What reads the store meanwhile (lookups,
//! listings, the empty-directory check) sees through them; file uploads,
//! renames, fsync and unmount wait for the changes they depend on. The next
//! mount replays what a crash left in the journal before anything else.

use super::super::oplog::NsOp;
use super::super::staging::JournalEntry;
use super::super::transfer::{RetryPolicy, retry};
use super::super::{FsResult, UploadMode};
use super::copies::DISK_SPACE_WAIT;
use super::inodes::InodeTable;
use super::opqueue::{OpQueue, Pushed, Queued, Removals};
use super::{ObjectFs, errno_of};
use crate::store::{StoreError, StoreResult};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Logged when the store refuses a queued namespace change for good (live
/// or at a replay): it is dropped rather than retried forever.
const REFUSED_FOR_GOOD: &str = "the store refused a namespace change for good; it is dropped";

/// What a change wrote: the ETag the store gave it and, for a metadata
/// rewrite, the ETag of the version it was asked to copy.
type Written = (String, Option<String>);

/// Logged when a change waits for the journal to say an earlier one is done.
pub(super) const JOURNAL_FULL: &str = "the cache directory's disk is full: the journal cannot yet record that a namespace change reached the store, so later changes of its keys wait";

/// Changes sent to the store at once.
const OP_PARALLEL: usize = 16;
/// Retries of one change before its round is counted as failed.
const OP_RETRY: RetryPolicy = RetryPolicy {
    attempts: 12,
    first_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(10),
};
/// Between rounds of a change that keeps failing.
const OP_ROUND_PAUSE: Duration = Duration::from_secs(2);
/// How long an operation that needs earlier changes in the store (rename,
/// fsync of a directory) waits for them before it fails with EIO.
pub(super) const DRAIN_WAIT: Duration = Duration::from_secs(20);
/// How often a caller waiting for the sender looks again.
const SENDER_POLL: Duration = Duration::from_millis(100);

/// What a listing said of an object a directory rename copies: its size
/// and ETag.
type Listed<'a> = Option<(u64, Option<&'a str>)>;

/// Logged when the journal refuses a namespace change's record.
const NOT_JOURNALLED: &str = "could not journal a namespace change (is the cache directory's disk full?); the call returns once the change is in the store, as with --upload sync";

/// A queued change whose record the journal refused, named by its key;
/// none when it was recorded.
#[must_use]
pub(super) struct NotJournalled(Vec<String>);

impl NotJournalled {
    pub(super) fn none() -> NotJournalled {
        NotJournalled(Vec::new())
    }

    /// Both `self`'s changes and `other`'s.
    pub(super) fn and(mut self, other: NotJournalled) -> NotJournalled {
        self.0.extend(other.0);
        self
    }
}

/// A delete announced by [`ObjectFs::removing`], under way until dropped.
pub(super) struct Removing<'a> {
    fs: &'a ObjectFs,
    key: String,
    prefix: bool,
}

impl Drop for Removing<'_> {
    fn drop(&mut self) {
        self.fs.ops().removed(&self.key, self.prefix);
    }
}

impl ObjectFs {
    pub(super) fn ops(&self) -> MutexGuard<'_, OpQueue> {
        self.inner.ops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether namespace changes are queued (async) rather than made in the
    /// store before the call returns (sync).
    pub(super) fn queued_namespace(&self) -> bool {
        self.opts().upload == UploadMode::Async
    }

    /// Queues change `op` for node `ino` (if it waits for it), journalled
    /// before this returns. `st` is the locked inode table. What the
    /// journal could not record, the caller waits for once `st` is
    /// released ([`Self::settle`]).
    pub(super) fn queue_op(
        &self,
        st: &mut InodeTable,
        op: NsOp,
        ino: Option<u64>,
    ) -> NotJournalled {
        let creates = matches!(op, NsOp::Put { .. });
        self.queue_op_with(st, op, ino, creates)
    }

    /// As `queue_op`, for a Put that may replace an object (`creates`
    /// false): a delete queued after it is still sent.
    pub(super) fn queue_op_with(
        &self,
        st: &mut InodeTable,
        op: NsOp,
        ino: Option<u64>,
        creates: bool,
    ) -> NotJournalled {
        let ready_at = Instant::now() + self.opts().upload_delay;
        let pushed = self.ops().push_with(op.clone(), ino, ready_at, creates);
        let mut missed = NotJournalled::none();
        let dropped = match pushed {
            Pushed::Queued { seq, dropped } => {
                missed = self.journal_op(seq, &op);
                if let Some(n) = ino.and_then(|i| st.nodes.get_mut(&i)) {
                    n.ops += 1;
                }
                dropped
            }
            Pushed::Merged { seq, op } => {
                missed = self.journal_op(seq, &op);
                Vec::new()
            }
            Pushed::Cancelled { dropped } => dropped,
        };
        self.release_dropped(st, dropped);
        self.inner.ops_notify.notify_one();
        missed
    }

    fn journal_op(&self, seq: u64, op: &NsOp) -> NotJournalled {
        match self.inner.oplog.write(seq, op) {
            Ok(()) => NotJournalled::none(),
            Err(e) => {
                tracing::error!(key = %op.key(), error = %e, "{NOT_JOURNALLED}");
                NotJournalled(vec![op.key().to_string()])
            }
        }
    }

    /// Waits until a change the journal could not record is in the store,
    /// as sync mode would have before returning: a crash before then would
    /// lose it. ENOSPC when it is not sent within [`DRAIN_WAIT`] (it stays
    /// queued).
    pub(super) fn settle(&self, missed: NotJournalled) -> FsResult<()> {
        if missed.0.is_empty() {
            return Ok(());
        }
        self.drain_ops(&missed.0).map_err(|_| libc::ENOSPC)
    }

    fn release_dropped(&self, st: &mut InodeTable, dropped: Vec<Queued>) {
        for q in dropped {
            self.inner.oplog.remove(q.seq);
            if let Some(ino) = q.ino
                && let Some(n) = st.nodes.get_mut(&ino)
            {
                n.ops = n.ops.saturating_sub(1);
                st.prune(ino);
            }
        }
    }

    /// File data of `ino` is about to go to `key`. `Ok` (the lock still held since
    /// the decision) when no change of the key is pending but waiting
    /// deletes, which are dropped: the data replaces the object anyway.
    /// `Err` after waiting a little for other pending changes of the key
    /// (the sender is hurried); the caller decides again.
    pub(super) fn clear_ops_for_upload<'a>(
        &'a self,
        mut st: MutexGuard<'a, InodeTable>,
        ino: u64,
        key: &str,
    ) -> Result<MutexGuard<'a, InodeTable>, MutexGuard<'a, InodeTable>> {
        // Only when the upload will really happen: a node gone or clean
        // uploads nothing, and its key's deletes must stay.
        let live = st.nodes.get(&ino).is_some_and(|n| {
            !n.unlinked && n.staged.as_ref().is_some_and(|s| s.dirty() && !s.uploading)
        });
        // Nor may the journal say the key was free (a new file begun
        // after the unlink) once its deletes are dropped: after a crash the
        // next mount would find the old object and put the data beside
        // it. Journalled first; when the entry cannot be rewritten (a full
        // disk), the deletes are sent instead of dropped.
        if live
            && self.ops().upload_drops(key) == Some(true)
            && let Some(n) = st.nodes.get_mut(&ino)
        {
            let entry = JournalEntry::new(key, &n.posix());
            if let Some(s) = n.staged.as_mut().filter(|s| s.journaled)
                && self.journal_copy(s, &entry).is_some()
            {
                return Err(self.wait_for_sender(st, SENDER_POLL));
            }
        }
        let cleared = if live {
            self.ops().clear_for_upload(key)
        } else {
            Some(Vec::new())
        };
        match cleared {
            Some(dropped) => {
                // Until this upload lands, the key still holds the object
                // those deletes were for: a later unlink or rename must
                // delete it (the upload may fail).
                if !dropped.is_empty()
                    && let Some(n) = st.nodes.get_mut(&ino)
                {
                    n.remote = true;
                }
                self.release_dropped(&mut st, dropped);
                // A change of the key that reached the store while the
                // journal could not say so would be replayed after this
                // upload by the next mount after a crash.
                if live && self.journal_holds_back(&[key]) {
                    return Err(self.wait_for_sender(st, SENDER_POLL));
                }
                Ok(st)
            }
            None => Err(self.wait_for_sender(st, SENDER_POLL)),
        }
    }

    /// Hurries the sender past the upload delay and waits, `max` at most,
    /// for it to land something (each landed change wakes `changed`).
    fn wait_for_sender<'a>(
        &'a self,
        st: MutexGuard<'a, InodeTable>,
        max: Duration,
    ) -> MutexGuard<'a, InodeTable> {
        self.inner.ops_urgent.fetch_add(1, Ordering::SeqCst);
        self.inner.ops_notify.notify_one();
        let st = self
            .inner
            .changed
            .wait_timeout(st, max.min(SENDER_POLL))
            .unwrap_or_else(|e| e.into_inner())
            .0;
        self.inner.ops_urgent.fetch_sub(1, Ordering::SeqCst);
        st
    }

    /// Waits until no change of one of `keys` is pending (all of them when
    /// `keys` is empty): what an fsync or a rename needs in the store. A
    /// key ending in `/` stands for every key below it too; any other for
    /// itself only (`x`, not `x.tmp`). EIO after [`DRAIN_WAIT`].
    pub(super) fn drain_ops(&self, keys: &[String]) -> FsResult<()> {
        let pending = |q: &OpQueue| {
            if keys.is_empty() {
                return !q.is_empty();
            }
            keys.iter().any(|k| match k.ends_with('/') {
                true => q.pending_under(k),
                false => q.pending_on(k),
            })
        };
        let deadline = Instant::now() + DRAIN_WAIT;
        let mut st = self.lock();
        loop {
            if !pending(&self.ops()) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::error!("namespace changes did not reach the store in time");
                return Err(libc::EIO);
            }
            st = self.wait_for_sender(st, left);
        }
    }

    /// Whether a change that reached the store but is not journalled as
    /// done yet (a full cache disk, see `OpLog::holds_back`) affects one of
    /// `keys` (one ending in `/`: a key below it): nothing else may go
    /// there yet.
    pub(super) fn journal_holds_back(&self, keys: &[&str]) -> bool {
        self.inner.oplog.holds_back(|op| {
            keys.iter().any(|k| match k.ends_with('/') {
                true => op.touches_under(k),
                false => op.covers(k),
            })
        })
    }

    /// Waits, [`DISK_SPACE_WAIT`] at most, until [`Self::journal_holds_back`]
    /// no longer holds for `prefixes`; then ENOSPC.
    pub(super) fn settle_journal(&self, prefixes: &[&str]) -> FsResult<()> {
        let deadline = Instant::now() + DISK_SPACE_WAIT;
        while self.journal_holds_back(prefixes) {
            if Instant::now() >= deadline {
                tracing::error!(key = %prefixes.first().copied().unwrap_or_default(), "{JOURNAL_FULL}");
                return Err(libc::ENOSPC);
            }
            std::thread::sleep(SENDER_POLL);
        }
        Ok(())
    }

    /// Removals pending now; take it before a store request, and join it
    /// with [`Self::gone_since`] after.
    pub(super) fn removals(&self) -> Removals {
        self.ops().removals()
    }

    /// Announces a delete of `key` (with `prefix`: of every key below it)
    /// that this mount makes itself (sync mode) once the table has dropped
    /// the name: listings hide it until the guard goes, as they hide queued
    /// deletes (a listing begun in between brought the name back).
    pub(super) fn removing(&self, key: &str, prefix: bool) -> Removing<'_> {
        self.ops().removing(key, prefix);
        Removing {
            fs: self,
            key: key.to_string(),
            prefix,
        }
    }

    /// What a store answer begun at `before` must not show: objects whose
    /// delete (or the rename of whose directory) was pending at some time
    /// while it ran.
    pub(super) fn gone_since(&self, before: Removals) -> Removals {
        before.and(self.removals())
    }

    /// Namespace changes not in the store yet.
    pub fn pending_ops(&self) -> usize {
        self.ops().len()
    }

    /// Sends one change to the store; the ETag the store gave the object a
    /// Put wrote, or a SetMeta of the version with ETag `expect` (the one
    /// whose bytes this mount may hold), when it said.
    async fn apply_op(&self, op: &NsOp, expect: Option<&str>) -> StoreResult<Option<String>> {
        let store = &self.inner.store;
        match op {
            NsOp::Put { key, meta, body } => {
                let body = Bytes::from(body.clone());
                retry(OP_RETRY, "put", || store.put(key, body.clone(), meta)).await
            }
            NsOp::Delete { key } => retry(OP_RETRY, "delete", || store.delete(key))
                .await
                .map(|()| None),
            NsOp::SetMeta { key, meta, size } => {
                let copy = || store.copy(key, *size, key, Some(meta));
                let copied = match expect {
                    Some(etag) => {
                        let copy_if = || store.copy_if(key, *size, key, Some(meta), etag);
                        match retry(OP_RETRY, "set attributes", copy_if).await {
                            // Rewritten by another client since: the change
                            // applies to it all the same, but the copy's
                            // ETag is not of bytes this mount has.
                            Err(StoreError::PreconditionFailed { .. }) => {
                                retry(OP_RETRY, "set attributes", copy).await.map(|_| None)
                            }
                            other => other,
                        }
                    }
                    None => retry(OP_RETRY, "set attributes", copy).await.map(|_| None),
                };
                match copied {
                    // Gone meanwhile (another client deleted it): nothing
                    // left to change.
                    Err(StoreError::NotFound { .. }) => Ok(None),
                    other => other,
                }
            }
            NsOp::RenameDir {
                from,
                to,
                names: journalled,
                marker: marker_meta,
                list,
            } => {
                use futures_util::StreamExt;
                // Each name below `from`, with its size and ETag when a
                // listing gave them (a copy then needs no HEAD, and its
                // ETag is known to be of that version).
                let (names, marker): (Vec<(&str, Listed)>, _);
                let listed;
                if *list {
                    listed = self.list_subtree(from, OP_RETRY).await?;
                    names = (listed.iter())
                        .map(|o| (&o.key[from.len()..], Some((o.size, o.etag.as_deref()))))
                        .collect();
                    // The old marker is copied; else one is written.
                    let has_marker = names.iter().any(|(name, _)| name.is_empty());
                    marker = marker_meta.as_ref().filter(|_| !has_marker);
                } else {
                    names = (journalled.iter()).map(|n| (n.as_str(), None)).collect();
                    marker = marker_meta.as_ref();
                }
                let copies: Vec<_> = (names.iter())
                    .map(|&(name, listed)| {
                        self.copy_one(format!("{from}{name}"), listed, format!("{to}{name}"))
                    })
                    .collect();
                let copied = futures_util::stream::iter(copies)
                    .buffer_unordered(OP_PARALLEL)
                    .collect::<Vec<StoreResult<Option<String>>>>()
                    .await
                    .into_iter()
                    .collect::<StoreResult<Vec<Option<String>>>>()?;
                // Every copy exists now: the sources go, 1,000 a request.
                let sources: Vec<String> = copied.into_iter().flatten().collect();
                retry(OP_RETRY, "delete", || store.delete_many(&sources)).await?;
                match marker {
                    Some(meta) => retry(OP_RETRY, "mkdir", || store.put(to, Bytes::new(), meta))
                        .await
                        .map(|_| None),
                    None => Ok(None),
                }
            }
        }
    }

    /// Copies one object of a renamed directory to its new name; returns
    /// the source to delete once every copy exists, or none when there is
    /// nothing to move. Of the version listed when there was a listing: the
    /// node and a cached copy then take the copy's ETag
    /// ([`ObjectFs::copy_listed`]).
    async fn copy_one(
        &self,
        src: String,
        listed: Listed<'_>,
        dst: String,
    ) -> StoreResult<Option<String>> {
        let size = listed.map(|(size, _)| size);
        let etag = listed.and_then(|(_, etag)| etag);
        match self.copy_listed((&src, size, etag), &dst, OP_RETRY).await {
            Ok(etags) => {
                let etags = (etags.as_ref()).map(|(was, now)| (was.as_str(), now.as_str()));
                self.renamed_cached(&src, &dst, size.unwrap_or(0), etags);
                self.moved(&src, etags);
                Ok(Some(src))
            }
            // Moved already (a repeat after a crash), or deleted by another
            // client: nothing to move.
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A renamed directory's object `src` has its copy at the new name:
    /// its node reads from its own key from now on, and takes the copy's
    /// ETag (`etags`: the version copied, the copy's) while it still
    /// describes the version copied. It stays in the table
    /// while it has its name there, as a listing's nodes do: the renamed
    /// directory's content is whole in the table, and stays so for a TTL
    /// once the rename is done. (One removed meanwhile goes.)
    fn moved(&self, src: &str, etags: Option<(&str, &str)>) {
        let mut st = self.lock();
        if let Some(ino) = st.sourced.remove(src) {
            let named = match st.nodes.get_mut(&ino) {
                Some(n) => {
                    n.source = None;
                    if let Some((was, now)) = etags
                        && n.etag.as_deref() == Some(was)
                    {
                        n.own_copy(Some(now.to_string()));
                    }
                    let entry = (n.parent, n.name.clone());
                    st.children.get(&entry) == Some(&ino)
                }
                None => false,
            };
            if !named {
                st.prune(ino);
            }
        }
    }

    /// Replays the changes an earlier mount journalled, in order, before
    /// anything is served; returns the last sequence number seen.
    pub(super) fn replay_ops(&self) -> anyhow::Result<u64> {
        let left = self.inner.oplog.replay()?;
        let last = left.last().map_or(0, |(seq, _)| *seq);
        if !left.is_empty() {
            tracing::info!(
                changes = left.len(),
                "sending namespace changes journalled by an earlier mount"
            );
        }
        for (seq, op) in left {
            match self.block_on(self.apply_op(&op, None)) {
                Ok(_) => {}
                // As the sender does: a change the store will never take
                // must not keep every later mount from starting.
                Err(e @ (StoreError::Permanent { .. } | StoreError::PreconditionFailed { .. })) => {
                    tracing::error!(key = %op.key(), error = %e, "{REFUSED_FOR_GOOD}");
                }
                Err(e) => anyhow::bail!(
                    "could not apply a namespace change to {:?} journalled by an earlier mount ({e}); it stays journalled and is retried at the next mount",
                    op.key()
                ),
            }
            self.inner.oplog.remove(seq);
        }
        Ok(last)
    }

    /// Runs the queue: waits for ready changes (or a hurry), sends a batch,
    /// records each as done, again.
    pub(super) fn start_op_sender(&self) {
        let weak = Arc::downgrade(&self.inner);
        let notify = self.inner.ops_notify.clone();
        let mut hurry = self.inner.uploads.hurry_signal();
        self.inner.rt.spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                let fs = ObjectFs { inner };
                let urgent = *hurry.borrow() || fs.inner.ops_urgent.load(Ordering::SeqCst) > 0;
                let (batch, next) = {
                    let mut q = fs.ops();
                    let room = OP_PARALLEL.saturating_sub(q.running_len());
                    (q.next_batch(Instant::now(), urgent, room), q.next_ready())
                };
                if batch.is_empty() {
                    drop(fs);
                    // Nothing ready, or what is ready waits for a change
                    // still running (whose end wakes us): sleep till then.
                    let now = Instant::now();
                    let nap = match next {
                        Some(t) if t > now => t - now,
                        Some(_) => Duration::from_secs(1),
                        None => Duration::from_secs(60),
                    };
                    tokio::select! {
                        _ = notify.notified() => {}
                        _ = tokio::time::sleep(nap) => {}
                        _ = hurry.changed() => {}
                    }
                    continue;
                }
                // Each change on its own: one that keeps failing holds up
                // only the later changes of its key (and a directory
                // rename, which waits for everything before it).
                for q in batch {
                    let fs = fs.clone();
                    tokio::spawn(async move {
                        let landed = fs.send_op(&q).await;
                        fs.op_done(q.seq, landed);
                    });
                }
            }
        });
    }

    /// Sends one change until it lands. A failure that retrying cannot
    /// mend (a request the store refuses as malformed, a failed
    /// precondition) drops the change with one log line: the store keeps
    /// what it has, and the mount shows it again after the TTL. Others,
    /// including access denied (credentials can be fixed), are retried in
    /// rounds for as long as the mount lives; unmount stops waiting after
    /// the flush timeout, and the change stays journalled.
    /// When it landed: the time its answer came, taken at once, and the
    /// ETag of what it wrote with, for a metadata rewrite, the ETag of the
    /// version it copied (None when it was refused for good).
    async fn send_op(&self, q: &Queued) -> Option<(SystemTime, Option<Written>)> {
        // An earlier change of these keys the journal does not say is done
        // yet would be replayed after this one (see `OpLog::holds_back`).
        while self.inner.oplog.holds_back(|u| u.overlaps(&q.op)) {
            tracing::debug!(key = %q.op.key(), "{JOURNAL_FULL}");
            tokio::time::sleep(OP_ROUND_PAUSE).await;
        }
        // A metadata rewrite's copy is of the version whose bytes this
        // mount has, or its ETag is not taken (`op_done`).
        let expect = match (&q.op, q.ino) {
            (NsOp::SetMeta { .. }, Some(ino)) => {
                self.lock().nodes.get(&ino).and_then(|n| n.etag.clone())
            }
            _ => None,
        };
        loop {
            let result = self.apply_op(&q.op, expect.as_deref()).await;
            let answered = SystemTime::now();
            self.note_store_result(result.as_ref().map(|_| ()));
            match result {
                // (A metadata rewrite's ETag stands for the version it was
                // asked to copy, and only while the node still has that.)
                Ok(etag) => return Some((answered, etag.map(|e| (e, expect.clone())))),
                Err(e @ (StoreError::Permanent { .. } | StoreError::PreconditionFailed { .. })) => {
                    tracing::error!(key = %q.op.key(), error = %e, "{REFUSED_FOR_GOOD}");
                    return None;
                }
                Err(e) => {
                    // The run of failures is logged once (`note_store_result`).
                    tracing::debug!(key = %q.op.key(), errno = errno_of(&e), error = %e,
                        "a namespace change could not reach the store; retrying");
                    tokio::time::sleep(OP_ROUND_PAUSE).await;
                }
            }
        }
    }

    /// Change `seq` is in the store (`landed`: when its answer came, and
    /// what it wrote), or was refused for good.
    fn op_done(&self, seq: u64, landed: Option<(SystemTime, Option<Written>)>) {
        let (landed, written) = match landed {
            Some((at, written)) => (Some(at), written),
            None => (None, None),
        };
        let mut st = self.lock();
        // Out of the journal before later changes can be sent: a replay
        // must never repeat it after them (a rename that lists its old
        // prefix would take a new directory there with it).
        self.inner.oplog.remove(seq);
        let Some(q) = self.ops().finish(seq) else {
            return;
        };
        if let Some(ino) = q.ino
            && let Some(n) = st.nodes.get_mut(&ino)
        {
            n.ops = n.ops.saturating_sub(1);
            // The object was rewritten here (its date is new).
            n.remote_modified = None;
            n.own_write = landed;
            if landed.is_some() {
                // As of now the store has what this mount holds: a listing
                // begun before it landed shows the object before it.
                n.validated = Instant::now();
            }
            if matches!(q.op, NsOp::Put { .. }) {
                n.remote = true;
                n.validated = Instant::now();
            }
            match (&q.op, written) {
                (NsOp::Put { key, .. }, Some((etag, _))) => self.rewrote(n, key, Some(etag)),
                // Copied from the version the node still describes: the
                // same bytes, under the copy's ETag.
                (NsOp::SetMeta { key, .. }, Some((etag, of))) if of.is_some() && n.etag == of => {
                    self.rewrote(n, key, Some(etag))
                }
                _ => {}
            }
            st.prune(ino);
        }
        if let NsOp::RenameDir { from, to, .. } = &q.op {
            st.unpin(from, to);
        }
        self.inner.changed.notify_all();
        // The sender may be waiting for room, or for this key.
        self.inner.ops_notify.notify_one();
    }
}
