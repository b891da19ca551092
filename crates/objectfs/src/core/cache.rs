//! The cache's bookkeeping: which clean copies of objects the cache
//! directory holds (by key, with the ETag each copy equals), how many bytes
//! all local copies take, and which clean copies go first when space is
//! needed (least recently used). Plain data: the files themselves are the
//! staging area's, and the filesystem core deletes what this says to evict.
//!
//! Two kinds of bytes count against the bound: copies attached to a node
//! (being written, dirty, uploading or open; never evicted) and detached
//! clean copies kept here (evictable). A copy moves between the two without
//! its bytes being counted twice: `take` hands a detached copy to a node,
//! `insert` takes one back. When the disk under the cache refuses bytes,
//! clean copies are evicted to free it (`evict_bytes`), and no copy that
//! only saves a later GET is made for a while (`disk_refused`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// After the disk refused a copy's bytes, copies made only to spare a
/// later GET (whole-file copies of objects read, files fetched ahead) are
/// not attempted for this long: each would download in vain.
const DISK_FULL_PAUSE: Duration = Duration::from_secs(5);

/// A detached clean copy of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Cached {
    /// Its staging file.
    pub(super) id: u64,
    pub(super) etag: String,
    pub(super) size: u64,
    /// Position in the LRU order (higher is more recent).
    tick: u64,
}

pub(super) struct CacheIndex {
    bound: u64,
    /// Bytes of every local copy, attached or detached.
    used: u64,
    entries: HashMap<String, Cached>,
    lru: BTreeMap<u64, String>,
    /// Ticks of copies used count up from the middle of the range, those
    /// of copies nobody asked for yet (fetched ahead) down from it.
    next_tick: u64,
    cold_tick: u64,
    /// Until when copies to spare a GET are not made (`disk_refused`).
    no_copies_until: Option<Instant>,
}

const MID_TICK: u64 = u64::MAX / 2;

impl CacheIndex {
    pub(super) fn new(bound: u64) -> CacheIndex {
        CacheIndex {
            bound,
            used: 0,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            next_tick: MID_TICK,
            cold_tick: MID_TICK,
            no_copies_until: None,
        }
    }

    /// The disk refused a copy's bytes at `now` (full, or over quota).
    pub(super) fn disk_refused(&mut self, now: Instant) {
        self.no_copies_until = Some(now + DISK_FULL_PAUSE);
    }

    /// Whether a copy made only to spare a later GET is worth trying at
    /// `now`: not within [`DISK_FULL_PAUSE`] of the disk refusing one.
    pub(super) fn copies_welcome(&self, now: Instant) -> bool {
        self.no_copies_until.is_none_or(|t| now >= t)
    }

    pub(super) fn used(&self) -> u64 {
        self.used
    }

    /// Bytes of detached clean copies.
    pub(super) fn clean_bytes(&self) -> u64 {
        self.entries.values().map(|c| c.size).sum()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// An attached copy grew (or a new one appeared): count its bytes.
    pub(super) fn charge(&mut self, bytes: u64) {
        self.used += bytes;
    }

    /// An attached copy shrank or went away.
    pub(super) fn credit(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Whether `bytes` more fit under the bound now.
    pub(super) fn fits(&self, bytes: u64) -> bool {
        self.used.saturating_add(bytes) <= self.bound
    }

    /// Counts `bytes` more when they fit under the bound without evicting
    /// anything (what speculation may take); says whether they did.
    pub(super) fn charge_if_fits(&mut self, bytes: u64) -> bool {
        let fits = self.fits(bytes);
        if fits {
            self.charge(bytes);
        }
        fits
    }

    /// Whether a copy of `key` at `etag` is kept.
    pub(super) fn holds(&self, key: &str, etag: &str) -> bool {
        self.entries.get(key).is_some_and(|c| c.etag == etag)
    }

    /// Keeps a clean copy of `key` (its bytes already counted, as an
    /// attached copy's are). Returns the copy it replaces, whose file the
    /// caller deletes.
    pub(super) fn insert(&mut self, key: &str, id: u64, etag: &str, size: u64) -> Option<Cached> {
        let tick = self.tick();
        self.insert_at(key, id, etag, size, tick)
    }

    /// As [`Self::insert`], for a copy nobody has asked for yet (fetched
    /// ahead of a reader): it goes before every other copy when space is
    /// needed, the last one kept so before those kept so earlier.
    pub(super) fn insert_cold(
        &mut self,
        key: &str,
        id: u64,
        etag: &str,
        size: u64,
    ) -> Option<Cached> {
        self.cold_tick -= 1;
        let tick = self.cold_tick;
        self.insert_at(key, id, etag, size, tick)
    }

    fn insert_at(
        &mut self,
        key: &str,
        id: u64,
        etag: &str,
        size: u64,
        tick: u64,
    ) -> Option<Cached> {
        let old = self.remove(key);
        self.lru.insert(tick, key.to_string());
        self.entries.insert(
            key.to_string(),
            Cached {
                id,
                etag: etag.to_string(),
                size,
                tick,
            },
        );
        old
    }

    /// A copy found in the cache directory at mount time (its bytes not
    /// counted yet). Returns the copy it replaces.
    pub(super) fn restore(&mut self, key: &str, id: u64, etag: &str, size: u64) -> Option<Cached> {
        self.used += size;
        self.insert(key, id, etag, size)
    }

    /// Hands the copy of `key` to a node when it is of `etag` and `size`;
    /// its bytes stay counted (now attached). A copy of another version is
    /// stale: it is removed and returned in `Err` for the caller to delete.
    pub(super) fn take(
        &mut self,
        key: &str,
        etag: &str,
        size: u64,
    ) -> Result<Option<Cached>, Cached> {
        let Some(c) = self.entries.get(key) else {
            return Ok(None);
        };
        if c.etag != etag || c.size != size {
            return Err(self.remove(key).expect("present"));
        }
        let c = self.entries.remove(key).expect("present");
        self.lru.remove(&c.tick);
        Ok(Some(c))
    }

    /// Forgets the copy of `key` (its object changed or went away); its
    /// bytes are no longer counted. The caller deletes the file.
    pub(super) fn remove(&mut self, key: &str) -> Option<Cached> {
        let c = self.entries.remove(key)?;
        self.lru.remove(&c.tick);
        self.used = self.used.saturating_sub(c.size);
        Some(c)
    }

    /// Removes every copy whose key starts with `prefix`.
    pub(super) fn remove_prefix(&mut self, prefix: &str) -> Vec<Cached> {
        let keys: Vec<String> = self
            .entries
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Evicts least recently used copies until `bytes` more fit, or none is
    /// left. Returns what was evicted, for the caller to delete.
    pub(super) fn evict_for(&mut self, bytes: u64) -> Vec<Cached> {
        let mut out = Vec::new();
        while !self.fits(bytes) {
            let Some(c) = self.evict_oldest() else { break };
            out.push(c);
        }
        out
    }

    /// Evicts clean copies, least recently used first, until they held
    /// `bytes` or none is left: the disk under the cache is full, whatever
    /// the bound says.
    pub(super) fn evict_bytes(&mut self, bytes: u64) -> Vec<Cached> {
        let mut out = Vec::new();
        let mut freed = 0;
        while freed < bytes {
            let Some(c) = self.evict_oldest() else { break };
            freed += c.size;
            out.push(c);
        }
        out
    }

    fn evict_oldest(&mut self) -> Option<Cached> {
        let (_, key) = self.lru.pop_first()?;
        let c = self.entries.remove(&key).expect("indexed");
        self.used = self.used.saturating_sub(c.size);
        Some(c)
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_evicts_the_oldest_copies_and_pauses_copies_for_a_while() {
        let mut c = CacheIndex::new(1000);
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            c.charge(100);
            assert_eq!(c.insert(key, i as u64, "e", 100), None);
        }
        let gone: Vec<u64> = c.evict_bytes(150).iter().map(|g| g.id).collect();
        assert_eq!(gone, vec![0, 1], "the two oldest, 200 bytes for 150");
        assert_eq!(c.used(), 100);
        assert_eq!(c.evict_bytes(1000).len(), 1, "all that is left");
        assert!(c.evict_bytes(1).is_empty());
        let now = Instant::now();
        assert!(c.copies_welcome(now));
        c.disk_refused(now);
        assert!(!c.copies_welcome(now + Duration::from_secs(1)));
        assert!(c.copies_welcome(now + DISK_FULL_PAUSE));
    }

    #[test]
    fn take_hands_over_a_matching_copy_and_drops_a_stale_one() {
        let mut c = CacheIndex::new(100);
        c.charge(10);
        assert_eq!(c.insert("a", 1, "e1", 10), None);
        assert_eq!(c.used(), 10);
        // Another version: stale, removed, bytes no longer counted.
        let stale = c.take("a", "e2", 10).unwrap_err();
        assert_eq!(stale.id, 1);
        assert_eq!(c.used(), 0);
        assert_eq!(c.take("a", "e1", 10), Ok(None));

        c.charge(10);
        c.insert("a", 2, "e3", 10);
        let got = c.take("a", "e3", 10).unwrap().unwrap();
        assert_eq!(got.id, 2);
        // Attached now: still counted, not evictable.
        assert_eq!(c.used(), 10);
        assert!(c.evict_for(95).is_empty());
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn eviction_goes_least_recently_used_first_and_spares_attached_bytes() {
        let mut c = CacheIndex::new(100);
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            c.charge(30);
            c.insert(k, i as u64, "e", 30);
        }
        // "a" used again: back to the front.
        let a = c.take("a", "e", 30).unwrap().unwrap();
        c.insert("a", a.id, "e", 30);
        c.charge(5); // an attached copy
        assert_eq!(c.used(), 95);
        assert!(c.fits(5) && !c.fits(6));
        let gone: Vec<u64> = c.evict_for(40).iter().map(|x| x.id).collect();
        assert_eq!(gone, vec![1, 2], "b then c; a was used last");
        assert_eq!(c.used(), 35);
        assert_eq!(c.clean_bytes(), 30);
        // More than the bound can ever hold: everything clean goes, and it
        // still does not fit (attached bytes are never evicted).
        assert_eq!(c.evict_for(200).len(), 1);
        assert!(!c.fits(200));
        assert_eq!(c.used(), 5);
    }

    #[test]
    fn copies_kept_cold_go_first_the_last_kept_first() {
        let mut c = CacheIndex::new(40);
        c.charge(40);
        c.insert("used-early", 1, "e", 10);
        c.insert_cold("ahead-1", 2, "e", 10);
        c.insert("used-late", 3, "e", 10);
        c.insert_cold("ahead-2", 4, "e", 10);
        let order: Vec<u64> = c.evict_for(40).iter().map(|g| g.id).collect();
        assert_eq!(order, vec![4, 2, 1, 3]);
        // Taken by a reader and given back, a copy is an ordinary one.
        c.charge(20);
        c.insert_cold("a", 5, "e", 10);
        c.insert("b", 6, "e", 10);
        let a = c.take("a", "e", 10).unwrap().unwrap();
        c.insert("a", a.id, "e", 10);
        c.charge(10);
        let gone: Vec<u64> = c.evict_for(20).iter().map(|g| g.id).collect();
        assert_eq!(gone, vec![6]);
    }

    #[test]
    fn restore_counts_bytes_and_replacing_returns_the_old_copy() {
        let mut c = CacheIndex::new(1000);
        assert_eq!(c.restore("k", 1, "e1", 7), None);
        let old = c.restore("k", 2, "e2", 9).unwrap();
        assert_eq!(old.id, 1);
        assert_eq!(c.used(), 9);
        assert_eq!(c.remove_prefix("k").len(), 1);
        assert_eq!(c.used(), 0);
        c.credit(5);
        assert_eq!(c.used(), 0, "never below zero");
    }
}
