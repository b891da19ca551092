//! The filesystem core against the in-memory store: operations by path, a
//! reference model of a directory tree driven by proptest, and faults.

use objectfs::layout::Defaults;
use objectfs::store::memory::MemoryStore;
use objectfs::store::{ObjectStore, PutMeta, StoreError};
use objectfs::{FsOptions, Kind, ObjectFs, OpenFlags, ROOT_INO, SetAttr, UploadMode};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

struct Fixture {
    fs: ObjectFs,
    mem: Arc<MemoryStore>,
    _rt: tokio::runtime::Runtime,
    cache: tempfile::TempDir,
}

fn options(cache: &std::path::Path, upload: UploadMode) -> FsOptions {
    FsOptions {
        prefix: "pre/".into(),
        defaults: Defaults {
            uid: 1000,
            gid: 1000,
            umask: 0o022,
        },
        read_only: false,
        upload,
        cache_dir: cache.to_path_buf(),
        metadata_ttl: Duration::from_millis(0),
        flush_timeout: Duration::from_secs(30),
        upload_delay: Duration::ZERO,
        attrs_from_listing: false,
        cache_size: 1 << 30,
        dirty_wait: objectfs::config::DIRTY_WAIT,
    }
}

fn fixture(upload: UploadMode) -> Fixture {
    fixture_with_ttl(upload, Duration::ZERO)
}

fn fixture_with_ttl(upload: UploadMode, ttl: Duration) -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mem = Arc::new(MemoryStore::new());
    let cache = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = mem.clone();
    let mut opts = options(cache.path(), upload);
    opts.metadata_ttl = ttl;
    let fs = ObjectFs::new(store, rt.handle().clone(), opts).unwrap();
    Fixture {
        fs,
        mem,
        _rt: rt,
        cache,
    }
}

impl Fixture {
    /// Inode of a path like "a/b" ("" is the root).
    fn ino(&self, path: &str) -> Result<u64, i32> {
        let mut ino = ROOT_INO;
        for c in path.split('/').filter(|c| !c.is_empty()) {
            if self.fs.getattr(ino)?.kind != Kind::Dir {
                return Err(libc::ENOTDIR);
            }
            ino = self.fs.lookup(ino, c)?.ino;
        }
        Ok(ino)
    }

    /// The parent directory's inode and the last component, resolving the
    /// parent as the kernel would (a file used as a directory is ENOTDIR).
    fn split<'a>(&self, path: &'a str) -> (Result<u64, i32>, &'a str) {
        match path.rsplit_once('/') {
            Some((dir, name)) => {
                let parent = self
                    .ino(dir)
                    .and_then(|ino| match self.fs.getattr(ino)?.kind {
                        Kind::Dir => Ok(ino),
                        _ => Err(libc::ENOTDIR),
                    });
                (parent, name)
            }
            None => (Ok(ROOT_INO), path),
        }
    }

    fn write_file(&self, path: &str, data: &[u8]) -> Result<(), i32> {
        let (parent, name) = self.split(path);
        let fh = match self.ino(path) {
            Ok(ino) => self.fs.open(
                ino,
                OpenFlags {
                    write: true,
                    truncate: true,
                },
            )?,
            Err(libc::ENOENT) => self.fs.create(parent?, name, 0o644, 1, 2, false)?.1,
            Err(e) => return Err(e),
        };
        self.fs.write(fh, 0, data)?;
        self.fs.flush(fh)?;
        self.fs.release(fh)
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, i32> {
        let ino = self.ino(path)?;
        let size = self.fs.getattr(ino)?.size;
        let fh = self.fs.open(ino, OpenFlags::default())?;
        let mut out = Vec::new();
        while (out.len() as u64) < size {
            let b = self.fs.read(fh, out.len() as u64, 128 * 1024)?;
            if b.is_empty() {
                break;
            }
            out.extend_from_slice(&b);
        }
        self.fs.release(fh)?;
        Ok(out)
    }

    fn mkdir(&self, path: &str) -> Result<(), i32> {
        let (parent, name) = self.split(path);
        self.fs.mkdir(parent?, name, 0o755, 1, 2).map(|_| ())
    }

    fn unlink(&self, path: &str) -> Result<(), i32> {
        let (parent, name) = self.split(path);
        self.fs.unlink(parent?, name)
    }

    fn rmdir(&self, path: &str) -> Result<(), i32> {
        let (parent, name) = self.split(path);
        self.fs.rmdir(parent?, name)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), i32> {
        let (p1, n1) = self.split(from);
        let (p2, n2) = self.split(to);
        self.fs.rename(p1?, n1, p2?, n2, 0)
    }

    fn list(&self, path: &str) -> Result<Vec<String>, i32> {
        let fh = self.fs.opendir(self.ino(path)?)?;
        let mut names: Vec<String> = self
            .fs
            .readdir(fh, 2)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        self.fs.releasedir(fh);
        names.sort();
        Ok(names)
    }
}

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
    std::thread::sleep(Duration::from_millis(500));
    f.mem.set_down(false);
    assert_eq!(f.fs.flush_all(), 0);
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

/// Copies a staging directory with its extended attributes (the journal).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a failed");
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
}
