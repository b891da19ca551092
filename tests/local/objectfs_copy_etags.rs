//! Server-side copies (a rename, a metadata rewrite) against the in-memory
//! store, which gives the copy of an object uploaded in parts a new ETag as
//! S3 does: the mount takes the copy's ETag, so a cached copy of the same
//! bytes is still used, and data written after the copy reaches the name
//! after a crash rather than going beside it as a conflict; a copy of a
//! version the mount learnt was replaced meanwhile is not taken for it.

use super::objectfs_fixture::{Fixture, TO_CHANGE, chmod, fixture_with, mount, options};
use objectfs::{OpenFlags, ROOT_INO, UploadMode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// Past the size uploaded in one PUT: this file goes up in parts.
const BIG: usize = 17 * 1024 * 1024;

fn big() -> Vec<u8> {
    (0..BIG).map(|i| (i % 251) as u8).collect()
}

fn gets(f: &Fixture) -> u64 {
    f.mem.counters.gets.load(Ordering::Relaxed)
}

fn etag(f: &Fixture, key: &str) -> String {
    f.mem.etag(key).unwrap()
}

/// chmod of a file uploaded in parts whose clean copy is cached: the copy
/// onto itself gets a new ETag, and the next open still reads the cached
/// copy (no GET; it fetched the 17 MiB again).
#[test]
fn a_cached_copy_is_still_used_after_a_metadata_rewrite_changes_the_etag() {
    let f = fixture_with(UploadMode::Sync, |_| {});
    let data = big();
    f.write_file("big", &data).unwrap();
    let before = etag(&f, "pre/big");
    let ino = f.ino("big").unwrap();
    f.fs.setattr(ino, chmod(0o600)).unwrap();
    assert_ne!(
        etag(&f, "pre/big"),
        before,
        "the store's copy kept its ETag"
    );
    let got = gets(&f);
    assert_eq!(f.read_file("big").unwrap(), data);
    assert_eq!(gets(&f), got, "the cached copy was fetched again");
}

/// A queued chmod of a file uploaded in parts, then a write to it; the
/// process dies before either reaches the store. The next mount replays the
/// chmod (the object gets a new ETag) and puts the data at the name (it
/// went beside it, as a conflict with another writer).
#[test]
fn a_write_after_a_queued_chmod_reaches_the_name_after_a_crash() {
    let f = fixture_with(UploadMode::Async, |o| o.upload_delay = HOUR);
    let mut data = big();
    f.write_file("big", &data).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    let ino = f.ino("big").unwrap();
    f.fs.setattr(ino, chmod(0o600)).unwrap(); // queued for an hour
    let fh = f.fs.open(ino, TO_CHANGE).unwrap();
    f.fs.write(fh, 0, b"CHANGED").unwrap();
    let f = f.crash();
    data[..7].copy_from_slice(b"CHANGED");
    assert_eq!(f.mem.keys(), ["pre/big"], "the data went beside the name");
    assert!(f.mem.object("pre/big").unwrap() == data);
    let mode = &f.mem.object_meta("pre/big").unwrap().metadata["mode"];
    assert_eq!(mode, &(libc::S_IFREG | 0o600).to_string());
}

/// A file uploaded in parts renamed (the copy gets a new ETag), then
/// emptied and written within the metadata TTL (no HEAD or GET tells the
/// mount the new ETag); the process dies. The next mount puts the data at
/// the new name (it went beside it).
#[test]
fn a_write_after_a_rename_reaches_the_new_name_after_a_crash() {
    let f = fixture_with(UploadMode::Sync, |o| o.metadata_ttl = HOUR);
    f.write_file("big", &big()).unwrap();
    f.rename("big", "moved").unwrap();
    let ino = f.ino("moved").unwrap();
    let fh =
        f.fs.open(
            ino,
            OpenFlags {
                write: true,
                truncate: true,
            },
        )
        .unwrap();
    f.fs.write(fh, 0, b"new").unwrap();
    let f = f.crash();
    assert_eq!(f.mem.keys(), ["pre/moved"], "the data went beside the name");
    assert_eq!(f.mem.object("pre/moved").as_deref(), Some(&b"new"[..]));
}

/// Another client rewrote a cached file (same size) and this mount, not
/// knowing yet, chmods it: the copy onto itself is of the other client's
/// version, so its ETag is not taken for the cached bytes (they were
/// relabelled with it and served as the new version).
#[test]
fn a_chmod_after_another_clients_rewrite_does_not_relabel_the_old_copy() {
    let f = fixture_with(UploadMode::Sync, |_| {});
    f.write_file("x", b"AAAA").unwrap();
    let ino = f.ino("x").unwrap();
    f.mem.insert("pre/x", b"BBBB".to_vec(), Default::default());
    f.fs.setattr(ino, chmod(0o600)).unwrap();
    assert_eq!(f.read_file("x").unwrap(), b"BBBB");
}

/// `d/big` (uploaded in parts) in a directory renamed to `e`, the rename
/// queued and then sent (its copy of `big` gets a new ETag); the file is
/// then emptied and written, and the process dies. The next mount puts the
/// data at the new name (it went beside it, as a conflict).
#[test]
fn a_write_after_a_directory_rename_reaches_the_new_name_after_a_crash() {
    let f = fixture_with(UploadMode::Async, |o| o.metadata_ttl = HOUR);
    rewrite_after_a_directory_rename(f, true);
}

/// The same directory rename, then a read of the file past the TTL: its
/// cached copy is still used (the HEAD showed the copy's new ETag, and the
/// 17 MiB were fetched again).
#[test]
fn a_cached_copy_is_still_used_after_a_directory_rename() {
    let f = fixture_with(UploadMode::Async, |_| {});
    let data = big();
    f.mkdir("d").unwrap();
    f.write_file("d/big", &data).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    f.rename("d", "e").unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    assert_ne!(etag(&f, "pre/e/big"), "", "copied");
    let got = gets(&f);
    assert_eq!(f.read_file("e/big").unwrap(), data);
    assert_eq!(gets(&f), got, "the cached copy was fetched again");
}

/// A file whose clean copy is cached renamed, then read past the TTL: the
/// cached copy moved with the rename (it was dropped, and the file fetched
/// again).
#[test]
fn a_cached_copy_is_still_used_after_a_file_rename() {
    let f = fixture_with(UploadMode::Sync, |_| {});
    let data = big();
    f.write_file("big", &data).unwrap();
    f.rename("big", "moved").unwrap();
    let got = gets(&f);
    assert_eq!(f.read_file("moved").unwrap(), data);
    assert_eq!(gets(&f), got, "the cached copy was fetched again");
}

/// The same write made while the directory rename is still queued (the
/// file still read from its old key); the process dies before either is
/// sent. The next mount replays the rename (the copy gets a new ETag) and
/// puts the data at the new name (it went beside it, as a conflict).
#[test]
fn a_write_during_a_queued_directory_rename_reaches_the_new_name_after_a_crash() {
    let f = fixture_with(UploadMode::Async, |o| {
        o.metadata_ttl = HOUR;
        o.upload_delay = HOUR;
    });
    rewrite_after_a_directory_rename(f, false);
}

/// `d/big` (in parts) uploaded, `d` renamed to `e` (the rename sent when
/// `sent`, else still queued), `e/big` emptied and written, and the
/// process dies: the next mount has the data at the new name (it went
/// beside it, as a conflict).
fn rewrite_after_a_directory_rename(f: Fixture, sent: bool) {
    f.mkdir("d").unwrap();
    f.write_file("d/big", &big()).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    f.rename("d", "e").unwrap();
    if sent {
        assert_eq!(f.fs.flush_all(), 0);
    }
    let ino = f.ino("e/big").unwrap();
    let truncate = OpenFlags {
        write: true,
        truncate: true,
    };
    let fh = f.fs.open(ino, truncate).unwrap();
    f.fs.write(fh, 0, b"new").unwrap();
    let f = f.crash();
    assert_eq!(f.mem.keys(), ["pre/e/", "pre/e/big"], "beside the name");
    assert_eq!(f.mem.object("pre/e/big").as_deref(), Some(&b"new"[..]));
}

/// A file uploaded in parts, open for reading on a second mount that has no
/// copy of it, and there chmod-ed or renamed: the copy in the store has a
/// new ETag but the same bytes, so the open file reads on (its reads after
/// the copy failed with ESTALE, as if another client had rewritten it).
#[test]
fn an_open_file_reads_on_after_this_mounts_own_copy_changes_its_etag() {
    for (upload, change) in [
        (UploadMode::Sync, "chmod"),
        (UploadMode::Sync, "rename"),
        (UploadMode::Async, "chmod"),
        (UploadMode::Async, "rename"),
    ] {
        let writer = fixture_with(UploadMode::Sync, |_| {});
        let data = big();
        writer.write_file("big", &data).unwrap();
        let before = etag(&writer, "pre/big");
        let cache = tempfile::tempdir().unwrap();
        let opts = options(cache.path(), upload);
        let f = mount(writer.mem.clone(), cache, opts);
        let ino = f.ino("big").unwrap();
        let fh = f.fs.open(ino, OpenFlags::default()).unwrap();
        assert_eq!(f.fs.read(fh, 0, 4096).unwrap(), data[..4096]);
        let key = match change {
            "chmod" => {
                f.fs.setattr(ino, chmod(0o600)).unwrap();
                "pre/big"
            }
            _ => {
                f.fs.rename(ROOT_INO, "big", ROOT_INO, "moved", 0).unwrap();
                "pre/moved"
            }
        };
        assert_eq!(f.fs.flush_all(), 0);
        assert_ne!(etag(&f, key), before, "{change}: the copy kept its ETag");
        let at = 12 * 1024 * 1024;
        assert_eq!(
            f.fs.read(fh, at as u64, 4096),
            Ok(data[at..at + 4096].to_vec().into()),
            "{upload:?} {change}"
        );
        f.fs.release(fh).unwrap();
    }
}

/// Another client rewrites `x` (longer) just after a rename's copy of it
/// landed, and this mount learns of that before the rename changes its
/// table: `y` then holds the copied bytes, the version before the rewrite,
/// and is read as such, at that version's size (the node took the copy's
/// ETag with the rewrite's attributes and read the old bytes at the new
/// size). The copy takes longer than the TTL, so the stat made during it
/// asks the store; `y` is checked within the TTL after the rename, before
/// anything else would ask again (a slower machine only weakens the test).
#[test]
fn a_rewrite_learnt_between_a_renames_copy_and_its_end_is_not_taken_for_the_copy() {
    let ttl = Duration::from_millis(500);
    let f = fixture_with(UploadMode::Sync, |o| o.metadata_ttl = ttl);
    f.mem.insert("pre/x", b"old".to_vec(), Default::default());
    let ino = f.ino("x").unwrap();
    f.mem.slow_copies(ttl + Duration::from_millis(200));
    let newer = b"another client's longer version".to_vec();
    let (mem, fs, once) = (f.mem.clone(), f.fs.clone(), AtomicBool::new(false));
    let learnt = Arc::new(Mutex::new(None));
    let seen = learnt.clone();
    f.mem.after_copies(Some(Arc::new(move |src: &str| {
        if src != "pre/x" || once.swap(true, Ordering::SeqCst) {
            return;
        }
        mem.insert("pre/x", newer.clone(), Default::default());
        // What a stat of the file at this moment makes the mount learn.
        let (fs, (tx, rx)) = (fs.clone(), std::sync::mpsc::channel());
        std::thread::spawn(move || tx.send(fs.getattr(ino).map(|a| a.size)));
        *seen.lock().unwrap() = Some(rx.recv_timeout(Duration::from_secs(10)));
    })));
    f.rename("x", "y").unwrap();
    f.mem.after_copies(None);
    let learnt = learnt.lock().unwrap().take();
    assert_eq!(learnt, Some(Ok(Ok(31))), "the stat during the rename");
    assert_eq!(f.fs.getattr(ino).unwrap().size, 3, "y's size");
    assert_eq!(f.read_file("y").unwrap(), b"old");
    assert_eq!(f.mem.object("pre/y").as_deref(), Some(&b"old"[..]));
}
