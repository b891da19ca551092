//! What the plugin daemon does at start with the files of object volumes
//! that are no longer registered (issue 17): those of a volume removed by
//! an earlier version, or whose clean-up a crash interrupted, are deleted;
//! those holding data not yet in the bucket are kept, and the log says so;
//! a registered volume's files are never touched.

use crate::common;

use common::Plugin;
use common::http::{call, err_of};
use serde_json::json;
use std::fs;
use std::path::Path;

/// A cache directory as a mount process leaves it (lock, pid and status
/// files, one staged data file), and its log with a rotated elder.
fn leave_volume_files(state: &Path, stem: &str) {
    let cache = state.join("cache").join(stem);
    fs::create_dir_all(cache.join("staging")).unwrap();
    fs::create_dir_all(cache.join("ops")).unwrap();
    fs::write(cache.join("lock"), "").unwrap();
    fs::write(cache.join("mount.pid"), "999999999").unwrap();
    fs::write(
        cache.join("status.json"),
        r#"{"pid":999999999,"state":"stopped","pendingBytes":0}"#,
    )
    .unwrap();
    fs::write(cache.join("staging/1.data"), "a clean copy, no journal").unwrap();
    fs::create_dir_all(state.join("logs")).unwrap();
    fs::write(
        state.join("logs").join(format!("{stem}.log")),
        "INFO mounted\n",
    )
    .unwrap();
    fs::write(
        state.join("logs").join(format!("{stem}.log.1")),
        "INFO older\n",
    )
    .unwrap();
}

#[test]
fn a_daemon_start_removes_leftovers_of_removed_volumes_but_not_unuploaded_data() {
    let base = tempfile::tempdir().unwrap();
    let socket = base.path().join("s.sock");
    let mut plugin = Plugin::start(&socket, base.path(), &[]);
    let create = call(
        &socket,
        "VolumeDriver.Create",
        &json!({"Name": "still-here", "Opts": {"type": "s3", "bucket": "bucket", "endpoint": "http://127.0.0.1:9"}})
            .to_string(),
    );
    assert_eq!(err_of(&create), "");
    plugin.terminate();
    let state = plugin.state_dir.clone();
    leave_volume_files(&state, "still-here");
    leave_volume_files(&state, "removed-long-ago");
    // Removed with a file and a namespace change not in the bucket (a
    // journal in a sidecar file, as where xattrs are missing).
    leave_volume_files(&state, "removed-with-data");
    let pending = state.join("cache/removed-with-data");
    fs::write(pending.join("staging/2.data"), "not uploaded").unwrap();
    fs::write(
        pending.join("staging/2.json"),
        r#"{"key":"k","perm":420,"uid":0,"gid":0,"mtime":0}"#,
    )
    .unwrap();
    fs::write(
        pending.join("ops/00000000000000000001.json"),
        r#"{"delete":{"key":"gone"}}"#,
    )
    .unwrap();

    plugin.start_again();
    // The socket listens before the registry is loaded and the sweep done;
    // a call is answered only after both. The registered volume is still
    // served.
    let get = call(
        &socket,
        "VolumeDriver.Get",
        &json!({"Name": "still-here"}).to_string(),
    );
    assert_eq!(err_of(&get), "");
    let log = plugin.log_text();
    assert!(!state.join("cache/removed-long-ago").exists(), "{log}");
    assert!(!state.join("logs/removed-long-ago.log").exists());
    assert!(!state.join("logs/removed-long-ago.log.1").exists());
    for kept in ["still-here", "removed-with-data"] {
        assert!(
            state
                .join("cache")
                .join(kept)
                .join("staging/1.data")
                .exists(),
            "{kept}"
        );
        assert!(
            state.join("logs").join(format!("{kept}.log.1")).exists(),
            "{kept}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("data not yet in the bucket is kept")
                && l.contains("volume=removed-with-data")
                && l.contains("files=1")
                && l.contains("bytes=12")
                && l.contains("changes=1")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("cache directory and log files removed")
                && l.contains("volume=removed-long-ago")),
        "{log}"
    );
}
