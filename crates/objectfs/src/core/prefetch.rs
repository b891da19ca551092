//! The metadata prefetch: listings carry no user metadata, so the entries
//! a listing shows (or could not confirm) have their metadata fetched in
//! the background, 32 HEADs at a time per listing, and lookups wait for
//! it instead of each sending its own. A lookup whose entry is still queued
//! behind others takes it out of the queue and asks at once: the speculative
//! work of a readdir (`.git/objects/` and its 256 markers) never delays the
//! lookup a caller is blocked on.

use super::super::layout::{self, Kind};
use super::ObjectFs;
use super::inodes::{Found, InodeTable, settled};
use crate::store::{ObjectMeta, StoreResult};
use std::sync::MutexGuard;
use std::time::{Instant, SystemTime};

/// HEADs in flight per listing's prefetch.
const PREFETCH_PARALLEL: usize = 32;

impl ObjectFs {
    /// Fetches the metadata of `targets` (node, key to HEAD) in the
    /// background, [`PREFETCH_PARALLEL`] at a time, so that the lookups
    /// that follow a readdir (`ls -l`) find it cached. Marks each target
    /// `prefetching` (lookups wait for it) and lets the table go.
    pub(super) fn prefetch_metadata(
        &self,
        mut st: MutexGuard<'_, InodeTable>,
        targets: Vec<(u64, String)>,
    ) {
        let mut queued = Vec::with_capacity(targets.len());
        let mut near_walk: Option<(u64, bool)> = None;
        for (ino, key) in targets {
            let Some(dir) = st.nodes.get(&ino).map(|n| n.parent) else {
                continue;
            };
            let whole = match near_walk {
                Some((d, whole)) if d == dir => whole,
                _ => self.whole_near_walk(&st, dir),
            };
            near_walk = Some((dir, whole));
            if let Some(n) = st.nodes.get_mut(&ino) {
                n.prefetching = true;
                n.prefetch_queued = Some(key);
                queued.push((ino, whole));
            }
        }
        drop(st);
        if queued.is_empty() {
            return;
        }
        let fs = self.clone();
        self.inner.rt.spawn(async move {
            use futures_util::StreamExt;
            let store = fs.inner.store.clone();
            let mut heads = futures_util::stream::iter(queued)
                .map(|(ino, whole)| {
                    let store = store.clone();
                    // Taken when its turn comes; gone when a lookup took it
                    // (or another listing's prefetch asked it already).
                    let (key, whole) = {
                        let mut st = fs.lock();
                        let key = st
                            .nodes
                            .get_mut(&ino)
                            .and_then(|n| n.prefetch_queued.take());
                        let whole = match key.is_some() && whole {
                            true => fs.start_whole(&mut st, ino),
                            false => None,
                        };
                        (key, whole)
                    };
                    let fs = fs.clone();
                    async move {
                        let key = key?;
                        let asked = (SystemTime::now(), Instant::now());
                        let Some(charged) = whole else {
                            return Some((ino, asked, store.head(&key).await, None));
                        };
                        Some(match store.get_whole(&key, charged).await {
                            Ok(Some((meta, Some(body)))) => {
                                let keep = (key, meta.clone(), body, charged);
                                (ino, asked, Ok(Some(meta)), Some(keep))
                            }
                            other => {
                                fs.drop_whole(ino, charged);
                                let meta = other.map(|found| found.map(|(meta, _)| meta));
                                (ino, asked, meta, None)
                            }
                        })
                    }
                })
                .buffer_unordered(PREFETCH_PARALLEL);
            while let Some(done) = heads.next().await {
                let Some((ino, asked, result, keep)) = done else {
                    continue;
                };
                fs.prefetched(ino, asked, result);
                // The metadata first: the copy is kept if it is of the
                // object the node now knows (an open waits for it).
                if let Some((key, meta, body, charged)) = keep {
                    let fs = fs.clone();
                    tokio::task::spawn_blocking(move || {
                        fs.keep_fetched(ino, key, &meta, body, charged)
                    });
                }
            }
        });
    }

    /// A lookup waits for the prefetch of `ino`: when its HEAD is still
    /// queued, it is sent now, beside the ones in flight, rather than
    /// after the entries listed before it. (The wait itself is the
    /// caller's, on `prefetching`.)
    pub(super) fn hurry_prefetch(&self, st: &mut InodeTable, ino: u64) {
        let Some(key) = st
            .nodes
            .get_mut(&ino)
            .filter(|n| n.prefetching)
            .and_then(|n| n.prefetch_queued.take())
        else {
            return;
        };
        let fs = self.clone();
        self.inner.rt.spawn(async move {
            let asked = (SystemTime::now(), Instant::now());
            let result = fs.inner.store.head(&key).await;
            fs.prefetched(ino, asked, result);
        });
    }

    /// Records what the prefetch HEAD of `ino` (asked at `asked`, by the
    /// clock and by the monotonic clock) found, unless the table knows
    /// better by then, and wakes its waiters.
    fn prefetched(
        &self,
        ino: u64,
        (asked, asked_at): (SystemTime, Instant),
        result: StoreResult<Option<ObjectMeta>>,
    ) {
        let defaults = self.opts().defaults;
        let mut st = self.lock();
        if let Some(n) = st.nodes.get_mut(&ino) {
            n.prefetching = false;
        }
        self.inner.changed.notify_all();
        let Some(n) = st.nodes.get_mut(&ino) else {
            return;
        };
        let Ok(meta) = result else {
            n.head_failed = true;
            return;
        };
        // Known already: by local state, or by a lookup's own probe; or
        // its metadata known as of later than this HEAD was sent (an upload
        // of this mount that landed meanwhile, a listing begun since that
        // confirmed it; not a listing's guess).
        if n.authoritative()
            || (n.meta_known && (self.attrs_current(ino, n) || asked_at < n.validated))
        {
            return;
        }
        // A directory whose marker is gone may be gone as a whole
        // (a listing keeps a directory checked within the TTL even
        // when it no longer shows it): its lookup asks the store.
        if n.kind == Kind::Dir && n.remote && meta.is_none() {
            n.head_failed = true;
            return;
        }
        let found = match (n.kind, meta) {
            // A directory without a marker keeps the defaults.
            (Kind::Dir, meta) => {
                let marker = meta.is_some();
                let meta = meta.unwrap_or_default();
                let mut posix = layout::decode(
                    &meta.metadata,
                    Kind::Dir,
                    meta.last_modified.or(Some(n.mtime)),
                    &defaults,
                );
                if !marker {
                    posix.ctime = posix.mtime;
                }
                Found {
                    kind: Kind::Dir,
                    size: 0,
                    posix,
                    marker,
                    meta_known: true,
                    etag: meta.etag.clone(),
                    last_modified: settled(meta.last_modified, asked),
                }
            }
            (_, Some(meta)) => Found::file(meta, asked, &defaults),
            (_, None) => return, // gone; the next lookup says so
        };
        n.apply(&found);
    }
}
