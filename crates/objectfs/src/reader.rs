//! Reads of objects that are not staged locally.
//!
//! A small or random read fetches exactly the bytes asked for. Once reads
//! run sequentially, the reader switches to fixed-size chunks fetched with
//! parallel ranged GETs ahead of the reader, doubling the window on every
//! sequential read up to [`MAX_WINDOW`] chunks. The kernel's read-ahead
//! sends its reads concurrently, so they arrive out of order: once a run
//! has [`LATE_AFTER`] reads ahead, a read up to [`REORDER`] behind the
//! furthest one (and not that far before the run began) continues the run
//! without widening the window, and the chunks of the last [`REORDER`]
//! bytes stay for such late reads. Memory per open file is thus bounded by
//! `MAX_WINDOW * CHUNK` ahead (64 MiB) plus at most three chunks behind.
//!
//! An open file reads one version of its object ([`Reader::pin`]): bytes
//! that come from another (the object rewritten or replaced meanwhile) fail
//! the read with [`StoreError::PreconditionFailed`] instead of being mixed
//! with the version read so far. The mount's own copies of the object (a
//! rename, a metadata rewrite) keep its bytes but may give it a new ETag,
//! which the open file then reads by.

use crate::store::{ObjectStore, Segments, StoreError, StoreResult};
use crate::transfer::{RetryPolicy, retry};
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

pub const CHUNK: u64 = 4 * 1024 * 1024;
pub const MAX_WINDOW: u64 = 16;
/// Reads this close to the previous one count as sequential.
const NEAR: u64 = 1024 * 1024;
/// Once a run is under way, a read this far behind the furthest read is
/// one the kernel sent earlier that arrived late, not a jump back; the
/// chunks of this much behind the furthest read are kept for it.
const REORDER: u64 = 2 * CHUNK;
/// Reads ahead it takes before a run has late reads: a pair of reads close
/// together (a database reading neighbouring pages) is not yet one.
const LATE_AFTER: u32 = 3;

enum Chunk {
    Pending(JoinHandle<StoreResult<Segments>>),
    Ready(Segments),
}

#[derive(Default)]
pub struct Reader {
    /// Whether any read happened yet (a first read is never sequential).
    streak_started: bool,
    next_offset: u64,
    /// Where the current sequential run began.
    run_start: u64,
    streak: u32,
    chunks: BTreeMap<u64, Chunk>,
    /// The ETag of the version this open file reads, and the node's count
    /// of content changes it was read at.
    version: Option<Arc<str>>,
    content: Option<u64>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        for chunk in self.chunks.values() {
            if let Chunk::Pending(task) = chunk {
                task.abort();
            }
        }
    }
}

/// Bytes of `key` from `start`, failing when they are not of `version`.
async fn fetch(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    (start, len): (u64, u64),
    version: Option<&str>,
) -> StoreResult<Segments> {
    let (data, etag) = store.get_range_tagged(key, start, len).await?;
    match (version, etag) {
        (Some(want), Some(got)) if want != got => Err(StoreError::precondition_failed(
            "GetObject",
            key,
            "the object was replaced while the file was open",
        )),
        _ => Ok(data),
    }
}

impl Reader {
    /// The version this open file reads: the object with `etag` at the
    /// node's `content` count of content changes, from its first read on.
    /// Later calls at the same count (the mount copied the object and
    /// gave it a new ETag, the bytes unchanged) take their ETag; at another
    /// count they change nothing. Says whether the ETag read by changed.
    pub fn pin(&mut self, content: u64, etag: Option<&str>) -> bool {
        if self.content.is_some_and(|c| c != content) {
            return false;
        }
        self.content = Some(content);
        match etag {
            Some(etag) if self.version.as_deref() != Some(etag) => {
                // Chunks still in flight ask for the ETag read by so far
                // (the bytes of those here are the same).
                if self.version.is_some() {
                    self.chunks.retain(|_, chunk| match chunk {
                        Chunk::Ready(_) => true,
                        Chunk::Pending(task) => {
                            task.abort();
                            false
                        }
                    });
                }
                self.version = Some(Arc::from(etag));
                true
            }
            _ => false,
        }
    }

    /// The node's count of content changes this open file reads at, once
    /// it has read from the store.
    pub fn content(&self) -> Option<u64> {
        self.content
    }

    /// Reads `[offset, offset+len)` of `key`, an object of `size` bytes.
    pub fn read(
        &mut self,
        rt: &Handle,
        store: &Arc<dyn ObjectStore>,
        key: &str,
        size: u64,
        offset: u64,
        len: u64,
    ) -> StoreResult<Bytes> {
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + len).min(size);
        // The kernel's own read-ahead issues its reads out of order: a read
        // near the last one, inside a chunk already fetched or in flight, or
        // (once a run is under way) up to REORDER behind the furthest read
        // and not that far before the run began continues the run instead
        // of resetting it (which would throw away, and fetch again, what is
        // already here). Only reads ahead widen the window.
        let near = self.streak_started && offset.abs_diff(self.next_offset) <= NEAR;
        self.streak_started = true;
        let in_window = self.chunks.contains_key(&(offset / CHUNK));
        let ahead = offset != 0 && (near || in_window);
        let late = self.streak >= LATE_AFTER
            && offset + REORDER >= self.run_start
            && offset < self.next_offset
            && self.next_offset - offset <= REORDER;
        self.next_offset = self.next_offset.max(end);
        if !ahead && !late {
            self.run_start = offset;
            self.next_offset = end;
            self.streak = 0;
            self.chunks.clear();
            let version = self.version.as_deref();
            let data = rt.block_on(retry(RetryPolicy::INTERACTIVE, "read", || {
                fetch(store, key, (offset, end - offset), version)
            }))?;
            return Ok(data.slice(0, data.len()));
        }
        if ahead {
            self.streak = self.streak.saturating_add(1);
        }
        let first = offset / CHUNK;
        let last = (end - 1) / CHUNK;
        let window = (1u64 << self.streak.min(6)).min(MAX_WINDOW);
        let last_chunk = (size - 1) / CHUNK;
        // Chunks well behind the furthest read are done with.
        let keep_from = self.next_offset.saturating_sub(REORDER) / CHUNK;
        self.chunks.retain(|&i, _| i >= first.min(keep_from));
        for i in first..=(last + window).min(last_chunk) {
            self.chunks.entry(i).or_insert_with(|| {
                let (store, key) = (store.clone(), key.to_string());
                let version = self.version.clone();
                let start = i * CHUNK;
                let len = CHUNK.min(size - start);
                Chunk::Pending(rt.spawn(async move {
                    retry(RetryPolicy::INTERACTIVE, "read ahead", || {
                        fetch(&store, &key, (start, len), version.as_deref())
                    })
                    .await
                }))
            });
        }
        // Within one chunk (the common case: the kernel's reads are aligned
        // and far smaller than a chunk) the reply is a slice of the buffers
        // the chunk arrived in, copied only where it spans two of them.
        if first == last {
            let base = first * CHUNK;
            let data = self.ready(rt, first)?;
            return Ok(data.slice((offset - base) as usize, (end - base) as usize));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for i in first..=last {
            let chunk_start = i * CHUNK;
            let data = self.ready(rt, i)?;
            let from = (offset.max(chunk_start) - chunk_start) as usize;
            let to = (end.min(chunk_start + CHUNK) - chunk_start) as usize;
            if from >= data.len() {
                break; // the object is shorter than it was said to be
            }
            data.copy_into(from, to, &mut out);
        }
        Ok(out.freeze())
    }

    /// Chunk `i`, waited for if still in flight. A chunk that failed is
    /// forgotten, so the next read asks for it again.
    fn ready(&mut self, rt: &Handle, i: u64) -> StoreResult<&Segments> {
        let slot = self.chunks.get_mut(&i).expect("chunk was scheduled");
        if let Chunk::Pending(task) = slot {
            let fetched = rt
                .block_on(task)
                .map_err(|e| StoreError::transient("read", "", format!("read task failed: {e}")))
                .and_then(|r| r);
            match fetched {
                Ok(data) => *slot = Chunk::Ready(data),
                Err(e) => {
                    self.chunks.remove(&i);
                    return Err(e);
                }
            }
        }
        match self.chunks.get(&i) {
            Some(Chunk::Ready(data)) => Ok(data),
            _ => unreachable!("chunk {i} was just made ready"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PutMeta;
    use crate::store::memory::MemoryStore;
    use std::sync::atomic::Ordering;

    /// The first pin sets the version; one at the same content count takes
    /// a new ETag (the mount's own copy), one at another count does not.
    #[test]
    fn a_pin_follows_own_copies_but_not_other_content() {
        let mut r = Reader::default();
        assert!(r.pin(3, Some("e1")));
        assert!(!r.pin(3, Some("e1")));
        assert!(!r.pin(3, None));
        assert!(r.pin(3, Some("e2")));
        assert!(!r.pin(4, Some("e3")));
        assert_eq!(r.version.as_deref(), Some("e2"));
        assert!(!r.pin(3, Some("e2")));
    }

    /// A new ETag taken at the same count drops the chunks still in flight
    /// (they ask for the old one, which the store no longer answers) and
    /// keeps those here (the same bytes).
    #[test]
    fn a_new_etag_drops_the_chunks_in_flight_and_keeps_the_ready_ones() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut r = Reader::default();
        r.pin(0, Some("e1"));
        let ready = Segments::new(vec![Bytes::from_static(b"x")]);
        r.chunks.insert(0, Chunk::Ready(ready));
        let never = rt.spawn(std::future::pending::<StoreResult<Segments>>());
        r.chunks.insert(1, Chunk::Pending(never));
        assert!(r.pin(0, Some("e2")));
        assert_eq!(r.chunks.keys().copied().collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn sequential_reads_prefetch_and_random_reads_fetch_only_what_they_need() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mem = Arc::new(MemoryStore::new());
        let data: Vec<u8> = (0..(3 * CHUNK + 1000)).map(|i| (i % 241) as u8).collect();
        mem.insert("k", data.clone(), PutMeta::default());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let size = data.len() as u64;

        let mut r = Reader::default();
        let got = r.read(rt.handle(), &store, "k", size, 5000, 4096).unwrap();
        assert_eq!(&got[..], &data[5000..9096]);
        assert_eq!(mem.counters.bytes_read.load(Ordering::Relaxed), 4096);

        // Sequential from the start: whole file, 128 KiB at a time.
        let mut r = Reader::default();
        let mut off = 0;
        let mut back = Vec::new();
        while off < size {
            let b = r
                .read(rt.handle(), &store, "k", size, off, 128 * 1024)
                .unwrap();
            assert!(!b.is_empty());
            off += b.len() as u64;
            back.extend_from_slice(&b);
        }
        assert_eq!(back, data);
        assert!(
            r.read(rt.handle(), &store, "k", size, size, 10)
                .unwrap()
                .is_empty()
        );
    }

    /// Reads `step` bytes at each of `offsets` of a `chunks`-chunk object,
    /// checking every reply; returns the bytes fetched from the store.
    fn read_in_order(chunks: u64, step: u64, offsets: Vec<u64>) -> u64 {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mem = Arc::new(MemoryStore::new());
        let data: Vec<u8> = (0..(chunks * CHUNK)).map(|i| (i % 239) as u8).collect();
        mem.insert("k", data.clone(), PutMeta::default());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let size = data.len() as u64;
        let mut r = Reader::default();
        for off in offsets {
            let b = r.read(rt.handle(), &store, "k", size, off, step).unwrap();
            assert_eq!(&b[..], &data[off as usize..(off + step) as usize]);
        }
        mem.counters.bytes_read.load(Ordering::Relaxed)
    }

    #[test]
    fn slightly_out_of_order_reads_fetch_each_byte_once() {
        let (size, step) = (8 * CHUNK, 128 * 1024);
        // Pairs of 128 KiB reads swapped, as the kernel's read-ahead does.
        let mut offsets: Vec<u64> = (0..size / step).map(|i| i * step).collect();
        for pair in offsets.chunks_mut(2) {
            pair.reverse();
        }
        let fetched = read_in_order(8, step, offsets);
        assert!(fetched <= size + 2 * step, "fetched {fetched} of {size}");
    }

    /// 1 MiB reads as the kernel sends them with a 4 MiB read-ahead: some
    /// arrive up to 6 MiB behind the furthest one.
    #[test]
    fn late_reads_of_a_large_read_ahead_fetch_each_byte_once() {
        let (size, step) = (32 * CHUNK, 1024 * 1024);
        let mut offsets: Vec<u64> = (0..size / step).map(|i| i * step).collect();
        // Within every group of eight, the first two come last.
        for group in offsets.chunks_mut(8) {
            group.rotate_left(2);
        }
        let fetched = read_in_order(32, step, offsets);
        assert!(fetched <= size + 2 * step, "fetched {fetched} of {size}");
    }

    /// Reads that jump around never start a run, however close together:
    /// each fetches only its own bytes.
    #[test]
    fn random_reads_never_prefetch() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mem = Arc::new(MemoryStore::new());
        let data: Vec<u8> = (0..(8 * CHUNK)).map(|i| (i % 229) as u8).collect();
        mem.insert("k", data.clone(), PutMeta::default());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let size = data.len() as u64;
        let mut r = Reader::default();
        let offsets = [
            10 * CHUNK / 4,
            2 * CHUNK,
            7 * CHUNK / 2,
            CHUNK / 3,
            5 * CHUNK,
        ];
        for off in offsets {
            let b = r.read(rt.handle(), &store, "k", size, off, 4096).unwrap();
            assert_eq!(&b[..], &data[off as usize..off as usize + 4096]);
        }
        let fetched = mem.counters.bytes_read.load(Ordering::Relaxed);
        assert_eq!(fetched, 5 * 4096);
    }

    /// Two reads close together, then jumps back before them (a database
    /// probing pages): the jumps are not late reads of a run, and fetch
    /// only their own bytes.
    #[test]
    fn jumps_back_before_a_run_fetch_only_their_bytes() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mem = Arc::new(MemoryStore::new());
        let data: Vec<u8> = (0..(16 * CHUNK)).map(|i| (i % 227) as u8).collect();
        mem.insert("k", data.clone(), PutMeta::default());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let size = data.len() as u64;
        let mut r = Reader::default();
        let base = 10 * CHUNK;
        for off in [base, base + 65536] {
            r.read(rt.handle(), &store, "k", size, off, 4096).unwrap();
        }
        assert!(!r.chunks.is_empty(), "the pair fetches ahead");
        for off in [base - CHUNK / 2, base - 3 * CHUNK / 4, base - CHUNK] {
            let b = r.read(rt.handle(), &store, "k", size, off, 4096).unwrap();
            assert_eq!(&b[..], &data[off as usize..off as usize + 4096]);
            // (What the pair fetched ahead may still land in the store's
            // counters: nothing is scheduled, and nothing kept, after each.)
            assert!(r.chunks.is_empty(), "a chunk scheduled at {off}");
        }
    }

    #[test]
    fn transient_failures_are_retried() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mem = Arc::new(MemoryStore::new());
        mem.insert("k", vec![7u8; 100], PutMeta::default());
        mem.fail_next(2, StoreError::transient("GetObject", "k", "reset"));
        let store: Arc<dyn ObjectStore> = mem.clone();
        let mut r = Reader::default();
        assert_eq!(
            r.read(rt.handle(), &store, "k", 100, 10, 5).unwrap().len(),
            5
        );
    }
}
