//! Crash tests of objectfs's queued namespace changes (`--upload async`):
//! for each kind of change (mkdir, symlink, chmod and chown of files,
//! chmod of directories, utimes, unlink, rmdir, names deleted, made again
//! and deleted again, and a mixed sequence) a real FUSE mount whose upload
//! delay keeps the change queued makes it; the bucket must not have it yet
//! and the cache directory's `ops/` must journal it; the mount process is
//! killed with SIGKILL and the same cache directory mounted again. The
//! replayed journal must leave the bucket exactly as a model of the changes
//! says (every key under the prefix, and the bodies and metadata the change
//! is about), the journal empty, and the new mount showing the tree the
//! dead one showed. A last test shows that changes which cancel out before
//! they are sent never reach the store (moto's request log).

use crate::common;

use common::objectfs_mount::{Bucket, Mounted};
use common::s3server::moto;
use common::{sh, wait_for};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

/// The key prefix of every test's mount.
const PREFIX: &str = "v";

/// Mount flags that keep every change queued until the kill: nothing is
/// sent before 30 s (the tests kill long before).
const HOLD: [&str; 4] = ["--upload", "async", "--upload-delay", "30s"];

/// `touch -d` argument of the utimes test, and the same in seconds.
const TOUCH_DATE: &str = "2001-02-03 04:05:06 UTC";
const TOUCH_SECS: u64 = 981_173_106;

/// What one object in the bucket must be: its body, and for each listed
/// metadata field its value (`None`: the field must be absent). Fields not
/// listed are not checked.
#[derive(Debug, Clone)]
struct Obj {
    body: Vec<u8>,
    meta: BTreeMap<&'static str, Option<String>>,
}

impl Obj {
    /// An object a plain S3 client wrote: no mode metadata.
    fn plain(body: &[u8]) -> Obj {
        Obj {
            body: body.to_vec(),
            meta: [("mode", None)].into(),
        }
    }

    /// An object whose metadata is not checked but for what is added.
    fn body(body: &[u8]) -> Obj {
        Obj {
            body: body.to_vec(),
            meta: BTreeMap::new(),
        }
    }

    /// An object with `mode` (type and permission bits) in its metadata.
    fn with_mode(body: &[u8], mode: u32) -> Obj {
        Obj {
            body: body.to_vec(),
            meta: [("mode", Some(mode.to_string()))].into(),
        }
    }

    /// A directory marker with `perm`.
    fn marker(perm: u32) -> Obj {
        Obj::with_mode(b"", libc::S_IFDIR | perm)
    }

    /// A symbolic link to `target`, as s3fs stores it.
    fn link(target: &str) -> Obj {
        Obj::with_mode(target.as_bytes(), libc::S_IFLNK | 0o777)
    }

    fn owner(mut self, uid: u32, gid: u32) -> Obj {
        self.meta.insert("uid", Some(uid.to_string()));
        self.meta.insert("gid", Some(gid.to_string()));
        self
    }

    fn mtime(mut self, secs: u64) -> Obj {
        self.meta.insert("mtime", Some(secs.to_string()));
        self
    }
}

/// The bucket under [`PREFIX`], by path below it.
type Model = BTreeMap<&'static str, Obj>;

/// The bucket holds exactly `model`: the same keys under the prefix, and
/// each object's body and checked metadata.
fn assert_bucket(bucket: &Bucket, model: &Model, when: &str) {
    let want: Vec<String> = model.keys().map(|rel| format!("{PREFIX}/{rel}")).collect();
    assert_eq!(bucket.keys(&format!("{PREFIX}/")), want, "keys {when}");
    for (rel, obj) in model {
        let key = format!("{PREFIX}/{rel}");
        let body = bucket.get(&key).unwrap_or_else(|| panic!("{key} {when}"));
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&obj.body),
            "body of {key} {when}"
        );
        let meta = bucket.metadata(&key);
        for (field, value) in &obj.meta {
            assert_eq!(
                meta.get(*field),
                value.as_ref(),
                "metadata {field} of {key} {when}: {meta:?}"
            );
        }
    }
}

/// Puts `model` into the bucket with a plain client (only [`Obj::plain`]
/// objects: a client writes no metadata).
fn put_plain(bucket: &Bucket, model: &Model) {
    for (rel, obj) in model {
        assert_eq!(obj.meta.get("mode"), Some(&None), "{rel} is not plain");
        bucket.put(&format!("{PREFIX}/{rel}"), &obj.body);
    }
}

/// Namespace changes the cache directory's journal holds, as the plugin
/// counts them.
fn journal_entries(m: &Mounted) -> usize {
    objectfs::oplog::recorded(&m.cache).unwrap()
}

/// What a mount shows below `root`, one line per entry in path order: type,
/// permission bits, owner, and a file's content or a link's target (what
/// `ls -lR` and `readlink` would tell, without times).
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let md = fs::symlink_metadata(&path).unwrap();
            let head = format!("{rel} {:o} {}:{}", md.mode(), md.uid(), md.gid());
            if md.is_dir() {
                out.push(head);
                walk(root, &path, out);
            } else if md.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.push(format!("{head} -> {}", target.display()));
            } else {
                let body = fs::read(&path).unwrap();
                out.push(format!("{head} = {:?}", String::from_utf8_lossy(&body)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// This process's umask (what the kernel applies to modes given to mkdir,
/// open and symlink before objectfs sees them).
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("Umask in /proc/self/status");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

/// A fresh bucket holding `before` (written by a plain client), and the
/// mount that will crash (under `base/crash`).
fn crash_mount(
    base: &Path,
    name: &str,
    before: &Model,
) -> (Bucket, Mounted, objectfs::store::s3::S3Config) {
    let config = moto().new_bucket(name);
    let bucket = Bucket::new(&config);
    put_plain(&bucket, before);
    let m = Mounted::start(&base.join("crash"), &config, PREFIX, &HOLD);
    (bucket, m, config)
}

/// The second half of every crash test, after the changes were made on
/// `m`: the bucket is still `before` and `journalled` changes wait in the
/// journal; SIGKILL; nothing has moved; the same cache directory mounted
/// again replays the journal, after which the bucket is exactly `after`,
/// the journal empty and the tree the one the dead mount showed. A clean
/// unmount then changes nothing more.
fn crash_and_replay(
    m: &mut Mounted,
    bucket: &Bucket,
    journalled: usize,
    before: &Model,
    after: &Model,
) {
    let shown = tree(&m.dir);
    assert_bucket(bucket, before, "before the kill");
    assert_eq!(journal_entries(m), journalled, "journal before the kill");
    m.kill9();
    assert_bucket(bucket, before, "after the kill");
    m.restart(); // same cache directory; the dead mount point is detached first
    assert_bucket(bucket, after, "after the replay");
    assert_eq!(journal_entries(m), 0, "journal after the replay");
    assert_eq!(tree(&m.dir), shown, "the tree after the replay");
    m.stop();
    assert_bucket(bucket, after, "after a clean unmount");
}

#[test]
fn queued_mkdirs_survive_a_kill() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let before: Model = [("keep", Obj::plain(b"kept"))].into();
    let (bucket, mut m, _) = crash_mount(base.path(), "crash-mkdir", &before);

    fs::DirBuilder::new()
        .mode(0o750)
        .create(m.path("d"))
        .unwrap();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(m.path("p/q/r"))
        .unwrap();

    let mask = umask();
    let mut after = before.clone();
    after.insert("d/", Obj::marker(0o750 & !mask).owner(0, 0));
    for dir in ["p/", "p/q/", "p/q/r/"] {
        after.insert(dir, Obj::marker(0o700 & !mask).owner(0, 0));
    }
    crash_and_replay(&mut m, &bucket, 4, &before, &after);
}

#[test]
fn queued_symlinks_survive_a_kill() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let before: Model = [
        ("sub/", Obj::plain(b"")),
        ("target.txt", Obj::plain(b"pointed at")),
    ]
    .into();
    let (bucket, mut m, _) = crash_mount(base.path(), "crash-symlink", &before);

    symlink("target.txt", m.path("link")).unwrap();
    symlink("../target.txt", m.path("sub/up")).unwrap();
    symlink("nowhere/at/all", m.path("dangling")).unwrap();
    // chown -h rides on the queued creation.
    std::os::unix::fs::lchown(m.path("dangling"), Some(42), Some(43)).unwrap();
    assert_eq!(fs::read(m.path("sub/up")).unwrap(), b"pointed at");

    let mut after = before.clone();
    after.insert("link", Obj::link("target.txt").owner(0, 0));
    after.insert("sub/up", Obj::link("../target.txt").owner(0, 0));
    after.insert("dangling", Obj::link("nowhere/at/all").owner(42, 43));
    crash_and_replay(&mut m, &bucket, 3, &before, &after);

    m.restart();
    assert_eq!(fs::read(m.path("link")).unwrap(), b"pointed at");
    assert_eq!(fs::read(m.path("sub/up")).unwrap(), b"pointed at");
    assert_eq!(
        fs::read_link(m.path("dangling")).unwrap(),
        Path::new("nowhere/at/all")
    );
}

#[test]
fn queued_chmod_and_chown_of_uploaded_files_survive_a_kill() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let before: Model = [
        ("f1", Obj::plain(b"one")),
        ("f2", Obj::plain(b"two")),
        ("f3", Obj::plain(b"three")),
    ]
    .into();
    let (bucket, mut m, _) = crash_mount(base.path(), "crash-chmod-file", &before);

    let chmod = |rel: &str, perm: u32| {
        fs::set_permissions(m.path(rel), fs::Permissions::from_mode(perm)).unwrap()
    };
    chmod("f1", 0o600);
    // Two changes of one object before it is sent: one journal entry.
    chmod("f2", 0o640);
    chmod("f2", 0o604);
    std::os::unix::fs::chown(m.path("f3"), Some(1234), Some(5678)).unwrap();

    let mut after = before.clone();
    after.insert("f1", Obj::with_mode(b"one", libc::S_IFREG | 0o600));
    after.insert("f2", Obj::with_mode(b"two", libc::S_IFREG | 0o604));
    after.insert("f3", Obj::body(b"three").owner(1234, 5678));
    crash_and_replay(&mut m, &bucket, 3, &before, &after);
}

#[test]
fn queued_chmod_of_directories_survives_a_kill() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    // `marked` has a marker; `implied` exists only through its child.
    let before: Model = [
        ("implied/x", Obj::plain(b"x")),
        ("marked/", Obj::plain(b"")),
    ]
    .into();
    let (bucket, mut m, _) = crash_mount(base.path(), "crash-chmod-dir", &before);

    fs::set_permissions(m.path("marked"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(m.path("implied"), fs::Permissions::from_mode(0o711)).unwrap();
    // A directory made here: the mode rides on its queued marker.
    fs::create_dir(m.path("fresh")).unwrap();
    fs::set_permissions(m.path("fresh"), fs::Permissions::from_mode(0o701)).unwrap();

    let mut after = before.clone();
    after.insert("marked/", Obj::marker(0o700));
    // A directory without a marker gets one, carrying the mode.
    after.insert("implied/", Obj::marker(0o711));
    after.insert("fresh/", Obj::marker(0o701));
    crash_and_replay(&mut m, &bucket, 3, &before, &after);
}

#[test]
fn queued_utimes_of_uploaded_files_survive_a_kill() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let before: Model = [("a.txt", Obj::plain(b"a")), ("b.txt", Obj::plain(b"b"))].into();
    let (bucket, mut m, _) = crash_mount(base.path(), "crash-utimes", &before);

    // `-c`: utimensat by name, the file never opened (a queued change);
    // without it touch opens the file for writing first (staged data).
    sh(&m.dir, &format!("touch -c -d '{TOUCH_DATE}' a.txt"));
    sh(&m.dir, &format!("touch -d '{TOUCH_DATE}' b.txt"));
    for f in ["a.txt", "b.txt"] {
        assert_eq!(
            fs::metadata(m.path(f)).unwrap().mtime() as u64,
            TOUCH_SECS,
            "{f}"
        );
    }

    let mut after = before.clone();
    after.insert("a.txt", Obj::body(b"a").mtime(TOUCH_SECS));
    after.insert("b.txt", Obj::body(b"b").mtime(TOUCH_SECS));
    // b.txt's copy, opened for writing and not written, is clean: its
    // change is queued in ops/ as a.txt's is (not a re-upload of its data).
    crash_and_replay(&mut m, &bucket, 2, &before, &after);

    m.restart();
    for f in ["a.txt", "b.txt"] {
        assert_eq!(
            fs::metadata(m.path(f)).unwrap().mtime() as u64,
            TOUCH_SECS,
            "{f} after the replay"
        );
    }
}

#[test]
fn queued_unlinks_survive_a_kill() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let before: Model = [
        ("dir/", Obj::plain(b"")),
        ("dir/inner.txt", Obj::plain(b"inner")),
        ("gone.txt", Obj::plain(b"gone")),
        ("stay.txt", Obj::plain(b"stay")),
    ]
    .into();
    let (bucket, mut m, _) = crash_mount(base.path(), "crash-unlink", &before);

    // The chmod is pointless once the file is deleted: one entry for both.
    fs::set_permissions(m.path("gone.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::remove_file(m.path("gone.txt")).unwrap();
    fs::remove_file(m.path("dir/inner.txt")).unwrap();
    assert!(!m.path("gone.txt").exists());
    assert_eq!(fs::read_dir(m.path("dir")).unwrap().count(), 0);

    let mut after = before.clone();
    after.remove("gone.txt");
    after.remove("dir/inner.txt");
    crash_and_replay(&mut m, &bucket, 2, &before, &after);
}

#[test]
fn queued_rmdirs_survive_a_kill() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    // `implied` has no marker, only a child.
    let before: Model = [
        ("implied/x", Obj::plain(b"x")),
        ("keep/", Obj::plain(b"")),
        ("nested/", Obj::plain(b"")),
        ("nested/inner/", Obj::plain(b"")),
        ("old/", Obj::plain(b"")),
    ]
    .into();
    let (bucket, mut m, _) = crash_mount(base.path(), "crash-rmdir", &before);

    fs::remove_dir(m.path("old")).unwrap();
    // The parent is empty once its child's delete is queued.
    fs::remove_dir(m.path("nested/inner")).unwrap();
    fs::remove_dir(m.path("nested")).unwrap();
    fs::remove_file(m.path("implied/x")).unwrap();
    fs::remove_dir(m.path("implied")).unwrap();

    let after: Model = [("keep/", Obj::plain(b""))].into();
    // Three marker deletes, implied/x's and one for implied/ (a delete of
    // a missing key is harmless).
    crash_and_replay(&mut m, &bucket, 5, &before, &after);
}

/// A name that is in the bucket, deleted, created again and deleted again
/// before anything is sent stays deleted: the second delete cannot fold
/// with the creation, which replaced the first delete.
/// A directory rename returns at once: the new tree is served at once (its
/// data read from the old keys), the bucket has not moved yet, and after a
/// kill the next mount moves every object, the marker included, and
/// deletes the old names.
#[test]
fn a_queued_directory_rename_survives_a_kill() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let before: Model = [
        ("src/", Obj::plain(b"")),
        ("src/a.txt", Obj::plain(b"alpha")),
        ("src/deep/b.txt", Obj::plain(b"beta")),
        ("src/deep/c/d.txt", Obj::plain(b"delta")),
        ("stay.txt", Obj::plain(b"stay")),
    ]
    .into();
    let (bucket, mut m, _) = crash_mount(base.path(), "crash-rename-dir", &before);

    fs::rename(m.path("src"), m.path("dst")).unwrap();
    assert!(!m.path("src").exists());
    assert_eq!(fs::read(m.path("dst/a.txt")).unwrap(), b"alpha");
    assert_eq!(fs::read(m.path("dst/deep/c/d.txt")).unwrap(), b"delta");
    let mut names: Vec<String> = fs::read_dir(m.path("dst/deep"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b.txt", "c"]);

    let after: Model = [
        ("dst/", Obj::plain(b"")),
        ("dst/a.txt", Obj::plain(b"alpha")),
        ("dst/deep/b.txt", Obj::plain(b"beta")),
        ("dst/deep/c/d.txt", Obj::plain(b"delta")),
        ("stay.txt", Obj::plain(b"stay")),
    ]
    .into();
    crash_and_replay(&mut m, &bucket, 1, &before, &after);
}

#[test]
fn a_name_deleted_created_and_deleted_again_stays_deleted_after_a_kill() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let before: Model = [
        ("d/", Obj::plain(b"")),
        ("f", Obj::plain(b"uploaded")),
        ("keep", Obj::plain(b"kept")),
    ]
    .into();
    let (bucket, mut m, _) = crash_mount(base.path(), "crash-redelete", &before);

    fs::remove_file(m.path("f")).unwrap();
    symlink("t", m.path("f")).unwrap();
    fs::remove_file(m.path("f")).unwrap();
    fs::remove_dir(m.path("d")).unwrap();
    fs::create_dir(m.path("d")).unwrap();
    fs::remove_dir(m.path("d")).unwrap();
    assert!(fs::symlink_metadata(m.path("f")).is_err(), "f is deleted");
    assert!(fs::symlink_metadata(m.path("d")).is_err(), "d is deleted");

    let after: Model = [("keep", Obj::plain(b"kept"))].into();
    // One delete each.
    crash_and_replay(&mut m, &bucket, 2, &before, &after);
}

#[test]
fn a_mixed_sequence_of_queued_changes_survives_a_kill() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("crash-mixed");
    let bucket = Bucket::new(&config);
    let mask = umask();

    // The "before" state, written by an earlier mount that unmounts cleanly.
    let mut setup = Mounted::start(
        &base.path().join("setup"),
        &config,
        PREFIX,
        &["--upload", "sync"],
    );
    let set_mode = |path: &Path, perm: u32| {
        fs::set_permissions(path, fs::Permissions::from_mode(perm)).unwrap()
    };
    for dir in ["olddir", "keepdir", "redodir"] {
        fs::create_dir(setup.path(dir)).unwrap();
        set_mode(&setup.path(dir), 0o755);
    }
    for (file, body) in [
        ("old.txt", "old"),
        ("keep.txt", "keep"),
        ("redo.txt", "redo"),
    ] {
        fs::write(setup.path(file), body).unwrap();
        set_mode(&setup.path(file), 0o644);
    }
    setup.stop();
    let before: Model = [
        ("keep.txt", Obj::with_mode(b"keep", libc::S_IFREG | 0o644)),
        ("keepdir/", Obj::marker(0o755)),
        ("old.txt", Obj::with_mode(b"old", libc::S_IFREG | 0o644)),
        ("olddir/", Obj::marker(0o755)),
        ("redo.txt", Obj::with_mode(b"redo", libc::S_IFREG | 0o644)),
        ("redodir/", Obj::marker(0o755)),
    ]
    .into();
    assert_bucket(&bucket, &before, "after the setup mount");

    let mut m = Mounted::start(&base.path().join("crash"), &config, PREFIX, &HOLD);
    fs::DirBuilder::new()
        .mode(0o750)
        .create(m.path("a"))
        .unwrap();
    fs::write(m.path("a/f"), b"fresh data").unwrap();
    symlink("../keep.txt", m.path("a/l")).unwrap();
    fs::remove_file(m.path("old.txt")).unwrap();
    fs::remove_dir(m.path("olddir")).unwrap();
    set_mode(&m.path("keep.txt"), 0o600);
    set_mode(&m.path("keepdir"), 0o700);
    // Names deleted and made again: the file's delete is journalled and
    // its new data staged; the marker's delete and the new marker are two
    // changes (a creation never folds away a waiting delete).
    fs::remove_file(m.path("redo.txt")).unwrap();
    fs::write(m.path("redo.txt"), b"new content").unwrap();
    fs::remove_dir(m.path("redodir")).unwrap();
    fs::DirBuilder::new()
        .mode(0o700)
        .create(m.path("redodir"))
        .unwrap();
    assert_eq!(fs::read(m.path("a/l")).unwrap(), b"keep");

    let after: Model = [
        ("a/", Obj::marker(0o750 & !mask)),
        (
            "a/f",
            Obj::with_mode(b"fresh data", libc::S_IFREG | (0o666 & !mask)),
        ),
        ("a/l", Obj::link("../keep.txt")),
        ("keep.txt", Obj::with_mode(b"keep", libc::S_IFREG | 0o600)),
        ("keepdir/", Obj::marker(0o700)),
        (
            "redo.txt",
            Obj::with_mode(b"new content", libc::S_IFREG | (0o666 & !mask)),
        ),
        ("redodir/", Obj::marker(0o700 & !mask)),
    ]
    .into();
    // mkdir, symlink, unlink, rmdir, two chmods, the delete of redo.txt,
    // the delete and the new marker of redodir; the files' data is staged.
    crash_and_replay(&mut m, &bucket, 9, &before, &after);
}

/// One request moto logged: method, key (URL-encoded, empty for the
/// bucket itself) and query.
#[derive(Debug)]
struct Logged {
    method: String,
    key: String,
    query: String,
}

/// Requests moto logged for `bucket`, in order. werkzeug logs each request
/// once answered, colouring the line.
fn moto_requests(bucket: &str) -> Vec<Logged> {
    let log = fs::read_to_string(&moto().log).unwrap();
    let mut out = Vec::new();
    for line in log.lines() {
        // Drop ANSI colour sequences (ESC [ ... m).
        let mut plain = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                chars.by_ref().find(|&c| c == 'm');
            } else {
                plain.push(c);
            }
        }
        let Some(request) = plain.split('"').nth(1) else {
            continue;
        };
        let mut parts = request.split(' ');
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(rest) = target.strip_prefix(&format!("/{bucket}/")) else {
            continue;
        };
        let (key, query) = rest.split_once('?').unwrap_or((rest, ""));
        out.push(Logged {
            method: method.to_string(),
            key: key.to_string(),
            query: query.to_string(),
        });
    }
    out
}

/// Changes that cancel out before they are sent cost no request: mkdir x;
/// rmdir x and ln -s t l; rm l leave nothing journalled, and once the
/// directory is fsynced and the mount unmounted, moto has seen no write of
/// x or l, while the one change that stays (mkdir y) was written once.
#[test]
fn changes_that_cancel_out_are_never_sent() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let (bucket, mut m, config) = crash_mount(base.path(), "crash-fold", &Model::new());

    fs::create_dir(m.path("x")).unwrap();
    assert_eq!(journal_entries(&m), 1, "mkdir x journalled");
    fs::remove_dir(m.path("x")).unwrap();
    assert_eq!(journal_entries(&m), 0, "mkdir x folded with its rmdir");
    symlink("t", m.path("l")).unwrap();
    assert_eq!(journal_entries(&m), 1, "ln -s journalled");
    fs::remove_file(m.path("l")).unwrap();
    assert_eq!(journal_entries(&m), 0, "ln -s folded with its rm");
    fs::create_dir(m.path("y")).unwrap();
    assert_eq!(journal_entries(&m), 1);

    // fsync of the directory sends what is queued, without the delay.
    fs::File::open(&m.dir).unwrap().sync_all().unwrap();
    assert_eq!(
        journal_entries(&m),
        0,
        "journal after fsync of the directory"
    );
    m.stop();
    let y: Model = [("y/", Obj::marker(0o777 & !umask()))].into();
    assert_bucket(&bucket, &y, "after the unmount");

    // Lines appear once answered: wait for the PUT the mount waited for.
    let writes_of = |requests: &[Logged], name: &str| -> Vec<String> {
        let key = format!("{PREFIX}/{name}");
        requests
            .iter()
            .filter(|r| r.key == key || r.key.starts_with(&format!("{key}/")))
            .filter(|r| !matches!(r.method.as_str(), "GET" | "HEAD"))
            .map(|r| format!("{r:?}"))
            .collect()
    };
    wait_for("moto to log the PUT of y/", || {
        !writes_of(&moto_requests(&config.bucket), "y").is_empty()
    });
    let requests = moto_requests(&config.bucket);
    assert_eq!(writes_of(&requests, "y").len(), 1, "{requests:#?}");
    assert_eq!(writes_of(&requests, "x"), Vec::<String>::new());
    assert_eq!(writes_of(&requests, "l"), Vec::<String>::new());
    // It is the right log: it has the listing rmdir x made of x's entries.
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.query.contains(&format!("prefix={PREFIX}/x/"))),
        "{requests:#?}"
    );
}
