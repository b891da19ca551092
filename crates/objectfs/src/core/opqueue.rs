//! The queue of namespace changes on their way to the store (plain data:
//! the journal files and the store calls are `ops`'s). It keeps each key's
//! changes in order, lets changes to different keys go together, and folds
//! changes that cancel out before they are sent: a name created and deleted
//! again costs no request, a metadata change rides on the creation (or the
//! metadata change) it follows, and a delete drops the metadata changes
//! before it.

use crate::oplog::NsOp;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

/// A change waiting or running, and the node waiting for it (if any).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Queued {
    pub(super) seq: u64,
    pub(super) op: NsOp,
    pub(super) ino: Option<u64>,
    pub(super) ready_at: Instant,
    /// A Put that creates a name known to be absent (mkdir, symlink): a
    /// delete of it before it is sent cancels both. A Put that may replace
    /// an object (a marker written for chmod) is not.
    creates: bool,
}

/// What `push` did.
#[derive(Debug, PartialEq)]
pub(super) enum Pushed {
    /// Queued as change `seq`; `dropped` are earlier changes it made
    /// pointless (their journal entries and nodes to release).
    Queued { seq: u64, dropped: Vec<Queued> },
    /// Folded into waiting change `seq` (its journal entry to rewrite).
    Merged { seq: u64, op: NsOp },
    /// Cancelled out with these waiting changes; nothing to send.
    Cancelled { dropped: Vec<Queued> },
}

#[derive(Default)]
pub(super) struct OpQueue {
    next_seq: u64,
    waiting: VecDeque<Queued>,
    running: HashMap<u64, Queued>,
    /// Directory renames (by their old prefix) whose content the mount is
    /// still reading into its table: not sent until it has (once sent,
    /// the old prefix would no longer show it).
    held: HashSet<String>,
    /// Deletes made outside the queue (sync mode) after the table dropped
    /// their names, by key, and whole prefixes (a directory renamed), each
    /// counted while under way.
    removing: HashMap<String, usize>,
    removing_prefixes: HashMap<String, usize>,
}

impl OpQueue {
    /// A queue whose sequence numbers start after `last` (what the journal
    /// already holds).
    pub(super) fn starting_after(last: u64) -> OpQueue {
        OpQueue {
            next_seq: last + 1,
            ..OpQueue::default()
        }
    }

    /// The directory rename from `from` is not to be sent yet.
    pub(super) fn hold(&mut self, from: &str) {
        self.held.insert(from.to_string());
    }

    /// The directory rename from `from` may be sent.
    pub(super) fn release(&mut self, from: &str) {
        self.held.remove(from);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    /// Changes being sent now.
    pub(super) fn running_len(&self) -> usize {
        self.running.len()
    }

    pub(super) fn len(&self) -> usize {
        self.waiting.len() + self.running.len()
    }

    fn all(&self) -> impl Iterator<Item = &Queued> {
        self.running.values().chain(self.waiting.iter())
    }

    /// Whether a change of `key` is waiting or running.
    pub(super) fn pending_on(&self, key: &str) -> bool {
        self.all().any(|q| q.op.covers(key))
    }

    /// Whether a change of a key starting with `prefix` is pending.
    pub(super) fn pending_under(&self, prefix: &str) -> bool {
        self.all().any(|q| q.op.touches_under(prefix))
    }

    /// A delete of `key` (or, with `prefix`, of every key below it) made
    /// outside the queue is under way until [`Self::removed`].
    pub(super) fn removing(&mut self, key: &str, prefix: bool) {
        let set = match prefix {
            true => &mut self.removing_prefixes,
            false => &mut self.removing,
        };
        *set.entry(key.to_string()).or_default() += 1;
    }

    /// The delete [`Self::removing`] announced is done (or failed).
    pub(super) fn removed(&mut self, key: &str, prefix: bool) {
        let set = match prefix {
            true => &mut self.removing_prefixes,
            false => &mut self.removing,
        };
        if let Some(n) = set.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                set.remove(key);
            }
        }
    }

    /// The removals pending now (deletes, renamed-away prefixes, queued or
    /// under way outside the queue): what a store request started now may
    /// still show, and must not.
    pub(super) fn removals(&self) -> Removals {
        let mut r = Removals::default();
        r.keys.extend(self.removing.keys().cloned());
        r.prefixes.extend(self.removing_prefixes.keys().cloned());
        for q in self.all() {
            match &q.op {
                NsOp::Delete { key } => {
                    r.keys.insert(key.clone());
                }
                NsOp::RenameDir { from, .. } => r.prefixes.push(from.clone()),
                _ => {}
            }
        }
        r
    }

    /// Adds a change, folding it with waiting ones where the outcome in the
    /// store is the same. A Put added here creates a name that was absent.
    #[cfg(test)]
    pub(super) fn push(&mut self, op: NsOp, ino: Option<u64>, ready_at: Instant) -> Pushed {
        let creates = matches!(op, NsOp::Put { .. });
        self.push_with(op, ino, ready_at, creates)
    }

    /// As `push`, saying whether a Put creates a name that was absent.
    pub(super) fn push_with(
        &mut self,
        op: NsOp,
        ino: Option<u64>,
        ready_at: Instant,
        creates: bool,
    ) -> Pushed {
        let key = op.key().to_string();
        // Folding looks at changes of this exact key only, never at a
        // directory rename (whose `key` is its new prefix): changes queued
        // before a rename of their key were sent before it was queued.
        let waiting_on_key: Vec<usize> = (0..self.waiting.len())
            .filter(|&i| same_key(&self.waiting[i].op, &key))
            .collect();
        match &op {
            NsOp::Delete { .. } => {
                // A waiting Put created the name (it was absent): drop it
                // and what followed it, and send nothing.
                let put = waiting_on_key
                    .iter()
                    .copied()
                    .find(|&i| matches!(self.waiting[i].op, NsOp::Put { .. }));
                if let Some(first) = put
                    && self.waiting[first].creates
                {
                    let dropped = self.take_waiting(&key, first);
                    return Pushed::Cancelled { dropped };
                }
                // Metadata changes of an object about to go are pointless.
                let dropped = match waiting_on_key.first() {
                    Some(&first) => self.take_waiting(&key, first),
                    None => Vec::new(),
                };
                self.enqueue(op, ino, ready_at, dropped, false)
            }
            NsOp::SetMeta { meta, .. } => {
                if let Some(&last) = waiting_on_key.last() {
                    let q = &mut self.waiting[last];
                    match &mut q.op {
                        NsOp::Put { meta: m, .. } | NsOp::SetMeta { meta: m, .. } => {
                            *m = meta.clone();
                            return Pushed::Merged {
                                seq: q.seq,
                                op: q.op.clone(),
                            };
                        }
                        NsOp::Delete { .. } | NsOp::RenameDir { .. } => {}
                    }
                }
                self.enqueue(op, ino, ready_at, Vec::new(), creates)
            }
            NsOp::RenameDir { .. } => self.enqueue(op, ino, ready_at, Vec::new(), creates),
            // Not folded with a waiting delete of the key: a delete after
            // this Put could then cancel it, and the store would keep what
            // the first delete was to remove.
            NsOp::Put { .. } => self.enqueue(op, ino, ready_at, Vec::new(), creates),
        }
    }

    /// Whether [`Self::clear_for_upload`] of `key` would drop waiting
    /// deletes (`None`: it would wait for other changes of the key).
    pub(super) fn upload_drops(&self, key: &str) -> Option<bool> {
        let blocked = self.running.values().any(|q| q.op.covers(key))
            || (self.waiting.iter())
                .any(|q| q.op.covers(key) && !matches!(q.op, NsOp::Delete { .. }));
        (!blocked).then(|| {
            (self.waiting.iter()).any(|q| q.op.key() == key && matches!(q.op, NsOp::Delete { .. }))
        })
    }

    /// File data is about to be uploaded to `key`, replacing the object.
    /// When every pending change of the key is a waiting delete, those are
    /// pointless: they are dropped and returned. `None` while any other
    /// change of the key is pending (the upload waits for it).
    pub(super) fn clear_for_upload(&mut self, key: &str) -> Option<Vec<Queued>> {
        self.upload_drops(key)?;
        let mut dropped = Vec::new();
        self.waiting.retain(|q| {
            let gone = q.op.key() == key && matches!(q.op, NsOp::Delete { .. });
            if gone {
                dropped.push(q.clone());
            }
            !gone
        });
        Some(dropped)
    }

    fn enqueue(
        &mut self,
        op: NsOp,
        ino: Option<u64>,
        ready_at: Instant,
        dropped: Vec<Queued>,
        creates: bool,
    ) -> Pushed {
        let seq = self.next_seq;
        self.next_seq += 1;
        // Ready times never go backwards: the queue is sent in order.
        let ready_at = self
            .waiting
            .back()
            .map_or(ready_at, |q| q.ready_at.max(ready_at));
        self.waiting.push_back(Queued {
            seq,
            op,
            ino,
            ready_at,
            creates,
        });
        Pushed::Queued { seq, dropped }
    }

    /// Removes the waiting changes of `key` from index `from` on.
    fn take_waiting(&mut self, key: &str, from: usize) -> Vec<Queued> {
        let mut dropped = Vec::new();
        let mut i = from;
        while i < self.waiting.len() {
            if same_key(&self.waiting[i].op, key) {
                dropped.push(self.waiting.remove(i).expect("in range"));
            } else {
                i += 1;
            }
        }
        dropped
    }

    /// Changes to send now, at most `max`: ready ones (or all, when
    /// `hurry`), in order, at most one per key and none for a key with a
    /// change still running. They count as running until `finish`.
    pub(super) fn next_batch(&mut self, now: Instant, hurry: bool, max: usize) -> Vec<Queued> {
        let mut busy: HashSet<String> = self
            .running
            .values()
            .map(|q| q.op.key().to_string())
            .collect();
        let mut batch = Vec::new();
        // A directory rename runs alone: nothing runs with it, nothing
        // after it starts before it ends (it covers whole prefixes).
        if self
            .running
            .values()
            .any(|q| matches!(q.op, NsOp::RenameDir { .. }))
        {
            return batch;
        }
        let mut i = 0;
        while i < self.waiting.len() && batch.len() < max {
            let q = &self.waiting[i];
            if !hurry && q.ready_at > now {
                break;
            }
            if let NsOp::RenameDir { from, .. } = &q.op {
                if batch.is_empty() && self.running.is_empty() && !self.held.contains(from) {
                    let q = self.waiting.remove(i).expect("in range");
                    self.running.insert(q.seq, q.clone());
                    batch.push(q);
                }
                break;
            }
            if busy.insert(q.op.key().to_string()) {
                let q = self.waiting.remove(i).expect("in range");
                self.running.insert(q.seq, q.clone());
                batch.push(q);
            } else {
                i += 1;
            }
        }
        batch
    }

    /// When the earliest queued change (waiting or being sent) became, or
    /// becomes, ready.
    pub(super) fn oldest_ready(&self) -> Option<Instant> {
        self.all().map(|q| q.ready_at).min()
    }

    /// When the first waiting change becomes ready.
    pub(super) fn next_ready(&self) -> Option<Instant> {
        self.waiting.front().map(|q| q.ready_at)
    }

    /// Change `seq` reached the store.
    pub(super) fn finish(&mut self, seq: u64) -> Option<Queued> {
        self.running.remove(&seq)
    }
}

/// Keys hidden by removals pending while a store request ran (a snapshot
/// from before it, joined with one from after): the request may see the
/// object or not, it is gone either way (a name created again since is in
/// the inode table, which callers ask first).
#[derive(Debug, Default)]
pub(super) struct Removals {
    keys: HashSet<String>,
    prefixes: Vec<String>,
}

impl Removals {
    pub(super) fn hides(&self, key: &str) -> bool {
        self.keys.contains(key) || self.prefixes.iter().any(|p| key.starts_with(p.as_str()))
    }

    /// What either snapshot hides.
    pub(super) fn and(mut self, other: Removals) -> Removals {
        self.keys.extend(other.keys);
        self.prefixes.extend(other.prefixes);
        self
    }
}

/// Whether `op` is a change of exactly `key` (a rename of a directory is
/// a change of a whole prefix, never of one key).
fn same_key(op: &NsOp, key: &str) -> bool {
    !matches!(op, NsOp::RenameDir { .. }) && op.key() == key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PutMeta;
    use std::time::Duration;

    fn put(key: &str) -> NsOp {
        NsOp::Put {
            key: key.into(),
            meta: PutMeta::default(),
            body: Vec::new(),
        }
    }

    fn del(key: &str) -> NsOp {
        NsOp::Delete { key: key.into() }
    }

    fn set(key: &str, mode: &str) -> NsOp {
        NsOp::SetMeta {
            key: key.into(),
            size: None,
            meta: PutMeta {
                content_type: None,
                metadata: [("mode".to_string(), mode.to_string())].into(),
            },
        }
    }

    fn seqs(batch: &[Queued]) -> Vec<u64> {
        batch.iter().map(|q| q.seq).collect()
    }

    #[test]
    fn the_oldest_change_counts_while_it_waits_and_while_it_is_sent() {
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(1);
        let mut q = OpQueue::starting_after(0);
        assert_eq!(q.oldest_ready(), None);
        q.push(put("a/"), None, now);
        q.push(put("b/"), None, later);
        assert_eq!(q.oldest_ready(), Some(now));
        assert_eq!(seqs(&q.next_batch(now, false, 1)), vec![1]);
        assert_eq!(q.oldest_ready(), Some(now), "being sent: still pending");
        q.finish(1);
        assert_eq!(q.oldest_ready(), Some(later));
    }

    #[test]
    fn deleted_recreated_and_deleted_again_stays_deleted() {
        let now = Instant::now();
        let mut q = OpQueue::starting_after(0);
        q.push(del("b/"), None, now);
        q.push(put("b/"), None, now);
        // Cancels the re-creation only: the first delete still goes.
        match q.push(del("b/"), None, now) {
            Pushed::Cancelled { dropped } => assert_eq!(seqs(&dropped), vec![2]),
            other => panic!("{other:?}"),
        }
        assert!(q.removals().hides("b/"));
        let before = q.removals();
        assert_eq!(seqs(&q.next_batch(now, false, 8)), vec![1]);
        q.finish(1);
        // Done now, but a LIST begun before may still have shown it.
        assert!(!q.removals().hides("b/") && before.hides("b/") && !before.hides("c/"));
    }

    #[test]
    fn a_marker_written_for_chmod_is_not_cancelled_by_the_rmdir() {
        let now = Instant::now();
        let mut q = OpQueue::starting_after(0);
        // The directory may have a marker already: this Put replaces it.
        q.push_with(put("d/"), Some(2), now, false);
        match q.push(del("d/"), None, now) {
            Pushed::Queued { seq: 2, dropped } => assert_eq!(seqs(&dropped), vec![1]),
            other => panic!("{other:?}"),
        }
        assert!(q.removals().hides("d/"));
    }

    #[test]
    fn created_then_deleted_costs_nothing() {
        let now = Instant::now();
        let mut q = OpQueue::starting_after(0);
        assert!(matches!(
            q.push(put("d/"), Some(5), now),
            Pushed::Queued { seq: 1, .. }
        ));
        assert!(matches!(
            q.push(set("d/", "1"), Some(5), now),
            Pushed::Merged { seq: 1, .. }
        ));
        match q.push(del("d/"), None, now) {
            Pushed::Cancelled { dropped } => assert_eq!(seqs(&dropped), vec![1]),
            other => panic!("{other:?}"),
        }
        assert!(q.is_empty());
        assert!(!q.removals().hides("d/"));
    }

    #[test]
    fn a_running_creation_is_followed_by_its_delete() {
        let now = Instant::now();
        let mut q = OpQueue::starting_after(0);
        q.push(put("l"), Some(3), now);
        assert_eq!(seqs(&q.next_batch(now, false, 8)), vec![1]);
        assert!(matches!(
            q.push(del("l"), None, now),
            Pushed::Queued { seq: 2, .. }
        ));
        assert!(q.removals().hides("l"));
        // Same key: waits for the running one.
        assert!(q.next_batch(now, true, 8).is_empty());
        assert_eq!(q.finish(1).unwrap().ino, Some(3));
        assert_eq!(seqs(&q.next_batch(now, false, 8)), vec![2]);
        q.finish(2);
        assert!(q.is_empty());
    }

    #[test]
    fn metadata_changes_fold_and_a_delete_drops_them() {
        let now = Instant::now();
        let mut q = OpQueue::starting_after(7);
        assert!(matches!(
            q.push(set("f", "1"), Some(2), now),
            Pushed::Queued { seq: 8, .. }
        ));
        match q.push(set("f", "2"), Some(2), now) {
            Pushed::Merged { seq: 8, op } => assert_eq!(op, set("f", "2")),
            other => panic!("{other:?}"),
        }
        match q.push(del("f"), None, now) {
            Pushed::Queued { seq: 9, dropped } => assert_eq!(seqs(&dropped), vec![8]),
            other => panic!("{other:?}"),
        }
        assert!(q.removals().hides("f") && q.pending_on("f") && q.pending_under("f"));
        // An upload of new data to the key makes the delete pointless...
        assert_eq!(seqs(&q.clear_for_upload("f").unwrap()), vec![9]);
        assert!(q.is_empty());
        // ...but it waits for any other change of the key.
        q.push(set("f", "3"), None, now);
        q.push(del("g"), None, now);
        assert_eq!(q.clear_for_upload("f"), None);
        assert_eq!(q.clear_for_upload("g").map(|d| seqs(&d)), Some(vec![11]));
    }

    #[test]
    fn a_directory_rename_runs_alone_and_hides_its_old_names() {
        let now = Instant::now();
        let mut q = OpQueue::starting_after(0);
        let ren = NsOp::RenameDir {
            from: "p/old/".into(),
            to: "p/new/".into(),
            names: vec!["".into(), "f".into()],
            marker: None,
            list: false,
        };
        q.push(put("a/"), None, now);
        q.push(ren, Some(4), now);
        q.push(put("b/"), None, now);
        assert!(q.removals().hides("p/old/f") && q.removals().hides("p/old/"));
        assert!(!q.removals().hides("p/new/f") && !q.removals().hides("p/other"));
        assert!(q.pending_under("p/new/") && q.pending_under("p/") && q.pending_under("p/old/f"));
        // Data for a name inside waits for the rename.
        assert_eq!(q.clear_for_upload("p/new/f"), None);
        assert_eq!(seqs(&q.next_batch(now, false, 8)), vec![1]);
        assert!(
            q.next_batch(now, false, 8).is_empty(),
            "waits for a/ to end"
        );
        q.finish(1);
        // Held while the mount reads the old content: it waits, and what
        // comes after it too.
        q.hold("p/old/");
        assert!(q.next_batch(now, true, 8).is_empty(), "held");
        q.release("p/old/");
        assert_eq!(seqs(&q.next_batch(now, false, 8)), vec![2]);
        assert!(q.next_batch(now, false, 8).is_empty(), "nothing beside it");
        q.finish(2);
        assert_eq!(seqs(&q.next_batch(now, false, 8)), vec![3]);
        // A new directory at the old name comes after the rename's deletes.
        q.push(put("p/old/"), None, now);
        assert!(!q.removals().hides("p/old/"));
        // Deleting the new name's marker never folds the rename away.
        let mut q = OpQueue::starting_after(0);
        q.push(
            NsOp::RenameDir {
                from: "a/".into(),
                to: "b/".into(),
                names: vec!["".into()],
                marker: None,
                list: false,
            },
            None,
            now,
        );
        assert!(
            matches!(q.push(del("b/"), None, now), Pushed::Queued { seq: 2, ref dropped } if dropped.is_empty())
        );
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn batches_keep_order_per_key_and_respect_the_delay() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let mut q = OpQueue::starting_after(0);
        q.push(put("a/"), None, now);
        q.push(put("b/"), None, now);
        q.push(del("x"), None, now);
        q.push(put("x"), None, now);
        q.push(put("c/"), None, later);
        assert_eq!(q.len(), 5);
        assert_eq!(seqs(&q.next_batch(now, false, 2)), vec![1, 2]);
        // One change per key at a time: the Put of x after its delete.
        assert_eq!(seqs(&q.next_batch(now, false, 8)), vec![3]);
        q.finish(3);
        assert_eq!(seqs(&q.next_batch(now, false, 8)), vec![4]);
        assert!(q.next_batch(now, false, 8).is_empty(), "c/ not ready yet");
        assert_eq!(q.next_ready(), Some(later));
        // Ready times never go backwards, so order holds across delays.
        q.push(put("e/"), None, now);
        assert!(q.next_batch(now, false, 8).is_empty());
        assert_eq!(seqs(&q.next_batch(later, false, 8)), vec![5, 6]);
        q.push(put("f/"), None, now);
        assert_eq!(seqs(&q.next_batch(now, true, 8)), vec![7], "hurried");
    }
}
