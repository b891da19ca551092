//! Restarts against the real dockerd: the plugin killed with SIGKILL while a
//! container uses its volume, and dockerd restarted with the plugin's
//! volumes registered. These tests disturb the daemon, so they live in their
//! own test binary (cargo runs test binaries one after another) and take a
//! lock so they never overlap each other.

mod common;

use common::docker::{
    Cleanup, SharedPlugin, TEST_DRIVER, dk, docker, inspect_volume, mounts_of, run_detached,
    run_sh, unique,
};
use common::{wait_for, wait_for_within};
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

static PLUGIN: OnceLock<SharedPlugin> = OnceLock::new();
static SERIAL: Mutex<()> = Mutex::new(());

fn plugin() -> &'static SharedPlugin {
    SharedPlugin::get(&PLUGIN, TEST_DRIVER)
}

fn line_count(path: &Path) -> usize {
    fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn listed_volumes(p: &SharedPlugin) -> String {
    dk(&format!("volume ls -q --filter driver={}", p.driver), &[])
}

#[test]
fn plugin_sigkill_while_a_container_writes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = plugin();
    let mut clean = Cleanup::default();
    let (busy, busy_dir) = p.create_host_volume(&mut clean, "busy", "");
    let (idle, idle_dir) = p.create_host_volume(&mut clean, "idle", "");
    fs::write(idle_dir.join("kept"), "idle data").unwrap();

    let c = clean.container(&unique("writer"));
    run_detached(
        &c,
        &format!("-v {busy}:/data"),
        "while true; do echo tick >> /data/log; sleep 0.05; done",
    );
    let log = busy_dir.join("log");
    wait_for("the container's first writes", || line_count(&log) > 3);

    p.plugin().restart(); // SIGKILL, then a fresh process on the same state

    // The container never noticed: its writes go on.
    let before = line_count(&log);
    wait_for("writes after the plugin restart", || {
        line_count(&log) > before + 5
    });
    let listed = listed_volumes(p);
    for v in [&busy, &idle] {
        assert!(
            listed.lines().any(|l| l == v),
            "{v} missing from:\n{listed}"
        );
    }
    assert_eq!(mounts_of(&busy), 1, "the adopted refcount");
    assert_eq!(inspect_volume(&idle)["Status"]["type"], "host");

    // New containers mount both volumes through the restarted plugin.
    let out = run_sh(
        &format!("-v {busy}:/b -v {idle}:/i"),
        "cat /i/kept; echo; test -s /b/log && echo busy-ok",
    );
    assert_eq!(out, "idle data\nbusy-ok");
    assert_eq!(mounts_of(&busy), 1);

    dk(&format!("rm -f {c}"), &[]);
    assert_eq!(mounts_of(&busy), 0);
    assert!(!common::is_mounted(&p.plugin().mount_root.join(&busy)));
}

/// The running dockerd's pid and argv, read from /proc.
fn running_dockerd() -> (i32, Vec<String>) {
    let out = Command::new("pidof").arg("dockerd").output().unwrap();
    let pids: Vec<i32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    assert_eq!(
        pids.len(),
        1,
        "expected exactly one dockerd, found {pids:?}"
    );
    let raw = fs::read(format!("/proc/{}/cmdline", pids[0])).unwrap();
    let argv = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    (pids[0], argv)
}

fn is_gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie has exited; only its parent's reaping is pending.
        Ok(stat) => stat
            .rsplit(") ")
            .next()
            .is_some_and(|rest| rest.starts_with('Z')),
    }
}

/// Stops dockerd with SIGTERM and starts it again with the same argv,
/// detached from the test process (it must outlive it).
fn restart_dockerd() {
    if Path::new("/run/systemd/system").exists()
        && Command::new("systemctl")
            .args(["is-active", "--quiet", "docker"])
            .status()
            .is_ok_and(|s| s.success())
    {
        assert!(
            Command::new("systemctl")
                .args(["restart", "docker"])
                .status()
                .unwrap()
                .success()
        );
    } else {
        let (pid, argv) = running_dockerd();
        // SAFETY: plain kill(2).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_for_within("dockerd to stop", Duration::from_secs(60), || is_gone(pid));
        let log_path = std::env::var("OSV_DOCKERD_LOG")
            .unwrap_or_else(|_| "/tmp/osv-dockerd-restarted.log".into());
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .unwrap();
        // `setsid --fork` detaches dockerd into its own session and returns
        // at once, so it is not our child and outlives the test process.
        let status = Command::new("setsid")
            .arg("--fork")
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .expect("starting dockerd again");
        assert!(status.success(), "setsid dockerd: {status}");
    }
    wait_for_within("dockerd to answer", Duration::from_secs(60), || {
        docker(&["info"]).status.success()
    });
}

#[test]
fn dockerd_restart_keeps_every_volume() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = plugin();
    let mut clean = Cleanup::default();
    let (a, a_dir) = p.create_host_volume(&mut clean, "dra", "");
    let (b, _) = p.create_host_volume(&mut clean, "drb", "");
    fs::write(a_dir.join("f"), "survives").unwrap();
    // One volume is in use by a running container when dockerd goes down.
    let c = clean.container(&unique("dr-running"));
    run_detached(&c, &format!("-v {b}:/data"), "sleep 300");
    assert_eq!(mounts_of(&b), 1);

    restart_dockerd();

    // dockerd restored its volumes by calling Get; none was dropped.
    let listed = listed_volumes(p);
    for v in [&a, &b] {
        assert!(
            listed.lines().any(|l| l == v),
            "{v} missing after restart:\n{listed}"
        );
    }
    let log = p.plugin().log_text();
    assert!(
        log.matches(&format!("call=Get volume={a}")).count() >= 2,
        "dockerd asked the plugin for {a} at restore"
    );
    assert_eq!(run_sh(&format!("-v {a}:/data"), "cat /data/f"), "survives");
    assert_eq!(mounts_of(&a), 0);

    // The container that ran across the restart is stopped now; once it is
    // removed its volume must be free again.
    dk(&format!("rm -f {c}"), &[]);
    wait_for("the dead container's volume to be released", || {
        mounts_of(&b) == 0
    });
    dk(&format!("volume rm {a} {b}"), &[]);
}
