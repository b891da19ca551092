//! Upload while writing, against the in-memory store: parts of a file
//! written by appends go up before fsync or close, which then send only the
//! tail; every other change (an overwrite, a truncate, a chmod, a rename,
//! an unlink) and store faults still end with exactly the written content.

use super::objectfs_fixture;
use objectfs::store::StoreError;
use objectfs::{OpenFlags, ROOT_INO, SetAttr, UploadMode};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// The shared fixture, with the helpers these tests use.
struct Fixture(objectfs_fixture::Fixture);

impl std::ops::Deref for Fixture {
    type Target = objectfs_fixture::Fixture;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Long enough that only unmount's hurry starts a closed file's upload:
/// whatever went up before it went up while writing.
const NO_DELAY_EXPIRES: Duration = Duration::from_secs(3600);

fn fixture(upload: UploadMode) -> Fixture {
    fixture_with_delay(upload, NO_DELAY_EXPIRES)
}

fn fixture_with_delay(upload: UploadMode, upload_delay: Duration) -> Fixture {
    Fixture(objectfs_fixture::fixture_with(upload, |o| {
        o.upload_delay = upload_delay;
        o.flush_timeout = Duration::from_secs(60);
    }))
}

/// Distinct bytes for each `seed`, so a part in the wrong place shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i / 4093) as u8).wrapping_mul(31) ^ (i as u8) ^ seed)
        .collect()
}

impl Fixture {
    fn create(&self, name: &str) -> u64 {
        self.fs.create(ROOT_INO, name, 0o644, 1, 2, true).unwrap().1
    }

    fn ino(&self, name: &str) -> u64 {
        self.fs.lookup(ROOT_INO, name).unwrap().ino
    }

    /// Appends `data` at `offset` in 1 MiB writes, as the kernel sends them.
    fn write_at(&self, fh: u64, offset: usize, data: &[u8]) {
        for (i, chunk) in data.chunks(MIB).enumerate() {
            let n = self.fs.write(fh, (offset + i * MIB) as u64, chunk).unwrap();
            assert_eq!(n as usize, chunk.len());
        }
    }

    fn parts(&self) -> u64 {
        self.mem.counters.parts.load(Ordering::Relaxed)
    }

    fn puts(&self) -> u64 {
        self.mem.counters.puts.load(Ordering::Relaxed)
    }

    /// Waits (a minute at most) until `cond` holds about the store.
    fn until(&self, what: &str, cond: impl Fn(&Fixture) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond(self) {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn object(&self, name: &str) -> Option<Vec<u8>> {
        self.mem.object(&format!("pre/{name}")).map(|b| b.to_vec())
    }
}

/// Compares without printing megabytes.
fn assert_same(got: Option<Vec<u8>>, want: &[u8]) {
    let got = got.expect("the object exists");
    assert_eq!(got.len(), want.len(), "object size");
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    assert_eq!(first, None, "first differing byte");
}

#[test]
fn parts_go_up_while_writing_and_fsync_sends_only_the_tail() {
    let f = fixture(UploadMode::Sync);
    let fh = f.create("big");
    // Five complete 8 MiB parts and a 1.5 MiB tail.
    let data = pattern(41 * MIB + MIB / 2, 1);
    f.write_at(fh, 0, &data);
    f.until("the five complete parts uploaded", |f| f.parts() == 5);
    assert_eq!(f.object("big"), None, "nothing visible before completion");
    f.fs.fsync(fh).unwrap();
    assert_eq!(f.parts(), 6, "fsync sent only the tail part");
    assert_eq!(f.puts(), 0);
    assert_same(f.object("big"), &data);
    assert_eq!(f.mem.open_uploads(), 0);
    f.fs.flush(fh).unwrap();
    f.fs.release(fh).unwrap();
    assert_eq!(f.parts(), 6, "close found nothing left to upload");
    assert_eq!(f.fs.pending_bytes(), 0);
    let meta = f.mem.object_meta("pre/big").unwrap();
    assert_eq!(meta.metadata["mode"], (libc::S_IFREG | 0o644).to_string());
    assert_eq!(meta.metadata["uid"], "1");
}

#[test]
fn a_file_that_stays_small_goes_up_in_one_put() {
    let f = fixture(UploadMode::Sync);
    let fh = f.create("small");
    let data = pattern(16 * MIB, 2);
    f.write_at(fh, 0, &data);
    f.fs.fsync(fh).unwrap();
    assert_eq!((f.parts(), f.puts()), (0, 1));
    assert_same(f.object("small"), &data);
    f.fs.release(fh).unwrap();
}

#[test]
fn an_overwrite_after_parts_went_up_falls_back_to_the_whole_file() {
    let f = fixture(UploadMode::Sync);
    let fh = f.create("over");
    let mut data = pattern(24 * MIB, 3);
    f.write_at(fh, 0, &data);
    f.until("three parts uploaded", |f| f.parts() == 3);
    let patch = pattern(MIB, 4);
    f.write_at(fh, 0, &patch);
    data[..MIB].copy_from_slice(&patch);
    let more = pattern(6 * MIB, 5);
    f.write_at(fh, data.len(), &more);
    data.extend_from_slice(&more);
    f.fs.fsync(fh).unwrap();
    assert_same(f.object("over"), &data);
    // The 30 MiB went up whole again: four more parts.
    assert_eq!(f.parts(), 3 + 4);
    f.until("the dropped upload aborted", |f| f.mem.open_uploads() == 0);
    f.fs.release(fh).unwrap();
}

#[test]
fn a_truncate_while_streaming_falls_back_and_a_truncate_to_zero_starts_over() {
    let f = fixture(UploadMode::Sync);
    let fh = f.create("cut");
    let data = pattern(24 * MIB, 6);
    f.write_at(fh, 0, &data);
    f.until("three parts uploaded", |f| f.parts() == 3);
    let ino = f.ino("cut");
    let set = SetAttr {
        size: Some(10 * MIB as u64),
        ..Default::default()
    };
    f.fs.setattr(ino, set).unwrap();
    let mut want = data[..10 * MIB].to_vec();
    let more = pattern(4 * MIB, 7);
    f.write_at(fh, want.len(), &more);
    want.extend_from_slice(&more);
    f.fs.fsync(fh).unwrap();
    assert_same(f.object("cut"), &want);
    assert_eq!((f.parts(), f.puts()), (3, 1), "14 MiB: one PUT");
    f.until("the dropped upload aborted", |f| f.mem.open_uploads() == 0);
    f.fs.release(fh).unwrap();

    // O_TRUNC (as dd without conv=notrunc does) and a new sequential write:
    // a new upload while writing.
    let fh =
        f.fs.open(
            ino,
            OpenFlags {
                write: true,
                truncate: true,
            },
        )
        .unwrap();
    let data = pattern(20 * MIB, 8);
    f.write_at(fh, 0, &data);
    f.until("two parts of the new content", |f| f.parts() == 5);
    f.fs.fsync(fh).unwrap();
    assert_eq!(f.parts(), 6);
    assert_same(f.object("cut"), &data);
    f.fs.release(fh).unwrap();
}

#[test]
fn store_faults_during_part_uploads_still_end_with_the_right_content() {
    let f = fixture(UploadMode::Sync);
    let fh = f.create("faulty");
    let data = pattern(41 * MIB, 9);
    f.write_at(fh, 0, &data[..20 * MIB]);
    f.until("two parts uploaded", |f| f.parts() == 2);
    // One of the next parts fails for good; it goes again with the tail.
    f.mem
        .fail_next(1, StoreError::permanent("UploadPart", "pre/faulty", "boom"));
    f.write_at(fh, 20 * MIB, &data[20 * MIB..]);
    f.until("parts 3 to 5 tried, one failed", |f| f.parts() == 4);
    // Throttling while the rest goes: retried.
    f.mem
        .fail_next(2, StoreError::throttled("UploadPart", "pre/faulty", "503"));
    f.fs.fsync(fh).unwrap();
    assert_same(f.object("faulty"), &data);
    assert_eq!(f.parts(), 6, "each of the six parts once");
    assert_eq!(f.mem.open_uploads(), 0);
    f.fs.release(fh).unwrap();
}

#[test]
fn a_failing_completion_falls_back_to_the_whole_file() {
    let f = fixture(UploadMode::Sync);
    let fh = f.create("done");
    let data = pattern(20 * MIB, 10);
    f.write_at(fh, 0, &data);
    f.until("two parts uploaded", |f| f.parts() == 2);
    // The tail's part fails for good at the finish: the whole file goes.
    f.mem
        .fail_next(1, StoreError::permanent("UploadPart", "pre/done", "boom"));
    f.fs.fsync(fh).unwrap();
    assert_same(f.object("done"), &data);
    assert_eq!(f.parts(), 2 + 3);
    f.until("the failed upload aborted", |f| f.mem.open_uploads() == 0);
    f.fs.release(fh).unwrap();
}

#[test]
fn in_async_mode_parts_go_before_close_and_the_tail_after_the_delay() {
    let f = fixture(UploadMode::Async);
    let fh = f.create("a");
    let data = pattern(20 * MIB + 5, 11);
    f.write_at(fh, 0, &data);
    f.fs.flush(fh).unwrap();
    f.fs.release(fh).unwrap();
    f.until("the two complete parts uploaded", |f| f.parts() == 2);
    assert_eq!(f.object("a"), None, "the tail waits for the upload delay");
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.parts(), 3);
    assert_same(f.object("a"), &data);
}

#[test]
fn a_background_upload_waits_while_the_file_is_still_being_appended() {
    // As a shell redirect or dd does: the first descriptor is closed (its
    // upload queued) before the data is written through a duplicate.
    // The delay is long enough for the appends to start the upload while
    // writing (past 16 MiB) before the queued upload's turn, even on a
    // loaded machine; the queued upload then defers to it.
    let f = fixture_with_delay(UploadMode::Async, Duration::from_millis(300));
    let fh = f.create("log");
    let data = pattern(24 * MIB + 100, 16);
    f.write_at(fh, 0, &data[..MIB]);
    f.fs.flush(fh).unwrap();
    f.write_at(fh, MIB, &data[MIB..]);
    f.until("the complete parts uploaded", |f| f.parts() == 3);
    // Several upload delays pass with the file open: nothing is completed.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(f.object("log"), None);
    f.fs.flush(fh).unwrap();
    f.fs.release(fh).unwrap();
    f.until("the object", |f| f.object("log").is_some());
    assert_same(f.object("log"), &data);
    assert_eq!((f.parts(), f.puts()), (4, 0), "each part once, no PUT");
    assert_eq!(f.fs.flush_all(), 0);
}

#[test]
fn a_chmod_while_streaming_uploads_the_new_mode() {
    let f = fixture(UploadMode::Sync);
    let fh = f.create("m");
    let data = pattern(24 * MIB, 12);
    f.write_at(fh, 0, &data);
    f.until("three parts uploaded", |f| f.parts() == 3);
    let set = SetAttr {
        perm: Some(0o600),
        ..Default::default()
    };
    f.fs.setattr(f.ino("m"), set).unwrap();
    f.fs.fsync(fh).unwrap();
    assert_same(f.object("m"), &data);
    let meta = f.mem.object_meta("pre/m").unwrap();
    assert_eq!(meta.metadata["mode"], (libc::S_IFREG | 0o600).to_string());
    f.until("the dropped upload aborted", |f| f.mem.open_uploads() == 0);
    f.fs.release(fh).unwrap();
}

#[test]
fn a_rename_while_streaming_uploads_under_the_new_name_only() {
    let f = fixture(UploadMode::Sync);
    let fh = f.create("old");
    let data = pattern(30 * MIB, 13);
    f.write_at(fh, 0, &data[..20 * MIB]);
    f.until("two parts uploaded", |f| f.parts() == 2);
    f.fs.rename(ROOT_INO, "old", ROOT_INO, "new", 0).unwrap();
    f.write_at(fh, 20 * MIB, &data[20 * MIB..]);
    f.fs.fsync(fh).unwrap();
    assert_same(f.object("new"), &data);
    assert_eq!(f.object("old"), None);
    f.until("the stale upload aborted", |f| f.mem.open_uploads() == 0);
    f.fs.release(fh).unwrap();
    assert_eq!(f.mem.keys(), ["pre/new"]);
}

#[test]
fn an_unlinked_file_leaves_no_object_and_no_upload() {
    let f = fixture(UploadMode::Sync);
    let fh = f.create("gone");
    f.write_at(fh, 0, &pattern(20 * MIB, 14));
    f.until("two parts uploaded", |f| f.parts() == 2);
    f.fs.unlink(ROOT_INO, "gone").unwrap();
    f.until("the upload aborted", |f| f.mem.open_uploads() == 0);
    f.write_at(fh, 20 * MIB, &pattern(10 * MIB, 15));
    f.fs.fsync(fh).unwrap();
    f.fs.release(fh).unwrap();
    assert_eq!(f.parts(), 2, "nothing more went up");
    assert_eq!(f.mem.open_uploads(), 0);
    assert!(f.mem.keys().is_empty(), "{:?}", f.mem.keys());
}
