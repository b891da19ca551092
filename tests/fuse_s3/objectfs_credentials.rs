//! Credentials and a store that refuses or does not answer (issue 15):
//! keys revoked while a container writes lose nothing, the mount says so
//! once in its log and in its status, and uploads resume by themselves
//! once the keys work again; a mount whose flush times out with the store
//! unreachable exits at once with status 1, its journal intact.
//!
//! The S3 server is s3s-fs, which checks signatures: restarting it with
//! another key pair refuses the mount's keys, as a revocation would.

use crate::common;

use common::fast_s3::FastS3Server;
use common::fault_proxy::{FaultProxy, Mode};
use common::objectfs_mount::{Bucket, Mounted};
use common::wait_for;
use std::fs;
use std::time::Duration;

const PREFIX: &str = "vol";

fn key(rel: &str) -> String {
    format!("{PREFIX}/{rel}")
}

/// How many lines of `log` contain `needle`.
fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn revoked_keys_lose_nothing_show_in_status_and_uploads_resume_by_themselves() {
    require!(Root, Fuse, FastS3);
    let mut server = FastS3Server::start();
    let config = server.new_bucket("revoked");
    let bucket = Bucket::new(&config);
    let base = tempfile::tempdir().unwrap();
    let m = Mounted::start(base.path(), &config, PREFIX, &["--metadata-ttl", "60"]);

    fs::write(m.path("before.txt"), b"written before").unwrap();
    fs::File::open(m.path("before.txt"))
        .unwrap()
        .sync_all()
        .unwrap();
    assert_eq!(bucket.get(&key("before.txt")).unwrap(), b"written before");
    // Listed within the TTL: the mount knows which names are new without
    // asking the store (which is about to refuse every request).
    assert_eq!(fs::read_dir(m.path("")).unwrap().count(), 1);

    // The keys stop working: every request of the mount is refused.
    server.restart_with_keys("another-key", "another-secret");
    fs::write(m.path("during.txt"), b"written while refused").unwrap();
    fs::create_dir(m.path("dir")).unwrap();
    fs::write(m.path("dir/inner.txt"), b"inside").unwrap();
    fs::remove_file(m.path("before.txt")).unwrap();
    wait_for("the status to show the store's refusal", || {
        m.status()["storeError"].is_string()
    });
    let status = m.status();
    let since = status["storeErrorSince"].as_str().unwrap_or_default();
    assert!(
        since.ends_with('Z') && since.contains('T'),
        "RFC 3339: {since}"
    );
    assert!(
        status["pendingBytes"].as_u64() > Some(0) || status["pendingChanges"].as_u64() > Some(0),
        "{status}"
    );
    // Several rounds of retries: still one line.
    std::thread::sleep(Duration::from_secs(6));
    let log = m.log_text();
    assert_eq!(
        lines_with(&log, "refuses this mount's credentials"),
        1,
        "{log}"
    );
    assert!(log.contains("volume") || log.contains("bucket"), "{log}");
    assert!(!log.contains("test\""), "no key in the log");

    // The keys work again: everything waiting arrives, nothing dropped.
    server.restart_with_keys("test", "test");
    wait_for("the file written while refused to reach the bucket", || {
        bucket.get(&key("during.txt")).as_deref() == Some(&b"written while refused"[..])
    });
    wait_for("the unlink made while refused to reach the bucket", || {
        bucket.get(&key("before.txt")).is_none()
    });
    wait_for(
        "the directory made while refused to reach the bucket",
        || bucket.get(&key("dir/inner.txt")).as_deref() == Some(&b"inside"[..]),
    );
    wait_for("the status to clear", || m.status()["storeError"].is_null());
    assert_eq!(
        lines_with(&m.log_text(), "takes this mount's changes again"),
        1
    );
    let mut m = m;
    m.stop();
}

#[test]
fn a_flush_timeout_with_the_store_down_exits_at_once_with_status_1_journal_intact() {
    require!(Root, Fuse, FastS3);
    let server = FastS3Server::start();
    let upstream = server.new_bucket("flush-timeout");
    let bucket = Bucket::new(&upstream);
    let proxy = FaultProxy::start(server.addr);
    let mut via_proxy = upstream.clone();
    via_proxy.endpoint = Some(proxy.endpoint());
    let base = tempfile::tempdir().unwrap();
    let mut m = Mounted::start(base.path(), &via_proxy, PREFIX, &["--flush-timeout", "3"]);

    // Created while the store answers (a new name is looked up there);
    // its data written once it does not.
    let mut file = fs::File::create(m.path("stuck.bin")).unwrap();
    proxy.set(Mode::Down);
    let data = vec![7u8; 3 * 1024 * 1024];
    std::io::Write::write_all(&mut file, &data).unwrap();
    drop(file);
    // Let the background upload start (after the 1 s upload delay) and
    // hang in its retries against the store.
    std::thread::sleep(Duration::from_secs(3));
    let (status, took) = m.terminate();
    assert_eq!(status.code(), Some(1), "{}", m.log_text());
    // The flush timeout (3 s), the FUSE session's end, and a margin: a
    // bound for a hung process, not a speed check.
    assert!(took < Duration::from_secs(30), "exited after {took:?}");
    assert!(m.log_text().contains("uploads did not finish in time"));

    proxy.set(Mode::Pass);
    m.restart();
    m.stop();
    assert_eq!(bucket.get(&key("stuck.bin")).unwrap(), data);
}
