//! Namespace operations: finding a name (from the inode table or by
//! probing the store), lookup, getattr and forget, and the operations that
//! create, remove or move names: mkdir, symlink, readlink, unlink, rmdir
//! and rename (a file by server-side copy, a directory key by key).

use super::super::layout::{self, Kind, Posix};
use super::super::oplog::NsOp;
use super::super::staging::JournalEntry;
use super::super::transfer::{RetryPolicy, retry};
use super::super::{Attr, Errno, FsResult, ROOT_INO};
use super::copies::out_of_space;
use super::inodes::{Found, InodeTable, settled};
use super::ops::NotJournalled;
use super::{ObjectFs, errno_of};
use crate::store::StoreError;
use bytes::Bytes;
use std::sync::MutexGuard;
use std::time::{Duration, Instant, SystemTime};

impl ObjectFs {
    /// What the store has at `key`: a file/symlink object, or a directory
    /// (marker `key/` or keys below it). One HEAD and one LIST, in parallel;
    /// for a name known to be a file, the HEAD first and the LIST only when
    /// it finds nothing; for a name known to be a directory, its marker's
    /// HEAD too, in the same round.
    fn probe(&self, key: &str, known: Option<Kind>, source: bool) -> FsResult<Option<Found>> {
        let file_known = known.is_some_and(|k| k != Kind::Dir);
        let store = &self.inner.store;
        let dir_prefix = format!("{key}/");
        let policy = RetryPolicy::INTERACTIVE;
        // A file of a queued directory rename is probed at its old key
        // (`source`), which that rename hides from everything else (a new
        // name at the old path included).
        let before = self.removals();
        let list_dir = || retry(policy, "list", || store.list(&dir_prefix, None, None, 1));
        let asked = SystemTime::now();
        let marker = (known == Some(Kind::Dir)).then(|| {
            let store = store.clone();
            let marker = dir_prefix.clone();
            self.inner
                .rt
                .spawn(async move { retry(policy, "head", || store.head(&marker)).await })
        });
        let (head, list) = self.block_on(async {
            if file_known {
                let head = retry(policy, "head", || store.head(key)).await;
                let list = match &head {
                    Ok(None) => list_dir().await,
                    _ => Ok(Default::default()),
                };
                (head, list)
            } else {
                tokio::join!(retry(policy, "head", || store.head(key)), list_dir())
            }
        });
        let mut gone = self.gone_since(before);
        if source {
            gone = Default::default();
        }
        let defaults = &self.opts().defaults;
        // What this mount deleted and has not sent yet is gone already.
        let head = head.map(|h| h.filter(|_| !gone.hides(key)));
        if let Some(meta) = head.map_err(|e| errno_of(&e))? {
            return Ok(Some(Found::file(meta, asked, defaults)));
        }
        let mut list = list.map_err(|e| errno_of(&e))?;
        list.objects.retain(|o| !gone.hides(&o.key));
        if self.ops().pending_under(&dir_prefix) {
            let before = self.removals();
            list = self.call("list", || store.list(&dir_prefix, None, None, 1000))?;
            let gone = self.gone_since(before);
            list.objects.retain(|o| source || !gone.hides(&o.key));
        }
        let Some(first) = list.objects.first() else {
            return Ok(None);
        };
        // A marker sorts first under its own prefix: read its attributes.
        if first.key == dir_prefix {
            let fetched = match marker {
                Some(task) => self.block_on(task).ok(),
                None => None,
            };
            let meta = match fetched {
                Some(meta) => meta.map_err(|e| errno_of(&e))?,
                None => self.call("head", || store.head(&dir_prefix))?,
            }
            .unwrap_or_default();
            let posix = layout::decode(&meta.metadata, Kind::Dir, meta.last_modified, defaults);
            return Ok(Some(Found {
                kind: Kind::Dir,
                size: 0,
                posix,
                marker: true,
                meta_known: true,
                etag: meta.etag.clone(),
                last_modified: settled(meta.last_modified, asked),
            }));
        }
        let mut posix = layout::decode(
            &Default::default(),
            Kind::Dir,
            first.last_modified,
            defaults,
        );
        posix.ctime = posix.mtime; // no object of its own to date it
        Ok(Some(Found {
            kind: Kind::Dir,
            size: 0,
            posix,
            marker: false,
            meta_known: true,
            etag: None,
            last_modified: None,
        }))
    }

    /// A directory known to exist (listed): its marker's attributes, or
    /// the defaults when it has no marker.
    fn probe_marker(&self, key: &str) -> FsResult<Found> {
        let store = &self.inner.store;
        let marker = format!("{key}/");
        let asked = SystemTime::now();
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
            etag: meta.etag.clone(),
            last_modified: settled(meta.last_modified, asked),
        })
    }
    /// Finds `name` in `parent`, from the table when fresh, else from the
    /// store. Does not change lookup counts.
    pub(super) fn resolve(&self, parent: u64, name: &str) -> FsResult<u64> {
        let key = {
            let st = self.lock();
            let mut st = self.wait_filled(st, parent)?;
            let p = st.node(parent)?;
            if p.kind != Kind::Dir {
                return Err(libc::ENOTDIR);
            }
            let entry = (parent, name.to_string());
            // `ls -l` looks up entries one by one right after readdir: wait
            // for the parallel prefetch of this one rather than racing it
            // (sent now if it is still queued).
            if let Some(&ino) = st.children.get(&entry) {
                self.hurry_prefetch(&mut st, ino);
            }
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
                // A stale directory in a directory where another one was
                // probed within the TTL: a walk over them, which one
                // listing of the parent's whole subtree answers (or, when
                // it is larger than a page, the probes below).
                if n.kind == Kind::Dir
                    && !st.pinned.contains_key(&parent)
                    && !st.listed.get(&parent).is_some_and(|t| self.ttl_fresh(*t))
                    && st
                        .dir_probed
                        .get(&parent)
                        .is_some_and(|(d, t)| *d != ino && self.ttl_fresh(*t))
                {
                    drop(st);
                    let whole = self.list_whole_dir(parent)?;
                    let current;
                    (st, current) = self.after_revalidation(&entry, ino);
                    if current {
                        return Ok(ino);
                    }
                    if whole && !st.children.contains_key(&entry) {
                        return Err(libc::ENOENT);
                    }
                }
                let Some(n) = st.nodes.get(&ino) else {
                    return self.resolve(parent, name);
                };
                // A stale directory with a marker (read, or written by this
                // mount) and entries the table knows (not one only stat'ed,
                // or polled): one listing of its whole subtree, when that fits
                // in a page, confirms it by its marker and everything a walk
                // below it looks up next (`git add` past the TTL: `.git/`,
                // its refs and its object directories), one round instead
                // of a probe and a listing per level. (Without a marker, the
                // listing could not confirm it: probed. Found larger than a
                // page: probed for a while, since each try costs a full page.
                // In a directory listed within the TTL it is revalidated with
                // its stale siblings below, one round for many of them.)
                if n.kind == Kind::Dir
                    && n.children > 0
                    && (n.remote_modified.is_some() || n.own_write.is_some())
                    && !self.known_deep(&st, ino)
                    && !st.listed.get(&parent).is_some_and(|t| self.ttl_fresh(*t))
                    && !st.pinned.contains_key(&parent)
                    && !st.pinned.contains_key(&ino)
                {
                    st.dir_probed.insert(parent, (ino, Instant::now()));
                    drop(st);
                    self.list_whole_dir(ino)?;
                    let current;
                    (st, current) = self.after_revalidation(&entry, ino);
                    if current {
                        return Ok(ino);
                    }
                }
                let Some(n) = st.nodes.get(&ino) else {
                    return self.resolve(parent, name);
                };
                // A stale entry its directory's listing (within the TTL)
                // did not confirm: revalidated with its stale siblings.
                if !n.head_failed
                    && !n.prefetching
                    && !st.pinned.contains_key(&parent)
                    && st.listed.get(&parent).is_some_and(|t| self.ttl_fresh(*t))
                {
                    self.revalidate_with_siblings(st, parent, ino);
                    let current;
                    (st, current) = self.after_revalidation(&entry, ino);
                    if current {
                        return Ok(ino);
                    }
                }
                // Inside a queued rename a directory is what the table
                // says; its attributes are on its marker at the old key.
                if let Some(n) = st.nodes.get(&ino)
                    && n.kind == Kind::Dir
                    && st.pinned.contains_key(&parent)
                {
                    let Some(marker) = n.source.clone() else {
                        return Ok(ino);
                    };
                    drop(st);
                    let found = self.probe_marker(marker.trim_end_matches('/'))?;
                    let mut st = self.lock();
                    st.node_mut(ino)?.apply(&found);
                    return Ok(ino);
                }
            } else if let Some(&at) = st.negative.get(&entry)
                && self.ttl_fresh(at)
            {
                return Err(libc::ENOENT);
            } else if st.listed.get(&parent).is_some_and(|t| self.ttl_fresh(*t))
                || st.pinned.contains_key(&parent)
            {
                return Err(libc::ENOENT);
            }
            let known = st.children.get(&entry).copied();
            let key = match known {
                Some(ino) => self.read_key(&st, ino),
                None => self.child_key(&st, parent, name),
            };
            let known_kind = known.map(|i| st.nodes[&i].kind);
            if let Some(ino) = known.filter(|_| known_kind == Some(Kind::Dir)) {
                st.dir_probed.insert(parent, (ino, Instant::now()));
            }
            // A known object whose attributes are older than the TTL: one
            // listing of its directory confirms it and its siblings.
            // (Listed within the TTL already: this one was not confirmed.)
            let stale_object = known_kind.is_some_and(|k| k != Kind::Dir)
                && !st.pinned.contains_key(&parent)
                && !st.listed.get(&parent).is_some_and(|t| self.ttl_fresh(*t));
            // A name new to the table is probed on its own, one round
            // whatever the directory holds (`mv a b`, `touch new` in a large
            // tree); then its directory is listed in the background for the
            // lookups that follow (creating many files, imports). Not
            // during the probe: the store would serve the two at once, and a
            // listing of a directory with much below it (a bucket's root)
            // slowed the probe that the caller waits for 2-4 times (a `mv`
            // to a new name). Those that come while that LIST is under way
            // are probed too rather than wait for it: a LIST of a large
            // directory takes many rounds.
            let list_after = known.is_none() && !st.listing.contains(&parent);
            (
                key,
                self.dir_prefix_of(&st, parent),
                known_kind,
                stale_object,
                list_after,
            )
        };
        let (key, parent_prefix, known_kind, list_first, list_after) = key;
        let found =
            self.resolve_in_store(parent, name, (&key, &parent_prefix), known_kind, list_first);
        if list_after {
            let fs = self.clone();
            self.inner.rt.spawn_blocking(move || {
                let _ = fs.list_small_dir(parent, &parent_prefix, false);
            });
        }
        found
    }

    /// After a revalidation of `ino` (a listing, its HEAD): the table once
    /// `ino`'s metadata is no longer being fetched, and whether `entry`
    /// still names it with attributes current.
    fn after_revalidation(
        &self,
        entry: &(u64, String),
        ino: u64,
    ) -> (MutexGuard<'_, InodeTable>, bool) {
        let mut st = self.lock();
        self.hurry_prefetch(&mut st, ino);
        let st = self.wait_while(st, |st| st.nodes.get(&ino).is_some_and(|n| n.prefetching));
        let current = st.children.get(entry) == Some(&ino)
            && st
                .nodes
                .get(&ino)
                .is_some_and(|n| self.attrs_current(ino, n));
        (st, current)
    }

    /// The rest of `resolve`, which asks the store: a listing of the
    /// directory first (`list_first`), else a probe of `key`.
    fn resolve_in_store(
        &self,
        parent: u64,
        name: &str,
        (key, parent_prefix): (&str, &str),
        known_kind: Option<Kind>,
        list_first: bool,
    ) -> FsResult<u64> {
        let known = known_kind.is_some();
        let walk = list_first && known;
        if list_first && self.list_small_dir(parent, parent_prefix, walk)? {
            let mut st = self.lock();
            if st.being_filled(parent) {
                // Renamed while we asked: again, once the table has it.
                drop(st);
                return self.resolve(parent, name);
            }
            let entry = (parent, name.to_string());
            match st.children.get(&entry).copied() {
                None => {
                    st.negative.insert(entry, Instant::now());
                    return Err(libc::ENOENT);
                }
                // Not confirmed by the listing: its revalidation, begun by
                // the listing, or else the probe below says.
                Some(ino) if known => {
                    self.hurry_prefetch(&mut st, ino);
                    st =
                        self.wait_while(st, |st| st.nodes.get(&ino).is_some_and(|n| n.prefetching));
                    if st
                        .nodes
                        .get(&ino)
                        .is_some_and(|n| self.attrs_current(ino, n))
                    {
                        return Ok(ino);
                    }
                }
                Some(ino) if st.nodes[&ino].meta_known => return Ok(ino),
                // A listed directory's attributes are on its marker.
                Some(ino) if st.nodes[&ino].kind == Kind::Dir => {
                    drop(st);
                    let asked = Instant::now();
                    let found = self.probe_marker(key)?;
                    let mut st = self.lock();
                    let node = st.node_mut(ino)?;
                    if !node.meta_known || asked >= node.validated {
                        node.apply(&found);
                    }
                    return Ok(ino);
                }
                Some(_) => {}
            }
        }
        // Its name's node reads from this key, the old one of a renamed
        // directory's file.
        let reads_source = |st: &InodeTable, key: &str| {
            st.children
                .get(&(parent, name.to_string()))
                .and_then(|i| st.nodes.get(i))
                .is_some_and(|n| n.source.as_deref() == Some(key))
        };
        let source = reads_source(&self.lock(), key);
        let asked = Instant::now();
        let mut found = self.probe(key, known_kind, source)?;
        let mut st = self.lock();
        if st.being_filled(parent) {
            // Renamed while we asked (the answer is hidden as the old
            // name's): again, once the table has the new tree.
            drop(st);
            return self.resolve(parent, name);
        }
        let entry = (parent, name.to_string());
        // Moved by a queued directory rename while we asked: ask again at
        // the key it is at now.
        if found.is_none()
            && let Some(&ino) = st.children.get(&entry)
            && self.read_key(&st, ino) != key
        {
            let now_at = self.read_key(&st, ino);
            let source = reads_source(&st, &now_at);
            drop(st);
            found = self.probe(&now_at, known_kind, source)?;
            st = self.lock();
        }
        match found {
            None => {
                if let Some(&ino) = st.children.get(&entry) {
                    let n = &st.nodes[&ino];
                    if n.authoritative() || asked < n.validated {
                        // Created locally meanwhile, or uploaded since the
                        // probe was sent.
                        return Ok(ino);
                    }
                    st.detach_name(ino);
                    st.prune(ino);
                }
                st.negative.insert(entry, Instant::now());
                Err(libc::ENOENT)
            }
            Some(found) => {
                let (ino, new) = match st.children.get(&entry) {
                    Some(&ino) => (ino, false),
                    None => (st.new_node(parent, name, found.kind, found.posix), true),
                };
                let node = st.node_mut(ino)?;
                // Its metadata known as of later than the probe was sent (an
                // upload of this mount landed meanwhile): the probe tells
                // nothing newer. (A listing's guess is no such knowledge.)
                if !new && node.meta_known && asked < node.validated {
                    return Ok(ino);
                }
                node.apply(&found);
                if new {
                    node.ctime = found.posix.ctime; // the object's, not a change
                }
                Ok(ino)
            }
        }
    }

    pub fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let ino = self.resolve(parent, name)?;
        let mut st = self.lock();
        let node = st.node_mut(ino)?;
        node.lookups += 1;
        Ok(node.attr(ino))
    }

    /// How long a miss of `name` in `parent`, just answered, stays true as
    /// far as this mount knows: what is left of the TTL of the negative
    /// entry or of the directory's listing that answered it; zero when
    /// neither is fresh. The kernel may keep the miss that long and no
    /// longer, so another host's new file still shows within the TTL.
    pub fn miss_ttl(&self, parent: u64, name: &str) -> Duration {
        let st = self.lock();
        if st.children.contains_key(&(parent, name.to_string())) {
            return Duration::ZERO; // known since (a listing that landed)
        }
        let ttl = self.opts().metadata_ttl;
        let left = |at: &Instant| ttl.saturating_sub(at.elapsed());
        let negative = st.negative.get(&(parent, name.to_string())).map(left);
        let listed = st.listed.get(&parent).map(left);
        negative.into_iter().chain(listed).max().unwrap_or_default()
    }

    pub fn forget(&self, ino: u64, n: u64) {
        let mut st = self.lock();
        if let Some(node) = st.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        st.prune(ino);
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let (parent, name) = {
            let st = self.lock();
            let n = st.node(ino)?;
            if self.attrs_current(ino, n) {
                return Ok(n.attr(ino));
            }
            (n.parent, n.name.clone())
        };
        // Re-validate through the parent; a node that vanished remotely
        // keeps its last attributes for the kernel's sake, and so does an
        // open file the store cannot be asked about now (its fstat does
        // not fail while the store stalls).
        match self.resolve(parent, &name) {
            Ok(_) | Err(libc::ENOENT) => {}
            Err(e) if self.lock().node(ino)?.open_handles == 0 => return Err(e),
            Err(_) => {}
        }
        let st = self.lock();
        Ok(st.node(ino)?.attr(ino))
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
        self.check_new_name(parent, name, true)?;
        let now = SystemTime::now();
        let posix = Posix {
            kind: Kind::Dir,
            perm: perm & 0o7777,
            uid,
            gid,
            mtime: now,
            ctime: now,
        };
        let key = {
            let st = self.lock();
            format!("{}/", self.child_key(&st, parent, name))
        };
        let meta = layout::encode(&posix);
        let queued = self.queued_namespace();
        if !queued {
            let store = &self.inner.store;
            self.call("mkdir", || store.put(&key, Bytes::new(), &meta))?;
        }
        let mut st = self.lock();
        let ino = st.new_node(parent, name, Kind::Dir, posix);
        // Just created: its complete listing is "empty".
        st.listed.insert(ino, Instant::now());
        let mut missed = NotJournalled::none();
        if queued {
            let op = NsOp::Put {
                key,
                meta,
                body: Vec::new(),
            };
            missed = self.queue_op(&mut st, op, Some(ino));
        }
        let node = st.node_mut(ino)?;
        node.remote = !queued;
        if !queued {
            // Its marker is this mount's own write: a listing showing it
            // confirms the directory (`Node::relisted`).
            node.own_write = Some(SystemTime::now());
        }
        node.lookups += 1;
        let attr = node.attr(ino);
        drop(st);
        // (The reply counted a lookup; an error gives it back.)
        self.settle(missed).inspect_err(|_| self.forget(ino, 1))?;
        Ok(attr)
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
        self.check_new_name(parent, name, false)?;
        let now = SystemTime::now();
        let posix = Posix {
            kind: Kind::Symlink,
            perm: 0o777,
            uid,
            gid,
            mtime: now,
            ctime: now,
        };
        let key = {
            let st = self.lock();
            self.child_key(&st, parent, name)
        };
        let body = Bytes::copy_from_slice(target);
        let meta = layout::encode(&posix);
        let queued = self.queued_namespace();
        if !queued {
            let store = &self.inner.store;
            self.call("symlink", || store.put(&key, body.clone(), &meta))?;
        }
        let mut st = self.lock();
        let ino = st.new_node(parent, name, Kind::Symlink, posix);
        let mut missed = NotJournalled::none();
        if queued {
            let op = NsOp::Put {
                key,
                meta,
                body: target.to_vec(),
            };
            missed = self.queue_op(&mut st, op, Some(ino));
        }
        let node = st.node_mut(ino)?;
        node.remote = !queued;
        node.size = target.len() as u64;
        node.link_target = Some(body);
        node.lookups += 1;
        let attr = node.attr(ino);
        drop(st);
        // (The reply counted a lookup; an error gives it back.)
        self.settle(missed).inspect_err(|_| self.forget(ino, 1))?;
        Ok(attr)
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Bytes> {
        let key = {
            let st = self.lock();
            let n = st.node(ino)?;
            if n.kind != Kind::Symlink {
                return Err(libc::EINVAL);
            }
            if let Some(t) = &n.link_target {
                return Ok(t.clone());
            }
            self.read_key(&st, ino)
        };
        let store = &self.inner.store;
        let body = self.call("readlink", || store.get_range(&key, 0, 4096))?;
        let mut st = self.lock();
        if let Ok(n) = st.node_mut(ino) {
            n.link_target = Some(body.clone());
        }
        Ok(body)
    }

    pub fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let ino = self.resolve(parent, name)?;
        let _claim = self.claim(vec![ino]);
        let (key, remote, queued_ops) = {
            let st = self.lock();
            let n = st.node(ino)?;
            if n.kind == Kind::Dir {
                return Err(libc::EISDIR);
            }
            (self.key_of(&st, ino), n.remote, n.ops > 0)
        };
        let queued = self.queued_namespace();
        if remote && !queued {
            self.delete_unjournalled(ino, &key)?;
        }
        self.forget_cached(&key);
        let mut st = self.lock();
        // The staged data's journal goes before the name (queued: before
        // the delete is sent): a crash must not let the next mount upload
        // what the delete removes.
        if let Some(node) = st.nodes.get_mut(&ino) {
            self.mark_unlinked(node);
            node.unlinking = false; // (unlinked from now on)
        }
        let mut missed = NotJournalled::none();
        if queued && (remote || queued_ops) {
            missed = self.queue_op(&mut st, NsOp::Delete { key }, None);
        }
        st.forget_name(parent, name, ino);
        drop(st);
        self.settle(missed)
    }

    /// Deletes file `ino`'s object now (sync mode), its staged changes out
    /// of the journal while the delete is in flight: a crash once the
    /// object is gone must not let the next mount upload them at the name.
    /// The node stays `unlinking` (nothing journals it) until the caller
    /// marks it unlinked. A failed delete journals it again when it was
    /// journalled (a writer the kernel lets write the copy itself keeps
    /// the entry while clean) or has changes.
    fn delete_unjournalled(&self, ino: u64, key: &str) -> FsResult<()> {
        let was_journaled = {
            let mut st = self.lock();
            let n = st.node_mut(ino)?;
            n.unlinking = true;
            match n.staged.as_mut().filter(|s| s.journaled) {
                Some(s) => {
                    self.inner.staging.clear_journal(s.id, &s.file);
                    s.journaled = false;
                    true
                }
                None => false,
            }
        };
        let store = &self.inner.store;
        let deleted = self.call("delete", || store.delete(key));
        if deleted.is_err() {
            let mut st = self.lock();
            let Ok(n) = st.node_mut(ino) else {
                return deleted;
            };
            n.unlinking = false;
            if was_journaled || n.staged.as_ref().is_some_and(|s| s.dirty()) {
                self.write_entry(&mut st, ino);
            }
        }
        deleted
    }

    /// Whether a directory has any entry, locally or in the store.
    fn dir_has_entries(&self, ino: u64) -> FsResult<bool> {
        let prefix = {
            let st = self.lock();
            let st = self.wait_filled(st, ino)?;
            // Inside a queued rename the table has the whole content.
            if st.pinned.contains_key(&ino) {
                return Ok(st.children.keys().any(|(p, _)| *p == ino));
            }
            // Entries the store may not show yet: new here, or with a
            // queued change (a name renamed in, copied in the background).
            let local = st.children.iter().any(|((p, _), c)| {
                *p == ino
                    && st.nodes.get(c).is_some_and(|n| {
                        (n.authoritative() && !n.remote) || n.ops > 0 || n.source.is_some()
                    })
            });
            if local {
                return Ok(true);
            }
            self.dir_prefix_of(&st, ino)
        };
        let store = &self.inner.store;
        // Entries this mount deleted may still be in the store: look past
        // them (a page of them, then wait for them to go).
        let before = self.removals();
        let queued = self.ops().pending_under(&prefix);
        let max = if queued { 1000 } else { 2 };
        let page = self.call("list", || store.list(&prefix, Some("/"), None, max))?;
        let gone = self.gone_since(before);
        let others = page
            .objects
            .iter()
            .any(|o| o.key != prefix && !gone.hides(&o.key))
            || page.common_prefixes.iter().any(|p| !gone.hides(p));
        if !others && queued && page.next_token.is_some() {
            self.drain_ops(std::slice::from_ref(&prefix))?;
            return self.dir_has_entries(ino);
        }
        Ok(others)
    }

    pub fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let ino = self.resolve(parent, name)?;
        {
            let st = self.lock();
            if st.node(ino)?.kind != Kind::Dir {
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
        let queued = self.queued_namespace();
        if !queued {
            let store = &self.inner.store;
            self.call("rmdir", || store.delete(&marker))?;
        }
        let mut st = self.lock();
        let mut missed = NotJournalled::none();
        if queued {
            // Also for a directory without a marker: the pending delete
            // hides the name from listings until its entries' deletes land.
            missed = self.queue_op(&mut st, NsOp::Delete { key: marker }, None);
        }
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.unlinked = true;
            n.remote = false;
        }
        st.forget_name(parent, name, ino);
        drop(st);
        self.settle(missed)
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
            // A directory renamed a moment ago: its content first.
            let st = self.wait_filled(st, src)?;
            let st = match dst {
                Some(d) => self.wait_filled(st, d)?,
                None => st,
            };
            // Renaming a directory into itself would loop.
            let mut cur = new_parent;
            while cur != ROOT_INO {
                if cur == src {
                    return Err(libc::EINVAL);
                }
                cur = st.node(cur)?.parent;
            }
            st.node(src)?.kind
        };
        self.check_new_name(new_parent, new_name, src_kind == Kind::Dir)?;
        if let Some(d) = dst {
            let dst_kind = {
                let st = self.lock();
                st.node(d)?.kind
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
        // The store must have every queued change of both names before
        // their keys are copied or deleted.
        let names = {
            let st = self.lock();
            let (old, new) = (
                self.key_of(&st, src),
                self.child_key(&st, new_parent, new_name),
            );
            vec![
                old.clone(),
                format!("{old}/"),
                new.clone(),
                format!("{new}/"),
            ]
        };
        self.drain_ops(&names)?;
        // Copies and deletes of these keys may follow at once.
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.settle_journal(&names)?;
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
        // The rename's ctime, which the copy stores when the metadata is
        // known (else the copy keeps the source's, guessed attributes are
        // never written).
        let now = SystemTime::now();
        let (old_key, new_key, dirty, remote, size, etag, meta) = {
            let st = self.lock();
            let n = st.node(src)?;
            let dirty = n.staged.as_ref().is_some_and(|s| s.dirty());
            (
                self.key_of(&st, src),
                self.child_key(&st, new_parent, new_name),
                dirty,
                n.remote,
                n.size,
                n.etag.clone(),
                n.meta_known.then(|| {
                    layout::encode(&Posix {
                        ctime: now,
                        ..n.posix()
                    })
                }),
            )
        };
        self.journal_at(src, &new_key)?;
        self.forget_cached(&new_key);
        let store = &self.inner.store;
        let mut copied = None;
        if !dirty && remote {
            // Server-side copy keeps the data; then drop the old key.
            let copy = self.copy_known(&old_key, size, &new_key, meta.as_ref(), etag.as_deref());
            // Failed: the rename did not happen, the journal names the old
            // key again.
            copied = copy.inspect_err(|_| self.journal_back(&[src]))?;
        }
        // A cached copy of the version copied moves with it.
        let etags = etag.as_deref().zip(copied.as_deref());
        self.renamed_cached(&old_key, &new_key, size, etags);
        let mut st = self.lock();
        // A replaced object stays in the store until the moved file's data
        // lands on it: until then the name still has an object to delete.
        let dst_remote = dst.and_then(|d| st.nodes.get(&d)).is_some_and(|n| n.remote);
        if let Some(d) = dst
            && let Some(dn) = st.nodes.get_mut(&d)
        {
            self.mark_unlinked(dn);
            st.detach_name(d);
        }
        // (Announced with the table's change: a listing begun after it
        // must not show the old key while its delete is under way.)
        let _removing =
            (remote && !self.queued_namespace()).then(|| self.removing(&old_key, false));
        st.move_node(src, new_parent, new_name);
        // A dirty file goes to its new key with its next upload; point its
        // journal there first so a crash cannot put it back at the old key.
        // Dirty now, not only when the rename began: a write during the
        // copy journalled the old key (so did a journal kept for a writer).
        let node = st.node_mut(src)?;
        let entry = JournalEntry::new(&new_key, &node.posix());
        let dirty_now = node.staged.as_ref().is_some_and(|s| s.dirty());
        if let Some(s) = node.staged.as_mut()
            && (dirty_now || s.journaled)
        {
            if dirty_now {
                s.touch();
            }
            self.journal_copy(s, &entry);
        }
        if dirty_now {
            self.enqueue_if_idle(&mut st, src);
        }
        if let Ok(n) = st.node_mut(src) {
            n.ctime = now;
            n.remote = (!dirty && remote) || dst_remote;
            if !dirty && remote {
                // Copied just now: a listing begun before cannot show it,
                // and must not drop it.
                n.validated = Instant::now();
                // Its ETag may be another than the source's. A copy of the
                // version the node no longer describes (another client's
                // rewrite learnt during the copy) is other bytes: looked
                // up again.
                if n.etag == etag {
                    n.own_copy(copied);
                } else if copied.is_some() {
                    n.other_bytes(copied);
                    self.expire(n);
                }
            }
        }
        if let Some(d) = dst {
            st.prune(d);
        }
        // The old key goes: queued (async; a failure is retried, and a
        // listing meanwhile does not show the old name), or now (sync).
        let mut missed = NotJournalled::none();
        if remote && self.queued_namespace() {
            missed = self.queue_op(
                &mut st,
                NsOp::Delete {
                    key: old_key.clone(),
                },
                None,
            );
        }
        drop(st);
        if remote && !self.queued_namespace() {
            self.call("delete", || store.delete(&old_key))?;
        }
        self.settle(missed)
    }

    /// A file with data still to upload (or journalled for a writer the
    /// kernel lets write its copy) is journalled at `key`, its new name,
    /// before a rename changes anything: a crash must not put the data back
    /// at the old name. Refused when the cache directory cannot write the
    /// entry (a full disk first gets the room clean copies hold).
    fn journal_at(&self, ino: u64, key: &str) -> FsResult<()> {
        for attempt in 0..2 {
            let mut st = self.lock();
            let n = st.node_mut(ino)?;
            let entry = JournalEntry::new(key, &n.posix());
            let Some(s) = n.staged.as_mut().filter(|s| s.dirty() || s.journaled) else {
                return Ok(());
            };
            let Some(e) = self.journal_copy(s, &entry) else {
                return Ok(());
            };
            drop(st);
            if attempt == 1 || !out_of_space(&e) {
                return Err(self.local_failure(&e));
            }
            self.room_for_copy(ino, 0);
        }
        unreachable!("the second attempt returns")
    }

    /// [`Self::journal_at`] for every file below directory `src` (at
    /// prefix `old`) that has one, at its key below `new`; returns them.
    /// Refused, with every entry back at its old key, when one cannot be
    /// written.
    fn journal_below(&self, src: u64, old: &str, new: &str) -> FsResult<Vec<u64>> {
        let files: Vec<(u64, String)> = {
            let st = self.lock();
            (st.descendants(src).into_iter())
                .filter(|i| {
                    let staged = st.nodes.get(i).and_then(|n| n.staged.as_ref());
                    staged.is_some_and(|s| s.dirty() || s.journaled)
                })
                .map(|i| (i, self.key_of(&st, i)))
                .collect()
        };
        let mut done = Vec::new();
        for (ino, key) in files {
            let Some(rel) = key.strip_prefix(old) else {
                continue;
            };
            if let Err(e) = self.journal_at(ino, &format!("{new}{rel}")) {
                self.journal_back(&done);
                return Err(e);
            }
            done.push(ino);
        }
        Ok(done)
    }

    /// Journals `files` at their keys in the table again, after a rename
    /// that failed before changing it: with what the bucket has there as
    /// far as this mount knows ([`Self::write_entry`]), so that a recovery
    /// still checks it (a rename's entry at the new key does not know).
    fn journal_back(&self, files: &[u64]) {
        let mut st = self.lock();
        for &ino in files {
            let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut()) else {
                continue;
            };
            if s.dirty() || s.journaled {
                s.journaled = false; // rewritten whatever it holds
                let Some(_) = self.write_entry(&mut st, ino) else {
                    continue;
                };
                // Left naming the new key. Changes get the entry written
                // again at their next write; a clean copy's entry is still
                // there, to go when it is no longer needed.
                if let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut())
                    && !s.dirty()
                {
                    s.journaled = true;
                }
            }
        }
    }

    /// Gives directory `src` its new name in the table, replacing the empty
    /// directory `dst`; staged files below follow their nodes (their
    /// journal entries point at the new keys) and are looked up again.
    pub(super) fn move_dir_node(
        &self,
        st: &mut InodeTable,
        src: u64,
        (new_parent, new_name): (u64, &str),
        dst: Option<u64>,
    ) {
        if let Some(d) = dst {
            if let Some(dn) = st.nodes.get_mut(&d) {
                dn.unlinked = true;
            }
            st.detach_name(d);
            st.prune(d);
        }
        st.move_node(src, new_parent, new_name);
        st.dir_moves += 1;
        if let Ok(n) = st.node_mut(src) {
            n.ctime = SystemTime::now();
            n.remote = true;
            // New at this name: a listing begun before must not drop it.
            n.validated = Instant::now();
        }
        for ino in st.descendants(src) {
            let key = self.key_of(st, ino);
            if let Some(n) = st.nodes.get_mut(&ino) {
                let entry = JournalEntry::new(&key, &n.posix());
                // Dirty, or journalled clean (kept for a writer the kernel
                // lets write the copy itself): the entry follows the file.
                if let Some(s) = n.staged.as_mut()
                    && (s.dirty() || s.journaled)
                {
                    self.journal_copy(s, &entry);
                }
                self.expire(n);
            }
        }
    }

    /// Renames a directory: every key below it is copied to the new prefix,
    /// then deleted (queued with `upload=async`: the `rename` module). Not
    /// atomic: a crash midway leaves some objects under each name (none
    /// lost). Local staged files move with their nodes.
    fn rename_dir(
        &self,
        src: u64,
        new_parent: u64,
        new_name: &str,
        dst: Option<u64>,
    ) -> FsResult<()> {
        let subtree = {
            let st = self.lock();
            let mut all = st.descendants(src);
            all.push(src);
            all.extend(dst);
            all
        };
        let _claim = self.claim(subtree);
        let (old_prefix, new_prefix) = {
            let st = self.lock();
            let new_path = {
                let base = st.path_of(new_parent);
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
        // Files below with data still to upload follow to their new keys
        // in the journal first, and back should the rename fail before the
        // table has the new name.
        let moving = self.journal_below(src, &old_prefix, &new_prefix)?;
        let undo = |e: Errno| {
            self.journal_back(&moving);
            e
        };
        // (The old prefix's cached copies move with each copy, or go.)
        self.forget_cached(&new_prefix);
        let store = self.inner.store.clone();
        let policy = RetryPolicy::INTERACTIVE;
        if self.queued_namespace() {
            // A change inside still queued (the kernel does not lock the
            // directory's content for a rename in one parent) would be
            // missed by the listing of the old prefix: send it first.
            let missed = loop {
                let to = (new_parent, new_name);
                match self.queue_dir_rename(src, to, dst, (&old_prefix, &new_prefix)) {
                    Some(missed) => break missed,
                    None => (self.drain_ops(std::slice::from_ref(&old_prefix))).map_err(undo)?,
                }
            };
            return self.settle(missed);
        }
        // Every key below the old prefix, then the copies and deletes.
        let objects = self
            .block_on(self.list_subtree(&old_prefix, policy))
            .map_err(|e| undo(errno_of(&e)))?;
        let keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
        if let Some(d) = dst {
            let st = self.lock();
            let marker = self.dir_prefix_of(&st, d);
            drop(st);
            self.call("delete", || store.delete(&marker))
                .map_err(undo)?;
        }
        let copy_all = async {
            use futures_util::StreamExt;
            type Copied = Result<(String, Option<(String, String)>), StoreError>;
            let results: Vec<Copied> = futures_util::stream::iter(objects.iter())
                .map(|o| {
                    let new_key = format!("{new_prefix}{}", &o.key[old_prefix.len()..]);
                    let listed = (o.key.as_str(), Some(o.size), o.etag.as_deref());
                    async move {
                        let etags = self.copy_listed(listed, &new_key, policy).await?;
                        let pair = (etags.as_ref()).map(|(was, now)| (was.as_str(), now.as_str()));
                        self.renamed_cached(&o.key, &new_key, o.size, pair);
                        Ok((new_key, etags))
                    }
                })
                .buffer_unordered(16)
                .collect()
                .await;
            results.into_iter().collect::<Result<Vec<_>, _>>()
        };
        let copied = self.block_on(copy_all).map_err(|e| undo(errno_of(&e)))?;
        let _removing;
        {
            let mut st = self.lock();
            // (With the table's change, as for a file.)
            _removing = self.removing(&old_prefix, true);
            self.move_dir_node(&mut st, src, (new_parent, new_name), dst);
            // Files that still describe the version copied take the copy's
            // ETag (looked up again, they would fetch their data again).
            let copied: std::collections::HashMap<String, (String, String)> = (copied.into_iter())
                .filter_map(|(key, etags)| Some((key, etags?)))
                .collect();
            for ino in st.descendants(src) {
                let key = self.key_of(&st, ino);
                if let (Some((was, now)), Some(n)) = (copied.get(&key), st.nodes.get_mut(&ino))
                    && n.etag.as_ref() == Some(was)
                {
                    n.own_copy(Some(now.clone()));
                }
            }
        }
        // Every copy exists now: the sources go, 1,000 a request.
        self.block_on(retry(policy, "delete", || store.delete_many(&keys)))
            .map_err(|e| errno_of(&e))?;
        // The new name exists even when the old directory was only implied
        // by keys that are now gone: give it a marker.
        if !keys.contains(&old_prefix) {
            let meta = {
                let st = self.lock();
                layout::encode(&st.node(src)?.posix())
            };
            self.call("mkdir", || store.put(&new_prefix, Bytes::new(), &meta))?;
        }
        Ok(())
    }
    /// reply counts as a lookup); `forget` gives it back.
    pub fn note_lookup(&self, ino: u64) {
        if let Some(n) = self.lock().nodes.get_mut(&ino) {
            n.lookups += 1;
        }
    }
}
