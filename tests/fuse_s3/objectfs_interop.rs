//! The bucket layout is s3fs's: a tree written through objectfs reads the
//! same through s3fs 1.90 (Debian 12's), and the reverse. Both mounts run
//! over one bucket prefix of the moto server; each side unmounts (and so
//! has uploaded everything) before the other mounts.

use crate::common;

use common::objectfs_mount::{Bucket, Mounted};
use common::s3fs::S3fsMount;
use common::s3server::moto;
use common::sh;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

/// `touch -d` of dated.txt: 2021-02-03 04:05:06 UTC.
const DATED: &str = "2021-02-03 04:05:06 UTC";
const DATED_EPOCH: i64 = 1_612_325_106;

/// More than 16 MiB, so objectfs uploads it in parts (and s3fs, whose
/// parts are 10 MiB, too).
fn big_content() -> Vec<u8> {
    (0..(20u32 << 20) + 12345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The tree both directions write, through ordinary file operations on
/// `root` (a mount of either filesystem).
fn write_tree(root: &Path) {
    let p = |rel: &str| root.join(rel);
    fs::create_dir(p("docs")).unwrap();
    fs::write(p("docs/readme.txt"), b"hello from the writer\n").unwrap();
    fs::create_dir_all(p("docs/deep/er")).unwrap();
    fs::write(p("docs/deep/er/with space.txt"), b"spaces and depth").unwrap();
    fs::write(p("big.bin"), big_content()).unwrap();

    fs::create_dir(p("bin")).unwrap();
    fs::write(p("bin/run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(p("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();

    symlink("docs/readme.txt", p("link")).unwrap();
    fs::create_dir(p("empty")).unwrap();
    fs::create_dir(p("private")).unwrap();
    fs::set_permissions(p("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(p("private/key"), b"secret").unwrap();
    std::os::unix::fs::chown(p("private"), Some(1234), Some(5678)).unwrap();
    sh(root, &format!("touch -d '{DATED}' private"));

    fs::write(p("dated.txt"), b"old news").unwrap();
    sh(root, &format!("touch -d '{DATED}' dated.txt"));
    fs::write(p("owned.txt"), b"not root's").unwrap();
    std::os::unix::fs::chown(p("owned.txt"), Some(1234), Some(5678)).unwrap();
}

/// What every reader must see of [`write_tree`]'s tree under `root`.
fn check_tree(root: &Path) {
    let p = |rel: &str| root.join(rel);
    // First, before anything lists the root: on a fresh mount this lookup
    // is the first request for the root, which objectfs answers from one
    // LIST of it. A directory's mode, owner and mtime are its marker's all
    // the same, from the first lookup on (not only once a TTL expired).
    let private = fs::metadata(p("private")).unwrap();
    assert_eq!(
        (
            private.mode(),
            private.uid(),
            private.gid(),
            private.mtime()
        ),
        (libc::S_IFDIR | 0o700, 1234, 5678, DATED_EPOCH),
        "private/: mode, owner and mtime from its marker"
    );

    assert_eq!(
        names(root),
        [
            "big.bin",
            "bin",
            "dated.txt",
            "docs",
            "empty",
            "link",
            "owned.txt",
            "private"
        ]
    );
    assert_eq!(names(&p("docs")), ["deep", "readme.txt"]);
    assert_eq!(names(&p("docs/deep")), ["er"]);

    // Contents.
    assert_eq!(
        fs::read(p("docs/readme.txt")).unwrap(),
        b"hello from the writer\n"
    );
    assert_eq!(
        fs::read(p("docs/deep/er/with space.txt")).unwrap(),
        b"spaces and depth"
    );
    assert!(
        fs::read(p("big.bin")).unwrap() == big_content(),
        "big.bin differs"
    );
    assert_eq!(fs::read(p("private/key")).unwrap(), b"secret");

    // Modes: the file type and the permission bits.
    let mode = |rel: &str| fs::symlink_metadata(p(rel)).unwrap().mode();
    assert_eq!(
        mode("docs/readme.txt"),
        libc::S_IFREG | 0o644,
        "docs/readme.txt"
    );
    assert_eq!(mode("bin/run.sh"), libc::S_IFREG | 0o755, "bin/run.sh");
    sh(root, "test \"$(./bin/run.sh)\" = hi");
    assert_eq!(mode("docs"), libc::S_IFDIR | 0o755, "docs");
    assert_eq!(mode("docs/deep/er"), libc::S_IFDIR | 0o755, "docs/deep/er");
    assert_eq!(mode("private"), libc::S_IFDIR | 0o700, "private");
    assert_eq!(mode("empty"), libc::S_IFDIR | 0o755, "empty");

    // The symlink: its target, and reads through it.
    assert!(fs::symlink_metadata(p("link")).unwrap().is_symlink());
    assert_eq!(
        fs::read_link(p("link")).unwrap(),
        Path::new("docs/readme.txt")
    );
    assert_eq!(
        fs::read(p("link")).unwrap(),
        b"hello from the writer\n",
        "reading through the symlink"
    );

    // The empty directory.
    assert!(fs::metadata(p("empty")).unwrap().is_dir());
    assert_eq!(names(&p("empty")), Vec::<String>::new());

    // mtime and owner.
    let dated = fs::metadata(p("dated.txt")).unwrap();
    assert_eq!((dated.mtime(), dated.len()), (DATED_EPOCH, 8), "dated.txt");
    let owned = fs::metadata(p("owned.txt")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 5678), "owned.txt");
}

/// Keys every writer leaves for the tree (s3fs's layout: a marker per
/// directory it created).
const KEYS: [&str; 14] = [
    "big.bin",
    "bin/",
    "bin/run.sh",
    "dated.txt",
    "docs/",
    "docs/deep/",
    "docs/deep/er/",
    "docs/deep/er/with space.txt",
    "docs/readme.txt",
    "empty/",
    "link",
    "owned.txt",
    "private/",
    "private/key",
];

/// The bucket holds [`KEYS`] under `prefix`, the symlink as s3fs stores
/// one, dated.txt's mtime, and the empty directory's marker with
/// `marker_mode` as its mode.
fn assert_layout(bucket: &Bucket, prefix: &str, marker_mode: u32) {
    let want: Vec<String> = KEYS.iter().map(|k| format!("{prefix}/{k}")).collect();
    assert_eq!(bucket.keys(&format!("{prefix}/")), want);
    let head = bucket.head(&format!("{prefix}/empty/")).unwrap();
    assert_eq!(head.size, 0);
    assert_eq!(
        head.metadata.get("mode").map(String::as_str),
        Some(&*marker_mode.to_string()),
        "empty/ marker metadata: {:?}",
        head.metadata
    );
    assert_eq!(
        bucket.get(&format!("{prefix}/link")).unwrap(),
        b"docs/readme.txt"
    );
    let link = bucket.metadata(&format!("{prefix}/link"));
    let link_mode: u32 = link["mode"].parse().unwrap();
    assert_eq!(link_mode & libc::S_IFMT, libc::S_IFLNK, "{link:?}");
    let dated = bucket.metadata(&format!("{prefix}/dated.txt"));
    assert_eq!(dated["mtime"], DATED_EPOCH.to_string(), "{dated:?}");
}

fn set_umask() {
    // The modes checked assume the usual umask; set it, whatever the
    // caller's.
    // SAFETY: umask(2) cannot fail.
    unsafe { libc::umask(0o022) };
}

#[test]
fn a_tree_written_by_objectfs_reads_the_same_through_s3fs() {
    require!(Root, Fuse, Moto, S3fs);
    set_umask();
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("to-s3fs");
    let bucket = Bucket::new(&config);
    let mut ours = Mounted::start(&base.path().join("ours"), &config, "shared", &[]);
    write_tree(&ours.dir);
    check_tree(&ours.dir); // what we wrote, as we see it
    ours.stop();
    // objectfs stores a directory's mode with its file-type bits.
    assert_layout(&bucket, "shared", libc::S_IFDIR | 0o755);

    let mut theirs = S3fsMount::start(&base.path().join("s3fs"), &config, "shared");
    check_tree(&theirs.dir);
    theirs.stop();
}

#[test]
fn a_tree_written_by_s3fs_reads_the_same_through_objectfs() {
    require!(Root, Fuse, Moto, S3fs);
    set_umask();
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("from-s3fs");
    let bucket = Bucket::new(&config);
    let mut theirs = S3fsMount::start(&base.path().join("s3fs"), &config, "shared");
    write_tree(&theirs.dir);
    check_tree(&theirs.dir); // what s3fs wrote, as s3fs sees it
    theirs.stop();
    // s3fs 1.90 stores the mode mkdir(2) passed, without S_IFDIR: the
    // key's trailing slash says it is a directory.
    assert_layout(&bucket, "shared", 0o755);

    let mut ours = Mounted::start(&base.path().join("ours"), &config, "shared", &[]);
    check_tree(&ours.dir);
    ours.stop();
}
