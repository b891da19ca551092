//! Empty files ready before anyone asks for one ([`DataPool`]): the
//! staging area's data files (recycled from deleted ones, and new ones a
//! background thread makes ahead). Allocating an inode is the dearest part of a create on
//! ext4 (65 to 370 µs here, more than the rest of a FUSE CREATE or MKDIR
//! together), so an operation that finds a file waiting answers that much
//! sooner; the thread starts at the first file taken and stops, joined,
//! with the pool. Files left in a pool at exit are empty, unjournalled and
//! untagged: the next mount's leftover sweep deletes them. The same thread
//! deletes the files given up ([`DataPool::delete_later`]) and empties the
//! ones given back for reuse ([`DataPool::recycle_later`]): an unlink, an
//! ftruncate or the removal of a file's last extended attribute each took
//! ext4 0.2-0.3 ms of an `rm` (under the table's lock).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Recycled files kept open for reuse; beyond this they are deleted.
const RECYCLED_MAX: usize = 64;
/// New files made ahead: refilled to this many when fewer than half are left.
const FRESH_MAX: usize = 32;

pub(crate) struct DataPool {
    shared: Arc<Shared>,
    maker: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    dir: PathBuf,
    /// The files' extension: `N.ext`.
    ext: &'static str,
    next_id: AtomicU64,
    state: Mutex<State>,
    wake: Condvar,
}

/// A file given back for reuse: its number, the file, and what must go
/// from it besides its bytes.
type Returned = (u64, File, fn(&File));

#[derive(Default)]
struct State {
    recycled: Vec<(u64, File)>,
    fresh: Vec<(u64, File)>,
    /// The maker is asked to refill `fresh`.
    refill: bool,
    /// Files to delete, by number.
    doomed: Vec<u64>,
    /// Files to empty (after their scrub) and keep for reuse.
    returned: Vec<Returned>,
    /// Deletions and emptyings under way (taken out of the lists above).
    disposing: usize,
    closed: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id}.{}", self.ext))
    }

    fn new_file(&self) -> io::Result<(u64, File)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.path(id))?;
        Ok((id, file))
    }

    /// Deletes the files to delete and empties those given back (into
    /// `recycled`, or deleted when it is full), the lock let go meanwhile.
    fn dispose<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let doomed = std::mem::take(&mut st.doomed);
        let returned = std::mem::take(&mut st.returned);
        st.disposing += 1;
        drop(st);
        for id in doomed {
            let _ = std::fs::remove_file(self.path(id));
        }
        let mut emptied = Vec::new();
        for (id, file, scrub) in returned {
            scrub(&file);
            match file.set_len(0) {
                Ok(()) => emptied.push((id, file)),
                Err(_) => {
                    drop(file);
                    let _ = std::fs::remove_file(self.path(id));
                }
            }
        }
        let mut st = self.state();
        st.disposing -= 1;
        for (id, file) in emptied {
            if st.recycled.len() < RECYCLED_MAX && !st.closed {
                st.recycled.push((id, file));
            } else {
                drop(file);
                let _ = std::fs::remove_file(self.path(id));
            }
        }
        st
    }

    /// The maker thread: refills `fresh` whenever asked, until closed.
    fn make(&self) {
        let mut st = self.state();
        loop {
            while !st.closed && !st.refill && st.doomed.is_empty() && st.returned.is_empty() {
                st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.closed {
                return;
            }
            if !st.doomed.is_empty() || !st.returned.is_empty() {
                st = self.dispose(st);
                continue;
            }
            if st.fresh.len() >= FRESH_MAX {
                st.refill = false;
                continue;
            }
            drop(st);
            let made = self.new_file();
            st = self.state();
            match made {
                Ok((id, file)) if st.closed => {
                    drop(file);
                    let _ = std::fs::remove_file(self.path(id));
                }
                Ok(f) => st.fresh.push(f),
                Err(e) => {
                    // Creates make their own files, as before; the cause
                    // (a full disk, say) is theirs to report.
                    tracing::debug!(error = %e, "could not make a data file ahead");
                    st.refill = false;
                }
            }
        }
    }
}

impl DataPool {
    /// A pool of files `dir/N.ext`, numbering new ones from `next_id`.
    pub(crate) fn new(dir: PathBuf, ext: &'static str, next_id: u64) -> DataPool {
        DataPool {
            shared: Arc::new(Shared {
                dir,
                ext,
                next_id: AtomicU64::new(next_id),
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
            maker: Mutex::new(None),
        }
    }

    /// An empty data file and its number: a recycled one, else one made
    /// ahead, else a new one made now.
    pub(crate) fn take(&self) -> io::Result<(u64, File)> {
        let mut st = self.shared.state();
        if let Some(f) = st.recycled.pop() {
            return Ok(f);
        }
        let taken = st.fresh.pop();
        if st.fresh.len() < FRESH_MAX / 2 && !st.closed {
            st.refill = true;
            drop(st);
            self.shared.wake.notify_one();
            self.start_maker();
        } else {
            drop(st);
        }
        match taken {
            Some(f) => Ok(f),
            None => self.shared.new_file(),
        }
    }

    /// Deletes file `id` (closed, and never handed out again) soon, on
    /// the maker thread; at the latest when the pool is dropped.
    pub(crate) fn delete_later(&self, id: u64) {
        let mut st = self.shared.state();
        if st.closed {
            drop(st);
            let _ = std::fs::remove_file(self.shared.path(id));
            return;
        }
        st.doomed.push(id);
        drop(st);
        self.dispose_soon();
    }

    /// Keeps file `id` for reuse once emptied, on the maker thread:
    /// `scrub` (the caller's: what else a file handed out must not carry)
    /// first, then its length; deleted instead when the pool is full or
    /// closed, or the file cannot be emptied.
    pub(crate) fn recycle_later(&self, id: u64, file: File, scrub: fn(&File)) {
        let mut st = self.shared.state();
        if st.closed {
            drop(st);
            drop(file);
            let _ = std::fs::remove_file(self.shared.path(id));
            return;
        }
        st.returned.push((id, file, scrub));
        drop(st);
        self.dispose_soon();
    }

    /// Nothing left to delete or empty (a writer told ENOSPC asks whether
    /// space is on its way back; tests wait for it).
    pub(crate) fn idle(&self) -> bool {
        let st = self.shared.state();
        st.doomed.is_empty() && st.returned.is_empty() && st.disposing == 0
    }

    /// Starts the maker thread unless it runs; false when it cannot.
    fn start_maker(&self) -> bool {
        let mut maker = self.maker.lock().unwrap_or_else(|e| e.into_inner());
        if maker.is_some() {
            return true;
        }
        let shared = self.shared.clone();
        match std::thread::Builder::new()
            .name("osv-datafiles".into())
            .spawn(move || shared.make())
        {
            Ok(handle) => {
                *maker = Some(handle);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "no thread to make data files ahead");
                false
            }
        }
    }

    /// Wakes the maker for files to delete or empty; does it here when
    /// there is no maker.
    fn dispose_soon(&self) {
        self.shared.wake.notify_one();
        if !self.start_maker() {
            drop(self.shared.dispose(self.shared.state()));
        }
    }
}

/// Stops the maker and deletes the files nobody took, and those still to
/// delete: the cache directory keeps none of them.
impl Drop for DataPool {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.wake.notify_all();
        if let Some(handle) = self.maker.get_mut().ok().and_then(Option::take) {
            let _ = handle.join();
        }
        let st = &mut *self.shared.state();
        for (id, file) in st.recycled.drain(..).chain(st.fresh.drain(..)) {
            drop(file);
            let _ = std::fs::remove_file(self.shared.path(id));
        }
        for id in st.doomed.drain(..) {
            let _ = std::fs::remove_file(self.shared.path(id));
        }
        for (id, file, _) in st.returned.drain(..) {
            drop(file);
            let _ = std::fs::remove_file(self.shared.path(id));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn data_files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn files_are_made_ahead_after_the_first_take_and_numbers_never_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let pool = DataPool::new(dir.path().to_path_buf(), "data", 1);
        assert_eq!(data_files(dir.path()), 0, "nothing made before asked");
        let mut ids = vec![pool.take().unwrap().0];
        let deadline = Instant::now() + Duration::from_secs(10);
        while data_files(dir.path()) < 1 + FRESH_MAX && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            data_files(dir.path()),
            1 + FRESH_MAX,
            "refilled to the mark"
        );
        for _ in 0..3 * FRESH_MAX {
            ids.push(pool.take().unwrap().0);
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "a number handed out twice");
    }

    static SCRUBBED: AtomicU64 = AtomicU64::new(0);
    fn scrub(_: &File) {
        SCRUBBED.fetch_add(1, Ordering::SeqCst);
    }

    impl DataPool {
        fn recycled_len(&self) -> usize {
            self.shared.state().recycled.len()
        }
    }

    pub(crate) fn wait_for(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn files_given_back_are_scrubbed_emptied_and_go_first_and_a_full_pool_deletes_the_rest() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let pool = DataPool::new(dir.path().to_path_buf(), "data", 1);
        let (id, mut file) = pool.take().unwrap();
        file.write_all(b"old data").unwrap();
        let scrubbed = SCRUBBED.load(Ordering::SeqCst);
        pool.recycle_later(id, file, scrub);
        wait_for(|| pool.idle());
        assert_eq!(pool.recycled_len(), 1);
        assert!(SCRUBBED.load(Ordering::SeqCst) > scrubbed, "scrubbed");
        let path = dir.path().join(format!("{id}.data"));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "emptied");
        assert_eq!(pool.take().unwrap().0, id, "the recycled file first");
        let held: Vec<_> = (0..=RECYCLED_MAX).map(|_| pool.take().unwrap()).collect();
        let ids: Vec<u64> = held.iter().map(|(id, _)| *id).collect();
        for (id, file) in held {
            pool.recycle_later(id, file, scrub);
        }
        wait_for(|| pool.idle());
        assert_eq!(pool.recycled_len(), RECYCLED_MAX, "all but one kept");
        let gone = ids
            .iter()
            .filter(|id| !dir.path().join(format!("{id}.data")).exists())
            .count();
        assert_eq!(gone, 1, "the one the full pool could not keep was deleted");
    }

    #[test]
    fn dropping_the_pool_stops_its_maker_and_deletes_what_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let pool = DataPool::new(dir.path().to_path_buf(), "data", 1);
        let (kept, _file) = pool.take().unwrap();
        let (id, file) = pool.take().unwrap();
        pool.recycle_later(id, file, scrub);
        let (doomed, file) = pool.take().unwrap();
        drop(file);
        pool.delete_later(doomed);
        drop(pool);
        let only_the_taken = vec![format!("{kept}.data")];
        let names = |d: &std::path::Path| -> Vec<String> {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(dir.path()), only_the_taken);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            names(dir.path()),
            only_the_taken,
            "a file made after the drop"
        );
    }
}
