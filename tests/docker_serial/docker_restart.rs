//! Restarts against the real dockerd: the plugin killed with SIGKILL while a
//! container uses its volume, and dockerd restarted with the plugin's
//! volumes registered. These tests disturb the daemon, so they live in
//! tests/docker_serial (cargo runs test binaries one after another) and take
//! its lock so they never overlap another test there.

use crate::common;

use common::docker::{
    Cleanup, SharedPlugin, TEST_DRIVER, dk, inspect_volume, mounts_of, restart_dockerd,
    run_detached, run_sh, start_dockerd, stop_dockerd, unique, wait_for_dockerd,
};
use common::wait_for;
use std::fs;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

static PLUGIN: OnceLock<SharedPlugin> = OnceLock::new();
static SERIAL: &Mutex<()> = &common::docker::TURN;

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
    require!(Root, Dockerd);
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

#[test]
fn dockerd_restart_keeps_every_volume() {
    require!(Root, Dockerd);
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

#[test]
fn plugin_coming_back_while_dockerd_restores_keeps_every_volume() {
    require!(Root, Dockerd);
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let p = plugin();
    let mut clean = Cleanup::default();
    let (a, a_dir) = p.create_host_volume(&mut clean, "rra", "");
    let (b, _) = p.create_host_volume(&mut clean, "rrb", "");
    fs::write(a_dir.join("f"), "restored").unwrap();

    // dockerd goes down, and so does the plugin; dockerd starts its restore
    // (a Get per volume) with the plugin still gone, and the plugin comes
    // back in the middle of it.
    let argv = stop_dockerd();
    p.plugin().kill();
    start_dockerd(&argv);
    std::thread::sleep(std::time::Duration::from_millis(500));
    p.plugin().start_again();
    wait_for_dockerd();

    let listed = listed_volumes(p);
    for v in [&a, &b] {
        assert!(
            listed.lines().any(|l| l == v),
            "{v} missing after the restore:\n{listed}"
        );
    }
    assert_eq!(run_sh(&format!("-v {a}:/data"), "cat /data/f"), "restored");
    assert_eq!(mounts_of(&a), 0);
    dk(&format!("volume rm {a} {b}"), &[]);
}
