//! The managed plugin end to end on the real dockerd: `plugin/build.sh`
//! (rootfs without a base image, `docker plugin create`), a registry on
//! loopback (Debian's docker-registry) for push and install, `docker plugin
//! set`, disable/enable, upgrade, a crash of the API process inside the
//! plugin, and a dockerd restart. Host volumes are checked on the host side,
//! object-storage volumes in the bucket (moto on loopback; the plugin shares
//! the host's network).
//!
//! The tests change one plugin's settings and state, so they take turns.

use crate::common;

use common::docker::{
    Cleanup, dk, docker, docker_fails, docker_ok, image, restart_dockerd, unique,
};
use common::managed_plugin::{
    Registry, build_and_push, install, pids_running, registry, remove_plugins,
};
use common::objectfs_mount::Bucket;
use common::s3server::moto;
use common::wait_for_within;
use objectfs::store::s3::S3Config;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{MutexGuard, OnceLock};
use std::time::Duration;

struct Managed {
    registry: &'static Registry,
    /// This run's directories (the registry's, shared with it).
    base: PathBuf,
    /// The plugin every test uses (installed from the registry by each
    /// test that needs it, removed again when that test ends).
    name: String,
}

static MANAGED: OnceLock<Managed> = OnceLock::new();

/// A test's turn (tests/docker_serial's lock). When it ends, however the
/// test ended, every test plugin is removed with its volumes, so none
/// outlives the test binary (a plugin left installed and enabled would
/// come back at the next dockerd start).
struct Turn(#[allow(dead_code)] MutexGuard<'static, ()>);

fn turn() -> Turn {
    Turn(common::docker::turn())
}

impl Drop for Turn {
    fn drop(&mut self) {
        for problem in remove_plugins(docker) {
            eprintln!("cleaning up the managed plugin: {problem}");
        }
    }
}

impl Managed {
    fn get() -> &'static Managed {
        MANAGED.get_or_init(|| {
            assert!(
                docker(&["info"]).status.success(),
                "these tests need a running dockerd: run scripts/test.sh, which starts one"
            );
            remove_leftover_plugins();
            let registry = registry();
            let base = registry.base.clone();
            for dir in ["state", "credentials", "allowed", "outside"] {
                fs::create_dir_all(base.join(dir)).unwrap();
            }
            for dir in ["state", "credentials"] {
                fs::set_permissions(base.join(dir), fs::Permissions::from_mode(0o700)).unwrap();
            }
            let name = registry.reference("1");
            Managed {
                registry,
                base,
                name,
            }
        })
    }

    fn tag(&self, tag: &str) -> String {
        self.registry.reference(tag)
    }

    fn allowed(&self) -> PathBuf {
        self.base.join("allowed")
    }

    /// The settings every test starts from: state and credentials in this
    /// run's directories, host volumes allowed under `allowed` only.
    fn settings(&self, allowed: &str) -> Vec<String> {
        vec![
            format!("state.source={}", self.base.join("state").display()),
            format!(
                "credentials.source={}",
                self.base.join("credentials").display()
            ),
            format!("OSV_ALLOWED_HOST_PATHS={allowed}"),
        ]
    }

    /// `docker plugin set` of [`Self::settings`] on the disabled plugin `name`.
    fn configure(&self, name: &str, allowed: &str) {
        dk(
            &format!("plugin set {name} {}", self.settings(allowed).join(" ")),
            &[],
        );
    }

    /// The shared plugin, enabled with the default settings; built, pushed
    /// and installed from the registry the first time.
    fn ready(&self) -> &str {
        if docker(&["plugin", "inspect", &self.name]).status.success() {
            if !is_enabled(&self.name) {
                dk(&format!("plugin enable {}", self.name), &[]);
            }
            return &self.name;
        }
        self.registry.pushed("1");
        install(
            docker,
            &self.name,
            None,
            &self.settings(&self.allowed().display().to_string()),
        );
        &self.name
    }

    fn host_dir(&self, tag: &str) -> PathBuf {
        let p = self.allowed().join(tag);
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }
}

/// Disables and removes plugins of earlier runs (they would hold state
/// directories and sockets of runs that are gone).
fn remove_leftover_plugins() {
    let problems = remove_plugins(docker);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn is_enabled(name: &str) -> bool {
    docker_ok(&["plugin", "inspect", "-f", "{{.Enabled}}", name]) == "true"
}

fn run_sh(args: &str, script: &str) -> String {
    dk(
        &format!("run --rm {args} {}", image()),
        &["sh", "-c", script],
    )
}

fn listed(driver: &str) -> Vec<String> {
    docker_ok(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("driver={driver}"),
    ])
    .lines()
    .map(String::from)
    .collect()
}

fn s3_opts(config: &S3Config) -> String {
    format!(
        "-o type=s3 -o bucket={} -o endpoint={} -o accessKeyId=managed-key -o accessKeySecret=managed-secret",
        config.bucket,
        config.endpoint.as_deref().unwrap()
    )
}

#[test]
fn built_pushed_installed_and_used() {
    require!(Root, Dockerd, Moto);
    let _turn = turn();
    let m = Managed::get();
    // Stage 1: build → create → enable → use, without a registry in between.
    let local = m.tag("local");
    build_and_push(&local);
    m.configure(&local, &m.allowed().display().to_string());
    dk(&format!("plugin enable {local}"), &[]);
    let mut clean = Cleanup::default();
    let dir = m.host_dir("created");
    let vol = clean.volume(&unique("created"));
    dk(
        &format!(
            "volume create -d {local} -o type=host -o path={} {vol}",
            dir.display()
        ),
        &[],
    );
    run_sh(&format!("-v {vol}:/data"), "echo from-created > /data/f");
    assert_eq!(fs::read_to_string(dir.join("f")).unwrap(), "from-created\n");
    // Every mount lies under the propagated mount (the host side of
    // /mounts), or Docker could not bind it into containers.
    let c = clean.container(&unique("created-sleeper"));
    dk(
        &format!("run -d --name {c} -v {vol}:/data {}", image()),
        &["sleep", "60"],
    );
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let suffix = format!("/propagated-mount/{vol}");
    assert!(
        mountinfo
            .lines()
            .any(|l| l.split(' ').nth(4).is_some_and(|at| at
                .starts_with("/var/lib/docker/plugins/")
                && at.ends_with(&suffix))),
        "no mount at /var/lib/docker/plugins/ID{suffix} in:\n{mountinfo}"
    );
    dk(&format!("rm -f {c}"), &[]);
    dk(&format!("volume rm {vol}"), &[]);
    dk(&format!("plugin disable {local}"), &[]);
    dk(&format!("plugin rm {local}"), &[]);

    // Stage 2: install from the registry (what `ready` does), then host and
    // s3 volumes side by side in one container.
    let name = m.ready();
    let inspect = docker_ok(&["plugin", "inspect", "-f", "{{.PluginReference}}", name]);
    assert_eq!(inspect, m.name, "installed from the registry");
    let dir = m.host_dir("installed");
    fs::write(dir.join("from-host"), "host data\n").unwrap();
    let host_vol = clean.volume(&unique("inst-host"));
    dk(
        &format!(
            "volume create -d {name} -o type=host -o path={} {host_vol}",
            dir.display()
        ),
        &[],
    );
    let bucket = moto().new_bucket(&unique("managed-inst"));
    let s3_vol = clean.volume(&unique("inst-s3"));
    dk(
        &format!("volume create -d {name} {} {s3_vol}", s3_opts(&bucket)),
        &[],
    );
    let out = run_sh(
        &format!("-v {host_vol}:/h -v {s3_vol}:/s"),
        "cat /h/from-host; echo to-host > /h/written; mkdir -p /s/dir && echo to-bucket > /s/dir/obj; cat /s/dir/obj",
    );
    assert_eq!(out, "host data\nto-bucket");
    assert_eq!(
        fs::read_to_string(dir.join("written")).unwrap(),
        "to-host\n"
    );
    // In the bucket as soon as `docker run` returned.
    let objects = Bucket::new(&bucket);
    assert_eq!(objects.get("dir/obj").as_deref(), Some(&b"to-bucket\n"[..]));
    // An ossfs volume (OpenSandbox's OSS description) on the same bucket,
    // confined to its path.
    let ossfs_vol = clean.volume(&unique("inst-ossfs"));
    dk(
        &format!(
            "volume create -d {name} -o type=ossfs -o bucket={} -o endpoint={} -o accessKeyId=k -o accessKeySecret=s -o path=/agents -o version=1.0 {ossfs_vol}",
            bucket.bucket,
            bucket.endpoint.as_deref().unwrap()
        ),
        &[],
    );
    run_sh(&format!("-v {ossfs_vol}:/o"), "echo via-ossfs > /o/note");
    assert_eq!(
        objects.get("agents/note").as_deref(),
        Some(&b"via-ossfs\n"[..])
    );
    // A pvc claim of a local volume: looked up through the Engine API
    // socket (docker-socket mount), reached through the hostfs mount.
    let claim = clean.volume(&unique("inst-claim"));
    dk(&format!("volume create {claim}"), &[]);
    let claim_data = PathBuf::from(docker_ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Mountpoint}}",
        &claim,
    ]));
    let pvc_vol = clean.volume(&unique("inst-pvc"));
    dk(
        &format!(
            "volume create -d {name} -o type=pvc -o claimName={claim} -o subPath=sandbox {pvc_vol}"
        ),
        &[],
    );
    run_sh(&format!("-v {pvc_vol}:/p"), "echo via-pvc > /p/f");
    assert_eq!(
        fs::read_to_string(claim_data.join("sandbox/f")).unwrap(),
        "via-pvc\n"
    );
    // readOnly holds as in legacy mode: the bind is read-only.
    let ro_vol = clean.volume(&unique("inst-ro"));
    dk(
        &format!(
            "volume create -d {name} -o type=host -o path={} -o readOnly=true {ro_vol}",
            dir.display()
        ),
        &[],
    );
    let out = run_sh(
        &format!("-v {ro_vol}:/h"),
        "cat /h/from-host; echo x > /h/refused 2>/dev/null && echo WROTE || echo refused",
    );
    assert_eq!(out, "host data\nrefused");
    assert!(!dir.join("refused").exists());
    // The plugin's state lives in the host directory of the `state` mount.
    assert!(m.base.join("state/volumes").read_dir().unwrap().count() >= 2);
}

#[test]
fn plugin_set_of_allowed_host_paths_takes_effect() {
    require!(Root, Dockerd);
    let _turn = turn();
    let m = Managed::get();
    let name = m.ready();
    let outside = m.base.join("outside/data");
    fs::create_dir_all(&outside).unwrap();
    let mut clean = Cleanup::default();
    let vol = unique("set-outside");
    let err = docker_fails(&[
        "volume",
        "create",
        "-d",
        name,
        "-o",
        "type=host",
        "-o",
        &format!("path={}", outside.display()),
        &vol,
    ]);
    assert!(err.contains("outside the allowed host paths"), "{err}");

    dk(&format!("plugin disable {name}"), &[]);
    let both = format!(
        "{},{}",
        m.allowed().display(),
        m.base.join("outside").display()
    );
    m.configure(name, &both);
    dk(&format!("plugin enable {name}"), &[]);
    let vol = clean.volume(&vol);
    dk(
        &format!(
            "volume create -d {name} -o type=host -o path={} {vol}",
            outside.display()
        ),
        &[],
    );
    run_sh(&format!("-v {vol}:/data"), "echo allowed-now > /data/f");
    assert_eq!(
        fs::read_to_string(outside.join("f")).unwrap(),
        "allowed-now\n"
    );
    // A path outside every allowed prefix is still refused.
    let err = docker_fails(&[
        "volume",
        "create",
        "-d",
        name,
        "-o",
        "type=host",
        "-o",
        "path=/etc",
        &unique("set-etc"),
    ]);
    assert!(err.contains("outside the allowed host paths"), "{err}");

    dk(&format!("volume rm {vol}"), &[]);
    dk(&format!("plugin disable {name}"), &[]);
    m.configure(name, &m.allowed().display().to_string());
    dk(&format!("plugin enable {name}"), &[]);
}

#[test]
fn disable_enable_and_upgrade_keep_every_volume() {
    require!(Root, Dockerd, Moto);
    let _turn = turn();
    let m = Managed::get();
    let name = m.ready();
    let mut clean = Cleanup::default();
    let dir = m.host_dir("kept");
    fs::write(dir.join("f"), "kept on the host\n").unwrap();
    let host_vol = clean.volume(&unique("kept-host"));
    dk(
        &format!(
            "volume create -d {name} -o type=host -o path={} {host_vol}",
            dir.display()
        ),
        &[],
    );
    let bucket = moto().new_bucket(&unique("managed-kept"));
    let s3_vol = clean.volume(&unique("kept-s3"));
    dk(
        &format!("volume create -d {name} {} {s3_vol}", s3_opts(&bucket)),
        &[],
    );
    run_sh(&format!("-v {s3_vol}:/s"), "echo kept in the bucket > /s/f");
    let check = |when: &str| {
        let vols = listed(name);
        for v in [&host_vol, &s3_vol] {
            assert!(vols.contains(v), "{v} not listed {when}: {vols:?}");
        }
        let out = run_sh(&format!("-v {host_vol}:/h -v {s3_vol}:/s"), "cat /h/f /s/f");
        assert_eq!(out, "kept on the host\nkept in the bucket", "{when}");
    };

    dk(&format!("plugin disable -f {name}"), &[]);
    dk(&format!("plugin enable {name}"), &[]);
    check("after disable -f and enable");

    // Upgrade in place to a new tag: same plugin name, new reference.
    let next = m.tag("2");
    build_and_push(&next);
    dk(&format!("plugin rm {next}"), &[]); // only the registry copy is needed
    let layer = |n: &str| docker_ok(&["plugin", "inspect", "-f", "{{.Config.Rootfs.DiffIds}}", n]);
    let before = layer(name);
    // Volumes hold the plugin: Docker wants -f to disable it.
    dk(&format!("plugin disable -f {name}"), &[]);
    dk(
        // The CLI asks "Plugin images do not match, are you sure?" for any
        // other reference and, with no terminal, takes it as a no.
        &format!("plugin upgrade --skip-remote-check --grant-all-permissions {name} {next}"),
        &[],
    );
    // Docker 20.10 starts an upgraded plugin with the new config.json's
    // mount sources, whatever `plugin set` said before (env settings stay):
    // the sources are set again, as the README tells operators to.
    m.configure(name, &m.allowed().display().to_string());
    dk(&format!("plugin enable {name}"), &[]);
    // Docker 20.10 keeps the old PluginReference; the rootfs layer shows
    // the upgrade (plugin/build.sh stamps each build into it).
    assert_ne!(layer(name), before, "the upgrade replaced the rootfs");
    check("after upgrade");
}

#[test]
fn a_crash_of_the_api_process_keeps_mounts_alive() {
    require!(Root, Dockerd, Moto);
    let _turn = turn();
    let m = Managed::get();
    let name = m.ready();
    let mut clean = Cleanup::default();
    let bucket = moto().new_bucket(&unique("managed-crash"));
    let vol = clean.volume(&unique("crash-s3"));
    dk(
        &format!("volume create -d {name} {} {vol}", s3_opts(&bucket)),
        &[],
    );
    let c = clean.container(&unique("crash-writer"));
    dk(
        &format!("run -d --name {c} -v {vol}:/data {}", image()),
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line$i >> /data/log; sleep 0.02; done; echo done > /data/finished; sleep 600",
        ],
    );
    let lines = || {
        docker_ok(&["exec", &c, "sh", "-c", "cat /data/log 2>/dev/null | wc -l"])
            .parse::<u32>()
            .unwrap()
    };
    wait_for_within("the first lines", Duration::from_secs(30), || lines() > 10);

    const SERVE: &[&str] = &["/opensandbox-volume", "serve"];
    let mount_argv = ["/opensandbox-volume", "mount", &format!("/mounts/{vol}")];
    let serve = pids_running(SERVE, false);
    assert_eq!(
        serve.len(),
        1,
        "one API process inside the plugin: {serve:?}"
    );
    let mount = pids_running(&mount_argv, true);
    assert_eq!(mount.len(), 1, "one mount process for {vol}: {mount:?}");
    // SAFETY: plain kill(2) of the plugin's API process.
    unsafe { libc::kill(serve[0], libc::SIGKILL) };

    // The supervisor starts a new API process; the mount never noticed.
    wait_for_within("a new API process", Duration::from_secs(20), || {
        let now = pids_running(SERVE, false);
        now.len() == 1 && now != serve
    });
    let before = lines();
    wait_for_within("writes after the crash", Duration::from_secs(30), || {
        lines() > before + 5
    });
    let status = docker_ok(&[
        "volume",
        "inspect",
        "-f",
        "{{.Status.mounts}} {{.Status.mount}}",
        &vol,
    ]);
    assert_eq!(status, "1 mounted", "the new API process adopted the mount");
    assert_eq!(
        pids_running(&mount_argv, true),
        mount,
        "the same mount process"
    );
    wait_for_within("the writer to finish", Duration::from_secs(60), || {
        docker(&["exec", &c, "test", "-f", "/data/finished"])
            .status
            .success()
    });
    dk(&format!("rm -f {c}"), &[]);
    // The last Unmount went through the new API process: everything is in
    // the bucket, in order.
    let log =
        String::from_utf8(Bucket::new(&bucket).get("log").expect("log in the bucket")).unwrap();
    let want: String = (1..=300).map(|i| format!("line{i}\n")).collect();
    assert_eq!(log, want);
}

#[test]
fn dockerd_restart_keeps_the_managed_plugins_volumes() {
    require!(Root, Dockerd, Moto);
    if std::env::var_os("OSV_DOCKERD_STARTED_BY_TESTS").is_none() {
        // Restarting a dockerd the tests did not start (a developer's own)
        // is not ours to do; scripts/test.sh always starts its own.
        common::requirements::note_skip(
            "dockerd_restart_keeps_the_managed_plugins_volumes",
            "dockerd was not started by scripts/test.sh",
        );
        return;
    }
    let _turn = turn();
    let m = Managed::get();
    let name = m.ready();
    let mut clean = Cleanup::default();
    let dir = m.host_dir("restart");
    fs::write(dir.join("f"), "across the restart\n").unwrap();
    let host_vol = clean.volume(&unique("restart-host"));
    dk(
        &format!(
            "volume create -d {name} -o type=host -o path={} {host_vol}",
            dir.display()
        ),
        &[],
    );
    let bucket = moto().new_bucket(&unique("managed-restart"));
    let s3_vol = clean.volume(&unique("restart-s3"));
    dk(
        &format!("volume create -d {name} {} {s3_vol}", s3_opts(&bucket)),
        &[],
    );
    run_sh(&format!("-v {s3_vol}:/s"), "echo before the restart > /s/f");

    restart_dockerd();

    assert!(
        is_enabled(name),
        "the plugin is enabled again after the restart"
    );
    let vols = listed(name);
    for v in [&host_vol, &s3_vol] {
        assert!(vols.contains(v), "{v} not restored: {vols:?}");
    }
    let out = run_sh(&format!("-v {host_vol}:/h -v {s3_vol}:/s"), "cat /h/f /s/f");
    assert_eq!(out, "across the restart\nbefore the restart");
}
