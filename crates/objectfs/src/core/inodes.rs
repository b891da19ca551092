//! The inode table: every node the kernel or an operation knows of, its
//! name in its parent, and the two caches that spare the store a request
//! (complete directory listings and names known to be absent).
//!
//! It is plain data under the filesystem's one mutex: nothing here calls the
//! store, blocks or waits. The operations in the sibling modules read and
//! change it between their store calls.

use super::super::layout::{self, Kind, Posix};
use super::super::{Attr, FsResult, ROOT_INO};
use super::streaming::Stream;
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// A node's local copy of its content, in the staging area.
pub(super) struct Staged {
    pub(super) id: u64,
    pub(super) file: Arc<File>,
    /// Bumped on every change of content or attributes to upload.
    pub(super) dirty_gen: u64,
    /// The generation known to be in the store.
    pub(super) clean_gen: u64,
    /// Since when the changes not in the store yet have waited (set when
    /// the copy becomes dirty, cleared when it is clean again; wall-clock
    /// time, as the status file reports it).
    pub(super) dirty_since: Option<SystemTime>,
    pub(super) journaled: bool,
    /// The mode and mtime (seconds) the journal entry holds
    /// (`JournalEntry::changing`), when `journaled`.
    pub(super) journaled_as: (u32, u64),
    pub(super) uploading: bool,
    pub(super) queued: bool,
    /// A background upload's rounds are running for this copy (they go
    /// on until it is clean or gone).
    pub(super) background: bool,
    /// Bytes of this copy counted against the cache bound.
    pub(super) charged: u64,
    /// Its append run and the upload begun while writing (`streaming`).
    pub(super) stream: Stream,
    /// Open files whose writes the kernel makes to this copy itself
    /// (passthrough, `iomode`): while there are any, the copy's length is
    /// the file's size and its journal entry stays, whatever uploads.
    pub(super) direct_writers: usize,
    /// The kernel was given this copy for passthrough opens: a mapping of
    /// it may outlive the node's last open file, so it is never recycled.
    pub(super) lent: bool,
    /// The file may carry a cache tag, which must go before it changes
    /// (never for a file from the staging area's pool).
    pub(super) maybe_tagged: bool,
    /// Writes whose bytes are going into the file now (the table's lock
    /// not held): until they are done, an upload that finishes leaves the
    /// journal entry in place and tags nothing.
    pub(super) writes_in_flight: u32,
    /// The node's count of content changes ([`Node::content`]) when the
    /// copy was made ([`Node::stage`]): an open file that read another
    /// version from the store does not read this copy.
    pub(super) content: u64,
}

impl Staged {
    /// A staging file whose content nobody has changed yet (a clean copy,
    /// possibly tagged as one; [`Staged::from_pool`] for a file that
    /// cannot be).
    pub(super) fn new(id: u64, file: Arc<File>) -> Staged {
        Staged {
            id,
            file,
            dirty_gen: 0,
            clean_gen: 0,
            dirty_since: None,
            journaled: false,
            journaled_as: (0, 0),
            uploading: false,
            queued: false,
            background: false,
            charged: 0,
            stream: Stream::Off,
            direct_writers: 0,
            lent: false,
            maybe_tagged: true,
            writes_in_flight: 0,
            content: 0,
        }
    }

    /// A file from the staging area's pool, which never carries a tag.
    pub(super) fn from_pool(id: u64, file: Arc<File>) -> Staged {
        Staged {
            maybe_tagged: false,
            ..Staged::new(id, file)
        }
    }

    /// The copy's length now, when writes the mount does not see may have
    /// changed it (one fstat).
    pub(super) fn direct_len(&self) -> Option<u64> {
        if self.direct_writers == 0 {
            return None;
        }
        self.file.metadata().ok().map(|m| m.len())
    }

    pub(super) fn dirty(&self) -> bool {
        self.dirty_gen != self.clean_gen
    }

    /// Content or attributes changed (now): one more generation to upload.
    pub(super) fn touch(&mut self) {
        if !self.dirty() {
            self.dirty_since = Some(SystemTime::now());
        }
        self.dirty_gen += 1;
    }

    /// Generation `gen_` is in the store (an upload that began at
    /// `started`); what changed since has waited since then at most.
    pub(super) fn cleaned(&mut self, gen_: u64, started: SystemTime) {
        self.clean_gen = self.clean_gen.max(gen_);
        self.dirty_since = match self.dirty() {
            true => self.dirty_since.map(|t| t.max(started)),
            false => None,
        };
    }

    /// Nothing of this copy is to be uploaded any more (its name is gone).
    pub(super) fn forget_changes(&mut self) {
        self.clean_gen = self.dirty_gen;
        self.dirty_since = None;
    }
}

pub(super) struct Node {
    pub(super) parent: u64,
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) size: u64,
    pub(super) perm: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime: SystemTime,
    pub(super) ctime: SystemTime,
    /// Kernel lookup count; the node may be dropped when it reaches zero.
    pub(super) lookups: u64,
    /// Children present in the table (a node with children is kept).
    pub(super) children: u32,
    /// When the attributes were last confirmed by the store.
    pub(super) validated: Instant,
    /// False when the attributes came from a listing (no user metadata).
    pub(super) meta_known: bool,
    /// An object (or directory marker) exists for this node in the store.
    pub(super) remote: bool,
    pub(super) staged: Option<Staged>,
    pub(super) open_handles: u32,
    pub(super) unlinked: bool,
    /// A sync unlink's delete is in flight: the copy's changes are not
    /// journalled meanwhile (a crash once the object is gone must not let
    /// the next mount upload them at the name); a failed delete journals
    /// them.
    pub(super) unlinking: bool,
    /// When the name went while handles were open (`mark_unlinked`): the
    /// copy's disk space comes back at the last release.
    pub(super) unlinked_at: Option<Instant>,
    /// Claimed by a namespace operation (rename, unlink) that is changing
    /// this node's key: no upload may start until it is done.
    pub(super) busy: bool,
    /// A readdir's background HEAD for this node is queued or in flight;
    /// a lookup waits for it instead of sending its own.
    pub(super) prefetching: bool,
    /// The key that background HEAD asks, while it is still queued behind
    /// others: a lookup that needs it takes it and asks at once
    /// (`ObjectFs::hurry_prefetch`); the queue then skips it.
    pub(super) prefetch_queued: Option<String>,
    /// A background HEAD of it failed since its metadata was last read:
    /// its lookups probe it themselves (with retries) rather than start
    /// another round of background HEADs.
    pub(super) head_failed: bool,
    pub(super) link_target: Option<Bytes>,
    /// The ETag of the node's object as last seen (probe, listing or this
    /// mount's upload); a clean local copy equals this object. Changed
    /// only by [`Node::other_bytes`] and [`Node::own_copy`].
    pub(super) etag: Option<String>,
    /// Counts the changes of `etag` to another content; this mount's own
    /// copies of the object (same bytes, maybe a new ETag) leave it, so an
    /// open file's reads follow them ([`crate::reader::Reader::pin`]).
    pub(super) content: u64,
    /// The LastModified of the object whose metadata the node holds (read
    /// by a HEAD, or by a listing of this mount's own write), when that
    /// read came at least [`DATE_SETTLED`] after it: a rewrite after the
    /// read then has another date. None when not known so (this mount's own
    /// uploads and copies answer no date: `own_write`). A listing shows the
    /// same object, metadata included, only while it shows this date.
    pub(super) remote_modified: Option<SystemTime>,
    /// When this mount's own write of the node's object (an upload, or a
    /// metadata rewrite in place) was answered, while that object's date
    /// is not known: a listing showing `etag` and `size` dated at most
    /// [`OWN_WRITE_SKEW`] after this is that write ([`Node::relisted`]).
    pub(super) own_write: Option<SystemTime>,
    /// The store's object changed under this node (another client wrote
    /// it) since the kernel last opened it: the kernel's page cache of it
    /// is stale. Changes made through this mount go through the kernel and
    /// keep its page cache right.
    pub(super) changed_remotely: bool,
    /// Queued namespace changes of this node not in the store yet (its
    /// creation, its attributes): until then the table is the truth.
    pub(super) ops: u32,
    /// While a queued directory rename has not copied this node's object
    /// yet: the key it is still at, where its data and attributes are read.
    pub(super) source: Option<String>,
}

impl Node {
    /// A node with `posix`'s attributes (its ctime too: the time of a local
    /// creation, or what the store has), not in the store yet and not
    /// looked up.
    fn new(parent: u64, name: &str, kind: Kind, posix: Posix) -> Node {
        Node {
            parent,
            name: name.to_string(),
            kind,
            size: 0,
            perm: posix.perm,
            uid: posix.uid,
            gid: posix.gid,
            mtime: posix.mtime,
            ctime: posix.ctime,
            lookups: 0,
            children: 0,
            validated: Instant::now(),
            meta_known: true,
            remote: false,
            staged: None,
            open_handles: 0,
            unlinked: false,
            unlinking: false,
            unlinked_at: None,
            busy: false,
            prefetching: false,
            prefetch_queued: None,
            head_failed: false,
            link_target: None,
            etag: None,
            content: 0,
            remote_modified: None,
            own_write: None,
            changed_remotely: false,
            ops: 0,
            source: None,
        }
    }

    pub(super) fn posix(&self) -> Posix {
        Posix {
            kind: self.kind,
            perm: self.perm,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            ctime: self.ctime,
        }
    }

    pub(super) fn attr(&self, ino: u64) -> Attr {
        Attr {
            ino,
            kind: self.kind,
            size: match self.kind {
                Kind::Dir => 0,
                _ => self
                    .staged
                    .as_ref()
                    .and_then(Staged::direct_len)
                    .unwrap_or(self.size),
            },
            perm: self.perm,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            ctime: self.ctime,
            confirmed: (ino != ROOT_INO && !self.authoritative() && !self.unlinked)
                .then_some(self.validated),
        }
    }

    /// The store's object changed (another client's write), dated
    /// `ctime`: a ctime later than the one shown so far, even when the
    /// change came within the second of the last (dates have seconds).
    fn changed_at(&mut self, ctime: SystemTime) {
        self.ctime = ctime.max(self.ctime + std::time::Duration::from_micros(1));
    }

    /// The node's content is now a copy of the object with `etag` (read
    /// from the store just now); another version than the one known means
    /// the kernel's page cache of it is stale.
    /// This mount copied the node's object (a rename, a metadata rewrite):
    /// the ETag the store gave the copy, when it said, which S3 makes new
    /// for an object uploaded in parts or encrypted with KMS. The content
    /// is the same: not a change by another client.
    pub(super) fn own_copy(&mut self, etag: Option<String>) {
        if etag.is_some() {
            self.etag = etag;
        }
    }

    /// The node's object is now the one with `etag`: other bytes than the
    /// ETag it had, unless the same.
    pub(super) fn other_bytes(&mut self, etag: Option<String>) {
        if self.etag != etag {
            self.etag = etag;
            self.content += 1;
        }
    }

    /// The node's local copy is now `s`, made of its content as of now.
    pub(super) fn stage(&mut self, mut s: Staged) {
        s.content = self.content;
        self.staged = Some(s);
    }

    pub(super) fn note_etag(&mut self, etag: Option<String>) {
        if self.etag != etag {
            self.changed_remotely = true;
            self.changed_at(SystemTime::now()); // its date is not known here
            self.other_bytes(etag);
            self.remote_modified = None;
            self.own_write = None;
        }
    }

    /// A write, truncate or open for writing by a caller who may not keep
    /// them clears the set-user-ID and set-group-ID bits; the mode travels
    /// with the upload that follows (one begun while writing has the old
    /// one, so it stops).
    pub(super) fn drop_set_ids(&mut self) {
        let cleared = layout::without_set_ids(self.perm);
        if cleared != self.perm {
            self.perm = cleared;
            self.ctime = SystemTime::now();
            if let Some(s) = self.staged.as_mut() {
                s.stream.stop();
            }
        }
    }

    /// Local state the store cannot contradict: a local copy, or queued
    /// changes. (A file open without a copy reads the store's object and
    /// follows its changes: each open file reads one version of it,
    /// [`crate::reader::Reader::pin`].)
    pub(super) fn authoritative(&self) -> bool {
        self.staged.is_some() || self.ops > 0
    }

    /// Takes what a probe of the store found, keeping local state that is
    /// newer (a staged file's own size and attributes).
    pub(super) fn apply(&mut self, found: &Found) {
        self.kind = found.kind;
        if !self.authoritative() {
            // Another object, or (known before) other metadata: a change.
            // Attributes a listing guessed taking their real values are not,
            // nor an ETag this mount did not know, nor a stored ctime alone
            // (a rename's copy may keep the old one).
            let other_etag = self.etag.is_some() && self.etag != found.etag;
            let other_meta = self.meta_known
                && Posix {
                    ctime: found.posix.ctime,
                    ..self.posix()
                } != found.posix;
            if self.size != found.size || other_etag || other_meta {
                self.changed_at(found.posix.ctime);
            } else if !self.meta_known {
                self.ctime = found.posix.ctime;
            }
            if self.size != found.size {
                self.changed_remotely = true;
            }
            self.size = found.size;
            self.perm = found.posix.perm;
            self.uid = found.posix.uid;
            self.gid = found.posix.gid;
            self.mtime = found.posix.mtime;
            self.link_target = None;
            if self.etag != found.etag {
                self.changed_remotely = true;
                self.other_bytes(found.etag.clone());
            }
            self.remote_modified = found.last_modified;
            self.own_write = None;
        }
        self.remote = self.remote || found.marker || found.kind != Kind::Dir;
        self.meta_known = found.meta_known;
        self.head_failed = false;
        self.validated = Instant::now();
    }

    /// Takes what a listing begun at `at` shows of this file's object, or
    /// of this directory's marker (an empty object; its ETag, the same for
    /// every marker, is not compared). The same ETag, size and date as the
    /// object whose metadata the node holds confirms that metadata as of
    /// `at`, without a HEAD; another ETag, size or date is another object
    /// (new content, or metadata rewritten in place by `chmod` elsewhere),
    /// whose metadata a lookup reads again (`meta_from_listing`: unless the
    /// listing is enough). Without a date to compare, the listing tells
    /// nothing.
    pub(super) fn relisted(
        &mut self,
        o: &Listed,
        at: Instant,
        meta_from_listing: bool,
    ) -> Relisted {
        // A listing begun before the node's last check (an upload of ours
        // that landed meanwhile) tells nothing newer.
        if self.authoritative() || at < self.validated {
            return Relisted::Unknown;
        }
        let marker = self.kind == Kind::Dir;
        let differs =
            |a: Option<&str>, b: Option<&str>| !marker && a.zip(b).is_some_and(|(a, b)| a != b);
        let etags = marker || (o.etag.is_some() && self.etag.is_some());
        let date_differs = self
            .remote_modified
            .zip(o.modified)
            .is_some_and(|(a, b)| !same_second(a, b));
        // With attributes from listings, the listing is all there is to know.
        let listing_enough = meta_from_listing && self.kind == Kind::File;
        let size_differs = !marker && self.size != o.size;
        if size_differs || differs(o.etag, self.etag.as_deref()) || date_differs {
            self.remote_modified = None;
            self.own_write = None;
            self.meta_known = listing_enough;
            if marker {
                // Rewritten elsewhere: a lookup reads the marker again.
                return Relisted::Changed;
            }
            self.changed_remotely = true;
            self.size = o.size;
            self.other_bytes(o.etag.map(str::to_string));
            if let Some(m) = o.modified {
                self.mtime = m;
            }
            self.changed_at(layout::ctime_from_date(o.modified, self.mtime));
            if listing_enough && at > self.validated {
                self.validated = at;
            }
            return Relisted::Changed;
        }
        let same = etags && self.remote_modified.zip(o.modified).is_some();
        // This mount's own write, shown with its ETag and size: its date,
        // once settled, confirms later listings too.
        let own = !same
            && etags
            && self
                .own_write
                .zip(o.modified)
                .is_some_and(|(w, d)| d <= w + OWN_WRITE_SKEW);
        if own {
            let listed_at = SystemTime::now() - at.elapsed();
            if let Some(d) = o.modified.filter(|d| listed_at >= *d + DATE_SETTLED) {
                self.remote_modified = Some(d);
                self.own_write = None;
            }
        }
        if !same && !own && !listing_enough {
            return Relisted::Unknown;
        }
        if self.meta_known && at > self.validated {
            self.validated = at;
        }
        Relisted::Same
    }
}

/// How long after an object's date a read of its metadata must come for
/// a listing to confirm that metadata by the date alone: dates have
/// whole seconds, so a rewrite within the second of the read may keep the
/// date. (Assumes the store's clock and this host's within a second.)
pub(super) const DATE_SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// How much later than the answer to this mount's own write of an object
/// a listing may date that object and still show that write: the store's
/// clock may be ahead of this host's (by less than a second, as for
/// [`DATE_SETTLED`]). Another client's rewrite of the object's metadata in
/// place, keeping its ETag, within this time of the answer is taken for
/// this mount's write (docs/SEMANTICS.md).
pub(super) const OWN_WRITE_SKEW: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether two dates of one object agree: a HEAD gives whole seconds, a
/// listing may give milliseconds.
fn same_second(a: SystemTime, b: SystemTime) -> bool {
    layout::whole_seconds(a) == layout::whole_seconds(b)
}

/// The inode number of a name at `path` below the mount root: the same
/// at every mount of the bucket, so that what remembers inode numbers with
/// other stat data (git's index) finds a file unchanged after a remount.
/// The first four bytes of the path's MD5, in [2, 2^32) (what 32-bit
/// programs can stat, and all git keeps): apart from the counter
/// [`InodeTable::new_node`] falls back to, which starts at 2^32.
pub(super) fn path_ino(path: &str) -> u64 {
    use md5::Digest;
    let digest = md5::Md5::digest(path.as_bytes());
    let first: [u8; 4] = digest[..4].try_into().expect("16 bytes");
    u64::from(u32::from_be_bytes(first)).max(ROOT_INO + 1)
}

/// What a remote probe found at a name.
pub(super) struct Found {
    pub(super) kind: Kind,
    pub(super) size: u64,
    pub(super) posix: Posix,
    pub(super) marker: bool,
    pub(super) meta_known: bool,
    /// The object's ETag (none for directories).
    pub(super) etag: Option<String>,
    /// The object's LastModified, only when the HEAD that read it was
    /// sent [`DATE_SETTLED`] after it or later ([`settled`]; none for
    /// directories).
    pub(super) last_modified: Option<SystemTime>,
}

impl Found {
    /// A file found by a HEAD of its object sent at `asked`: its type and
    /// attributes from the object's metadata (`defaults` where it has none).
    pub(super) fn file(
        meta: crate::store::ObjectMeta,
        asked: SystemTime,
        defaults: &layout::Defaults,
    ) -> Found {
        let posix = layout::decode(&meta.metadata, Kind::File, meta.last_modified, defaults);
        Found {
            kind: posix.kind,
            size: meta.size,
            posix,
            marker: false,
            meta_known: true,
            etag: meta.etag,
            last_modified: settled(meta.last_modified, asked),
        }
    }
}

/// `date`, an object's LastModified read by a HEAD sent at `asked`, when a
/// rewrite after that HEAD must have another date.
pub(super) fn settled(date: Option<SystemTime>, asked: SystemTime) -> Option<SystemTime> {
    date.filter(|d| asked >= *d + DATE_SETTLED)
}

/// A file's object as a listing shows it.
pub(super) struct Listed<'a> {
    pub(super) etag: Option<&'a str>,
    pub(super) size: u64,
    pub(super) modified: Option<SystemTime>,
}

/// What a listing said of a node's object.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Relisted {
    /// The object the node knows: its metadata stays, confirmed as of the
    /// listing.
    Same,
    /// Another object (new content, or metadata rewritten in place): its
    /// size and date are the listing's; its metadata must be read again.
    Changed,
    /// Nothing to tell (local state is the truth, or no ETag to compare).
    Unknown,
}

pub(super) struct InodeTable {
    pub(super) nodes: HashMap<u64, Node>,
    pub(super) children: HashMap<(u64, String), u64>,
    /// Names known to be absent, and since when.
    pub(super) negative: HashMap<(u64, String), Instant>,
    /// Directories whose complete listing is in the table, and since when:
    /// within the TTL a name not in the table does not exist.
    pub(super) listed: HashMap<u64, Instant>,
    /// Directories inside a queued rename (to the new prefix it goes to):
    /// the table holds their whole content until the rename is done, and
    /// the store is not asked about them.
    pub(super) pinned: HashMap<u64, String>,
    /// Nodes with a `source`, by that key.
    pub(super) sourced: HashMap<String, u64>,
    /// Renamed directories whose content is still being read from the old
    /// prefix into the table: what is below them waits for it.
    pub(super) filling: HashSet<u64>,
    /// Directories a lookup is listing right now (one LIST for all).
    pub(super) listing: HashSet<u64>,
    /// Directories found larger than one listing page, and since when:
    /// lookups in them probe names one by one for the TTL.
    pub(super) paged: HashMap<u64, Instant>,
    /// Directories with more keys below them than one listing page (found
    /// so, or holding one found so), and since when: not listed as a whole
    /// subtree for a while (`core/subtree.rs`).
    pub(super) deep: HashMap<u64, Instant>,
    /// Directories in which a known subdirectory was last probed or listed
    /// whole at its lookup: which one, and when. Another one within the
    /// TTL is a walk, which lists the parent's whole subtree instead (the
    /// same one again is not: SQLite looking up its directory once a TTL).
    pub(super) dir_probed: HashMap<u64, (u64, Instant)>,
    /// Directories in which a subdirectory was last listed past its TTL:
    /// which one, and when. Another one within the TTL is a walk, whose
    /// next directories are listed ahead (`core/ahead.rs`).
    pub(super) dir_listed: HashMap<u64, (u64, Instant)>,
    /// Directories waiting for (or being given) a listing ahead of a walk,
    /// with their parent; a readdir or lookup that lists one itself takes
    /// it out.
    pub(super) ahead: HashMap<u64, u64>,
    /// The listings ahead not started yet, in order, and the workers
    /// running them.
    pub(super) ahead_queue: std::collections::VecDeque<super::ahead::Ahead>,
    pub(super) ahead_workers: usize,
    /// Files being fetched ahead of a reader (`core/fetchahead.rs`): true
    /// once the fetch has started, false while it is queued. The queue in
    /// order, and the workers running it.
    pub(super) data_ahead: HashMap<u64, bool>,
    pub(super) data_ahead_queue: std::collections::VecDeque<u64>,
    pub(super) data_ahead_workers: usize,
    /// Directories renamed so far: a subtree listing during which one was
    /// renamed may show it half copied, and is not applied.
    pub(super) dir_moves: u64,
    /// The next number for a node whose path's number is taken.
    next_ino: u64,
}

impl InodeTable {
    /// A table holding the root directory only, with `root`'s attributes.
    pub(super) fn new(root: Posix) -> InodeTable {
        let mut node = Node::new(ROOT_INO, "", Kind::Dir, root);
        node.lookups = 1;
        node.remote = true;
        InodeTable {
            nodes: HashMap::from([(ROOT_INO, node)]),
            children: HashMap::new(),
            negative: HashMap::new(),
            listed: HashMap::new(),
            pinned: HashMap::new(),
            sourced: HashMap::new(),
            filling: HashSet::new(),
            listing: HashSet::new(),
            paged: HashMap::new(),
            deep: HashMap::new(),
            dir_probed: HashMap::new(),
            dir_listed: HashMap::new(),
            ahead: HashMap::new(),
            ahead_queue: std::collections::VecDeque::new(),
            ahead_workers: 0,
            data_ahead: HashMap::new(),
            data_ahead_queue: std::collections::VecDeque::new(),
            data_ahead_workers: 0,
            dir_moves: 0,
            next_ino: 1 << 32,
        }
    }

    /// The node's path below the mount root, `/`-separated, without a
    /// leading `/` (empty for the root).
    pub(super) fn path_of(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut cur = ino;
        while cur != ROOT_INO {
            let Some(n) = self.nodes.get(&cur) else { break };
            parts.push(n.name.as_str());
            cur = n.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// The path `name` would have in `parent`.
    pub(super) fn child_path(&self, parent: u64, name: &str) -> String {
        let base = self.path_of(parent);
        if base.is_empty() {
            name.to_string()
        } else {
            format!("{base}/{name}")
        }
    }

    pub(super) fn node(&self, ino: u64) -> FsResult<&Node> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    pub(super) fn node_mut(&mut self, ino: u64) -> FsResult<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    /// Adds a node named `name` in `parent` and returns its number: the
    /// one its path has ([`path_ino`]) unless a live node holds that (a
    /// file unlinked while open, a clash), else the next of a counter.
    pub(super) fn new_node(&mut self, parent: u64, name: &str, kind: Kind, posix: Posix) -> u64 {
        let by_path = path_ino(&self.child_path(parent, name));
        let ino = if self.nodes.contains_key(&by_path) {
            self.next_ino += 1;
            self.next_ino - 1
        } else {
            by_path
        };
        self.nodes.insert(ino, Node::new(parent, name, kind, posix));
        self.children.insert((parent, name.to_string()), ino);
        self.negative.remove(&(parent, name.to_string()));
        if let Some(p) = self.nodes.get_mut(&parent) {
            p.children += 1;
        }
        ino
    }

    /// Takes a node out of its parent's namespace (it may live on while
    /// open or looked up).
    pub(super) fn detach_name(&mut self, ino: u64) {
        let Some(n) = self.nodes.get(&ino) else {
            return;
        };
        let key = (n.parent, n.name.clone());
        if self.children.get(&key) == Some(&ino) {
            self.children.remove(&key);
            let parent = n.parent;
            if let Some(p) = self.nodes.get_mut(&parent) {
                p.children = p.children.saturating_sub(1);
            }
        }
    }

    /// Drops a node nobody refers to any more, and then its parent if that
    /// became unreferenced too. A name that still exists goes from the
    /// table with its node, so its directory's listing is no longer whole
    /// there: the next lookup in it asks again instead of finding it absent.
    pub(super) fn prune(&mut self, mut ino: u64) {
        while ino != ROOT_INO {
            let Some(n) = self.nodes.get(&ino) else {
                return;
            };
            if n.lookups > 0
                || n.open_handles > 0
                || n.staged.is_some()
                || n.children > 0
                || n.ops > 0
                || n.source.is_some()
                || self.pinned.contains_key(&ino)
            {
                return;
            }
            let parent = n.parent;
            if self.children.get(&(parent, n.name.clone())) == Some(&ino) {
                self.listed.remove(&parent);
            }
            self.detach_name(ino);
            self.nodes.remove(&ino);
            self.listed.remove(&ino);
            self.paged.remove(&ino);
            self.deep.remove(&ino);
            self.dir_probed.remove(&ino);
            self.dir_listed.remove(&ino);
            ino = parent;
        }
    }

    /// `name` is gone from `parent` (unlinked, removed): later lookups miss
    /// without asking the store, and the node goes once unreferenced.
    pub(super) fn forget_name(&mut self, parent: u64, name: &str, ino: u64) {
        self.detach_name(ino);
        self.negative
            .insert((parent, name.to_string()), Instant::now());
        self.prune(ino);
    }

    /// All nodes in the table below `ino` (not including it).
    pub(super) fn descendants(&self, ino: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut stack = vec![ino];
        while let Some(cur) = stack.pop() {
            for ((p, _), c) in self.children.iter() {
                if *p == cur {
                    out.push(*c);
                    stack.push(*c);
                }
            }
        }
        out
    }

    /// Gives `ino` the name `new_name` in `new_parent`; its old name is
    /// remembered as absent.
    pub(super) fn move_node(&mut self, ino: u64, new_parent: u64, new_name: &str) {
        self.detach_name(ino);
        // A node that took the new name meanwhile (a lookup of the
        // rename's copy, already in the store) gives it up.
        let taken = (new_parent, new_name.to_string());
        if let Some(&other) = self.children.get(&taken)
            && other != ino
        {
            self.detach_name(other);
        }
        let old = self.nodes.get(&ino).map(|n| (n.parent, n.name.clone()));
        if let Some((p, n)) = old {
            self.negative.insert((p, n), Instant::now());
        }
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.parent = new_parent;
            n.name = new_name.to_string();
        }
        // Objects at new keys: copies of this mount's, with new dates.
        for i in std::iter::once(ino).chain(self.descendants(ino)) {
            if let Some(n) = self.nodes.get_mut(&i) {
                n.remote_modified = None;
            }
        }
        self.children
            .insert((new_parent, new_name.to_string()), ino);
        self.negative.remove(&(new_parent, new_name.to_string()));
        if let Some(p) = self.nodes.get_mut(&new_parent) {
            p.children += 1;
        }
    }

    /// Whether `ino` is, or is below, a renamed directory whose content
    /// is still being read into the table.
    pub(super) fn being_filled(&self, mut ino: u64) -> bool {
        if self.filling.is_empty() {
            return false;
        }
        loop {
            if self.filling.contains(&ino) {
                return true;
            }
            match self.nodes.get(&ino) {
                Some(n) if ino != ROOT_INO => ino = n.parent,
                _ => return false,
            }
        }
    }

    /// The rename from `from` to `to` is done: its directories are listed
    /// from the store again (their listing stays fresh for a TTL), and no
    /// node reads from the old keys any more.
    pub(super) fn unpin(&mut self, from: &str, to: &str) {
        let dirs: Vec<u64> = self
            .pinned
            .iter()
            .filter(|(_, p)| p.as_str() == to)
            .map(|(i, _)| *i)
            .collect();
        for ino in dirs {
            self.pinned.remove(&ino);
            self.listed.insert(ino, Instant::now());
        }
        let left: Vec<String> = self
            .sourced
            .keys()
            .filter(|k| k.starts_with(from))
            .cloned()
            .collect();
        for key in left {
            if let Some(ino) = self.sourced.remove(&key)
                && let Some(n) = self.nodes.get_mut(&ino)
            {
                n.source = None;
            }
        }
    }

    /// Files with changes not yet in the store (unlinked ones never go).
    pub(super) fn dirty_files(&self) -> impl Iterator<Item = (u64, &Node)> {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.unlinked && n.staged.as_ref().is_some_and(|s| s.dirty()))
            .map(|(i, n)| (*i, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posix(kind: Kind) -> Posix {
        Posix {
            kind,
            perm: 0o755,
            uid: 1,
            gid: 2,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
        }
    }

    fn table() -> InodeTable {
        InodeTable::new(posix(Kind::Dir))
    }

    #[test]
    fn the_root_is_looked_up_and_remote() {
        let t = table();
        let root = t.node(ROOT_INO).unwrap();
        assert_eq!(root.kind, Kind::Dir);
        assert_eq!(root.lookups, 1);
        assert!(root.remote);
        assert_eq!(t.path_of(ROOT_INO), "");
        assert_eq!(t.node(ROOT_INO + 1).err(), Some(libc::ENOENT));
    }

    #[test]
    fn paths_follow_parents() {
        let mut t = table();
        let a = t.new_node(ROOT_INO, "a", Kind::Dir, posix(Kind::Dir));
        let b = t.new_node(a, "b.txt", Kind::File, posix(Kind::File));
        assert_eq!(t.path_of(a), "a");
        assert_eq!(t.path_of(b), "a/b.txt");
        assert_eq!(t.child_path(ROOT_INO, "x"), "x");
        assert_eq!(t.child_path(a, "x"), "a/x");
        assert_eq!(t.node(ROOT_INO).unwrap().children, 1);
        assert_eq!(t.node(a).unwrap().children, 1);
        assert_eq!(t.children.get(&(a, "b.txt".into())), Some(&b));
        let n = t.node(b).unwrap();
        assert_eq!((n.lookups, n.remote, n.size), (0, false, 0));
        assert_eq!(n.attr(b).perm, 0o755);
    }

    #[test]
    fn a_new_name_is_no_longer_negative() {
        let mut t = table();
        t.negative.insert((ROOT_INO, "x".into()), Instant::now());
        t.new_node(ROOT_INO, "x", Kind::File, posix(Kind::File));
        assert!(t.negative.is_empty());
    }

    #[test]
    fn prune_drops_unreferenced_nodes_and_then_their_parents() {
        let mut t = table();
        let a = t.new_node(ROOT_INO, "a", Kind::Dir, posix(Kind::Dir));
        let b = t.new_node(a, "b", Kind::File, posix(Kind::File));
        t.node_mut(b).unwrap().lookups = 1;
        t.listed.insert(a, Instant::now());
        t.prune(a); // has a child: kept
        assert!(t.nodes.contains_key(&a));
        t.prune(b); // looked up: kept
        assert!(t.nodes.contains_key(&b));
        t.node_mut(b).unwrap().lookups = 0;
        t.prune(b);
        assert!(!t.nodes.contains_key(&b));
        assert!(!t.nodes.contains_key(&a));
        assert!(!t.listed.contains_key(&a));
        assert!(t.nodes.contains_key(&ROOT_INO));
        assert_eq!(t.node(ROOT_INO).unwrap().children, 0);
    }

    #[test]
    fn a_pruned_name_leaves_its_directory_listing_incomplete() {
        let mut t = table();
        let a = t.new_node(ROOT_INO, "a", Kind::Dir, posix(Kind::Dir));
        t.node_mut(a).unwrap().lookups = 1;
        let b = t.new_node(a, "b", Kind::File, posix(Kind::File));
        let c = t.new_node(a, "c", Kind::File, posix(Kind::File));
        t.listed.insert(a, Instant::now());
        t.forget_name(a, "c", c); // gone by name: the listing stays whole
        assert!(t.listed.contains_key(&a));
        t.prune(b); // the kernel forgot b, which still exists
        assert!(!t.nodes.contains_key(&b));
        assert!(!t.listed.contains_key(&a), "b would be found absent");
    }

    #[test]
    fn forget_name_remembers_the_absence() {
        let mut t = table();
        let f = t.new_node(ROOT_INO, "f", Kind::File, posix(Kind::File));
        t.node_mut(f).unwrap().open_handles = 1;
        t.forget_name(ROOT_INO, "f", f);
        assert!(t.negative.contains_key(&(ROOT_INO, "f".into())));
        assert!(!t.children.contains_key(&(ROOT_INO, "f".into())));
        // Still open: the node lives on without a name.
        assert!(t.nodes.contains_key(&f));
    }

    #[test]
    fn move_node_renames_and_counts_children() {
        let mut t = table();
        let a = t.new_node(ROOT_INO, "a", Kind::Dir, posix(Kind::Dir));
        let f = t.new_node(ROOT_INO, "f", Kind::File, posix(Kind::File));
        t.move_node(f, a, "g");
        assert_eq!(t.path_of(f), "a/g");
        assert!(t.negative.contains_key(&(ROOT_INO, "f".into())));
        assert_eq!(t.node(ROOT_INO).unwrap().children, 1);
        assert_eq!(t.node(a).unwrap().children, 1);
        assert_eq!(t.descendants(ROOT_INO).len(), 2);
        assert_eq!(t.descendants(a), vec![f]);
    }

    #[test]
    fn move_node_onto_a_name_looked_up_meanwhile_counts_it_once() {
        let mut t = table();
        let f = t.new_node(ROOT_INO, "f", Kind::File, posix(Kind::File));
        let g = t.new_node(ROOT_INO, "g", Kind::File, posix(Kind::File));
        t.move_node(f, ROOT_INO, "g");
        assert_eq!(t.children.get(&(ROOT_INO, "g".into())), Some(&f));
        assert_eq!(t.node(ROOT_INO).unwrap().children, 1);
        // The node that held the name goes without undoing the count.
        t.prune(g);
        assert!(!t.nodes.contains_key(&g));
        assert_eq!(t.node(ROOT_INO).unwrap().children, 1);
    }

    #[test]
    fn detach_leaves_a_name_taken_by_another_node() {
        let mut t = table();
        let old = t.new_node(ROOT_INO, "x", Kind::File, posix(Kind::File));
        let new = t.new_node(ROOT_INO, "x", Kind::File, posix(Kind::File));
        t.detach_name(old);
        assert_eq!(t.children.get(&(ROOT_INO, "x".into())), Some(&new));
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    /// A file whose metadata a HEAD read (long after the object's date
    /// `at(100)`) and whose POSIX mtime (from its header) is not that date,
    /// as after `tar x`.
    fn headed_file(t: &mut InodeTable) -> u64 {
        let f = t.new_node(ROOT_INO, "f", Kind::File, posix(Kind::File));
        let n = t.node_mut(f).unwrap();
        n.size = 5;
        n.remote = true;
        n.etag = Some("e1".into());
        n.remote_modified = Some(at(100));
        n.validated = Instant::now() - std::time::Duration::from_secs(60);
        f
    }

    fn listed(etag: &str, size: u64, secs: u64) -> Listed<'_> {
        Listed {
            etag: Some(etag),
            size,
            modified: Some(at(secs)),
        }
    }

    #[test]
    fn a_listing_of_the_same_object_confirms_its_metadata() {
        let mut t = table();
        let f = headed_file(&mut t);
        let now = Instant::now();
        let n = t.node_mut(f).unwrap();
        let ms = Listed {
            modified: Some(at(100) + std::time::Duration::from_millis(340)),
            ..listed("e1", 5, 100)
        };
        assert_eq!(
            n.relisted(&ms, now, false),
            Relisted::Same,
            "a listing's milliseconds"
        );
        assert_eq!(n.validated, now);
        assert!(n.meta_known && !n.changed_remotely);
        // The header's mtime stays: the object's date is not the file's.
        assert_eq!(n.mtime, SystemTime::UNIX_EPOCH);
    }

    /// A file this mount uploaded (answered at `written`): no date known.
    fn uploaded_file(t: &mut InodeTable, written: SystemTime) -> u64 {
        let f = headed_file(t);
        let n = t.node_mut(f).unwrap();
        n.remote_modified = None;
        n.own_write = Some(written);
        f
    }

    #[test]
    fn a_listing_shows_this_mounts_own_write_by_its_etag_size_and_date() {
        let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let sec = std::time::Duration::from_secs(1);
        // Dated up to a second after the answer (the store's clock ahead).
        let written = SystemTime::now() - 10 * sec;
        for late in [0, 1] {
            let mut t = table();
            let f = uploaded_file(&mut t, written);
            let n = t.node_mut(f).unwrap();
            let now = Instant::now();
            let shown = listed("e1", 5, secs(written) + late);
            assert_eq!(n.relisted(&shown, now, false), Relisted::Same, "{late}");
            assert_eq!(n.validated, now);
            assert!(n.meta_known && !n.changed_remotely);
            // Listed long after its date: later listings go by the date.
            assert_eq!(n.remote_modified, shown.modified);
            assert_eq!(n.own_write, None);
        }
        // Dated later: a rewrite after this mount's (a chmod elsewhere).
        let mut t = table();
        let f = uploaded_file(&mut t, written);
        let n = t.node_mut(f).unwrap();
        let shown = listed("e1", 5, secs(written) + 2);
        assert_eq!(n.relisted(&shown, Instant::now(), false), Relisted::Unknown);
        assert!(n.own_write.is_some() && n.remote_modified.is_none());
        // Another ETag or size: another object.
        let shown = listed("e2", 5, secs(written));
        assert_eq!(n.relisted(&shown, Instant::now(), false), Relisted::Changed);
        assert_eq!((n.own_write, n.remote_modified), (None, None));
    }

    #[test]
    fn an_own_write_listed_within_seconds_of_its_date_is_confirmed_but_its_date_not_kept() {
        // Listed right after the upload: a rewrite later in the same second
        // would have the same date, so the date is not kept yet.
        let written = SystemTime::now();
        let mut t = table();
        let f = uploaded_file(&mut t, written);
        let n = t.node_mut(f).unwrap();
        let shown = Listed {
            modified: Some(written),
            ..listed("e1", 5, 0)
        };
        let now = Instant::now();
        assert_eq!(n.relisted(&shown, now, false), Relisted::Same);
        assert_eq!(n.validated, now);
        assert_eq!((n.own_write, n.remote_modified), (Some(written), None));
    }

    #[test]
    fn another_etag_size_or_date_is_another_object() {
        // A new date alone: the metadata was rewritten in place elsewhere.
        for (etag, size, date) in [("e2", 5, 100), ("e1", 6, 100), ("e1", 5, 101)] {
            let mut t = table();
            let f = headed_file(&mut t);
            let n = t.node_mut(f).unwrap();
            let before = n.validated;
            let got = n.relisted(&listed(etag, size, date), Instant::now(), false);
            assert_eq!(got, Relisted::Changed, "{etag} {size} {date}");
            assert_eq!((n.size, n.etag.as_deref()), (size, Some(etag)));
            assert!(!n.meta_known && n.changed_remotely);
            assert_eq!((n.validated, n.remote_modified), (before, None));
        }
    }

    /// A directory whose marker was read (dated 100), or written by this
    /// mount (`own_write`), as a listing of it shows its marker.
    fn dir_with_marker(t: &mut InodeTable, own_write: Option<SystemTime>) -> u64 {
        let d = t.new_node(ROOT_INO, "d", Kind::Dir, posix(Kind::Dir));
        let n = t.node_mut(d).unwrap();
        n.remote = true;
        n.etag = own_write.is_none().then(|| "empty".into());
        n.remote_modified = own_write.is_none().then(|| at(100));
        n.own_write = own_write;
        n.validated = Instant::now() - std::time::Duration::from_secs(60);
        d
    }

    #[test]
    fn a_listed_marker_confirms_its_directory_by_its_date_alone() {
        let sec = std::time::Duration::from_secs(1);
        let mut t = table();
        let d = dir_with_marker(&mut t, None);
        let n = t.node_mut(d).unwrap();
        let now = Instant::now();
        // Every marker has the ETag of empty content: it is not compared.
        assert_eq!(
            n.relisted(&listed("another", 0, 100), now, false),
            Relisted::Same
        );
        assert!(n.meta_known && n.validated == now);
        // A marker this mount wrote, listed with its date.
        let written = SystemTime::now() - 10 * sec;
        let mut t = table();
        let d = dir_with_marker(&mut t, Some(written));
        let n = t.node_mut(d).unwrap();
        let shown = Listed {
            etag: None,
            size: 0,
            modified: Some(written),
        };
        assert_eq!(n.relisted(&shown, Instant::now(), false), Relisted::Same);
        // Rewritten elsewhere (a chmod of the directory): read it again,
        // the attributes kept until then.
        let mut t = table();
        let d = dir_with_marker(&mut t, None);
        let n = t.node_mut(d).unwrap();
        let before = (n.validated, n.mtime, n.size);
        assert_eq!(
            n.relisted(&listed("empty", 0, 101), Instant::now(), false),
            Relisted::Changed
        );
        assert!(!n.meta_known && n.remote_modified.is_none());
        assert_eq!((n.validated, n.mtime, n.size), before);
    }

    #[test]
    fn a_listing_confirms_nothing_without_a_settled_date_or_over_local_state() {
        let mut t = table();
        let f = headed_file(&mut t);
        let n = t.node_mut(f).unwrap();
        let before = n.validated;
        let now = Instant::now();
        n.ops = 1;
        assert_eq!(
            n.relisted(&listed("e9", 1, 1), now, false),
            Relisted::Unknown
        );
        assert_eq!(n.size, 5);
        n.ops = 0;
        let no_etag = Listed {
            etag: None,
            size: 5,
            modified: Some(at(100)),
        };
        assert_eq!(n.relisted(&no_etag, now, false), Relisted::Unknown);
        // No date to compare (nor a write of this mount's).
        n.remote_modified = None;
        assert_eq!(
            n.relisted(&listed("e1", 5, 100), now, false),
            Relisted::Unknown
        );
        assert_eq!(n.validated, before);
    }

    #[test]
    fn with_attributes_from_listings_a_listing_confirms_what_it_shows() {
        let mut t = table();
        let f = headed_file(&mut t);
        let n = t.node_mut(f).unwrap();
        n.remote_modified = None; // no date known
        let now = Instant::now();
        assert_eq!(n.relisted(&listed("e1", 5, 100), now, true), Relisted::Same);
        assert_eq!(n.validated, now);
        let later = now + std::time::Duration::from_millis(5);
        assert_eq!(
            n.relisted(&listed("e2", 7, 200), later, true),
            Relisted::Changed
        );
        assert_eq!((n.size, n.validated, n.mtime), (7, later, at(200)));
        assert!(n.meta_known && n.changed_remotely);
    }

    #[test]
    fn a_date_is_kept_only_when_the_head_was_sent_well_after_it() {
        let asked = at(1000);
        assert_eq!(settled(Some(at(990)), asked), Some(at(990)));
        assert_eq!(settled(Some(at(998)), asked), Some(at(998)));
        assert_eq!(
            settled(Some(at(999)), asked),
            None,
            "within a second and a margin"
        );
        assert_eq!(settled(None, asked), None);
    }

    #[test]
    fn a_listing_begun_before_the_last_check_tells_nothing() {
        let mut t = table();
        let f = headed_file(&mut t);
        let n = t.node_mut(f).unwrap();
        let begun = Instant::now();
        n.validated = begun + std::time::Duration::from_millis(5); // an upload landed meanwhile
        let got = n.relisted(&listed("e0", 1, 50), begun, true);
        assert_eq!(got, Relisted::Unknown);
        assert_eq!((n.size, n.etag.as_deref()), (5, Some("e1")));
    }

    #[test]
    fn apply_keeps_local_attributes_of_a_file_with_queued_changes_only() {
        let mut t = table();
        let f = t.new_node(ROOT_INO, "f", Kind::File, posix(Kind::File));
        let found = Found {
            kind: Kind::File,
            size: 9,
            posix: Posix {
                perm: 0o600,
                ..posix(Kind::File)
            },
            marker: false,
            meta_known: true,
            etag: None,
            last_modified: None,
        };
        let n = t.node_mut(f).unwrap();
        n.ops = 1;
        n.size = 3;
        n.apply(&found);
        assert_eq!((n.size, n.perm, n.remote), (3, 0o755, true));
        // Open, without a copy here: the store's object is the file's.
        n.ops = 0;
        n.open_handles = 1;
        n.apply(&found);
        assert_eq!((n.size, n.perm), (9, 0o600));
    }

    /// What a HEAD of the object `etag` dated `at(100) + 700 ms` finds.
    fn found_object(etag: &str, mtime: SystemTime) -> Found {
        let date = at(100) + std::time::Duration::from_millis(700);
        let posix = Posix {
            mtime,
            ctime: layout::ctime_from_date(Some(date), mtime),
            ..posix(Kind::File)
        };
        Found {
            kind: Kind::File,
            size: 5,
            posix,
            marker: false,
            meta_known: true,
            etag: Some(etag.into()),
            last_modified: Some(date),
        }
    }

    #[test]
    fn a_name_has_the_number_of_its_path_at_every_mount() {
        let mut one = table();
        let d = one.new_node(ROOT_INO, "d", Kind::Dir, posix(Kind::Dir));
        let f = one.new_node(d, "f.txt", Kind::File, posix(Kind::File));
        // Another mount meets the names in another order.
        let mut two = table();
        two.new_node(ROOT_INO, "other", Kind::File, posix(Kind::File));
        let d2 = two.new_node(ROOT_INO, "d", Kind::Dir, posix(Kind::Dir));
        assert_eq!(
            (d2, two.new_node(d2, "f.txt", Kind::File, posix(Kind::File))),
            (d, f)
        );
        assert_ne!(d, f);
        assert!((ROOT_INO + 1..1 << 32).contains(&f), "{f:#x}");
        assert_eq!(f, path_ino("d/f.txt"));
        // A file unlinked while open keeps its number; a new file of that
        // name takes one of the counter's.
        one.detach_name(f);
        let again = one.new_node(d, "f.txt", Kind::File, posix(Kind::File));
        assert!(again >= 1 << 32, "{again}");
        // Once the old one is gone, the path's number is free again.
        one.detach_name(again);
        one.nodes.remove(&f);
        assert_eq!(one.new_node(d, "f.txt", Kind::File, posix(Kind::File)), f);
    }

    #[test]
    fn a_listed_name_keeps_its_ctime_when_its_metadata_arrives() {
        let mut t = table();
        let f = headed_file(&mut t);
        let n = t.node_mut(f).unwrap();
        // As a listing made it: the date for ctime, guessed attributes.
        n.ctime = at(100);
        n.meta_known = false;
        n.perm = 0o644;
        // The HEAD finds a stored ctime (its writer's), which it takes.
        let mut found = found_object("e1", at(42));
        found.posix.ctime = at(90);
        n.apply(&found);
        assert_eq!((n.ctime, n.perm, n.mtime), (at(90), 0o755, at(42)));
    }

    #[test]
    fn ctime_stays_put_while_the_object_does() {
        let mut t = table();
        let f = headed_file(&mut t);
        let n = t.node_mut(f).unwrap();
        // Shown a ctime the store does not have (a rename's copy that kept
        // the old one), and an ETag this mount never learnt (its own mkdir).
        n.ctime = at(100) + std::time::Duration::from_micros(1);
        n.etag = None;
        for _ in 0..3 {
            n.apply(&found_object("e1", SystemTime::UNIX_EPOCH));
            assert_eq!(n.ctime, at(100) + std::time::Duration::from_micros(1));
        }
    }

    #[test]
    fn ctime_changes_with_the_object_and_only_then() {
        let mut t = table();
        let f = headed_file(&mut t);
        let n = t.node_mut(f).unwrap();
        n.ctime = at(100); // as read from the store
        // The same object read again (as by a HEAD past the TTL): no
        // change, whatever the date of the read.
        let same = found_object("e1", SystemTime::UNIX_EPOCH);
        n.apply(&same);
        assert_eq!(n.ctime, at(100));
        // Rewritten elsewhere with the same size and mtime (`tar x` of
        // another version): the ETag says so, and ctime is its date.
        let mut other = found_object("e2", SystemTime::UNIX_EPOCH);
        other.last_modified = Some(at(200));
        other.posix.ctime = at(200);
        n.apply(&other);
        assert_eq!(n.ctime, at(200));
        // Another rewrite within that second still shows as a change.
        n.apply(&Found {
            etag: Some("e2b".into()),
            ..other
        });
        assert!(n.ctime > at(200) && n.ctime < at(201));
        // A listing of a third version dates it too.
        n.validated = Instant::now() - std::time::Duration::from_secs(60);
        let shown = Listed {
            modified: Some(at(300) + std::time::Duration::from_millis(250)),
            ..listed("e3", 5, 300)
        };
        assert_eq!(n.relisted(&shown, Instant::now(), false), Relisted::Changed);
        assert_eq!(n.ctime, at(300));
        // A read that finds another version, its date unknown: now.
        n.staged = None;
        n.note_etag(Some("e4".into()));
        assert!(n.ctime > at(300));
    }

    #[test]
    fn dirty_files_skip_clean_and_unlinked_ones() {
        let mut t = table();
        let (a, b) = (
            t.new_node(ROOT_INO, "a", Kind::File, posix(Kind::File)),
            t.new_node(ROOT_INO, "b", Kind::File, posix(Kind::File)),
        );
        let file = Arc::new(tempfile::tempfile().unwrap());
        for ino in [a, b] {
            let mut s = Staged::new(ino, file.clone());
            s.dirty_gen = 1;
            t.node_mut(ino).unwrap().staged = Some(s);
        }
        t.node_mut(b).unwrap().unlinked = true;
        let dirty: Vec<u64> = t.dirty_files().map(|(i, _)| i).collect();
        assert_eq!(dirty, vec![a]);
    }

    #[test]
    fn a_copy_is_dirty_since_its_first_change_not_in_the_store() {
        let mut s = Staged::new(1, Arc::new(tempfile::tempfile().unwrap()));
        assert_eq!(s.dirty_since, None);
        s.touch();
        let first = s.dirty_since.expect("dirty since the first change");
        s.touch();
        assert_eq!(s.dirty_since, Some(first), "a later change keeps the start");
        // An upload of generation 2 began; a change came in meanwhile.
        let started = SystemTime::now();
        let gen_ = s.dirty_gen;
        s.touch();
        s.cleaned(gen_, started);
        assert!(s.dirty());
        assert_eq!(
            s.dirty_since,
            Some(started),
            "what waits now came after it began"
        );
        s.cleaned(s.dirty_gen, SystemTime::now());
        assert_eq!((s.dirty(), s.dirty_since), (false, None));
        s.touch();
        s.forget_changes();
        assert_eq!((s.dirty(), s.dirty_since), (false, None));
    }
}
