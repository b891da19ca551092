//! Listings ahead of a walk over sibling directories. `git status` or
//! `git add` past the TTL goes through a tree one directory after another,
//! each directory a LIST it waits for before it asks for the next. When a
//! second directory of one parent is listed within the TTL of the first,
//! the parent's other stale subdirectories are listed in the background, a
//! few at a time, so the walk finds them listed (or waits for a listing
//! already under way) instead of asking for each in turn. Each listing is
//! one page at most ([`ObjectFs::list_small_dir`]), as a lookup's would be.
//! Near a walk that reads files (`diff -r`, `grep -r`: `core/fetchahead.rs`)
//! the listings ahead of the first [`FETCH_DIRS`] directories also start
//! the metadata prefetch of their first [`FETCH_FILES`] files (a GET of
//! each small one, `core/prefetch.rs`), so that the reader finds the next
//! directories fetched instead of waiting for each in turn.

use super::super::ROOT_INO;
use super::super::layout::Kind;
use super::ObjectFs;
use super::inodes::InodeTable;
use std::time::Instant;

/// At most this many directories are listed ahead when a walk is seen.
const AHEAD_MAX: usize = 64;

/// Listings ahead under way at once, in the whole mount.
const AHEAD_IN_FLIGHT: usize = 8;

/// Directories of a batch of listings ahead, the first in name order,
/// whose files are fetched at their listing near a reading walk...
const FETCH_DIRS: usize = 4;
/// ... their first files in name order, this many at most.
pub(super) const FETCH_FILES: usize = 64;

/// A directory to list ahead of a walk: its node, its prefix, and whether
/// its first files are to be fetched at its listing (near a reading walk).
pub(super) struct Ahead {
    dir: u64,
    prefix: String,
    fetch: bool,
}

/// Who lists a directory ([`ObjectFs::list_small_dir_as`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Lister {
    /// A readdir or lookup: may start listings ahead of a walk.
    Caller,
    /// A listing ahead of a walk; `fetch`: its first [`FETCH_FILES`]
    /// files are fetched at once near a walk reading files.
    Ahead { fetch: bool },
}

impl ObjectFs {
    /// Directory `ino` is being listed past its TTL, at a readdir or a
    /// lookup of a name it had (not of a new name, which is no walk). When
    /// another directory of the same parent was listed so
    /// within the TTL (a walk), marks the parent's other subdirectories not
    /// listed within the TTL, [`AHEAD_MAX`] at most in name order, as
    /// waiting to be listed ahead and returns them with their prefixes:
    /// the caller lets the table go and calls [`Self::list_ahead`].
    pub(super) fn siblings_to_list(&self, st: &mut InodeTable, ino: u64) -> Vec<Ahead> {
        let Some(parent) = st.nodes.get(&ino).map(|n| n.parent) else {
            return Vec::new();
        };
        let walk = st
            .dir_listed
            .insert(parent, (ino, Instant::now()))
            .is_some_and(|(d, t)| d != ino && self.ttl_fresh(t));
        // (Once per batch: a parent with listings ahead still to come is
        // not looked through again.)
        if ino == ROOT_INO
            || !walk
            || st.pinned.contains_key(&parent)
            || st.ahead.values().any(|p| *p == parent)
        {
            return Vec::new();
        }
        let mut siblings: Vec<(&str, u64)> = st
            .children
            .iter()
            .filter(|((p, _), c)| *p == parent && **c != ino)
            .filter(|(_, c)| {
                let fresh = |at: Option<&Instant>| at.is_some_and(|t| self.ttl_fresh(*t));
                st.nodes.get(c).is_some_and(|n| n.kind == Kind::Dir)
                    && !fresh(st.listed.get(c))
                    && !fresh(st.paged.get(c))
                    && !st.listing.contains(c)
                    && !st.ahead.contains_key(c)
                    && !st.pinned.contains_key(c)
                    && !st.being_filled(**c)
            })
            .map(|((_, name), c)| (name.as_str(), *c))
            .collect();
        siblings.sort_unstable();
        siblings.truncate(AHEAD_MAX);
        let dirs: Vec<u64> = siblings.into_iter().map(|(_, c)| c).collect();
        dirs.into_iter()
            .enumerate()
            .map(|(i, c)| {
                st.ahead.insert(c, parent);
                Ahead {
                    dir: c,
                    prefix: self.dir_prefix_of(st, c),
                    fetch: i < FETCH_DIRS,
                }
            })
            .collect()
    }

    /// Lists `dirs` (from [`Self::siblings_to_list`]) in the background,
    /// in their order, [`AHEAD_IN_FLIGHT`] at a time for the whole mount. A
    /// directory listed meanwhile by a readdir or lookup is not listed
    /// again; a failed listing is left to the walk's own request.
    pub(super) fn list_ahead(&self, dirs: Vec<Ahead>) {
        if dirs.is_empty() {
            return;
        }
        let start = {
            let mut st = self.lock();
            st.ahead_queue.extend(dirs);
            let start = AHEAD_IN_FLIGHT
                .saturating_sub(st.ahead_workers)
                .min(st.ahead_queue.len());
            st.ahead_workers += start;
            start
        };
        for _ in 0..start {
            let fs = self.clone();
            self.inner.rt.spawn_blocking(move || {
                loop {
                    let next = {
                        let mut st = fs.lock();
                        let next = st.ahead_queue.pop_front();
                        if next.is_none() {
                            st.ahead_workers -= 1;
                        }
                        next
                    };
                    let Some(a) = next else { break };
                    let lister = Lister::Ahead { fetch: a.fetch };
                    let _ = fs.list_small_dir_as(a.dir, &a.prefix, false, lister);
                    fs.lock().ahead.remove(&a.dir);
                }
            });
        }
    }
}
