//! A copy of the FUSE mount in another mount namespace (a container or a
//! plugin that rbinds the host's `/`) keeps the kernel's FUSE session
//! alive after our unmount. Stopping must still upload everything and exit,
//! not wait for that copy forever.

use crate::common;

use common::objectfs_mount::{Bucket, Mounted};
use common::s3server::moto;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn stopping_uploads_and_exits_while_another_namespace_holds_a_copy() {
    require!(Root, Fuse, Moto);
    let base = tempfile::tempdir().unwrap();
    let config = moto().new_bucket("copies");
    let mut m = Mounted::start(base.path(), &config, "", &["--upload", "async"]);
    fs::write(m.path("kept.txt"), b"uploaded despite the copy\n").unwrap();

    // A process in its own mount namespace, with a private copy of every
    // mount, our FUSE mount included.
    let mut holder = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sleep", "120"])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare (util-linux)");
    std::thread::sleep(Duration::from_millis(300));

    let start = Instant::now();
    m.stop(); // SIGTERM, then waits for the process to exit successfully
    let took = start.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();

    assert!(took < Duration::from_secs(30), "stop took {took:?}");
    assert_eq!(
        Bucket::new(&config).get("kept.txt").as_deref(),
        Some(&b"uploaded despite the copy\n"[..])
    );
}
