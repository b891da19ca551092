//! Crash recovery never overwrites another host's newer object (issue 16,
//! "cross-host correctness"): two mounts of one prefix with their own cache
//! directories, as two hosts; host A is killed (kill -9) with a file
//! staged and not uploaded, host B then writes the same name; when A comes
//! back, B's object stays and A's data is uploaded beside it under a name
//! that says it is a conflict. When nobody changed the object, recovery
//! uploads to the name itself, as before. When B writes after A's
//! recovery has checked the key (a HEAD) but before its upload, the upload
//! is conditional and the store refuses it (moto honours `If-None-Match`
//! and `If-Match` on PutObject): the data goes beside B's object too.

use crate::common;

use common::fault_proxy::FaultProxy;
use common::objectfs_mount::{Bucket, Mounted};
use common::s3server::moto;
use common::wait_for_within;
use std::fs;
use std::time::Duration;

const PREFIX: &str = "vol";

/// A mount that never uploads before it is stopped or killed.
fn holding(base: &std::path::Path, config: &objectfs::store::s3::S3Config) -> Mounted {
    Mounted::start(base, config, PREFIX, &["--upload-delay", "10min"])
}

/// What the one log line of a conflict says.
const CONFLICT_LINE: &str = "another client changed this object";

/// After a recovery that found `key` changed by another host: the bucket
/// holds `newer` at `key` and `staged` under exactly one conflict name
/// beside it (`KEY.conflict-YYYYMMDDTHHMMSSZ`), and the mount's `log`
/// has exactly one line saying so, found by `found_by`. Returns the
/// conflict name.
pub(crate) fn assert_kept_beside(
    bucket: &Bucket,
    key: &str,
    newer: &[u8],
    staged: &[u8],
    log: &str,
    found_by: &str,
) -> String {
    assert_eq!(
        bucket.get(key).as_deref(),
        Some(newer),
        "the other host's object stays"
    );
    let beside = format!("{key}.conflict-");
    let conflicts: Vec<String> = bucket
        .keys(key)
        .into_iter()
        .filter(|k| k.starts_with(&beside))
        .collect();
    let [conflict] = &conflicts[..] else {
        panic!("one conflict name: {:?}", bucket.keys(key))
    };
    assert_eq!(bucket.get(conflict).as_deref(), Some(staged));
    let stamp = &conflict[beside.len()..];
    assert!(
        stamp.len() == 16 && stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'),
        "{stamp}"
    );
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(CONFLICT_LINE)).collect();
    let [line] = &lines[..] else {
        panic!("one conflict line:\n{log}")
    };
    assert!(line.contains(found_by), "{line}");
    assert!(line.contains(conflict.as_str()), "{line}");
    conflict.clone()
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
    assert_kept_beside(
        &bucket,
        "vol/f.txt",
        b"from B, newer",
        b"from A, staged",
        &a.log_text(),
        "a HEAD found another object",
    );
}

/// B writes the key after A's recovery has found it as A last saw it (no
/// object) and before A's upload: a proxy holds A's PutObject of the key
/// while B writes. The upload carries `If-None-Match: *`, moto refuses
/// it, and A's data goes beside B's object all the same. (Without the
/// condition A's upload would overwrite B's object.)
#[test]
fn a_write_after_the_recovery_check_is_caught_by_the_conditional_upload() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("race");
    let bucket = Bucket::new(&config);
    let proxy = FaultProxy::start(moto().addr);
    let through_proxy = objectfs::store::s3::S3Config {
        endpoint: Some(proxy.endpoint()),
        ..config.clone()
    };
    let mut a = holding(&base.path().join("host-a"), &through_proxy);
    fs::write(a.path("f.txt"), b"from A, staged").unwrap();
    a.kill9();

    // Recovery's HEAD passes; its upload of the key is held until B has
    // written (the conflict name, `f.txt.conflict-…`, is not held).
    let upload = proxy.hold(&format!("PUT /{}/vol/f.txt?", config.bucket));
    let host_b = std::thread::spawn({
        let upload = upload.clone();
        move || {
            wait_for_within(
                "A's recovery to upload f.txt",
                Duration::from_secs(60),
                || upload.arrived(),
            );
            bucket.put("vol/f.txt", b"from B, after A's check");
            upload.release();
            bucket
        }
    });
    a.restart();
    let bucket = host_b.join().unwrap();
    a.stop();
    assert_kept_beside(
        &bucket,
        "vol/f.txt",
        b"from B, after A's check",
        b"from A, staged",
        &a.log_text(),
        "the conditional upload was refused",
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
