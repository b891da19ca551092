//! What a file open for reading, without a local copy, reads when its object
//! is replaced under it: the version it began reading, or ESTALE, never the
//! other version's bytes (alone or mixed with the first's).

use super::objectfs_fixture::{Fixture, TO_CHANGE, fixture, fixture_with};
use objectfs::store::PutMeta;
use objectfs::{OpenFlags, ROOT_INO, UploadMode};
use std::time::Duration;

const MIB: usize = 1024 * 1024;

/// A 20 MiB object of `a`s (read in ranges, never copied whole) opened
/// and read from; then another client replaces it with `mib` MiB of `b`s.
/// Returns the file's inode and the open file.
fn open_then_rewritten_elsewhere(f: &Fixture, mib: usize) -> (u64, u64) {
    f.mem
        .insert("pre/big", vec![b'a'; 20 * MIB], PutMeta::default());
    let ino = f.ino("big").unwrap();
    let fh = f.fs.open(ino, OpenFlags::default()).unwrap();
    assert_eq!(f.fs.read(fh, 0, 4096).unwrap(), vec![b'a'; 4096]);
    f.mem
        .insert("pre/big", vec![b'b'; mib * MIB], PutMeta::default());
    (ino, fh)
}

/// A 20 MiB object (read in ranges, never copied whole) rewritten by
/// another client between two reads of one open file: the second read
/// fails with ESTALE (it returned the new version's bytes after the old
/// one's); the next open reads the new version.
#[test]
fn a_file_rewritten_elsewhere_while_open_fails_rather_than_mix_versions() {
    let f = fixture_with(UploadMode::Async, |o| {
        o.metadata_ttl = Duration::from_secs(3600)
    });
    let (_, fh) = open_then_rewritten_elsewhere(&f, 20);
    assert_eq!(f.fs.read(fh, (12 * MIB) as u64, 4096), Err(libc::ESTALE));
    f.fs.release(fh).unwrap();
    let fh =
        f.fs.open(f.ino("big").unwrap(), OpenFlags::default())
            .unwrap();
    assert_eq!(
        f.fs.read(fh, (12 * MIB) as u64, 4096).unwrap(),
        vec![b'b'; 4096]
    );
}

/// A file open for reading (nothing read yet, so no local copy) replaced
/// through this mount by a rename over it: its reads fail with ESTALE (they
/// returned the new file's bytes).
#[test]
fn a_file_replaced_by_a_rename_while_open_reads_estale_not_the_new_file() {
    let f = fixture(UploadMode::Sync);
    f.mem.insert("pre/x", vec![b'a'; 4096], PutMeta::default());
    let fh =
        f.fs.open(f.ino("x").unwrap(), OpenFlags::default())
            .unwrap();
    f.write_file("y", &[b'b'; 4096]).unwrap();
    f.fs.rename(ROOT_INO, "y", ROOT_INO, "x", 0).unwrap();
    assert_eq!(f.fs.read(fh, 0, 4096), Err(libc::ESTALE));
    assert_eq!(f.read_file("x").unwrap(), vec![b'b'; 4096]);
}

/// A 20 MiB object rewritten by another client while one open file reads
/// it: a file opened after that (the TTL past) reads the new version, at
/// its new size (it failed with ESTALE until the first file was closed,
/// the node keeping the old version while open); the first file fails.
#[test]
fn a_file_opened_after_a_rewrite_elsewhere_reads_the_new_version_while_another_is_open() {
    let f = fixture(UploadMode::Async);
    let (ino, first) = open_then_rewritten_elsewhere(&f, 21);
    assert_eq!(f.ino("big").unwrap(), ino);
    assert_eq!(f.fs.getattr(ino).unwrap().size, (21 * MIB) as u64);
    let second = f.fs.open(ino, OpenFlags::default()).unwrap();
    assert_eq!(
        f.fs.read(second, (20 * MIB) as u64, 4096).unwrap(),
        vec![b'b'; 4096]
    );
    assert_eq!(f.fs.read(first, (12 * MIB) as u64, 4096), Err(libc::ESTALE));
    f.fs.release(first).unwrap();
    f.fs.release(second).unwrap();
}

/// A 20 MiB object read in ranges by an open file, then replaced by
/// another client with 10 MiB, which a lookup learns: the open file's read
/// past 10 MiB fails with ESTALE (it returned an empty read, a clean end
/// of file, so a copy of it ended short without an error).
#[test]
fn an_open_file_whose_object_shrank_elsewhere_fails_rather_than_end_early() {
    let f = fixture(UploadMode::Async);
    let (ino, fh) = open_then_rewritten_elsewhere(&f, 10);
    assert_eq!(f.ino("big").unwrap(), ino);
    assert_eq!(f.fs.getattr(ino).unwrap().size, (10 * MIB) as u64);
    assert_eq!(f.fs.read(fh, (15 * MIB) as u64, 4096), Err(libc::ESTALE));
    f.fs.release(fh).unwrap();
}

/// The same, the object rewritten at the same size and then copied here
/// by a writer's open: the first file's next read fails with ESTALE (it
/// read the new version from that copy, after the old one's bytes).
#[test]
fn an_open_file_does_not_read_a_later_versions_copy() {
    let f = fixture(UploadMode::Async);
    let (ino, reader) = open_then_rewritten_elsewhere(&f, 20);
    assert_eq!(f.ino("big").unwrap(), ino);
    let writer = f.fs.open(ino, TO_CHANGE).unwrap();
    assert_eq!(f.fs.read(writer, 0, 4).unwrap(), b"bbbb".to_vec());
    assert_eq!(
        f.fs.read(reader, (12 * MIB) as u64, 4096),
        Err(libc::ESTALE)
    );
    f.fs.release(reader).unwrap();
    f.fs.release(writer).unwrap();
}

/// A file open without a local copy, its attributes past the TTL, while
/// the store is down: its getattr (an fstat) answers the last attributes
/// (it failed, since an open file is revalidated like any other).
#[test]
fn an_open_files_getattr_answers_while_the_store_is_down() {
    let f = fixture(UploadMode::Async);
    f.mem
        .insert("pre/big", vec![b'a'; 20 * MIB], PutMeta::default());
    let ino = f.ino("big").unwrap();
    let fh = f.fs.open(ino, OpenFlags::default()).unwrap();
    f.mem.set_down(true);
    assert_eq!(f.fs.getattr(ino).unwrap().size, (20 * MIB) as u64);
    f.mem.set_down(false);
    f.fs.release(fh).unwrap();
}
