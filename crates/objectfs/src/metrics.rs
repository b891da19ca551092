//! What a mount counts about its own work (plain data, no I/O): kernel
//! requests by operation, store requests by operation and outcome with a
//! latency histogram per operation, bytes read from and written to the
//! store, and the store requests and errors of the last minute. Counting is
//! a few atomic additions (a short lock for the last minute's ring);
//! [`Metrics::snapshot`] is what the mount's status file carries, and what
//! the plugin daemon turns into Prometheus series and `status` into a table.
//!
//! Every label value is one of the fixed names below (never a key, a path
//! or an error message), so what a mount reports stays small however it is
//! used.

use crate::store::StoreError;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Declares a fieldless enum of label values with its names, in order.
macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order (its index is `self as usize`).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every value's name, in the same order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The label value.
            pub fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }
        }
    };
}

label_enum! {
    /// A kernel request the FUSE adapter answers.
    FuseOp {
        Lookup => "lookup",
        Forget => "forget",
        Getattr => "getattr",
        Setattr => "setattr",
        Readlink => "readlink",
        Mknod => "mknod",
        Mkdir => "mkdir",
        Unlink => "unlink",
        Rmdir => "rmdir",
        Symlink => "symlink",
        Rename => "rename",
        Link => "link",
        Open => "open",
        Read => "read",
        Write => "write",
        Flush => "flush",
        Release => "release",
        Fsync => "fsync",
        Opendir => "opendir",
        Readdir => "readdir",
        Readdirplus => "readdirplus",
        Releasedir => "releasedir",
        Fsyncdir => "fsyncdir",
        Getxattr => "getxattr",
        Listxattr => "listxattr",
        Ioctl => "ioctl",
        Statfs => "statfs",
        Create => "create",
    }
}

label_enum! {
    /// A store request, named after the S3 API call it is (one call of the
    /// store interface: a server-side copy of an object over 5 GiB is
    /// several requests on the wire and one `CopyObject` here).
    StoreOp {
        Head => "HeadObject",
        Get => "GetObject",
        Put => "PutObject",
        CreateMultipart => "CreateMultipartUpload",
        UploadPart => "UploadPart",
        CompleteMultipart => "CompleteMultipartUpload",
        AbortMultipart => "AbortMultipartUpload",
        List => "ListObjectsV2",
        Delete => "DeleteObject",
        DeleteMany => "DeleteObjects",
        Copy => "CopyObject",
    }
}

label_enum! {
    /// How a store request ended: the kinds of [`StoreError`], or ok.
    Outcome {
        Ok => "ok",
        NotFound => "not_found",
        AccessDenied => "access_denied",
        PreconditionFailed => "precondition_failed",
        Throttled => "throttled",
        Transient => "transient",
        Permanent => "permanent",
    }
}

impl Outcome {
    /// The outcome of a request that failed with `e`.
    pub fn of_error(e: &StoreError) -> Outcome {
        match e {
            StoreError::NotFound { .. } => Outcome::NotFound,
            StoreError::AccessDenied { .. } => Outcome::AccessDenied,
            StoreError::PreconditionFailed { .. } => Outcome::PreconditionFailed,
            StoreError::Throttled { .. } => Outcome::Throttled,
            StoreError::Transient { .. } => Outcome::Transient,
            StoreError::Permanent { .. } => Outcome::Permanent,
        }
    }

    /// Whether it counts as an error in the last minute's figures: a
    /// missing object is an answer, not a failure.
    pub fn is_error(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::NotFound)
    }
}

/// Upper bounds of the latency buckets, in microseconds (5 ms to 30 s; one
/// more bucket holds what is slower).
pub const LATENCY_BOUNDS_US: &[u64] = &[
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000, 30_000_000,
];

/// How many seconds the recent figures cover.
pub const RECENT_SECONDS: u64 = 60;

/// A latency histogram with the fixed [`LATENCY_BOUNDS_US`].
struct Histogram {
    /// Per bucket (not cumulative); the last is above every bound.
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            count: self.count.load(Ordering::Relaxed),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

/// Requests and errors per second over the last [`RECENT_SECONDS`]
/// seconds: one slot per second, reused a minute later.
#[derive(Debug, Clone)]
pub struct Recent {
    /// (the second it counts, requests, errors); indexed by second modulo
    /// the ring's length.
    slots: [(u64, u64, u64); RECENT_SECONDS as usize],
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            slots: [(0, 0, 0); RECENT_SECONDS as usize],
        }
    }
}

impl Recent {
    /// One request in second `sec` (counted from any fixed origin).
    pub fn record(&mut self, sec: u64, error: bool) {
        let slot = &mut self.slots[(sec % RECENT_SECONDS) as usize];
        if slot.0 != sec {
            *slot = (sec, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u64::from(error);
    }

    /// Requests and errors in the minute that ends with second `now`.
    pub fn totals(&self, now: u64) -> (u64, u64) {
        self.slots
            .iter()
            .filter(|(sec, _, _)| *sec <= now && now - sec < RECENT_SECONDS)
            .fold((0, 0), |(r, e), (_, req, err)| (r + req, e + err))
    }
}

/// One mount's counters, shared by the FUSE adapter, the store and the
/// status reporter.
pub struct Metrics {
    origin: Instant,
    fuse: [AtomicU64; FuseOp::NAMES.len()],
    store: [[AtomicU64; Outcome::NAMES.len()]; StoreOp::NAMES.len()],
    latency: [Histogram; StoreOp::NAMES.len()],
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    recent: Mutex<Recent>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            origin: Instant::now(),
            fuse: std::array::from_fn(|_| AtomicU64::new(0)),
            store: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| Histogram::new()),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            recent: Mutex::new(Recent::default()),
        }
    }

    /// The kernel sent request `op`.
    pub fn fuse(&self, op: FuseOp) {
        self.fuse[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A store request `op` ended with `outcome` after `took`.
    pub fn store(&self, op: StoreOp, outcome: Outcome, took: Duration) {
        self.store[op as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.latency[op as usize].observe(took);
        let sec = self.origin.elapsed().as_secs();
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(sec, outcome.is_error());
    }

    /// Bytes of object data that came from the store.
    pub fn read_bytes(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes of object data that went to the store.
    pub fn written_bytes(&self, n: u64) {
        self.bytes_written.fetch_add(n, Ordering::Relaxed);
    }

    /// Everything counted so far; only what is not zero is listed.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut fuse_ops = BTreeMap::new();
        for op in FuseOp::ALL {
            let n = self.fuse[*op as usize].load(Ordering::Relaxed);
            if n > 0 {
                fuse_ops.insert(op.name().to_string(), n);
            }
        }
        let mut store_requests = BTreeMap::new();
        let mut store_latency = BTreeMap::new();
        for op in StoreOp::ALL {
            let mut outcomes = BTreeMap::new();
            for outcome in Outcome::ALL {
                let n = self.store[*op as usize][*outcome as usize].load(Ordering::Relaxed);
                if n > 0 {
                    outcomes.insert(outcome.name().to_string(), n);
                }
            }
            if !outcomes.is_empty() {
                store_requests.insert(op.name().to_string(), outcomes);
                store_latency.insert(op.name().to_string(), self.latency[*op as usize].snapshot());
            }
        }
        let now = self.origin.elapsed().as_secs();
        let (requests, errors) = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .totals(now);
        MetricsSnapshot {
            fuse_ops,
            store_requests,
            store_latency,
            latency_bounds_us: LATENCY_BOUNDS_US.to_vec(),
            store_bytes_read: self.bytes_read.load(Ordering::Relaxed),
            store_bytes_written: self.bytes_written.load(Ordering::Relaxed),
            requests_last_minute: requests,
            errors_last_minute: errors,
        }
    }
}

/// A latency histogram as reported: `buckets[i]` requests took at most
/// `latency_bounds_us[i]` and more than the bound before it; the last one
/// took longer than every bound.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistogramSnapshot {
    pub count: u64,
    pub sum_us: u64,
    pub buckets: Vec<u64>,
}

/// What a mount has counted since it started, as its status file carries
/// it (every field defaults, so a file of an older mount reads as zeros).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MetricsSnapshot {
    /// Kernel requests by [`FuseOp`] name.
    pub fuse_ops: BTreeMap<String, u64>,
    /// Store requests by [`StoreOp`] name, then [`Outcome`] name.
    pub store_requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Store request latency by [`StoreOp`] name (all outcomes).
    pub store_latency: BTreeMap<String, HistogramSnapshot>,
    /// The bucket bounds of `store_latency`, in microseconds.
    pub latency_bounds_us: Vec<u64>,
    /// Object bytes received from the store (GET bodies).
    pub store_bytes_read: u64,
    /// Object bytes sent to the store (PUT and part bodies).
    pub store_bytes_written: u64,
    /// Store requests in the last minute.
    pub requests_last_minute: u64,
    /// Of those, the ones that failed (any outcome but ok and not_found).
    pub errors_last_minute: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_declaration_order() {
        for (i, op) in FuseOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
        }
        assert_eq!(FuseOp::Write.name(), "write");
        assert_eq!(StoreOp::Put.name(), "PutObject");
        assert_eq!(StoreOp::List.name(), "ListObjectsV2");
        assert_eq!(Outcome::PreconditionFailed.name(), "precondition_failed");
        assert_eq!(Outcome::ALL.len(), Outcome::NAMES.len());
    }

    #[test]
    fn outcomes_follow_the_store_errors_kinds() {
        let cases = [
            (StoreError::not_found("HeadObject", "k"), Outcome::NotFound),
            (
                StoreError::access_denied("PutObject", "k", "no"),
                Outcome::AccessDenied,
            ),
            (
                StoreError::precondition_failed("PutObject", "k", "412"),
                Outcome::PreconditionFailed,
            ),
            (
                StoreError::throttled("PutObject", "k", "SlowDown"),
                Outcome::Throttled,
            ),
            (
                StoreError::transient("PutObject", "k", "503"),
                Outcome::Transient,
            ),
            (
                StoreError::permanent("PutObject", "k", "NoSuchBucket"),
                Outcome::Permanent,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(Outcome::of_error(&e), want, "{e:?}");
        }
        assert!(!Outcome::Ok.is_error() && !Outcome::NotFound.is_error());
        assert!(Outcome::Throttled.is_error() && Outcome::AccessDenied.is_error());
    }

    #[test]
    fn latencies_land_in_the_first_bucket_that_holds_them() {
        let m = Metrics::new();
        let ms = Duration::from_millis;
        for took in [ms(1), ms(5), ms(6), ms(400), Duration::from_secs(31)] {
            m.store(StoreOp::Put, Outcome::Ok, took);
        }
        m.store(StoreOp::Put, Outcome::Transient, ms(20));
        m.store(StoreOp::Head, Outcome::NotFound, ms(2));
        let s = m.snapshot();
        let put = &s.store_latency["PutObject"];
        assert_eq!(put.count, 6);
        assert_eq!(
            put.sum_us,
            1_000 + 5_000 + 6_000 + 400_000 + 31_000_000 + 20_000
        );
        let mut want = vec![0; LATENCY_BOUNDS_US.len() + 1];
        want[0] = 2; // 1 ms and 5 ms: a bound is inclusive
        want[1] = 1; // 6 ms
        want[2] = 1; // 20 ms
        want[6] = 1; // 400 ms
        want[LATENCY_BOUNDS_US.len()] = 1; // 31 s: above every bound
        assert_eq!(put.buckets, want);
        assert_eq!(
            s.store_requests["PutObject"],
            BTreeMap::from([("ok".to_string(), 5), ("transient".to_string(), 1)])
        );
        assert_eq!(s.store_requests["HeadObject"]["not_found"], 1);
        assert!(
            !s.store_requests.contains_key("GetObject"),
            "zeros are left out"
        );
        assert_eq!(s.latency_bounds_us, LATENCY_BOUNDS_US);
        assert_eq!((s.requests_last_minute, s.errors_last_minute), (7, 1));
    }

    #[test]
    fn fuse_requests_and_bytes_are_counted() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.fuse(FuseOp::Write);
        }
        m.fuse(FuseOp::Lookup);
        m.read_bytes(10);
        m.read_bytes(5);
        m.written_bytes(7);
        let s = m.snapshot();
        assert_eq!(
            s.fuse_ops,
            BTreeMap::from([("lookup".to_string(), 1), ("write".to_string(), 3)])
        );
        assert_eq!((s.store_bytes_read, s.store_bytes_written), (15, 7));
    }

    #[test]
    fn the_last_minute_forgets_older_seconds() {
        let mut r = Recent::default();
        r.record(100, false);
        r.record(100, true);
        r.record(130, false);
        assert_eq!(r.totals(130), (3, 1));
        assert_eq!(
            r.totals(159),
            (3, 1),
            "second 100 is still within the minute"
        );
        assert_eq!(r.totals(160), (1, 0), "second 100 has left it");
        // Second 160 reuses second 100's slot.
        r.record(160, true);
        assert_eq!(r.totals(160), (2, 1));
        assert_eq!(r.totals(300), (0, 0));
        // A slot from the future (a clock that is never behind) is not counted.
        assert_eq!(r.totals(99), (0, 0));
    }

    #[test]
    fn a_snapshot_round_trips_and_old_files_read_as_zeros() {
        let m = Metrics::new();
        m.store(StoreOp::Get, Outcome::Ok, Duration::from_millis(3));
        m.fuse(FuseOp::Read);
        let s = m.snapshot();
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains("\"storeLatency\""), "{text}");
        assert_eq!(serde_json::from_str::<MetricsSnapshot>(&text).unwrap(), s);
        assert_eq!(
            serde_json::from_str::<MetricsSnapshot>("{}").unwrap(),
            MetricsSnapshot::default()
        );
    }
}
