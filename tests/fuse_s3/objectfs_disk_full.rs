//! The cache directory's disk full: objectfs stages every write there, so
//! a full disk must reach the writer as ENOSPC, and nothing else (files
//! written before, files written after space is freed) may suffer.

use crate::common;

use common::objectfs_mount::{Bucket, Mounted};
use common::s3server::moto;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;

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
