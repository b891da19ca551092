//! The cache directory's disk full: objectfs stages every write there, so
//! a full disk must reach the writer as ENOSPC, and nothing else (files
//! written before, files written after space is freed) may suffer; a write
//! right after an `rm` gets the space the removed file held, even when its
//! release reaches the core after the write does.

use crate::common;

use common::objectfs_mount::{Bucket, Mounted};
use common::s3server::moto;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A 4 MiB tmpfs at `dir`, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path) -> SmallDisk {
        fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
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

#[test]
fn a_write_right_after_an_rm_waits_for_the_removed_files_space_to_come_back() {
    require!(Root);
    use objectfs::store::memory::MemoryStore;
    use objectfs::{FsOptions, ROOT_INO, UploadMode};
    let base = tempfile::tempdir().unwrap();
    let _disk = SmallDisk::mount(&base.path().join("cache"));
    let mem = Arc::new(MemoryStore::new());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let opts = FsOptions {
        prefix: String::new(),
        defaults: objectfs::layout::Defaults {
            uid: 0,
            gid: 0,
            umask: 0o022,
        },
        read_only: false,
        upload: UploadMode::Async,
        cache_dir: base.path().join("cache"),
        metadata_ttl: Duration::from_secs(1),
        flush_timeout: Duration::from_secs(30),
        upload_delay: Duration::from_secs(60),
        attrs_from_listing: false,
        cache_size: 1 << 30, // the disk, not the bound, is what fills
        dirty_wait: Duration::from_secs(1),
        label: "the disk-full test".into(),
    };
    let fs = Arc::new(objectfs::ObjectFs::new(mem.clone(), rt.handle().clone(), opts).unwrap());

    // Fill the disk through one open file.
    let (_, big) = fs.create(ROOT_INO, "big", 0o644, 0, 0, true).unwrap();
    let chunk = vec![0x5au8; 1 << 20];
    let mut offset = 0;
    let err = loop {
        match fs.write(big, offset, &chunk) {
            Ok(n) => offset += u64::from(n),
            Err(e) => break e,
        }
        assert!(offset < 8 << 20, "a 4 MiB disk took 8 MiB");
    };
    assert_eq!(err, libc::ENOSPC);

    // `rm` while the file is still open: its space comes back at the
    // release, which (as FUSE's may) arrives a moment after the next write.
    fs.unlink(ROOT_INO, "big").unwrap();
    let releaser = {
        let fs = fs.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            fs.release(big).unwrap();
        })
    };
    let (_, after) = fs.create(ROOT_INO, "after", 0o644, 0, 0, true).unwrap();
    let data = vec![0xa5u8; 64 * 1024];
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

    // With nothing on its way back, a full disk is ENOSPC at once.
    let (_, fill) = fs.create(ROOT_INO, "fill", 0o644, 0, 0, true).unwrap();
    let mut offset = 0;
    let err = loop {
        match fs.write(fill, offset, &chunk) {
            Ok(n) => offset += u64::from(n),
            Err(e) => break e,
        }
        assert!(offset < 8 << 20, "a 4 MiB disk took 8 MiB");
    };
    assert_eq!(err, libc::ENOSPC);
    fs.release(fill).unwrap();
}
