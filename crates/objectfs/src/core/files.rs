//! File data: create and open (staging a local copy of the content when
//! written), read (from the staged copy or the store), write, flush,
//! fsync and release, and setattr (truncate, mode, owner, times). Uploads
//! themselves are the upload queue's (`uploads`).

use super::super::layout::{self, Kind, Posix};
use super::super::oplog::NsOp;
use super::super::reader::Reader;
use super::super::staging::{Base, JournalEntry};
use super::super::transfer::{DownloadError, RetryPolicy, download_to_file, retry};
use super::super::{Attr, Errno, FsResult, OpenFlags, Opened, ROOT_INO, SetAttr, UploadMode};
use super::copies::{WHOLE_FILE_MAX, out_of_space};
use super::inodes::{InodeTable, Staged};
use super::{HandleKind, ObjectFs, errno_of, errno_of_local};
use crate::store::{PutMeta, StoreError};
use bytes::Bytes;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

/// Copies made for writing before a file rewritten elsewhere meanwhile
/// gets EIO (each attempt revalidates the node first).
const COPY_ATTEMPTS: u32 = 3;

/// Logged when an open file's object is no longer the version it reads.
const STALE_READ: &str = "an open file's object was replaced or deleted in the store and no local copy of the version it reads is left; the read fails with ESTALE (open the file again for the current version)";

/// What one attempt of giving a node its staged copy came to.
enum Staging {
    /// The node has its copy, pinned; `Some(size)`: an empty one this call
    /// attached for a truncation, in place of the object of that size.
    Done(Option<u64>),
    /// The object is not the one the node describes: nothing was kept.
    Changed,
}

impl ObjectFs {
    /// Gives `ino` a staging file holding its current content, and pins it
    /// (counts as an open handle) so a finishing upload cannot drop it; the
    /// caller unpins with `release` or `unpin`. The content copied is one
    /// whole version of the object, the one the node describes: when the
    /// GETs find another (rewritten elsewhere since the mount last looked,
    /// or during the copy), the node is revalidated and the copy made
    /// again, [`COPY_ATTEMPTS`] times at most.
    fn ensure_staged(&self, ino: u64, truncate: bool) -> FsResult<Option<u64>> {
        let mut attempt = 1;
        loop {
            match self.try_staged(ino, truncate)? {
                Staging::Done(emptied) => return Ok(emptied),
                Staging::Changed if attempt < COPY_ATTEMPTS => {
                    attempt += 1;
                    {
                        let mut st = self.lock();
                        let n = st.node_mut(ino)?;
                        self.expire(n);
                    }
                    self.getattr(ino)?;
                }
                Staging::Changed => {
                    let key = self.key_of(&self.lock(), ino);
                    tracing::warn!(
                        key,
                        attempts = COPY_ATTEMPTS,
                        "the object changed in the bucket during each copy for writing"
                    );
                    return Err(libc::EIO);
                }
            }
        }
    }

    /// One attempt of [`Self::ensure_staged`].
    fn try_staged(&self, ino: u64, truncate: bool) -> FsResult<Staging> {
        let (key, size, remote, etag) = {
            let mut st = self.lock();
            let key = self.key_of(&st, ino);
            if !truncate {
                self.attach_cached(&mut st, ino, &key);
            }
            let key = self.read_key(&st, ino);
            let n = st.node_mut(ino)?;
            if n.staged.is_some() {
                n.open_handles += 1;
                return Ok(Staging::Done(None));
            }
            (key, n.size, n.remote, n.etag.clone())
        };
        let fetch = remote && !truncate && size > 0;
        let charged = if fetch { size } else { 0 };
        if fetch {
            let (st, room) = self.reserve(self.lock(), size, true);
            drop(st);
            room?;
        }
        let give_back = |id, file| {
            self.cache().credit(charged);
            self.inner.staging.discard(id, file, true);
        };
        let (id, file) = match self.inner.staging.create() {
            Ok((id, file)) => (id, Arc::new(file)),
            Err(e) => {
                self.cache().credit(charged);
                return Err(errno_of_local(&e));
            }
        };
        let mut label = None;
        if fetch {
            let store = &self.inner.store;
            let download = || {
                self.block_on(download_to_file(
                    store,
                    RetryPolicy::INTERACTIVE,
                    &key,
                    file.clone(),
                    size,
                ))
            };
            let mut fetched = download();
            if let Err(DownloadError::Local(e)) = &fetched
                && out_of_space(e)
                && self.room_for_copy(ino, size)
            {
                fetched = download();
            }
            match fetched {
                // Of the node's size, whole: the object the GETs saw, which
                // may be newer than the node knew (or the node's ETag stale
                // after a copy of this mount's, which gives a multipart
                // object a new one): labelled with what was read.
                Ok(got) => label = got,
                Err(e) => {
                    give_back(id, file);
                    return match &e {
                        DownloadError::Changed => Ok(Staging::Changed),
                        DownloadError::Store(e) => Err(errno_of(e)),
                        DownloadError::Local(e) => Err(self.local_failure(e)),
                    };
                }
            }
        }
        let mut st = self.lock();
        let Ok(n) = st.node_mut(ino) else {
            give_back(id, file);
            return Err(libc::ENOENT);
        };
        if n.staged.is_some() {
            // Another opener won the race; use theirs.
            n.open_handles += 1;
            give_back(id, file);
            return Ok(Staging::Done(None));
        }
        if fetch && (n.size != size || n.etag != etag) {
            // A lookup learned of a newer object during the copy.
            give_back(id, file);
            return Ok(Staging::Changed);
        }
        n.open_handles += 1;
        let mut emptied = None;
        if fetch {
            n.note_etag(label);
        } else {
            emptied = Some(n.size);
            n.size = 0;
        }
        let mut staged = Staged::from_pool(id, file);
        staged.charged = charged;
        n.stage(staged);
        Ok(Staging::Done(emptied))
    }

    /// Marks content or attributes changed: bumps the generation and makes
    /// sure the journal knows where the data belongs. Returns the error of
    /// a journal entry that could not be written (logged here; the change
    /// is made already, and uploads as any other).
    fn mark_dirty(&self, st: &mut InodeTable, ino: u64) -> Option<std::io::Error> {
        if let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut()) {
            s.touch();
        }
        self.write_entry(st, ino)
    }

    /// Makes sure the journal entry of `ino`'s copy says where its data
    /// belongs and with which attributes (and that the copy carries no
    /// cache tag). Returns the error of an entry that could not be written
    /// (logged here).
    pub(super) fn write_entry(&self, st: &mut InodeTable, ino: u64) -> Option<std::io::Error> {
        let key = self.key_of(st, ino);
        let n = st.nodes.get_mut(&ino)?;
        let posix = n.posix();
        // What the bucket has at the key, as far as this mount knows: a
        // recovery after a crash checks it is still so before uploading.
        // Not known while a change of the object is queued: a metadata
        // rewrite (a copy onto itself) the next mount replays first may
        // give it another ETag, and the data would go beside it; so may a
        // queued directory rename's copy of it (`source`: not copied yet).
        let base = match (n.remote, &n.etag) {
            _ if n.ops > 0 || n.source.is_some() => None,
            (false, _) => Some(Base::Absent),
            (true, Some(etag)) => Some(Base::Etag(etag.clone())),
            (true, None) => None,
        };
        let unlinked = n.unlinked || n.unlinking;
        let s = n.staged.as_mut()?;
        if unlinked {
            // Kept for its open handles only, never uploaded: nothing to
            // journal (a crash must not bring the name back), and no longer
            // a copy of any object.
            if s.maybe_tagged {
                self.inner.staging.untag_clean(&s.file);
                s.maybe_tagged = false;
            }
            return None;
        }
        let mut failed = None;
        // Rewritten too when a write moved the mtime past the second the
        // entry holds, or cleared set-ID bits: a crash would otherwise
        // upload the new bytes with the attributes from before them.
        if !s.journaled || s.journaled_as != JournalEntry::changing(&posix) {
            let entry = JournalEntry {
                base,
                ..JournalEntry::new(&key, &posix)
            };
            failed = self.journal_copy(s, &entry);
            // No longer a copy of the object its cache tag names. Untagged
            // after the journal entry is written, so that the file keeps an
            // extended attribute throughout (see `upload_now`); a crash in
            // between leaves both, and the journal entry wins.
            if s.maybe_tagged {
                self.inner.staging.untag_clean(&s.file);
                s.maybe_tagged = false;
            }
        }
        failed
    }

    /// Writes staged copy `s`'s journal entry (the key its data belongs
    /// at, its attributes, what the bucket had there). Logged when it
    /// cannot be written; the error is returned for the callers that must
    /// not go on without it.
    pub(super) fn journal_copy(
        &self,
        s: &mut Staged,
        entry: &JournalEntry,
    ) -> Option<std::io::Error> {
        match self.inner.staging.journal(s.id, &s.file, entry) {
            Ok(()) => {
                s.journaled = true;
                s.journaled_as = (entry.perm, entry.mtime);
                None
            }
            Err(e) => {
                tracing::error!(key = %entry.key, error = %e, "could not journal a staged file");
                Some(e)
            }
        }
    }

    /// [`Self::write_entry`] before the bytes of `ino` change (a write, a
    /// truncation, a writer the kernel lets write the copy itself; the
    /// caller marks the copy dirty once it changed). When the journal entry
    /// cannot be written, a full disk first gets the room clean copies hold
    /// and any space on its way back; then the change is refused, the copy
    /// not marked changed: a change told done must survive a crash, and
    /// one refused must change nothing.
    fn journal_before_change<'a>(
        &'a self,
        mut st: MutexGuard<'a, InodeTable>,
        ino: u64,
    ) -> (MutexGuard<'a, InodeTable>, FsResult<()>) {
        let Some(e) = self.write_entry(&mut st, ino) else {
            return (st, Ok(()));
        };
        if !out_of_space(&e) {
            return (st, Err(self.local_failure(&e)));
        }
        drop(st);
        self.room_for_copy(ino, 0);
        let mut st = self.lock();
        let journalled = match self.write_entry(&mut st, ino) {
            None => Ok(()),
            Some(e) => Err(self.local_failure(&e)),
        };
        (st, journalled)
    }

    fn new_file_handle(&self, ino: u64, write: bool) -> u64 {
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        self.inner.handles.lock().unwrap().insert(
            fh,
            Arc::new(HandleKind::File {
                ino,
                write,
                reader: Mutex::new(Reader::default()),
                direct: Default::default(),
            }),
        );
        fh
    }

    pub fn create(
        &self,
        parent: u64,
        name: &str,
        perm: u32,
        uid: u32,
        gid: u32,
        exclusive: bool,
    ) -> FsResult<(Attr, u64)> {
        self.check_writable()?;
        match self.resolve(parent, name) {
            Ok(ino) if !exclusive => {
                let fh = self.open(
                    ino,
                    OpenFlags {
                        write: true,
                        truncate: true,
                    },
                )?;
                let mut st = self.lock();
                let n = st.node_mut(ino)?;
                n.lookups += 1;
                return Ok((n.attr(ino), fh));
            }
            Ok(_) => return Err(libc::EEXIST),
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        self.check_new_name(parent, name, false)?;
        let (id, file) = self
            .inner
            .staging
            .create()
            .map_err(|e| errno_of_local(&e))?;
        let now = SystemTime::now();
        let posix = Posix {
            kind: Kind::File,
            perm: perm & 0o7777,
            uid,
            gid,
            mtime: now,
            ctime: now,
        };
        let mut st = self.lock();
        let ino = st.new_node(parent, name, Kind::File, posix);
        {
            let n = st.node_mut(ino)?;
            n.lookups += 1;
            n.open_handles += 1;
            n.stage(Staged::from_pool(id, Arc::new(file)));
        }
        // A new empty file must reach the bucket too.
        self.mark_dirty(&mut st, ino);
        let attr = st.node(ino)?.attr(ino);
        drop(st);
        Ok((attr, self.new_file_handle(ino, true)))
    }

    pub fn open(&self, ino: u64, flags: OpenFlags) -> FsResult<u64> {
        self.open_file(ino, flags).map(|o| o.fh)
    }

    /// Opens a file; says whether the kernel may keep its page cache of it:
    /// yes unless the store's object was seen changed by another client
    /// since the kernel's last open (this mount's own changes go through
    /// the kernel, which keeps its cache right; a node new to the table is
    /// new to the kernel too, which has nothing cached of it).
    pub fn open_file(&self, ino: u64, flags: OpenFlags) -> FsResult<Opened> {
        self.open_file_by(ino, flags, 0)
    }

    /// As [`Self::open_file`], by process `reader` (whose opens in name
    /// order are a walk that files are fetched ahead of: `fetchahead`).
    pub fn open_file_by(&self, ino: u64, flags: OpenFlags, reader: u32) -> FsResult<Opened> {
        {
            let st = self.lock();
            let n = st.node(ino)?;
            if n.kind == Kind::Dir {
                return Err(libc::EISDIR);
            }
        }
        if flags.write {
            self.check_writable()?;
            let emptied = self.ensure_staged(ino, flags.truncate)?;
            let mut st = self.lock();
            if flags.truncate {
                st = self.wait_uploads(st, &[ino]);
                // Journalled (and no longer tagged clean) before it changes.
                let journalled;
                (st, journalled) = self.journal_before_change(st, ino);
                if let Err(e) = journalled {
                    self.refused_change(&mut st, ino, emptied);
                    return Err(e);
                }
                let n = st.node_mut(ino)?;
                if let Some(s) = n.staged.as_mut() {
                    s.stream.stop();
                }
                if n.size != 0 {
                    let s = n.staged.as_ref().expect("staged above");
                    if let Err(e) = s.file.set_len(0) {
                        self.refused_change(&mut st, ino, emptied);
                        return Err(errno_of_local(&e));
                    }
                }
                if n.size != 0 || emptied.is_some_and(|was| was != 0) {
                    n.size = 0;
                    n.mtime = SystemTime::now();
                    n.ctime = n.mtime;
                }
                // (An object with no copy here got an empty one: changed.)
                self.mark_dirty(&mut st, ino);
                drop(self.charge_to(st, ino, 0, false));
            }
        }
        let mut st = self.lock();
        let mut workers = 0;
        if !flags.write {
            st = self.wait_fetched_ahead(st, ino);
            let key = self.key_of(&st, ino);
            self.attach_cached(&mut st, ino, &key);
            st.node_mut(ino)?.open_handles += 1;
            workers = self.note_read_open(&mut st, ino, reader);
        }
        let n = st.node_mut(ino)?;
        let keep_cache = !flags.truncate && !n.changed_remotely;
        n.changed_remotely = false;
        // The node keeps this copy while the handle is open: it is let go
        // (retired or discarded) only when no handle is left.
        let local = match flags.write {
            false => n.staged.as_ref().map(|s| s.file.clone()),
            true => None,
        };
        drop(st);
        self.fetch_ahead(workers);
        Ok(Opened {
            fh: self.new_file_handle(ino, flags.write),
            keep_cache,
            local,
        })
    }

    /// The FUSE adapter answers an open of `ino` in passthrough mode: the
    /// kernel reads (and maps) its local copy itself from now on.
    pub fn lend_to_kernel(&self, ino: u64) {
        self.inner.passthrough_opens.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = self
            .lock()
            .nodes
            .get_mut(&ino)
            .and_then(|n| n.staged.as_mut())
        {
            s.lent = true;
        }
    }

    /// Opens served from the local copy by the kernel itself so far.
    pub fn passthrough_opens(&self) -> u64 {
        self.inner.passthrough_opens.load(Ordering::Relaxed)
    }

    /// Write handle `fh` was answered in passthrough mode (its inode has
    /// passthrough readers; the kernel wants all its opens alike): the
    /// kernel writes to the local copy itself and the mount sees no write.
    /// The copy counts as changed from now on (journalled, so a crash
    /// keeps it), and its size and time are taken from the copy at every
    /// flush, fsync and release of the handle (`sync_direct`).
    /// (`drop_set_ids`: the writer may not keep set-ID bits; they go now,
    /// since its writes never pass through the mount.)
    pub fn writes_directly(&self, fh: u64, drop_set_ids: bool) -> FsResult<()> {
        let h = self.file_handle(fh)?;
        let HandleKind::File {
            ino, write, direct, ..
        } = h.as_ref()
        else {
            unreachable!()
        };
        if !write {
            return Ok(());
        }
        let mut st = self.lock();
        let n = st.node_mut(*ino)?;
        let mode_before = (n.perm, n.ctime);
        let s = n.staged.as_mut().ok_or(libc::EIO)?;
        s.direct_writers += 1;
        s.stream.stop();
        direct.store(true, Ordering::Relaxed);
        if drop_set_ids {
            st.node_mut(*ino)?.drop_set_ids();
        }
        let (mut st, journalled) = self.journal_before_change(st, *ino);
        if let Err(e) = journalled {
            // Refused: nothing changed, the mode included, and no writer
            // of the copy for the release to upload.
            direct.store(false, Ordering::Relaxed);
            if let Ok(n) = st.node_mut(*ino) {
                (n.perm, n.ctime) = mode_before;
                if let Some(s) = n.staged.as_mut() {
                    s.direct_writers -= 1;
                    self.unjournal_if_clean(s);
                }
            }
            return Err(e);
        }
        self.mark_dirty(&mut st, *ino);
        Ok(())
    }

    /// A truncation of `ino` (pinned by `ensure_staged`, unpinned here)
    /// refused before its copy changed. A copy changed before stays queued
    /// for upload. A clean one loses the journal entry written for the
    /// change; the empty copy `ensure_staged` attached in place of an
    /// object of size `emptied` goes, whoever has the file open (readers
    /// would see it empty), and the node has the object's size again; any
    /// other clean copy nobody holds goes to the cache.
    fn refused_change(&self, st: &mut InodeTable, ino: u64, emptied: Option<u64>) {
        let Some(n) = st.nodes.get_mut(&ino) else {
            return;
        };
        n.open_handles -= 1;
        let Some(s) = n.staged.as_mut() else { return };
        if s.dirty() || s.uploading {
            self.enqueue_if_idle(st, ino);
            return;
        }
        self.unjournal_if_clean(s);
        match emptied {
            Some(size) => {
                n.size = size;
                self.discard_staged(n);
            }
            None if n.open_handles == 0 => self.retire_copy(st, ino),
            None => {}
        }
    }

    /// A change refused after `journal_before_change` wrote its entry left
    /// the copy as it was: the entry of a copy that is clean goes again,
    /// else the next mount would upload the copy as data left by a crash
    /// (over another client's newer object, when the entry has no base).
    fn unjournal_if_clean(&self, s: &mut Staged) {
        if s.journaled
            && !s.dirty()
            && !s.uploading
            && s.direct_writers == 0
            && s.writes_in_flight == 0
        {
            self.inner.staging.clear_journal(s.id, &s.file);
            s.journaled = false;
        }
    }

    /// After writes the kernel made to `ino`'s copy itself: the node takes
    /// the copy's size and time and is dirty again (uploaded anew). The
    /// bytes are counted against the cache bound without waiting: they are
    /// written already.
    fn sync_direct<'a>(
        &'a self,
        st: MutexGuard<'a, InodeTable>,
        ino: u64,
    ) -> MutexGuard<'a, InodeTable> {
        let Some(meta) = st
            .nodes
            .get(&ino)
            .and_then(|n| n.staged.as_ref())
            .and_then(|s| s.file.metadata().ok())
        else {
            return st;
        };
        let (mut st, room) = self.charge_to(st, ino, meta.len(), false);
        if room.is_err() {
            tracing::warn!(
                ino,
                "bytes written past the cache bound through a passthrough open"
            );
        }
        if let Some(n) = st.nodes.get_mut(&ino) {
            let mtime = meta.modified().unwrap_or_else(|_| SystemTime::now());
            if (n.size, n.mtime) != (meta.len(), mtime) {
                n.ctime = SystemTime::now(); // written, not only closed
            }
            n.size = meta.len();
            n.mtime = mtime;
        }
        self.mark_dirty(&mut st, ino);
        st
    }

    /// `sync_direct` for a handle the kernel writes through itself.
    fn sync_if_direct(&self, h: &HandleKind) {
        if let HandleKind::File { ino, direct, .. } = h
            && direct.load(Ordering::Relaxed)
        {
            drop(self.sync_direct(self.lock(), *ino));
        }
    }

    fn file_handle(&self, fh: u64) -> FsResult<Arc<HandleKind>> {
        let h = self
            .inner
            .handles
            .lock()
            .unwrap()
            .get(&fh)
            .cloned()
            .ok_or(libc::EBADF)?;
        match h.as_ref() {
            HandleKind::File { .. } => Ok(h),
            HandleKind::Dir { .. } => Err(libc::EISDIR),
        }
    }

    pub fn read(&self, fh: u64, offset: u64, len: u32) -> FsResult<Bytes> {
        let h = self.file_handle(fh)?;
        let HandleKind::File { ino, reader, .. } = h.as_ref() else {
            unreachable!()
        };
        let (staged, key, size, version) = {
            let st = self.lock();
            let n = st.node(*ino)?;
            (
                n.staged.as_ref().map(|s| (s.file.clone(), s.content)),
                self.read_key(&st, *ino),
                n.size,
                (n.content, n.etag.clone()),
            )
        };
        // A file that began reading the store's object reads no other
        // version: neither the store's once the node learnt of another
        // (its size, too, is the other's), nor a local copy of another.
        let pinned = reader.lock().unwrap().content();
        let other = |made: u64| pinned.is_some_and(|c| c != made);
        if other(staged.as_ref().map_or(version.0, |s| s.1)) {
            return Err(self.stale_read(*ino, &key, None));
        }
        if offset >= size {
            return Ok(Bytes::new());
        }
        let len = (len as u64).min(size - offset);
        let staged = match staged {
            None if size <= WHOLE_FILE_MAX && self.fetch_whole(*ino, &key)? => {
                let st = self.lock();
                (st.node(*ino)?.staged.as_ref()).map(|s| (s.file.clone(), s.content))
            }
            staged => staged,
        };
        if let Some((file, made)) = staged {
            if other(made) {
                return Err(self.stale_read(*ino, &key, None));
            }
            let mut buf = vec![0u8; len as usize];
            let n = file
                .read_at(&mut buf, offset)
                .map_err(|e| errno_of_local(&e))?;
            buf.truncate(n);
            return Ok(Bytes::from(buf));
        }
        let mut reader = reader.lock().unwrap();
        reader.pin(version.0, version.1.as_deref());
        let mut read = reader.read(&self.inner.rt, &self.inner.store, &key, size, offset, len);
        if let Err(StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. }) = read {
            // A copy of this mount's (a rename, a metadata rewrite) may have
            // given the object a new ETag, or moved it to another key,
            // meanwhile: the same bytes.
            let (now_at, (content, etag)) = {
                let st = self.lock();
                let n = st.node(*ino)?;
                (self.read_key(&st, *ino), (n.content, n.etag.clone()))
            };
            let repinned = reader.pin(content, etag.as_deref());
            if repinned || (now_at != key && reader.content() == Some(content)) {
                read = reader.read(
                    &self.inner.rt,
                    &self.inner.store,
                    &now_at,
                    size,
                    offset,
                    len,
                );
            }
        }
        match read {
            Ok(data) => Ok(data),
            // The version this file reads is no longer in the store (another
            // client rewrote it, this mount replaced or deleted the name):
            // a stale handle, never another version's bytes. The next open
            // looks again.
            Err(e @ (StoreError::PreconditionFailed { .. } | StoreError::NotFound { .. })) => {
                Err(self.stale_read(*ino, &key, Some(&e)))
            }
            Err(e) => Err(errno_of(&e)),
        }
    }

    /// An open file's read of another version than the one it reads
    /// (`error`: the store's answer, when it told): logged, the node looked
    /// up again at its next use, and ESTALE.
    fn stale_read(&self, ino: u64, key: &str, error: Option<&StoreError>) -> Errno {
        match error {
            Some(e) => tracing::warn!(key, error = %e, "{STALE_READ}"),
            None => tracing::warn!(key, "{STALE_READ}"),
        }
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(&ino) {
            self.expire(n);
        }
        libc::ESTALE
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.write_by(fh, offset, data, true)
    }

    /// As [`Self::write`], by a caller who may keep set-ID bits (root) or
    /// not (then they go).
    pub fn write_by(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        keeps_set_ids: bool,
    ) -> FsResult<u32> {
        let h = self.file_handle(fh)?;
        let HandleKind::File { ino, write, .. } = h.as_ref() else {
            unreachable!()
        };
        if !write {
            return Err(libc::EBADF);
        }
        let end = offset + data.len() as u64;
        let file = {
            let mut st = self.lock();
            let journaled = st.node(*ino)?.staged.as_ref().ok_or(libc::EIO)?.journaled;
            // The mtime before a first write set it, for a refusal to undo.
            let mut undo_mtime = None;
            if !journaled {
                // Before the bytes change: a crash after the write must
                // find the journal entry, never a clean copy's cache tag;
                // with the mtime the write gives (else it is written again
                // after the write).
                let n = st.node_mut(*ino)?;
                undo_mtime = Some(n.mtime);
                n.mtime = SystemTime::now();
                let journalled;
                (st, journalled) = self.journal_before_change(st, *ino);
                if let Err(e) = journalled {
                    self.refused_write(&mut st, *ino, undo_mtime);
                    return Err(e);
                }
            }
            // Counted from here, before any wait for room, until the bytes
            // are in: an upload that finishes meanwhile leaves the journal
            // entry and tags nothing (`upload_now`).
            let s = st.node_mut(*ino)?.staged.as_mut().ok_or(libc::EIO)?;
            let (file, charged) = (s.file.clone(), s.charged);
            s.writes_in_flight += 1;
            if end > charged {
                let room;
                (st, room) = self.charge_to(st, *ino, end, true);
                if let Err(e) = room {
                    Self::write_done(&mut st, *ino, &file);
                    self.refused_write(&mut st, *ino, undo_mtime);
                    return Err(e);
                }
            }
            file
        };
        let written = self.write_staged(*ino, &file, data, offset);
        let mut st = self.lock();
        Self::write_done(&mut st, *ino, &file);
        if let Err(e) = written {
            // Part of the bytes may be in: the copy no longer equals what
            // the bucket has, whatever the caller is told.
            self.mark_dirty(&mut st, *ino);
            return Err(e);
        }
        let n = st.node_mut(*ino)?;
        if !keeps_set_ids {
            n.drop_set_ids();
        }
        let size_before = n.size;
        n.size = n.size.max(offset + data.len() as u64);
        n.mtime = SystemTime::now();
        n.ctime = n.mtime;
        let changing = JournalEntry::changing(&n.posix());
        let needs_journal = n
            .staged
            .as_ref()
            .is_some_and(|s| !s.journaled || s.journaled_as != changing);
        if let Some(s) = n.staged.as_mut()
            && !needs_journal
        {
            s.touch(); // fast path: journal already points here
        } else {
            self.mark_dirty(&mut st, *ino);
        }
        self.stream_after_write(&mut st, *ino, offset, data.len() as u64, size_before);
        Ok(data.len() as u32)
    }

    /// A write refused before its bytes went in changes nothing: the
    /// mtime it set (`undo_mtime`: the one before) and the journal entry
    /// written for it on a clean copy go again.
    fn refused_write(&self, st: &mut InodeTable, ino: u64, undo_mtime: Option<SystemTime>) {
        let Some(n) = st.nodes.get_mut(&ino) else {
            return;
        };
        if let Some(mtime) = undo_mtime {
            n.mtime = mtime;
        }
        if let Some(s) = n.staged.as_mut() {
            self.unjournal_if_clean(s);
        }
    }

    /// A write into `file` (the copy of `ino` it began on) is over.
    fn write_done(st: &mut InodeTable, ino: u64, file: &Arc<std::fs::File>) {
        if let Some(s) = st
            .nodes
            .get_mut(&ino)
            .and_then(|n| n.staged.as_mut())
            .filter(|s| Arc::ptr_eq(&s.file, file))
        {
            s.writes_in_flight -= 1;
        }
    }

    /// Whether the closes of `fh` must reach [`Self::flush`]: only where
    /// it does what the handle's release does not (the upload of a sync
    /// mount's writer; the size of a copy the kernel writes itself, for a
    /// `stat` right after `close`). A reader's flush does nothing, and an
    /// async writer's queues the upload, as its release does; those the
    /// kernel may skip (`FOPEN_NOFLUSH`): one round trip less per `close`.
    /// Asked once the open's I/O mode is settled (`writes_directly`).
    pub fn flush_needed(&self, fh: u64) -> bool {
        let Ok(h) = self.file_handle(fh) else {
            return true;
        };
        let HandleKind::File { write, direct, .. } = h.as_ref() else {
            return true;
        };
        *write && (self.opts().upload == UploadMode::Sync || direct.load(Ordering::Relaxed))
    }

    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let h = self.file_handle(fh)?;
        let HandleKind::File { ino, write, .. } = h.as_ref() else {
            unreachable!()
        };
        if !write {
            return Ok(());
        }
        self.sync_if_direct(&h);
        match self.opts().upload {
            UploadMode::Sync if self.new_and_empty(*ino) => {
                // Shells open a redirect target, dup it and close the
                // original before writing, so the first close of a new file
                // usually comes before its data. Uploading the empty object
                // then would double the cost of every file; the data's own
                // close uploads it, and the last close (release) uploads a
                // file that stayed empty.
                Ok(())
            }
            UploadMode::Sync => self.upload_now(*ino, RetryPolicy::INTERACTIVE),
            UploadMode::Async => {
                let mut st = self.lock();
                self.enqueue_if_idle(&mut st, *ino);
                Ok(())
            }
        }
    }

    /// Never uploaded and still without content.
    fn new_and_empty(&self, ino: u64) -> bool {
        let st = self.lock();
        st.nodes
            .get(&ino)
            .is_some_and(|n| !n.remote && n.size == 0 && n.staged.is_some())
    }

    /// The file's data and attributes are in the store when this returns.
    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let h = self.file_handle(fh)?;
        let HandleKind::File { ino, .. } = h.as_ref() else {
            unreachable!()
        };
        self.sync_if_direct(&h);
        self.upload_now(*ino, RetryPolicy::INTERACTIVE)?;
        let key = {
            let st = self.lock();
            self.key_of(&st, *ino)
        };
        self.drain_ops(&[key])
    }

    /// Every namespace change queued so far is in the store when this
    /// returns (more than the directory asks for, never less).
    pub fn fsyncdir(&self) -> FsResult<()> {
        self.drain_ops(&[])
    }

    pub fn release(&self, fh: u64) -> FsResult<()> {
        let Some(h) = self.inner.handles.lock().unwrap().remove(&fh) else {
            return Err(libc::EBADF);
        };
        let HandleKind::File { ino, direct, .. } = h.as_ref() else {
            return Ok(());
        };
        let mut st = self.lock();
        if direct.load(Ordering::Relaxed) {
            st = self.sync_direct(st, *ino);
            if let Some(s) = st.nodes.get_mut(ino).and_then(|n| n.staged.as_mut()) {
                s.direct_writers -= 1;
            }
        }
        let Ok(n) = st.node_mut(*ino) else {
            return Ok(());
        };
        n.open_handles = n.open_handles.saturating_sub(1);
        if n.open_handles == 0 {
            if n.unlinked {
                self.discard_staged(n);
            } else {
                self.retire_copy(&mut st, *ino);
            }
        }
        self.enqueue_if_idle(&mut st, *ino);
        st.prune(*ino);
        Ok(())
    }

    pub fn setattr(&self, ino: u64, set: SetAttr) -> FsResult<Attr> {
        self.check_writable()?;
        let kind = {
            let st = self.lock();
            st.node(ino)?.kind
        };
        if let Some(size) = set.size {
            if kind == Kind::Dir {
                return Err(libc::EISDIR);
            }
            let emptied = self.ensure_staged(ino, size == 0)?;
            let st = self.lock();
            let st = self.wait_uploads(st, &[ino]);
            let (mut st, mut room) = self.charge_to(st, ino, size, true);
            if room.is_ok() {
                // Journalled (and no longer tagged clean) before it changes.
                (st, room) = self.journal_before_change(st, ino);
            }
            let n = st.node_mut(ino)?;
            let s = n.staged.as_ref().expect("staged above");
            let resized = room.and_then(|()| s.file.set_len(size).map_err(|e| errno_of_local(&e)));
            if let Err(e) = resized {
                self.refused_change(&mut st, ino, emptied);
                return Err(e);
            }
            let n = st.node_mut(ino)?;
            n.open_handles -= 1; // unpin (ensure_staged pinned it)
            if let Some(s) = n.staged.as_mut() {
                s.stream.stop();
            }
            n.size = size;
            n.mtime = set.mtime.unwrap_or_else(SystemTime::now);
            self.mark_dirty(&mut st, ino);
        }
        let mut set = set;
        if set.kill_set_ids && set.perm.is_none() && kind != Kind::Dir {
            let perm = self.lock().node(ino)?.perm;
            let cleared = layout::without_set_ids(perm);
            set.perm = (cleared != perm).then_some(cleared);
        }
        let meta_change =
            set.perm.is_some() || set.uid.is_some() || set.gid.is_some() || set.mtime.is_some();
        let (staged, key, posix, remote, size, etag) = {
            let mut st = self.lock();
            let key = if kind == Kind::Dir {
                self.dir_prefix_of(&st, ino)
            } else {
                self.key_of(&st, ino)
            };
            let n = st.node_mut(ino)?;
            if let Some(p) = set.perm {
                n.perm = p & 0o7777;
            }
            if let Some(u) = set.uid {
                n.uid = u;
            }
            if let Some(g) = set.gid {
                n.gid = g;
            }
            if let Some(t) = set.mtime {
                n.mtime = t;
            }
            n.ctime = SystemTime::now();
            // A file's object is as large as the file (it is not staged).
            let size = (kind == Kind::File).then_some(n.size);
            let etag = n.etag.clone();
            (n.staged.is_some(), key, n.posix(), n.remote, size, etag)
        };
        // The attributes travel with the next upload of the staged copy,
        // if it still has one to make: since the first look its upload may
        // have landed and its last open closed, sending it to the cache;
        // then they go on their own, as for a file without one (or with a
        // clean copy, a reader's: nothing to upload until it changes).
        let travels = meta_change && ino != ROOT_INO && staged && {
            let mut st = self.lock();
            let copy = (st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut()))
                .filter(|s| s.dirty() || s.direct_writers > 0);
            let found = copy.is_some();
            if let Some(s) = copy {
                s.journaled = false;
                s.stream.stop(); // the upload begun while writing has the old ones
            }
            if found {
                self.mark_dirty(&mut st, ino);
            }
            found
        };
        if meta_change && ino != ROOT_INO && !travels {
            if self.queued_namespace() {
                let meta = layout::encode(&posix);
                let mut st = self.lock();
                let pending = st.node(ino)?.ops > 0;
                let op = if kind == Kind::Dir && !remote && !pending {
                    NsOp::Put {
                        key,
                        meta,
                        body: Vec::new(),
                    }
                } else {
                    NsOp::SetMeta { key, meta, size }
                };
                // A marker written here may replace one the mount has not
                // seen: never cancelled by a later rmdir.
                let missed = self.queue_op_with(&mut st, op, Some(ino), false);
                drop(st);
                self.settle(missed)?;
            } else {
                let written =
                    self.store_attrs(&key, &posix, remote, kind, size, etag.as_deref())?;
                // Rewritten here: the object's date is new, and its
                // attributes are known as of now (a HEAD sent before the
                // change must not bring the old ones back).
                let mut st = self.lock();
                let n = st.node_mut(ino)?;
                if n.etag == etag {
                    self.rewrote(n, &key, written);
                }
                n.remote_modified = None;
                n.own_write = Some(SystemTime::now());
                n.validated = Instant::now();
            }
        }
        if set.size.is_some() || travels {
            let idle = {
                let st = self.lock();
                st.node(ino)?.open_handles == 0
            };
            // truncate(2) or chmod by path: nothing will close it, so
            // upload now (sync) or queue it (async).
            if idle {
                match self.opts().upload {
                    UploadMode::Sync => {
                        if let Err(e) = self.upload_now(ino, RetryPolicy::INTERACTIVE) {
                            // Retried in the background, as a closed
                            // file's failed upload is.
                            let mut st = self.lock();
                            self.enqueue_if_idle(&mut st, ino);
                            return Err(e);
                        }
                    }
                    UploadMode::Async => {
                        let mut st = self.lock();
                        self.enqueue_if_idle(&mut st, ino);
                    }
                }
            }
        }
        let st = self.lock();
        Ok(st.node(ino)?.attr(ino))
    }

    /// Rewrites an object's metadata in place (copy onto itself; `size`,
    /// when known, spares it a HEAD), or writes a marker for a directory
    /// that had none; the store's ETag for it, when it says and (for a
    /// copy) it is of the version with ETag `etag`.
    fn store_attrs(
        &self,
        key: &str,
        posix: &Posix,
        remote: bool,
        kind: Kind,
        size: Option<u64>,
        etag: Option<&str>,
    ) -> FsResult<Option<String>> {
        let meta: PutMeta = layout::encode(posix);
        let store = &self.inner.store;
        let policy = RetryPolicy::INTERACTIVE;
        if kind == Kind::Dir && !remote {
            return self
                .block_on(retry(policy, "mkdir", || {
                    store.put(key, Bytes::new(), &meta)
                }))
                .map_err(|e| errno_of(&e));
        }
        match size {
            Some(size) => self.copy_known(key, size, key, Some(&meta), etag),
            None => self
                .call("set attributes", || store.copy(key, None, key, Some(&meta)))
                .map(|_| None),
        }
    }
}
