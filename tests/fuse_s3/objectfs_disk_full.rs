//! The cache directory's disk full: objectfs stages every write there, so
//! a full disk must reach the writer as ENOSPC, and nothing else (files
//! written before, files written after space is freed) may suffer; a write
//! right after an `rm` gets the space the removed file held, even when its
//! release reaches the core after the write does; reads of objects with no
//! local copy go on while the disk is full; a disk out of inodes is
//! ENOSPC to a create or a write, not EIO; a write whose journal entry finds no room
//! is refused, never acknowledged and then lost to a crash.

use crate::common;

use common::objectfs_mount::{Bucket, Mounted};
use common::s3server::moto;
use objectfs::{OpenFlags, ROOT_INO};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A small disk at `dir` (a 4 MiB tmpfs, or an ext4 image), unmounted
/// when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// An 8 MiB ext4 image at `image`, mounted at `dir`: 1 KiB blocks,
    /// none reserved, and inodes too small to hold an extended attribute,
    /// so the first one a file gets (its journal entry) takes a block.
    fn ext4(dir: &Path, image: &Path) -> SmallDisk {
        fs::create_dir_all(dir).unwrap();
        fs::File::create(image).unwrap().set_len(8 << 20).unwrap();
        let made = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-I", "128", "-b", "1024"])
            .arg(image)
            .output()
            .unwrap();
        assert!(made.status.success(), "mkfs.ext4: {made:?}");
        let status = Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting an ext4 image (needs root and a loop device)"
        );
        SmallDisk(dir.to_path_buf())
    }

    fn mount(dir: &Path) -> SmallDisk {
        SmallDisk::mount_with(dir, "size=4m")
    }

    fn mount_with(dir: &Path, options: &str) -> SmallDisk {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a small tmpfs (needs root)");
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_cache_disk_gives_enospc_to_the_writer_and_harms_nothing_else() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let _disk = SmallDisk::mount(&base.path().join("cache"));
    let config = moto().new_bucket("diskfull");
    let mut m = Mounted::start(base.path(), &config, "", &["--upload", "async"]);

    fs::write(m.path("before.txt"), b"written before the disk filled\n").unwrap();

    // 8 MiB into a 4 MiB cache disk: some write (or the close) fails with
    // ENOSPC; the writer is told, not the data silently dropped.
    let chunk = vec![0x5au8; 1 << 20];
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(m.path("big.bin"))?;
        for _ in 0..8 {
            f.write_all(&chunk)?;
        }
        f.sync_all()
    })();
    let err = result.expect_err("8 MiB cannot be staged on a 4 MiB disk");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");

    // The file written before is intact; once space is freed, writes work.
    assert_eq!(
        fs::read(m.path("before.txt")).unwrap(),
        b"written before the disk filled\n"
    );
    let _ = fs::remove_file(m.path("big.bin"));
    fs::write(m.path("after.txt"), b"written after space was freed\n").unwrap();
    m.stop();

    let bucket = Bucket::new(&config);
    assert_eq!(
        bucket.get("before.txt").as_deref(),
        Some(&b"written before the disk filled\n"[..])
    );
    assert_eq!(
        bucket.get("after.txt").as_deref(),
        Some(&b"written after space was freed\n"[..])
    );
    assert_eq!(bucket.get("big.bin"), None, "the failed, removed file");
}

/// The core over the in-memory store, its cache directory on a 4 MiB
/// tmpfs (the disk, not the cache bound, is what fills).
struct SmallCore {
    fs: Arc<objectfs::ObjectFs>,
    mem: Arc<objectfs::store::memory::MemoryStore>,
    _disk: SmallDisk,
    _rt: tokio::runtime::Runtime,
    _base: tempfile::TempDir,
}

impl SmallCore {
    fn start() -> SmallCore {
        SmallCore::start_with("size=4m")
    }

    /// As [`Self::start`], the tmpfs mounted with `options`.
    fn start_with(options: &str) -> SmallCore {
        let base = tempfile::tempdir().unwrap();
        let disk = SmallDisk::mount_with(&base.path().join("cache"), options);
        SmallCore::start_on(base, disk)
    }

    /// As [`Self::start`], on an ext4 image ([`SmallDisk::ext4`]).
    fn start_ext4() -> SmallCore {
        let base = tempfile::tempdir().unwrap();
        let disk = SmallDisk::ext4(&base.path().join("cache"), &base.path().join("disk.img"));
        SmallCore::start_on(base, disk)
    }

    fn start_on(base: tempfile::TempDir, disk: SmallDisk) -> SmallCore {
        let mem = Arc::new(objectfs::store::memory::MemoryStore::new());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let fs = objectfs::ObjectFs::new(
            mem.clone(),
            rt.handle().clone(),
            SmallCore::options(&base.path().join("cache")),
        )
        .unwrap();
        SmallCore {
            fs: Arc::new(fs),
            mem,
            _disk: disk,
            _rt: rt,
            _base: base,
        }
    }

    fn options(cache_dir: &Path) -> objectfs::FsOptions {
        objectfs::FsOptions {
            prefix: String::new(),
            defaults: objectfs::layout::Defaults {
                uid: 0,
                gid: 0,
                umask: 0o022,
            },
            read_only: false,
            upload: objectfs::UploadMode::Async,
            cache_dir: cache_dir.to_path_buf(),
            metadata_ttl: Duration::ZERO, // objects put behind its back are seen
            flush_timeout: Duration::from_secs(30),
            upload_delay: Duration::from_secs(60),
            attrs_from_listing: false,
            cache_size: 1 << 30,
            dirty_wait: Duration::from_secs(1),
            label: "the disk-full test".into(),
        }
    }

    /// Fills what is left of the disk with a file outside the cache's
    /// own, down to its last block; removing it gives the room back.
    fn fill_outside(&self) -> std::path::PathBuf {
        let path = self._base.path().join("cache").join("filler");
        let mut f = fs::File::create(&path).unwrap();
        for size in [64 * 1024, 1024, 1] {
            let chunk = vec![0u8; size];
            while f.write_all(&chunk).is_ok() {}
        }
        path
    }

    /// The next mount process after this one died, on a copy of its
    /// cache directory's files (this core keeps the lock of the original):
    /// what it finds journalled it uploads at start.
    fn next_after_a_crash(
        &self,
    ) -> (
        objectfs::ObjectFs,
        tokio::runtime::Runtime,
        tempfile::TempDir,
    ) {
        let copy = tempfile::tempdir().unwrap();
        // `cp -a` keeps the extended attributes: journal entries, cache tags.
        let copied = Command::new("cp")
            .arg("-a")
            .arg(self._base.path().join("cache").join("staging"))
            .arg(copy.path().join("staging"))
            .status()
            .unwrap();
        assert!(copied.success(), "cp -a of the staging directory");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let fs = objectfs::ObjectFs::new(
            self.mem.clone(),
            rt.handle().clone(),
            SmallCore::options(copy.path()),
        )
        .unwrap();
        (fs, rt, copy)
    }

    /// Creates `name` and writes 1 MiB at a time into it until the disk
    /// refuses: the handle, still open.
    fn fill(&self, name: &str) -> u64 {
        let (_, fh) = self.fs.create(ROOT_INO, name, 0o644, 0, 0, true).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        let mut offset = 0;
        loop {
            match self.fs.write(fh, offset, &chunk) {
                Ok(n) => offset += u64::from(n),
                Err(e) => {
                    assert_eq!(e, libc::ENOSPC);
                    return fh;
                }
            }
            assert!(offset < 8 << 20, "a 4 MiB disk took 8 MiB");
        }
    }

    /// Opens `name` for writing without truncation (its object is copied
    /// first).
    fn open_to_change(&self, name: &str) -> Result<u64, i32> {
        let ino = self.fs.lookup(ROOT_INO, name).unwrap().ino;
        let flags = OpenFlags {
            write: true,
            truncate: false,
        };
        self.fs.open(ino, flags)
    }

    fn read_all(&self, name: &str) -> Vec<u8> {
        let ino = self.fs.lookup(ROOT_INO, name).unwrap().ino;
        let fh = self.fs.open(ino, OpenFlags::default()).unwrap();
        let mut out = Vec::new();
        loop {
            let got = self.fs.read(fh, out.len() as u64, 128 * 1024).unwrap();
            if got.is_empty() {
                break;
            }
            out.extend_from_slice(&got);
        }
        self.fs.release(fh).unwrap();
        out
    }
}

#[test]
fn a_write_right_after_an_rm_waits_for_the_removed_files_space_to_come_back() {
    require!(Root);
    let core = SmallCore::start();
    let (fs, mem) = (&core.fs, &core.mem);
    let big = core.fill("big");

    // `rm` while the file is still open: its space comes back at the
    // release, which (as FUSE's may) arrives a moment after the next write.
    fs.unlink(ROOT_INO, "big").unwrap();
    let (_, after) = fs.create(ROOT_INO, "after", 0o644, 0, 0, true).unwrap();
    let (writing, write_begins) = std::sync::mpsc::channel();
    let releaser = {
        let fs = fs.clone();
        std::thread::spawn(move || {
            // The release comes after the write has begun.
            write_begins.recv().unwrap();
            std::thread::sleep(Duration::from_millis(300));
            fs.release(big).unwrap();
        })
    };
    let data = vec![0xa5u8; 64 * 1024];
    writing.send(()).unwrap();
    assert_eq!(
        fs.write(after, 0, &data),
        Ok(data.len() as u32),
        "the write waits for the removed file's space"
    );
    releaser.join().unwrap();
    fs.release(after).unwrap();
    assert_eq!(fs.flush_all(), 0);
    assert_eq!(mem.object("after").as_deref(), Some(&data[..]));
    assert_eq!(mem.object("big"), None);

    // With nothing on its way back, a full disk is ENOSPC.
    let fill = core.fill("fill");
    fs.release(fill).unwrap();
}

#[test]
fn clean_copies_make_room_when_the_cache_disk_is_full_and_reads_download_once() {
    require!(Root);
    let core = SmallCore::start();
    let (fs, mem) = (&core.fs, &core.mem);
    // Twelve objects of 300 kB read once: their copies fill most of the
    // 4 MiB disk (the bound, 1 GiB, says nothing of it).
    let body = |i: u32| -> Vec<u8> { (0..300_000u32).map(|b| (b * 13 + i) as u8).collect() };
    for i in 0..12 {
        mem.insert(&format!("obj{i:02}"), body(i), Default::default());
    }
    for i in 0..12 {
        assert_eq!(core.read_all(&format!("obj{i:02}")), body(i));
    }
    assert!(fs.cache_bytes().0 >= 12 * 300_000, "{:?}", fs.cache_bytes());
    // An object of 900 kB opened for writing without truncation must be
    // copied first: the oldest copies make room for it.
    mem.insert("edit", body(50).repeat(3), Default::default());
    let w = core.open_to_change("edit").unwrap();
    assert_eq!(fs.write(w, 900_000, b"appended"), Ok(8));
    fs.release(w).unwrap();
    assert_eq!(fs.flush_all(), 0);
    let mut edited = body(50).repeat(3);
    edited.extend_from_slice(b"appended");
    assert_eq!(mem.object("edit").as_deref(), Some(&edited[..]));
    // A new file of 2 MiB does not fit beside them: the oldest copies go.
    let (_, fh) = fs.create(ROOT_INO, "new", 0o644, 0, 0, true).unwrap();
    let data: Vec<u8> = (0..2u32 << 20).map(|b| (b % 251) as u8).collect();
    for (n, part) in data.chunks(128 * 1024).enumerate() {
        assert_eq!(
            fs.write(fh, (n * 128 * 1024) as u64, part),
            Ok(part.len() as u32),
            "at {n}"
        );
    }
    fs.release(fh).unwrap();
    assert_eq!(fs.flush_all(), 0);
    assert_eq!(mem.object("new").as_deref(), Some(&data[..]));

    // Disk full of data not uploaded: an uncached object of 1.2 MB read in
    // 128 KiB pieces is downloaded for a copy once, not at every read.
    let hold = core.fill("hold");
    mem.insert("one", body(99).repeat(4), Default::default());
    let gets0 = mem.counters.gets.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(core.read_all("one"), body(99).repeat(4));
    let gets = mem.counters.gets.load(std::sync::atomic::Ordering::Relaxed) - gets0;
    assert!(gets <= 4, "{gets} GETs for 10 reads");
    fs.release(hold).unwrap();
}

#[test]
fn reads_of_uncached_objects_work_and_a_writer_gets_enospc_while_the_cache_disk_is_full() {
    require!(Root);
    let core = SmallCore::start();
    let (fs, mem) = (&core.fs, &core.mem);
    let objects: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            let body: Vec<u8> = (0..100_000u32).map(|b| (b * 7 + i) as u8).collect();
            (format!("obj{i:02}"), body)
        })
        .collect();
    for (key, body) in &objects {
        mem.insert(key, body.clone(), Default::default());
    }
    let fh = core.fill("big");
    // A listing, then every object read in name order: the reads that
    // would copy them into the cache (whole, or fetched ahead) find no
    // room on the disk, and must still return the object.
    let dir = fs.opendir(ROOT_INO).unwrap();
    let listed = fs.readdir_plus(dir, 0).unwrap().len();
    fs.releasedir(dir);
    assert!(listed >= objects.len(), "{listed} entries");
    for (key, body) in &objects {
        assert_eq!(&core.read_all(key), body, "{key}");
    }
    // A writer that needs the object copied first is told the disk is
    // full (not EIO), and the object is untouched.
    let written = core.open_to_change("obj03").and_then(|w| {
        let r = fs.write(w, 0, b"change");
        fs.release(w).unwrap();
        r
    });
    assert_eq!(written, Err(libc::ENOSPC));
    fs.release(fh).unwrap();
    assert_eq!(fs.flush_all(), 0);
    assert_eq!(mem.object("obj03").as_deref(), Some(&objects[3].1[..]));
}

/// A write is told done only once its journal entry is written (an
/// extended attribute of the copy), so that a crash cannot lose it: on a
/// full ext4 disk where that entry needs a block of its own, the write to
/// a copy fetched for writing gets ENOSPC (it was acknowledged, then lost
/// at the next mount, which deletes a copy neither journalled nor tagged);
/// once there is room, the write is journalled and a crash leaves it to
/// the next mount.
#[test]
fn a_write_whose_journal_entry_the_full_disk_refuses_gets_enospc() {
    require!(Root);
    let core = SmallCore::start_ext4();
    let (fs, mem) = (&core.fs, &core.mem);
    let before: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    mem.insert("db", before.clone(), Default::default());
    let fh = core.open_to_change("db").unwrap();
    let filler = core.fill_outside();
    // An overwrite in place needs no new data block; the journal entry does.
    assert_eq!(fs.write(fh, 0, b"CHANGED"), Err(libc::ENOSPC));
    // So does a truncation (shrinking needs no block either).
    let ino = fs.lookup(ROOT_INO, "db").unwrap().ino;
    let shrink = objectfs::SetAttr {
        size: Some(10),
        ..Default::default()
    };
    assert_eq!(fs.setattr(ino, shrink).map(drop), Err(libc::ENOSPC));
    // An object with no copy here, emptied by O_TRUNC or truncate(2): the
    // refused truncation changes nothing, here or in the bucket (the empty
    // copy it began with was uploaded over the object, and shown).
    // A reader has it open meanwhile (ranged reads: no copy fits): it
    // still reads the object (the empty copy stayed while it was open).
    mem.insert("other", b"twelve bytes".to_vec(), Default::default());
    let other = fs.lookup(ROOT_INO, "other").unwrap().ino;
    let reader = fs.open(other, OpenFlags::default()).unwrap();
    let emptying = OpenFlags {
        write: true,
        truncate: true,
    };
    assert_eq!(fs.open(other, emptying).map(drop), Err(libc::ENOSPC));
    assert_eq!(fs.getattr(other).unwrap().size, 12);
    assert_eq!(&fs.read(reader, 0, 64).unwrap()[..], b"twelve bytes");
    fs.release(reader).unwrap();
    let cut = objectfs::SetAttr {
        size: Some(0),
        ..Default::default()
    };
    assert_eq!(fs.setattr(other, cut).map(drop), Err(libc::ENOSPC));
    assert_eq!(fs.getattr(other).unwrap().size, 12);
    assert_eq!(fs.flush_all(), 0);
    assert_eq!(mem.object("other").as_deref(), Some(&b"twelve bytes"[..]));
    fs::remove_file(filler).unwrap();
    assert_eq!(fs.write(fh, 0, b"CHANGED"), Ok(7));
    // The process dies here, the file still open and not uploaded.
    let (next, _rt, _copy) = core.next_after_a_crash();
    let mut after = before.clone();
    after[..7].copy_from_slice(b"CHANGED");
    assert!(
        mem.object("db").as_deref() == Some(&after[..]),
        "the acknowledged write is in the bucket after the next mount"
    );
    drop(next);
    fs.release(fh).unwrap();
}

#[test]
fn a_cache_disk_out_of_inodes_gives_enospc_not_eio() {
    require!(Root);
    // Room for bytes, not for files: each file created takes a data file.
    let core = SmallCore::start_with("size=16m,nr_inodes=80");
    let fs = &core.fs;
    let mut made = 0;
    let err = loop {
        match fs.create(ROOT_INO, &format!("f{made}"), 0o644, 0, 0, true) {
            // The journal entry a write needs (an extended attribute) is
            // counted against tmpfs's inodes too: a write may be refused
            // first.
            Ok((_, fh)) => {
                let written = fs.write(fh, 0, b"a small file\n");
                fs.release(fh).unwrap();
                match written {
                    Ok(_) => made += 1,
                    Err(e) => break e,
                }
            }
            Err(e) => break e,
        }
        assert!(made < 200, "80 inodes held {made} files");
    };
    assert_eq!(err, libc::ENOSPC, "after {made} files");
    // What was created before is intact and reaches the store.
    assert_eq!(fs.flush_all(), 0);
    for i in 0..made {
        assert_eq!(
            core.mem.object(&format!("f{i}")).as_deref(),
            Some(&b"a small file\n"[..])
        );
    }
}
