//! The queue of namespace changes on their way to the store (plain data:
//! the journal files and the store calls are `ops`'s). It keeps each key's
//! changes in order, lets changes to different keys go together, and folds
//! changes that cancel out before they are sent: a name created where
//! nothing was and deleted again costs no request, a metadata change rides on the creation it
//! follows, and a delete followed by a new object at the same key is only
//! the new object.

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
    /// A creation that took the place of a waiting delete of its key: the
    /// store may still hold the object that delete was for.
    pub(super) replaced_delete: bool,
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

    pub(super) fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.waiting.len() + self.running.len()
    }

    fn all(&self) -> impl Iterator<Item = &Queued> {
        self.running.values().chain(self.waiting.iter())
    }

    /// Whether a change of `key` is waiting or running.
    #[cfg(test)]
    pub(super) fn pending_on(&self, key: &str) -> bool {
        self.all().any(|q| q.op.key() == key)
    }

    /// Whether a change of a key starting with `prefix` is pending.
    pub(super) fn pending_under(&self, prefix: &str) -> bool {
        self.all().any(|q| q.op.key().starts_with(prefix))
    }

    /// Whether the latest pending change of `key` deletes it: the store
    /// may still have the object, but it is gone.
    pub(super) fn deleting(&self, key: &str) -> bool {
        let last_waiting = self.waiting.iter().rev().find(|q| q.op.key() == key);
        let latest = match last_waiting {
            Some(q) => Some(q),
            None => self
                .running
                .values()
                .filter(|q| q.op.key() == key)
                .max_by_key(|q| q.seq),
        };
        latest.is_some_and(|q| matches!(q.op, NsOp::Delete { .. }))
    }

    /// Adds a change, folding it with waiting ones where the outcome in the
    /// store is the same.
    pub(super) fn push(&mut self, op: NsOp, ino: Option<u64>, ready_at: Instant) -> Pushed {
        let key = op.key().to_string();
        let waiting_on_key: Vec<usize> = (0..self.waiting.len())
            .filter(|&i| self.waiting[i].op.key() == key)
            .collect();
        match &op {
            NsOp::Delete { .. } => {
                // A waiting Put created the name (creations only go to
                // names that were absent, or whose delete is pending, which
                // the Put then replaced): drop it and what followed it.
                let put = waiting_on_key
                    .iter()
                    .copied()
                    .find(|&i| matches!(self.waiting[i].op, NsOp::Put { .. }));
                if let Some(first) = put {
                    let replaced_delete = self.waiting[first].replaced_delete;
                    let dropped = self.take_waiting(&key, first);
                    if !replaced_delete {
                        return Pushed::Cancelled { dropped };
                    }
                    // The object the replaced delete was for must still go.
                    return self.enqueue(op, ino, ready_at, dropped);
                }
                // Metadata changes of an object about to go are pointless.
                let dropped = match waiting_on_key.first() {
                    Some(&first) => self.take_waiting(&key, first),
                    None => Vec::new(),
                };
                self.enqueue(op, ino, ready_at, dropped)
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
                        NsOp::Delete { .. } => {}
                    }
                }
                self.enqueue(op, ino, ready_at, Vec::new())
            }
            NsOp::Put { .. } => {
                // The new object replaces whatever a waiting change would
                // have left at this key.
                let dropped = match waiting_on_key.first() {
                    Some(&first) => self.take_waiting(&key, first),
                    None => Vec::new(),
                };
                self.enqueue(op, ino, ready_at, dropped)
            }
        }
    }

    /// File data is about to be uploaded to `key`, replacing the object.
    /// When every pending change of the key is a waiting delete, those are
    /// pointless: they are dropped and returned. `None` while any other
    /// change of the key is pending (the upload waits for it).
    pub(super) fn clear_for_upload(&mut self, key: &str) -> Option<Vec<Queued>> {
        let blocked = self.running.values().any(|q| q.op.key() == key)
            || self
                .waiting
                .iter()
                .any(|q| q.op.key() == key && !matches!(q.op, NsOp::Delete { .. }));
        if blocked {
            return None;
        }
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
    ) -> Pushed {
        let seq = self.next_seq;
        self.next_seq += 1;
        let replaced_delete = matches!(op, NsOp::Put { .. })
            && dropped
                .iter()
                .any(|q| matches!(q.op, NsOp::Delete { .. }) || q.replaced_delete);
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
            replaced_delete,
        });
        Pushed::Queued { seq, dropped }
    }

    /// Removes the waiting changes of `key` from index `from` on.
    fn take_waiting(&mut self, key: &str, from: usize) -> Vec<Queued> {
        let mut dropped = Vec::new();
        let mut i = from;
        while i < self.waiting.len() {
            if self.waiting[i].op.key() == key {
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
        let mut i = 0;
        while i < self.waiting.len() && batch.len() < max {
            let q = &self.waiting[i];
            if !hurry && q.ready_at > now {
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

    /// When the first waiting change becomes ready.
    pub(super) fn next_ready(&self) -> Option<Instant> {
        self.waiting.front().map(|q| q.ready_at)
    }

    /// Change `seq` reached the store.
    pub(super) fn finish(&mut self, seq: u64) -> Option<Queued> {
        self.running.remove(&seq)
    }
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
        assert!(!q.deleting("d/"));
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
        assert!(q.deleting("l"));
        // Same key: waits for the running one.
        assert!(q.next_batch(now, true, 8).is_empty());
        assert_eq!(q.finish(1).unwrap().ino, Some(3));
        assert_eq!(seqs(&q.next_batch(now, false, 8)), vec![2]);
        q.finish(2);
        assert!(q.is_empty());
    }

    #[test]
    fn a_creation_that_replaced_a_delete_does_not_cancel_the_next_delete() {
        let now = Instant::now();
        let mut q = OpQueue::starting_after(0);
        // In the store: deleted, made again (a symlink), deleted again.
        q.push(del("f"), None, now);
        match q.push(put("f"), Some(4), now) {
            Pushed::Queued { seq: 2, dropped } => assert_eq!(seqs(&dropped), vec![1]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            q.push(set("f", "1"), Some(4), now),
            Pushed::Merged { seq: 2, .. }
        ));
        match q.push(del("f"), None, now) {
            Pushed::Queued { seq: 3, dropped } => assert_eq!(seqs(&dropped), vec![2]),
            other => panic!("{other:?}"),
        }
        assert!(q.deleting("f"));
        // Once more: still one delete in the end.
        q.push(put("f"), Some(5), now);
        q.push(del("f"), None, now);
        let batch = q.next_batch(now, true, 8);
        assert_eq!(seqs(&batch), vec![5]);
        assert_eq!(batch[0].op, del("f"));
        q.finish(5);
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
        assert!(q.deleting("f") && q.pending_on("f") && q.pending_under("f"));
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
    fn batches_keep_order_per_key_and_respect_the_delay() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let mut q = OpQueue::starting_after(0);
        q.push(put("a/"), None, now);
        q.push(put("b/"), None, now);
        q.push(del("x"), None, now);
        q.push(put("x"), None, now); // drops the delete: 4 replaces 3
        q.push(put("c/"), None, later);
        assert_eq!(q.len(), 4);
        assert_eq!(seqs(&q.next_batch(now, false, 2)), vec![1, 2]);
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
