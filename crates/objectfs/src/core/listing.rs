//! Directory listing: a directory handle's snapshot (one paged LIST at
//! its first readdir, merged with names that exist only locally; the table
//! alone when the directory was listed within the TTL), readdir and
//! readdirplus from it (the metadata of what they show is fetched by
//! `prefetch`), and the small-directory listing that answers a burst of
//! lookups with one request.

use super::super::layout::{self, Kind};
use super::super::{DirEntry, FsResult, PlusEntry, ROOT_INO};
use super::ahead::{FETCH_FILES, Lister};
use super::inodes::{InodeTable, Listed};
use super::opqueue::Removals;
use super::{HandleKind, ObjectFs};
use crate::store::ObjectMeta;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// At most this many known files of one listing that it could not confirm
/// are revalidated together (a readdir's, [`ObjectFs::list_small_dir`]'s).
pub(super) const REVALIDATE_MAX: usize = 128;

/// With `attrs_from_listing`, listed objects up to this size are still
/// HEADed: they may be symlinks, whose type lives in metadata.
const SYMLINK_PROBE_MAX: u64 = 1024;

impl ObjectFs {
    /// Opens a directory; its listing waits for the first readdir, so an
    /// open for fsync or fchdir (SQLite's journal, `find`) costs no LIST.
    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        if self.lock().node(ino)?.kind != Kind::Dir {
            return Err(libc::ENOTDIR);
        }
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        self.inner.handles.lock().unwrap().insert(
            fh,
            Arc::new(HandleKind::Dir {
                dir: ino,
                entries: Mutex::new(None),
            }),
        );
        Ok(fh)
    }

    /// Directory handle `fh`: its directory and its entries from `offset`,
    /// listed now if this is its first readdir.
    fn dir_entries(&self, fh: u64, offset: usize) -> FsResult<(u64, Vec<DirEntry>)> {
        let handle = self.inner.handles.lock().unwrap().get(&fh).cloned();
        let Some(HandleKind::Dir { dir, entries }) = handle.as_deref() else {
            return Err(libc::EBADF);
        };
        let mut entries = entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.is_none() {
            *entries = Some(self.snapshot(*dir)?);
        }
        let all = entries.as_deref().unwrap_or_default();
        Ok((*dir, all.iter().skip(offset).cloned().collect()))
    }

    /// The entries of directory `ino`: its listing in the store (none when
    /// the table has it whole), merged with what exists only in the table;
    /// starts the metadata prefetch.
    fn snapshot(&self, ino: u64) -> FsResult<Vec<DirEntry>> {
        // Inside a queued rename the table has the whole content; the store
        // has only part of it at this prefix yet. A directory listed within
        // the TTL has its whole content in the table too (`git status` right
        // after `git add` lists nothing again).
        // A listing of it under way (a lookup's, or one ahead of a walk)
        // is waited for rather than asked again.
        let (prefix, whole, listed) = {
            let st = self.lock();
            let st = self.wait_filled(st, ino)?;
            let mut st = self.wait_while(st, |st| st.listing.contains(&ino));
            if st.node(ino)?.kind != Kind::Dir {
                return Err(libc::ENOTDIR);
            }
            let listed = st.listed.get(&ino).is_some_and(|t| self.ttl_fresh(*t));
            let whole = listed || st.pinned.contains_key(&ino);
            let ahead = if whole {
                Vec::new()
            } else {
                st.ahead.remove(&ino); // listed here, not ahead
                self.siblings_to_list(&mut st, ino)
            };
            let prefix = self.dir_prefix_of(&st, ino);
            drop(st);
            self.list_ahead(ahead);
            (prefix, whole, listed)
        };
        let store = &self.inner.store;
        let list_started = Instant::now();
        let before = self.removals();
        let mut objects: Vec<ObjectMeta> = Vec::new();
        let mut dirs: Vec<String> = Vec::new();
        if !whole {
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
        }
        let gone = self.gone_since(before);
        let mut st = self.lock();
        if st.being_filled(ino) {
            // Renamed while we listed: again, from the table it fills.
            drop(st);
            return self.snapshot(ino);
        }
        let parent_ino = st.node(ino)?.parent;
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
        entries.extend(self.apply_listing(
            &mut st,
            ino,
            &prefix,
            (&objects, &dirs, list_started),
            &mut seen,
            &gone,
        ));
        if !whole {
            self.drop_unlisted(&mut st, ino, &seen, list_started);
        }
        if !listed {
            st.listed.insert(ino, list_started);
        }
        // Names in the table the listing did not show, and kept (files
        // created here and not uploaded yet, or whose upload finished while
        // the LIST was under way); all of them when the table has the
        // directory whole.
        let local: Vec<(String, u64)> = st
            .children
            .iter()
            .filter(|((p, n), _)| *p == ino && !seen.contains(n))
            .map(|((_, n), c)| (n.clone(), *c))
            .collect();
        for (name, child) in local {
            let n = &st.nodes[&child];
            entries.push(DirEntry {
                ino: child,
                kind: n.kind,
                name,
            });
        }
        // Files' metadata is on their object, directories' on their marker.
        // Known files the listing did not confirm (another client's whose
        // date is not known yet, or changed) are revalidated together too,
        // as a walk over them (`ls -l`, `git status`) would one by one.
        let mut stale = 0;
        let unknown: Vec<(u64, String)> = entries
            .iter()
            .filter(|e| e.name != "." && e.name != "..")
            .filter(|e| {
                st.nodes.get(&e.ino).is_some_and(|n| {
                    !n.prefetching
                        && (!n.meta_known
                            || (n.kind != Kind::Dir && !self.attrs_current(e.ino, n) && {
                                stale += 1;
                                stale <= REVALIDATE_MAX
                            }))
                })
            })
            .map(
                |e| match (e.kind, st.nodes.get(&e.ino).and_then(|n| n.source.clone())) {
                    (_, Some(source)) => (e.ino, source),
                    (Kind::Dir, None) => (e.ino, format!("{prefix}{}/", e.name)),
                    (_, None) => (e.ino, format!("{prefix}{}", e.name)),
                },
            )
            .collect();
        self.prefetch_metadata(st, unknown);
        Ok(entries)
    }

    /// After a complete listing of directory `ino` begun at `at`: a name
    /// in the table that it did not show is gone (another client deleted
    /// it), unless this mount knows better: local state, a queued rename's
    /// source, an object confirmed after the LIST began, or a directory
    /// confirmed within the TTL. (A readdir within the TTL serves the table
    /// as it is then.)
    pub(super) fn drop_unlisted(
        &self,
        st: &mut InodeTable,
        ino: u64,
        seen: &HashSet<String>,
        at: Instant,
    ) {
        if st.pinned.contains_key(&ino) {
            return;
        }
        let gone: Vec<u64> = st
            .children
            .iter()
            .filter(|((p, name), _)| *p == ino && !seen.contains(name))
            .map(|(_, c)| *c)
            .filter(|c| {
                st.nodes.get(c).is_some_and(|n| {
                    !(n.authoritative()
                        || n.source.is_some()
                        || (n.remote && n.validated >= at)
                        || (n.kind == Kind::Dir && n.remote && self.ttl_fresh(n.validated)))
                })
            })
            .collect();
        for c in gone {
            st.detach_name(c);
            st.prune(c);
        }
    }

    /// Brings a directory's listing (begun at `at`) into the table;
    /// returns its entries. A name this mount removed after the LIST began
    /// (its negative entry is newer) stays removed.
    pub(super) fn apply_listing(
        &self,
        st: &mut InodeTable,
        ino: u64,
        prefix: &str,
        (objects, dirs, at): (&[ObjectMeta], &[String], Instant),
        seen: &mut HashSet<String>,
        gone: &Removals,
    ) -> Vec<DirEntry> {
        let defaults = self.opts().defaults;
        let mut entries = Vec::new();
        // What this mount deleted and has not sent yet is gone already.
        let dirs: Vec<&String> = dirs.iter().filter(|d| !gone.hides(d)).collect();
        let objects: Vec<&ObjectMeta> = objects.iter().filter(|o| !gone.hides(&o.key)).collect();
        let removed_since = |st: &InodeTable, name: &str| {
            st.negative
                .get(&(ino, name.to_string()))
                .is_some_and(|t| *t >= at)
        };
        for d in dirs {
            let name = d[prefix.len()..].trim_end_matches('/');
            if name.is_empty() || removed_since(st, name) || !seen.insert(name.to_string()) {
                continue;
            }
            let child = match st.children.get(&(ino, name.to_string())) {
                Some(&c) => c,
                None => {
                    let posix = layout::decode(&Default::default(), Kind::Dir, None, &defaults);
                    let c = st.new_node(ino, name, Kind::Dir, posix);
                    st.nodes.get_mut(&c).expect("just inserted").meta_known =
                        self.listing_is_enough(Kind::Dir, 0);
                    c
                }
            };
            entries.push(DirEntry {
                ino: child,
                kind: Kind::Dir,
                name: name.to_string(),
            });
        }
        for o in objects {
            let name = &o.key[prefix.len()..];
            if name.is_empty()
                && ino != ROOT_INO
                && let Some(n) = st.nodes.get_mut(&ino)
                && n.kind == Kind::Dir
            {
                // The directory's own marker, which holds its attributes.
                let marker = Listed {
                    etag: o.etag.as_deref(),
                    size: o.size,
                    modified: o.last_modified,
                };
                n.relisted(&marker, at, false);
            }
            if name.is_empty()
                || name.contains('/')
                || removed_since(st, name)
                || !seen.insert(name.to_string())
            {
                continue;
            }
            let child = self.listed_child(st, ino, name, o, at);
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
    /// TTL instead of two requests per file, and files whose object is
    /// unchanged need no HEAD). False for larger directories, which are
    /// then not listed this way again for the TTL. Lookups of one directory
    /// that come together share one LIST.
    ///
    /// `walk`: the lookup revalidates a file it knew (a walk over a tree
    /// known before, like `git status` or a second `ls -l`): the listing's
    /// known files that it could not confirm (whose date is not known yet,
    /// or changed) have their metadata fetched together in
    /// the background, [`REVALIDATE_MAX`] at most, instead of by one HEAD
    /// per lookup, one after the other.
    pub(super) fn list_small_dir(&self, ino: u64, prefix: &str, walk: bool) -> FsResult<bool> {
        self.list_small_dir_as(ino, prefix, walk, Lister::Caller)
    }

    /// [`Self::list_small_dir`], by `lister`: a caller's listing may start
    /// listings ahead of a walk (`core/ahead.rs`), which those do not.
    pub(super) fn list_small_dir_as(
        &self,
        ino: u64,
        prefix: &str,
        walk: bool,
        lister: Lister,
    ) -> FsResult<bool> {
        let lead = lister == Lister::Caller;
        let asked = Instant::now();
        let skip = |st: &InodeTable| {
            // A listing ahead whose directory a readdir or lookup took.
            if !lead && !st.ahead.contains_key(&ino) {
                return Some(true);
            }
            let paged = st.paged.get(&ino).is_some_and(|t| self.ttl_fresh(*t));
            paged.then_some(false)
        };
        let ahead = match self.listing_turn(ino, asked, skip) {
            Ok(mut st) if lead => {
                st.ahead.remove(&ino);
                // A listing after the probe of a new name is no step of a
                // walk: `git status` looking up a few loose objects, one
                // per `.git/objects/xx/`, would list 64 of those ahead.
                match walk {
                    true => self.siblings_to_list(&mut st, ino),
                    false => Vec::new(),
                }
            }
            Ok(_) => Vec::new(),
            Err(answer) => return Ok(answer),
        };
        self.list_ahead(ahead);
        let fetch = lister == Lister::Ahead { fetch: true };
        let result = self.list_small_dir_now(ino, prefix, walk, fetch);
        self.end_listing(ino, |st| {
            if result == Ok(false) {
                st.paged.insert(ino, asked);
            }
        });
        result
    }

    /// One listing of directory `ino` at a time, for lookups (asked at
    /// `asked`) that come together. Waits while another is under way; then
    /// `Err(answer)` when this one need not list: what `skip` says (a
    /// directory known too large), or `true` when the directory was listed
    /// meanwhile (by another lookup, or a background listing begun a moment
    /// earlier) or within the TTL. Else `Ok`, the table with `ino` marked
    /// as being listed: the caller lists, then calls [`Self::end_listing`].
    pub(super) fn listing_turn(
        &self,
        ino: u64,
        asked: Instant,
        skip: impl FnOnce(&InodeTable) -> Option<bool>,
    ) -> Result<std::sync::MutexGuard<'_, InodeTable>, bool> {
        let st = self.lock();
        let mut st = self.wait_while(st, |st| st.listing.contains(&ino));
        if let Some(answer) = skip(&st) {
            return Err(answer);
        }
        if st
            .listed
            .get(&ino)
            .is_some_and(|t| *t >= asked || self.ttl_fresh(*t))
        {
            return Err(true);
        }
        st.listing.insert(ino);
        Ok(st)
    }

    /// Ends the listing [`Self::listing_turn`] began: `done` records what
    /// it found in the table, and the lookups waiting for it go on.
    pub(super) fn end_listing(&self, ino: u64, done: impl FnOnce(&mut InodeTable)) {
        let mut st = self.lock();
        st.listing.remove(&ino);
        done(&mut st);
        drop(st);
        self.inner.changed.notify_all();
    }

    /// `fetch`: a listing ahead of a walk (`core/ahead.rs`) whose first
    /// files are fetched at once near a walk reading files.
    fn list_small_dir_now(
        &self,
        ino: u64,
        prefix: &str,
        walk: bool,
        fetch: bool,
    ) -> FsResult<bool> {
        let store = &self.inner.store;
        let before = self.removals();
        let started = Instant::now();
        let page = self.call("list", || store.list(prefix, Some("/"), None, 1000))?;
        if page.next_token.is_some() {
            return Ok(false);
        }
        let gone = self.gone_since(before);
        let mut st = self.lock();
        if !st.nodes.contains_key(&ino) {
            return Ok(false);
        }
        if st.being_filled(ino) {
            // Renamed while we listed: the table has it whole once filled.
            drop(self.wait_filled(st, ino)?);
            return Ok(true);
        }
        if st.pinned.contains_key(&ino) {
            return Ok(true); // whole in the table, the store not yet
        }
        let now_at = self.dir_prefix_of(&st, ino);
        if now_at != prefix {
            // Renamed (and sent) while we listed: list where it is now.
            drop(st);
            return self.list_small_dir_now(ino, &now_at, walk, fetch);
        }
        let mut seen = HashSet::new();
        self.apply_listing(
            &mut st,
            ino,
            prefix,
            (&page.objects, &page.common_prefixes, started),
            &mut seen,
            &gone,
        );
        self.drop_unlisted(&mut st, ino, &seen, started);
        st.listed.insert(ino, started);
        let mut stale = Vec::new();
        if walk {
            for o in &page.objects {
                let name = &o.key[prefix.len()..];
                let Some(&c) = st.children.get(&(ino, name.to_string())) else {
                    continue;
                };
                let n = &st.nodes[&c];
                if n.kind != Kind::Dir
                    && n.meta_known
                    && !n.prefetching
                    && !self.attrs_current(c, n)
                    && stale.len() < REVALIDATE_MAX
                {
                    stale.push((c, self.read_key(&st, c)));
                }
            }
        }
        if fetch && self.whole_near_walk(&st, ino) {
            // The listing's objects come in key order: the files a walk
            // in name order reads first.
            let mut taken = 0;
            for o in &page.objects {
                let name = &o.key[prefix.len()..];
                let Some(&c) = st.children.get(&(ino, name.to_string())) else {
                    continue;
                };
                let n = &st.nodes[&c];
                if n.kind == Kind::File && !n.meta_known && !n.prefetching {
                    stale.push((c, self.read_key(&st, c)));
                    taken += 1;
                    if taken == FETCH_FILES {
                        break;
                    }
                }
            }
        }
        self.prefetch_metadata(st, stale);
        Ok(true)
    }

    /// A lookup of `first`, a known file or directory gone stale in
    /// directory `parent` listed within the TTL, which the listing neither
    /// confirmed nor revalidated (it revalidates [`REVALIDATE_MAX`] at
    /// most): starts the HEADs of `first` and of the next stale entries of
    /// `parent` (a directory's: of its marker; the listing showed that it
    /// exists), up to [`REVALIDATE_MAX`], in the background, as the listing
    /// did for the first ones. A walk over a larger directory this mount
    /// wrote (`git add` after `tar x`) then waits for a few rounds, not one
    /// HEAD per entry; each entry still costs one HEAD, and a readdir not
    /// followed by lookups no more than before. A sibling directory known
    /// from a listing only is left out: lookups of a few of many
    /// (`git status` reading two loose objects in `.git/objects/`, 256
    /// directories) would otherwise send the markers of all of them, which
    /// the lookups after them wait behind. The caller waits for `first`.
    pub(super) fn revalidate_with_siblings(
        &self,
        st: std::sync::MutexGuard<'_, InodeTable>,
        parent: u64,
        first: u64,
    ) {
        let mut batch = vec![first];
        batch.extend(
            st.children
                .iter()
                .filter(|((p, _), c)| *p == parent && **c != first)
                .map(|(_, c)| *c)
                .filter(|c| {
                    st.nodes.get(c).is_some_and(|n| {
                        !n.prefetching
                            && (n.kind != Kind::Dir || n.meta_known)
                            && !n.head_failed
                            && !self.attrs_current(*c, n)
                            && !st.pinned.contains_key(c)
                    })
                })
                .take(REVALIDATE_MAX - 1),
        );
        let targets: Vec<(u64, String)> = batch
            .into_iter()
            .map(|c| match st.nodes.get(&c).map(|n| n.kind) {
                Some(Kind::Dir) => (c, self.dir_prefix_of(&st, c)),
                _ => (c, self.read_key(&st, c)),
            })
            .collect();
        self.prefetch_metadata(st, targets);
    }

    /// The node for a listed object: the existing one, which the listing
    /// confirms or finds changed (`Node::relisted`; `at`: when the LIST
    /// began), or a new one whose mode is not known yet (listings carry no
    /// metadata; lookup fetches it).
    fn listed_child(
        &self,
        st: &mut InodeTable,
        parent: u64,
        name: &str,
        o: &ObjectMeta,
        at: Instant,
    ) -> u64 {
        let listed = Listed {
            etag: o.etag.as_deref(),
            size: o.size,
            modified: o.last_modified,
        };
        let enough = self.listing_is_enough(Kind::File, o.size);
        if let Some(&c) = st.children.get(&(parent, name.to_string())) {
            if let Some(n) = st.nodes.get_mut(&c) {
                n.relisted(&listed, at, enough);
            }
            return c;
        }
        let defaults = self.opts().defaults;
        let posix = layout::decode(&Default::default(), Kind::File, o.last_modified, &defaults);
        let c = st.new_node(parent, name, Kind::File, posix);
        let n = st.nodes.get_mut(&c).expect("just inserted");
        n.size = o.size;
        n.etag = o.etag.clone();
        n.remote = true;
        n.meta_known = enough;
        // As of the listing's start, as for the names it confirms: a
        // listing of many pages must not stretch the TTL.
        n.validated = at;
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
        self.dir_entries(fh, offset).map(|(_, entries)| entries)
    }

    /// readdirplus: the entries from `offset`, each with its attributes and
    /// whether those are exact (an entry whose metadata is still being
    /// fetched gets the listing's attributes, which the kernel must not
    /// cache). `None` for an entry whose node is gone and cannot be found
    /// again: the caller sends it without attributes.
    pub fn readdir_plus(&self, fh: u64, offset: usize) -> FsResult<Vec<PlusEntry>> {
        let (dir, entries) = self.dir_entries(fh, offset)?;
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

    /// A small object new to the table may turn out to be a symlink, and the kernel
    /// must not get an inode of the wrong type: wait (2 s at most) for the
    /// metadata prefetch of such entries before handing out attributes.
    fn wait_for_small_prefetches(&self, entries: &[DirEntry]) {
        let st = self.lock();
        drop(self.wait_while(st, |st| {
            entries.iter().any(|e| {
                st.nodes.get(&e.ino).is_some_and(|n| {
                    n.prefetching
                        && !n.meta_known
                        && n.kind == Kind::File
                        && n.size <= SYMLINK_PROBE_MAX
                })
            })
        }));
    }

    pub fn releasedir(&self, fh: u64) {
        self.inner.handles.lock().unwrap().remove(&fh);
    }
}
