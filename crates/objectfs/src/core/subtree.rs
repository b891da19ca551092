//! The listing of a whole subtree: a walk over many known directories
//! past the TTL (`git add` freshening its loose objects, one per
//! `.git/objects/xx/`; `git status` over a tree of directories) would probe
//! each directory and then list it, two rounds of requests per directory.
//! One LIST without a delimiter of everything below a stale directory (or
//! below the parent of sibling directories walked over), when it fits in
//! one page, is taken instead as the listing of it and of every directory
//! below it, as of when that LIST began.

use super::super::FsResult;
use super::super::layout::Kind;
use super::ObjectFs;
use super::inodes::InodeTable;
use super::listing::REVALIDATE_MAX;
use crate::store::ObjectMeta;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// A subtree is listed this way when it has at most this many keys (one
/// page of a LIST).
const SUBTREE_PAGE: i32 = 1000;

/// A subtree found larger than a page is not listed whole again for this
/// long (or the TTL, when longer): it seldom shrinks, and each try costs a
/// full page.
const DEEP_FOR: Duration = Duration::from_secs(30);

/// A subtree found larger than a page is not listed whole at a lookup of
/// its directory (or of one above it) again for this long: unlike a walk,
/// a lookup has no sign that the listing would pay.
const DEEP_AT_LOOKUP_FOR: Duration = Duration::from_secs(300);

/// What became of a subtree listing.
#[derive(Debug, PartialEq, Eq)]
enum Whole {
    /// Applied to the table.
    Listed,
    /// More keys than one page.
    Deep,
    /// A directory was renamed while it was under way: not applied.
    Moved,
}

impl ObjectFs {
    /// Lists everything below directory `ino` with one request. True when
    /// the table now has `ino` and every directory below it listed (and the
    /// known entries the listing could not confirm, [`REVALIDATE_MAX`] at
    /// most, being revalidated in the background); false when the subtree
    /// is larger than one page (not tried again for [`DEEP_FOR`], nor for
    /// the directories above it, which hold it) or a
    /// directory was renamed meanwhile. Lookups that come together share
    /// one LIST, as with [`ObjectFs::list_small_dir`].
    pub(super) fn list_whole_dir(&self, ino: u64) -> FsResult<bool> {
        let asked = Instant::now();
        let deep_for = DEEP_FOR.max(self.opts().metadata_ttl);
        let skip = |st: &InodeTable| {
            let deep = st.deep.get(&ino).is_some_and(|t| t.elapsed() < deep_for);
            let gone_or_moving = !st.nodes.contains_key(&ino)
                || st.pinned.contains_key(&ino)
                || st.being_filled(ino);
            (deep || gone_or_moving).then_some(false)
        };
        let prefix = match self.listing_turn(ino, asked, skip) {
            Ok(st) => self.dir_prefix_of(&st, ino),
            Err(answer) => return Ok(answer),
        };
        let result = self.list_whole_dir_now(ino, &prefix);
        self.end_listing(ino, |st| {
            if result == Ok(Whole::Deep) {
                // Every directory above holds it: as deep.
                let mut at = Some(ino);
                while let Some(dir) = at {
                    st.deep.insert(dir, asked);
                    at = st.nodes.get(&dir).map(|n| n.parent).filter(|p| *p != dir);
                }
            }
        });
        result.map(|w| w == Whole::Listed)
    }

    /// Directory `ino` (or one below it) was found larger than a page
    /// within [`DEEP_AT_LOOKUP_FOR`] (or the TTL, when longer): a lookup of
    /// it probes rather than list its whole subtree.
    pub(super) fn known_deep(&self, st: &InodeTable, ino: u64) -> bool {
        let within = DEEP_AT_LOOKUP_FOR.max(self.opts().metadata_ttl);
        st.deep.get(&ino).is_some_and(|t| t.elapsed() < within)
    }

    fn list_whole_dir_now(&self, ino: u64, prefix: &str) -> FsResult<Whole> {
        let store = &self.inner.store;
        let before = self.removals();
        let moves = self.lock().dir_moves;
        let started = Instant::now();
        let page = self.call("list", || store.list(prefix, None, None, SUBTREE_PAGE))?;
        if page.next_token.is_some() {
            return Ok(Whole::Deep);
        }
        let gone = self.gone_since(before);
        let mut st = self.lock();
        // A directory renamed while we listed (into this subtree, or out
        // of it) may show half copied: the lookup probes instead.
        if st.dir_moves != moves
            || !st.nodes.contains_key(&ino)
            || st.pinned.contains_key(&ino)
            || st.being_filled(ino)
            || self.dir_prefix_of(&st, ino) != prefix
        {
            return Ok(Whole::Moved);
        }
        let mut levels = by_level(&page.objects, prefix);
        let mut shown = Vec::new();
        let mut dirs = VecDeque::from([(ino, prefix.to_string())]);
        while let Some((dir, dir_prefix)) = dirs.pop_front() {
            if st.pinned.contains_key(&dir) {
                continue; // whole in the table, the store not yet
            }
            let (objects, subdirs) = levels.remove(&dir_prefix).unwrap_or_default();
            let subdirs: Vec<String> = subdirs.into_iter().collect();
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
                // (A name that is a file here and a prefix in the store
                // stays the file: nothing to list below it.)
                let is_dir = st.nodes.get(&e.ino).is_some_and(|n| n.kind == Kind::Dir);
                if e.kind == Kind::Dir && is_dir {
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
        Ok(Whole::Listed)
    }
}

/// Objects and subdirectories' prefixes directly in one directory.
type Level = (Vec<ObjectMeta>, BTreeSet<String>);

/// What a delimited listing of each directory at or below `top` would show,
/// out of the objects of a subtree listing of `top`, by the directory's
/// prefix: the objects directly in it (its own marker among them, which a
/// listing takes as the directory's), and its subdirectories' prefixes.
/// One pass over the keys.
fn by_level(all: &[ObjectMeta], top: &str) -> HashMap<String, Level> {
    let mut levels: HashMap<String, Level> = HashMap::new();
    for o in all.iter().filter(|o| o.key.starts_with(top)) {
        let mut dir_end = top.len();
        for (i, _) in o.key[top.len()..].match_indices('/') {
            let sub_end = top.len() + i + 1;
            levels
                .entry(o.key[..dir_end].to_string())
                .or_default()
                .1
                .insert(o.key[..sub_end].to_string());
            dir_end = sub_end;
        }
        levels
            .entry(o.key[..dir_end].to_string())
            .or_default()
            .0
            .push(o.clone());
    }
    levels
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
    fn each_level_of_a_subtree_is_what_a_delimited_listing_shows() {
        let all: Vec<ObjectMeta> = ["p/", "p/a", "p/d/", "p/d/x", "p/e/f/g", "q/z"]
            .into_iter()
            .map(obj)
            .collect();
        let levels = by_level(&all, "p/");
        let keys =
            |dir: &str| -> Vec<String> { levels[dir].0.iter().map(|o| o.key.clone()).collect() };
        let dirs = |dir: &str| -> Vec<String> { levels[dir].1.iter().cloned().collect() };
        assert_eq!(keys("p/"), ["p/", "p/a"]);
        assert_eq!(dirs("p/"), ["p/d/", "p/e/"]);
        assert_eq!(keys("p/d/"), ["p/d/", "p/d/x"]);
        assert!(dirs("p/d/").is_empty());
        // A directory only implied by a deeper key.
        assert!(keys("p/e/").is_empty());
        assert_eq!(dirs("p/e/"), ["p/e/f/"]);
        assert_eq!(keys("p/e/f/"), ["p/e/f/g"]);
        assert!(!levels.contains_key("q/"));
    }
}
