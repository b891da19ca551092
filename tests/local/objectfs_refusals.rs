//! Uploads the store refuses, against the in-memory store: files under a
//! prefix a bucket policy denies do not hold up the uploads of others, a
//! name whose key would be longer than the store takes is refused at
//! once, and data an earlier mount staged that the store refuses for good
//! does not stop the next mount.

use super::objectfs_fixture::{fixture_with, wait_until};
use objectfs::store::{KEY_MAX, StoreError};
use objectfs::{ROOT_INO, UploadMode};
use std::time::Duration;

/// More files the store keeps refusing than there are upload workers (8):
/// a file written after them still reaches the bucket at once, and they do
/// once the policy is lifted.
#[test]
fn files_the_store_keeps_refusing_do_not_hold_up_the_others() {
    let f = fixture_with(UploadMode::Async, |_| {});
    f.mkdir("no").unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    let denied = StoreError::access_denied("PutObject", "pre/no/", "denied by policy");
    f.mem.refuse_writes_under(Some(("pre/no/", denied)));
    for i in 0..12 {
        f.write_file(&format!("no/f{i}"), b"denied").unwrap();
    }
    std::thread::sleep(Duration::from_millis(300)); // (their first round)
    f.write_file("ok", b"fine").unwrap();
    let landed = || f.mem.object("pre/ok").is_some();
    wait_until(landed);
    let (in_time, f0) = (landed(), f.mem.object("pre/no/f0"));
    f.mem.refuse_writes_under(None);
    assert!(in_time, "an upload waited behind files the store refuses");
    assert_eq!(f0, None);
    assert_eq!(f.fs.flush_all(), 0);
    for i in 0..12 {
        let key = format!("pre/no/f{i}");
        assert_eq!(f.mem.object(&key).as_deref(), Some(&b"denied"[..]), "{key}");
    }
}

/// A file whose upload keeps failing in long rounds (a prefix the store
/// throttles: each round retries for about a minute), flushed again and
/// again meanwhile through its open handle (each close does the same): the
/// flushes start no uploads of their own, which waited for that round
/// holding the upload workers, so another file still lands at once.
#[test]
fn closes_of_a_file_whose_upload_keeps_failing_hold_no_workers() {
    let f = fixture_with(UploadMode::Async, |_| {});
    f.mkdir("slow").unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    let throttled = StoreError::transient("PutObject", "pre/slow/", "SlowDown");
    f.mem.refuse_writes_under(Some(("pre/slow/", throttled)));
    let slow = f.ino("slow").unwrap();
    let (_, fh) = f.fs.create(slow, "f", 0o644, 0, 0, true).unwrap();
    for i in 0..12u8 {
        f.fs.write(fh, 0, &[b'0' + i]).unwrap();
        f.fs.flush(fh).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    f.write_file("ok", b"fine").unwrap();
    let landed = || f.mem.object("pre/ok").is_some();
    wait_until(landed);
    let in_time = landed();
    f.mem.refuse_writes_under(None);
    assert!(
        in_time,
        "an upload waited behind the flushes of another file"
    );
    f.fs.release(fh).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/slow/f").as_deref(), Some(&b";"[..]));
}

/// A name whose key would pass the store's limit gets ENAMETOOLONG from
/// create, mkdir, symlink and rename (its upload would be refused for
/// good); one byte shorter is taken.
#[test]
fn a_name_whose_key_the_store_would_refuse_is_too_long() {
    let f = fixture_with(UploadMode::Async, |_| {});
    // "pre/" + a/ + b/ + name = KEY_MAX + 1
    f.mkdir("a").unwrap();
    f.mkdir("a/b").unwrap();
    let a = f.ino("a").unwrap();
    let b = f.ino("a/b").unwrap();
    let fits = KEY_MAX - "pre/a/b/".len();
    let long = "n".repeat(fits + 1);
    assert_eq!(
        f.fs.create(b, &long, 0o644, 0, 0, true).map(drop),
        Err(libc::ENAMETOOLONG)
    );
    assert_eq!(
        f.fs.symlink(b, &long, b"t", 0, 0).map(drop),
        Err(libc::ENAMETOOLONG)
    );
    // A directory's marker has one byte more.
    assert_eq!(
        f.fs.mkdir(b, &long[1..], 0o755, 0, 0).map(drop),
        Err(libc::ENAMETOOLONG)
    );
    let (_, fh) = f.fs.create(ROOT_INO, "x", 0o644, 0, 0, true).unwrap();
    f.fs.release(fh).unwrap();
    assert_eq!(
        f.fs.rename(ROOT_INO, "x", b, &long, 0),
        Err(libc::ENAMETOOLONG)
    );
    // The directory "a" renamed to a name as long: its marker passes.
    let dir_name = "d".repeat(KEY_MAX - "pre/".len());
    assert_eq!(
        f.fs.rename(ROOT_INO, "a", ROOT_INO, &dir_name, 0),
        Err(libc::ENAMETOOLONG)
    );
    let _ = a;
    let fitting = &long[1..];
    f.write_file(&format!("a/b/{fitting}"), b"kept").unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    let key = format!("pre/a/b/{fitting}");
    assert_eq!(key.len(), KEY_MAX);
    assert_eq!(f.mem.object(&key).as_deref(), Some(&b"kept"[..]));
}

/// An earlier mount staged data the store now refuses for good (here a
/// failure injected on every try): the next mount starts, with the data
/// left in the cache directory, and other staged files uploaded.
#[test]
fn staged_data_the_store_refuses_for_good_does_not_stop_the_next_mount() {
    let f = fixture_with(UploadMode::Async, |o| {
        o.upload_delay = Duration::from_secs(3600)
    });
    f.write_file("a", b"first").unwrap();
    f.write_file("b", b"second").unwrap();
    let refused = StoreError::permanent("PutObject", "pre/a", "InvalidArgument");
    f.mem.refuse_writes_under(Some(("pre/a", refused)));
    let f = f.crash();
    assert_eq!(f.mem.object("pre/a"), None);
    assert_eq!(f.mem.object("pre/b").as_deref(), Some(&b"second"[..]));
    // Still there for the next mount (or an operator).
    f.mem.refuse_writes_under(None);
    let f = f.crash();
    assert_eq!(f.mem.object("pre/a").as_deref(), Some(&b"first"[..]));
}
