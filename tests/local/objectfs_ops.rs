//! Queued namespace changes (`upload=async`) against the in-memory store,
//! where they meet failures: an upload that fails after it dropped a
//! queued delete (then unlinked, renamed, or the process killed), a
//! marker written for chmod then removed, an fsync waiting for a change
//! the store cannot take (and not for one of another name), and a
//! truncate by path whose upload failed.

use super::objectfs_fixture::{Fixture, Frozen, TO_CHANGE, fixture_with};
use objectfs::store::{PutMeta, StoreError};
use objectfs::{ROOT_INO, SetAttr, UploadMode};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// `x` was in the bucket; it is deleted (the delete queued), made again,
/// and the new data's fsync fails once, after the upload had already
/// dropped the queued delete as pointless.
fn old_x_then_a_new_x_whose_upload_failed() -> Fixture {
    let f = fixture_with(UploadMode::Async, |o| o.upload_delay = HOUR);
    f.mem.insert("pre/x", b"old".to_vec(), PutMeta::default());
    f.unlink("x").unwrap();
    let (_, fh) = f.fs.create(ROOT_INO, "x", 0o644, 0, 0, true).unwrap();
    f.fs.write(fh, 0, b"new").unwrap();
    f.mem
        .fail_next(1, StoreError::access_denied("PutObject", "pre/x", "no"));
    assert_eq!(f.fs.fsync(fh), Err(libc::EACCES));
    f.fs.release(fh).unwrap();
    f
}

/// Unlinked again: the old object still goes (it does not come back).
#[test]
fn a_failed_upload_keeps_the_name_deletable_by_unlink() {
    let f = old_x_then_a_new_x_whose_upload_failed();
    f.unlink("x").unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/x"), None, "old x is back in the bucket");
    assert_eq!(f.list("").unwrap(), Vec::<String>::new());
}

/// Renamed instead: the new data lands at the new name, the old object goes.
#[test]
fn a_failed_upload_keeps_the_name_deletable_by_rename() {
    let f = old_x_then_a_new_x_whose_upload_failed();
    f.rename("x", "y").unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/y").as_deref(), Some(&b"new"[..]));
    assert_eq!(f.mem.object("pre/x"), None, "old x is back in the bucket");
}

/// The process dies instead: the next mount puts the new data at the name
/// (not beside the old object, as if the name had been free when the new
/// file was begun: the old object is still there, its delete dropped).
#[test]
fn a_crash_after_the_failed_upload_puts_the_new_data_at_the_name() {
    let f = old_x_then_a_new_x_whose_upload_failed().crash();
    assert_eq!(f.mem.object("pre/x").as_deref(), Some(&b"new"[..]));
    assert_eq!(f.mem.keys(), ["pre/x"], "only the new x");
}

/// A queued change the store refuses for good when the next mount replays
/// it (after a crash) is dropped, as the live sender drops it: the mount
/// starts (it failed, and so would every later one).
#[test]
fn a_replayed_change_the_store_refuses_for_good_does_not_stop_the_mount() {
    let f = fixture_with(UploadMode::Async, |o| o.upload_delay = HOUR);
    f.mem.insert("pre/x", b"data".to_vec(), PutMeta::default());
    let ino = f.ino("x").unwrap();
    let chmod = SetAttr {
        perm: Some(0o600),
        ..Default::default()
    };
    f.fs.setattr(ino, chmod).unwrap(); // queued for an hour
    f.mem
        .fail_next(1, StoreError::permanent("CopyObject", "pre/x", "refused"));
    let f = f.crash();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/x").as_deref(), Some(&b"data"[..]));
}

/// truncate(2) by path in sync mode while the store is down: EIO, and the
/// new size is uploaded once the store is back, without waiting for an
/// open of the file to close.
#[test]
fn a_failed_upload_of_a_truncate_by_path_is_retried_in_the_background() {
    let f = fixture_with(UploadMode::Sync, |_| {});
    f.write_file("f", b"abc").unwrap();
    let ino = f.ino("f").unwrap();
    f.mem.set_down(true);
    let cut = SetAttr {
        size: Some(1),
        ..Default::default()
    };
    assert_eq!(f.fs.setattr(ino, cut).map(drop), Err(libc::EIO));
    f.mem.set_down(false);
    let landed = || f.mem.object("pre/f").as_deref() == Some(&b"a"[..]);
    super::objectfs_fixture::wait_until(landed);
    assert!(landed(), "{:?}", f.mem.object("pre/f"));
}

/// A directory known from a listing (its marker not seen) is chmod'ed:
/// the marker written for it may replace one, so the rmdir after it still
/// deletes the marker.
#[test]
fn chmod_then_rmdir_of_a_listed_directory_removes_its_marker() {
    let f = fixture_with(UploadMode::Async, |o| {
        o.attrs_from_listing = true;
        o.upload_delay = HOUR;
        o.metadata_ttl = Duration::from_secs(60);
    });
    f.mem.insert("pre/d/", Vec::new(), PutMeta::default());
    assert_eq!(f.list("").unwrap(), vec!["d".to_string()]);
    let d = f.ino("d").unwrap();
    f.fs.setattr(
        d,
        SetAttr {
            perm: Some(0o700),
            ..Default::default()
        },
    )
    .unwrap();
    f.rmdir("d").unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.keys(), Vec::<String>::new(), "marker left behind");
}

/// fsync while a queued change of the same key cannot reach the store
/// (down): EIO within the bound, not a wait for the store; once it is back
/// everything lands.
#[test]
fn fsync_gives_eio_when_a_change_of_its_name_cannot_land() {
    let f = fixture_with(UploadMode::Async, |o| {
        o.metadata_ttl = Duration::from_secs(60);
    });
    f.mem.insert("pre/x", b"old".to_vec(), PutMeta::default());
    f.ino("x").unwrap();
    f.mem.set_down(true);
    f.unlink("x").unwrap();
    let (_, fh) = f.fs.create(ROOT_INO, "x", 0o644, 0, 0, true).unwrap();
    f.fs.write(fh, 0, b"new").unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the Delete is running
    let fs = f.fs.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(fs.fsync(fh)).unwrap());
    // Bounded: EIO (the data stays staged), not a wait for the store.
    let r = rx.recv_timeout(Duration::from_secs(40));
    f.mem.set_down(false);
    assert_eq!(r, Ok(Err(libc::EIO)), "fsync with the store down");
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/x").as_deref(), Some(&b"new"[..]));
}

/// fsync of `x` waits for queued changes of `x` only, not for those of
/// names that merely begin with it: a directory `x.tmp` whose marker the
/// store keeps refusing does not hold up `x` (it waited the whole bound,
/// then failed with EIO).
#[test]
fn fsync_does_not_wait_for_a_name_that_only_begins_with_its_own() {
    let f = fixture_with(UploadMode::Async, |o| o.upload_delay = HOUR);
    let busy = StoreError::transient("PutObject", "pre/x.tmp/", "busy");
    f.mem.refuse_puts_under(Some(("pre/x.tmp", busy)));
    f.mkdir("x.tmp").unwrap(); // its marker queued, and refused when sent
    let (_, fh) = f.fs.create(ROOT_INO, "x", 0o644, 0, 0, true).unwrap();
    f.fs.write(fh, 0, b"data").unwrap();
    let fs = f.fs.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(fs.fsync(fh)).unwrap());
    let r = rx.recv_timeout(Duration::from_secs(10));
    f.mem.refuse_puts_under(None);
    assert_eq!(r, Ok(Ok(())), "fsync of x");
    assert_eq!(f.mem.object("pre/x").as_deref(), Some(&b"data"[..]));
    f.fs.release(fh).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.keys(), ["pre/x", "pre/x.tmp/"]);
}

/// The store deleted `x`, but the journal could not say so (a full disk):
/// a new `x` is not uploaded until it can, for a crash now would make the
/// next mount replay the delete after the new data. Its fsync fails with
/// ENOSPC, and after a crash the new data is at the name.
#[test]
fn a_delete_not_journalled_as_done_holds_back_a_new_upload_of_its_key() {
    require!(Root); // chattr
    let f = fixture_with(UploadMode::Async, |o| o.upload_delay = HOUR);
    f.mem.insert("pre/x", b"old".to_vec(), PutMeta::default());
    f.mem.insert("pre/yy", b"old".to_vec(), PutMeta::default());
    f.unlink("x").unwrap(); // queued for an hour, journalled
    f.unlink("yy").unwrap();
    let frozen = Frozen::new(&f.cache.path().join("ops"));
    assert_eq!(f.fs.flush_all(), 0, "the deletes are sent");
    assert_eq!(f.mem.object("pre/x"), None);
    let (_, fh) = f.fs.create(ROOT_INO, "x", 0o644, 0, 0, true).unwrap();
    f.fs.write(fh, 0, b"new").unwrap();
    assert_eq!(f.fs.fsync(fh), Err(libc::ENOSPC));
    assert_eq!(f.mem.object("pre/x"), None, "uploaded before the journal");
    // Only the keys of those changes wait: "y" is not "yy".
    let (_, other) = f.fs.create(ROOT_INO, "y", 0o644, 0, 0, true).unwrap();
    f.fs.write(other, 0, b"y").unwrap();
    assert_eq!(f.fs.fsync(other), Ok(()));
    f.fs.release(other).unwrap();
    f.fs.release(fh).unwrap();
    let f = f.crash_frozen(frozen);
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/x").as_deref(), Some(&b"new"[..]));
}

/// An object from long ago (mtime 1,000,000,000, set-uid) rewritten in
/// place by a caller who is not root, then the process dies before the
/// upload: the next mount uploads the new bytes with the write's mtime and
/// without the set-uid bit, as the mount showed them (it uploaded the
/// attributes from before the write: the file looked unchanged to tools
/// that compare size and mtime, and kept set-uid on new content).
#[test]
fn a_crash_after_a_write_uploads_the_attributes_the_write_gave() {
    let f = fixture_with(UploadMode::Async, |o| o.upload_delay = HOUR);
    let old = objectfs::layout::encode(&objectfs::layout::Posix {
        kind: objectfs::Kind::File,
        perm: 0o4755,
        uid: 1000,
        gid: 1000,
        mtime: std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
        ctime: std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
    });
    f.mem.insert("pre/x", b"old".to_vec(), old);
    let ino = f.ino("x").unwrap();
    let fh = f.fs.open(ino, TO_CHANGE).unwrap();
    let before = std::time::SystemTime::now();
    f.fs.write_by(fh, 0, b"new", false).unwrap();
    f.fs.release(fh).unwrap();
    let shown = f.fs.getattr(ino).unwrap();
    assert_eq!(shown.perm, 0o755);
    let f = f.crash();
    assert_eq!(f.mem.object("pre/x").as_deref(), Some(&b"new"[..]));
    let meta = f.mem.object_meta("pre/x").unwrap().metadata;
    let mtime: f64 = meta["mtime"].parse().unwrap();
    let since = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(mtime as u64 >= since, "mtime {mtime}, the write at {since}");
    assert_eq!(meta["mode"], (libc::S_IFREG | 0o755).to_string());
}

/// The journal refuses the records of an unlink and a mkdir (a full disk):
/// each returns once its change is in the bucket, as in sync mode (they
/// returned with the change queued and not journalled: a crash then
/// brought `x` back and lost `d`).
#[test]
fn changes_the_journal_cannot_record_return_once_in_the_bucket() {
    require!(Root); // chattr
    let f = fixture_with(UploadMode::Async, |o| o.upload_delay = HOUR);
    f.mem.insert("pre/x", b"old".to_vec(), PutMeta::default());
    f.mkdir("a").unwrap(); // the journal's segment exists
    assert_eq!(f.fs.flush_all(), 0);
    let frozen = Frozen::new(&f.cache.path().join("ops"));
    f.unlink("x").unwrap();
    assert_eq!(f.mem.object("pre/x"), None, "the delete is only queued");
    f.mkdir("d").unwrap();
    assert!(
        f.mem.object("pre/d/").is_some(),
        "the marker is only queued"
    );
    let f = f.crash_frozen(frozen);
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.keys(), ["pre/a/", "pre/d/"]);
}

/// A file rename whose copy landed and whose old key's delete fails: the
/// rename is done (it returned EIO with the table already showing the new
/// name, and nothing sent the delete again: the old name came back after
/// the TTL); the delete is queued, retried, and the old name stays gone.
#[test]
fn a_file_renames_delete_the_store_refuses_for_a_while_is_retried() {
    let f = fixture_with(UploadMode::Async, |_| {});
    f.mem.insert("pre/a", b"data".to_vec(), PutMeta::default());
    let slow_down = StoreError::transient("DeleteObject", "pre/a", "503 Slow Down");
    f.mem.refuse_writes_under(Some(("pre/a", slow_down)));
    assert_eq!(f.rename("a", "b"), Ok(()));
    assert_eq!(f.list("").unwrap(), ["b"]);
    f.mem.refuse_writes_under(None);
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.keys(), ["pre/b"]);
    assert_eq!(f.list("").unwrap(), ["b"], "the old name is back");
}

/// A file with data not uploaded yet renamed while the cache directory
/// refuses to rewrite its journal entry (a full disk): the rename is
/// refused and changes nothing (it returned 0 with the entry still naming
/// the old key, and after a crash the next mount put the data back there).
#[test]
fn a_rename_whose_journal_entry_cannot_follow_is_refused() {
    refused_rename(&[], "a", "a", &["pre/a"]);
}

/// The same for a directory whose file has data not uploaded yet: the
/// rename of the directory is refused and changes nothing (it was queued,
/// the file's entry still named its old key, and after a crash the next
/// mount moved the directory, then put the file back under the old name).
#[test]
fn a_directory_rename_whose_files_journal_cannot_follow_is_refused() {
    refused_rename(&["d"], "d/f", "d", &["pre/d/", "pre/d/f"]);
}

/// Directories `dirs` made, then `file` written (staged, its upload an hour
/// away); `from` renamed while the cache directory refuses to rewrite
/// journal entries: EIO, nothing changed, and after a crash the bucket has
/// `keys`.
fn refused_rename(dirs: &[&str], file: &str, from: &str, keys: &[&str]) {
    require!(Root); // chattr
    let f = fixture_with(UploadMode::Async, |o| o.upload_delay = HOUR);
    for d in dirs {
        f.mkdir(d).unwrap();
    }
    f.write_file(file, b"data").unwrap();
    let frozen = Frozen::new(&f.cache.path().join("staging"));
    assert_eq!(f.rename(from, "renamed"), Err(libc::EIO));
    assert_eq!(f.list("").unwrap(), [from]);
    let f = f.crash_frozen(frozen);
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.keys(), keys);
}

/// `upload=sync`: `d/f` (in the bucket) written through a file still open,
/// then `d` renamed while the store refuses the copy: the rename fails and the
/// file's journal entry goes back to `d/f` with what the bucket had there.
/// The process dies; another client rewrote `d/f` meanwhile: the next
/// mount puts the data beside it as a conflict (the entry had lost what the
/// bucket had, and the data went over the other client's object).
#[test]
fn a_failed_directory_rename_keeps_what_the_bucket_had_under_its_files() {
    let f = fixture_with(UploadMode::Sync, |_| {});
    f.mem.insert("pre/d/f", b"old".to_vec(), PutMeta::default());
    let fh = f.fs.open(f.ino("d/f").unwrap(), TO_CHANGE).unwrap();
    f.fs.write(fh, 0, b"new").unwrap();
    let no = StoreError::access_denied("CopyObject", "pre/e/f", "no");
    f.mem.refuse_writes_under(Some(("pre/e/", no)));
    assert_eq!(f.rename("d", "e"), Err(libc::EACCES));
    f.mem.refuse_writes_under(None);
    f.mem
        .insert("pre/d/f", b"other".to_vec(), PutMeta::default());
    let f = f.crash();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/d/f").unwrap(), &b"other"[..]);
    let beside: Vec<String> = (f.mem.keys().into_iter())
        .filter(|k| k.starts_with("pre/d/f.conflict-"))
        .collect();
    assert_eq!(beside.len(), 1, "{:?}", f.mem.keys());
    assert_eq!(f.mem.object(&beside[0]).unwrap(), &b"new"[..]);
}

/// `x` in the bucket, unlinked (its delete queued for an hour) and made
/// again; its upload, which would drop the delete, comes while the cache
/// directory refuses to rewrite the journal entry (a full disk) and the
/// store refuses the PutObject; the process dies. The delete was sent
/// instead of dropped, so the next mount puts the data at `x` (the entry
/// still said the key was free, the old object was there, and the data
/// went beside it as a conflict with the old `x` back).
#[test]
fn an_upload_that_cannot_journal_over_a_queued_delete_sends_the_delete() {
    require!(Root); // chattr
    let f = fixture_with(UploadMode::Async, |o| o.upload_delay = HOUR);
    f.mem.insert("pre/x", b"old".to_vec(), PutMeta::default());
    f.unlink("x").unwrap();
    let (_, fh) = f.fs.create(ROOT_INO, "x", 0o644, 0, 0, true).unwrap();
    f.fs.write(fh, 0, b"new").unwrap();
    let no = StoreError::access_denied("PutObject", "pre/x", "no");
    f.mem.refuse_puts_under(Some(("pre/x", no)));
    let frozen = Frozen::new(&f.cache.path().join("staging"));
    assert_eq!(f.fs.fsync(fh), Err(libc::EACCES));
    f.mem.refuse_puts_under(None);
    let f = f.crash_frozen(frozen);
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.keys(), ["pre/x"]);
    assert_eq!(f.mem.object("pre/x").unwrap(), &b"new"[..]);
}
