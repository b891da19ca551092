//! End to end against the real dockerd: the plugin binary runs as a legacy
//! driver (`osvtest`, socket in /run/docker/plugins) and every step is a
//! plain docker command, as an operator or the sandbox server would type it.

use crate::common;

use common::docker::{
    Cleanup, SharedPlugin, TEST_DRIVER, dk, docker_fails, docker_words, inspect_volume, mounts_of,
    read, run_detached, run_sh, unique,
};
use std::fs;
use std::os::unix::fs::symlink;
use std::sync::OnceLock;

static PLUGIN: OnceLock<SharedPlugin> = OnceLock::new();
fn plugin() -> &'static SharedPlugin {
    SharedPlugin::get(&PLUGIN, TEST_DRIVER)
}

#[test]
fn volume_create_ls_inspect_rm() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let p = plugin();
    let mut clean = Cleanup::default();
    let (vol, dir) = p.create_host_volume(&mut clean, "cli", "");
    fs::write(dir.join("keep"), "precious").unwrap();

    let listed = dk(&format!("volume ls -q --filter driver={}", p.driver), &[]);
    assert!(listed.lines().any(|l| l == vol), "{listed}");

    let v = inspect_volume(&vol);
    assert_eq!(v["Driver"], p.driver.as_str());
    assert_eq!(v["Status"]["type"], "host");
    assert_eq!(v["Status"]["path"], dir.display().to_string());
    assert_eq!(v["Status"]["mounts"], 0);
    assert!(
        v["CreatedAt"].as_str().is_some_and(|s| !s.is_empty()),
        "{v}"
    );

    dk(&format!("volume rm {vol}"), &[]);
    let err = docker_fails(&["volume", "inspect", &vol]);
    assert!(err.to_lowercase().contains("no such volume"), "{err}");
    assert_eq!(
        read(&dir.join("keep")),
        "precious",
        "rm never deletes host data"
    );
}

#[test]
fn run_with_v_and_with_mount_volume_opts() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let p = plugin();
    let mut clean = Cleanup::default();

    // -v with a volume created ahead of time.
    let (vol, dir) = p.create_host_volume(&mut clean, "runv", "");
    run_sh(&format!("-v {vol}:/data"), "echo from-v > /data/v.txt");
    assert_eq!(read(&dir.join("v.txt")), "from-v\n");
    assert_eq!(mounts_of(&vol), 0, "unmounted after the container exited");

    // --mount with volume-opt: the volume is created on first use.
    let auto = clean.volume(&unique("runmount"));
    let mount = format!(
        "--mount type=volume,src={auto},dst=/work,volume-driver={},volume-opt=type=host,volume-opt=path={},volume-opt=subPath=sub",
        p.driver,
        dir.display()
    );
    run_sh(&mount, "echo from-mount > /work/m.txt");
    assert_eq!(read(&dir.join("sub/m.txt")), "from-mount\n");
    let v = inspect_volume(&auto);
    assert_eq!(v["Driver"], p.driver.as_str());
    assert_eq!(v["Status"]["subPath"], "sub");
    assert_eq!(v["Status"]["mounts"], 0);
    assert!(
        !common::is_mounted(&p.plugin().mount_root.join(&auto)),
        "no mount left behind"
    );
}

#[test]
fn two_containers_share_a_volume_with_correct_refcounts() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let p = plugin();
    let mut clean = Cleanup::default();
    let (vol, dir) = p.create_host_volume(&mut clean, "share", "");
    let a = clean.container(&unique("share-a"));
    let b = clean.container(&unique("share-b"));
    run_detached(&a, &format!("-v {vol}:/data"), "sleep 300");
    run_detached(&b, &format!("-v {vol}:/data"), "sleep 300");
    assert_eq!(mounts_of(&vol), 2);

    dk(
        &format!("exec {a} sh -c"),
        &["echo hello-from-a > /data/shared"],
    );
    assert_eq!(
        dk(&format!("exec {b} cat /data/shared"), &[]),
        "hello-from-a"
    );

    let err = docker_fails(&["volume", "rm", &vol]);
    assert!(err.contains("in use"), "{err}");

    dk(&format!("rm -f {a}"), &[]);
    assert_eq!(mounts_of(&vol), 1);
    // The remaining container still sees and writes the volume.
    dk(&format!("exec {b} sh -c"), &["echo still > /data/after"]);
    assert_eq!(read(&dir.join("after")), "still\n");
    dk(&format!("rm -f {b}"), &[]);
    assert_eq!(mounts_of(&vol), 0);
    dk(&format!("volume rm {vol}"), &[]);
}

#[test]
fn read_only_volume_refuses_writes_from_a_read_write_container_mount() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let p = plugin();
    let mut clean = Cleanup::default();
    let (vol, dir) = p.create_host_volume(&mut clean, "ro", "-o readOnly=true");
    fs::write(dir.join("in"), "readable").unwrap();
    // The container asks for a read-write mount; the plugin's own mount is
    // read-only, so the write still fails with EROFS.
    let out = docker_words(
        &format!("run --rm -v {vol}:/data:rw {}", common::docker::image()),
        &["sh", "-c", "cat /data/in && echo x > /data/out"],
    );
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("readable"), "{stdout}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert!(!dir.join("out").exists());
}

#[test]
fn sub_paths_isolate_two_volumes_on_one_host_path() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let p = plugin();
    let mut clean = Cleanup::default();
    let (v1, dir) = p.create_host_volume(&mut clean, "iso1", "-o subPath=one");
    // A second volume on the same host directory, another subPath.
    let v2 = clean.volume(&unique("iso2"));
    let opts = format!("-o type=host -o path={} -o subPath=two", dir.display());
    dk(&format!("volume create -d {} {opts} {v2}", p.driver), &[]);

    run_sh(&format!("-v {v1}:/data"), "echo 1 > /data/mine");
    let listing = run_sh(
        &format!("-v {v2}:/data"),
        "echo 2 > /data/mine; ls -a /data",
    );
    assert_eq!(
        listing.split_whitespace().collect::<Vec<_>>(),
        [".", "..", "mine"]
    );
    assert_eq!(read(&dir.join("one/mine")), "1\n");
    assert_eq!(read(&dir.join("two/mine")), "2\n");
}

#[test]
fn allow_list_escapes_are_refused_with_our_sentence() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let p = plugin();
    // No Cleanup here: these volumes must never exist, and removing a name
    // that no driver knows makes dockerd ask every driver it ever saw,
    // waiting ~15 s on each dead one.
    let outside = p.base.join("outside");
    fs::create_dir_all(&outside).unwrap();
    let link = p.allowed.join("escape-link");
    let _ = fs::remove_file(&link);
    symlink(&outside, &link).unwrap();
    let sibling = format!("{}-sibling", p.allowed.display());
    fs::create_dir_all(&sibling).unwrap();

    let cases = [
        (
            format!("path={}", outside.display()),
            "outside the allowed host paths",
        ),
        (format!("path={sibling}"), "outside the allowed host paths"),
        (
            format!("path={}", link.display()),
            "outside the allowed host paths",
        ),
        (
            format!("path={}/../outside", p.allowed.display()),
            "normalised",
        ),
    ];
    for (i, (opt, expected)) in cases.iter().enumerate() {
        let vol = unique(&format!("esc{i}"));
        let err = docker_fails(&[
            "volume",
            "create",
            "-d",
            &p.driver,
            "-o",
            "type=host",
            "-o",
            opt,
            &vol,
        ]);
        assert!(err.contains(expected), "{opt}: {err}");
    }
    // The same refusal reaches `docker run --mount` users.
    let vol = unique("escrun");
    let mount = format!(
        "type=volume,src={vol},dst=/x,volume-driver={},volume-opt=type=host,volume-opt=path={},volume-opt=subPath=../up",
        p.driver,
        p.allowed.display()
    );
    let image = common::docker::image();
    let err = docker_fails(&["run", "--rm", "--mount", &mount, &image, "true"]);
    assert!(err.contains("option `subPath`"), "{err}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    let listed = dk(&format!("volume ls -q --filter driver={}", p.driver), &[]);
    assert!(
        !listed.contains("esc"),
        "a refused volume was recorded: {listed}"
    );
}

#[test]
fn docker_cp_out_of_a_running_container() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let p = plugin();
    let mut clean = Cleanup::default();
    let (vol, dir) = p.create_host_volume(&mut clean, "cp", "");
    let c = clean.container(&unique("cp"));
    run_detached(
        &c,
        &format!("-v {vol}:/data"),
        "echo copied > /data/f; sleep 300",
    );
    common::wait_for("the container's file", || dir.join("f").exists());

    let out_dir = tempfile::tempdir().unwrap();
    let dest = out_dir.path().join("f");
    dk(&format!("cp {c}:/data/f {}", dest.display()), &[]);
    assert_eq!(read(&dest), "copied\n");
    // docker cp mounted and unmounted the container's own mount ID: the
    // running container must still hold its mount.
    assert_eq!(mounts_of(&vol), 1);
    dk(&format!("exec {c} sh -c"), &["echo after-cp > /data/g"]);
    assert_eq!(read(&dir.join("g")), "after-cp\n");
    dk(&format!("rm -f {c}"), &[]);
    assert_eq!(mounts_of(&vol), 0);
}
