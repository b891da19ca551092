//! Crash recovery never overwrites another host's newer object (issue 16,
//! "cross-host correctness"): two mounts of one prefix with their own cache
//! directories, as two hosts; host A is killed (kill -9) with a file
//! staged and not uploaded, host B then writes the same name; when A comes
//! back, B's object stays and A's data is uploaded beside it under a name
//! that says it is a conflict. When nobody changed the object, recovery
//! uploads to the name itself, as before.

use crate::common;

use common::objectfs_mount::{Bucket, Mounted};
use common::s3server::moto;
use std::fs;

const PREFIX: &str = "vol";

/// A mount that never uploads before it is stopped or killed.
fn holding(base: &std::path::Path, config: &objectfs::store::s3::S3Config) -> Mounted {
    Mounted::start(base, config, PREFIX, &["--upload-delay", "10min"])
}

#[test]
fn recovery_keeps_another_hosts_newer_object_and_uploads_beside_it() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("conflict");
    let bucket = Bucket::new(&config);
    let mut a = holding(&base.path().join("host-a"), &config);
    fs::write(a.path("f.txt"), b"from A, staged").unwrap();
    a.kill9();

    let mut b = holding(&base.path().join("host-b"), &config);
    fs::write(b.path("f.txt"), b"from B, newer").unwrap();
    b.stop();
    assert_eq!(bucket.get("vol/f.txt").unwrap(), b"from B, newer");

    a.restart();
    a.stop();
    assert_eq!(
        bucket.get("vol/f.txt").unwrap(),
        b"from B, newer",
        "the other host's object stays"
    );
    let conflicts: Vec<String> = bucket
        .keys(PREFIX)
        .into_iter()
        .filter(|k| k.starts_with("vol/f.txt.conflict-"))
        .collect();
    assert_eq!(conflicts.len(), 1, "{:?}", bucket.keys(PREFIX));
    assert_eq!(bucket.get(&conflicts[0]).unwrap(), b"from A, staged");
    let stamp = &conflicts[0]["vol/f.txt.conflict-".len()..];
    assert!(
        stamp.len() == 16 && stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'),
        "{stamp}"
    );
    let log = a.log_text();
    assert_eq!(
        log.matches("another client changed this object").count(),
        1,
        "{log}"
    );
}

#[test]
fn recovery_uploads_to_the_name_when_nobody_changed_the_object() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("noconflict");
    let bucket = Bucket::new(&config);
    bucket.put("vol/old.txt", b"version 1");
    let mut a = holding(&base.path().join("host-a"), &config);
    // An existing object changed, and a new one: both staged, then a crash.
    assert_eq!(fs::read(a.path("old.txt")).unwrap(), b"version 1");
    fs::write(a.path("old.txt"), b"version 2 from A").unwrap();
    fs::write(a.path("new.txt"), b"new from A").unwrap();
    a.kill9();
    a.restart();
    a.stop();
    assert_eq!(bucket.get("vol/old.txt").unwrap(), b"version 2 from A");
    assert_eq!(bucket.get("vol/new.txt").unwrap(), b"new from A");
    let keys = bucket.keys(PREFIX);
    assert!(!keys.iter().any(|k| k.contains(".conflict-")), "{keys:?}");
}
