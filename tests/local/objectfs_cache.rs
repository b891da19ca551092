//! The local cache of file data against the in-memory store: copies of
//! uploaded and of small read objects serve later opens without a GET while
//! the object is unchanged (and across a remount), a change behind the
//! mount's back is read fresh, the bound evicts clean copies (recovered
//! ones too), a cache full of data not yet uploaded makes writers wait,
//! then fail with ENOSPC, and open's keep-cache answer follows the
//! object's ETag. The reference model with a small cache, remounts and
//! outside writes is in `objectfs_core`.

use super::objectfs_fixture::{
    Fixture, TO_CHANGE, copy_dir, fixture, fixture_with, fixture_with_ttl, mount, options,
    wait_until,
};
use objectfs::store::memory::MemoryStore;
use objectfs::store::{ObjectStore, PutMeta};
use objectfs::{ObjectFs, OpenFlags, ROOT_INO, UploadMode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn gets(f: &Fixture) -> u64 {
    f.mem.counters.gets.load(Ordering::Relaxed)
}

fn heads(f: &Fixture) -> u64 {
    f.mem.counters.heads.load(Ordering::Relaxed)
}

/// Bytes that differ from one position to the next, so a shifted or stale
/// copy cannot pass for the right one.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The contents of every data file in the cache directory.
fn files_in_cache(f: &Fixture) -> Vec<Vec<u8>> {
    std::fs::read_dir(f.cache.path().join("staging"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .filter_map(|p| std::fs::read(p).ok()) // deleted meanwhile
        .collect()
}

#[test]
fn a_file_written_here_is_read_back_from_its_local_copy_without_a_get() {
    // TTL 0: every lookup asks the store again (a HEAD), as after the TTL.
    let f = fixture(UploadMode::Async);
    let data = pattern(5000, 1);
    f.write_file("f", &data).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/f").unwrap(), &data[..]);
    assert_eq!(f.fs.cache_bytes(), (5000, 5000), "kept as a clean copy");
    let (gets0, heads0) = (gets(&f), heads(&f));
    for _ in 0..2 {
        assert_eq!(f.read_file("f").unwrap(), data);
    }
    assert!(heads(&f) > heads0, "the attributes were revalidated");
    assert_eq!(gets(&f), gets0, "the data came from the cache");
}

#[test]
fn a_change_behind_the_mounts_back_is_read_fresh_and_the_stale_copy_dropped() {
    let f = fixture(UploadMode::Sync);
    f.write_file("same", b"version one").unwrap();
    f.write_file("size", &pattern(100, 1)).unwrap();
    assert_eq!(f.read_file("same").unwrap(), b"version one");
    assert_eq!(f.fs.cache_bytes(), (111, 111));
    // Another tool rewrites both: one at the same size, one shorter.
    f.mem.insert("pre/same", "version two", PutMeta::default());
    f.mem.insert("pre/size", pattern(40, 2), PutMeta::default());
    let gets0 = gets(&f);
    assert_eq!(f.read_file("same").unwrap(), b"version two");
    assert_eq!(f.read_file("size").unwrap(), pattern(40, 2));
    assert!(gets(&f) > gets0, "fetched from the store");
    // The new versions replaced the old copies, in bytes and on disk.
    assert_eq!(f.fs.cache_bytes(), (51, 51));
    // (Copies given up are deleted in the background, soon.)
    let stale = |files: &[Vec<u8>]| {
        files.contains(&b"version one".to_vec()) || files.contains(&pattern(100, 1))
    };
    wait_until(|| !stale(&files_in_cache(&f)));
    let files = files_in_cache(&f);
    assert!(!files.contains(&b"version one".to_vec()), "stale copy kept");
    assert!(!files.contains(&pattern(100, 1)), "stale copy kept");
    // And the new versions are cached in turn.
    let gets1 = gets(&f);
    assert_eq!(f.read_file("same").unwrap(), b"version two");
    assert_eq!(f.read_file("size").unwrap(), pattern(40, 2));
    assert_eq!(gets(&f), gets1);
}

#[test]
fn the_cache_survives_a_remount_and_objects_changed_meanwhile_are_read_fresh() {
    let f = fixture(UploadMode::Async);
    f.write_file("kept", &pattern(300, 1)).unwrap();
    f.write_file("changed", &pattern(300, 2)).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    // The old mount does nothing more from here on: as good as unmounted.
    f.mem
        .insert("pre/changed", pattern(300, 3), PutMeta::default());
    // A new core on the same cache directory: the lock was released with
    // the old one, and its clean copies are found again.
    let f = f.remount();
    assert_eq!(f.fs.cache_bytes(), (600, 600));
    let gets0 = gets(&f);
    assert_eq!(f.read_file("kept").unwrap(), pattern(300, 1));
    assert_eq!(gets(&f), gets0, "unchanged: read from the restored copy");
    assert_eq!(f.read_file("changed").unwrap(), pattern(300, 3));
    assert!(gets(&f) > gets0, "changed: read from the store");
    assert_eq!(f.fs.cache_bytes(), (600, 600), "the stale copy replaced");
    wait_until(|| !files_in_cache(&f).contains(&pattern(300, 2)));
    assert!(!files_in_cache(&f).contains(&pattern(300, 2)));
}

#[test]
fn small_objects_are_cached_at_their_first_read_and_large_ones_never() {
    let f = fixture(UploadMode::Async);
    let small = pattern(1000, 4);
    let big = pattern(9 * 1024 * 1024, 5);
    f.mem.insert("pre/small", small.clone(), PutMeta::default());
    f.mem.insert("pre/big", big.clone(), PutMeta::default());
    let gets0 = gets(&f);
    assert_eq!(f.read_file("small").unwrap(), small);
    let gets1 = gets(&f);
    assert!(gets1 > gets0);
    assert_eq!(f.fs.cache_bytes(), (1000, 1000));
    assert_eq!(f.read_file("small").unwrap(), small);
    assert_eq!(gets(&f), gets1, "the second open reads the cached copy");
    // Above the whole-file limit: read in ranges each time, never kept.
    for _ in 0..2 {
        let before = gets(&f);
        assert!(f.read_file("big").unwrap() == big);
        assert!(gets(&f) > before);
    }
    assert_eq!(f.fs.cache_bytes(), (1000, 1000));
}

#[test]
fn the_bound_evicts_clean_copies_and_evicted_files_come_back_from_the_store() {
    let f = fixture_with(UploadMode::Sync, |o| o.cache_size = 300);
    for i in 0..5u8 {
        f.write_file(&format!("f{i}"), &pattern(100, i)).unwrap();
        assert!(
            f.fs.cache_bytes().0 <= 300,
            "after f{i}: {:?}",
            f.fs.cache_bytes()
        );
    }
    assert_eq!(f.fs.flush_all(), 0);
    let on_disk = || -> usize { files_in_cache(&f).iter().map(Vec::len).sum() };
    wait_until(|| on_disk() <= 300);
    assert!(
        on_disk() <= 300,
        "{} bytes in the cache directory",
        on_disk()
    );
    let gets0 = gets(&f);
    for i in 0..5u8 {
        assert_eq!(f.read_file(&format!("f{i}")).unwrap(), pattern(100, i));
        assert!(f.fs.cache_bytes().0 <= 300);
    }
    assert!(gets(&f) > gets0, "the evicted files were fetched again");
    for i in 0..5u8 {
        assert_eq!(
            f.mem.object(&format!("pre/f{i}")).unwrap(),
            &pattern(100, i)[..]
        );
    }
}

/// Two files created while the store answers (creating needs a lookup),
/// then the store goes down and the first gets 800 bytes and is closed:
/// dirty, its upload retrying, filling most of a 1000-byte cache.
fn cache_full_of_dirty_data(dirty_wait: Duration) -> (Fixture, u64) {
    let f = fixture_with(UploadMode::Async, |o| {
        o.cache_size = 1000;
        o.dirty_wait = dirty_wait;
    });
    let (_, a) = f.fs.create(ROOT_INO, "a", 0o644, 0, 0, true).unwrap();
    let (_, b) = f.fs.create(ROOT_INO, "b", 0o644, 0, 0, true).unwrap();
    f.mem.set_down(true);
    assert_eq!(f.fs.write(a, 0, &pattern(800, 1)), Ok(800));
    f.fs.flush(a).unwrap();
    f.fs.release(a).unwrap();
    (f, b)
}

#[test]
fn a_write_into_a_cache_full_of_dirty_data_waits_then_gets_enospc_and_loses_nothing() {
    let wait = Duration::from_millis(300);
    let (f, b) = cache_full_of_dirty_data(wait);
    assert_eq!(f.fs.write(b, 0, &pattern(100, 2)), Ok(100), "still fits");
    let started = Instant::now();
    assert_eq!(f.fs.write(b, 100, &pattern(300, 3)), Err(libc::ENOSPC));
    assert!(started.elapsed() >= wait, "gave up without waiting");
    assert_eq!(f.fs.cache_bytes(), (900, 0), "nothing clean to evict");
    f.mem.set_down(false);
    assert_eq!(f.fs.flush_all(), 0);
    // Every byte written before the error is in the bucket.
    assert_eq!(f.mem.object("pre/a").unwrap(), &pattern(800, 1)[..]);
    assert_eq!(f.mem.object("pre/b").unwrap(), &pattern(100, 2)[..]);
    // Uploaded, "a" is clean and evictable: the same write now succeeds.
    assert_eq!(f.fs.write(b, 100, &pattern(300, 3)), Ok(300));
    f.fs.release(b).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    let mut want = pattern(100, 2);
    want.extend(pattern(300, 3));
    assert_eq!(f.mem.object("pre/b").unwrap(), &want[..]);
    assert!(f.fs.cache_bytes().0 <= 1000);
    assert_eq!(f.read_file("a").unwrap(), pattern(800, 1));
}

#[test]
fn a_waiting_writer_goes_on_once_uploads_make_room() {
    let (f, b) = cache_full_of_dirty_data(Duration::from_secs(10));
    let fs = f.fs.clone();
    let writer = std::thread::spawn(move || fs.write(b, 0, &pattern(300, 2)));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !writer.is_finished(),
        "the writer waits while the store is down"
    );
    f.mem.set_down(false);
    assert_eq!(writer.join().unwrap(), Ok(300));
    // Only the upload of "a" could make the room.
    assert_eq!(f.mem.object("pre/a").unwrap(), &pattern(800, 1)[..]);
    f.fs.release(b).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/b").unwrap(), &pattern(300, 2)[..]);
    assert!(f.fs.cache_bytes().0 <= 1000);
}

#[test]
fn one_open_file_growing_past_the_bound_gets_enospc_at_once() {
    let wait = Duration::from_secs(20);
    let f = fixture_with(UploadMode::Async, |o| {
        o.cache_size = 1000;
        o.dirty_wait = wait;
    });
    f.write_file("clean", &pattern(300, 1)).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    let (_, fh) = f.fs.create(ROOT_INO, "grows", 0o644, 0, 0, true).unwrap();
    assert_eq!(f.fs.write(fh, 0, &pattern(600, 2)), Ok(600));
    // Nothing closed is waiting for an upload: no point in waiting.
    let started = Instant::now();
    assert_eq!(f.fs.write(fh, 600, &pattern(600, 3)), Err(libc::ENOSPC));
    assert!(
        started.elapsed() < wait,
        "waited for uploads that could not come"
    );
    assert_eq!(f.fs.cache_bytes(), (600, 0), "the clean copy was evicted");
    assert_eq!(f.read_file("clean").unwrap(), pattern(300, 1));
    f.fs.release(fh).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/grows").unwrap(), &pattern(600, 2)[..]);
}

#[test]
fn open_keeps_the_page_cache_only_while_the_object_is_unchanged() {
    let f = fixture(UploadMode::Sync);
    f.write_file("k", b"first").unwrap();
    let ino = f.ino("k").unwrap();
    let open_read = || {
        let o = f.fs.open_file(ino, OpenFlags::default()).unwrap();
        let data = f.fs.read(o.fh, 0, 100).unwrap().to_vec();
        f.fs.release(o.fh).unwrap();
        (o.keep_cache, data)
    };
    assert_eq!(open_read().1, b"first");
    assert_eq!(open_read(), (true, b"first".to_vec()), "unchanged");
    // Changed behind the mount's back, noticed at the next getattr (TTL 0).
    f.mem.insert("pre/k", "other", PutMeta::default());
    f.fs.getattr(ino).unwrap();
    assert_eq!(
        open_read(),
        (false, b"other".to_vec()),
        "the kernel's pages are stale"
    );
    assert_eq!(open_read(), (true, b"other".to_vec()), "unchanged again");
    // A copy being written: every change went through the kernel.
    let w = f.fs.open_file(ino, TO_CHANGE).unwrap();
    f.fs.write(w.fh, 0, b"O").unwrap();
    let r = f.fs.open_file(ino, OpenFlags::default()).unwrap();
    assert!(r.keep_cache);
    assert_eq!(&f.fs.read(r.fh, 0, 100).unwrap()[..], b"Other");
    f.fs.release(r.fh).unwrap();
    f.fs.release(w.fh).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.object("pre/k").unwrap(), &b"Other"[..]);
    assert_eq!(open_read().1, b"Other");
}

/// A copy fetched by GET is tagged with the ETag the node had before the
/// GET, which may be an older version's: the object rewritten between open
/// and read, then written back to its first content, is read as the second.
#[test]
fn a_copy_fetched_after_a_change_is_not_kept_as_the_older_version() {
    let f = fixture(UploadMode::Async);
    f.mem.insert("pre/t", "AAAA", PutMeta::default());
    let ino = f.ino("t").unwrap();
    let fh = f.fs.open(ino, OpenFlags::default()).unwrap();
    // Rewritten between the open and the first read: the read fetches the
    // new version, though the node still knows the old ETag.
    f.mem.insert("pre/t", "BBBB", PutMeta::default());
    assert_eq!(&f.fs.read(fh, 0, 10).unwrap()[..], b"BBBB");
    f.fs.release(fh).unwrap();
    // The first version again: its ETag is the one the node knew.
    f.mem.insert("pre/t", "AAAA", PutMeta::default());
    assert_eq!(f.read_file("t").unwrap(), b"AAAA");
}

/// An object rewritten elsewhere at another size within the TTL: a copy
/// made for writing is of the object as it is now, revalidated (never the
/// new version cut to the old size, which an append would then extend).
#[test]
fn a_copy_for_writing_is_of_the_object_as_it_is_now_after_a_change_of_size() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(60));
    let cases = [
        ("grew", "AAAA", "BBBBBBBB", 4, "x", "BBBBxBBB"),
        ("shrank", "AAAAAAAA", "BB", 2, "x", "BBx"),
    ];
    for (name, before, ..) in cases {
        f.mem
            .insert(&format!("pre/{name}"), before, PutMeta::default());
    }
    for (name, before, now, at, wrote, after) in cases {
        let key = format!("pre/{name}");
        let ino = f.ino(name).unwrap();
        assert_eq!(f.fs.getattr(ino).unwrap().size, before.len() as u64);
        f.mem.insert(&key, now, PutMeta::default());
        let write = TO_CHANGE;
        let fh = f.fs.open(ino, write).unwrap();
        assert_eq!(f.fs.getattr(ino).unwrap().size, now.len() as u64);
        f.fs.write(fh, at, wrote.as_bytes()).unwrap();
        f.fs.release(fh).unwrap();
        f.fs.flush_all();
        assert_eq!(f.mem.object(&key).unwrap(), after.as_bytes());
    }
}

/// A first read's whole-file copy of an object rewritten elsewhere at
/// another size within the TTL is not kept (it would be the new version
/// cut to the old size, or a read failing on a short body): the read fails
/// with ESTALE (the version the open file reads is gone; it returned the
/// new version's bytes within the old size) and the next open revalidates.
/// (Or, when the lookup's background HEAD was answered after the rewrite,
/// the file, nothing read yet, reads the new version whole.)
#[test]
fn a_whole_file_copy_of_an_object_changed_in_size_is_not_kept() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(60));
    f.mem.insert("pre/grew", "AAAA", PutMeta::default());
    f.mem.insert("pre/shrank", "AAAAAAAA", PutMeta::default());
    for (name, now) in [("grew", "BBBBBBBB"), ("shrank", "BB")] {
        let ino = f.ino(name).unwrap();
        let fh = f.fs.open(ino, OpenFlags::default()).unwrap();
        f.mem
            .insert(&format!("pre/{name}"), now, PutMeta::default());
        match f.fs.read(fh, 0, 100) {
            Err(libc::ESTALE) => {}
            Ok(got) => assert_eq!(got, now.as_bytes(), "{name}: not a whole version"),
            Err(e) => panic!("{name}: errno {e}"),
        }
        f.fs.release(fh).unwrap();
        assert_eq!(f.read_file(name).unwrap(), now.as_bytes());
    }
    assert_eq!(f.fs.cache_bytes().0, 10, "only whole versions are kept");
}

/// A HEAD sent before this mount's own upload of a file and answered after
/// it (a slow store) tells nothing newer: the file keeps what the upload
/// made of it (not the old size and ETag, which would drop the new copy as
/// stale and read the new object cut to the old size), and so does a
/// lookup's probe.
#[test]
fn a_slow_head_answered_after_the_mounts_own_upload_does_not_bring_the_old_object_back() {
    let f = fixture_with_ttl(UploadMode::Sync, Duration::from_millis(100));
    // Another client's object, dated within the last 2 s: a listing cannot
    // confirm its metadata, its revalidation is a HEAD; answered more than a
    // TTL after the upload below.
    f.mem.insert("pre/f", "old", PutMeta::default());
    let ino = f.ino("f").unwrap();
    std::thread::sleep(Duration::from_millis(150));
    f.mem.slow_heads(Duration::from_millis(500));
    let heads0 = heads(&f);
    std::thread::scope(|s| {
        let stat = s.spawn(|| f.fs.getattr(ino));
        wait_until(|| heads(&f) > heads0); // its HEAD is out
        f.mem.slow_heads(Duration::ZERO);
        let write = OpenFlags {
            write: true,
            truncate: true,
        };
        let fh = f.fs.open(ino, write).unwrap();
        f.fs.write(fh, 0, b"brand new content").unwrap();
        f.fs.flush(fh).unwrap();
        f.fs.release(fh).unwrap();
        // Answered before the write, or after it with the new size.
        let size = stat.join().unwrap().unwrap().size;
        assert!(size == 3 || size == 17, "{size}");
    });
    assert_eq!(f.fs.getattr(ino).unwrap().size, 17);
    let gets0 = gets(&f);
    assert_eq!(f.read_file("f").unwrap(), b"brand new content");
    assert_eq!(gets(&f), gets0, "read from the copy the upload left");
}

/// A lookup's HEAD answered after a listing put the name in the table
/// (with the listing's guess: its date for mtime, no metadata) is applied:
/// the listing began later but knew less. The lookup returns the object's
/// own mtime, to the nanosecond.
#[test]
fn a_lookups_head_answered_after_a_listing_of_the_name_still_gives_its_metadata() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(1));
    let mut meta = PutMeta::default();
    meta.metadata
        .insert("mtime".into(), "1000000000.123456789".into());
    f.mem.insert("pre/k", "data", meta);
    let exact = std::time::UNIX_EPOCH + Duration::new(1_000_000_000, 123_456_789);
    f.mem.slow_heads(Duration::from_millis(300));
    let heads0 = heads(&f);
    std::thread::scope(|s| {
        let lookup = s.spawn(|| f.fs.lookup(ROOT_INO, "k"));
        wait_until(|| heads(&f) > heads0); // its HEAD is out
        assert_eq!(f.list("").unwrap(), ["k"]);
        assert_eq!(lookup.join().unwrap().unwrap().mtime, exact);
    });
    assert_eq!(f.fs.getattr(f.ino("k").unwrap()).unwrap().mtime, exact);
}

/// A file open for writing, clean, is renamed; it is written while the
/// rename's copy runs (the write journals the old name), and the process
/// dies: the next mount puts the data at the new name, not beside the old.
#[test]
fn a_write_during_a_renames_copy_goes_to_the_new_name_after_a_crash() {
    let f = fixture(UploadMode::Async);
    f.write_file("f", b"old").unwrap();
    f.fs.flush_all();
    let ino = f.ino("f").unwrap();
    let write = TO_CHANGE;
    let fh = f.fs.open(ino, write).unwrap();
    f.mem.slow_copies(Duration::from_millis(400));
    std::thread::scope(|s| {
        let rename = s.spawn(|| f.rename("f", "g"));
        std::thread::sleep(Duration::from_millis(100)); // the copy is out
        f.fs.write(fh, 0, b"NEW").unwrap();
        rename.join().unwrap().unwrap();
    });
    let f = f.crash();
    assert_eq!(f.mem.object("pre/g").as_deref(), Some(&b"NEW"[..]));
    assert_eq!(f.mem.keys(), ["pre/g"]);
}

/// A copy lent to the kernel for passthrough reads goes to the cache when
/// its last open closes (a mapping of it may live on); opened again from
/// the cache for writing and then unlinked, it is deleted, never reused
/// for another file's data, which that mapping would see.
#[test]
fn a_copy_once_lent_to_the_kernel_is_never_reused_for_another_file() {
    let f = fixture(UploadMode::Sync);
    f.write_file("x", &pattern(5000, 1)).unwrap();
    let ino = f.ino("x").unwrap();
    let o = f.fs.open_file(ino, OpenFlags::default()).unwrap();
    let local = o.local.expect("a local copy after the upload");
    f.fs.lend_to_kernel(ino);
    // The kernel's own reference to the file (a mapping), not the mount's.
    let mapped = local.try_clone().unwrap();
    drop(local);
    f.fs.release(o.fh).unwrap();
    let write = TO_CHANGE;
    let fh = f.fs.open(ino, write).unwrap();
    f.unlink("x").unwrap();
    f.fs.release(fh).unwrap();
    // (The pool's thread empties files given up for reuse.)
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..4 {
        f.write_file(&format!("y{i}"), &pattern(5000, 2)).unwrap();
    }
    let mut seen = vec![0u8; 5000];
    use std::os::unix::fs::FileExt;
    mapped.read_exact_at(&mut seen, 0).unwrap();
    assert!(seen == pattern(5000, 1), "the lent copy was reused");
}

/// A directory renamed while a file below it has a writer the kernel lets
/// write the local copy itself: the file's journal entry, kept after its
/// fsync made it clean, follows it to its new key, so a crash puts what is
/// written next there (not beside the old name, bringing it back).
#[test]
fn a_directory_rename_moves_the_journal_entry_a_direct_writer_keeps() {
    let f = fixture(UploadMode::Async);
    f.mkdir("d").unwrap();
    f.write_file("d/f", b"v1").unwrap();
    f.fs.flush_all();
    let ino = f.ino("d/f").unwrap();
    let write = TO_CHANGE;
    let fh = f.fs.open(ino, write).unwrap();
    f.fs.writes_directly(fh, false).unwrap();
    f.fs.write(fh, 2, b"v2").unwrap();
    f.fs.fsync(fh).unwrap();
    f.rename("d", "e").unwrap();
    f.fs.write(fh, 4, b"v3").unwrap();
    let f = f.crash();
    assert_eq!(f.mem.object("pre/e/f").as_deref(), Some(&b"v1v2v3"[..]));
    let keys = f.mem.keys();
    assert!(!keys.iter().any(|k| k.starts_with("pre/d")), "{keys:?}");
}

#[test]
fn data_recovered_at_mount_is_kept_within_the_bound() {
    let mem = Arc::new(MemoryStore::new());
    let cache = tempfile::tempdir().unwrap();
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store: Arc<dyn ObjectStore> = mem.clone();
        let opts = options(cache.path(), UploadMode::Async);
        let fs = ObjectFs::new(store, rt.handle().clone(), opts).unwrap();
        let (_, a) = fs.create(ROOT_INO, "a", 0o644, 0, 0, true).unwrap();
        let (_, b) = fs.create(ROOT_INO, "b", 0o644, 0, 0, true).unwrap();
        mem.set_down(true);
        for (fh, seed) in [(a, 1), (b, 2)] {
            fs.write(fh, 0, &pattern(200, seed)).unwrap();
            fs.release(fh).unwrap();
        }
        // The process dies with both files journalled (see
        // `staged_data_of_a_dead_mount_is_uploaded_at_the_next_mount`); its
        // runtime too, so no shutdown cuts its upload retries short.
        std::mem::forget(fs);
        std::mem::forget(rt);
    }
    let cache2 = tempfile::tempdir().unwrap();
    copy_dir(
        &cache.path().join("staging"),
        &cache2.path().join("staging"),
    );
    mem.set_down(false);
    // The next mount has a smaller bound than both files together.
    let mut opts = options(cache2.path(), UploadMode::Async);
    opts.cache_size = 300;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store: Arc<dyn ObjectStore> = mem.clone();
    let fs = ObjectFs::new(store, rt.handle().clone(), opts).unwrap();
    assert_eq!(mem.object("pre/a").unwrap(), &pattern(200, 1)[..]);
    assert_eq!(mem.object("pre/b").unwrap(), &pattern(200, 2)[..]);
    let (used, clean) = fs.cache_bytes();
    assert!(used <= 300, "{used} bytes cached under a bound of 300");
    assert_eq!(used, clean, "recovered copies are clean");
}

/// A file uploaded by its fsync and still open is a clean copy from then
/// on: a mount that dies before closing it leaves it tagged as one, so the
/// next mount sends nothing again and reads it without a GET; one written
/// again after its fsync is journalled again, and its new data uploaded at
/// the next mount.
#[test]
fn a_file_fsynced_and_still_open_at_a_crash_is_a_clean_copy_at_the_next_mount() {
    let mem = Arc::new(MemoryStore::new());
    let cache = tempfile::tempdir().unwrap();
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store: Arc<dyn ObjectStore> = mem.clone();
        let opts = options(cache.path(), UploadMode::Async);
        let fs = ObjectFs::new(store, rt.handle().clone(), opts).unwrap();
        let (_, a) = fs.create(ROOT_INO, "a", 0o644, 0, 0, true).unwrap();
        let (_, b) = fs.create(ROOT_INO, "b", 0o644, 0, 0, true).unwrap();
        fs.write(a, 0, &pattern(3000, 1)).unwrap();
        fs.fsync(a).unwrap();
        fs.write(b, 0, &pattern(3000, 2)).unwrap();
        fs.fsync(b).unwrap();
        fs.write(b, 3000, &pattern(1000, 3)).unwrap();
        assert_eq!(mem.object("pre/a").unwrap(), &pattern(3000, 1)[..]);
        // The process dies with both files open.
        std::mem::forget(fs);
        std::mem::forget(rt);
    }
    let cache2 = tempfile::tempdir().unwrap();
    copy_dir(
        &cache.path().join("staging"),
        &cache2.path().join("staging"),
    );
    let puts = mem.counters.puts.load(Ordering::Relaxed);
    let opts = options(cache2.path(), UploadMode::Async);
    let f = mount(mem.clone(), cache2, opts);
    let mut b_now = pattern(3000, 2);
    b_now.extend(pattern(1000, 3));
    assert_eq!(mem.object("pre/b").unwrap(), &b_now[..], "b's new data");
    assert_eq!(
        mem.counters.puts.load(Ordering::Relaxed) - puts,
        1,
        "b was uploaded again, a was not"
    );
    assert_eq!(
        f.fs.cache_bytes(),
        (7000, 7000),
        "both kept as clean copies"
    );
    let gets0 = gets(&f);
    assert_eq!(f.read_file("a").unwrap(), pattern(3000, 1));
    assert_eq!(gets(&f), gets0, "a came from its copy");
}

/// A file unlinked while open (a temporary file: create, unlink, write on)
/// keeps its data for its open handles only: a crash leaves nothing
/// journalled for it, and the next mount uploads nothing under its old name.
#[test]
fn a_file_written_after_its_unlink_is_not_brought_back_by_a_crash() {
    let mem = Arc::new(MemoryStore::new());
    let cache = tempfile::tempdir().unwrap();
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store: Arc<dyn ObjectStore> = mem.clone();
        let opts = options(cache.path(), UploadMode::Async);
        let fs = ObjectFs::new(store, rt.handle().clone(), opts).unwrap();
        let (_, fh) = fs.create(ROOT_INO, "tmp", 0o600, 0, 0, true).unwrap();
        fs.write(fh, 0, &pattern(3000, 1)).unwrap();
        fs.fsync(fh).unwrap();
        assert!(mem.object("pre/tmp").is_some());
        fs.unlink(ROOT_INO, "tmp").unwrap();
        fs.write(fh, 3000, &pattern(1000, 2)).unwrap();
        assert_eq!(
            fs.read(fh, 0, 4000).unwrap().len(),
            4000,
            "kept for the handle"
        );
        // The namespace change is sent; then the process dies, the file open.
        assert_eq!(fs.flush_all(), 0);
        assert!(mem.object("pre/tmp").is_none());
        std::mem::forget(fs);
        std::mem::forget(rt);
    }
    let cache2 = tempfile::tempdir().unwrap();
    copy_dir(
        &cache.path().join("staging"),
        &cache2.path().join("staging"),
    );
    let opts = options(cache2.path(), UploadMode::Async);
    let f = mount(mem.clone(), cache2, opts);
    assert!(mem.object("pre/tmp").is_none(), "brought back by the crash");
    assert_eq!(f.fs.pending_bytes(), 0);
}

/// Files another client wrote, `n` of them under `dir/`, with their data.
fn outside_files(f: &Fixture, dir: &str, n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let name = format!("{dir}/f{i:03}");
            let data = pattern(1000 + i * 37, i as u8);
            f.mem
                .insert(&format!("pre/{name}"), data.clone(), PutMeta::default());
            (name, data)
        })
        .collect()
}

#[test]
fn a_reader_walking_a_directory_in_name_order_finds_the_files_fetched_ahead() {
    let f = fixture(UploadMode::Async);
    let files = outside_files(&f, "d", 60);
    assert_eq!(f.list("d").unwrap().len(), 60);
    // Two files, next to each other in name order: a walk.
    let gets0 = gets(&f);
    for (name, data) in &files[..2] {
        assert_eq!(&f.read_file(name).unwrap(), data);
    }
    wait_until(|| gets(&f) >= gets0 + 2 + 32);
    assert_eq!(
        gets(&f) - gets0,
        2 + 32,
        "the next 32 fetched ahead without an open"
    );
    for (name, data) in &files[2..] {
        assert_eq!(&f.read_file(name).unwrap(), data, "{name}");
    }
    // Every object was read once, ahead or by its reader, never twice.
    let all: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    wait_until(|| f.fs.cache_bytes().0 == all);
    assert_eq!(f.fs.cache_bytes().0, all);
    assert_eq!(gets(&f) - gets0, 60);
}

#[test]
fn files_opened_out_of_name_order_are_not_fetched_ahead() {
    let f = fixture(UploadMode::Async);
    let files = outside_files(&f, "d", 40);
    f.list("d").unwrap();
    let gets0 = gets(&f);
    for i in [5, 9, 2, 30, 11, 17, 38] {
        assert_eq!(f.read_file(&files[i].0).unwrap(), files[i].1);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(gets(&f) - gets0, 7, "one GET per file read, no more");
}

#[test]
fn a_file_changed_after_its_fetch_ahead_is_read_fresh() {
    let f = fixture(UploadMode::Async);
    let files = outside_files(&f, "d", 10);
    f.list("d").unwrap();
    for (name, data) in &files[..2] {
        assert_eq!(&f.read_file(name).unwrap(), data);
    }
    let all: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    wait_until(|| f.fs.cache_bytes().0 == all);
    assert_eq!(f.fs.cache_bytes().0, all, "all ten fetched");
    // Another client rewrites one fetched ahead, at the same size.
    let (name, data) = &files[6];
    let newer: Vec<u8> = data.iter().map(|b| b ^ 0xff).collect();
    f.mem
        .insert(&format!("pre/{name}"), newer.clone(), PutMeta::default());
    for (n, d) in &files[2..] {
        let want = if n == name { &newer } else { d };
        assert_eq!(&f.read_file(n).unwrap(), want, "{n}");
    }
}

#[test]
fn fetching_ahead_never_evicts_a_cached_copy() {
    // Room for the two files read and a few more: the walk fetches
    // ahead only what fits beside them.
    let f = fixture_with(UploadMode::Async, |o| o.cache_size = 8 * 1024);
    let files = outside_files(&f, "d", 30);
    f.list("d").unwrap();
    // The first two copied into the cache (read backwards: no walk yet)...
    for (name, data) in files[..2].iter().rev() {
        assert_eq!(&f.read_file(name).unwrap(), data);
    }
    // ... then a walk over the next ones fills what room is left.
    for (name, data) in &files[2..4] {
        assert_eq!(&f.read_file(name).unwrap(), data);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (used, _) = f.fs.cache_bytes();
    assert!(used <= 8 * 1024, "the bound holds: {used}");
    let gets0 = gets(&f);
    // The first two are still cached: read again without a GET.
    for (name, data) in &files[..2] {
        assert_eq!(&f.read_file(name).unwrap(), data);
    }
    assert_eq!(gets(&f), gets0);
}

#[test]
fn a_readers_copy_waits_for_fetches_ahead_in_flight_rather_than_evict_a_used_one() {
    // Room for a few files: the first two read in name order are the walk
    // itself, so the fetches ahead of it are in flight while the second
    // file's own copy looks for room. That copy must not push out the
    // first file's (used) copy while the fetches ahead could go instead.
    let f = fixture_with(UploadMode::Async, |o| o.cache_size = 8 * 1024);
    let files = outside_files(&f, "d", 30);
    f.list("d").unwrap();
    for (name, data) in &files[..2] {
        assert_eq!(&f.read_file(name).unwrap(), data);
    }
    std::thread::sleep(Duration::from_millis(300));
    let gets0 = gets(&f);
    for (name, data) in &files[..2] {
        assert_eq!(&f.read_file(name).unwrap(), data);
    }
    assert_eq!(gets(&f), gets0, "both still cached");
}

#[test]
fn a_directory_listed_beside_a_walk_gets_its_small_files_whole_instead_of_heads() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(60));
    let d0 = outside_files(&f, "d0", 6);
    let d1 = outside_files(&f, "d1", 30);
    f.list("d0").unwrap();
    // Four in a row: a walk through the tree, not one file read after
    // another.
    for (name, data) in &d0[..4] {
        assert_eq!(&f.read_file(name).unwrap(), data);
    }
    // d0 is being walked: the listing of its sibling d1 fetches d1's
    // files whole (one GET each, which says what a HEAD would).
    let walked: u64 = d0.iter().map(|(_, d)| d.len() as u64).sum();
    wait_until(|| f.fs.cache_bytes().0 == walked);
    let all = walked + d1.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
    let (gets0, heads0) = (gets(&f), heads(&f));
    assert_eq!(f.list("d1").unwrap().len(), 30);
    wait_until(|| gets(&f) >= gets0 + 30);
    wait_until(|| f.fs.cache_bytes().0 == all);
    assert_eq!(f.fs.cache_bytes().0, all, "every file of d1 kept");
    assert_eq!(gets(&f) - gets0, 30);
    let heads_d1 = heads(&f) - heads0;
    assert!(heads_d1 <= 1, "no HEAD per file: {heads_d1}");
    // Reading them costs nothing more, and each is the object.
    for (name, data) in &d1 {
        assert_eq!(&f.read_file(name).unwrap(), data, "{name}");
    }
    assert_eq!(gets(&f) - gets0, 30);
    assert_eq!(heads(&f) - heads0, heads_d1);
}

#[test]
fn directories_listed_ahead_of_a_reading_walk_have_their_first_files_fetched() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(60));
    let size =
        |files: &[(String, Vec<u8>)]| -> u64 { files.iter().map(|(_, d)| d.len() as u64).sum() };
    let d0 = outside_files(&f, "top/d0", 6);
    let d1 = outside_files(&f, "top/d1", 10);
    let later: Vec<Vec<(String, Vec<u8>)>> = (2..8)
        .map(|i| outside_files(&f, &format!("top/d{i}"), 80))
        .collect();
    assert_eq!(f.list("top").unwrap().len(), 8);
    f.list("top/d0").unwrap();
    for (name, data) in &d0[..4] {
        assert_eq!(&f.read_file(name).unwrap(), data);
    }
    // The last two fetched ahead: charged to the cache before their GETs.
    wait_until(|| gets(&f) == d0.len() as u64 && f.fs.cache_bytes().0 == size(&d0));
    // A second directory of `top` listed: a walk through the tree. d2-d7
    // are listed ahead; the first four of them have their first 64 files
    // fetched at those listings.
    let gets0 = gets(&f);
    f.list("top/d1").unwrap();
    let expected = 10 + 4 * 64; // and d1's ten at its own listing
    wait_until(|| gets(&f) >= gets0 + expected);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(gets(&f) - gets0, expected, "the bound holds");
    let fetched = size(&d0) + size(&d1) + later[..4].iter().map(|d| size(&d[..64])).sum::<u64>();
    assert_eq!(f.fs.cache_bytes().0, fetched, "which files were fetched");
    let (gets1, heads1) = (gets(&f), heads(&f));
    for d in &later[..4] {
        assert_eq!(f.read_file(&d[63].0).unwrap(), d[63].1);
    }
    assert_eq!(
        (gets(&f), heads(&f)),
        (gets1, heads1),
        "read from the cache"
    );
    // d6 was listed, not fetched: its files come from the store.
    assert_eq!(f.read_file(&later[4][0].0).unwrap(), later[4][0].1);
    assert!(gets(&f) > gets1);
}

/// A write to a clean copy refused for want of room in a cache full of
/// dirty data changes nothing: its journal entry (written before the room
/// was asked) goes again. It stayed on the clean copy, and the next mount
/// took the copy for data a crash had left: another client's newer object
/// at the name got the old bytes beside it as a conflict.
#[test]
fn a_write_refused_for_room_leaves_no_journal_entry_on_a_clean_copy() {
    let f = fixture_with(UploadMode::Async, |o| {
        o.cache_size = 1000;
        o.dirty_wait = Duration::from_millis(100);
        o.upload_delay = Duration::from_secs(3600);
    });
    f.mem.insert("pre/x", pattern(100, 1), PutMeta::default());
    assert_eq!(f.read_file("x").unwrap(), pattern(100, 1)); // a clean copy
    f.write_file("fill", &pattern(850, 2)).unwrap(); // dirty, an hour
    let ino = f.ino("x").unwrap();
    let fh = f.fs.open(ino, TO_CHANGE).unwrap();
    assert_eq!(f.fs.write(fh, 100, &pattern(200, 3)), Err(libc::ENOSPC));
    f.fs.release(fh).unwrap();
    f.mem.insert("pre/x", pattern(100, 4), PutMeta::default()); // another client
    let f = f.crash();
    assert_eq!(f.mem.keys(), ["pre/fill", "pre/x"]);
    assert_eq!(f.mem.object("pre/x").as_deref(), Some(&pattern(100, 4)[..]));
}
