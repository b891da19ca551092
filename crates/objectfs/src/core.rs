//! The filesystem core: an inode table over the object store, staging files
//! for writes, and the upload machinery.
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

use super::layout::{self, Kind, Posix};
use super::reader::Reader;
use super::staging::{JournalEntry, StagingArea};
use super::transfer::{RetryPolicy, download_to_file, retry, upload_file};
use super::{
    Attr, DirEntry, Errno, FsOptions, FsResult, OpenFlags, PlusEntry, ROOT_INO, SetAttr, UploadMode,
};
use crate::store::{ObjectMeta, ObjectStore, PutMeta, StoreError};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::runtime::Handle as RtHandle;

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
/// How long a lookup or readdirplus waits for a readdir's metadata prefetch.
const PREFETCH_WAIT: Duration = Duration::from_secs(2);
/// With `attrs_from_listing`, listed objects up to this size are still
/// HEADed: they may be symlinks, whose type lives in metadata.
const SYMLINK_PROBE_MAX: u64 = 1024;
const UPLOAD_WORKERS: usize = 8;

/// Maps a store failure to what a syscall can say.
fn errno_of(e: &StoreError) -> Errno {
    match e {
        StoreError::NotFound => libc::ENOENT,
        StoreError::Permanent(m) if m.contains("AccessDenied") => libc::EACCES,
        _ => libc::EIO,
    }
}

struct Staged {
    id: u64,
    file: Arc<File>,
    /// Bumped on every change of content or attributes to upload.
    dirty_gen: u64,
    /// The generation known to be in the store.
    clean_gen: u64,
    journaled: bool,
    uploading: bool,
    queued: bool,
}

impl Staged {
    fn dirty(&self) -> bool {
        self.dirty_gen != self.clean_gen
    }
}

struct Node {
    parent: u64,
    name: String,
    kind: Kind,
    size: u64,
    perm: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
    ctime: SystemTime,
    /// Kernel lookup count; the node may be dropped when it reaches zero.
    lookups: u64,
    /// Children present in the table (a node with children is kept).
    children: u32,
    /// When the attributes were last confirmed by the store.
    validated: Instant,
    /// False when the attributes came from a listing (no user metadata).
    meta_known: bool,
    /// An object (or directory marker) exists for this node in the store.
    remote: bool,
    staged: Option<Staged>,
    open_handles: u32,
    unlinked: bool,
    /// Claimed by a namespace operation (rename, unlink) that is changing
    /// this node's key: no upload may start until it is done.
    busy: bool,
    /// A readdir's background HEAD for this node is in flight; a lookup
    /// waits for it instead of sending its own.
    prefetching: bool,
    link_target: Option<Bytes>,
}

impl Node {
    fn posix(&self) -> Posix {
        Posix {
            kind: self.kind,
            perm: self.perm,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
        }
    }

    fn attr(&self, ino: u64) -> Attr {
        Attr {
            ino,
            kind: self.kind,
            size: match self.kind {
                Kind::Dir => 0,
                _ => self.size,
            },
            perm: self.perm,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            ctime: self.ctime,
        }
    }

    /// Local state the store cannot contradict.
    fn authoritative(&self) -> bool {
        self.staged.is_some() || self.open_handles > 0
    }
}

struct State {
    nodes: HashMap<u64, Node>,
    children: HashMap<(u64, String), u64>,
    negative: HashMap<(u64, String), Instant>,
    /// Directories whose complete listing is in the table, and since when:
    /// within the TTL a name not in the table does not exist.
    listed: HashMap<u64, Instant>,
    next_ino: u64,
}

enum HandleKind {
    File {
        ino: u64,
        write: bool,
        reader: Mutex<Reader>,
    },
    Dir {
        dir: u64,
        entries: Vec<DirEntry>,
    },
}

/// What a remote probe found at a name.
struct Found {
    kind: Kind,
    size: u64,
    posix: Posix,
    marker: bool,
    meta_known: bool,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    rt: RtHandle,
    opts: FsOptions,
    staging: StagingArea,
    state: Mutex<State>,
    /// Signalled whenever an upload ends.
    changed: Condvar,
    handles: Mutex<HashMap<u64, Arc<HandleKind>>>,
    next_fh: AtomicU64,
    upload_tx: tokio::sync::mpsc::UnboundedSender<u64>,
    /// Set by unmount: queued uploads skip what is left of their delay.
    hurry: tokio::sync::watch::Sender<bool>,
}

/// The filesystem; cheap to clone (one shared core).
#[derive(Clone)]
pub struct ObjectFs {
    inner: Arc<Inner>,
}

impl ObjectFs {
    /// Opens the cache directory, uploads whatever an earlier mount left
    /// staged there, and starts the background uploader.
    pub fn new(store: Arc<dyn ObjectStore>, rt: RtHandle, opts: FsOptions) -> anyhow::Result<Self> {
        let staging = StagingArea::open(&opts.cache_dir)?;
        let now = SystemTime::now();
        let root = Node {
            parent: ROOT_INO,
            name: String::new(),
            kind: Kind::Dir,
            size: 0,
            perm: opts.defaults.perm(Kind::Dir),
            uid: opts.defaults.uid,
            gid: opts.defaults.gid,
            mtime: now,
            ctime: now,
            lookups: 1,
            children: 0,
            validated: Instant::now(),
            meta_known: true,
            remote: true,
            staged: None,
            open_handles: 0,
            unlinked: false,
            busy: false,
            prefetching: false,
            link_target: None,
        };
        let (upload_tx, upload_rx) = tokio::sync::mpsc::unbounded_channel();
        let fs = ObjectFs {
            inner: Arc::new(Inner {
                store,
                rt,
                opts,
                staging,
                state: Mutex::new(State {
                    nodes: HashMap::from([(ROOT_INO, root)]),
                    children: HashMap::new(),
                    negative: HashMap::new(),
                    listed: HashMap::new(),
                    next_ino: ROOT_INO + 1,
                }),
                changed: Condvar::new(),
                handles: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
                upload_tx,
                hurry: tokio::sync::watch::Sender::new(false),
            }),
        };
        fs.recover()?;
        fs.start_uploader(upload_rx);
        Ok(fs)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn opts(&self) -> &FsOptions {
        &self.inner.opts
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.inner.rt.block_on(f)
    }

    /// Uploads files journalled by an earlier mount of this cache directory
    /// before serving anything, so no one sees the bucket without them.
    fn recover(&self) -> anyhow::Result<()> {
        let leftovers = self.inner.staging.leftovers()?;
        if leftovers.is_empty() {
            return Ok(());
        }
        tracing::info!(
            files = leftovers.len(),
            "uploading data staged by an earlier mount"
        );
        for (id, entry) in leftovers {
            let path = self.inner.staging.data_path(id);
            let file = Arc::new(File::open(&path)?);
            let size = file.metadata()?.len();
            let meta = layout::encode(&entry.posix());
            let store = &self.inner.store;
            self.block_on(upload_file(store, BACKGROUND, &entry.key, file.clone(), size, &meta))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "could not upload {:?}, staged by an earlier mount ({e}); it stays in the cache directory and is retried at the next mount",
                        entry.key
                    )
                })?;
            self.inner.staging.discard(id, file);
            tracing::info!(key = %entry.key, bytes = size, "recovered staged file");
        }
        Ok(())
    }

    /// Runs queued uploads, `UPLOAD_WORKERS` at a time, each once its
    /// `upload_delay` has passed (or at once when unmount hurries them).
    fn start_uploader(&self, mut rx: tokio::sync::mpsc::UnboundedReceiver<u64>) {
        let weak = Arc::downgrade(&self.inner);
        let permits = Arc::new(tokio::sync::Semaphore::new(UPLOAD_WORKERS));
        let delay = match self.opts().upload {
            UploadMode::Async => self.opts().upload_delay,
            UploadMode::Sync => Duration::ZERO,
        };
        let hurry = self.inner.hurry.subscribe();
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
                    // The semaphore is fair: uploads start in queue order.
                    let Ok(permit) = permits.acquire_owned().await else {
                        return;
                    };
                    let Some(inner) = weak.upgrade() else { return };
                    let fs = ObjectFs { inner };
                    tokio::task::spawn_blocking(move || {
                        fs.background_upload(ino);
                        drop(permit);
                    });
                });
            }
        });
    }

    // ----- paths and nodes -------------------------------------------------

    fn path_of(st: &State, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let Some(n) = st.nodes.get(&cur) else { break };
            parts.push(n.name.as_str());
            cur = n.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    fn key_of(&self, st: &State, ino: u64) -> String {
        layout::object_key(&self.opts().prefix, &Self::path_of(st, ino))
    }

    fn dir_prefix_of(&self, st: &State, ino: u64) -> String {
        layout::dir_prefix(&self.opts().prefix, &Self::path_of(st, ino))
    }

    fn child_key(&self, st: &State, parent: u64, name: &str) -> String {
        let base = Self::path_of(st, parent);
        let path = if base.is_empty() {
            name.to_string()
        } else {
            format!("{base}/{name}")
        };
        layout::object_key(&self.opts().prefix, &path)
    }

    fn node(st: &State, ino: u64) -> FsResult<&Node> {
        st.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(st: &mut State, ino: u64) -> FsResult<&mut Node> {
        st.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn new_node(st: &mut State, parent: u64, name: &str, kind: Kind, posix: Posix) -> u64 {
        let ino = st.next_ino;
        st.next_ino += 1;
        let now = SystemTime::now();
        st.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_string(),
                kind,
                size: 0,
                perm: posix.perm,
                uid: posix.uid,
                gid: posix.gid,
                mtime: posix.mtime,
                ctime: now,
                lookups: 0,
                children: 0,
                validated: Instant::now(),
                meta_known: true,
                remote: false,
                staged: None,
                open_handles: 0,
                unlinked: false,
                busy: false,
                prefetching: false,
                link_target: None,
            },
        );
        st.children.insert((parent, name.to_string()), ino);
        st.negative.remove(&(parent, name.to_string()));
        if let Some(p) = st.nodes.get_mut(&parent) {
            p.children += 1;
        }
        ino
    }

    /// Takes a node out of its parent's namespace (it may live on while
    /// open or looked up).
    fn detach_name(st: &mut State, ino: u64) {
        let Some(n) = st.nodes.get(&ino) else { return };
        let key = (n.parent, n.name.clone());
        if st.children.get(&key) == Some(&ino) {
            st.children.remove(&key);
            let parent = n.parent;
            if let Some(p) = st.nodes.get_mut(&parent) {
                p.children = p.children.saturating_sub(1);
            }
        }
    }

    /// Drops a node nobody refers to any more, and then its parent if that
    /// became unreferenced too.
    fn maybe_prune(&self, st: &mut State, mut ino: u64) {
        while ino != ROOT_INO {
            let Some(n) = st.nodes.get(&ino) else { return };
            if n.lookups > 0 || n.open_handles > 0 || n.staged.is_some() || n.children > 0 {
                return;
            }
            let parent = n.parent;
            Self::detach_name(st, ino);
            st.nodes.remove(&ino);
            st.listed.remove(&ino);
            ino = parent;
        }
    }

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

    /// `name` is gone from `parent` (unlinked, removed): later lookups miss
    /// without asking the store, and the node goes once unreferenced.
    fn forget_name(&self, st: &mut State, parent: u64, name: &str, ino: u64) {
        Self::detach_name(st, ino);
        st.negative
            .insert((parent, name.to_string()), Instant::now());
        self.maybe_prune(st, ino);
    }

    fn ttl_fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.opts().metadata_ttl
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.opts().read_only {
            Err(libc::EROFS)
        } else {
            Ok(())
        }
    }

    // ----- remote probes ----------------------------------------------------

    /// What the store has at `key`: a file/symlink object, or a directory
    /// (marker `key/` or keys below it). One HEAD and one LIST, in parallel.
    fn probe(&self, key: &str) -> FsResult<Option<Found>> {
        let store = &self.inner.store;
        let dir_prefix = format!("{key}/");
        let policy = RetryPolicy::INTERACTIVE;
        let (head, list) = self.block_on(async {
            tokio::join!(
                retry(policy, "head", || store.head(key)),
                retry(policy, "list", || store.list(&dir_prefix, None, None, 1)),
            )
        });
        let defaults = &self.opts().defaults;
        if let Some(meta) = head.map_err(|e| errno_of(&e))? {
            let posix = layout::decode(&meta.metadata, Kind::File, meta.last_modified, defaults);
            return Ok(Some(Found {
                kind: posix.kind,
                size: meta.size,
                posix,
                marker: false,
                meta_known: true,
            }));
        }
        let list = list.map_err(|e| errno_of(&e))?;
        let Some(first) = list.objects.first() else {
            return Ok(None);
        };
        // A marker sorts first under its own prefix: read its attributes.
        if first.key == dir_prefix {
            let meta = self
                .call("head", || store.head(&dir_prefix))?
                .unwrap_or_default();
            let posix = layout::decode(&meta.metadata, Kind::Dir, meta.last_modified, defaults);
            return Ok(Some(Found {
                kind: Kind::Dir,
                size: 0,
                posix,
                marker: true,
                meta_known: true,
            }));
        }
        let posix = layout::decode(
            &Default::default(),
            Kind::Dir,
            first.last_modified,
            defaults,
        );
        Ok(Some(Found {
            kind: Kind::Dir,
            size: 0,
            posix,
            marker: false,
            meta_known: true,
        }))
    }

    /// A directory known to exist (listed): its marker's attributes, or
    /// the defaults when it has no marker.
    fn probe_marker(&self, key: &str) -> FsResult<Found> {
        let store = &self.inner.store;
        let marker = format!("{key}/");
        let meta = self.call("head", || store.head(&marker))?;
        let exists = meta.is_some();
        let meta = meta.unwrap_or_default();
        let posix = layout::decode(
            &meta.metadata,
            Kind::Dir,
            meta.last_modified,
            &self.opts().defaults,
        );
        Ok(Found {
            kind: Kind::Dir,
            size: 0,
            posix,
            marker: exists,
            meta_known: true,
        })
    }

    fn apply_found(node: &mut Node, found: &Found) {
        node.kind = found.kind;
        if !node.authoritative() {
            node.size = found.size;
            node.perm = found.posix.perm;
            node.uid = found.posix.uid;
            node.gid = found.posix.gid;
            node.mtime = found.posix.mtime;
            node.link_target = None;
        }
        node.remote = node.remote || found.marker || found.kind != Kind::Dir;
        node.meta_known = found.meta_known;
        node.validated = Instant::now();
    }

    /// Finds `name` in `parent`, from the table when fresh, else from the
    /// store. Does not change lookup counts.
    fn resolve(&self, parent: u64, name: &str) -> FsResult<u64> {
        let key = {
            let mut st = self.lock();
            let p = Self::node(&st, parent)?;
            if p.kind != Kind::Dir {
                return Err(libc::ENOTDIR);
            }
            let entry = (parent, name.to_string());
            // `ls -l` looks up entries one by one right after readdir: wait
            // for the parallel prefetch of this one rather than racing it.
            st = self.wait_while(st, |st| {
                st.children
                    .get(&entry)
                    .and_then(|ino| st.nodes.get(ino))
                    .is_some_and(|n| n.prefetching)
            });
            if let Some(&ino) = st.children.get(&entry) {
                let n = &st.nodes[&ino];
                if self.attrs_current(ino, n) {
                    return Ok(ino);
                }
            } else if let Some(&at) = st.negative.get(&entry)
                && self.ttl_fresh(at)
            {
                return Err(libc::ENOENT);
            } else if st.listed.get(&parent).is_some_and(|t| self.ttl_fresh(*t)) {
                return Err(libc::ENOENT);
            }
            (
                self.child_key(&st, parent, name),
                self.dir_prefix_of(&st, parent),
                st.children.contains_key(&entry),
            )
        };
        let (key, parent_prefix, known) = key;
        if !known && self.list_small_dir(parent, &parent_prefix)? {
            let mut st = self.lock();
            let entry = (parent, name.to_string());
            match st.children.get(&entry).copied() {
                None => {
                    st.negative.insert(entry, Instant::now());
                    return Err(libc::ENOENT);
                }
                Some(ino) if st.nodes[&ino].meta_known => return Ok(ino),
                // A listed directory's attributes are on its marker.
                Some(ino) if st.nodes[&ino].kind == Kind::Dir => {
                    drop(st);
                    let found = self.probe_marker(&key)?;
                    let mut st = self.lock();
                    Self::apply_found(Self::node_mut(&mut st, ino)?, &found);
                    return Ok(ino);
                }
                Some(_) => {}
            }
        }
        let found = self.probe(&key)?;
        let mut st = self.lock();
        let entry = (parent, name.to_string());
        match found {
            None => {
                if let Some(&ino) = st.children.get(&entry) {
                    if st.nodes[&ino].authoritative() {
                        return Ok(ino); // created locally meanwhile
                    }
                    Self::detach_name(&mut st, ino);
                    self.maybe_prune(&mut st, ino);
                }
                st.negative.insert(entry, Instant::now());
                Err(libc::ENOENT)
            }
            Some(found) => {
                let ino = match st.children.get(&entry) {
                    Some(&ino) => ino,
                    None => Self::new_node(&mut st, parent, name, found.kind, found.posix),
                };
                let node = Self::node_mut(&mut st, ino)?;
                Self::apply_found(node, &found);
                Ok(ino)
            }
        }
    }

    // ----- namespace --------------------------------------------------------

    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let ino = self.resolve(parent, name)?;
        let mut st = self.lock();
        let node = Self::node_mut(&mut st, ino)?;
        node.lookups += 1;
        Ok(node.attr(ino))
    }

    pub fn forget(&self, ino: u64, n: u64) {
        let mut st = self.lock();
        if let Some(node) = st.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.maybe_prune(&mut st, ino);
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let (parent, name) = {
            let st = self.lock();
            let n = Self::node(&st, ino)?;
            if self.attrs_current(ino, n) {
                return Ok(n.attr(ino));
            }
            (n.parent, n.name.clone())
        };
        // Re-validate through the parent; a node that vanished remotely
        // keeps its last attributes for the kernel's sake.
        match self.resolve(parent, &name) {
            Ok(_) | Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let st = self.lock();
        Ok(Self::node(&st, ino)?.attr(ino))
    }

    /// EEXIST when `name` exists in `parent`, locally or in the store.
    fn ensure_absent(&self, parent: u64, name: &str) -> FsResult<()> {
        match self.resolve(parent, name) {
            Ok(_) => Err(libc::EEXIST),
            Err(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn mkdir(&self, parent: u64, name: &str, perm: u32, uid: u32, gid: u32) -> FsResult<Attr> {
        self.check_writable()?;
        self.ensure_absent(parent, name)?;
        let posix = Posix {
            kind: Kind::Dir,
            perm: perm & 0o7777,
            uid,
            gid,
            mtime: SystemTime::now(),
        };
        let key = {
            let st = self.lock();
            format!("{}/", self.child_key(&st, parent, name))
        };
        let meta = layout::encode(&posix);
        let store = &self.inner.store;
        self.call("mkdir", || store.put(&key, Bytes::new(), &meta))?;
        let mut st = self.lock();
        let ino = Self::new_node(&mut st, parent, name, Kind::Dir, posix);
        // Just created: its complete listing is "empty".
        st.listed.insert(ino, Instant::now());
        let node = Self::node_mut(&mut st, ino)?;
        node.remote = true;
        node.lookups += 1;
        Ok(node.attr(ino))
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &str,
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> FsResult<Attr> {
        self.check_writable()?;
        self.ensure_absent(parent, name)?;
        let posix = Posix {
            kind: Kind::Symlink,
            perm: 0o777,
            uid,
            gid,
            mtime: SystemTime::now(),
        };
        let key = {
            let st = self.lock();
            self.child_key(&st, parent, name)
        };
        let body = Bytes::copy_from_slice(target);
        let meta = layout::encode(&posix);
        let store = &self.inner.store;
        self.call("symlink", || store.put(&key, body.clone(), &meta))?;
        let mut st = self.lock();
        let ino = Self::new_node(&mut st, parent, name, Kind::Symlink, posix);
        let node = Self::node_mut(&mut st, ino)?;
        node.remote = true;
        node.size = target.len() as u64;
        node.link_target = Some(body);
        node.lookups += 1;
        Ok(node.attr(ino))
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Bytes> {
        let key = {
            let st = self.lock();
            let n = Self::node(&st, ino)?;
            if n.kind != Kind::Symlink {
                return Err(libc::EINVAL);
            }
            if let Some(t) = &n.link_target {
                return Ok(t.clone());
            }
            self.key_of(&st, ino)
        };
        let store = &self.inner.store;
        let body = self.call("readlink", || store.get_range(&key, 0, 4096))?;
        let mut st = self.lock();
        if let Ok(n) = Self::node_mut(&mut st, ino) {
            n.link_target = Some(body.clone());
        }
        Ok(body)
    }

    /// Waits until none of `inos` is being uploaded.
    fn wait_uploads<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        inos: &[u64],
    ) -> MutexGuard<'a, State> {
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

    /// Forgets a node's staged data (it was deleted or replaced).
    fn discard_staged(&self, node: &mut Node) {
        if let Some(s) = node.staged.take() {
            self.inner.staging.discard(s.id, s.file);
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
            s.clean_gen = s.dirty_gen;
            self.inner.staging.clear_journal(s.id, &s.file);
        }
    }

    pub fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let ino = self.resolve(parent, name)?;
        let _claim = self.claim(vec![ino]);
        let (key, remote) = {
            let st = self.lock();
            let n = Self::node(&st, ino)?;
            if n.kind == Kind::Dir {
                return Err(libc::EISDIR);
            }
            (self.key_of(&st, ino), n.remote)
        };
        if remote {
            let store = &self.inner.store;
            self.call("delete", || store.delete(&key))?;
        }
        let mut st = self.lock();
        if let Some(node) = st.nodes.get_mut(&ino) {
            self.mark_unlinked(node);
        }
        self.forget_name(&mut st, parent, name, ino);
        Ok(())
    }

    /// Whether a directory has any entry, locally or in the store.
    fn dir_has_entries(&self, ino: u64) -> FsResult<bool> {
        let prefix = {
            let st = self.lock();
            let local = st.children.iter().any(|((p, _), c)| {
                *p == ino
                    && st
                        .nodes
                        .get(c)
                        .is_some_and(|n| n.authoritative() && !n.remote)
            });
            if local {
                return Ok(true);
            }
            self.dir_prefix_of(&st, ino)
        };
        let store = &self.inner.store;
        let page = self.call("list", || store.list(&prefix, Some("/"), None, 2))?;
        let others =
            page.objects.iter().any(|o| o.key != prefix) || !page.common_prefixes.is_empty();
        Ok(others)
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let ino = self.resolve(parent, name)?;
        {
            let st = self.lock();
            if Self::node(&st, ino)?.kind != Kind::Dir {
                return Err(libc::ENOTDIR);
            }
        }
        if self.dir_has_entries(ino)? {
            return Err(libc::ENOTEMPTY);
        }
        let marker = {
            let st = self.lock();
            self.dir_prefix_of(&st, ino)
        };
        let store = &self.inner.store;
        self.call("rmdir", || store.delete(&marker))?;
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.unlinked = true;
            n.remote = false;
        }
        self.forget_name(&mut st, parent, name, ino);
        Ok(())
    }

    /// All nodes in the table below `ino` (not including it).
    fn descendants(st: &State, ino: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut stack = vec![ino];
        while let Some(cur) = stack.pop() {
            for ((p, _), c) in st.children.iter() {
                if *p == cur {
                    out.push(*c);
                    stack.push(*c);
                }
            }
        }
        out
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            return Err(libc::EINVAL);
        }
        let src = self.resolve(parent, name)?;
        let dst = match self.resolve(new_parent, new_name) {
            Ok(d) => Some(d),
            Err(libc::ENOENT) => None,
            Err(e) => return Err(e),
        };
        if dst == Some(src) {
            return Ok(());
        }
        if dst.is_some() && flags & libc::RENAME_NOREPLACE != 0 {
            return Err(libc::EEXIST);
        }
        let src_kind = {
            let st = self.lock();
            // Renaming a directory into itself would loop.
            let mut cur = new_parent;
            while cur != ROOT_INO {
                if cur == src {
                    return Err(libc::EINVAL);
                }
                cur = Self::node(&st, cur)?.parent;
            }
            Self::node(&st, src)?.kind
        };
        if let Some(d) = dst {
            let dst_kind = {
                let st = self.lock();
                Self::node(&st, d)?.kind
            };
            match (src_kind, dst_kind) {
                (Kind::Dir, Kind::Dir) if self.dir_has_entries(d)? => {
                    return Err(libc::ENOTEMPTY);
                }
                (Kind::Dir, Kind::Dir) => {}
                (Kind::Dir, _) => return Err(libc::ENOTDIR),
                (_, Kind::Dir) => return Err(libc::EISDIR),
                _ => {}
            }
        }
        if src_kind == Kind::Dir {
            self.rename_dir(src, new_parent, new_name, dst)
        } else {
            self.rename_file(src, new_parent, new_name, dst)
        }
    }

    fn rename_file(
        &self,
        src: u64,
        new_parent: u64,
        new_name: &str,
        dst: Option<u64>,
    ) -> FsResult<()> {
        let _claim = self.claim(std::iter::once(src).chain(dst).collect());
        let (old_key, new_key, dirty, remote) = {
            let st = self.lock();
            let n = Self::node(&st, src)?;
            let dirty = n.staged.as_ref().is_some_and(|s| s.dirty());
            (
                self.key_of(&st, src),
                self.child_key(&st, new_parent, new_name),
                dirty,
                n.remote,
            )
        };
        let store = &self.inner.store;
        if !dirty && remote {
            // Server-side copy keeps data and metadata; then drop the old key.
            self.call("copy", || store.copy(&old_key, &new_key, None))?;
        }
        let mut st = self.lock();
        if let Some(d) = dst
            && let Some(dn) = st.nodes.get_mut(&d)
        {
            self.mark_unlinked(dn);
            Self::detach_name(&mut st, d);
        }
        self.move_node(&mut st, src, new_parent, new_name);
        // A dirty file goes to its new key with its next upload; point its
        // journal there first so a crash cannot put it back at the old key.
        if dirty {
            let node = Self::node_mut(&mut st, src)?;
            let posix = node.posix();
            if let Some(s) = node.staged.as_mut() {
                s.dirty_gen += 1;
                let entry = JournalEntry::new(&new_key, &posix);
                let _ = self.inner.staging.journal(s.id, &s.file, &entry);
                s.journaled = true;
            }
            self.enqueue_if_idle(&mut st, src);
        }
        let now = SystemTime::now();
        if let Ok(n) = Self::node_mut(&mut st, src) {
            n.ctime = now;
            n.remote = !dirty && remote;
        }
        if let Some(d) = dst {
            self.maybe_prune(&mut st, d);
        }
        drop(st);
        if remote {
            self.call("delete", || store.delete(&old_key))?;
        }
        Ok(())
    }

    fn move_node(&self, st: &mut State, ino: u64, new_parent: u64, new_name: &str) {
        Self::detach_name(st, ino);
        let old = st.nodes.get(&ino).map(|n| (n.parent, n.name.clone()));
        if let Some((p, n)) = old {
            st.negative.insert((p, n), Instant::now());
        }
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.parent = new_parent;
            n.name = new_name.to_string();
        }
        st.children.insert((new_parent, new_name.to_string()), ino);
        st.negative.remove(&(new_parent, new_name.to_string()));
        if let Some(p) = st.nodes.get_mut(&new_parent) {
            p.children += 1;
        }
    }

    /// Renames a directory: every key below it is copied to the new prefix,
    /// then deleted. Not atomic: a crash midway leaves some objects under
    /// each name (none lost). Local staged files move with their nodes.
    fn rename_dir(
        &self,
        src: u64,
        new_parent: u64,
        new_name: &str,
        dst: Option<u64>,
    ) -> FsResult<()> {
        let subtree = {
            let st = self.lock();
            let mut all = Self::descendants(&st, src);
            all.push(src);
            all.extend(dst);
            all
        };
        let _claim = self.claim(subtree);
        let (old_prefix, new_prefix) = {
            let st = self.lock();
            let new_path = {
                let base = Self::path_of(&st, new_parent);
                if base.is_empty() {
                    new_name.to_string()
                } else {
                    format!("{base}/{new_name}")
                }
            };
            (
                self.dir_prefix_of(&st, src),
                layout::dir_prefix(&self.opts().prefix, &new_path),
            )
        };
        let store = self.inner.store.clone();
        let policy = RetryPolicy::INTERACTIVE;
        // Every key below the old prefix (no delimiter: the whole subtree).
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self.call("list", || {
                store.list(&old_prefix, None, token.clone(), 1000)
            })?;
            keys.extend(page.objects.into_iter().map(|o| o.key));
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        if let Some(d) = dst {
            let st = self.lock();
            let marker = self.dir_prefix_of(&st, d);
            drop(st);
            self.call("delete", || store.delete(&marker))?;
        }
        let copy_all = async {
            use futures_util::StreamExt;
            let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(keys.iter())
                .map(|k| {
                    let new_key = format!("{new_prefix}{}", &k[old_prefix.len()..]);
                    let store = store.clone();
                    async move { retry(policy, "copy", || store.copy(k, &new_key, None)).await }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            results.into_iter().collect::<Result<(), _>>()
        };
        self.block_on(copy_all).map_err(|e| errno_of(&e))?;
        {
            let mut st = self.lock();
            if let Some(d) = dst {
                if let Some(dn) = st.nodes.get_mut(&d) {
                    dn.unlinked = true;
                }
                Self::detach_name(&mut st, d);
                self.maybe_prune(&mut st, d);
            }
            self.move_node(&mut st, src, new_parent, new_name);
            if let Ok(n) = Self::node_mut(&mut st, src) {
                n.ctime = SystemTime::now();
                n.remote = true;
            }
            // Staged files below follow their nodes: re-journal their keys.
            for ino in Self::descendants(&st, src) {
                let key = self.key_of(&st, ino);
                if let Some(n) = st.nodes.get_mut(&ino) {
                    let posix = n.posix();
                    if let Some(s) = n.staged.as_mut()
                        && s.dirty()
                    {
                        let _ = self.inner.staging.journal(
                            s.id,
                            &s.file,
                            &JournalEntry::new(&key, &posix),
                        );
                    }
                    // Their old objects were copied: they exist at the new key.
                    n.validated = Instant::now() - self.opts().metadata_ttl;
                }
            }
        }
        let delete_all = async {
            use futures_util::StreamExt;
            let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(keys.iter())
                .map(|k| {
                    let store = store.clone();
                    async move { retry(policy, "delete", || store.delete(k)).await }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            results.into_iter().collect::<Result<(), _>>()
        };
        self.block_on(delete_all).map_err(|e| errno_of(&e))?;
        // The new name exists even when the old directory was only implied
        // by keys that are now gone: give it a marker.
        if !keys.contains(&old_prefix) {
            let meta = {
                let st = self.lock();
                layout::encode(&Self::node(&st, src)?.posix())
            };
            self.call("mkdir", || store.put(&new_prefix, Bytes::new(), &meta))?;
        }
        Ok(())
    }

    // ----- directories ------------------------------------------------------

    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        let prefix = {
            let st = self.lock();
            if Self::node(&st, ino)?.kind != Kind::Dir {
                return Err(libc::ENOTDIR);
            }
            self.dir_prefix_of(&st, ino)
        };
        let store = &self.inner.store;
        let list_started = Instant::now();
        let mut objects: Vec<ObjectMeta> = Vec::new();
        let mut dirs: Vec<String> = Vec::new();
        let mut token = None;
        loop {
            let page = self.call("list", || {
                store.list(&prefix, Some("/"), token.clone(), 1000)
            })?;
            objects.extend(page.objects);
            dirs.extend(page.common_prefixes);
            match page.next_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let mut st = self.lock();
        let parent_ino = Self::node(&st, ino)?.parent;
        let mut entries = vec![
            DirEntry {
                ino,
                kind: Kind::Dir,
                name: ".".into(),
            },
            DirEntry {
                ino: parent_ino,
                kind: Kind::Dir,
                name: "..".into(),
            },
        ];
        let mut seen = HashSet::new();
        entries.extend(self.apply_listing(&mut st, ino, &prefix, &objects, &dirs, &mut seen));
        st.listed.insert(ino, Instant::now());
        // Files created here and not uploaded yet exist only in the table;
        // so, for this listing, do those whose upload finished while the
        // LIST was under way (their staged copy may be gone already).
        let local: Vec<(String, u64)> = st
            .children
            .iter()
            .filter(|((p, n), _)| *p == ino && !seen.contains(n))
            .map(|((_, n), c)| (n.clone(), *c))
            .collect();
        for (name, child) in local {
            let n = &st.nodes[&child];
            if n.authoritative()
                || (n.remote && n.validated >= list_started)
                || (n.kind == Kind::Dir && n.remote && self.ttl_fresh(n.validated))
            {
                entries.push(DirEntry {
                    ino: child,
                    kind: n.kind,
                    name,
                });
            }
        }
        // Files' metadata is on their object, directories' on their marker.
        let unknown: Vec<(u64, String)> = entries
            .iter()
            .filter(|e| e.name != "." && e.name != "..")
            .filter(|e| st.nodes.get(&e.ino).is_some_and(|n| !n.meta_known))
            .map(|e| match e.kind {
                Kind::Dir => (e.ino, format!("{prefix}{}/", e.name)),
                _ => (e.ino, format!("{prefix}{}", e.name)),
            })
            .collect();
        for (ino, _) in &unknown {
            if let Some(n) = st.nodes.get_mut(ino) {
                n.prefetching = true;
            }
        }
        drop(st);
        self.prefetch_metadata(unknown);
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        self.inner
            .handles
            .lock()
            .unwrap()
            .insert(fh, Arc::new(HandleKind::Dir { dir: ino, entries }));
        Ok(fh)
    }

    /// Listings carry no user metadata, and `ls -l` looks up every entry
    /// right after readdir: fetch the entries' metadata in the background,
    /// 32 HEADs at a time, so those lookups find it cached instead of each
    /// waiting for its own HEAD.
    fn prefetch_metadata(&self, targets: Vec<(u64, String)>) {
        if targets.is_empty() {
            return;
        }
        let fs = self.clone();
        self.inner.rt.spawn(async move {
            use futures_util::StreamExt;
            let store = fs.inner.store.clone();
            let mut heads = futures_util::stream::iter(targets)
                .map(|(ino, key)| {
                    let store = store.clone();
                    async move { (ino, store.head(&key).await) }
                })
                .buffer_unordered(32);
            let defaults = fs.opts().defaults;
            while let Some((ino, result)) = heads.next().await {
                let mut st = fs.lock();
                if let Some(n) = st.nodes.get_mut(&ino) {
                    n.prefetching = false;
                }
                fs.inner.changed.notify_all();
                let Ok(meta) = result else { continue };
                let Some(n) = st.nodes.get_mut(&ino) else {
                    continue;
                };
                if n.authoritative() || n.meta_known {
                    continue;
                }
                let found = match (n.kind, meta) {
                    // A directory without a marker keeps the defaults.
                    (Kind::Dir, meta) => {
                        let marker = meta.is_some();
                        let meta = meta.unwrap_or_default();
                        Found {
                            kind: Kind::Dir,
                            size: 0,
                            posix: layout::decode(
                                &meta.metadata,
                                Kind::Dir,
                                meta.last_modified.or(Some(n.mtime)),
                                &defaults,
                            ),
                            marker,
                            meta_known: true,
                        }
                    }
                    (_, Some(meta)) => {
                        let posix = layout::decode(
                            &meta.metadata,
                            Kind::File,
                            meta.last_modified,
                            &defaults,
                        );
                        Found {
                            kind: posix.kind,
                            size: meta.size,
                            posix,
                            marker: false,
                            meta_known: true,
                        }
                    }
                    (_, None) => continue, // gone; the next lookup says so
                };
                Self::apply_found(n, &found);
            }
        });
    }

    /// Brings a directory's listing into the table; returns its entries.
    fn apply_listing(
        &self,
        st: &mut State,
        ino: u64,
        prefix: &str,
        objects: &[ObjectMeta],
        dirs: &[String],
        seen: &mut HashSet<String>,
    ) -> Vec<DirEntry> {
        let defaults = self.opts().defaults;
        let mut entries = Vec::new();
        for d in dirs {
            let name = d[prefix.len()..].trim_end_matches('/');
            if name.is_empty() || !seen.insert(name.to_string()) {
                continue;
            }
            let posix = layout::decode(&Default::default(), Kind::Dir, None, &defaults);
            let child = self.listed_child(st, ino, name, Kind::Dir, 0, posix);
            entries.push(DirEntry {
                ino: child,
                kind: Kind::Dir,
                name: name.to_string(),
            });
        }
        for o in objects {
            let name = &o.key[prefix.len()..];
            if name.is_empty() || name.contains('/') || !seen.insert(name.to_string()) {
                continue;
            }
            let posix = layout::decode(&Default::default(), Kind::File, o.last_modified, &defaults);
            let child = self.listed_child(st, ino, name, Kind::File, o.size, posix);
            let kind = st.nodes.get(&child).map_or(Kind::File, |n| n.kind);
            entries.push(DirEntry {
                ino: child,
                kind,
                name: name.to_string(),
            });
        }
        entries
    }

    /// One LIST of a directory instead of a probe per name: when the
    /// directory fits in one page, its whole listing answers this lookup and
    /// every other one for the TTL (creating many files costs one LIST per
    /// TTL instead of two requests per file). False for larger directories.
    fn list_small_dir(&self, ino: u64, prefix: &str) -> FsResult<bool> {
        let store = &self.inner.store;
        let page = self.call("list", || store.list(prefix, Some("/"), None, 1000))?;
        if page.next_token.is_some() {
            return Ok(false);
        }
        let mut st = self.lock();
        if !st.nodes.contains_key(&ino) {
            return Ok(false);
        }
        let mut seen = HashSet::new();
        self.apply_listing(
            &mut st,
            ino,
            prefix,
            &page.objects,
            &page.common_prefixes,
            &mut seen,
        );
        st.listed.insert(ino, Instant::now());
        Ok(true)
    }

    /// The node for a listed entry: the existing one (its size and mtime
    /// refreshed unless local state is newer) or a new one whose mode is not
    /// known yet (listings carry no metadata; lookup fetches it).
    fn listed_child(
        &self,
        st: &mut State,
        parent: u64,
        name: &str,
        kind: Kind,
        size: u64,
        posix: Posix,
    ) -> u64 {
        if let Some(&c) = st.children.get(&(parent, name.to_string())) {
            if let Some(n) = st.nodes.get_mut(&c)
                && !n.authoritative()
                && n.kind == kind
                && n.kind == Kind::File
                && (n.size != size || n.mtime != posix.mtime)
            {
                n.size = size;
                n.mtime = posix.mtime;
                n.meta_known = self.listing_is_enough(kind, size);
            }
            return c;
        }
        let c = Self::new_node(st, parent, name, kind, posix);
        let known = self.listing_is_enough(kind, size);
        let n = st.nodes.get_mut(&c).expect("just inserted");
        n.size = size;
        n.remote = kind != Kind::Dir;
        n.meta_known = known;
        c
    }

    /// Whether a listed entry's attributes may come from the listing alone:
    /// only with `attrs_from_listing`, and then not for objects small enough
    /// to be s3fs symlinks (their type is in metadata only). Otherwise a
    /// file's metadata is its object's, a directory's its marker's.
    fn listing_is_enough(&self, kind: Kind, size: u64) -> bool {
        self.opts().attrs_from_listing && (kind == Kind::Dir || size > SYMLINK_PROBE_MAX)
    }

    pub fn readdir(&self, fh: u64, offset: usize) -> FsResult<Vec<DirEntry>> {
        let handles = self.inner.handles.lock().unwrap();
        match handles.get(&fh).map(|h| h.as_ref()) {
            Some(HandleKind::Dir { entries, .. }) => {
                Ok(entries.iter().skip(offset).cloned().collect())
            }
            _ => Err(libc::EBADF),
        }
    }

    /// readdirplus: the entries from `offset`, each with its attributes and
    /// whether those are exact (an entry whose metadata is still being
    /// fetched gets the listing's attributes, which the kernel must not
    /// cache). `None` for an entry whose node is gone and cannot be found
    /// again: the caller sends it without attributes.
    pub fn readdir_plus(&self, fh: u64, offset: usize) -> FsResult<Vec<PlusEntry>> {
        let (dir, entries) = {
            let handles = self.inner.handles.lock().unwrap();
            match handles.get(&fh).map(|h| h.as_ref()) {
                Some(HandleKind::Dir { dir, entries }) => (
                    *dir,
                    entries.iter().skip(offset).cloned().collect::<Vec<_>>(),
                ),
                _ => return Err(libc::EBADF),
            }
        };
        self.wait_for_small_prefetches(&entries);
        let mut out = Vec::with_capacity(entries.len());
        for mut entry in entries {
            let known = self.lock().nodes.contains_key(&entry.ino);
            if !known && entry.name != "." && entry.name != ".." {
                // Pruned since opendir: find the name again.
                match self.resolve(dir, &entry.name) {
                    Ok(ino) => entry.ino = ino,
                    Err(_) => {
                        out.push(PlusEntry {
                            entry,
                            attr: None,
                            exact: false,
                        });
                        continue;
                    }
                }
            }
            let st = self.lock();
            let (attr, exact) = match st.nodes.get(&entry.ino) {
                Some(n) => (Some(n.attr(entry.ino)), self.attrs_current(entry.ino, n)),
                None => (None, false),
            };
            out.push(PlusEntry { entry, attr, exact });
        }
        Ok(out)
    }

    /// A small listed object may turn out to be a symlink, and the kernel
    /// must not get an inode of the wrong type: wait (2 s at most) for the
    /// metadata prefetch of such entries before handing out attributes.
    fn wait_for_small_prefetches(&self, entries: &[DirEntry]) {
        let st = self.lock();
        drop(self.wait_while(st, |st| {
            entries.iter().any(|e| {
                st.nodes.get(&e.ino).is_some_and(|n| {
                    n.prefetching && n.kind == Kind::File && n.size <= SYMLINK_PROBE_MAX
                })
            })
        }));
    }

    /// Waits on `changed` while `pending` holds, [`PREFETCH_WAIT`] at most
    /// (a prefetch that never reports must not hang a caller).
    fn wait_while<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        pending: impl Fn(&State) -> bool,
    ) -> MutexGuard<'a, State> {
        let deadline = Instant::now() + PREFETCH_WAIT;
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

    /// Whether a node's attributes may be served without asking the store:
    /// local state is the truth, or its metadata is known and fresh.
    fn attrs_current(&self, ino: u64, n: &Node) -> bool {
        ino == ROOT_INO
            || n.authoritative()
            || n.unlinked
            || (n.meta_known && self.ttl_fresh(n.validated))
    }

    /// The kernel took a reference to `ino` (an entry of a readdirplus
    /// reply counts as a lookup); `forget` gives it back.
    pub fn note_lookup(&self, ino: u64) {
        if let Some(n) = self.lock().nodes.get_mut(&ino) {
            n.lookups += 1;
        }
    }

    pub fn releasedir(&self, fh: u64) {
        self.inner.handles.lock().unwrap().remove(&fh);
    }

    // ----- files ------------------------------------------------------------

    /// Gives `ino` a staging file holding its current content, and pins it
    /// (counts as an open handle) so a finishing upload cannot drop it; the
    /// caller unpins with `release` or `unpin`.
    fn ensure_staged(&self, ino: u64, truncate: bool) -> FsResult<()> {
        let (key, size, remote) = {
            let mut st = self.lock();
            let key = self.key_of(&st, ino);
            let n = Self::node_mut(&mut st, ino)?;
            if n.staged.is_some() {
                n.open_handles += 1;
                return Ok(());
            }
            (key, n.size, n.remote)
        };
        let (id, file) = self.inner.staging.create().map_err(|_| libc::EIO)?;
        let file = Arc::new(file);
        let fetch = remote && !truncate && size > 0;
        if fetch {
            let store = &self.inner.store;
            if let Err(e) = self.block_on(download_to_file(
                store,
                RetryPolicy::INTERACTIVE,
                &key,
                file.clone(),
                size,
            )) {
                self.inner.staging.discard(id, file);
                return Err(errno_of(&e));
            }
        }
        let mut st = self.lock();
        let n = Self::node_mut(&mut st, ino)?;
        n.open_handles += 1;
        if n.staged.is_some() {
            // Another opener won the race; use theirs.
            self.inner.staging.discard(id, file);
            return Ok(());
        }
        n.staged = Some(Staged {
            id,
            file,
            dirty_gen: 0,
            clean_gen: 0,
            journaled: false,
            uploading: false,
            queued: false,
        });
        if !fetch {
            n.size = 0;
        }
        Ok(())
    }

    /// Marks content or attributes changed: bumps the generation and makes
    /// sure the journal knows where the data belongs.
    fn mark_dirty(&self, st: &mut State, ino: u64) {
        let key = self.key_of(st, ino);
        let Some(n) = st.nodes.get_mut(&ino) else {
            return;
        };
        let posix = n.posix();
        let Some(s) = n.staged.as_mut() else { return };
        s.dirty_gen += 1;
        if !s.journaled {
            match self
                .inner
                .staging
                .journal(s.id, &s.file, &JournalEntry::new(&key, &posix))
            {
                Ok(()) => s.journaled = true,
                Err(e) => {
                    tracing::error!(key = %key, error = %e, "could not journal a staged file")
                }
            }
        }
    }

    fn new_file_handle(&self, ino: u64, write: bool) -> u64 {
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        self.inner.handles.lock().unwrap().insert(
            fh,
            Arc::new(HandleKind::File {
                ino,
                write,
                reader: Mutex::new(Reader::default()),
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
                let n = Self::node_mut(&mut st, ino)?;
                n.lookups += 1;
                return Ok((n.attr(ino), fh));
            }
            Ok(_) => return Err(libc::EEXIST),
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let (id, file) = self.inner.staging.create().map_err(|_| libc::EIO)?;
        let posix = Posix {
            kind: Kind::File,
            perm: perm & 0o7777,
            uid,
            gid,
            mtime: SystemTime::now(),
        };
        let mut st = self.lock();
        let ino = Self::new_node(&mut st, parent, name, Kind::File, posix);
        {
            let n = Self::node_mut(&mut st, ino)?;
            n.lookups += 1;
            n.open_handles += 1;
            n.staged = Some(Staged {
                id,
                file: Arc::new(file),
                dirty_gen: 0,
                clean_gen: 0,
                journaled: false,
                uploading: false,
                queued: false,
            });
        }
        // A new empty file must reach the bucket too.
        self.mark_dirty(&mut st, ino);
        let attr = Self::node(&st, ino)?.attr(ino);
        drop(st);
        Ok((attr, self.new_file_handle(ino, true)))
    }

    pub fn open(&self, ino: u64, flags: OpenFlags) -> FsResult<u64> {
        {
            let st = self.lock();
            let n = Self::node(&st, ino)?;
            if n.kind == Kind::Dir {
                return Err(libc::EISDIR);
            }
        }
        if flags.write {
            self.check_writable()?;
            self.ensure_staged(ino, flags.truncate)?;
            let mut st = self.lock();
            if flags.truncate {
                st = self.wait_uploads(st, &[ino]);
                let n = Self::node_mut(&mut st, ino)?;
                if n.size != 0 {
                    let s = n.staged.as_ref().expect("staged above");
                    s.file.set_len(0).map_err(|_| libc::EIO)?;
                    n.size = 0;
                    n.mtime = SystemTime::now();
                }
                self.mark_dirty(&mut st, ino);
            }
        } else {
            let mut st = self.lock();
            Self::node_mut(&mut st, ino)?.open_handles += 1;
        }
        Ok(self.new_file_handle(ino, flags.write))
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
        let (staged, key, size) = {
            let st = self.lock();
            let n = Self::node(&st, *ino)?;
            (
                n.staged.as_ref().map(|s| s.file.clone()),
                self.key_of(&st, *ino),
                n.size,
            )
        };
        if offset >= size {
            return Ok(Bytes::new());
        }
        let len = (len as u64).min(size - offset);
        if let Some(file) = staged {
            let mut buf = vec![0u8; len as usize];
            let n = file.read_at(&mut buf, offset).map_err(|_| libc::EIO)?;
            buf.truncate(n);
            return Ok(Bytes::from(buf));
        }
        let mut reader = reader.lock().unwrap();
        reader
            .read(&self.inner.rt, &self.inner.store, &key, size, offset, len)
            .map_err(|e| errno_of(&e))
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let h = self.file_handle(fh)?;
        let HandleKind::File { ino, write, .. } = h.as_ref() else {
            unreachable!()
        };
        if !write {
            return Err(libc::EBADF);
        }
        let file = {
            let st = self.lock();
            let n = Self::node(&st, *ino)?;
            n.staged.as_ref().map(|s| s.file.clone()).ok_or(libc::EIO)?
        };
        file.write_all_at(data, offset)
            .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let mut st = self.lock();
        let n = Self::node_mut(&mut st, *ino)?;
        n.size = n.size.max(offset + data.len() as u64);
        n.mtime = SystemTime::now();
        let needs_journal = n.staged.as_ref().is_some_and(|s| !s.journaled);
        if let Some(s) = n.staged.as_mut()
            && !needs_journal
        {
            s.dirty_gen += 1; // fast path: journal already points here
        } else {
            self.mark_dirty(&mut st, *ino);
        }
        Ok(data.len() as u32)
    }

    /// Uploads `ino` if dirty, waiting for it: the fsync and sync-close path.
    fn upload_now(&self, ino: u64, policy: RetryPolicy) -> FsResult<()> {
        loop {
            let (key, posix, size, file, gen_) = {
                let st = self.lock();
                let mut st = self.wait_uploads(st, &[ino]);
                let key = self.key_of(&st, ino);
                let Ok(n) = Self::node_mut(&mut st, ino) else {
                    return Ok(());
                };
                if n.unlinked {
                    return Ok(());
                }
                let posix = n.posix();
                let size = n.size;
                let Some(s) = n.staged.as_mut() else {
                    return Ok(());
                };
                if !s.dirty() {
                    return Ok(());
                }
                s.uploading = true;
                (key, posix, size, s.file.clone(), s.dirty_gen)
            };
            let meta = layout::encode(&posix);
            let result = self.block_on(upload_file(
                &self.inner.store,
                policy,
                &key,
                file,
                size,
                &meta,
            ));
            let mut st = self.lock();
            let finished = match Self::node_mut(&mut st, ino) {
                Ok(n) => {
                    let s = n.staged.as_mut().expect("staged while uploading");
                    s.uploading = false;
                    match &result {
                        Ok(()) => {
                            s.clean_gen = s.clean_gen.max(gen_);
                            n.remote = true;
                            n.validated = Instant::now();
                            n.meta_known = true;
                            let s = n.staged.as_mut().expect("still staged");
                            if !s.dirty() {
                                self.inner.staging.clear_journal(s.id, &s.file);
                                s.journaled = false;
                                if n.open_handles == 0 {
                                    self.discard_staged(n);
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(key = %key, error = %e, "upload failed; the data stays staged");
                        }
                    }
                    true
                }
                Err(_) => true,
            };
            self.inner.changed.notify_all();
            if finished {
                self.maybe_prune(&mut st, ino);
            }
            drop(st);
            match result {
                // Changed again while uploading: go round once more.
                Ok(()) => continue,
                Err(e) => return Err(errno_of(&e)),
            }
        }
    }

    fn enqueue_if_idle(&self, st: &mut State, ino: u64) {
        if let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut())
            && s.dirty()
            && !s.queued
        {
            s.queued = true;
            let _ = self.inner.upload_tx.send(ino);
        }
    }

    /// One background upload, retried in rounds until it lands, the file is
    /// gone, or unmount gives up (the data stays journalled).
    fn background_upload(&self, ino: u64) {
        {
            let mut st = self.lock();
            if let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut()) {
                s.queued = false;
            }
        }
        loop {
            match self.upload_now(ino, BACKGROUND) {
                Ok(()) => return,
                Err(errno) => {
                    tracing::error!(ino, errno, "background upload failed; retrying");
                    std::thread::sleep(BACKGROUND_ROUND_PAUSE);
                }
            }
        }
    }

    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let h = self.file_handle(fh)?;
        let HandleKind::File { ino, write, .. } = h.as_ref() else {
            unreachable!()
        };
        if !write {
            return Ok(());
        }
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

    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let h = self.file_handle(fh)?;
        let HandleKind::File { ino, .. } = h.as_ref() else {
            unreachable!()
        };
        self.upload_now(*ino, RetryPolicy::INTERACTIVE)
    }

    pub fn release(&self, fh: u64) -> FsResult<()> {
        let Some(h) = self.inner.handles.lock().unwrap().remove(&fh) else {
            return Err(libc::EBADF);
        };
        let HandleKind::File { ino, .. } = h.as_ref() else {
            return Ok(());
        };
        let mut st = self.lock();
        let Ok(n) = Self::node_mut(&mut st, *ino) else {
            return Ok(());
        };
        n.open_handles = n.open_handles.saturating_sub(1);
        if n.open_handles == 0 {
            let idle = n
                .staged
                .as_ref()
                .is_some_and(|s| !s.dirty() && !s.uploading);
            if n.unlinked || idle {
                self.discard_staged(n);
            }
        }
        self.enqueue_if_idle(&mut st, *ino);
        self.maybe_prune(&mut st, *ino);
        Ok(())
    }

    pub fn setattr(&self, ino: u64, set: SetAttr) -> FsResult<Attr> {
        self.check_writable()?;
        let kind = {
            let st = self.lock();
            Self::node(&st, ino)?.kind
        };
        if let Some(size) = set.size {
            if kind == Kind::Dir {
                return Err(libc::EISDIR);
            }
            self.ensure_staged(ino, size == 0)?;
            let st = self.lock();
            let mut st = self.wait_uploads(st, &[ino]);
            let n = Self::node_mut(&mut st, ino)?;
            let s = n.staged.as_ref().expect("staged above");
            let resized = s.file.set_len(size);
            n.open_handles -= 1; // unpin (ensure_staged pinned it)
            resized.map_err(|_| libc::EIO)?;
            n.size = size;
            n.mtime = set.mtime.unwrap_or_else(SystemTime::now);
            self.mark_dirty(&mut st, ino);
        }
        let meta_change =
            set.perm.is_some() || set.uid.is_some() || set.gid.is_some() || set.mtime.is_some();
        let (staged, key, posix, remote, kind) = {
            let mut st = self.lock();
            let key = if kind == Kind::Dir {
                self.dir_prefix_of(&st, ino)
            } else {
                self.key_of(&st, ino)
            };
            let n = Self::node_mut(&mut st, ino)?;
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
            (n.staged.is_some(), key, n.posix(), n.remote, n.kind)
        };
        if meta_change && ino != ROOT_INO {
            if staged {
                // The attributes travel with the next upload.
                let mut st = self.lock();
                if let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut()) {
                    s.journaled = false;
                }
                self.mark_dirty(&mut st, ino);
            } else {
                self.store_attrs(&key, &posix, remote, kind)?;
            }
        }
        if set.size.is_some() || (meta_change && staged) {
            let idle = {
                let st = self.lock();
                Self::node(&st, ino)?.open_handles == 0
            };
            // truncate(2) or chmod by path: nothing will close it, so
            // upload now (sync) or queue it (async).
            if idle {
                match self.opts().upload {
                    UploadMode::Sync => self.upload_now(ino, RetryPolicy::INTERACTIVE)?,
                    UploadMode::Async => {
                        let mut st = self.lock();
                        self.enqueue_if_idle(&mut st, ino);
                    }
                }
            }
        }
        let st = self.lock();
        Ok(Self::node(&st, ino)?.attr(ino))
    }

    /// Rewrites an object's metadata in place (copy onto itself), or
    /// writes a marker for a directory that had none.
    fn store_attrs(&self, key: &str, posix: &Posix, remote: bool, kind: Kind) -> FsResult<()> {
        let meta: PutMeta = layout::encode(posix);
        let store = &self.inner.store;
        let policy = RetryPolicy::INTERACTIVE;
        let result = if kind == Kind::Dir && !remote {
            self.block_on(retry(policy, "mkdir", || {
                store.put(key, Bytes::new(), &meta)
            }))
        } else {
            self.block_on(retry(policy, "set attributes", || {
                store.copy(key, key, Some(&meta))
            }))
        };
        result.map_err(|e| errno_of(&e))
    }

    /// Uploads every dirty file, waiting up to the flush timeout. Returns
    /// how many files are still not in the bucket (they stay journalled).
    pub fn flush_all(&self) -> usize {
        let deadline = Instant::now() + self.opts().flush_timeout;
        self.inner.hurry.send_replace(true);
        {
            let mut st = self.lock();
            let dirty: Vec<u64> = st
                .nodes
                .iter()
                .filter(|(_, n)| !n.unlinked && n.staged.as_ref().is_some_and(|s| s.dirty()))
                .map(|(i, _)| *i)
                .collect();
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
                .count();
            if pending == 0 || Instant::now() >= deadline {
                return pending;
            }
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            drop(self.inner.changed.wait_timeout(st, wait));
        }
    }

    /// Bytes staged locally and not yet in the bucket.
    pub fn pending_bytes(&self) -> u64 {
        let st = self.lock();
        st.nodes
            .values()
            .filter(|n| !n.unlinked && n.staged.as_ref().is_some_and(|s| s.dirty()))
            .map(|n| n.size)
            .sum()
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
            self.fs.maybe_prune(&mut st, *i);
        }
    }
}
