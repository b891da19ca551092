//! The listing of a whole subtree: a walk over many known directories of
//! one parent past the TTL (`git add` freshening its loose objects, one per
//! `.git/objects/xx/`; `git status` over a tree of directories) would probe
//! each directory and then list it, two rounds of requests per directory.
//! One LIST without a delimiter of everything below the parent, when it fits
//! in one page, is taken instead as the listing of the parent and of every
//! directory below it, as of when that LIST began.

use super::super::FsResult;
use super::super::layout::Kind;
use super::ObjectFs;
use super::listing::REVALIDATE_MAX;
use crate::store::ObjectMeta;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::time::Instant;

/// A subtree is listed this way when it has at most this many keys (one
/// page of a LIST).
const SUBTREE_PAGE: i32 = 1000;

impl ObjectFs {
    /// Lists everything below directory `ino` with one request. True when
    /// the table now has `ino` and every directory below it listed (and the
    /// known entries the listing could not confirm, [`REVALIDATE_MAX`] at
    /// most, being revalidated in the background); false when the subtree
    /// is larger than one page (not tried again for the TTL) or `ino` moved
    /// meanwhile. Lookups that come together share one LIST, as with
    /// [`ObjectFs::list_small_dir`].
    pub(super) fn list_whole_dir(&self, ino: u64) -> FsResult<bool> {
        let asked = Instant::now();
        let prefix = {
            let st = self.lock();
            let mut st = self.wait_while(st, |st| st.listing.contains(&ino));
            if st.deep.get(&ino).is_some_and(|t| self.ttl_fresh(*t)) {
                return Ok(false);
            }
            if st
                .listed
                .get(&ino)
                .is_some_and(|t| *t >= asked || self.ttl_fresh(*t))
            {
                return Ok(true);
            }
            if !st.nodes.contains_key(&ino) || st.pinned.contains_key(&ino) || st.being_filled(ino)
            {
                return Ok(false);
            }
            st.listing.insert(ino);
            self.dir_prefix_of(&st, ino)
        };
        let result = self.list_whole_dir_now(ino, &prefix);
        let mut st = self.lock();
        st.listing.remove(&ino);
        if result == Ok(false) {
            st.deep.insert(ino, asked);
        }
        drop(st);
        self.inner.changed.notify_all();
        result
    }

    fn list_whole_dir_now(&self, ino: u64, prefix: &str) -> FsResult<bool> {
        let store = &self.inner.store;
        let before = self.removals();
        let started = Instant::now();
        let page = self.call("list", || store.list(prefix, None, None, SUBTREE_PAGE))?;
        if page.next_token.is_some() {
            return Ok(false);
        }
        let gone = self.gone_since(before);
        let mut st = self.lock();
        if !st.nodes.contains_key(&ino)
            || st.pinned.contains_key(&ino)
            || st.being_filled(ino)
            || self.dir_prefix_of(&st, ino) != prefix
        {
            return Ok(false); // renamed while we listed: the lookup probes
        }
        let mut shown = Vec::new();
        let mut dirs = VecDeque::from([(ino, prefix.to_string())]);
        while let Some((dir, dir_prefix)) = dirs.pop_front() {
            if st.pinned.contains_key(&dir) {
                continue; // whole in the table, the store not yet
            }
            let (objects, subdirs) = one_level(&page.objects, &dir_prefix);
            let mut seen = HashSet::new();
            let entries = self.apply_listing(
                &mut st,
                dir,
                &dir_prefix,
                (&objects, &subdirs, started),
                &mut seen,
                &gone,
            );
            self.drop_unlisted(&mut st, dir, &seen, started);
            st.listed.insert(dir, started);
            for e in entries {
                let child_prefix = format!("{dir_prefix}{}/", e.name);
                // A directory's attributes are on its marker.
                let key = match e.kind {
                    Kind::Dir => child_prefix.clone(),
                    _ => self.read_key(&st, e.ino),
                };
                shown.push((e.ino, key));
                if e.kind == Kind::Dir {
                    dirs.push_back((e.ino, child_prefix));
                }
            }
        }
        // Known entries the listings could not confirm (a directory is
        // confirmed by its own listing, which shows its marker) are
        // revalidated together.
        let stale: Vec<(u64, String)> = shown
            .into_iter()
            .filter(|(i, _)| {
                st.nodes.get(i).is_some_and(|n| {
                    n.meta_known && !n.prefetching && !n.head_failed && !self.attrs_current(*i, n)
                })
            })
            .take(REVALIDATE_MAX)
            .collect();
        self.prefetch_metadata(st, stale);
        Ok(true)
    }
}

/// What a delimited listing of `dir_prefix` would show, out of the objects
/// of a subtree listing: the objects directly in it (its own marker among
/// them, which a listing skips), and its subdirectories' prefixes.
fn one_level(all: &[ObjectMeta], dir_prefix: &str) -> (Vec<ObjectMeta>, Vec<String>) {
    let mut objects = Vec::new();
    let mut subdirs = BTreeSet::new();
    for o in all.iter().filter(|o| o.key.starts_with(dir_prefix)) {
        let rest = &o.key[dir_prefix.len()..];
        match rest.find('/') {
            Some(i) => {
                subdirs.insert(format!("{dir_prefix}{}", &rest[..=i]));
            }
            None => objects.push(o.clone()),
        }
    }
    (objects, subdirs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str) -> ObjectMeta {
        ObjectMeta {
            key: key.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn one_level_of_a_subtree_is_what_a_delimited_listing_shows() {
        let all: Vec<ObjectMeta> = ["p/", "p/a", "p/d/", "p/d/x", "p/e/f/g", "q/z"]
            .into_iter()
            .map(obj)
            .collect();
        let (objects, dirs) = one_level(&all, "p/");
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/", "p/a"]);
        assert_eq!(dirs, ["p/d/", "p/e/"]);
        let (objects, dirs) = one_level(&all, "p/e/");
        assert!(objects.is_empty());
        assert_eq!(dirs, ["p/e/f/"]);
        let (objects, dirs) = one_level(&all, "p/d/");
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["p/d/", "p/d/x"]);
        assert!(dirs.is_empty());
    }
}
