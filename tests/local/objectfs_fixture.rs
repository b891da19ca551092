//! The shared fixture of the filesystem-core tests: an `ObjectFs` over the
//! in-memory store, with its own cache directory and runtime, operations by
//! path as a process would make them, and a clean remount.

use objectfs::layout::Defaults;
use objectfs::store::ObjectStore;
use objectfs::store::memory::MemoryStore;
use objectfs::{FsOptions, Kind, ObjectFs, OpenFlags, ROOT_INO, UploadMode};
use std::sync::Arc;
use std::time::Duration;

/// An open for writing that keeps the content (the object is copied first).
pub(crate) const TO_CHANGE: OpenFlags = OpenFlags {
    write: true,
    truncate: false,
};

pub(crate) struct Fixture {
    pub(crate) fs: ObjectFs,
    pub(crate) mem: Arc<MemoryStore>,
    rt: tokio::runtime::Runtime,
    pub(crate) cache: tempfile::TempDir,
    opts: FsOptions,
}

pub(crate) fn options(cache: &std::path::Path, upload: UploadMode) -> FsOptions {
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
        label: "the test fixture".into(),
    }
}

pub(crate) fn fixture(upload: UploadMode) -> Fixture {
    fixture_with_ttl(upload, Duration::ZERO)
}

pub(crate) fn fixture_with_ttl(upload: UploadMode, ttl: Duration) -> Fixture {
    fixture_with(upload, |o| o.metadata_ttl = ttl)
}

/// A fixture whose options `adjust` changes (cache bound, waits, TTL).
pub(crate) fn fixture_with(upload: UploadMode, adjust: impl FnOnce(&mut FsOptions)) -> Fixture {
    let mem = Arc::new(MemoryStore::new());
    let cache = tempfile::tempdir().unwrap();
    let mut opts = options(cache.path(), upload);
    adjust(&mut opts);
    mount(mem, cache, opts)
}

pub(crate) fn mount(mem: Arc<MemoryStore>, cache: tempfile::TempDir, opts: FsOptions) -> Fixture {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store: Arc<dyn ObjectStore> = mem.clone();
    let fs = ObjectFs::new(store, rt.handle().clone(), opts.clone()).unwrap();
    Fixture {
        fs,
        mem,
        rt,
        cache,
        opts,
    }
}

impl Fixture {
    /// The LISTs and HEADs the store has answered so far.
    pub(crate) fn lists_and_heads(&self) -> (u64, u64) {
        let c = &self.mem.counters;
        (
            c.lists.load(std::sync::atomic::Ordering::Relaxed),
            c.heads.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Unmounts cleanly and mounts a new core on the same cache directory
    /// and bucket, as the next mount process would. Everything is uploaded
    /// first; dropping the runtime waits for upload workers still finishing
    /// (they hold the core, and with it the cache directory's lock).
    pub(crate) fn remount(self) -> Fixture {
        assert_eq!(self.fs.flush_all(), 0, "uploads before unmounting");
        let Fixture {
            fs,
            mem,
            rt,
            cache,
            opts,
        } = self;
        drop(fs);
        drop(rt);
        mount(mem, cache, opts)
    }

    /// The mount process dies (nothing flushed, nothing unmounted) and the
    /// next one starts on a copy of its cache directory (the dead core,
    /// leaked, keeps the original's lock).
    pub(crate) fn crash(self) -> Fixture {
        let next = tempfile::tempdir().unwrap();
        snapshot(self.cache.path(), next.path());
        self.crash_onto(next)
    }

    /// The mount process dies and the next one starts on `earlier`, a
    /// [`snapshot`] of the cache directory taken at the moment of the crash
    /// (while a request was in flight, say).
    pub(crate) fn crash_onto(self, earlier: tempfile::TempDir) -> Fixture {
        let Fixture {
            fs,
            mem,
            rt,
            mut opts,
            ..
        } = self;
        std::mem::forget(fs);
        std::mem::forget(rt);
        opts.cache_dir = earlier.path().to_path_buf();
        mount(mem, earlier, opts)
    }

    /// [`Self::crash`] while `frozen` holds part of the cache directory:
    /// the next mount starts on a copy of it, the original freed after.
    pub(crate) fn crash_frozen(self, frozen: Frozen) -> Fixture {
        let old_cache = self.cache.path().to_path_buf();
        let next = self.crash();
        drop(frozen);
        let _ = std::fs::remove_dir_all(old_cache); // (frozen when crash() dropped it)
        next
    }

    /// Inode of a path like "a/b" ("" is the root).
    pub(crate) fn ino(&self, path: &str) -> Result<u64, i32> {
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

    pub(crate) fn write_file(&self, path: &str, data: &[u8]) -> Result<(), i32> {
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

    pub(crate) fn read_file(&self, path: &str) -> Result<Vec<u8>, i32> {
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

    pub(crate) fn mkdir(&self, path: &str) -> Result<(), i32> {
        let (parent, name) = self.split(path);
        self.fs.mkdir(parent?, name, 0o755, 1, 2).map(|_| ())
    }

    pub(crate) fn unlink(&self, path: &str) -> Result<(), i32> {
        let (parent, name) = self.split(path);
        self.fs.unlink(parent?, name)
    }

    pub(crate) fn rmdir(&self, path: &str) -> Result<(), i32> {
        let (parent, name) = self.split(path);
        self.fs.rmdir(parent?, name)
    }

    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), i32> {
        let (p1, n1) = self.split(from);
        let (p2, n2) = self.split(to);
        self.fs.rename(p1?, n1, p2?, n2, 0)
    }

    pub(crate) fn list(&self, path: &str) -> Result<Vec<String>, i32> {
        self.list_ino(self.ino(path)?)
    }

    /// The names in directory `ino`, sorted (no lookup of its path).
    pub(crate) fn list_ino(&self, ino: u64) -> Result<Vec<String>, i32> {
        let fh = self.fs.opendir(ino)?;
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

/// A chmod to `perm`, nothing else changed.
pub(crate) fn chmod(perm: u32) -> objectfs::SetAttr {
    objectfs::SetAttr {
        perm: Some(perm),
        uid: None,
        gid: None,
        size: None,
        mtime: None,
        kill_set_ids: false,
    }
}

/// Copies what a mount keeps across a crash in cache directory `from`
/// (its staged files and its journal of namespace changes) to `to`.
pub(crate) fn snapshot(from: &std::path::Path, to: &std::path::Path) {
    for dir in ["staging", "ops"] {
        if from.join(dir).exists() {
            copy_dir(&from.join(dir), &to.join(dir));
        }
    }
}

/// Copies a staging directory with its extended attributes (the journal
/// and the cache tags).
pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "cp -a failed");
}

/// Waits (10 s at most) until `done` holds, as a background step may take
/// a moment; the caller asserts it afterwards.
pub(crate) fn wait_until(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `chattr +i` on a directory of the cache directory and everything in it:
/// writes there fail (EPERM), extended attributes (journal entries)
/// included, as they would on a full or failing disk. Undone at drop, so
/// the directory can go. Needs root and a cache directory on ext4.
pub(crate) struct Frozen(std::path::PathBuf);

impl Frozen {
    pub(crate) fn new(dir: &std::path::Path) -> Frozen {
        let frozen = Frozen(dir.to_path_buf());
        frozen.chattr("+i");
        frozen
    }

    fn chattr(&self, flag: &str) {
        let status = std::process::Command::new("chattr")
            .args(["-R", flag])
            .arg(&self.0)
            .status()
            .expect("chattr (e2fsprogs) runs");
        assert!(
            status.success(),
            "chattr {flag} on {:?}: this test needs a cache directory on ext4 and root",
            self.0
        );
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.chattr("-i");
    }
}
