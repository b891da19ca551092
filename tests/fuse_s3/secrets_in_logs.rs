//! Keys never reach a log, even at `trace`: a real mount (moto) with an
//! access key id, a secret and a session token, logging at trace while it
//! lists, writes and uploads. (The daemon's side, at trace with inline keys
//! and profiles, is checked by tests/docker/docker_object.rs.)

use crate::common;

use common::s3server::moto;
use common::{BIN, is_mounted, wait_for_within};
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

const KEY_ID: &str = "AKIDTRACELEVELZ9";
const SECRET: &str = "secret-at-trace-Qx7";
const TOKEN: &str = "session-token-at-trace-Wv3";

#[test]
fn a_mount_logging_at_trace_shows_no_key() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let config = moto().new_bucket("tracelog");
    let log_path = base.path().join("mount.log");
    let log = fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .arg("mount")
        .arg(&mnt)
        .args(["--bucket", &config.bucket])
        .args(["--endpoint", config.endpoint.as_deref().unwrap()])
        .arg("--cache-dir")
        .arg(base.path().join("cache"))
        .args(["--log-level", "trace", "--upload", "sync"])
        .env("OSV_ACCESS_KEY_ID", KEY_ID)
        .env("OSV_ACCESS_KEY_SECRET", SECRET)
        .env("OSV_SESSION_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_for_within("the mount", Duration::from_secs(30), || {
        is_mounted(&mnt) && fs::metadata(&mnt).is_ok()
    });
    fs::write(mnt.join("f"), b"uploaded while tracing").unwrap();
    assert_eq!(fs::read_dir(&mnt).unwrap().count(), 1);
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    let text = fs::read_to_string(&log_path).unwrap();
    assert!(
        text.lines().filter(|l| l.contains("TRACE")).count() > 10,
        "it did trace:\n{text}"
    );
    for (what, secret) in [
        ("key id", KEY_ID),
        ("secret", SECRET),
        ("session token", TOKEN),
    ] {
        let leaks: Vec<&str> = text.lines().filter(|l| l.contains(secret)).collect();
        assert!(
            leaks.is_empty(),
            "the {what} is in the trace log:\n{}",
            leaks.join("\n")
        );
    }
}
