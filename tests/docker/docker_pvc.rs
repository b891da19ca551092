//! `type=pvc` (a Docker named volume, optionally a directory of it) and
//! `type=nfs` against the real dockerd, with the plugin as a legacy driver.
//! Claims are looked up through the Engine API at Mount, created there when
//! missing (`createIfNotExists`), and removed with the last pvc volume that
//! names them when they asked for it and the plugin created the claim
//! (`deleteOnSandboxTermination`).

use crate::common;

use common::docker::{
    Cleanup, SharedPlugin, TEST_DRIVER, dk, docker, docker_ok, image, inspect_volume, mounts_of,
    run_sh, unique,
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
    let missing = pvc(
        &mut clean,
        "pvc-missing",
        "-o claimName=no-such-claim-here -o createIfNotExists=false",
    );
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
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a claim name"));
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

/// Whether dockerd knows a volume of this name.
fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).status.success()
}

/// Removes a claim the test expects the plugin to remove, should the test
/// fail before it does (on success it is gone, and asking dockerd about an
/// unknown name is slow).
struct ClaimGuard(String);

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = docker(&["volume", "rm", "-f", &self.0]);
        }
    }
}

#[test]
fn a_missing_claim_is_created_and_goes_with_the_last_volume_that_asked() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let mut clean = Cleanup::default();
    let claim = unique("osv-auto-claim");
    let _guard = ClaimGuard(claim.clone());
    assert!(!volume_exists(&claim));
    // Two pvc volumes on the claim: one asks for its removal, one does not.
    // A non-normal subPath is normalised, not refused.
    let asks = pvc(
        &mut clean,
        "pvc-auto-asks",
        &format!("-o claimName={claim} -o deleteOnSandboxTermination=true -o subPath=runs/./a//b"),
    );
    let keeps = pvc(
        &mut clean,
        "pvc-auto-keeps",
        &format!("-o claimName={claim} -o subPath=other"),
    );
    let status = &inspect_volume(&asks)["Status"];
    assert_eq!(status["subPath"], "runs/a/b");
    assert_eq!(status["createIfNotExists"], true);
    assert_eq!(status["deleteOnSandboxTermination"], true);
    assert_eq!(
        inspect_volume(&keeps)["Status"]["deleteOnSandboxTermination"],
        false
    );

    // The first Mount creates the claim: a local volume with the label.
    run_sh(&format!("-v {asks}:/w"), "echo created > /w/f");
    let created = inspect_volume(&claim);
    assert_eq!(created["Driver"], "local");
    assert_eq!(
        created["Labels"]["opensandbox.io/volume-managed-by"], "opensandbox-volume",
        "{created}"
    );
    let data = PathBuf::from(created["Mountpoint"].as_str().unwrap());
    assert_eq!(
        fs::read_to_string(data.join("runs/a/b/f")).unwrap(),
        "created\n"
    );
    // The other volume sees the same claim (no second one is made).
    run_sh(&format!("-v {keeps}:/o"), "echo other > /o/g");
    assert_eq!(fs::read_to_string(data.join("other/g")).unwrap(), "other\n");

    // Removing the volume that asked keeps the claim: another names it.
    dk(&format!("volume rm {asks}"), &[]);
    assert!(
        volume_exists(&claim),
        "removed while another volume uses it"
    );
    // A second volume that asks, then the one that does not goes: kept.
    let asks_too = pvc(
        &mut clean,
        "pvc-auto-asks-too",
        &format!("-o claimName={claim} -o deleteOnSandboxTermination=true"),
    );
    dk(&format!("volume rm {keeps}"), &[]);
    assert!(
        volume_exists(&claim),
        "removed by a volume that did not ask"
    );
    // The last one, which asks, takes the claim and its data with it.
    assert_eq!(
        run_sh(&format!("-v {asks_too}:/t"), "cat /t/runs/a/b/f"),
        "created"
    );
    dk(&format!("volume rm {asks_too}"), &[]);
    assert!(
        !volume_exists(&claim),
        "the claim outlived the last volume that asked"
    );
    assert!(!data.exists(), "its data went with it");
}

#[test]
fn a_claim_the_plugin_did_not_create_is_never_removed() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let mut clean = Cleanup::default();
    // Made by a user, and as the OpenSandbox server labels its own.
    let (plain, plain_data) = local_volume(&mut clean, "claim-foreign", "mine\n");
    let by_server = clean.volume(&unique("claim-by-server"));
    dk(
        &format!("volume create --label opensandbox.io/volume-managed-by=server {by_server}"),
        &[],
    );
    for claim in [&plain, &by_server] {
        let vol = pvc(
            &mut clean,
            &format!("pvc-on-{claim}"),
            &format!("-o claimName={claim} -o deleteOnSandboxTermination=true"),
        );
        run_sh(&format!("-v {vol}:/c"), "echo x > /c/written");
        dk(&format!("volume rm {vol}"), &[]);
        assert!(volume_exists(claim), "{claim} was removed");
    }
    assert_eq!(
        fs::read_to_string(plain_data.join("file")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        fs::read_to_string(plain_data.join("written")).unwrap(),
        "x\n"
    );
    // The plugin's log says why it kept them.
    let log = fs::read_to_string(&plugin().plugin().log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("claim kept: the plugin did not create it")
                && l.contains(&by_server)),
        "no log line for {by_server}"
    );
}

#[test]
fn a_claim_name_of_253_characters_is_created_and_used() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let mut clean = Cleanup::default();
    let head = unique("osv-long");
    let claim = format!("{head}-{}", "x".repeat(253 - head.len() - 1));
    assert_eq!(claim.len(), 253);
    let _guard = ClaimGuard(claim.clone());
    let vol = pvc(
        &mut clean,
        "pvc-long",
        &format!(
            "-o claimName={claim} -o deleteOnSandboxTermination=true -o subPath=./deep//dir/."
        ),
    );
    assert_eq!(inspect_volume(&vol)["Status"]["claimName"], claim.as_str());
    run_sh(&format!("-v {vol}:/l"), "echo long > /l/f");
    let data = PathBuf::from(
        inspect_volume(&claim)["Mountpoint"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    assert_eq!(
        fs::read_to_string(data.join("deep/dir/f")).unwrap(),
        "long\n"
    );
    dk(&format!("volume rm {vol}"), &[]);
    assert!(!volume_exists(&claim));
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
