//! Whether the store takes this mount's changes (plain data, no I/O): the
//! run of failed uploads and namespace changes going on now, since when,
//! and the last error of it. The mount logs one line when a run starts and
//! one when it ends, and reports the run in its status file; what waits
//! for the store stays queued meanwhile.

use crate::store::StoreError;
use std::time::SystemTime;

/// A run of failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failing {
    /// When the first failure of the run happened.
    pub since: SystemTime,
    /// The last error of the run (a store error's message: never a key).
    pub message: String,
    /// The store refused the credentials (denied, unknown, expired).
    pub denied: bool,
}

#[derive(Debug, Default)]
pub struct Health {
    failing: Option<Failing>,
}

impl Health {
    /// A change could not reach the store. True when this starts a run
    /// (the caller logs it); a run's `since` stays that of its first
    /// failure, its message becomes the latest.
    pub fn failed(&mut self, err: &StoreError, now: SystemTime) -> bool {
        let denied = matches!(err, StoreError::AccessDenied { .. });
        let message = err.to_string();
        match &mut self.failing {
            Some(f) => {
                f.message = message;
                f.denied = denied;
                false
            }
            None => {
                self.failing = Some(Failing {
                    since: now,
                    message,
                    denied,
                });
                true
            }
        }
    }

    /// A change reached the store: ends the run, returned for the log.
    pub fn succeeded(&mut self) -> Option<Failing> {
        self.failing.take()
    }

    pub fn current(&self) -> Option<&Failing> {
        self.failing.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_run_starts_once_keeps_its_start_and_ends_at_the_next_success() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut h = Health::default();
        assert_eq!(h.succeeded(), None, "no run: nothing to report");
        let denied = StoreError::access_denied("PutObject", "k", "ExpiredToken: gone");
        assert!(h.failed(&denied, t0), "the first failure starts a run");
        let down = StoreError::transient("PutObject", "k", "connection refused");
        assert!(!h.failed(&down, t0 + Duration::from_secs(5)));
        let f = h.current().unwrap().clone();
        assert_eq!(
            (f.since, f.message.as_str(), f.denied),
            (t0, "connection refused", false)
        );
        assert_eq!(h.succeeded(), Some(f));
        assert_eq!(h.current(), None);
        assert!(h.failed(&denied, t0 + Duration::from_secs(9)), "a new run");
        assert!(h.current().unwrap().denied);
    }
}
