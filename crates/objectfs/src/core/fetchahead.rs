//! Small files fetched ahead of a reader walking a directory. `diff -r`,
//! `grep -r`, `git add` or `tar c` on a new mount open a directory's files
//! one after another in name order, and each waits for the GET of its
//! whole object. When one process opens two files of one directory one
//! after the other, next to each other in name order, the small files among the next
//! [`AHEAD_FILES`] of that directory are fetched into the cache in the
//! background, [`AHEAD_IN_FLIGHT`] at a time for the whole mount, and the
//! window moves on with the reader. An open of a file being fetched so
//! waits for it (one GET either way, [`AHEAD_WAIT`] at most); one still
//! queued is taken out and read as usual.
//!
//! Speculation never costs what is there: a file is fetched ahead only
//! while it fits in the cache bound without evicting anything, its copy is
//! the first to go when space is needed until a reader takes it, and it is
//! kept only when the GET read the object the node knows (same ETag and
//! size). [`Walks`] is the plain bookkeeping of which directories are being
//! walked; the fetching is `ObjectFs`'s.

use super::super::layout::Kind;
use super::super::staging::CacheTag;
use super::super::transfer::{DownloadError, RetryPolicy, download_to_file};
use super::ObjectFs;
use super::inodes::InodeTable;
use crate::store::ObjectMeta;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

/// Files fetched ahead of a walk's reader, at most.
pub(super) const AHEAD_FILES: usize = 32;
/// Only files up to this size are fetched ahead.
pub(super) const AHEAD_FILE_MAX: u64 = 1024 * 1024;
/// Only files up to this size are got whole instead of their metadata
/// (the bodies of a listing's 32 requests in flight are in memory).
const NEAR_WALK_FILE_MAX: u64 = 256 * 1024;
/// Fetches ahead under way at once, in the whole mount.
const AHEAD_IN_FLIGHT: usize = 16;
/// Two opens further apart than this are not one walk.
const WALK_GAP: Duration = Duration::from_secs(2);
/// A walk's name order is read from the table again after this long.
const ORDER_MAX_AGE: Duration = Duration::from_secs(10);
/// Directories whose walks are followed at once, at most.
const WALKS_MAX: usize = 64;
/// Steps a walk takes before directories near it have their small files
/// fetched whole instead of their metadata ([`Walks::walking_near`]).
const NEAR_STEPS: u32 = 3;
/// An open waits this long at most for its file's fetch ahead.
const AHEAD_WAIT: Duration = Duration::from_secs(5);

/// One directory's walk: the last file opened in it and when, and (once a
/// walk is seen) its files in name order and how far into them fetches
/// have been queued.
struct Walk {
    /// The walked directory's own parent.
    parent: u64,
    last: String,
    at: Instant,
    order: Vec<String>,
    order_at: Option<Instant>,
    /// Index in `order` past the last name queued.
    queued_end: usize,
    /// Opens in a row so far, each of the file next to the one before.
    steps: u32,
}

/// The directories being walked, by directory and reader (the process
/// that opens; plain data).
#[derive(Default)]
pub(super) struct Walks {
    dirs: HashMap<(u64, u32), Walk>,
}

impl Walks {
    /// File `name` of directory `parent` is opened for reading at `now` by
    /// `reader`. Returns the names to fetch ahead: none unless the file
    /// `reader` opened before it in `parent`, within [`WALK_GAP`], is the one just before it in
    /// name order; then those after it not queued yet, up to
    /// [`AHEAD_FILES`] beyond it, once fewer than half that are queued.
    /// `files` gives the directory's file names in name order, asked once
    /// per walk.
    pub(super) fn open(
        &mut self,
        (parent, grandparent): (u64, u64),
        reader: u32,
        name: String,
        now: Instant,
        files: impl FnOnce() -> Vec<String>,
    ) -> Vec<String> {
        if !self.dirs.contains_key(&(parent, reader)) && self.dirs.len() >= WALKS_MAX {
            self.dirs
                .retain(|_, w| now.saturating_duration_since(w.at) <= WALK_GAP);
            if self.dirs.len() >= WALKS_MAX {
                self.dirs.clear();
            }
        }
        let w = self.dirs.entry((parent, reader)).or_insert_with(|| Walk {
            parent: grandparent,
            last: String::new(),
            at: now,
            order: Vec::new(),
            order_at: None,
            queued_end: 0,
            steps: 0,
        });
        let prev = std::mem::replace(&mut w.last, name);
        let name = w.last.as_str();
        let gap = now.saturating_duration_since(w.at);
        w.at = now;
        let steps = std::mem::take(&mut w.steps);
        if prev.is_empty() || prev.as_str() >= name || gap > WALK_GAP {
            return Vec::new();
        }
        if w.order_at
            .is_none_or(|t| now.saturating_duration_since(t) > ORDER_MAX_AGE)
        {
            w.order = files();
            w.order_at = Some(now);
            w.queued_end = 0;
        }
        let (Ok(i), Ok(p)) = (
            w.order.binary_search_by(|n| n.as_str().cmp(name)),
            w.order.binary_search(&prev),
        ) else {
            return Vec::new();
        };
        if p + 1 != i {
            return Vec::new();
        }
        w.steps = steps + 1;
        if w.queued_end >= i + 1 + AHEAD_FILES / 2 {
            return Vec::new();
        }
        let from = w.queued_end.max(i + 1);
        let to = w.order.len().min(i + 1 + AHEAD_FILES);
        if from >= to {
            return Vec::new();
        }
        w.queued_end = to;
        w.order[from..to].to_vec()
    }
}

/// A worker that panics still leaves the count of workers and its file's
/// entry right, so no open waits for a fetch that will never end.
struct WorkerGuard<'a> {
    fs: &'a ObjectFs,
    job: Option<u64>,
}

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.fs.lock();
        st.data_ahead_workers = st.data_ahead_workers.saturating_sub(1);
        if let Some(ino) = self.job {
            st.data_ahead.remove(&ino);
        }
        drop(st);
        self.fs.inner.changed.notify_all();
    }
}

impl Walks {
    /// Whether a reader walked, within [`WALK_GAP`] of `now`, directory
    /// `dir` (whose parent is `parent`), its parent, or a sibling of it,
    /// over at least [`NEAR_STEPS`] files in a row: `diff -r` or `grep -r`
    /// going on through a tree (`git status` reading `.git/HEAD` and then
    /// `.git/config` is not one).
    pub(super) fn walking_near(&self, dir: u64, parent: u64, now: Instant) -> bool {
        self.dirs.iter().any(|(&(walked, _), w)| {
            w.steps >= NEAR_STEPS
                && now.saturating_duration_since(w.at) <= WALK_GAP
                && (walked == dir || walked == parent || w.parent == parent)
        })
    }
}

/// A fetch ahead under way: the node, its key, size and ETag as queued.
struct Job {
    ino: u64,
    key: String,
    size: u64,
    etag: String,
}

impl ObjectFs {
    fn walks(&self) -> MutexGuard<'_, Walks> {
        self.inner.walks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// File `ino` was opened for reading by process `reader`: a step of
    /// its walk over the directory queues the next small files of it to be
    /// fetched ahead. Returns how many workers to start for them
    /// ([`Self::fetch_ahead`], once the table is let go).
    pub(super) fn note_read_open(&self, st: &mut InodeTable, ino: u64, reader: u32) -> usize {
        let Some(n) = st.nodes.get(&ino) else {
            return 0;
        };
        if n.kind != Kind::File {
            return 0;
        }
        let (parent, name) = (n.parent, n.name.clone());
        let grandparent = st.nodes.get(&parent).map_or(parent, |p| p.parent);
        let dirs = (parent, grandparent);
        let names = self.walks().open(dirs, reader, name, Instant::now(), || {
            let mut files: Vec<String> = st
                .children
                .iter()
                .filter(|((p, _), c)| {
                    *p == parent && st.nodes.get(c).is_some_and(|n| n.kind == Kind::File)
                })
                .map(|((_, name), _)| name.clone())
                .collect();
            files.sort_unstable();
            files
        });
        let mut queued = 0;
        let welcome = self.cache().copies_welcome(Instant::now());
        for name in names {
            let Some(&c) = st.children.get(&(parent, name.clone())) else {
                continue;
            };
            if st.data_ahead.contains_key(&c) || !welcome || self.job_of(st, c).is_none() {
                continue;
            }
            st.data_ahead.insert(c, false);
            st.data_ahead_queue.push_back(c);
            queued += 1;
        }
        let start = AHEAD_IN_FLIGHT
            .saturating_sub(st.data_ahead_workers)
            .min(queued);
        st.data_ahead_workers += start;
        start
    }

    /// Starts `workers` (counted by [`Self::note_read_open`]) on the queue
    /// of files to fetch ahead.
    pub(super) fn fetch_ahead(&self, workers: usize) {
        for _ in 0..workers {
            let fs = self.clone();
            self.inner.rt.spawn_blocking(move || {
                let mut guard = WorkerGuard { fs: &fs, job: None };
                fs.fetch_ahead_worker(&mut guard);
                std::mem::forget(guard);
            });
        }
    }

    /// What fetching node `ino` ahead would be, when it is worth it: a
    /// small file in the store, with a known ETag, not a local copy and not
    /// in the cache, not being renamed or removed.
    fn job_of(&self, st: &InodeTable, ino: u64) -> Option<Job> {
        let n = st.nodes.get(&ino)?;
        let etag = n.etag.clone()?;
        if n.kind != Kind::File
            || !n.remote
            || n.unlinked
            || n.busy
            || n.staged.is_some()
            || n.source.is_some()
            || n.size == 0
            || n.size > AHEAD_FILE_MAX
        {
            return None;
        }
        let key = self.key_of(st, ino);
        if self.cache().holds(&key, &etag) {
            return None;
        }
        Some(Job {
            ino,
            key,
            size: n.size,
            etag,
        })
    }

    /// One worker: takes queued fetches until none is left. (`guard`
    /// tidies up after a panic.)
    fn fetch_ahead_worker(&self, guard: &mut WorkerGuard<'_>) {
        loop {
            let job = {
                let mut st = self.lock();
                loop {
                    let Some(ino) = st.data_ahead_queue.pop_front() else {
                        st.data_ahead_workers -= 1;
                        return;
                    };
                    // (Taken out by an open meanwhile: that open reads it.)
                    if st.data_ahead.get(&ino) != Some(&false) {
                        continue;
                    }
                    // Room without evicting anything, or not at all.
                    let job = self.job_of(&st, ino).filter(|j| {
                        let mut cache = self.cache();
                        cache.copies_welcome(Instant::now()) && cache.charge_if_fits(j.size)
                    });
                    match job {
                        Some(job) => {
                            st.data_ahead.insert(ino, true);
                            break job;
                        }
                        None => {
                            st.data_ahead.remove(&ino);
                        }
                    }
                }
            };
            guard.job = Some(job.ino);
            self.fetch_one(job);
            guard.job = None;
            self.inner.changed.notify_all();
        }
    }

    /// Fetches `job`'s object into a new copy and keeps it in the cache,
    /// if it is still the object the node knows.
    fn fetch_one(&self, job: Job) {
        let Ok((id, file)) = self.inner.staging.create() else {
            self.lock().data_ahead.remove(&job.ino);
            self.cache().credit(job.size);
            return;
        };
        let file = Arc::new(file);
        let fetched = match self.block_on(download_to_file(
            &self.inner.store,
            RetryPolicy::INTERACTIVE,
            &job.key,
            file.clone(),
            job.size,
        )) {
            Ok(label) => label,
            Err(DownloadError::Local(e)) => {
                self.local_failure(&e);
                None
            }
            Err(DownloadError::Store(_) | DownloadError::Changed) => None,
        };
        self.keep_copy(&job, id, file, fetched);
    }

    /// Keeps copy `id` (in `file`) of `job`'s object, read with ETag
    /// `label`, in the cache as a copy nobody has opened yet, if it is
    /// still the object the node knows; else gives it and its bytes back.
    /// Either way the node is no longer being fetched ahead.
    fn keep_copy(&self, job: &Job, id: u64, file: Arc<std::fs::File>, label: Option<String>) {
        let mut st = self.lock();
        st.data_ahead.remove(&job.ino);
        let same = label.as_deref() == Some(job.etag.as_str())
            && self.job_of(&st, job.ino).is_some_and(|now| {
                now.key == job.key && now.size == job.size && now.etag == job.etag
            });
        if !same {
            drop(st);
            self.cache().credit(job.size);
            self.inner.staging.discard(id, file, true);
            return;
        }
        let tag = CacheTag {
            key: job.key.clone(),
            etag: job.etag.clone(),
        };
        self.keep_clean(tag, id, &file, job.size, true);
        drop(st);
    }

    /// Whether the metadata prefetch of entries of directory `dir` should
    /// GET small files whole rather than HEAD them: a reader is walking
    /// near it ([`Walks::walking_near`]), so it will read them too, and
    /// one GET brings what the HEAD would and the data.
    pub(super) fn whole_near_walk(&self, st: &InodeTable, dir: u64) -> bool {
        let parent = st.nodes.get(&dir).map_or(dir, |n| n.parent);
        self.walks().walking_near(dir, parent, Instant::now())
    }

    /// Node `ino`'s metadata prefetch is to GET it whole: when that is
    /// worth it ([`Self::job_of`]), not under way already and fits in the
    /// cache without evicting, marks it fetched ahead and charges its
    /// size, which it returns (see [`Self::keep_fetched`]).
    pub(super) fn start_whole(&self, st: &mut InodeTable, ino: u64) -> Option<u64> {
        if st.data_ahead.contains_key(&ino) {
            return None;
        }
        let job = self.job_of(st, ino).filter(|j| {
            let mut cache = self.cache();
            j.size <= NEAR_WALK_FILE_MAX
                && cache.copies_welcome(Instant::now())
                && cache.charge_if_fits(j.size)
        })?;
        st.data_ahead.insert(ino, true);
        Some(job.size)
    }

    /// The GET [`Self::start_whole`] began brought no body to keep: its
    /// bytes go back and an open waiting for it goes on.
    pub(super) fn drop_whole(&self, ino: u64, charged: u64) {
        self.lock().data_ahead.remove(&ino);
        self.cache().credit(charged);
        self.inner.changed.notify_all();
    }

    /// Keeps `body`, the object `meta` describes, read whole by the GET
    /// [`Self::start_whole`] began for node `ino` at `key` (`charged`
    /// bytes), as a copy fetched ahead, when it is still the object the
    /// node knows. Runs on a blocking thread (it writes the copy).
    pub(super) fn keep_fetched(
        &self,
        ino: u64,
        key: String,
        meta: &ObjectMeta,
        body: Bytes,
        charged: u64,
    ) {
        let job = Job {
            ino,
            key,
            size: charged,
            etag: meta.etag.clone().unwrap_or_default(),
        };
        if meta.size != charged || body.len() as u64 != charged {
            return self.drop_whole(ino, charged);
        }
        let Ok((id, file)) = self.inner.staging.create() else {
            return self.drop_whole(ino, charged);
        };
        let label = match std::os::unix::fs::FileExt::write_all_at(&file, &body, 0) {
            Ok(()) => meta.etag.clone(),
            Err(e) => {
                self.local_failure(&e);
                None
            }
        };
        self.keep_copy(&job, id, Arc::new(file), label);
        self.inner.changed.notify_all();
    }

    /// Forgets the fetches ahead not started yet (everything is being
    /// flushed: the mount is about to stop, or a test to look).
    pub(super) fn drop_queued_fetches(st: &mut InodeTable) {
        st.data_ahead.retain(|_, started| *started);
        st.data_ahead_queue.clear();
    }

    /// An open of `ino` for reading: waits (at most [`AHEAD_WAIT`]) for
    /// its fetch ahead under way, or takes it out of the queue when it has
    /// not started.
    pub(super) fn wait_fetched_ahead<'a>(
        &'a self,
        mut st: MutexGuard<'a, InodeTable>,
        ino: u64,
    ) -> MutexGuard<'a, InodeTable> {
        let deadline = Instant::now() + AHEAD_WAIT;
        loop {
            match st.data_ahead.get(&ino) {
                None => return st,
                Some(false) => {
                    st.data_ahead.remove(&ino);
                    return st;
                }
                Some(true) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return st;
                    }
                    st = self
                        .inner
                        .changed
                        .wait_timeout(st, left.min(Duration::from_millis(100)))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i:03}")).collect()
    }

    #[test]
    fn opens_in_name_order_queue_a_window_that_moves_with_the_reader() {
        let mut w = Walks::default();
        let t = Instant::now();
        let all = names(100);
        assert!(
            w.open((1, 0), 0, "f000".into(), t, || all.clone())
                .is_empty(),
            "one open is no walk"
        );
        let got = w.open((1, 0), 0, "f001".into(), t, || all.clone());
        assert_eq!(got, all[2..2 + AHEAD_FILES].to_vec());
        // Nothing more until fewer than half the window is left ahead.
        for (i, name) in all.iter().enumerate().take(AHEAD_FILES / 2 + 2).skip(2) {
            assert!(
                w.open((1, 0), 0, name.clone(), t, || unreachable!())
                    .is_empty(),
                "at {i}"
            );
        }
        let i = AHEAD_FILES / 2 + 2;
        let got = w.open((1, 0), 0, all[i].clone(), t, || unreachable!());
        assert_eq!(got, all[2 + AHEAD_FILES..i + 1 + AHEAD_FILES].to_vec());
    }

    #[test]
    fn opens_out_of_order_or_far_apart_queue_nothing() {
        let all = names(100);
        let t = Instant::now();
        let mut w = Walks::default();
        // Forward, but not next to each other in name order.
        w.open((1, 0), 0, "f010".into(), t, || all.clone());
        assert!(
            w.open((1, 0), 0, "f012".into(), t, || all.clone())
                .is_empty()
        );
        // Backward.
        assert!(
            w.open((1, 0), 0, "f011".into(), t, || all.clone())
                .is_empty()
        );
        // Next to each other, but further apart in time than one walk.
        let later = t + WALK_GAP + Duration::from_millis(1);
        assert!(
            w.open((1, 0), 0, "f012".into(), later, || all.clone())
                .is_empty()
        );
        // Another process's open of the next file is not this walk's.
        assert!(
            w.open((1, 0), 7, "f013".into(), later, || all.clone())
                .is_empty()
        );
        // Another directory's opens are another walk.
        w.open((2, 0), 0, "f000".into(), later, || all.clone());
        assert!(
            w.open((1, 0), 0, "f013".into(), later, || all.clone())
                .len()
                == AHEAD_FILES
        );
        // A name the order does not have (created since) stops nothing else.
        assert!(w.open((3, 0), 0, "a".into(), later, Vec::new).is_empty());
        assert!(w.open((3, 0), 0, "b".into(), later, Vec::new).is_empty());
    }

    #[test]
    fn the_end_of_the_directory_ends_the_window() {
        let all = names(5);
        let t = Instant::now();
        let mut w = Walks::default();
        w.open((1, 0), 0, "f000".into(), t, || all.clone());
        assert_eq!(
            w.open((1, 0), 0, "f001".into(), t, || all.clone()),
            all[2..].to_vec()
        );
        assert!(
            w.open((1, 0), 0, "f002".into(), t, || unreachable!())
                .is_empty()
        );
        assert!(
            w.open((1, 0), 0, "f004".into(), t, || unreachable!())
                .is_empty()
        );
    }

    #[test]
    fn a_walk_is_near_its_directory_its_parent_and_their_siblings() {
        let all = names(10);
        let t = Instant::now();
        let mut w = Walks::default();
        // Directory 5, child of 1, is walked.
        w.open((5, 1), 0, "f000".into(), t, || all.clone());
        w.open((5, 1), 0, "f001".into(), t, || all.clone());
        w.open((5, 1), 0, "f002".into(), t, || all.clone());
        assert!(
            !w.walking_near(5, 1, t),
            "two steps are not yet a walk near"
        );
        w.open((5, 1), 0, "f004".into(), t, || all.clone());
        w.open((5, 1), 0, "f005".into(), t, || all.clone());
        w.open((5, 1), 0, "f006".into(), t, || all.clone());
        assert!(!w.walking_near(5, 1, t), "steps in a row");
        w.open((5, 1), 0, "f007".into(), t, || all.clone());
        assert!(w.walking_near(5, 1, t), "itself");
        assert!(w.walking_near(6, 1, t), "a sibling");
        assert!(w.walking_near(9, 5, t), "a child");
        assert!(!w.walking_near(7, 2, t), "elsewhere");
        assert!(!w.walking_near(6, 1, t + WALK_GAP * 2), "long ago");
    }

    #[test]
    fn walks_followed_are_bounded() {
        let t = Instant::now();
        let mut w = Walks::default();
        for d in 0..(WALKS_MAX as u64 * 3) {
            w.open((d, 0), 0, "a".into(), t, Vec::new);
        }
        assert!(w.dirs.len() <= WALKS_MAX);
    }
}
