//! The filesystem core ([`ObjectFs`]): the shared state and the helpers
//! every operation uses; the operations themselves live in the submodules.
//!
//! Parts: `inodes` is the inode table (plain data, no store calls);
//! `uploads` is the upload queue (background workers, the upload delay,
//! recovery of an earlier mount's staged data, the flush at unmount);
//! `cache` (plain data) and `copies` keep clean copies of file data within
//! the cache bound; `opqueue` (plain data), `ops` and `rename` queue,
//! journal and send namespace changes in async mode; `streaming` uploads
//! the parts of a file being appended to while it is written; `namespace`,
//! `listing` and `files` are the file-system operations on top of them
//! (names, directory listings, file data), and `subtree` the one listing
//! of a whole subtree that a walk over many stale directories takes instead
//! of a probe and a listing per directory; `ahead` lists sibling
//! directories ahead of a walk of readdirs; `fetchahead` fetches the small
//! files of a directory ahead of a reader opening them in name order;
//! `prefetch` fetches the metadata of listed entries in the background, a
//! lookup's first. Store failures
//! become errnos in one place, `errno_of` (the cache directory's own
//! failures: `errno_of_local`).
//!
//! Concurrency: one mutex (`state`) guards the inode table and is never held
//! across a store call. A node being uploaded is marked `uploading`;
//! operations that change its key or content length (rename, unlink,
//! truncate) wait on `changed` until the upload is over, so an upload always
//! lands at the key the node had when it started, and a later upload is
//! queued if the data changed meanwhile (`dirty_gen` vs `clean_gen`).
//!
//! All methods block the calling thread (FUSE request threads); store calls
//! run on the tokio runtime through `Handle::block_on`.

mod ahead;
mod cache;
mod copies;
mod fetchahead;
mod files;
mod health;
mod inodes;
mod listing;
mod namespace;
mod opqueue;
mod ops;
mod prefetch;
mod rename;
mod streaming;
mod subtree;
mod uploads;

use super::layout::{self, Kind, Posix};
use super::oplog::OpLog;
use super::reader::Reader;
use super::staging::StagingArea;
use super::transfer::{RetryPolicy, retry};
use super::{DirEntry, Errno, FsOptions, FsResult, ROOT_INO};
use crate::store::{ObjectStore, StoreError};
use cache::CacheIndex;
use inodes::{InodeTable, Node};
use opqueue::OpQueue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::runtime::Handle as RtHandle;
pub use uploads::Pending;
use uploads::UploadQueue;

/// How long a lookup or readdirplus waits for a readdir's metadata prefetch.
const PREFETCH_WAIT: Duration = Duration::from_secs(2);

/// Maps a store failure to what a syscall can say: the one place store
/// errors become errnos.
fn errno_of(e: &StoreError) -> Errno {
    match e {
        StoreError::NotFound { .. } => libc::ENOENT,
        StoreError::AccessDenied { .. } => libc::EACCES,
        StoreError::PreconditionFailed { .. }
        | StoreError::Throttled { .. }
        | StoreError::Transient { .. }
        | StoreError::Permanent { .. } => libc::EIO,
    }
}

/// The cache directory's failure as the caller's errno: a full disk or
/// quota, a file too large for it, no file descriptor or memory left, say
/// so (the caller can act on them); anything else is the mount's own I/O
/// error.
fn errno_of_local(e: &std::io::Error) -> Errno {
    match e.raw_os_error() {
        Some(
            c @ (libc::ENOSPC
            | libc::EDQUOT
            | libc::EFBIG
            | libc::EMFILE
            | libc::ENFILE
            | libc::ENOMEM),
        ) => c,
        _ => libc::EIO,
    }
}

enum HandleKind {
    File {
        ino: u64,
        write: bool,
        reader: Mutex<Reader>,
        /// The kernel writes through this handle to the local copy itself
        /// (`ObjectFs::writes_directly`).
        direct: std::sync::atomic::AtomicBool,
    },
    Dir {
        dir: u64,
        /// The snapshot readdir serves, taken at the first readdir.
        entries: Mutex<Option<Vec<DirEntry>>>,
    },
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    rt: RtHandle,
    opts: FsOptions,
    /// Declared (so dropped) before `staging`, which holds the cache
    /// directory's lock: the journal's unused blank files are deleted while
    /// the directory is still this mount's.
    oplog: OpLog,
    staging: StagingArea,
    state: Mutex<InodeTable>,
    /// Signalled whenever an upload or a fetch ahead ends.
    changed: Condvar,
    handles: Mutex<HashMap<u64, Arc<HandleKind>>>,
    next_fh: AtomicU64,
    /// Opens the kernel serves from the local copy itself (`iomode`).
    passthrough_opens: AtomicU64,
    /// The run of failed store changes going on now, if any.
    health: Mutex<health::Health>,
    uploads: UploadQueue,
    /// The clean copies kept in the cache directory, and the bound (lock
    /// order: `state` first).
    cache: Mutex<CacheIndex>,
    /// Namespace changes on their way to the store (lock order: `state`
    /// first; their journal is `oplog`), the sender's wake-up, and how many
    /// callers are waiting for changes (the sender then skips the upload
    /// delay).
    ops: Mutex<OpQueue>,
    ops_notify: Arc<tokio::sync::Notify>,
    ops_urgent: AtomicUsize,
    /// Directories being walked by a reader (lock order: `state` first).
    walks: Mutex<fetchahead::Walks>,
}

/// The filesystem; cheap to clone (one shared core).
#[derive(Clone)]
pub struct ObjectFs {
    inner: Arc<Inner>,
}

impl ObjectFs {
    /// Opens the cache directory, sends whatever an earlier mount left
    /// journalled there (namespace changes, then file data), and starts the
    /// background uploader and the namespace change sender.
    pub fn new(store: Arc<dyn ObjectStore>, rt: RtHandle, opts: FsOptions) -> anyhow::Result<Self> {
        let staging = StagingArea::open(&opts.cache_dir)?;
        let oplog = OpLog::open(&opts.cache_dir)?;
        let now = SystemTime::now();
        let root = Posix {
            kind: Kind::Dir,
            perm: opts.defaults.perm(Kind::Dir),
            uid: opts.defaults.uid,
            gid: opts.defaults.gid,
            mtime: now,
            ctime: now,
        };
        let (uploads, upload_rx) = UploadQueue::new();
        let cache_size = opts.cache_size;
        let fs = ObjectFs {
            inner: Arc::new(Inner {
                store,
                rt,
                opts,
                staging,
                state: Mutex::new(InodeTable::new(root)),
                changed: Condvar::new(),
                handles: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
                passthrough_opens: AtomicU64::new(0),
                health: Mutex::new(health::Health::default()),
                uploads,
                cache: Mutex::new(CacheIndex::new(cache_size)),
                ops: Mutex::new(OpQueue::default()),
                oplog,
                ops_notify: Arc::new(tokio::sync::Notify::new()),
                ops_urgent: AtomicUsize::new(0),
                walks: Mutex::new(fetchahead::Walks::default()),
            }),
        };
        // Namespace changes first: data staged later may depend on them (a
        // file written again after its name was deleted).
        let last = fs.replay_ops()?;
        *fs.ops() = OpQueue::starting_after(last);
        fs.recover()?;
        fs.start_uploader(upload_rx);
        fs.start_op_sender();
        Ok(fs)
    }

    fn lock(&self) -> MutexGuard<'_, InodeTable> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn opts(&self) -> &FsOptions {
        &self.inner.opts
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.inner.rt.block_on(f)
    }

    // ----- keys -------------------------------------------------------------

    fn key_of(&self, st: &InodeTable, ino: u64) -> String {
        layout::object_key(&self.opts().prefix, &st.path_of(ino))
    }

    /// Where the node's object is read from: its key, or, until a queued
    /// directory rename has moved it, the key it is still at.
    fn read_key(&self, st: &InodeTable, ino: u64) -> String {
        match st.nodes.get(&ino).and_then(|n| n.source.clone()) {
            Some(source) => source,
            None => self.key_of(st, ino),
        }
    }

    fn dir_prefix_of(&self, st: &InodeTable, ino: u64) -> String {
        layout::dir_prefix(&self.opts().prefix, &st.path_of(ino))
    }

    fn child_key(&self, st: &InodeTable, parent: u64, name: &str) -> String {
        layout::object_key(&self.opts().prefix, &st.child_path(parent, name))
    }

    // ----- store calls and checks -------------------------------------------

    /// A store call a process is waiting on: retried with the interactive
    /// policy, a final failure turned into the errno the caller sees.
    fn call<T, F, Fut>(&self, what: &str, op: F) -> FsResult<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = crate::store::StoreResult<T>>,
    {
        self.block_on(retry(RetryPolicy::INTERACTIVE, what, op))
            .map_err(|e| errno_of(&e))
    }

    fn ttl_fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.opts().metadata_ttl
    }

    /// Makes what the mount knows of `n` stale: its next lookup, getattr
    /// or open asks the store.
    fn expire(&self, n: &mut Node) {
        match Instant::now().checked_sub(self.opts().metadata_ttl) {
            Some(t) => n.validated = n.validated.min(t),
            None => n.meta_known = false,
        }
    }

    /// ENAMETOOLONG when `name` in `parent` (a directory: `dir`) would get a
    /// key longer than the store takes: its upload would be refused for good.
    fn check_new_name(&self, parent: u64, name: &str, dir: bool) -> FsResult<()> {
        let len = {
            let st = self.lock();
            self.child_key(&st, parent, name).len() + usize::from(dir)
        };
        if len > crate::store::KEY_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        Ok(())
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.opts().read_only {
            Err(libc::EROFS)
        } else {
            Ok(())
        }
    }

    /// Whether a node's attributes may be served without asking the store:
    /// local state is the truth, or its metadata is known and fresh.
    fn attrs_current(&self, ino: u64, n: &Node) -> bool {
        ino == ROOT_INO
            || n.authoritative()
            || n.unlinked
            || (n.meta_known && self.ttl_fresh(n.validated))
    }

    // ----- waiting on the condvar -------------------------------------------

    /// Waits until none of `inos` is being uploaded.
    fn wait_uploads<'a>(
        &'a self,
        mut st: MutexGuard<'a, InodeTable>,
        inos: &[u64],
    ) -> MutexGuard<'a, InodeTable> {
        loop {
            let busy = inos.iter().any(|i| {
                st.nodes
                    .get(i)
                    .is_some_and(|n| n.busy || n.staged.as_ref().is_some_and(|s| s.uploading))
            });
            if !busy {
                return st;
            }
            st = self
                .inner
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits on `changed` while `pending` holds, [`PREFETCH_WAIT`] at most
    /// (a prefetch that never reports must not hang a caller).
    fn wait_while<'a>(
        &'a self,
        st: MutexGuard<'a, InodeTable>,
        pending: impl Fn(&InodeTable) -> bool,
    ) -> MutexGuard<'a, InodeTable> {
        self.wait_while_for(st, PREFETCH_WAIT, pending)
    }

    /// Waits on `changed` while `pending` holds, `bound` at most.
    fn wait_while_for<'a>(
        &'a self,
        mut st: MutexGuard<'a, InodeTable>,
        bound: Duration,
        pending: impl Fn(&InodeTable) -> bool,
    ) -> MutexGuard<'a, InodeTable> {
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if !pending(&st) || left.is_zero() {
                return st;
            }
            st = self
                .inner
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits until `ino` is no longer inside a renamed directory whose
    /// content is being read into the table (a LIST of its old prefix, a
    /// request per 1,000 keys). EIO once the store has failed for
    /// [`ops::DRAIN_WAIT`] of the wait.
    fn wait_filled<'a>(
        &'a self,
        mut st: MutexGuard<'a, InodeTable>,
        ino: u64,
    ) -> FsResult<MutexGuard<'a, InodeTable>> {
        let mut failing = Duration::ZERO;
        while st.being_filled(ino) {
            if failing >= ops::DRAIN_WAIT {
                tracing::error!("a renamed directory's content could not be listed in time");
                return Err(libc::EIO);
            }
            let t = Instant::now();
            st = self
                .inner
                .changed
                .wait_timeout(st, Duration::from_secs(1))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if self.store_failing().is_some() {
                failing += t.elapsed();
            }
        }
        Ok(st)
    }

    /// Waits until `inos` are idle, then marks them busy until the guard is
    /// dropped: uploads of them wait, so none can land at a key the caller
    /// is about to change or delete.
    fn claim(&self, inos: Vec<u64>) -> BusyGuard<'_> {
        let st = self.lock();
        let mut st = self.wait_uploads(st, &inos);
        for i in &inos {
            if let Some(n) = st.nodes.get_mut(i) {
                n.busy = true;
            }
        }
        BusyGuard { fs: self, inos }
    }

    // ----- the store's health -----------------------------------------------

    /// What an upload or a namespace change got from the store: a failure
    /// starts (or continues) a run of failures, logged once when it starts;
    /// a success ends it, logged once. What failed stays queued either way.
    fn note_store_result(&self, result: Result<(), &StoreError>) {
        let mut health = self.inner.health.lock().unwrap_or_else(|e| e.into_inner());
        let label = &self.opts().label;
        match result {
            Ok(()) => {
                if let Some(f) = health.succeeded() {
                    let secs = f.since.elapsed().unwrap_or_default().as_secs();
                    tracing::info!(mount = %label, failing_for_s = secs,
                        "the store takes this mount's changes again; what waited is being sent");
                }
            }
            // Not the store's health: the object went away meanwhile.
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => {
                if health.failed(e, std::time::SystemTime::now()) {
                    let what = match e {
                        StoreError::AccessDenied { .. } => {
                            "the store refuses this mount's credentials"
                        }
                        _ => "the store cannot be reached or fails",
                    };
                    tracing::error!(mount = %label, error = %e,
                        "{what}; writes stay in the cache directory and are sent once it works again");
                }
            }
        }
    }

    /// The run of failures going on now: since when, and its last error.
    pub fn store_failing(&self) -> Option<(std::time::SystemTime, String)> {
        let health = self.inner.health.lock().unwrap_or_else(|e| e.into_inner());
        health.current().map(|f| (f.since, f.message.clone()))
    }

    // ----- staged data ------------------------------------------------------

    /// Forgets a node's staged data (it was deleted or replaced).
    fn discard_staged(&self, node: &mut Node) {
        if let Some(s) = node.staged.take() {
            self.cache().credit(s.charged);
            self.inner.staging.discard(s.id, s.file, !s.lent);
        }
    }

    /// A file's name is gone (unlinked or replaced by a rename). Its staged
    /// data is dropped, or, while still open, kept for the open handles but
    /// never uploaded again.
    fn mark_unlinked(&self, node: &mut Node) {
        node.unlinked = true;
        node.remote = false;
        if node.open_handles == 0 {
            self.discard_staged(node);
        } else if let Some(s) = node.staged.as_mut() {
            node.unlinked_at = Some(Instant::now());
            s.stream.stop();
            s.forget_changes();
            self.inner.staging.clear_journal(s.id, &s.file);
        }
    }
}

/// Releases the nodes a namespace operation claimed, whatever its outcome.
struct BusyGuard<'a> {
    fs: &'a ObjectFs,
    inos: Vec<u64>,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.fs.lock();
        for i in &self.inos {
            if let Some(n) = st.nodes.get_mut(i) {
                n.busy = false;
            }
        }
        self.fs.inner.changed.notify_all();
        for i in &self.inos {
            st.prune(*i);
        }
    }
}
