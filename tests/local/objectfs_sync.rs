//! `upload=sync`'s promise that a change is in the bucket when it returns,
//! and that a crash at the moment the bucket changed (before the mount's own
//! bookkeeping) does not let the next mount undo it.

use super::objectfs_fixture::{Fixture, TO_CHANGE, chmod, fixture, snapshot, wait_until};
use objectfs::store::{PutMeta, StoreError};
use objectfs::{OpenFlags, ROOT_INO, UploadMode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// `x` uploaded, then written again and not yet flushed (its new bytes
/// journalled for the next mount), with the handle left open.
fn x_with_unsent_bytes() -> (Fixture, u64) {
    let f = fixture(UploadMode::Sync);
    let (_, fh) = f.fs.create(ROOT_INO, "x", 0o644, 0, 0, true).unwrap();
    f.fs.write(fh, 0, b"first").unwrap();
    f.fs.fsync(fh).unwrap();
    f.fs.write(fh, 5, b" second").unwrap();
    (f, fh)
}

/// The process dies once the unlink's delete has landed, before the
/// unlink returned: the next mount must not upload the unsent bytes at
/// the name the user removed.
#[test]
fn a_crash_once_a_sync_unlink_deleted_the_object_does_not_bring_it_back() {
    let (f, _fh) = x_with_unsent_bytes();
    let earlier = tempfile::tempdir().unwrap();
    let (cache, to) = (f.cache.path().to_path_buf(), earlier.path().to_path_buf());
    f.mem
        .after_deletes(Some(Arc::new(move |_| snapshot(&cache, &to))));
    f.unlink("x").unwrap();
    f.mem.after_deletes(None);
    assert!(
        earlier.path().join("staging").exists(),
        "taken at the delete"
    );
    let f = f.crash_onto(earlier);
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.keys(), Vec::<String>::new(), "x came back");
}

/// The store refuses the delete: the unlink fails, the file stays, and its
/// unsent bytes are still journalled (a crash then uploads them).
#[test]
fn a_sync_unlink_the_store_refuses_keeps_the_unsent_bytes_journalled() {
    let (f, _fh) = x_with_unsent_bytes();
    f.mem
        .fail_next(1, StoreError::access_denied("DeleteObject", "pre/x", "no"));
    assert_eq!(f.unlink("x"), Err(libc::EACCES));
    assert_eq!(f.list("").unwrap(), ["x"]);
    let f = f.crash();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/x").as_deref(), Some(&b"first second"[..]));
}

/// chmod of a file open for reading (its clean copy attached to the open
/// file) is in the bucket when chmod returns, as a metadata rewrite (it
/// waited for a whole upload after the last close, which a reader kept open
/// holds back).
#[test]
fn a_sync_chmod_of_a_file_open_for_reading_reaches_the_bucket_at_once() {
    let f = fixture(UploadMode::Sync);
    f.write_file("x", b"data").unwrap();
    let ino = f.ino("x").unwrap();
    let fh = f.fs.open(ino, OpenFlags::default()).unwrap();
    assert_eq!(f.fs.read(fh, 0, 4).unwrap(), &b"data"[..]);
    let puts = f.mem.counters.puts.load(Ordering::Relaxed);
    f.fs.setattr(ino, chmod(0o600)).unwrap();
    let mode = &f.mem.object_meta("pre/x").unwrap().metadata["mode"];
    assert_eq!(mode, &(libc::S_IFREG | 0o600).to_string());
    f.fs.release(fh).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    let puts_after = f.mem.counters.puts.load(Ordering::Relaxed);
    assert_eq!(puts_after, puts, "the data was uploaded again");
}

/// A listing that begins after a sync rename moved the name in the table,
/// while the old key's delete is still on its way, does not bring the old
/// name back (it showed `a` beside `b`).
#[test]
fn a_listing_during_a_sync_renames_delete_does_not_bring_back_the_old_name() {
    let f = fixture(UploadMode::Sync);
    f.mem.insert("pre/a", b"data".to_vec(), PutMeta::default());
    f.mem.slow_deletes(Duration::from_millis(300));
    let listed = std::thread::scope(|s| {
        let renamed = s.spawn(|| f.rename("a", "b"));
        // Moved in the table (`b` alone is found once its copy landed,
        // before the move, when both names are still there).
        wait_until(|| f.fs.lookup(ROOT_INO, "a").err() == Some(libc::ENOENT));
        assert!(f.fs.lookup(ROOT_INO, "b").is_ok());
        let listed = f.list("");
        assert_eq!(renamed.join().unwrap(), Ok(()));
        listed
    });
    assert_eq!(listed.unwrap(), ["b"], "the old name is back");
}

/// A file whose writer the kernel lets write the local copy itself
/// (passthrough), fsynced (clean, its journal entry kept for the writer),
/// then unlinked while the store refuses the delete: the unlink fails, the
/// entry is back, and what the kernel writes to the copy next reaches the
/// bucket after a crash (the entry stayed dropped and those bytes were
/// lost).
#[test]
fn a_failed_sync_unlink_gives_back_the_journal_entry_a_direct_writer_keeps() {
    let f = fixture(UploadMode::Sync);
    f.write_file("f", b"v1").unwrap();
    let fh = f.fs.open(f.ino("f").unwrap(), TO_CHANGE).unwrap();
    f.fs.writes_directly(fh, false).unwrap();
    f.fs.fsync(fh).unwrap();
    let no = StoreError::access_denied("DeleteObject", "pre/f", "no");
    f.mem.refuse_writes_under(Some(("pre/f", no)));
    assert_eq!(f.unlink("f"), Err(libc::EACCES));
    f.mem.refuse_writes_under(None);
    // The kernel writes to the copy itself, the mount told nothing.
    let copies: Vec<_> = std::fs::read_dir(f.cache.path().join("staging"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::read(p).is_ok_and(|b| b == b"v1"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copy = std::fs::OpenOptions::new()
        .write(true)
        .open(&copies[0])
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&copy, b"v2", 2).unwrap();
    drop(copy);
    let f = f.crash();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/f").as_deref(), Some(&b"v1v2"[..]));
}
