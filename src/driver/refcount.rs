//! The mount IDs of one volume, as a multiset.
//!
//! Docker can mount the same ID twice (`docker cp` on a running container
//! sends two Mounts and one Unmount), so a set would drop the volume while a
//! container still uses it. A count per ID keeps that case right.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MountIds(BTreeMap<String, u32>);

/// What an Unmount did to the multiset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The ID was not mounted: Docker retries Unmounts it thinks failed.
    Unknown,
    /// Other mounts remain.
    StillMounted,
    /// That was the last mount: the volume may be detached.
    Last,
}

impl MountIds {
    /// Records one more mount of `id`; true when it is the volume's first.
    pub fn acquire(&mut self, id: &str) -> bool {
        let first = self.0.is_empty();
        *self.0.entry(id.to_string()).or_insert(0) += 1;
        first
    }

    /// Drops one mount of `id`.
    pub fn release(&mut self, id: &str) -> Release {
        match self.0.get_mut(id) {
            None => Release::Unknown,
            Some(n) => {
                *n -= 1;
                if *n == 0 {
                    self.0.remove(id);
                }
                if self.0.is_empty() {
                    Release::Last
                } else {
                    Release::StillMounted
                }
            }
        }
    }

    /// Total mounts, counting repeats of one ID.
    pub fn total(&self) -> u32 {
        self.0.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The IDs mounted now, each once.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_id_twice_needs_two_releases() {
        let mut ids = MountIds::default();
        assert!(ids.acquire("a"));
        assert!(!ids.acquire("a"));
        assert_eq!(ids.total(), 2);
        assert_eq!(ids.ids().collect::<Vec<_>>(), ["a"]);
        assert_eq!(ids.release("a"), Release::StillMounted);
        assert_eq!(ids.release("a"), Release::Last);
        assert!(ids.is_empty());
    }

    #[test]
    fn unknown_release_changes_nothing() {
        let mut ids = MountIds::default();
        ids.acquire("a");
        assert_eq!(ids.release("b"), Release::Unknown);
        assert_eq!(ids.total(), 1);
        assert_eq!(ids.release("a"), Release::Last);
        assert_eq!(ids.release("a"), Release::Unknown);
    }

    #[test]
    fn two_ids_interleaved() {
        let mut ids = MountIds::default();
        assert!(ids.acquire("a"));
        assert!(!ids.acquire("b"));
        assert_eq!(ids.release("a"), Release::StillMounted);
        assert!(!ids.acquire("a"));
        assert_eq!(ids.release("b"), Release::StillMounted);
        assert_eq!(ids.release("a"), Release::Last);
    }

    #[test]
    fn serialises_as_a_plain_map() {
        let mut ids = MountIds::default();
        ids.acquire("x");
        ids.acquire("x");
        assert_eq!(serde_json::to_string(&ids).unwrap(), r#"{"x":2}"#);
    }
}
