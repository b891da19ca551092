//! Upload while writing: a file written only by appends from offset 0 has
//! its complete parts uploaded (one multipart upload) while it is still
//! being written, so the upload that makes it durable (fsync, sync close,
//! the background worker after the upload delay) sends only what is left,
//! the tail, and completes. The staged copy stays the source of truth and
//! nothing is marked clean before the upload completes: a write that is not
//! an append, a resize, a change of attributes or an unlink drops the
//! upload (its driver aborts it, best effort) and the file goes up whole as
//! before; a new key (rename) is caught when the upload is to complete.
//!
//! Pure decisions apart from I/O: [`after_write`] says what one write means
//! for a file's append run, [`Plan`] which parts go when and what is left
//! at the end. Around them: the hooks the operations call under the inode
//! table's lock (never waiting on the network), and the driver, one tokio
//! task per upload that owns it (parts in flight within the process-wide
//! upload memory budget of `transfer`).

use super::super::layout::{self, Posix};
use super::super::transfer::{
    PartRange, RetryPolicy, SINGLE_PUT_MAX, parallel_parts, part_size, retry, upload_file,
    upload_part_of,
};
use super::ObjectFs;
use super::inodes::InodeTable;
use crate::store::{MAX_PARTS, ObjectStore, PutMeta, StoreError, StoreResult};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A staged file's standing as a candidate for upload while writing.
#[derive(Default)]
pub(super) enum Stream {
    /// Not an append run: written elsewhere than at its end, resized,
    /// changed in its attributes, or holding content it was not written
    /// (fetched from the store). Its upload is the whole file.
    #[default]
    Off,
    /// Written only by appends from offset 0, `end` bytes so far, not past
    /// the single-PUT size yet.
    Appending { end: u64 },
    /// Still appends only, with a multipart upload of its complete parts
    /// going on.
    Active(Box<Active>),
}

impl Stream {
    fn phase(&self) -> Phase {
        match self {
            Stream::Off => Phase::Off,
            Stream::Appending { end } => Phase::Appending { end: *end },
            Stream::Active(a) => Phase::Active {
                end: a.end,
                part: a.part,
            },
        }
    }

    /// Ends the append run; an upload in progress is dropped (its driver
    /// aborts it).
    pub(super) fn stop(&mut self) {
        *self = Stream::Off;
    }

    /// The upload in progress, handed to the upload that is to complete
    /// it; the append run goes on (later appends start a new one).
    pub(super) fn take_active(&mut self) -> Option<Box<Active>> {
        match std::mem::take(self) {
            Stream::Active(a) => {
                *self = Stream::Appending { end: a.end };
                Some(a)
            }
            other => {
                *self = other;
                None
            }
        }
    }
}

/// What a file's append run is, as [`after_write`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Off,
    Appending { end: u64 },
    Active { end: u64, part: u64 },
}

/// What one write does to an append run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing to change.
    Stay,
    /// The run now ends at this offset.
    Extend(u64),
    /// The run now ends at this offset and is large enough: start its upload.
    Start(u64),
    /// The run is over (and its upload, if any).
    Stop,
}

/// What a write of `len` bytes at `offset`, to a file `size_before` bytes
/// long, does to an append run: a run starts with a write at 0 to an empty
/// file and lasts while every write lands exactly at its end; it starts
/// uploading once past [`SINGLE_PUT_MAX`], and stops when it would need
/// more than `MAX_PARTS` parts.
fn after_write(phase: Phase, offset: u64, len: u64, size_before: u64) -> Step {
    let (end, part) = match phase {
        Phase::Off if offset == 0 && size_before == 0 => (0, None),
        Phase::Off => return Step::Stay,
        Phase::Appending { end } => (end, None),
        Phase::Active { end, part } => (end, Some(part)),
    };
    if offset != end || size_before != end {
        return Step::Stop;
    }
    let new_end = end + len;
    match part {
        Some(part) if new_end > part * MAX_PARTS => Step::Stop,
        Some(_) => Step::Extend(new_end),
        None if new_end > SINGLE_PUT_MAX => Step::Start(new_end),
        None => Step::Extend(new_end),
    }
}

/// Which parts of a growing file go up when: while it is written, its
/// complete parts in order; once its final size is known, the parts that
/// failed meanwhile, then the rest, the shorter last one included. At most
/// `window` in flight.
#[derive(Debug)]
struct Plan {
    part: u64,
    window: usize,
    /// Bytes written so far (from offset 0, by appends).
    written: u64,
    /// The final size, once the upload is to complete.
    size: Option<u64>,
    /// The next part never started (1-based).
    next: i32,
    in_flight: usize,
    /// Parts uploaded, with their ETags.
    done: BTreeMap<i32, String>,
    /// Parts that failed while the file was written: they go again at the end.
    failed: BTreeSet<i32>,
}

impl Plan {
    fn new(part: u64, window: usize) -> Plan {
        Plan {
            part,
            window: window.max(1),
            written: 0,
            size: None,
            next: 1,
            in_flight: 0,
            done: BTreeMap::new(),
            failed: BTreeSet::new(),
        }
    }

    fn wrote(&mut self, end: u64) {
        self.written = self.written.max(end);
    }

    fn range(&self, number: i32, size: u64) -> PartRange {
        let offset = (number as u64 - 1) * self.part;
        PartRange {
            number,
            offset,
            len: self.part.min(size - offset),
        }
    }

    /// The parts that may start now (counted in flight).
    fn startable(&mut self) -> Vec<PartRange> {
        let mut out = Vec::new();
        while self.in_flight < self.window {
            let offset = (self.next as u64 - 1) * self.part;
            let range = match self.size {
                Some(size) => match self.failed.pop_first() {
                    Some(number) => self.range(number, size),
                    None if offset < size => {
                        self.next += 1;
                        self.range(self.next - 1, size)
                    }
                    None => break,
                },
                None if offset + self.part <= self.written && (self.next as u64) <= MAX_PARTS => {
                    self.next += 1;
                    self.range(self.next - 1, self.written)
                }
                None => break,
            };
            self.in_flight += 1;
            out.push(range);
        }
        out
    }

    /// A part is over: uploaded with this ETag, or failed (`None`: it goes
    /// again at the end).
    fn landed(&mut self, number: i32, etag: Option<String>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match etag {
            Some(etag) => drop(self.done.insert(number, etag)),
            None => drop(self.failed.insert(number)),
        }
    }

    /// The file is `size` bytes for good: from now on the plan leads to
    /// every part of it. An error says why the parts started so far cannot
    /// make that file.
    fn finish(&mut self, size: u64) -> Result<(), String> {
        if size == 0 || size.div_ceil(self.part) > MAX_PARTS {
            return Err(format!("{size} bytes do not fit this upload's parts"));
        }
        let started = (self.next as u64 - 1) * self.part;
        if started > size {
            return Err(format!(
                "the file ({size} bytes) no longer holds the {started} bytes uploaded"
            ));
        }
        self.written = size;
        self.size = Some(size);
        Ok(())
    }

    /// Every part of the final size has landed.
    fn is_complete(&self) -> bool {
        self.size
            .is_some_and(|s| self.in_flight == 0 && self.done.len() as u64 == s.div_ceil(self.part))
    }

    /// Every part's number and ETag, in order, for the completion.
    fn parts(&self) -> Vec<(i32, String)> {
        self.done.iter().map(|(n, e)| (*n, e.clone())).collect()
    }
}

/// What the writer tells a driver: how far the file is written, and, once
/// its upload is to complete, with which retry policy.
#[derive(Debug, Clone, Copy)]
struct Feed {
    written: u64,
    finish: Option<RetryPolicy>,
}

/// An upload in progress, held by the staged file it reads from; dropping
/// it makes the driver abort the upload.
pub(super) struct Active {
    end: u64,
    part: u64,
    /// The key and attributes the upload was created with.
    key: String,
    posix: Posix,
    feed: watch::Sender<Feed>,
    driver: JoinHandle<StoreResult<Option<String>>>,
}

impl Active {
    fn start(fs: &ObjectFs, key: String, posix: Posix, file: Arc<File>, end: u64) -> Active {
        let part = part_size(end);
        let (feed, rx) = watch::channel(Feed {
            written: end,
            finish: None,
        });
        let job = Job {
            store: fs.inner.store.clone(),
            file,
            key: key.clone(),
            meta: layout::encode(&posix),
            part,
        };
        tracing::debug!(key = %key, part, "uploading parts while the file is written");
        let driver = fs.inner.rt.spawn(drive(job, rx));
        Active {
            end,
            part,
            key,
            posix,
            feed,
            driver,
        }
    }

    fn extend(&mut self, end: u64) {
        self.end = end;
        self.feed.send_modify(|f| f.written = end);
    }

    /// Uploads what is left of the file's `size` bytes and completes.
    async fn finish(self, size: u64, policy: RetryPolicy) -> StoreResult<Option<String>> {
        self.feed.send_modify(|f| {
            f.written = size;
            f.finish = Some(policy);
        });
        let key = self.key.clone();
        let result = self.driver.await;
        drop(self.feed);
        result.map_err(|e| StoreError::permanent("upload", key, e.to_string()))?
    }
}

/// The same attributes but for the mtime, which every write moves.
fn same_attrs(a: &Posix, b: &Posix) -> bool {
    (a.kind, a.perm, a.uid, a.gid) == (b.kind, b.perm, b.uid, b.gid)
}

impl ObjectFs {
    /// Whether a background upload of `ino` should not run yet: its upload
    /// while writing is going on and the file is still open, so more
    /// appends may come (a shell's redirect closes a first descriptor
    /// before the data). Completing now would publish part of the file
    /// and start over from part 1; the close that ends the writes queues
    /// the upload again (flush, release), and unmount does not wait.
    pub(super) fn stream_defers(&self, st: &InodeTable, ino: u64) -> bool {
        st.nodes.get(&ino).is_some_and(|n| {
            n.open_handles > 0
                && n.staged
                    .as_ref()
                    .is_some_and(|s| matches!(s.stream, Stream::Active(_)))
        })
    }

    /// After `len` bytes were written at `offset` of `ino`, whose content
    /// was `size_before` bytes long: extends its append run, starts the
    /// run's upload, or ends it. Never waits.
    pub(super) fn stream_after_write(
        &self,
        st: &mut InodeTable,
        ino: u64,
        offset: u64,
        len: u64,
        size_before: u64,
    ) {
        let Some(n) = st.nodes.get(&ino) else { return };
        let Some(s) = n.staged.as_ref() else { return };
        let mut step = after_write(s.stream.phase(), offset, len, size_before);
        let unlinked = n.unlinked;
        let posix = n.posix();
        let key = match (&s.stream, step) {
            (Stream::Active(_), Step::Extend(_)) | (_, Step::Start(_)) => self.key_of(st, ino),
            _ => String::new(),
        };
        if let (Stream::Active(a), Step::Extend(_)) = (&s.stream, step)
            && (a.key != key || !same_attrs(&a.posix, &posix))
        {
            // Renamed, or chown'd by a path that did not stop it.
            step = Step::Stop;
        }
        if unlinked && step != Step::Stay {
            step = Step::Stop;
        }
        let Some(s) = st.nodes.get_mut(&ino).and_then(|n| n.staged.as_mut()) else {
            return;
        };
        match (step, &mut s.stream) {
            (Step::Stay, _) => {}
            (Step::Stop, stream) => stream.stop(),
            (Step::Extend(end), Stream::Active(a)) => a.extend(end),
            (Step::Extend(end), stream) => *stream = Stream::Appending { end },
            (Step::Start(end), stream) => {
                let active = Active::start(self, key, posix, s.file.clone(), end);
                *stream = Stream::Active(Box::new(active));
            }
        }
    }
}

/// Uploads the first `size` bytes of `file` to `key`: by completing
/// `stream`, the upload begun while the file was written, when it was
/// begun at this key with these attributes; else, or when completing it
/// fails for a reason other than the store being unreachable, as a whole
/// (`transfer::upload_file`). Returns the new object's ETag when known.
#[allow(clippy::too_many_arguments)]
pub(super) async fn upload(
    store: &Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    key: &str,
    file: Arc<File>,
    size: u64,
    meta: &PutMeta,
    posix: &Posix,
    stream: Option<Box<Active>>,
) -> StoreResult<Option<String>> {
    if let Some(active) = stream
        && active.key == key
        && same_attrs(&active.posix, posix)
    {
        match active.finish(size, policy).await {
            Ok(etag) => return Ok(etag),
            // The whole file would wait out the same outage: the data
            // stays staged and the next attempt uploads it whole.
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::info!(key, error = %e, "the upload begun while writing failed; uploading the whole file")
            }
        }
    }
    upload_file(store, policy, key, file, size, meta).await
}

/// What a driver needs to upload one file.
struct Job {
    store: Arc<dyn ObjectStore>,
    file: Arc<File>,
    key: String,
    meta: PutMeta,
    part: u64,
}

/// The part uploads of one driver, each with its number and whether it was
/// started for the finish (with the caller's policy; its failure is final).
struct Parts {
    tasks: JoinSet<StoreResult<String>>,
    started: HashMap<tokio::task::Id, (i32, bool)>,
}

impl Parts {
    fn spawn(
        &mut self,
        job: &Job,
        upload_id: &str,
        policy: RetryPolicy,
        range: PartRange,
        last: bool,
    ) {
        let (store, file) = (job.store.clone(), job.file.clone());
        let (key, id) = (job.key.clone(), upload_id.to_string());
        let task = self
            .tasks
            .spawn(async move { upload_part_of(&store, policy, &key, &id, file, range).await });
        self.started.insert(task.id(), (range.number, last));
    }

    /// Waits for the next part to end and records it in `plan`; a part
    /// started for the finish that failed is the error. `None` when no
    /// part is in flight.
    async fn next(&mut self, plan: &mut Plan, key: &str) -> Option<StoreResult<()>> {
        let joined = self.tasks.join_next_with_id().await?;
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(e) => (
                e.id(),
                Err(StoreError::permanent("upload", key, e.to_string())),
            ),
        };
        let (number, last) = self.started.remove(&id)?;
        match result {
            Ok(etag) => plan.landed(number, Some(etag)),
            Err(e) if last => return Some(Err(e)),
            Err(e) => {
                tracing::debug!(key, error = %e, "a part failed while writing; it goes again at the end");
                plan.landed(number, None);
            }
        }
        Some(Ok(()))
    }
}

/// Owns one multipart upload: creates it, uploads complete parts as the
/// feed says they are written (retried as an interactive call; a part
/// that still fails goes again at the end), and at the finish uploads the
/// rest with the caller's policy, keeping the parts in flight, and
/// completes. When the feed is dropped before the finish, aborts the
/// upload. Errors while the file is written are not final: what failed is
/// tried again at the finish.
async fn drive(job: Job, mut feed: watch::Receiver<Feed>) -> StoreResult<Option<String>> {
    let key = job.key.clone();
    let mut plan = Plan::new(job.part, parallel_parts(job.part));
    let created = retry(RetryPolicy::INTERACTIVE, "create multipart", || {
        job.store.create_multipart(&key, &job.meta)
    })
    .await;
    let upload_id = created
        .inspect_err(
            |e| tracing::debug!(key = %key, error = %e, "starting the upload early failed"),
        )
        .ok();
    let mut parts = Parts {
        tasks: JoinSet::new(),
        started: HashMap::new(),
    };
    let finish = loop {
        let now = *feed.borrow_and_update();
        if let Some(policy) = now.finish {
            break Some((now.written, policy));
        }
        plan.wrote(now.written);
        if let Some(id) = &upload_id {
            for range in plan.startable() {
                parts.spawn(&job, id, RetryPolicy::INTERACTIVE, range, false);
            }
        }
        tokio::select! {
            changed = feed.changed() => {
                if changed.is_err() && feed.borrow().finish.is_none() {
                    break None;
                }
            }
            Some(_) = parts.next(&mut plan, &key), if !parts.tasks.is_empty() => {}
        }
    };
    let Some((size, policy)) = finish else {
        // Dropped: the file changed other than by appends, or is gone.
        drop(parts);
        if let Some(id) = upload_id {
            let _ = job.store.abort_multipart(&key, &id).await;
        }
        tracing::debug!(key = %key, "upload begun while writing dropped");
        return Err(StoreError::permanent("upload", key, "dropped"));
    };
    let id = match upload_id {
        Some(id) => id,
        None => {
            retry(policy, "create multipart", || {
                job.store.create_multipart(&key, &job.meta)
            })
            .await?
        }
    };
    let result = complete(&job, policy, &id, &mut plan, parts, size).await;
    if result.is_err() {
        let _ = job.store.abort_multipart(&key, &id).await;
    }
    result
}

/// Uploads the parts not landed yet, keeping the window full, and
/// completes the upload.
async fn complete(
    job: &Job,
    policy: RetryPolicy,
    upload_id: &str,
    plan: &mut Plan,
    mut parts: Parts,
    size: u64,
) -> StoreResult<Option<String>> {
    let key = job.key.as_str();
    plan.finish(size)
        .map_err(|m| StoreError::permanent("upload", key, m))?;
    loop {
        for range in plan.startable() {
            parts.spawn(job, upload_id, policy, range, true);
        }
        match parts.next(plan, key).await {
            Some(landed) => landed?,
            None => break,
        }
    }
    if !plan.is_complete() {
        return Err(StoreError::permanent("upload", key, "parts are missing"));
    }
    let list = plan.parts();
    retry(policy, "complete multipart", || {
        job.store.complete_multipart(key, upload_id, list.clone())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    const MIB: u64 = 1 << 20;

    #[test]
    fn an_append_run_starts_at_zero_and_lasts_while_writes_land_at_its_end() {
        use Step::*;
        assert_eq!(after_write(Phase::Off, 0, 10, 0), Extend(10));
        assert_eq!(after_write(Phase::Off, 5, 10, 5), Stay);
        assert_eq!(after_write(Phase::Off, 0, 10, 20), Stay);
        let run = Phase::Appending { end: 10 };
        assert_eq!(after_write(run, 10, 5, 10), Extend(15));
        assert_eq!(after_write(run, 0, 5, 10), Stop, "an overwrite");
        assert_eq!(after_write(run, 20, 5, 10), Stop, "a hole");
        assert_eq!(after_write(run, 10, 5, 12), Stop, "grown otherwise");
        let at = Phase::Appending {
            end: SINGLE_PUT_MAX,
        };
        assert_eq!(
            after_write(at, SINGLE_PUT_MAX, 0, SINGLE_PUT_MAX),
            Extend(SINGLE_PUT_MAX)
        );
        assert_eq!(
            after_write(at, SINGLE_PUT_MAX, 1, SINGLE_PUT_MAX),
            Start(SINGLE_PUT_MAX + 1)
        );
        assert_eq!(after_write(Phase::Off, 0, 20 * MIB, 0), Start(20 * MIB));
        let active = Phase::Active {
            end: 20 * MIB,
            part: 8 * MIB,
        };
        assert_eq!(
            after_write(active, 20 * MIB, MIB, 20 * MIB),
            Extend(21 * MIB)
        );
        assert_eq!(after_write(active, 8 * MIB, MIB, 20 * MIB), Stop);
        let full = Phase::Active {
            end: 8 * MIB * MAX_PARTS,
            part: 8 * MIB,
        };
        let end = 8 * MIB * MAX_PARTS;
        assert_eq!(after_write(full, end, 1, end), Stop, "10,001 parts");
    }

    fn range(number: i32, offset: u64, len: u64) -> PartRange {
        PartRange {
            number,
            offset,
            len,
        }
    }

    #[test]
    fn complete_parts_go_in_order_within_the_window() {
        let mut p = Plan::new(8, 2);
        p.wrote(7);
        assert!(p.startable().is_empty(), "no complete part yet");
        p.wrote(30);
        assert_eq!(p.startable(), [range(1, 0, 8), range(2, 8, 8)]);
        assert!(p.startable().is_empty(), "the window is full");
        p.landed(1, Some("e1".into()));
        assert_eq!(p.startable(), [range(3, 16, 8)]);
        assert!(p.startable().is_empty(), "part 4 is not complete");
        p.landed(2, None);
        assert!(p.startable().is_empty(), "a failed part waits for the end");
        p.landed(3, Some("e3".into()));
        assert!(!p.is_complete());
        p.finish(30).unwrap();
        // At the end: part 2 again, then the shorter last part.
        assert_eq!(p.startable(), [range(2, 8, 8), range(4, 24, 6)]);
        assert!(p.startable().is_empty());
        p.landed(4, Some("e4".into()));
        assert!(!p.is_complete(), "part 2 in flight");
        p.landed(2, Some("e2".into()));
        assert!(p.startable().is_empty());
        assert!(p.is_complete());
        let etags: Vec<(i32, String)> = (1..=4).map(|n| (n, format!("e{n}"))).collect();
        assert_eq!(p.parts(), etags);
    }

    #[test]
    fn the_final_size_must_hold_the_parts_started() {
        let mut p = Plan::new(8, 4);
        p.wrote(24);
        assert_eq!(p.startable().len(), 3);
        assert!(p.finish(20).is_err(), "part 3 is past a 20-byte file");
        assert!(p.finish(0).is_err());
        p.finish(24).unwrap();
        assert!(p.startable().is_empty(), "exactly three parts, all started");
        for n in 1..=3 {
            p.landed(n, Some(String::new()));
        }
        assert!(p.is_complete());
        let mut big = Plan::new(8, 4);
        assert!(big.finish(8 * MAX_PARTS).is_ok());
        assert!(Plan::new(8, 4).finish(8 * MAX_PARTS + 1).is_err());
    }

    #[test]
    fn taking_the_upload_keeps_the_append_run() {
        let mut s = Stream::Appending { end: 5 };
        assert!(s.take_active().is_none());
        assert_eq!(s.phase(), Phase::Appending { end: 5 });
        s.stop();
        assert_eq!(s.phase(), Phase::Off);
    }

    fn fast_store() -> (Arc<MemoryStore>, Arc<dyn ObjectStore>) {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        (mem, store)
    }

    fn job(store: &Arc<dyn ObjectStore>, file: &Arc<File>) -> Job {
        Job {
            store: store.clone(),
            file: file.clone(),
            key: "k".into(),
            meta: PutMeta::default(),
            part: 8 * MIB,
        }
    }

    async fn until(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..3000 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_driver_uploads_complete_parts_then_the_tail() {
        let (mem, store) = fast_store();
        let data: Vec<u8> = (0..(20 * MIB + 123)).map(|i| (i % 253) as u8).collect();
        let file = Arc::new(tempfile::tempfile().unwrap());
        file.write_all_at(&data[..(17 * MIB) as usize], 0).unwrap();
        let (tx, rx) = watch::channel(Feed {
            written: 17 * MIB,
            finish: None,
        });
        let driver = tokio::spawn(drive(job(&store, &file), rx));
        until("two parts", || {
            mem.counters.parts.load(Ordering::Relaxed) == 2
        })
        .await;
        file.write_all_at(&data[(17 * MIB) as usize..], 17 * MIB)
            .unwrap();
        tx.send_modify(|f| {
            f.written = data.len() as u64;
            f.finish = Some(RetryPolicy::INTERACTIVE);
        });
        let etag = driver.await.unwrap().unwrap();
        assert!(etag.is_some());
        assert_eq!(mem.object("k").unwrap(), data);
        assert_eq!(mem.counters.parts.load(Ordering::Relaxed), 3);
        assert_eq!(mem.counters.puts.load(Ordering::Relaxed), 0);
        assert_eq!(mem.open_uploads(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_feed_aborts_the_upload() {
        let (mem, store) = fast_store();
        let file = Arc::new(tempfile::tempfile().unwrap());
        file.write_all_at(&vec![7u8; (24 * MIB) as usize], 0)
            .unwrap();
        let (tx, rx) = watch::channel(Feed {
            written: 24 * MIB,
            finish: None,
        });
        let driver = tokio::spawn(drive(job(&store, &file), rx));
        until("a part", || mem.counters.parts.load(Ordering::Relaxed) >= 1).await;
        drop(tx);
        assert!(driver.await.unwrap().is_err());
        assert_eq!(mem.open_uploads(), 0);
        assert_eq!(mem.object("k"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_start_is_made_good_at_the_finish() {
        let (mem, store) = fast_store();
        let data = vec![3u8; (17 * MIB) as usize];
        let file = Arc::new(tempfile::tempfile().unwrap());
        file.write_all_at(&data, 0).unwrap();
        mem.fail_next(1, StoreError::permanent("CreateMultipartUpload", "k", "no"));
        let (tx, rx) = watch::channel(Feed {
            written: 17 * MIB,
            finish: None,
        });
        let driver = tokio::spawn(drive(job(&store, &file), rx));
        tokio::task::yield_now().await;
        tx.send_modify(|f| f.finish = Some(RetryPolicy::INTERACTIVE));
        driver.await.unwrap().unwrap();
        assert_eq!(mem.object("k").unwrap(), data);
    }
}
