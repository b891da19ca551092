//! The filesystem core against the in-memory store: operations by path, a
//! reference model of a directory tree driven by proptest (also with a
//! cache too small for all files, outside writes and remounts), and faults.

use super::objectfs_fixture::{
    Fixture, copy_dir, fixture, fixture_with, fixture_with_ttl, options, wait_until,
};
use objectfs::store::memory::MemoryStore;
use objectfs::store::{ObjectStore, PutMeta, StoreError};
use objectfs::{Kind, ObjectFs, OpenFlags, ROOT_INO, SetAttr, UploadMode};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[test]
fn files_directories_and_their_objects() {
    let f = fixture(UploadMode::Sync);
    f.mkdir("d").unwrap();
    f.write_file("d/a.txt", b"hello").unwrap();
    assert_eq!(f.mem.object("pre/d/a.txt").unwrap(), &b"hello"[..]);
    assert_eq!(f.mem.object("pre/d/").unwrap().len(), 0);
    let meta = f.mem.object_meta("pre/d/a.txt").unwrap();
    assert_eq!(meta.metadata["mode"], (libc::S_IFREG | 0o644).to_string());
    assert_eq!(meta.metadata["uid"], "1");
    assert_eq!(f.read_file("d/a.txt").unwrap(), b"hello");
    assert_eq!(f.list("").unwrap(), ["d"]);
    assert_eq!(f.list("d").unwrap(), ["a.txt"]);
    assert_eq!(f.rmdir("d"), Err(libc::ENOTEMPTY));
    f.unlink("d/a.txt").unwrap();
    assert_eq!(f.ino("d/a.txt"), Err(libc::ENOENT));
    f.rmdir("d").unwrap();
    assert!(f.mem.keys().is_empty(), "{:?}", f.mem.keys());
}

/// A directory is listed at its first readdir, not at its open: an open
/// for fsync (SQLite's journal directory) or fchdir costs no LIST, a
/// listing that fails fails the readdir and the next one lists again.
#[test]
fn a_directory_is_listed_at_its_first_readdir() {
    let f = fixture(UploadMode::Async);
    f.mem.insert("pre/d/x", "x", PutMeta::default());
    // Known from a listing of the root: no background listing of it later.
    assert_eq!(f.list("").unwrap(), ["d"]);
    let d = f.ino("d").unwrap();
    let lists = || f.mem.counters.lists.load(Ordering::Relaxed);
    let before = lists();
    let fh = f.fs.opendir(d).unwrap();
    f.fs.fsyncdir().unwrap();
    f.fs.releasedir(fh);
    assert_eq!(lists(), before, "opendir and fsyncdir sent a LIST");
    let fh = f.fs.opendir(d).unwrap();
    assert_eq!(lists(), before);
    f.mem.set_down(true);
    assert_eq!(f.fs.readdir(fh, 0).map(|_| ()), Err(libc::EIO));
    f.mem.set_down(false);
    let names: Vec<String> =
        f.fs.readdir(fh, 2)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
    assert_eq!(names, ["x"]);
    let listed = lists();
    assert_eq!(f.fs.readdir(fh, 0).unwrap().len(), 3, "., .. and x");
    assert_eq!(lists(), listed, "one snapshot per handle");
    f.fs.releasedir(fh);
    assert_eq!(f.fs.readdir(fh, 0).map(|_| ()), Err(libc::EBADF));
}

/// A directory listed within the TTL is read from the table: a second
/// readdir sends no LIST (and shows what this mount changed meanwhile);
/// past the TTL one LIST shows what another client added.
#[test]
fn a_readdir_within_the_ttl_of_a_listing_sends_no_list() {
    let ttl = Duration::from_millis(300);
    let f = fixture_with_ttl(UploadMode::Async, ttl);
    f.mem.insert("pre/d/a", "a", PutMeta::default());
    // Known from a listing of the root: no background listing of it later.
    assert_eq!(f.list("").unwrap(), ["d"]);
    let d = f.ino("d").unwrap();
    let lists = || f.mem.counters.lists.load(Ordering::Relaxed);
    let names = || f.list_ino(d).unwrap();
    assert_eq!(names(), ["a"]);
    let l0 = lists();
    f.write_file("d/mine", b"m").unwrap();
    f.mem.insert("pre/d/theirs", "t", PutMeta::default());
    assert_eq!(names(), ["a", "mine"]);
    assert_eq!(lists(), l0, "within the TTL: no LIST");
    std::thread::sleep(ttl + Duration::from_millis(50));
    assert_eq!(names(), ["a", "mine", "theirs"]);
    assert_eq!(lists(), l0 + 1);
}

/// A name another client deleted stays gone once a listing has not shown
/// it: a readdir within that listing's TTL, served from the table, does
/// not bring it back.
#[test]
fn a_name_deleted_elsewhere_stays_gone_after_a_listing() {
    let ttl = Duration::from_millis(300);
    let f = fixture_with_ttl(UploadMode::Async, ttl);
    f.mem.insert("pre/d/a", "a", PutMeta::default());
    f.mem.insert("pre/d/z", "z", PutMeta::default());
    assert_eq!(f.list("d").unwrap(), ["a", "z"]);
    f.mem.delete_now("pre/d/z");
    std::thread::sleep(ttl + Duration::from_millis(50));
    assert_eq!(f.list("d").unwrap(), ["a"], "the listing past the TTL");
    assert_eq!(f.list("d").unwrap(), ["a"], "the table within its TTL");
    assert_eq!(f.ino("d/z"), Err(libc::ENOENT));
}

/// A listing begun before this mount removed a name (a rename is a copy
/// and a delete, sent at once) and answered after does not bring the old
/// name back.
#[test]
fn a_listing_that_lands_after_a_rename_does_not_bring_back_the_old_name() {
    let ttl = Duration::from_secs(1);
    let f = fixture_with_ttl(UploadMode::Sync, ttl);
    f.mem.insert("pre/d/", "", PutMeta::default());
    let d = f.ino("d").unwrap();
    let (a, fh) = f.fs.create(d, "a", 0o644, 1, 2, false).unwrap();
    f.fs.write(fh, 0, b"a").unwrap();
    f.fs.flush(fh).unwrap(); // uploaded; the open file keeps it local
    std::thread::sleep(ttl + Duration::from_millis(100));
    f.mem.slow_listings("pre/d/", Duration::from_millis(300));
    // A new name: probed at once, its directory listed in the background
    // (that LIST sees "a" and answers 300 ms later).
    let lists = || f.mem.counters.lists.load(Ordering::Relaxed);
    let l0 = lists();
    assert_eq!(f.fs.lookup(d, "b").map(|_| ()), Err(libc::ENOENT));
    wait_until(|| lists() >= l0 + 2);
    assert_eq!(lists(), l0 + 2, "the probe's LIST and the directory's");
    std::thread::sleep(Duration::from_millis(20)); // it has read the bucket
    f.fs.rename(d, "a", d, "b", 0).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let names = f.list_ino(d).unwrap();
    assert_eq!(names, ["b"]);
    assert_eq!(f.fs.lookup(d, "a").map(|_| ()), Err(libc::ENOENT));
    f.fs.release(fh).unwrap();
    let _ = a;
}

/// A directory rename (async) returns before any request: the old prefix's
/// content is listed into the table afterwards, what is below the new name
/// waits for that listing, and a file opened before the rename reads from
/// its old key meanwhile.
#[test]
fn a_directory_rename_returns_before_its_content_is_listed() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(30));
    for i in 0..20 {
        let body = format!("body {i}");
        f.mem
            .insert(&format!("pre/d/f{i}"), body, PutMeta::default());
    }
    f.mem.insert("pre/d/sub/g", "deep", PutMeta::default());
    let fh =
        f.fs.open(f.ino("d/f3").unwrap(), OpenFlags::default())
            .unwrap();
    assert_eq!(f.ino("e"), Err(libc::ENOENT));
    let slow = Duration::from_secs(2);
    f.mem.slow_walks("pre/d/", slow);
    let t0 = std::time::Instant::now();
    f.fs.rename(ROOT_INO, "d", ROOT_INO, "e", 0).unwrap();
    assert!(
        t0.elapsed() < slow / 2,
        "the rename waited for the listing ({:?})",
        t0.elapsed()
    );
    assert_eq!(&f.fs.read(fh, 0, 100).unwrap()[..], b"body 3");
    let mut want: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    want.push("sub".into());
    want.sort();
    let mut got = f.list("e").unwrap();
    got.sort();
    assert_eq!(got, want);
    assert!(t0.elapsed() >= slow, "listed before the content was in");
    assert_eq!(f.read_file("e/sub/g").unwrap(), b"deep");
    assert_eq!(f.read_file("e/f7").unwrap(), b"body 7");
    assert_eq!(f.ino("d"), Err(libc::ENOENT));
    f.fs.release(fh).unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    let mut keys: Vec<String> = (0..20).map(|i| format!("pre/e/f{i}")).collect();
    keys.push("pre/e/".into());
    keys.push("pre/e/sub/g".into());
    keys.sort();
    assert_eq!(f.mem.keys(), keys, "moved, with a marker for the new name");
    assert_eq!(f.mem.object("pre/e/f7").unwrap(), "body 7".as_bytes());
}

/// A lookup below a directory, begun before the directory is renamed
/// (async) and answered while the rename's listing fills the table, is
/// asked again once the table has the new tree: the store's answer was the
/// old name's, which the rename hides.
#[test]
fn a_lookup_answered_while_a_rename_fills_the_table_finds_the_file() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(30));
    f.mem.insert("pre/a/sub/f", "x", PutMeta::default());
    f.mem.insert("pre/a/sub/g", "y", PutMeta::default());
    let sub = f.ino("a/sub").unwrap();
    assert_eq!(f.ino("b"), Err(libc::ENOENT));
    // The lookup's probe answers after 300 ms, the rename's listing of
    // the old prefix after 600 ms.
    f.mem.slow_walks("pre/a/sub/f/", Duration::from_millis(300));
    f.mem.slow_walks("pre/a/", Duration::from_millis(600));
    std::thread::scope(|s| {
        let lookup = s.spawn(|| f.fs.lookup(sub, "f").map(|a| a.size));
        std::thread::sleep(Duration::from_millis(100));
        f.fs.rename(ROOT_INO, "a", ROOT_INO, "b", 0).unwrap();
        assert_eq!(lookup.join().unwrap(), Ok(1));
    });
    assert_eq!(f.read_file("b/sub/f").unwrap(), b"x");
    let mut got = f.list("b/sub").unwrap();
    got.sort();
    assert_eq!(got, ["f", "g"]);
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.keys(), ["pre/b/", "pre/b/sub/f", "pre/b/sub/g"]);
}

/// A listing of a directory begun before a file or a directory is renamed
/// into it (sync: the copies are made before rename returns) does not drop
/// the new name when it lands. Found by the reference model.
#[test]
fn a_listing_that_lands_after_a_rename_keeps_the_new_name() {
    let ttl = Duration::from_secs(1);
    let f = fixture_with_ttl(UploadMode::Sync, ttl);
    f.write_file("a", b"a").unwrap();
    f.mkdir("x").unwrap();
    let (a, x) = (f.ino("a").unwrap(), f.ino("x").unwrap());
    std::thread::sleep(ttl + Duration::from_millis(100));
    // Their attributes current again (a sync chmod), the root's listing not.
    for ino in [a, x] {
        let perm = Some(0o750);
        f.fs.setattr(
            ino,
            SetAttr {
                perm,
                ..Default::default()
            },
        )
        .unwrap();
    }
    f.mem.slow_listings("pre/", Duration::from_millis(400));
    // A new name: probed at once, the root listed in the background (it
    // answers 400 ms later, without "b" and "y").
    let lists = || f.mem.counters.lists.load(Ordering::Relaxed);
    let l0 = lists();
    assert_eq!(f.fs.lookup(ROOT_INO, "n1").map(|_| ()), Err(libc::ENOENT));
    wait_until(|| lists() >= l0 + 2);
    assert_eq!(lists(), l0 + 2, "the probe's LIST and the root's");
    f.fs.rename(ROOT_INO, "a", ROOT_INO, "b", 0).unwrap();
    f.fs.rename(ROOT_INO, "x", ROOT_INO, "y", 0).unwrap();
    std::thread::sleep(Duration::from_millis(600)); // it has landed
    assert_eq!(f.fs.lookup(ROOT_INO, "b").map(|a| a.size), Ok(1));
    assert_eq!(f.fs.lookup(ROOT_INO, "y").map(|a| a.kind), Ok(Kind::Dir));
}

/// A new directory at a renamed one's old name is empty: its names are not
/// the old objects there, which the queued rename's files still read from.
/// Found by the reference model.
#[test]
fn a_new_directory_at_a_renamed_ones_old_name_is_empty() {
    for ttl in [Duration::ZERO, Duration::from_secs(30)] {
        let f = fixture_with_ttl(UploadMode::Async, ttl);
        f.mkdir("d").unwrap();
        f.write_file("d/e", b"old").unwrap();
        assert_eq!(f.fs.flush_all(), 0); // pre/d/e in the bucket
        f.mem.slow_copies(Duration::from_millis(500));
        f.rename("d", "e").unwrap();
        f.mkdir("d").unwrap();
        assert_eq!(f.ino("d/e"), Err(libc::ENOENT), "ttl {ttl:?}");
        assert_eq!(f.write_file("d/e/f", b"x"), Err(libc::ENOENT));
        assert_eq!(f.read_file("e/e").unwrap(), b"old");
        assert_eq!(f.fs.flush_all(), 0);
        assert_eq!(f.mem.keys(), ["pre/d/", "pre/e/", "pre/e/e"]);
    }
}

/// Once a queued directory rename has been sent, every name below the new
/// one is still there, looked up before or not (the nodes the rename
/// filled in go once moved, and the table no longer has the whole
/// directory).
#[test]
fn every_name_of_a_renamed_directory_is_there_after_the_rename_is_sent() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(30));
    for i in 0..5 {
        f.mem
            .insert(&format!("pre/d/f{i}"), "x", PutMeta::default());
    }
    assert_eq!(f.ino("d/f1").map(|_| ()), Ok(()));
    f.rename("d", "e").unwrap();
    assert_eq!(f.fs.flush_all(), 0);
    let mut got = f.list("e").unwrap();
    got.sort();
    assert_eq!(got, ["f0", "f1", "f2", "f3", "f4"]);
    assert_eq!(f.read_file("e/f3").unwrap(), b"x");
}

/// A directory renamed into another (async: its objects are copied in the
/// background) makes that one non-empty at once, though a LIST of it shows
/// nothing until the copy lands. Found by the reference model.
#[test]
fn a_directory_with_a_directory_renamed_into_it_is_not_empty() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(5));
    f.mkdir("d").unwrap();
    f.mkdir("e").unwrap();
    assert_eq!(f.fs.flush_all(), 0); // both markers in the bucket
    f.mem.slow_copies(Duration::from_millis(500));
    f.rename("e", "d/a").unwrap();
    assert_eq!(f.rmdir("d"), Err(libc::ENOTEMPTY));
    assert_eq!(f.list("d").unwrap(), ["a"]);
    assert_eq!(f.fs.flush_all(), 0);
    assert_eq!(f.mem.keys(), ["pre/d/", "pre/d/a/"]);
}

/// Files this mount uploaded itself: past the TTL, the listing that shows
/// them with the ETag and size their upload answered, dated no later than
/// that answer, confirms them, and no HEAD is sent (`git add` after
/// `tar x`). One rewritten elsewhere since (another ETag) is read again.
#[test]
fn a_listing_confirms_the_files_this_mount_uploaded_without_a_head() {
    let ttl = Duration::from_millis(300);
    let f = fixture_with_ttl(UploadMode::Sync, ttl);
    f.mkdir("d").unwrap();
    for i in 0..10 {
        f.write_file(&format!("d/f{i}"), b"abcd").unwrap();
    }
    let heads = || f.mem.counters.heads.load(Ordering::Relaxed);
    std::thread::sleep(ttl + Duration::from_millis(50));
    f.mem.insert("pre/d/f3", "changed", PutMeta::default());
    let d = f.ino("d").unwrap();
    let h0 = heads();
    let fh = f.fs.opendir(d).unwrap();
    assert_eq!(f.fs.readdir(fh, 2).unwrap().len(), 10);
    f.fs.releasedir(fh);
    for i in 0..10 {
        let want = if i == 3 { 7 } else { 4 };
        assert_eq!(f.fs.lookup(d, &format!("f{i}")).unwrap().size, want);
    }
    assert_eq!(
        heads(),
        h0 + 1,
        "a HEAD for the file changed elsewhere only"
    );
}

/// Files whose object's date the mount does not know (another client's,
/// whose metadata it read within two seconds of that date) cannot be
/// confirmed by a listing: past the TTL, a readdir, or a lookup that lists
/// the directory, sends those HEADs for every such file of the listing at
/// once, rather than one per lookup as a walk (`git status`) reaches each.
#[test]
fn a_listing_revalidates_the_files_it_cannot_confirm_together() {
    let ttl = Duration::from_millis(300);
    let f = fixture_with_ttl(UploadMode::Sync, ttl);
    let names: Vec<String> = (0..10).map(|i| format!("d/f{i}")).collect();
    for n in &names {
        f.mem
            .insert(&format!("pre/{n}"), n.clone(), PutMeta::default());
    }
    for n in &names {
        assert_eq!(f.ino(n).map(|_| ()), Ok(()));
    }
    let heads = || f.mem.counters.heads.load(Ordering::Relaxed);
    let lists = || f.mem.counters.lists.load(Ordering::Relaxed);
    // Every HEAD sent without another lookup: at most 10 s for 10 HEADs.
    let wait_heads = |want: u64| {
        wait_until(|| heads() >= want);
        heads()
    };
    let d = f.ino("d").unwrap();
    for round in ["readdir", "lookup"] {
        std::thread::sleep(ttl + Duration::from_millis(50));
        let (h0, l0) = (heads(), lists());
        let first = if round == "readdir" {
            let fh = f.fs.opendir(d).unwrap();
            assert_eq!(f.fs.readdir(fh, 2).unwrap().len(), 10);
            f.fs.releasedir(fh);
            0
        } else {
            assert_eq!(f.fs.lookup(d, "f0").unwrap().size, 4);
            1
        };
        assert_eq!(lists(), l0 + 1, "{round}: one LIST");
        assert_eq!(
            wait_heads(h0 + 10),
            h0 + 10,
            "{round}: a HEAD per file, together"
        );
        for i in first..10 {
            assert_eq!(f.fs.lookup(d, &format!("f{i}")).unwrap().size, 4);
        }
        assert_eq!(
            (heads(), lists()),
            (h0 + 10, l0 + 1),
            "{round}: lookups sent more"
        );
    }
}

/// A walk past the TTL over a directory holding more files a listing
/// cannot confirm (as above) than one listing revalidates together: the first lookup of a
/// file the listing left out starts the HEADs of the next ones with its
/// own, so the walk (`git add` after `tar x`) waits for rounds of HEADs,
/// not for one after another; each file still costs one HEAD.
#[test]
fn a_walk_past_what_a_listing_revalidates_revalidates_the_rest_together() {
    // Long enough for the walk to end within it: a listing past the TTL
    // would revalidate the rest together anyway.
    let ttl = Duration::from_secs(2);
    let f = fixture_with_ttl(UploadMode::Sync, ttl);
    let n = 300;
    for i in 0..n {
        f.mem
            .insert(&format!("pre/d/f{i}"), "abcd", PutMeta::default());
    }
    for i in 0..n {
        assert_eq!(f.ino(&format!("d/f{i}")).map(|_| ()), Ok(()));
    }
    let c = &f.mem.counters;
    let heads = || c.heads.load(Ordering::SeqCst);
    let in_flight = || c.heads_in_flight.load(Ordering::SeqCst);
    std::thread::sleep(ttl + Duration::from_millis(50));
    f.mem.slow_heads(Duration::from_millis(5));
    let d = f.ino("d").unwrap();
    let h0 = heads();
    let fh = f.fs.opendir(d).unwrap();
    assert_eq!(f.fs.readdir(fh, 2).unwrap().len(), n as usize);
    f.fs.releasedir(fh);
    // The listing's own HEADs, answered.
    wait_until(|| heads() > h0 && in_flight() == 0);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(in_flight(), 0, "the listing's HEADs still going");
    assert!(
        heads() - h0 < n,
        "the listing revalidated every file itself"
    );
    c.heads_in_flight_max.store(0, Ordering::SeqCst);
    for i in 0..n {
        assert_eq!(f.fs.lookup(d, &format!("f{i}")).unwrap().size, 4);
    }
    assert_eq!(heads(), h0 + n, "one HEAD per file");
    assert!(
        c.heads_in_flight_max.load(Ordering::SeqCst) > 1,
        "the walk's HEADs went one after another"
    );
}

/// A name new to the table is probed on its own (one round, whatever the
/// directory holds) while its directory is listed in the background; that
/// listing answers the lookups after it.
#[test]
fn a_new_name_is_probed_while_its_directory_is_listed_in_the_background() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(30));
    for i in 0..20 {
        f.mem
            .insert(&format!("pre/big/f{i}"), "x", PutMeta::default());
    }
    // Known from a listing of the root: no lookup of a new name before.
    assert_eq!(f.list("").unwrap(), ["big"]);
    let big = f.ino("big").unwrap();
    let count = || {
        let c = &f.mem.counters;
        (
            c.heads.load(Ordering::Relaxed),
            c.lists.load(Ordering::Relaxed),
        )
    };
    let (h0, l0) = count();
    assert_eq!(f.fs.lookup(big, "new-1").map(|_| ()), Err(libc::ENOENT));
    assert_eq!(count().0, h0 + 1, "a probe: HEAD (and LIST) of the name");
    wait_until(|| count().1 >= l0 + 2);
    std::thread::sleep(Duration::from_millis(200)); // it has landed
    assert_eq!(count(), (h0 + 1, l0 + 2), "and one LIST of the directory");
    assert_eq!(f.fs.lookup(big, "new-2").map(|_| ()), Err(libc::ENOENT));
    assert_eq!(count(), (h0 + 1, l0 + 2), "the listing answers the rest");
    // (A listed file's mode and owner are on its object: a HEAD.)
    assert_eq!(f.fs.lookup(big, "f7").unwrap().size, 1);
    assert_eq!(count().1, l0 + 2);
}

/// A new name looked up while its directory's listing is under way is
/// probed at once rather than wait for that LIST, which takes many rounds
/// when the directory is large.
#[test]
fn a_new_name_does_not_wait_for_its_directorys_listing() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(30));
    f.mem.insert("pre/d/src", "x", PutMeta::default());
    let d = f.ino("d").unwrap();
    let lists = || f.mem.counters.lists.load(Ordering::Relaxed);
    let slow = Duration::from_secs(3);
    f.mem.slow_listings("pre/d/", slow);
    let l0 = lists();
    let t0 = std::time::Instant::now();
    assert_eq!(f.fs.lookup(d, "src").unwrap().size, 1);
    wait_until(|| lists() >= l0 + 2); // the probe's LIST and d's
    assert_eq!(f.fs.lookup(d, "dst").map(|_| ()), Err(libc::ENOENT));
    assert!(
        t0.elapsed() < slow / 2,
        "the lookup of dst waited for d's listing ({:?})",
        t0.elapsed()
    );
    // Once it lands, the listing answers the next new name.
    std::thread::sleep(slow + Duration::from_millis(200));
    let l1 = lists();
    assert_eq!(f.fs.lookup(d, "third").map(|_| ()), Err(libc::ENOENT));
    assert_eq!(lists(), l1, "no probe once the listing is in");
}

/// A walk over many known directories of one parent past the TTL (`git
/// add` freshening a loose object in each `.git/objects/xx/`): the stale
/// parent's own lookup lists its whole subtree in one request (at the next
/// walk, when that found a rewritten marker, the second directory does),
/// which answers every directory below (their
/// markers this mount wrote, shown with their dates) and the files this
/// mount wrote in them. Markers another client rewrote are read again,
/// together, and another client's deleted and new files show, at the next
/// walk.
#[test]
fn a_walk_over_stale_directories_lists_their_parents_subtree_once() {
    let ttl = Duration::from_millis(300);
    let f = fixture_with_ttl(UploadMode::Sync, ttl);
    let n = 40;
    f.mkdir("objects").unwrap();
    for i in 0..n {
        f.mkdir(&format!("objects/{i:02x}")).unwrap();
        f.write_file(&format!("objects/{i:02x}/obj"), b"x").unwrap();
    }
    std::thread::sleep(ttl + Duration::from_millis(100));
    let c = &f.mem.counters;
    let lists = || c.lists.load(Ordering::Relaxed);
    let heads = || c.heads.load(Ordering::Relaxed);
    f.mem.slow_heads(Duration::from_millis(20));
    let (l0, h0) = (lists(), heads());
    let objects = f.ino("objects").unwrap();
    let walk = |file: &str| -> Vec<(u32, Result<u64, i32>)> {
        (0..n)
            .map(|i| {
                let d = f.fs.lookup(objects, &format!("{i:02x}")).unwrap();
                (d.perm, f.fs.lookup(d.ino, file).map(|a| a.size))
            })
            .collect()
    };
    assert!(walk("obj").iter().all(|(_, r)| *r == Ok(1)));
    assert_eq!(
        lists() - l0,
        1,
        "the stale parent's lookup lists its whole subtree, and nothing else"
    );
    assert_eq!(heads() - h0, 0, "the listings confirmed every marker");

    // Another client: new attributes on ten directories' markers (a
    // second later than this mount's writes), a file deleted, one added.
    std::thread::sleep(Duration::from_millis(1100));
    let private = PutMeta {
        content_type: None,
        metadata: BTreeMap::from([("mode".to_string(), (libc::S_IFDIR | 0o700).to_string())]),
    };
    for i in 0..10 {
        f.mem
            .insert(&format!("pre/objects/{i:02x}/"), "", private.clone());
    }
    f.mem.delete_now("pre/objects/15/obj");
    f.mem.insert("pre/objects/16/new", "yz", PutMeta::default());
    let (l1, h1) = (lists(), heads());
    c.heads_in_flight_max.store(0, Ordering::SeqCst);
    let seen = walk("obj");
    assert!(
        seen[..10].iter().all(|(perm, _)| *perm == 0o700),
        "{seen:?}"
    );
    assert!(
        seen[10..].iter().all(|(perm, _)| *perm == 0o755),
        "{seen:?}"
    );
    assert_eq!(seen[0x15].1, Err(libc::ENOENT));
    assert!(heads() - h1 >= 10, "the rewritten markers were not read");
    assert!(c.heads_in_flight_max.load(Ordering::SeqCst) > 1);
    assert_eq!(lists() - l1, 3, "the walk listed more than before");
    assert_eq!(walk("new")[0x16].1, Ok(2));
}

/// A name new to the mount is probed on its own: its directory's listing,
/// for the lookups that follow, starts once the probe is answered, so that
/// the store does not serve the two at once (a `mv` to a new name waited for
/// a LIST of the bucket's root beside its probe). Then the next miss in
/// that directory is answered from the listing.
#[test]
fn a_new_names_directory_is_listed_after_its_probe_not_beside_it() {
    let ttl = Duration::from_secs(5);
    let f = fixture_with_ttl(UploadMode::Sync, ttl);
    for i in 0..20 {
        f.mem
            .insert(&format!("pre/dir/f{i:02}"), "x", PutMeta::default());
    }
    let lists = || f.lists_and_heads().0;
    // The store's LIST calls are all answered (after `lists` reached `n`).
    let settled = |n: u64| {
        let in_flight = || f.mem.counters.lists_in_flight.load(Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (lists() < n || in_flight() > 0) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50)); // their answers into the table
        lists() >= n
    };
    let l = lists();
    let dir = f.ino("dir").unwrap();
    assert!(settled(l + 2), "the probe of dir/ and the root's listing");
    f.mem.slow_heads(Duration::from_millis(600));
    let l0 = lists();
    let heads_held = || f.mem.counters.heads_in_flight.load(Ordering::SeqCst);
    let during = std::thread::scope(|s| {
        let probe = s.spawn(|| f.fs.lookup(dir, "moved"));
        // Read while the probe's HEAD is held, once its own LIST is in.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while (heads_held() == 0 || lists() == l0) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        let during = lists() - l0;
        assert_eq!(heads_held(), 1, "read after the probe's HEAD was answered");
        assert_eq!(probe.join().unwrap(), Err(libc::ENOENT));
        during
    });
    assert_eq!(
        during, 1,
        "while the probe's HEAD was answered, only its own LIST (of the name's prefix) was sent"
    );
    f.mem.slow_heads(Duration::ZERO);
    assert!(settled(l0 + 2));
    assert_eq!(lists() - l0, 2, "the directory was listed after the probe");
    let before = f.lists_and_heads();
    assert_eq!(f.fs.lookup(dir, "other"), Err(libc::ENOENT));
    assert_eq!(
        f.lists_and_heads(),
        before,
        "the listing answered the next lookups"
    );
}

/// A readdir queues the metadata HEADs of what it shows, 32 in flight at a
/// time; a lookup of an entry still queued behind hundreds of others sends
/// its HEAD at once instead of waiting for them (a `git status` stats its
/// work tree while `.git/objects/`'s markers are prefetched), and that HEAD
/// is not asked a second time when the queue reaches it.
#[test]
fn a_lookup_does_not_wait_behind_a_readdirs_queued_prefetch() {
    let f = fixture_with_ttl(UploadMode::Sync, Duration::from_secs(30));
    for i in 0..300 {
        f.mem.insert(
            &format!("pre/big/f{i:03}"),
            vec![7u8; 10 + i],
            PutMeta::default(),
        );
    }
    let big = f.ino("big").unwrap();
    let idle = || f.mem.counters.heads_in_flight.load(Ordering::SeqCst) == 0;
    std::thread::sleep(Duration::from_millis(300)); // the root's listing and prefetch
    f.mem.slow_heads(Duration::from_millis(200));
    let (_, h0) = f.lists_and_heads();
    assert_eq!(f.list_ino(big).unwrap().len(), 300);
    let attr = f.fs.lookup(big, "f299").unwrap();
    let sent = f.lists_and_heads().1 - h0;
    assert_eq!(attr.size, 309, "the lookup got the prefetched attributes");
    assert!(
        sent < 150,
        "{sent} of the 300 HEADs were sent before the lookup of the last entry returned"
    );
    wait_until(|| f.lists_and_heads().1 - h0 >= 300 && idle());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        f.lists_and_heads().1 - h0,
        300,
        "one HEAD per entry, the hurried one included"
    );
}

/// A lookup in a directory listed within the TTL fetches the metadata of
/// the entry's unconfirmed siblings with it, for the walk that follows
/// (`git status` stats every file of its work tree); directories known from
/// the listing only are left out of that batch (`git status` reads two
/// loose objects of the 256 directories of `.git/objects/`).
#[test]
fn a_lookup_batches_its_sibling_files_but_not_directories_only_listed() {
    let f = fixture_with_ttl(UploadMode::Sync, Duration::from_secs(30));
    for i in 0..200 {
        f.mem
            .insert(&format!("pre/objs/{i:02x}/o"), "x", PutMeta::default());
        f.mem
            .insert(&format!("pre/files/f{i:03}"), "x", PutMeta::default());
    }
    let heads = || f.lists_and_heads().1;
    let settle = || {
        wait_until(|| f.mem.counters.heads_in_flight.load(Ordering::SeqCst) == 0);
        std::thread::sleep(Duration::from_millis(300));
    };
    // The first lookup of a name in each directory lists it afterwards;
    // it is in once a miss of a name never asked costs no request.
    let tries = std::cell::Cell::new(0);
    let listed = |dir: u64| {
        wait_until(|| {
            tries.set(tries.get() + 1);
            let before = f.lists_and_heads();
            let miss = f.fs.lookup(dir, &format!("absent{}", tries.get()));
            miss == Err(libc::ENOENT) && f.lists_and_heads() == before
        })
    };
    f.ino("objs/00/o").unwrap();
    f.ino("files/f000").unwrap();
    let objs = f.ino("objs").unwrap();
    let files = f.ino("files").unwrap();
    listed(objs);
    listed(files);
    f.mem.slow_heads(Duration::from_millis(20)); // counted while in flight
    let h0 = heads();
    assert!(f.fs.lookup(objs, "a0").is_ok());
    assert!(f.fs.lookup(objs, "b1").is_ok());
    settle();
    let sent = heads() - h0;
    assert!(
        (2..=4).contains(&sent),
        "{sent} HEADs for two lookups among 200 listed directories"
    );
    let h0 = heads();
    assert!(f.fs.lookup(files, "f100").is_ok());
    settle();
    let sent = heads() - h0;
    assert!(
        sent >= 100,
        "{sent} HEADs: the lookup of one listed file fetched its siblings' metadata with its own"
    );
}

/// A stale directory this mount wrote and knows entries of is revalidated
/// by one listing of its whole subtree, which answers the lookups below it
/// without a request (one it knows nothing in is probed);
/// one whose subtree is larger than a page is listed so once, then probed
/// (it and the directories above it), since each try costs a full page.
#[test]
fn a_stale_directory_is_revalidated_by_its_subtree_listing_unless_larger_than_a_page() {
    let ttl = Duration::from_millis(300);
    let f = fixture_with_ttl(UploadMode::Sync, ttl);
    f.mkdir("top").unwrap();
    f.mkdir("top/small").unwrap();
    f.mkdir("top/small/a").unwrap();
    f.write_file("top/small/a/f", b"x").unwrap();
    f.mkdir("top/big").unwrap();
    for i in 0..1001 {
        f.mem
            .insert(&format!("pre/top/big/k{i:04}"), "y", PutMeta::default());
    }
    let c = &f.mem.counters;
    let lists = || c.lists.load(Ordering::Relaxed);
    let heads = || c.heads.load(Ordering::Relaxed);
    let top = f.ino("top").unwrap();
    let small = f.fs.lookup(top, "small").unwrap().ino;
    // (Directories whose entries the table knows: a walk below is likely.)
    f.write_file("top/big/mine", b"z").unwrap();
    f.mkdir("top/lone").unwrap();
    std::thread::sleep(ttl + Duration::from_millis(100));

    let (l0, h0) = (lists(), heads());
    assert_eq!(f.fs.lookup(top, "small").unwrap().ino, small);
    assert_eq!((lists() - l0, heads() - h0), (1, 0), "one subtree listing");
    let a = f.fs.lookup(small, "a").unwrap().ino;
    assert_eq!(f.fs.lookup(a, "f").unwrap().size, 1);
    assert_eq!(f.fs.lookup(a, "g"), Err(libc::ENOENT));
    assert_eq!(
        (lists() - l0, heads() - h0),
        (1, 0),
        "the walk below asked again"
    );

    // Larger than a page: listed whole once (a page, to no avail), then
    // probed as before. (Past the TTL of the walk above, whose listing of
    // `top` would mark it deep itself.)
    std::thread::sleep(ttl + Duration::from_millis(100));
    let l1 = lists();
    let big = f.fs.lookup(top, "big").unwrap().ino;
    let first = lists() - l1;
    std::thread::sleep(ttl + Duration::from_millis(100));
    let l2 = lists();
    assert_eq!(f.fs.lookup(top, "big").unwrap().ino, big);
    assert_eq!(lists() - l2, 1, "more than the probe's one-key LIST");
    assert!(first > 1, "no subtree listing before the probe: {first}");
    // The directory above it holds it: probed, not listed whole either.
    let l3 = lists();
    assert!(f.ino("top").is_ok());
    assert_eq!(lists() - l3, 1, "more than the probe's one-key LIST");
    // One the mount knows nothing in (a `stat` of it, a poll) is probed.
    let (l4, h4) = (lists(), heads());
    assert!(f.fs.lookup(top, "lone").is_ok());
    assert_eq!(lists() - l4, 1, "more than the probe's one-key LIST");
    assert!(
        heads() > h4,
        "listed, not probed (HEADs of its key and marker)"
    );
}

/// A walk of readdirs over sibling directories past the TTL (`git status`
/// finding untracked files) lists the next directories ahead, several at
/// once, after its second one; each directory is still listed once, and
/// another client's changes show.
#[test]
fn a_walk_of_readdirs_lists_the_next_directories_ahead() {
    let ttl = Duration::from_millis(400);
    let f = fixture_with_ttl(UploadMode::Sync, ttl);
    let n = 12;
    f.mkdir("w").unwrap();
    let mut dirs = Vec::new();
    for i in 0..n {
        f.mkdir(&format!("w/d{i:02}")).unwrap();
        f.write_file(&format!("w/d{i:02}/f"), b"x").unwrap();
        dirs.push(f.ino(&format!("w/d{i:02}")).unwrap());
    }
    std::thread::sleep(ttl + Duration::from_millis(100));
    f.mem.insert("pre/w/d05/new", "y", PutMeta::default());
    f.mem.delete_now("pre/w/d07/f");
    let c = &f.mem.counters;
    let lists = || c.lists.load(Ordering::Relaxed);
    f.mem
        .slow_listings_below("pre/w/", Duration::from_millis(60));
    c.lists_in_flight_max.store(0, Ordering::SeqCst);
    let l0 = lists();
    let seen: Vec<Vec<String>> = dirs.iter().map(|d| f.list_ino(*d).unwrap()).collect();
    assert_eq!(seen[5], ["f", "new"]);
    assert!(seen[7].is_empty(), "{:?}", seen[7]);
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, s)| i == 5 || i == 7 || s == &["f"])
    );
    assert_eq!(lists() - l0, n as u64, "a directory was listed twice");
    let most = c.lists_in_flight_max.load(Ordering::SeqCst);
    assert!(most > 1, "no listing went ahead of the walk");
    assert!(
        most <= 9,
        "{most} listings at once: 8 ahead and the walk's own at most"
    );
}

/// A miss stays true, as far as the mount knows, for what is left of the
/// TTL of the negative entry or listing that answered it, and the kernel
/// may keep it that long (docs/SEMANTICS.md): no longer than the TTL.
#[test]
fn a_miss_is_known_for_what_is_left_of_its_ttl() {
    let ttl = Duration::from_millis(400);
    let f = fixture_with_ttl(UploadMode::Async, ttl);
    f.mem.insert("pre/d/x", "x", PutMeta::default());
    let d = f.ino("d").unwrap();
    assert_eq!(f.fs.miss_ttl(d, "y"), Duration::ZERO, "nothing known yet");
    assert_eq!(f.fs.lookup(d, "y").map(|_| ()), Err(libc::ENOENT));
    let left = f.fs.miss_ttl(d, "y");
    assert!(left > ttl / 2 && left <= ttl, "{left:?}");
    std::thread::sleep(ttl / 2);
    assert!(f.fs.miss_ttl(d, "y") < left);
    std::thread::sleep(ttl / 2 + Duration::from_millis(50));
    assert_eq!(f.fs.miss_ttl(d, "y"), Duration::ZERO);
    // A readdir's listing answers for every name it did not show, and for
    // no name it did.
    assert_eq!(f.list("d").unwrap(), ["x"]);
    let left = f.fs.miss_ttl(d, "z");
    assert!(left > ttl / 2 && left <= ttl, "{left:?}");
    assert_eq!(f.fs.miss_ttl(d, "x"), Duration::ZERO);
}

/// A directory another client removed, which a listing of its parent
/// keeps for having been checked within the TTL, misses at its first
/// lookup past its TTL (the promise a HEAD finding its marker gone must
/// not break: such a HEAD no longer confirms a directory that had one).
#[test]
fn a_directory_removed_elsewhere_is_not_confirmed_by_its_missing_marker() {
    let ttl = Duration::from_millis(600);
    let f = fixture_with_ttl(UploadMode::Async, ttl);
    f.mem.insert("pre/p/d/", "", PutMeta::default());
    f.mem.insert("pre/p/d/x", "x", PutMeta::default());
    f.mem.insert("pre/p/e", "e", PutMeta::default());
    let p = f.ino("p").unwrap();
    let checked = std::time::Instant::now();
    assert!(f.fs.lookup(p, "d").is_ok());
    f.mem.delete_now("pre/p/d/");
    f.mem.delete_now("pre/p/d/x");
    std::thread::sleep(Duration::from_millis(200));
    // Listed now: d is not shown, but was checked within the TTL.
    assert_eq!(f.list("p").unwrap(), ["d", "e"]);
    // Past d's TTL, within p's listing's.
    let until = checked + ttl + Duration::from_millis(50);
    std::thread::sleep(until.saturating_duration_since(std::time::Instant::now()));
    assert_eq!(f.fs.lookup(p, "d").map(|_| ()), Err(libc::ENOENT));
}

#[test]
fn objects_from_other_tools_get_defaults_and_implied_dirs() {
    let f = fixture(UploadMode::Sync);
    f.mem
        .insert("pre/x/y/z.bin", vec![1u8; 10], PutMeta::default());
    f.mem.insert("outside/secret", "no", PutMeta::default());
    assert_eq!(f.list("").unwrap(), ["x"]);
    let attr = f.fs.lookup(f.ino("x/y").unwrap(), "z.bin").unwrap();
    assert_eq!(
        (attr.kind, attr.size, attr.perm, attr.uid),
        (Kind::File, 10, 0o644, 1000)
    );
    assert_eq!(f.fs.getattr(f.ino("x").unwrap()).unwrap().perm, 0o755);
    assert_eq!(f.ino("secret"), Err(libc::ENOENT));
}

#[test]
fn random_writes_append_and_truncate() {
    let f = fixture(UploadMode::Sync);
    f.write_file("f", b"0123456789").unwrap();
    let ino = f.ino("f").unwrap();
    let fh =
        f.fs.open(
            ino,
            OpenFlags {
                write: true,
                truncate: false,
            },
        )
        .unwrap();
    f.fs.write(fh, 3, b"XY").unwrap();
    f.fs.write(fh, 12, b"end").unwrap(); // a hole at 10..12
    f.fs.release(fh).unwrap();
    f.fs.flush_all();
    assert_eq!(f.mem.object("pre/f").unwrap(), &b"012XY56789\0\0end"[..]);
    f.fs.setattr(
        ino,
        SetAttr {
            size: Some(4),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(f.mem.object("pre/f").unwrap(), &b"012X"[..]);
    f.fs.setattr(
        ino,
        SetAttr {
            perm: Some(0o700),
            ..Default::default()
        },
    )
    .unwrap();
    let meta = f.mem.object_meta("pre/f").unwrap();
    assert_eq!(meta.metadata["mode"], (libc::S_IFREG | 0o700).to_string());
    assert_eq!(f.mem.object("pre/f").unwrap(), &b"012X"[..]);
}

#[test]
fn rename_of_files_and_non_empty_directories() {
    let f = fixture(UploadMode::Sync);
    f.mkdir("src").unwrap();
    f.mkdir("src/sub").unwrap();
    f.write_file("src/a", b"A").unwrap();
    f.write_file("src/sub/b", b"B").unwrap();
    f.rename("src", "dst").unwrap();
    assert_eq!(
        f.mem.keys(),
        ["pre/dst/", "pre/dst/a", "pre/dst/sub/", "pre/dst/sub/b"]
    );
    assert_eq!(f.read_file("dst/sub/b").unwrap(), b"B");
    assert_eq!(f.ino("src"), Err(libc::ENOENT));
    f.rename("dst/a", "dst/sub/b").unwrap(); // replaces b
    assert_eq!(f.read_file("dst/sub/b").unwrap(), b"A");
    assert_eq!(f.mem.keys(), ["pre/dst/", "pre/dst/sub/", "pre/dst/sub/b"]);
    f.mkdir("other").unwrap();
    f.write_file("other/x", b"x").unwrap();
    assert_eq!(f.rename("dst", "other"), Err(libc::ENOTEMPTY));
    assert_eq!(f.rename("dst", "dst/sub/inside"), Err(libc::EINVAL));
}

#[test]
fn symlinks_use_the_s3fs_layout() {
    let f = fixture(UploadMode::Sync);
    let attr = f.fs.symlink(ROOT_INO, "l", b"../target", 0, 0).unwrap();
    assert_eq!(attr.kind, Kind::Symlink);
    assert_eq!(f.mem.object("pre/l").unwrap(), &b"../target"[..]);
    let mode: u32 = f.mem.object_meta("pre/l").unwrap().metadata["mode"]
        .parse()
        .unwrap();
    assert_eq!(mode & libc::S_IFMT, libc::S_IFLNK);
    // A fresh mount sees it as a symlink too.
    let g = fixture(UploadMode::Sync);
    g.mem
        .insert("pre/l", "../target", f.mem.object_meta("pre/l").unwrap());
    let ino = g.ino("l").unwrap();
    assert_eq!(g.fs.getattr(ino).unwrap().kind, Kind::Symlink);
    assert_eq!(&g.fs.readlink(ino).unwrap()[..], b"../target");
}

#[test]
fn async_uploads_wait_out_a_store_outage() {
    let f = fixture(UploadMode::Async);
    // Files are created while the store answers (creating needs a lookup);
    // then it goes away in the middle of the writes.
    let handles: Vec<u64> = (0..20)
        .map(|i| {
            f.fs.create(ROOT_INO, &format!("f{i}"), 0o644, 0, 0, true)
                .unwrap()
                .1
        })
        .collect();
    f.mem.set_down(true);
    for (i, fh) in handles.into_iter().enumerate() {
        f.fs.write(fh, 0, format!("data {i}").as_bytes()).unwrap();
        f.fs.flush(fh).unwrap();
        f.fs.release(fh).unwrap();
    }
    assert!(f.mem.keys().is_empty());
    assert!(f.fs.pending_bytes() > 0);
    // What the status file reports: every file waits, since before now.
    let pending = f.fs.pending();
    let bytes: u64 = (0..20).map(|i| format!("data {i}").len() as u64).sum();
    assert_eq!((pending.files, pending.bytes), (20, bytes));
    assert!(pending.cache_bytes >= bytes, "{pending:?}");
    let since = pending.oldest_since.expect("something waits");
    assert!(since <= std::time::SystemTime::now());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(f.fs.pending().oldest_since, Some(since), "the oldest stays");
    f.mem.set_down(false);
    assert_eq!(f.fs.flush_all(), 0);
    let done = f.fs.pending();
    assert_eq!((done.files, done.bytes, done.cache_bytes), (0, 0, 0));
    assert_eq!(done.oldest_since, None);
    for i in 0..20 {
        assert_eq!(
            f.mem.object(&format!("pre/f{i}")).unwrap(),
            format!("data {i}").as_bytes()
        );
    }
    assert_eq!(f.fs.pending_bytes(), 0);
}

#[test]
fn fsync_reports_failure_and_keeps_the_data() {
    let f = fixture(UploadMode::Async);
    let (_, fh) = f.fs.create(ROOT_INO, "db", 0o644, 0, 0, true).unwrap();
    f.fs.write(fh, 0, b"committed").unwrap();
    f.mem.set_down(true);
    assert_eq!(f.fs.fsync(fh), Err(libc::EIO));
    f.mem.set_down(false);
    f.fs.fsync(fh).unwrap();
    assert_eq!(f.mem.object("pre/db").unwrap(), &b"committed"[..]);
    f.fs.release(fh).unwrap();
}

#[test]
fn sync_close_fails_on_a_permanent_error() {
    let f = fixture(UploadMode::Sync);
    let (_, fh) = f.fs.create(ROOT_INO, "x", 0o644, 0, 0, true).unwrap();
    f.fs.write(fh, 0, b"x").unwrap();
    f.mem.fail_next(
        1,
        StoreError::access_denied("PutObject", "pre/x", "AccessDenied: no"),
    );
    assert_eq!(f.fs.flush(fh), Err(libc::EACCES));
    assert_eq!(f.fs.flush(fh), Ok(()));
    f.fs.release(fh).unwrap();
    assert_eq!(f.mem.object("pre/x").unwrap(), &b"x"[..]);
}

#[test]
fn staged_data_of_a_dead_mount_is_uploaded_at_the_next_mount() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mem = Arc::new(MemoryStore::new());
    let cache = tempfile::tempdir().unwrap();
    {
        let store: Arc<dyn ObjectStore> = mem.clone();
        let fs = ObjectFs::new(
            store,
            rt.handle().clone(),
            options(cache.path(), UploadMode::Async),
        )
        .unwrap();
        let (_, fh) = fs.create(ROOT_INO, "late", 0o600, 5, 6, true).unwrap();
        mem.set_down(true); // nothing can leave
        fs.write(fh, 0, b"must survive").unwrap();
        fs.release(fh).unwrap();
        // The "process" dies here: the fs is leaked, never flushed.
        std::mem::forget(fs);
    }
    assert!(mem.object("pre/late").is_none());
    // The lock of the dead mount is released with its file descriptor; a
    // leaked fs in this process still holds it, so simulate the new process
    // by copying the cache directory (while the store is still down, so the
    // leaked fs's background retries cannot empty it under the copy).
    let cache2 = tempfile::tempdir().unwrap();
    copy_dir(
        &cache.path().join("staging"),
        &cache2.path().join("staging"),
    );
    mem.set_down(false);
    let store: Arc<dyn ObjectStore> = mem.clone();
    let fs = ObjectFs::new(
        store,
        rt.handle().clone(),
        options(cache2.path(), UploadMode::Async),
    )
    .unwrap();
    assert_eq!(mem.object("pre/late").unwrap(), &b"must survive"[..]);
    assert_eq!(mem.object_meta("pre/late").unwrap().metadata["uid"], "5");
    // The uploaded data stays as a clean (evictable) copy in the cache.
    assert_eq!(
        std::fs::read_dir(cache2.path().join("staging"))
            .unwrap()
            .count(),
        1
    );
    assert_eq!(fs.cache_bytes(), (12, 12));
    assert_eq!(fs.pending_bytes(), 0);
}

#[test]
fn read_only_mounts_refuse_every_change() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mem = Arc::new(MemoryStore::new());
    mem.insert("pre/f", "x", PutMeta::default());
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path(), UploadMode::Sync);
    opts.read_only = true;
    let store: Arc<dyn ObjectStore> = mem.clone();
    let fs = ObjectFs::new(store, rt.handle().clone(), opts).unwrap();
    let ino = fs.lookup(ROOT_INO, "f").unwrap().ino;
    assert_eq!(
        fs.open(
            ino,
            OpenFlags {
                write: true,
                truncate: false
            }
        ),
        Err(libc::EROFS)
    );
    assert_eq!(
        fs.create(ROOT_INO, "g", 0o644, 0, 0, true).err(),
        Some(libc::EROFS)
    );
    assert_eq!(
        fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).err(),
        Some(libc::EROFS)
    );
    assert_eq!(fs.unlink(ROOT_INO, "f"), Err(libc::EROFS));
    assert_eq!(
        fs.setattr(
            ino,
            SetAttr {
                perm: Some(0o600),
                ..Default::default()
            }
        )
        .err(),
        Some(libc::EROFS)
    );
    let fh = fs.open(ino, OpenFlags::default()).unwrap();
    assert_eq!(&fs.read(fh, 0, 10).unwrap()[..], b"x");
}

#[test]
fn large_files_go_up_in_parts_and_come_back_intact() {
    let f = fixture(UploadMode::Sync);
    let data: Vec<u8> = (0..40 * 1024 * 1024u32)
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    let (_, fh) = f.fs.create(ROOT_INO, "big", 0o644, 0, 0, true).unwrap();
    for (i, chunk) in data.chunks(128 * 1024).enumerate() {
        f.fs.write(fh, (i * 128 * 1024) as u64, chunk).unwrap();
    }
    f.fs.flush(fh).unwrap();
    f.fs.release(fh).unwrap();
    assert!(
        f.mem
            .counters
            .parts
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 5
    );
    assert!(f.read_file("big").unwrap() == data);
    let _ = &f.cache;
}

// ----- reference model ------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Write(usize, Vec<u8>),
    Mkdir(usize),
    Unlink(usize),
    Rmdir(usize),
    Rename(usize, usize),
    Truncate(usize, u8),
}

/// A small fixed namespace so operations collide often.
const PATHS: &[&str] = &["a", "b", "d", "d/a", "d/e", "d/e/f", "e"];

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        (p.clone(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(i, d)| Op::Write(i, d)),
        p.clone().prop_map(Op::Mkdir),
        p.clone().prop_map(Op::Unlink),
        p.clone().prop_map(Op::Rmdir),
        (p.clone(), p.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        (p, any::<u8>()).prop_map(|(i, n)| Op::Truncate(i, n % 80)),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Entry {
    File(Vec<u8>),
    Dir,
}

/// The model: a map from path to entry, with POSIX's rules.
#[derive(Default, Debug)]
struct Model(BTreeMap<String, Entry>);

impl Model {
    /// Path resolution from the root: the first missing component gives
    /// ENOENT, the first file used as a directory ENOTDIR.
    fn parent_ok(&self, path: &str) -> Result<(), i32> {
        let parts: Vec<&str> = path.split('/').collect();
        for i in 1..parts.len() {
            match self.0.get(&parts[..i].join("/")) {
                Some(Entry::Dir) => {}
                Some(Entry::File(_)) => return Err(libc::ENOTDIR),
                None => return Err(libc::ENOENT),
            }
        }
        Ok(())
    }
    fn has_children(&self, path: &str) -> bool {
        let prefix = format!("{path}/");
        self.0.keys().any(|k| k.starts_with(&prefix))
    }
    fn apply(&mut self, op: &Op) -> Result<(), i32> {
        match op {
            Op::Write(i, data) => {
                let p = PATHS[*i];
                self.parent_ok(p)?;
                match self.0.get(p) {
                    Some(Entry::Dir) => Err(libc::EISDIR),
                    _ => {
                        self.0.insert(p.into(), Entry::File(data.clone()));
                        Ok(())
                    }
                }
            }
            Op::Mkdir(i) => {
                let p = PATHS[*i];
                self.parent_ok(p)?;
                if self.0.contains_key(p) {
                    return Err(libc::EEXIST);
                }
                self.0.insert(p.into(), Entry::Dir);
                Ok(())
            }
            Op::Unlink(i) => {
                let p = PATHS[*i];
                self.parent_ok(p)?;
                match self.0.get(p) {
                    None => Err(libc::ENOENT),
                    Some(Entry::Dir) => Err(libc::EISDIR),
                    Some(Entry::File(_)) => {
                        self.0.remove(p);
                        Ok(())
                    }
                }
            }
            Op::Rmdir(i) => {
                let p = PATHS[*i];
                self.parent_ok(p)?;
                match self.0.get(p) {
                    None => Err(libc::ENOENT),
                    Some(Entry::File(_)) => Err(libc::ENOTDIR),
                    Some(Entry::Dir) if self.has_children(p) => Err(libc::ENOTEMPTY),
                    Some(Entry::Dir) => {
                        self.0.remove(p);
                        Ok(())
                    }
                }
            }
            Op::Truncate(i, n) => {
                let p = PATHS[*i];
                self.parent_ok(p)?;
                match self.0.get_mut(p) {
                    None => Err(libc::ENOENT),
                    Some(Entry::Dir) => Err(libc::EISDIR),
                    Some(Entry::File(d)) => {
                        d.resize(*n as usize, 0);
                        Ok(())
                    }
                }
            }
            Op::Rename(a, b) => {
                let (from, to) = (PATHS[*a], PATHS[*b]);
                // Linux resolves both parents before looking at the source.
                self.parent_ok(from)?;
                self.parent_ok(to)?;
                let src = self.0.get(from).cloned().ok_or(libc::ENOENT)?;
                if from == to {
                    return Ok(());
                }
                if to.starts_with(&format!("{from}/")) {
                    return Err(libc::EINVAL);
                }
                match (&src, self.0.get(to)) {
                    (Entry::Dir, Some(Entry::File(_))) => return Err(libc::ENOTDIR),
                    (Entry::File(_), Some(Entry::Dir)) => return Err(libc::EISDIR),
                    (Entry::Dir, Some(Entry::Dir)) if self.has_children(to) => {
                        return Err(libc::ENOTEMPTY);
                    }
                    _ => {}
                }
                let moved: Vec<(String, Entry)> = self
                    .0
                    .iter()
                    .filter(|(k, _)| *k == from || k.starts_with(&format!("{from}/")))
                    .map(|(k, v)| (format!("{to}{}", &k[from.len()..]), v.clone()))
                    .collect();
                self.0
                    .retain(|k, _| k != from && !k.starts_with(&format!("{from}/")));
                self.0.remove(to);
                self.0.extend(moved);
                Ok(())
            }
        }
    }
}

fn apply_fs(f: &Fixture, op: &Op) -> Result<(), i32> {
    match op {
        Op::Write(i, d) => f.write_file(PATHS[*i], d),
        Op::Mkdir(i) => f.mkdir(PATHS[*i]),
        Op::Unlink(i) => f.unlink(PATHS[*i]),
        Op::Rmdir(i) => f.rmdir(PATHS[*i]),
        Op::Rename(a, b) => f.rename(PATHS[*a], PATHS[*b]),
        Op::Truncate(i, n) => {
            let ino = f.ino(PATHS[*i])?;
            if f.fs.getattr(ino)?.kind == Kind::Dir {
                return Err(libc::EISDIR);
            }
            f.fs.setattr(
                ino,
                SetAttr {
                    size: Some(*n as u64),
                    ..Default::default()
                },
            )
            .map(|_| ())
        }
    }
}

/// What the bucket should hold for the model: objects for files, markers
/// for directories.
fn expected_keys(model: &Model) -> BTreeMap<String, Vec<u8>> {
    model
        .0
        .iter()
        .map(|(k, e)| match e {
            Entry::File(d) => (format!("pre/{k}"), d.clone()),
            Entry::Dir => (format!("pre/{k}/"), Vec::new()),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn behaves_like_the_reference_model(
        ops in proptest::collection::vec(op(), 1..25),
        sync in any::<bool>(),
        cached in any::<bool>(),
    ) {
        // With a TTL the caches (attributes, misses, directory listings) are
        // in play: our own changes must still be seen at once.
        let ttl = if cached { Duration::from_secs(5) } else { Duration::ZERO };
        let f = fixture_with_ttl(if sync { UploadMode::Sync } else { UploadMode::Async }, ttl);
        let mut model = Model::default();
        for op in &ops {
            let want = model.apply(op);
            let got = apply_fs(&f, op);
            // Same success, and for failures the same errno.
            prop_assert_eq!(got, want, "op {:?}", op);
        }
        prop_assert_eq!(f.fs.flush_all(), 0);
        let bucket: BTreeMap<String, Vec<u8>> = f
            .mem
            .keys()
            .into_iter()
            .map(|k| { let v = f.mem.object(&k).unwrap().to_vec(); (k, v) })
            .collect();
        prop_assert_eq!(bucket, expected_keys(&model));
        for (path, entry) in &model.0 {
            if let Entry::File(d) = entry {
                prop_assert_eq!(&f.read_file(path).unwrap(), d);
            }
        }
    }
}

// ----- the reference model with the cache in play ---------------------------

/// The model's operations, and what happens around a mount: another tool
/// writing an object, uploads, a remount on the same cache directory.
#[derive(Debug, Clone)]
enum CacheOp {
    Fs(Op),
    Read(usize),
    /// Writes `data` at an offset of an existing file, without truncating
    /// (its local copy, cached or fetched, is changed in place).
    Patch(usize, u8, Vec<u8>),
    /// Another tool writes a file object where a process could see a file:
    /// these bytes, or (`true`) other bytes of the same size as the file
    /// there now, which only its ETag tells apart from the cached copy.
    ExternalWrite(usize, Vec<u8>, bool),
    FlushAll,
    Remount,
}

fn cache_op() -> impl Strategy<Value = CacheOp> {
    let p = 0..PATHS.len();
    prop_oneof![
        6 => op().prop_map(CacheOp::Fs),
        3 => p.clone().prop_map(CacheOp::Read),
        2 => (p.clone(), 0..80u8, proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, at, d)| CacheOp::Patch(i, at, d)),
        2 => (p, proptest::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(i, d, same_size)| CacheOp::ExternalWrite(i, d, same_size)),
        1 => Just(CacheOp::FlushAll),
        1 => Just(CacheOp::Remount),
    ]
}

impl Model {
    fn read(&self, path: &str) -> Result<Vec<u8>, i32> {
        self.parent_ok(path)?;
        match self.0.get(path) {
            None => Err(libc::ENOENT),
            Some(Entry::Dir) => Err(libc::EISDIR),
            Some(Entry::File(d)) => Ok(d.clone()),
        }
    }

    fn patch(&mut self, path: &str, at: usize, data: &[u8]) -> Result<(), i32> {
        self.parent_ok(path)?;
        match self.0.get_mut(path) {
            None => Err(libc::ENOENT),
            Some(Entry::Dir) => Err(libc::EISDIR),
            Some(Entry::File(d)) => {
                if d.len() < at + data.len() {
                    d.resize(at + data.len(), 0);
                }
                d[at..at + data.len()].copy_from_slice(data);
                Ok(())
            }
        }
    }

    /// Another tool writes a file at `path` (see [`CacheOp::ExternalWrite`]);
    /// only where its parent is a directory and no directory is in the
    /// way. The bytes written, or None when skipped.
    fn external_write(&mut self, path: &str, data: &[u8], same_size: bool) -> Option<Vec<u8>> {
        if self.parent_ok(path).is_err() || self.0.get(path) == Some(&Entry::Dir) {
            return None;
        }
        let data = match self.0.get(path) {
            Some(Entry::File(old)) if same_size => old.iter().map(|b| b.wrapping_add(1)).collect(),
            _ => data.to_vec(),
        };
        self.0.insert(path.into(), Entry::File(data.clone()));
        Some(data)
    }
}

fn patch_fs(f: &Fixture, path: &str, at: u64, data: &[u8]) -> Result<(), i32> {
    let ino = f.ino(path)?;
    let write = OpenFlags {
        write: true,
        truncate: false,
    };
    let fh = f.fs.open(ino, write)?;
    f.fs.write(fh, at, data)?;
    f.fs.flush(fh)?;
    f.fs.release(fh)
}

/// The bucket holds the model, and every file reads as the model says.
fn check_bucket_and_reads(f: &Fixture, model: &Model) -> Result<(), TestCaseError> {
    let bucket: BTreeMap<String, Vec<u8>> = f
        .mem
        .keys()
        .into_iter()
        .map(|k| {
            let v = f.mem.object(&k).unwrap().to_vec();
            (k, v)
        })
        .collect();
    prop_assert_eq!(bucket, expected_keys(model));
    for (path, entry) in &model.0 {
        if let Entry::File(d) = entry {
            prop_assert_eq!(&f.read_file(path).unwrap(), d, "read {}", path);
        }
    }
    Ok(())
}

/// With everything uploaded and closed, every local copy is a clean cached
/// one, and the count of bytes is what the cache directory holds.
fn check_cache_settled(f: &Fixture) -> Result<(), TestCaseError> {
    // (Reads in name order fetch the next files ahead, in the background.)
    wait_until(|| {
        let (used, clean) = f.fs.cache_bytes();
        used == clean
    });
    let (used, clean) = f.fs.cache_bytes();
    prop_assert_eq!(used, clean, "a copy neither cached nor dirty");
    // Copies given up are deleted in the background, soon.
    let on_disk = || -> u64 {
        std::fs::read_dir(f.cache.path().join("staging"))
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    wait_until(|| on_disk() == used);
    prop_assert_eq!(on_disk(), used, "bytes on disk vs bytes counted");
    Ok(())
}

const SMALL_CACHE: u64 = 200;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]
    /// The model again, with a cache too small for all files (evictions),
    /// objects rewritten behind the mount's back, and remounts that find
    /// the cache directory as the last mount left it.
    #[test]
    fn behaves_like_the_reference_model_with_a_small_cache(
        ops in proptest::collection::vec(cache_op(), 1..30),
        sync in any::<bool>(),
    ) {
        let upload = if sync { UploadMode::Sync } else { UploadMode::Async };
        // TTL 0: an outside write is seen at the next lookup.
        let mut f = fixture_with(upload, |o| o.cache_size = SMALL_CACHE);
        let mut model = Model::default();
        for op in &ops {
            match op {
                CacheOp::Fs(op) => {
                    let want = model.apply(op);
                    prop_assert_eq!(apply_fs(&f, op), want, "op {:?}", op);
                }
                CacheOp::Read(i) => {
                    let p = PATHS[*i];
                    prop_assert_eq!(f.read_file(p), model.read(p), "read {}", p);
                }
                CacheOp::Patch(i, at, d) => {
                    let p = PATHS[*i];
                    let want = model.patch(p, *at as usize, d);
                    prop_assert_eq!(patch_fs(&f, p, *at as u64, d), want, "patch {}", p);
                }
                CacheOp::ExternalWrite(i, d, same_size) => {
                    // The mount's own uploads first: they would overwrite it.
                    prop_assert_eq!(f.fs.flush_all(), 0);
                    if let Some(d) = model.external_write(PATHS[*i], d, *same_size) {
                        f.mem.insert(&format!("pre/{}", PATHS[*i]), d, PutMeta::default());
                    }
                }
                CacheOp::FlushAll => {
                    prop_assert_eq!(f.fs.flush_all(), 0);
                    check_cache_settled(&f)?;
                    check_bucket_and_reads(&f, &model)?;
                }
                CacheOp::Remount => {
                    f = f.remount();
                    check_cache_settled(&f)?;
                    check_bucket_and_reads(&f, &model)?;
                }
            }
            let (used, clean) = f.fs.cache_bytes();
            prop_assert!(used <= SMALL_CACHE && clean <= used, "after {:?}: {:?}", op, (used, clean));
        }
        prop_assert_eq!(f.fs.flush_all(), 0);
        check_cache_settled(&f)?;
        check_bucket_and_reads(&f, &model)?;
        check_cache_settled(&f)?;
    }
}

/// `attrs_from_listing`: a listed file's attributes come from the listing
/// (no HEAD, the mount's defaults); small objects, which may be symlinks,
/// are still HEADed; without the option the stored metadata wins.
#[test]
fn attributes_from_listings_skip_the_head_except_for_possible_symlinks() {
    use std::sync::atomic::Ordering;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mem = Arc::new(MemoryStore::new());
    let meta = |mode: u32, uid: u32| PutMeta {
        content_type: None,
        metadata: BTreeMap::from([
            ("mode".to_string(), mode.to_string()),
            ("uid".to_string(), uid.to_string()),
        ]),
    };
    mem.insert("pre/big", vec![7u8; 2000], meta(libc::S_IFREG | 0o755, 7));
    mem.insert("pre/link", "big", meta(libc::S_IFLNK | 0o777, 7));
    mem.insert("pre/private/", "", meta(libc::S_IFDIR | 0o700, 7));
    mem.insert("pre/private/x", "x", PutMeta::default());
    for from_listing in [true, false] {
        let cache = tempfile::tempdir().unwrap();
        let mut opts = options(cache.path(), UploadMode::Async);
        opts.metadata_ttl = Duration::from_secs(30);
        opts.attrs_from_listing = from_listing;
        let store: Arc<dyn ObjectStore> = mem.clone();
        let fs = ObjectFs::new(store, rt.handle().clone(), opts).unwrap();
        let fh = fs.opendir(ROOT_INO).unwrap();
        assert_eq!(fs.readdir(fh, 2).unwrap().len(), 3);
        fs.releasedir(fh);
        let link = fs.lookup(ROOT_INO, "link").unwrap();
        assert_eq!(link.kind, Kind::Symlink, "from_listing={from_listing}");
        let heads = mem.counters.heads.load(Ordering::Relaxed);
        let big = fs.lookup(ROOT_INO, "big").unwrap();
        assert_eq!(big.size, 2000);
        let private = fs.lookup(ROOT_INO, "private").unwrap();
        if from_listing {
            assert_eq!((big.perm, big.uid), (0o644, 1000), "the mount's defaults");
            assert_eq!((private.perm, private.uid), (0o755, 1000));
            assert_eq!(mem.counters.heads.load(Ordering::Relaxed), heads, "no HEAD");
        } else {
            assert_eq!((big.perm, big.uid), (0o755, 7), "the stored metadata");
            // A listed directory shows its marker's mode, never the default.
            assert_eq!((private.perm, private.uid), (0o700, 7));
        }
    }
    // Past the TTL, a listing again gives the attributes: no HEAD.
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path(), UploadMode::Async);
    // (A TTL long enough that a loaded machine does not let it pass
    // between the readdir and the lookup.)
    opts.metadata_ttl = Duration::from_millis(500);
    opts.attrs_from_listing = true;
    let fs = ObjectFs::new(mem.clone(), rt.handle().clone(), opts).unwrap();
    for round in 0..3 {
        let fh = fs.opendir(ROOT_INO).unwrap();
        fs.readdir(fh, 0).unwrap();
        fs.releasedir(fh);
        // The listing's own HEAD of the small "link", sent in the
        // background, answered before counting (its lookup waits for it).
        assert_eq!(fs.lookup(ROOT_INO, "link").unwrap().kind, Kind::Symlink);
        let heads = mem.counters.heads.load(Ordering::Relaxed);
        assert_eq!(fs.lookup(ROOT_INO, "big").unwrap().size, 2000);
        assert_eq!(
            mem.counters.heads.load(Ordering::Relaxed),
            heads,
            "round {round}: the listing confirmed it"
        );
        std::thread::sleep(Duration::from_millis(550));
    }
}

/// With attributes from listings, a name a listing showed is as fresh as
/// the listing's start, not its end: after a listing slower than the TTL
/// the next lookup asks the store again.
#[test]
fn a_name_new_to_a_slow_listing_is_stale_from_the_listings_start() {
    let f = fixture_with(UploadMode::Async, |o| {
        o.metadata_ttl = Duration::from_millis(300);
        o.attrs_from_listing = true;
    });
    f.mem.insert("pre/big", vec![7u8; 2000], PutMeta::default());
    f.mem.slow_listings("pre/", Duration::from_millis(400));
    assert_eq!(f.list("").unwrap(), ["big"]);
    f.mem.slow_listings("pre/", Duration::ZERO);
    assert_eq!(f.fs.lookup(ROOT_INO, "big").unwrap().size, 2000);
    // By the listing's background HEAD, or the lookup's own.
    assert_eq!(f.lists_and_heads().1, 1, "the stale name was revalidated");
}

/// A directory removed while its creation is still on its way to the store
/// stays removed for every later lookup, whatever the sender does
/// meanwhile (a LIST begun before the delete landed may still show it).
/// Timing varies from round to round; the reference model found this.
#[test]
fn a_removed_directory_stays_gone_while_its_changes_are_in_flight() {
    for round in 0..300 {
        let f = fixture_with_ttl(UploadMode::Async, Duration::ZERO);
        f.mkdir("d").unwrap();
        if round % 3 == 1 {
            std::thread::sleep(Duration::from_micros(200));
        }
        f.rmdir("d").unwrap();
        assert_eq!(f.mkdir("d/a"), Err(libc::ENOENT), "round {round}");
        assert_eq!(f.fs.flush_all(), 0);
        assert!(f.mem.keys().is_empty(), "round {round}: {:?}", f.mem.keys());
    }
}

/// A directory rename a crash cut short: some objects already moved (copy
/// and delete done), one copied but its source not deleted yet, the rest
/// not touched. The next mount finishes it from the journal: every object
/// at its new name exactly once, no source left, nothing else touched.
#[test]
fn a_directory_rename_cut_short_is_finished_by_the_next_mount() {
    // As journalled before the mount listed the old prefix itself (list:
    // false), and as journalled at once (list: true: the names are what the
    // old prefix holds, its marker is copied).
    for list in [false, true] {
        use objectfs::oplog::{NsOp, OpLog};
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mem = Arc::new(MemoryStore::new());
        let cache = tempfile::tempdir().unwrap();
        let names = ["", "a", "b", "sub/c", "sub/d"];
        let body = |n: &str| format!("body of {n}").into_bytes();
        // Moved before the crash: "a" (copied and deleted); "b" copied only.
        mem.insert("pre/new/a", body("a"), PutMeta::default());
        mem.insert("pre/new/b", body("b"), PutMeta::default());
        for n in ["", "b", "sub/c", "sub/d"] {
            mem.insert(&format!("pre/old/{n}"), body(n), PutMeta::default());
        }
        mem.insert("pre/other", b"untouched".to_vec(), PutMeta::default());
        OpLog::open(cache.path())
            .unwrap()
            .write(
                7,
                &NsOp::RenameDir {
                    from: "pre/old/".into(),
                    to: "pre/new/".into(),
                    names: match list {
                        true => Vec::new(),
                        false => names.iter().map(|n| n.to_string()).collect(),
                    },
                    marker: list.then(PutMeta::default),
                    list,
                },
            )
            .unwrap();

        let store: Arc<dyn ObjectStore> = mem.clone();
        let fs = ObjectFs::new(
            store,
            rt.handle().clone(),
            options(cache.path(), UploadMode::Async),
        )
        .unwrap();
        let mut want: Vec<String> = names.iter().map(|n| format!("pre/new/{n}")).collect();
        want.push("pre/other".into());
        want.sort();
        assert_eq!(mem.keys(), want);
        for n in names {
            assert_eq!(
                mem.object(&format!("pre/new/{n}")).unwrap(),
                body(n),
                "{n:?}"
            );
        }
        assert_eq!(fs.pending_ops(), 0);
        assert_eq!(
            objectfs::oplog::recorded(cache.path()).unwrap(),
            0,
            "the journal is empty once replayed"
        );
    }
}

/// Attributes come with when the store last confirmed them (a lookup's
/// HEAD or listing), not when they are asked for: the kernel keeps them
/// only for what is left of the TTL from then (it kept them a whole TTL
/// from each look, so another host's change could show two TTLs late). A
/// file being written has no such time: the store cannot contradict it.
#[test]
fn attributes_carry_when_the_store_confirmed_them() {
    let f = fixture_with_ttl(UploadMode::Async, Duration::from_secs(60));
    f.mem.insert("pre/a", b"a".to_vec(), PutMeta::default());
    let ino = f.ino("a").unwrap();
    let looked = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(50));
    let attr = f.fs.getattr(ino).unwrap();
    assert!(attr.confirmed.is_some_and(|at| at <= looked), "{attr:?}");
    let (created, fh) = f.fs.create(ROOT_INO, "b", 0o644, 0, 0, true).unwrap();
    assert_eq!(created.confirmed, None);
    f.fs.release(fh).unwrap();
}
