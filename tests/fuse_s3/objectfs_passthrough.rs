//! Passthrough reads: a read-only open of a file with a complete local copy
//! is answered so that the kernel reads the copy itself (the mount's status
//! counts those opens). Shown here: the content is exact; a file with no
//! local copy yet is read through the mount; a writer opened beside a
//! passthrough reader works (the kernel then writes the copy itself), its
//! bytes and size are seen at once, fsync puts them in the bucket, and a
//! crash before close loses none of them; a read-only mmap works.

use crate::common;

use common::objectfs_mount::{Bucket, Mounted};
use common::s3server::moto;
use common::wait_for;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What the mount's status file says of passthrough opens so far.
fn passthrough_opens(m: &Mounted) -> u64 {
    let status = fs::read(m.cache.join("status.json")).unwrap_or_default();
    serde_json::from_slice::<serde_json::Value>(&status)
        .ok()
        .and_then(|v| v["passthroughOpens"].as_u64())
        .unwrap_or(0)
}

/// Waits until the status file (rewritten once a second) reports `n`.
fn wait_for_passthrough_opens(m: &Mounted, n: u64) {
    wait_for(&format!("{n} passthrough opens in the status"), || {
        passthrough_opens(m) == n
    });
}

/// Waits until the status file counts `n` RELEASEs: close() returns after
/// FLUSH and the RELEASE reaches the mount afterwards, and an open before it
/// goes through the page cache (the kernel refuses passthrough beside such
/// an open), so a test that counts passthrough opens waits for it first
/// (flaked in CI).
fn wait_for_releases(m: &Mounted, n: u64) {
    wait_for(&format!("{n} releases in the status"), || {
        m.status()["metrics"]["fuseOps"]["release"]
            .as_u64()
            .is_some_and(|r| r >= n)
    });
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[test]
fn a_local_copy_is_read_by_the_kernel_itself() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("passthrough-read");
    let bucket = Bucket::new(&config);
    let remote = pattern(300_000, 7);
    bucket.put("vol/remote.bin", &remote);
    let mut m = Mounted::start(base.path(), &config, "vol", &[]);

    // Written through the mount: the copy stays local after close.
    let local = pattern(5 * 1024 * 1024 + 17, 3);
    fs::write(m.path("local.bin"), &local).unwrap();
    wait_for_releases(&m, 1);
    assert_eq!(fs::read(m.path("local.bin")).unwrap(), local);
    wait_for_passthrough_opens(&m, 1);

    // Only in the bucket: the first open has no local copy, so its reads
    // come to the mount (which fetches the object whole); the next open
    // is served from that copy.
    assert_eq!(fs::read(m.path("remote.bin")).unwrap(), remote);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(passthrough_opens(&m), 1, "no local copy at the first open");
    assert_eq!(fs::read(m.path("remote.bin")).unwrap(), remote);
    wait_for_passthrough_opens(&m, 2);

    // Random reads and a read-only mapping of a passthrough open.
    let f = fs::File::open(m.path("local.bin")).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, 4_000_000).unwrap();
    assert_eq!(buf, local[4_000_000..4_004_096]);
    assert_eq!(mapped_sum(&m.path("local.bin")), byte_sum(&local));
    drop(f);

    m.stop();
    assert_eq!(bucket.get("vol/local.bin").unwrap(), local);
}

#[test]
fn a_writer_beside_a_passthrough_reader_works_and_is_seen() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("passthrough-writer");
    let bucket = Bucket::new(&config);
    let mut m = Mounted::start(base.path(), &config, "vol", &[]);
    fs::write(m.path("log.txt"), b"first line\n").unwrap();

    let mut reader = fs::File::open(m.path("log.txt")).unwrap();
    let mut seen = String::new();
    reader.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "first line\n");
    wait_for_passthrough_opens(&m, 1);

    // The kernel refuses page-cache opens beside passthrough ones; the
    // mount answers this one without the page cache instead.
    let mut writer = fs::OpenOptions::new()
        .append(true)
        .open(m.path("log.txt"))
        .expect("a writer may open a file that a reader has open");
    writer.write_all(b"second line\n").unwrap();
    reader.seek(SeekFrom::Start(0)).unwrap();
    seen.clear();
    reader.read_to_string(&mut seen).unwrap();
    assert_eq!(
        seen, "first line\nsecond line\n",
        "the reader sees the write"
    );
    assert_eq!(
        fs::metadata(m.path("log.txt")).unwrap().len(),
        23,
        "and stat"
    );
    writer.sync_all().unwrap();
    assert_eq!(
        bucket.get("vol/log.txt").unwrap(),
        b"first line\nsecond line\n",
        "in the bucket when fsync returns"
    );

    // A second reader joins the same passthrough file; an O_TRUNC open
    // beside them works too.
    let again = fs::read(m.path("log.txt")).unwrap();
    assert_eq!(again, b"first line\nsecond line\n");
    drop(writer);
    fs::write(m.path("log.txt"), b"replaced\n").unwrap();
    reader.seek(SeekFrom::Start(0)).unwrap();
    seen.clear();
    reader.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "replaced\n");
    drop(reader);

    m.stop();
    assert_eq!(bucket.get("vol/log.txt").unwrap(), b"replaced\n");
}

fn byte_sum(data: &[u8]) -> u64 {
    data.iter().map(|&b| b as u64).sum()
}

/// The sum of a file's bytes read through a read-only shared mapping.
fn mapped_sum(path: &Path) -> u64 {
    use std::os::fd::AsRawFd;
    let f = fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    // SAFETY: a read-only mapping of `len` bytes of an open file, unmapped
    // before the file is closed; the slice does not outlive the mapping.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        let sum = byte_sum(std::slice::from_raw_parts(p as *const u8, len));
        libc::munmap(p, len);
        sum
    }
}

#[test]
fn a_crash_while_the_kernel_writes_the_copy_itself_loses_nothing() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("passthrough-crash");
    let bucket = Bucket::new(&config);
    // The first write's upload, queued at its release, runs after the
    // writer below has written (the waits for the status take up to a
    // second or two each).
    let mut m = Mounted::start(base.path(), &config, "vol", &["--upload-delay", "4s"]);
    let first = pattern(100_000, 1);
    fs::write(m.path("data.bin"), &first).unwrap();
    wait_for_releases(&m, 1);
    let reader = fs::File::open(m.path("data.bin")).unwrap();
    wait_for_passthrough_opens(&m, 1);
    let mut writer = fs::OpenOptions::new()
        .write(true)
        .open(m.path("data.bin"))
        .unwrap();
    let second = pattern(100_000, 9);
    writer.write_all(&second).unwrap();
    // The queued upload runs meanwhile and takes the copy as it is; it must
    // not mark the copy clean while the kernel may still write it.
    wait_for("the background upload of the written copy", || {
        bucket.get("vol/data.bin").as_deref() == Some(&second[..])
    });
    writer.write_all(b"tail").unwrap();
    m.kill9();
    drop((reader, writer));
    m.restart();
    m.stop();
    let mut expected = second;
    expected.extend_from_slice(b"tail");
    assert_eq!(bucket.get("vol/data.bin").unwrap(), expected);
}

#[test]
fn a_mapping_outlives_its_file_and_never_shows_another_files_data() {
    use std::os::fd::AsRawFd;
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("passthrough-map");
    // Nothing uploaded during the test: the removed file's copy is still
    // the node's own (not yet a cached copy) when it goes.
    let mut m = Mounted::start(base.path(), &config, "vol", &["--upload-delay", "10min"]);
    let old = pattern(64 * 1024, 5);
    fs::write(m.path("lib.so"), &old).unwrap();
    wait_for_releases(&m, 1);
    // As a dynamic loader does: map, close the descriptor, keep the map.
    let f = fs::File::open(m.path("lib.so")).unwrap();
    // SAFETY: a read-only shared mapping of the whole file, read below and
    // unmapped at the end; the slice never outlives it.
    let map = unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            old.len(),
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        p
    };
    drop(f);
    // The file goes (as an upgrade replaces it), and new files are written,
    // which would reuse its local copy if it were recycled.
    fs::remove_file(m.path("lib.so")).unwrap();
    for i in 0..20 {
        fs::write(m.path(&format!("new{i}.so")), pattern(64 * 1024, 200)).unwrap();
    }
    // SAFETY: `map` is a live mapping of `old.len()` bytes (see above).
    let seen = unsafe { std::slice::from_raw_parts(map as *const u8, old.len()).to_vec() };
    unsafe { libc::munmap(map, old.len()) };
    assert!(seen == old, "the mapping shows other data than its file's");
    wait_for_passthrough_opens(&m, 1);
    m.stop();
}
