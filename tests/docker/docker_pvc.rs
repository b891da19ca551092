//! `type=pvc` (an existing Docker named volume, optionally a directory of
//! it) and `type=nfs` against the real dockerd, with the plugin as a legacy
//! driver. Claims are looked up through the Engine API at Mount.

use crate::common;

use common::docker::{
    Cleanup, SharedPlugin, TEST_DRIVER, dk, docker, docker_ok, image, mounts_of, run_sh, unique,
};
use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

static PLUGIN: OnceLock<SharedPlugin> = OnceLock::new();
fn plugin() -> &'static SharedPlugin {
    SharedPlugin::get(&PLUGIN, TEST_DRIVER)
}

/// A plain local volume with `file` holding `text`; returns its host path.
fn local_volume(clean: &mut Cleanup, tag: &str, text: &str) -> (String, PathBuf) {
    let vol = clean.volume(&unique(tag));
    dk(&format!("volume create {vol}"), &[]);
    let data = PathBuf::from(docker_ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}}",
        &vol,
    ]));
    fs::write(data.join("file"), text).unwrap();
    (vol, data)
}

fn pvc(clean: &mut Cleanup, tag: &str, opts: &str) -> String {
    let vol = clean.volume(&unique(tag));
    dk(
        &format!(
            "volume create -d {} -o type=pvc {opts} {vol}",
            plugin().driver
        ),
        &[],
    );
    vol
}

/// `docker run --rm` expected to fail; returns its stderr.
fn run_fails(args: &str, script: &str) -> String {
    let mut argv: Vec<String> = format!("run --rm {args} {}", image())
        .split_whitespace()
        .map(String::from)
        .collect();
    argv.extend(["sh".into(), "-c".into(), script.into()]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = docker(&argv);
    assert!(!out.status.success(), "docker {argv:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_local_volume_is_claimed_whole_or_by_sub_path() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let mut clean = Cleanup::default();
    let (claim, data) = local_volume(&mut clean, "claim-local", "from the claim\n");
    let whole = pvc(&mut clean, "pvc-whole", &format!("-o claimName={claim}"));
    let out = run_sh(
        &format!("-v {whole}:/w"),
        "cat /w/file; echo via-pvc > /w/new",
    );
    assert_eq!(out, "from the claim");
    assert_eq!(fs::read_to_string(data.join("new")).unwrap(), "via-pvc\n");
    assert_eq!(mounts_of(&whole), 0);

    let sub = pvc(
        &mut clean,
        "pvc-sub",
        &format!("-o claimName={claim} -o subPath=runs/one"),
    );
    let out = run_sh(&format!("-v {sub}:/s"), "ls -A /s; echo in-sub > /s/f");
    assert_eq!(out, "", "a fresh subPath directory is empty");
    assert_eq!(
        fs::read_to_string(data.join("runs/one/f")).unwrap(),
        "in-sub\n"
    );

    let ro = pvc(
        &mut clean,
        "pvc-ro",
        &format!("-o claimName={claim} -o readOnly=true"),
    );
    let out = run_sh(
        &format!("-v {ro}:/r"),
        "cat /r/file; echo x > /r/nope 2>/dev/null && echo WROTE || echo refused",
    );
    assert_eq!(out, "from the claim\nrefused");
    assert!(!data.join("nope").exists());
}

#[test]
fn missing_claims_and_unusable_drivers_are_refused_with_a_sentence() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let mut clean = Cleanup::default();
    let missing = pvc(&mut clean, "pvc-missing", "-o claimName=no-such-claim-here");
    let err = run_fails(&format!("-v {missing}:/m"), "true");
    assert!(
        err.contains("the named volume \"no-such-claim-here\" does not exist"),
        "{err}"
    );

    // A local volume with mount options holds its data only while Docker
    // mounts it: not a directory the plugin could bind.
    let tmpfs = clean.volume(&unique("claim-tmpfs"));
    dk(
        &format!("volume create -o type=tmpfs -o device=tmpfs {tmpfs}"),
        &[],
    );
    let on_tmpfs = pvc(&mut clean, "pvc-tmpfs", &format!("-o claimName={tmpfs}"));
    let err = run_fails(&format!("-v {on_tmpfs}:/t"), "true");
    assert!(err.contains("local volume with mount options"), "{err}");

    // Create refuses what can be refused without Docker.
    let out = docker(&[
        "volume",
        "create",
        "-d",
        &plugin().driver,
        "-o",
        "type=pvc",
        "-o",
        "claimName=Not_A_Label",
        &unique("pvc-bad"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a DNS label"));
    let me = unique("pvc-self");
    let out = docker(&[
        "volume",
        "create",
        "-d",
        &plugin().driver,
        "-o",
        "type=pvc",
        "-o",
        &format!("claimName={me}"),
        &me,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot claim itself"));
}

#[test]
fn a_symlink_inside_the_claim_cannot_lead_out_of_it() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let mut clean = Cleanup::default();
    let (claim, data) = local_volume(&mut clean, "claim-link", "x");
    let outside = plugin().base.join("outside-target");
    fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, data.join("esc")).unwrap();
    std::os::unix::fs::symlink("/etc", data.join("etc")).unwrap();
    for sub in ["esc", "esc/deeper", "etc"] {
        let vol = pvc(
            &mut clean,
            &format!("pvc-esc-{}", sub.replace('/', "-")),
            &format!("-o claimName={claim} -o subPath={sub}"),
        );
        let err = run_fails(&format!("-v {vol}:/e"), "ls /e");
        assert!(
            err.contains("is a symlink or not a directory"),
            "{sub}: {err}"
        );
    }
    assert!(!outside.join("deeper").exists(), "nothing created outside");
}

#[test]
fn a_volume_of_this_plugin_is_claimed_through_the_plugin() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let p = plugin();
    let mut clean = Cleanup::default();
    let (claim, dir) = p.create_host_volume(&mut clean, "claim-own", "");
    fs::write(dir.join("file"), "own volume\n").unwrap();
    let vol = pvc(
        &mut clean,
        "pvc-own",
        &format!("-o claimName={claim} -o subPath=work"),
    );
    let c = clean.container(&unique("pvc-own-c"));
    dk(
        &format!("run -d --name {c} -v {vol}:/o {}", image()),
        &["sh", "-c", "echo through-the-claim > /o/f; sleep 60"],
    );
    common::wait_for("the write through the claim", || {
        dir.join("work/f").exists()
    });
    assert_eq!(
        fs::read_to_string(dir.join("work/f")).unwrap(),
        "through-the-claim\n"
    );
    // The pvc volume holds one mount of its claim while it is mounted.
    assert_eq!(mounts_of(&vol), 1);
    assert_eq!(mounts_of(&claim), 1);
    dk(&format!("rm -f {c}"), &[]);
    assert_eq!(mounts_of(&vol), 0);
    assert_eq!(mounts_of(&claim), 0, "the claim's mount was given back");

    // A pvc volume of this plugin cannot itself be claimed (no chains).
    let chained = pvc(&mut clean, "pvc-chain", &format!("-o claimName={vol}"));
    let err = run_fails(&format!("-v {chained}:/x"), "true");
    assert!(err.contains("is itself a pvc volume"), "{err}");
}

#[test]
fn nfs_without_the_kernel_client_is_refused_at_create() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap();
    let has_client = filesystems
        .lines()
        .any(|l| l.ends_with("\tnfs") || l.ends_with("\tnfs4"))
        || std::path::Path::new("/lib/modules").exists();
    if has_client {
        // The mount itself needs an NFS server; this machine's kernel has
        // no NFS client, so the real mount is not exercised here.
        eprintln!("skipped: this kernel may have an NFS client");
        return;
    }
    let out = docker(&[
        "volume",
        "create",
        "-d",
        &plugin().driver,
        "-o",
        "type=nfs",
        "-o",
        "server=10.0.0.2",
        "-o",
        "path=/exports/team",
        "-o",
        "options=nfsvers=4.1,hard",
        &unique("nfs"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs the kernel's NFS client"), "{err}");
    // Option errors come first and name the option.
    let out = docker(&[
        "volume",
        "create",
        "-d",
        &plugin().driver,
        "-o",
        "type=nfs",
        "-o",
        "server=s",
        "-o",
        "path=/x",
        "-o",
        "options=fsc",
        &unique("nfs-bad"),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NFS option `fsc`"));
}
