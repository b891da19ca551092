//! The journal of namespace changes not yet in the bucket (`upload=async`):
//! append-only segment files in the cache directory's `ops/`
//! (`N.log`, one JSON line per record). A change is recorded (one line,
//! one `write`) before it is acknowledged; once the store has it, a line
//! saying so follows, and segments whose changes are all done are deleted
//! (the last one emptied). The next mount of the same cache directory
//! replays what is left, in order, before anything else.
//!
//! A file per change, as earlier versions wrote (`N.json`, still read and
//! replayed), cost an inode allocation and a delete per change, the
//! dearest part of a `utime` or `mkdir` on ext4; a line costs one write.
//! A line cut short by a crash (the change it recorded was never
//! acknowledged) is skipped.

use crate::store::PutMeta;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One namespace change, as the store will see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NsOp {
    /// A new object with this body and metadata: a directory marker
    /// (empty body) or a symbolic link (the target).
    Put {
        key: String,
        meta: PutMeta,
        body: Vec<u8>,
    },
    /// The object is deleted (a missing one is fine).
    Delete { key: String },
    /// The object's metadata is replaced (a copy onto itself); `size`,
    /// a file's size as the mount knew it, spares the copy a HEAD.
    SetMeta {
        key: String,
        meta: PutMeta,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    /// A directory renamed: each of `names` (relative to `from`, `""` for
    /// the marker) is copied to `to` and then deleted at `from`; with
    /// `marker`, a marker is written at `to` (`from` had none). With
    /// `list`, the names are whatever `from` holds when the change is sent
    /// (nothing else can land there before: later changes and uploads of
    /// both prefixes wait for this one, and its record is removed before
    /// they are sent), and `marker` is written only when
    /// `from` has none. Safe to repeat: a name already moved is skipped.
    RenameDir {
        from: String,
        to: String,
        names: Vec<String>,
        marker: Option<PutMeta>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        list: bool,
    },
}

impl NsOp {
    /// The key the change is about (a renamed directory's new prefix).
    pub fn key(&self) -> &str {
        match self {
            NsOp::Put { key, .. } | NsOp::Delete { key } | NsOp::SetMeta { key, .. } => key,
            NsOp::RenameDir { to, .. } => to,
        }
    }

    /// Whether the change affects what the store has at `key`.
    pub fn covers(&self, key: &str) -> bool {
        match self {
            NsOp::RenameDir { from, to, .. } => key.starts_with(from) || key.starts_with(to),
            _ => self.key() == key,
        }
    }

    /// Whether the change affects some key starting with `prefix`.
    pub fn touches_under(&self, prefix: &str) -> bool {
        match self {
            NsOp::RenameDir { from, to, .. } => [from, to]
                .iter()
                .any(|p| p.starts_with(prefix) || prefix.starts_with(p.as_str())),
            _ => self.key().starts_with(prefix),
        }
    }

    /// Whether the two changes affect a key in common, so that the store
    /// must see them in the order they were made.
    pub fn overlaps(&self, other: &NsOp) -> bool {
        match (self, other) {
            (NsOp::RenameDir { from, to, .. }, o) | (o, NsOp::RenameDir { from, to, .. }) => {
                o.touches_under(from) || o.touches_under(to)
            }
            (a, b) => a.key() == b.key(),
        }
    }
}

/// A segment grows to about this size before the next record starts a
/// new one (so segments whose changes are done can go while another
/// change waits).
const SEGMENT_MAX: u64 = 1 << 20;

/// Room kept in every segment beyond [`SEGMENT_MAX`] for lines saying a
/// change is done (about 25 bytes each).
const DONE_ROOM: u64 = 256 << 10;

/// Once nothing is left to do, the active segment is emptied when it
/// holds this much: an ftruncate costs ext4 0.15 ms or more, on the path
/// of the call that finished the last change (SQLite's fsync of its next
/// journal, which replaces the queued delete of the last one, every
/// transaction).
const EMPTY_AFTER: u64 = 64 << 10;

/// More segments than this on disk (behind one waiting change) makes the
/// oldest segment's waiting changes be recorded again at the end.
const COMPACT_AFTER: usize = 8;

/// One line of a segment: a change recorded (or recorded again, replacing
/// what was recorded for `seq`), or, without `op`, change `seq` done.
#[derive(Serialize)]
struct RecordOut<'a> {
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<&'a NsOp>,
}

#[derive(Deserialize)]
struct RecordIn {
    seq: u64,
    #[serde(default)]
    op: Option<NsOp>,
}

/// What `ops/` holds.
#[derive(Default)]
struct Loaded {
    /// Changes not done, with the segment of their last record (`None`:
    /// a file of an earlier version).
    ops: BTreeMap<u64, (NsOp, Option<u64>)>,
    /// Records of an earlier version that cannot be read (left in place).
    unreadable: usize,
    /// Segment numbers, ascending.
    segments: Vec<u64>,
    /// Anything else (temporary files of an earlier version).
    other: Vec<PathBuf>,
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.log"))
}

fn record_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.json"))
}

/// Reads `dir` (an `ops/`); a missing one is empty.
fn load(dir: &Path) -> io::Result<Loaded> {
    let mut loaded = Loaded::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(loaded),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let number = |ext: &str| name.strip_suffix(ext).and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = number(".json") {
            let bytes = match fs::read(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // done meanwhile
                read => read.ok(),
            };
            match bytes.and_then(|b| serde_json::from_slice::<NsOp>(&b).ok()) {
                Some(op) => {
                    loaded.ops.insert(seq, (op, None));
                }
                None => {
                    tracing::error!(path = %path.display(),
                        "unreadable namespace journal entry left in place for inspection");
                    loaded.unreadable += 1;
                }
            }
        } else if let Some(n) = number(".log") {
            loaded.segments.push(n);
        } else {
            loaded.other.push(path);
        }
    }
    loaded.segments.sort_unstable();
    // Segments are newer than files, and later lines replace earlier ones.
    for &n in &loaded.segments {
        let text = match fs::read(segment_path(dir, n)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // all done meanwhile
            read => read?,
        };
        let mut skipped = 0;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<RecordIn>(line) {
                Ok(RecordIn { seq, op: Some(op) }) => {
                    loaded.ops.insert(seq, (op, Some(n)));
                }
                Ok(RecordIn { seq, op: None }) => {
                    loaded.ops.remove(&seq);
                }
                Err(_) => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(
                segment = n,
                lines = skipped,
                "namespace journal lines cut short by a crash skipped (their changes were never acknowledged)"
            );
        }
    }
    Ok(loaded)
}

/// How many namespace changes the cache directory `cache_dir` holds that
/// are not in the bucket yet (unreadable records of an earlier version
/// included), read only.
pub fn recorded(cache_dir: &Path) -> io::Result<usize> {
    let loaded = load(&cache_dir.join("ops"))?;
    Ok(loaded.ops.len() + loaded.unreadable)
}

/// Allocates a segment's room ([`SEGMENT_MAX`] and [`DONE_ROOM`]) past
/// its end, so its lines need no new block on a full disk. Where the file
/// system cannot, lines take their chance.
fn reserve(file: &File) {
    // SAFETY: fallocate on an open descriptor, no memory involved.
    unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_KEEP_SIZE,
            0,
            (SEGMENT_MAX + DONE_ROOM) as libc::off_t,
        )
    };
}

pub struct OpLog {
    dir: PathBuf,
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    /// The segment appended to, its number and length; opened at the
    /// first record.
    active: Option<(u64, File, u64)>,
    next_segment: u64,
    /// Each change not done: the segment of its last record (`None`: a
    /// file of an earlier version), and the change.
    home: HashMap<u64, (Option<u64>, NsOp)>,
    /// Changes not done per segment (every segment on disk is a key).
    live: BTreeMap<u64, usize>,
    /// Changes done whose line saying so could not be written yet: they
    /// keep their segment, and the line is tried again before the next.
    undone: VecDeque<u64>,
}

impl LogState {
    fn settle(&mut self, seq: u64, home: Option<u64>, op: NsOp) {
        if let Some((Some(old), _)) = self.home.insert(seq, (home, op))
            && let Some(n) = self.live.get_mut(&old)
        {
            *n -= 1;
        }
        if let Some(seg) = home {
            *self.live.entry(seg).or_default() += 1;
        }
    }

    /// Change `seq` is done and its line says so.
    fn forget(&mut self, seq: u64) {
        if let Some((Some(seg), _)) = self.home.remove(&seq)
            && let Some(n) = self.live.get_mut(&seg)
        {
            *n -= 1;
        }
    }
}

impl OpLog {
    pub fn open(cache_dir: &Path) -> io::Result<OpLog> {
        let dir = cache_dir.join("ops");
        fs::create_dir_all(&dir)?;
        let log = OpLog {
            dir,
            state: Mutex::new(LogState::default()),
        };
        log.load_state()?;
        Ok(log)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in what `ops/` holds: the changes not done, and where.
    fn load_state(&self) -> io::Result<Loaded> {
        let loaded = load(&self.dir)?;
        let mut st = self.lock();
        *st = LogState {
            next_segment: loaded.segments.last().map_or(1, |n| n + 1),
            ..LogState::default()
        };
        for &n in &loaded.segments {
            st.live.insert(n, 0);
        }
        for (seq, (op, home)) in &loaded.ops {
            st.settle(*seq, *home, op.clone());
        }
        Ok(loaded)
    }

    /// Appends one record to the active segment. A change starts a new
    /// segment when there is none or it is full; a line saying a change is
    /// done goes into the room every segment is given beyond that (made
    /// when the segment is), so that it needs no new block on a full disk.
    fn append(&self, st: &mut LogState, seq: u64, op: Option<&NsOp>) -> io::Result<u64> {
        let mut line = serde_json::to_vec(&RecordOut { seq, op }).map_err(io::Error::other)?;
        line.push(b'\n');
        let limit = if op.is_some() {
            SEGMENT_MAX
        } else {
            SEGMENT_MAX + DONE_ROOM - line.len() as u64
        };
        if st.active.as_ref().is_some_and(|(_, _, len)| *len >= limit) {
            st.active = None;
        }
        if st.active.is_none() {
            let n = st.next_segment;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.dir, n))?;
            reserve(&file);
            st.next_segment += 1;
            st.live.entry(n).or_default();
            st.active = Some((n, file, 0));
        }
        let Some((n, file, len)) = st.active.as_mut() else {
            unreachable!("a segment was just opened")
        };
        if let Err(e) = file.write_all(&line) {
            // What was cut short stays at this segment's end.
            st.active = None;
            return Err(e);
        }
        *len += line.len() as u64;
        Ok(*n)
    }

    /// Writes the done lines that could not be written before.
    fn catch_up(&self, st: &mut LogState) -> io::Result<()> {
        while let Some(&seq) = st.undone.front() {
            self.append(st, seq, None)?;
            st.undone.pop_front();
            st.forget(seq);
        }
        Ok(())
    }

    /// Records change `seq` (or replaces what was recorded for it).
    pub fn write(&self, seq: u64, op: &NsOp) -> io::Result<()> {
        let mut st = self.lock();
        let _ = self.catch_up(&mut st); // (a full disk fails the record too)
        let seg = self.append(&mut st, seq, Some(op))?;
        if matches!(st.home.get(&seq), Some((None, _))) {
            let _ = fs::remove_file(record_path(&self.dir, seq));
        }
        st.settle(seq, Some(seg), op.clone());
        self.compact(&mut st);
        Ok(())
    }

    /// Change `seq` is in the store (or was cancelled). Should the line
    /// saying so fail (a full disk past the room kept for it), it is tried
    /// again before every later record, and until then the change stays
    /// where a crash would send it again.
    pub fn remove(&self, seq: u64) {
        let mut st = self.lock();
        match st.home.get(&seq) {
            None => return,
            Some((None, _)) => {
                let _ = fs::remove_file(record_path(&self.dir, seq));
                st.home.remove(&seq);
                return;
            }
            Some(_) => {}
        }
        st.undone.push_back(seq);
        if let Err(e) = self.catch_up(&mut st) {
            tracing::error!(error = %e, "could not journal that a namespace change was sent; it is tried again with the next change, and a crash before then sends it again");
            return;
        }
        self.drop_done(&mut st);
        self.compact(&mut st);
    }

    /// Whether a change that reached the store, but whose line saying so
    /// could not be written yet (a full disk), is one `concerns` picks:
    /// nothing that change affects may go to the store until the line is
    /// written, or a crash would replay it after what came later (a delete
    /// after a new file's upload at the key). The line is tried again first.
    pub fn holds_back(&self, concerns: impl Fn(&NsOp) -> bool) -> bool {
        let mut st = self.lock();
        if st.undone.is_empty() {
            return false;
        }
        if self.catch_up(&mut st).is_ok() {
            self.drop_done(&mut st);
            return false;
        }
        let st = &*st;
        st.undone
            .iter()
            .any(|seq| st.home.get(seq).is_some_and(|(_, op)| concerns(op)))
    }

    /// Deletes the oldest segments while every change in them is done
    /// (their lines saying so are in later segments, or in these), and
    /// empties the active segment once nothing at all is left to do and
    /// it holds [`EMPTY_AFTER`].
    fn drop_done(&self, st: &mut LogState) {
        let active = st.active.as_ref().map(|(n, _, _)| *n);
        while let Some((&n, &live)) = st.live.first_key_value() {
            if live > 0 || Some(n) == active {
                break;
            }
            if let Err(e) = fs::remove_file(segment_path(&self.dir, n))
                && e.kind() != io::ErrorKind::NotFound
            {
                break;
            }
            st.live.remove(&n);
        }
        if st.home.is_empty()
            && st.live.len() == 1
            && let Some((_, file, len)) = st.active.as_mut()
            && *len >= EMPTY_AFTER
            && file.set_len(0).is_ok()
        {
            // (Truncating gave back the room kept past the end, too.)
            reserve(file);
            *len = 0;
        }
    }

    /// A change that waits long (a store refusing it) keeps its segment,
    /// and the prefix rule every later one: past [`COMPACT_AFTER`]
    /// segments, the changes still waiting in the oldest are recorded
    /// again at the end, and the segments before the next waiting one go.
    fn compact(&self, st: &mut LogState) {
        if st.live.len() <= COMPACT_AFTER {
            return;
        }
        let Some(&oldest) = st.live.keys().next() else {
            return;
        };
        let mut waiting: Vec<(u64, NsOp)> = st
            .home
            .iter()
            .filter(|(_, (seg, _))| *seg == Some(oldest))
            .map(|(seq, (_, op))| (*seq, op.clone()))
            .collect();
        waiting.sort_by_key(|(seq, _)| *seq);
        for (seq, op) in waiting {
            match self.append(st, seq, Some(&op)) {
                Ok(seg) => st.settle(seq, Some(seg), op),
                Err(_) => return,
            }
        }
        self.drop_done(st);
    }

    /// What an earlier mount left, in order. An unreadable record of an
    /// earlier version is left in place and reported; its half-written
    /// temporary files are dropped, as are segments with nothing left to
    /// do.
    pub fn replay(&self) -> io::Result<Vec<(u64, NsOp)>> {
        let loaded = self.load_state()?;
        for path in &loaded.other {
            let _ = fs::remove_file(path);
        }
        self.drop_done(&mut self.lock());
        Ok(loaded
            .ops
            .into_iter()
            .map(|(seq, (op, _))| (seq, op))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change of about 400 KiB as JSON: three fill a segment.
    fn big(seq: u64) -> NsOp {
        NsOp::Put {
            key: format!("p/{seq}"),
            meta: PutMeta::default(),
            body: vec![b'x'; (SEGMENT_MAX / 10) as usize],
        }
    }

    fn segments(dir: &Path) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = fs::read_dir(dir.join("ops"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, e.metadata().unwrap().len())
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn records_come_back_in_order_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let log = OpLog::open(dir.path()).unwrap();
        let put = NsOp::Put {
            key: "p/d/".into(),
            meta: PutMeta::default(),
            body: Vec::new(),
        };
        let del = NsOp::Delete { key: "p/f".into() };
        assert_eq!(recorded(dir.path()).unwrap(), 0);
        log.write(10, &del).unwrap();
        log.write(9, &put).unwrap();
        // One file for both, whatever the number of changes.
        assert_eq!(segments(dir.path()).len(), 1);
        // A line cut short by a crash is no change; the two whole ones are.
        let seg = dir.path().join("ops").join(&segments(dir.path())[0].0);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(br#"{"seq":11,"op":{"op":"dele"#).unwrap();
        assert_eq!(recorded(dir.path()).unwrap(), 2);
        drop(log);
        let again = OpLog::open(dir.path()).unwrap();
        assert_eq!(again.replay().unwrap(), vec![(9, put), (10, del.clone())]);
        again.remove(9);
        assert_eq!(recorded(dir.path()).unwrap(), 1);
        drop(again);
        let third = OpLog::open(dir.path()).unwrap();
        assert_eq!(third.replay().unwrap(), vec![(10, del)]);
        third.remove(10);
        assert_eq!(recorded(dir.path()).unwrap(), 0);
        // Nothing left to do, and a few lines only: kept as they are.
        let left = segments(dir.path());
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].1 > 0 && left[0].1 < EMPTY_AFTER, "{left:?}");
        // Nothing left to do past EMPTY_AFTER: one empty segment, its room
        // still kept (where the file system keeps room at all).
        third.write(11, &big(11)).unwrap();
        third.remove(11);
        assert_eq!(recorded(dir.path()).unwrap(), 0);
        let left = segments(dir.path());
        assert_eq!(left.len(), 1, "{left:?}");
        assert_eq!(left[0].1, 0, "{left:?}");
        let probe = dir.path().join("probe");
        reserve(&File::create(&probe).unwrap());
        let kept = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(p).unwrap().blocks() * 512
        };
        if kept(&probe) > 0 {
            let seg = dir.path().join("ops").join(&left[0].0);
            assert!(
                kept(&seg) >= SEGMENT_MAX,
                "the emptied segment lost its room"
            );
        }
    }

    /// The active segment refuses the next line (a read-only handle in its
    /// place), as a full disk past the room kept for done lines would.
    fn jam(log: &OpLog) {
        let mut st = log.lock();
        let n = st.next_segment - 1;
        let path = segment_path(&log.dir, n);
        let len = fs::metadata(&path).unwrap().len();
        st.active = Some((n, File::open(&path).unwrap(), len));
    }

    /// A change done in the store whose line saying so could not be
    /// written holds back what overlaps it, and only that, until the line
    /// is written; meanwhile a crash would send it again.
    #[test]
    fn a_change_whose_done_line_failed_holds_back_what_it_overlaps() {
        let dir = tempfile::tempdir().unwrap();
        let log = OpLog::open(dir.path()).unwrap();
        log.write(1, &NsOp::Delete { key: "p/k".into() }).unwrap();
        jam(&log);
        log.remove(1);
        assert_eq!(recorded(dir.path()).unwrap(), 1, "a crash sends it again");
        let moved = NsOp::RenameDir {
            from: "p/".into(),
            to: "q/".into(),
            names: Vec::new(),
            marker: None,
            list: true,
        };
        for (what, overlaps) in [
            (NsOp::Delete { key: "p/k".into() }, true),
            (NsOp::Delete { key: "p/j".into() }, false),
            (moved, true),
        ] {
            jam(&log);
            assert_eq!(log.holds_back(|u| u.overlaps(&what)), overlaps, "{what:?}");
        }
        // The next try writes the line: nothing held back, nothing to replay.
        assert!(!log.holds_back(|u| u.covers("p/k")));
        assert_eq!(recorded(dir.path()).unwrap(), 0);
    }

    #[test]
    fn changes_overlap_when_they_share_a_key() {
        let del = |k: &str| NsOp::Delete { key: k.into() };
        let moved = |from: &str, to: &str| NsOp::RenameDir {
            from: from.into(),
            to: to.into(),
            names: Vec::new(),
            marker: None,
            list: false,
        };
        assert!(del("p/a").overlaps(&del("p/a")));
        assert!(!del("p/a").overlaps(&del("p/b")));
        assert!(moved("p/d/", "p/e/").overlaps(&del("p/d/x")));
        assert!(del("p/e/x").overlaps(&moved("p/d/", "p/e/")));
        assert!(!del("p/f/x").overlaps(&moved("p/d/", "p/e/")));
        assert!(moved("p/d/", "p/e/").overlaps(&moved("p/e/s/", "q/")));
        assert!(!moved("p/d/", "p/e/").overlaps(&moved("p/f/", "q/")));
    }

    /// A change recorded again replaces what was recorded for it, in this
    /// mount and after a crash.
    #[test]
    fn a_change_recorded_again_replaces_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = OpLog::open(dir.path()).unwrap();
        let first = NsOp::Delete { key: "p/a".into() };
        let second = NsOp::Delete { key: "p/b".into() };
        log.write(4, &first).unwrap();
        log.write(4, &second).unwrap();
        assert_eq!(recorded(dir.path()).unwrap(), 1);
        drop(log);
        let again = OpLog::open(dir.path()).unwrap();
        assert_eq!(again.replay().unwrap(), vec![(4, second)]);
    }

    /// Segments fill up and the next one starts; a segment whose changes
    /// are all done is deleted while a later change still waits.
    #[test]
    fn full_segments_go_once_their_changes_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let log = OpLog::open(dir.path()).unwrap();
        for seq in 1..=3 {
            log.write(seq, &big(seq)).unwrap();
        }
        let waiting = NsOp::Delete { key: "p/w".into() };
        log.write(4, &waiting).unwrap();
        assert_eq!(segments(dir.path()).len(), 2, "{:?}", segments(dir.path()));
        log.remove(1);
        log.remove(3);
        assert_eq!(segments(dir.path()).len(), 2);
        log.remove(2);
        let left = segments(dir.path());
        assert_eq!(left.len(), 1, "the full segment was kept: {left:?}");
        assert_eq!(recorded(dir.path()).unwrap(), 1);
        drop(log);
        let again = OpLog::open(dir.path()).unwrap();
        assert_eq!(again.replay().unwrap(), vec![(4, waiting)]);
    }

    /// The line saying a change is done may be in a later segment than
    /// the change: a segment goes only once it and every older one have
    /// nothing left to do, so no crash brings back a change that was sent.
    #[test]
    fn done_lines_in_later_segments_keep_their_changes_done() {
        let dir = tempfile::tempdir().unwrap();
        let log = OpLog::open(dir.path()).unwrap();
        for seq in 1..=3 {
            log.write(seq, &big(seq)).unwrap();
        }
        log.write(4, &big(4)).unwrap(); // segment 2
        log.remove(1); // its line in segment 2
        log.write(5, &big(5)).unwrap();
        log.write(6, &big(6)).unwrap();
        log.write(7, &big(7)).unwrap(); // segment 3
        for seq in [4, 5, 6] {
            log.remove(seq);
        }
        let names: Vec<String> = segments(dir.path()).into_iter().map(|(n, _)| n).collect();
        assert!(
            names.contains(&"00000000000000000002.log".to_string()),
            "the segment saying 1 is done went before 1's own: {names:?}"
        );
        drop(log);
        let again = OpLog::open(dir.path()).unwrap();
        let left: Vec<u64> = again
            .replay()
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(left, [2, 3, 7]);
    }

    /// One change that waits (a store refusing it) does not keep every
    /// later segment: past a few segments it is recorded again at the end.
    #[test]
    fn a_waiting_change_does_not_keep_every_later_segment() {
        let dir = tempfile::tempdir().unwrap();
        let log = OpLog::open(dir.path()).unwrap();
        let waiting = NsOp::Delete { key: "p/w".into() };
        log.write(1, &waiting).unwrap();
        for seq in 2..80 {
            log.write(seq, &big(seq)).unwrap();
            log.remove(seq);
        }
        let n = segments(dir.path()).len();
        assert!(n <= COMPACT_AFTER + 1, "{n} segments");
        assert_eq!(recorded(dir.path()).unwrap(), 1);
        drop(log);
        let again = OpLog::open(dir.path()).unwrap();
        assert_eq!(again.replay().unwrap(), vec![(1, waiting)]);
    }

    /// Records of an earlier version (a file per change) are replayed and
    /// removed when done; an unreadable one stays for inspection, and a
    /// half-written temporary file goes.
    #[test]
    fn an_earlier_versions_records_are_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let ops = dir.path().join("ops");
        fs::create_dir_all(&ops).unwrap();
        let del = NsOp::Delete {
            key: "p/old".into(),
        };
        fs::write(record_path(&ops, 5), serde_json::to_vec(&del).unwrap()).unwrap();
        fs::write(record_path(&ops, 6), b"{").unwrap();
        fs::write(ops.join("00000000000000000007.tmp"), b"").unwrap();
        assert_eq!(recorded(dir.path()).unwrap(), 2);
        let log = OpLog::open(dir.path()).unwrap();
        assert_eq!(log.replay().unwrap(), vec![(5, del)]);
        assert!(!ops.join("00000000000000000007.tmp").exists());
        log.remove(5);
        assert!(!record_path(&ops, 5).exists());
        assert!(record_path(&ops, 6).exists());
        assert_eq!(recorded(dir.path()).unwrap(), 1);
        // A later record of the same change replaces the earlier file.
        let set = NsOp::Delete {
            key: "p/new".into(),
        };
        fs::write(record_path(&ops, 8), serde_json::to_vec(&set).unwrap()).unwrap();
        let log = OpLog::open(dir.path()).unwrap();
        log.replay().unwrap();
        log.write(8, &set).unwrap();
        assert!(!record_path(&ops, 8).exists());
        assert_eq!(log.replay().unwrap(), vec![(8, set)]);
    }

    /// A metadata change keeps the size it was queued with, and a record
    /// written before it had one (an earlier version) reads back without.
    #[test]
    fn a_metadata_change_keeps_its_size_and_older_records_read_without() {
        let sized = NsOp::SetMeta {
            key: "p/f".into(),
            meta: PutMeta::default(),
            size: Some(42),
        };
        let json = serde_json::to_string(&sized).unwrap();
        assert_eq!(serde_json::from_str::<NsOp>(&json).unwrap(), sized);
        let older = r#"{"op":"set_meta","key":"p/f","meta":{"content_type":null,"metadata":{}}}"#;
        let NsOp::SetMeta { size, .. } = serde_json::from_str::<NsOp>(older).unwrap() else {
            panic!("not a metadata change")
        };
        assert_eq!(size, None);
    }
}
