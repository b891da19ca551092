//! A change to file data refused because the cache directory will not take
//! its journal entry (`chattr +i` on `staging/`, as a failing disk would
//! refuse it) changes nothing, here or in the bucket: an open whose writes
//! the kernel would make itself (passthrough). (A full disk's refusals:
//! `tests/fuse_s3/objectfs_disk_full.rs`.)

use super::objectfs_fixture::{Frozen, TO_CHANGE, fixture_with};
use objectfs::layout::Posix;
use objectfs::{Kind, UploadMode};
use std::time::{Duration, UNIX_EPOCH};

/// An open for writing the kernel would serve itself (passthrough) is
/// refused: its release uploads nothing, and the set-uid bit the writer
/// could not keep is still there (it was cleared and uploaded).
#[test]
fn a_refused_passthrough_writer_changes_nothing() {
    require!(Root);
    let f = fixture_with(UploadMode::Async, |_| {});
    let posix = Posix {
        kind: Kind::File,
        perm: 0o4755,
        uid: 1000,
        gid: 1000,
        mtime: UNIX_EPOCH + Duration::from_secs(1_000_000_000),
        ctime: UNIX_EPOCH + Duration::from_secs(1_000_000_000),
    };
    f.mem
        .insert("pre/x", b"data".to_vec(), objectfs::layout::encode(&posix));
    let ino = f.ino("x").unwrap();
    let fh = f.fs.open(ino, TO_CHANGE).unwrap();
    let puts = f
        .mem
        .counters
        .puts
        .load(std::sync::atomic::Ordering::Relaxed);
    let frozen = Frozen::new(&f.cache.path().join("staging"));
    assert!(f.fs.writes_directly(fh, true).is_err());
    drop(frozen);
    f.fs.release(fh).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    let now = f
        .mem
        .counters
        .puts
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(now, puts, "uploaded");
    assert_eq!(f.fs.getattr(ino).unwrap().perm, 0o4755);
    let meta = f.mem.object_meta("pre/x").unwrap().metadata;
    assert_eq!(meta["mode"], (libc::S_IFREG | 0o4755).to_string());
}
