//! The managed plugin installed with the reduced profiles of
//! docs/SECURITY.md, end to end on the real dockerd, both without the
//! Engine API (`docker-socket.source=/dev/null`):
//! - narrowed: `hostfs` pointed at a temporary directory D (with
//!   `OSV_HOST_ROOT_PATH=D`), host volumes allowed under D/allowed only. A
//!   host volume under D/allowed written by a container shows on the host,
//!   `/etc` and a symlink out of D are refused, a pvc claim of a Docker
//!   local volume is refused at `docker run`, a pvc claim of the plugin's
//!   own host volume and an s3 volume (moto) work;
//! - object storage only: `hostfs` pointed at an empty directory, no host
//!   paths allowed, and Prometheus metrics on (`OSV_METRICS_ADDR`). An s3
//!   volume works, a host volume is refused; while a container uses the
//!   s3 volume, `opensandbox-volume status` run on the host against the
//!   plugin's state directory and a scrape of the plugin's metrics address
//!   both show it mounted.
//!
//! Each also checks from the host the plugin's mounts as `docker plugin
//! inspect` lists them and what the plugin's processes see at /host and at
//! /var/run/docker.sock.

use crate::common;

use common::docker::{
    Cleanup, dk, docker, docker_fails, docker_ok, image, run_detached, run_sh, unique,
};
use common::managed_plugin::{REPO, install, pids_running, registry, remove_plugins};
use common::objectfs_mount::Bucket;
use common::prometheus::{http_get, promtool_check_metrics};
use common::s3server::free_port;
use common::s3server::moto;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// Which of docs/SECURITY.md's reduced profiles a test installs.
#[derive(Clone, Copy, PartialEq)]
enum Profile {
    /// hostfs = D, host volumes under D/allowed, no Engine API.
    Narrowed,
    /// hostfs = an empty directory, no host volumes, no Engine API.
    ObjectOnly,
}

/// A plugin installed with a reduced profile, its directories on the host
/// and its turn on tests/docker_serial's lock. Dropped however the test
/// ends: every test plugin removed with its volumes, then the directories.
struct Installed {
    profile: Profile,
    /// The local name the plugin is installed under (its driver name).
    name: String,
    /// State and credentials (the plugin's `state` and `credentials`
    /// mounts) and `host`, the directory its `hostfs` shows.
    dir: tempfile::TempDir,
    /// Where the plugin serves Prometheus metrics (the object-only profile).
    metrics: Option<std::net::SocketAddr>,
    /// Dropped last, after the plugin and the directories are gone.
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Installed {
    /// Installs the pushed plugin with `profile`.
    fn install(profile: Profile) -> Installed {
        let turn = common::docker::turn();
        let problems = remove_plugins(docker);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        let dir = tempfile::Builder::new()
            .prefix("osv-narrowed-")
            .tempdir_in("/tmp")
            .unwrap();
        let installed = Installed {
            profile,
            name: format!("{REPO}-narrowed:1"),
            dir,
            metrics: (profile == Profile::ObjectOnly)
                .then(|| std::net::SocketAddr::from(([127, 0, 0, 1], free_port()))),
            _turn: turn,
        };
        for sub in ["state", "credentials"] {
            let p = installed.base().join(sub);
            fs::create_dir(&p).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
        }
        fs::create_dir(installed.host()).unwrap();
        if profile == Profile::Narrowed {
            fs::create_dir(installed.allowed()).unwrap();
        }
        let remote = registry().pushed("1");
        install(
            docker,
            &remote,
            Some(&installed.name),
            &installed.settings(),
        );
        installed
    }

    fn base(&self) -> PathBuf {
        fs::canonicalize(self.dir.path()).unwrap()
    }

    /// What the plugin's hostfs shows: D, or the empty directory.
    fn host(&self) -> PathBuf {
        self.base().join("host")
    }

    fn allowed(&self) -> PathBuf {
        self.host().join("allowed")
    }

    /// The `docker plugin set` words of the profile.
    fn settings(&self) -> Vec<String> {
        let mut settings = vec![
            format!("state.source={}", self.base().join("state").display()),
            format!(
                "credentials.source={}",
                self.base().join("credentials").display()
            ),
            format!("hostfs.source={}", self.host().display()),
            format!("OSV_HOST_ROOT_PATH={}", self.host().display()),
            "docker-socket.source=/dev/null".to_string(),
        ];
        if self.profile == Profile::Narrowed {
            settings.push(format!(
                "OSV_ALLOWED_HOST_PATHS={}",
                self.allowed().display()
            ));
        }
        if let Some(addr) = self.metrics {
            settings.push(format!("OSV_METRICS_ADDR={addr}"));
        }
        settings
    }

    /// `docker volume create -d PLUGIN OPTS NAME`, registered for cleanup.
    fn create(&self, clean: &mut Cleanup, tag: &str, opts: &str) -> String {
        let vol = clean.volume(&unique(tag));
        dk(&format!("volume create -d {} {opts} {vol}", self.name), &[]);
        vol
    }

    /// `docker volume create` that must fail; returns Docker's error.
    fn refused_at_create(&self, opts: &str) -> String {
        let mut args = vec!["volume", "create", "-d", &self.name];
        args.extend(opts.split_whitespace());
        let vol = unique("narrowed-refused");
        args.push(&vol);
        docker_fails(&args)
    }

    /// Docker gave the plugin the profile's mount sources, and the plugin
    /// sees the profile's host directory at /host and /dev/null (a
    /// character device, not a socket) where the Engine API would be.
    fn check_grants(&self, host_entries: &[&str]) {
        let want: BTreeMap<String, String> = [
            ("state", self.base().join("state")),
            ("credentials", self.base().join("credentials")),
            ("hostfs", self.host()),
            ("docker-socket", PathBuf::from("/dev/null")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.display().to_string()))
        .collect();
        assert_eq!(mount_sources(&self.name), want, "the plugin's mounts");
        let env = docker_ok(&[
            "plugin",
            "inspect",
            "-f",
            "{{json .Settings.Env}}",
            &self.name,
        ]);
        assert!(
            env.contains(&format!("\"OSV_HOST_ROOT_PATH={}\"", self.host().display())),
            "{env}"
        );
        let root = plugin_root();
        assert_eq!(names_in(&root.join("host")), host_entries);
        let socket = fs::metadata(root.join("var/run/docker.sock")).unwrap();
        assert!(
            socket.file_type().is_char_device() && !socket.file_type().is_socket(),
            "/var/run/docker.sock in the plugin: {:?}",
            socket.file_type()
        );
    }

    /// An s3 volume on a fresh moto bucket, written by a container: the
    /// object is in the bucket when `docker run` returns. Returns the volume.
    fn check_s3_volume(&self, clean: &mut Cleanup) -> String {
        let bucket = moto().new_bucket(&unique("narrowed"));
        let s3_vol = self.create(
            clean,
            "narrowed-s3",
            &format!(
                "-o type=s3 -o bucket={} -o endpoint={} -o accessKeyId=narrowed-key -o accessKeySecret=narrowed-secret",
                bucket.bucket,
                bucket.endpoint.as_deref().unwrap()
            ),
        );
        run_sh(
            &format!("-v {s3_vol}:/s"),
            "mkdir /s/dir && echo to-bucket > /s/dir/obj",
        );
        assert_eq!(
            Bucket::new(&bucket).get("dir/obj").as_deref(),
            Some(&b"to-bucket\n"[..])
        );
        s3_vol
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        for problem in remove_plugins(docker) {
            eprintln!("removing the narrowed plugin: {problem}");
        }
    }
}

/// Mount name → source, from `docker plugin inspect`.
fn mount_sources(plugin: &str) -> BTreeMap<String, String> {
    let json = docker_ok(&[
        "plugin",
        "inspect",
        "-f",
        "{{json .Settings.Mounts}}",
        plugin,
    ]);
    let mounts: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    mounts
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().unwrap().to_string(),
                m["Source"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The root directory (as the host reaches it) of the plugin's API process.
fn plugin_root() -> PathBuf {
    let serve = pids_running(&["/opensandbox-volume", "serve"], false);
    assert_eq!(
        serve.len(),
        1,
        "one API process inside the plugin: {serve:?}"
    );
    PathBuf::from(format!("/proc/{}/root", serve[0]))
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {dir:?}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn narrowed_plugin_serves_host_pvc_and_s3_volumes_without_the_rest_of_the_host() {
    require!(Root, Dockerd, Moto);
    let p = Installed::install(Profile::Narrowed);
    let mut clean = Cleanup::default();
    let d = p.host();
    p.check_grants(&["allowed"]);

    // A host volume under D/allowed, written by a container.
    let work = p.allowed().join("work");
    fs::create_dir(&work).unwrap();
    let host_vol = p.create(
        &mut clean,
        "narrowed-host",
        &format!("-o type=host -o path={}", work.display()),
    );
    run_sh(&format!("-v {host_vol}:/w"), "echo from-container > /w/f");
    assert_eq!(
        fs::read_to_string(work.join("f")).unwrap(),
        "from-container\n"
    );

    // Outside D: refused, saying what the plugin sees.
    let err = p.refused_at_create("-o type=host -o path=/etc");
    assert!(
        err.contains(&format!(
            "option `path`=\"/etc\" is outside the part of the host this plugin sees ({}, its hostfs mount)",
            d.display()
        )),
        "{err}"
    );
    // Under D/allowed, but through an absolute symlink: refused too.
    symlink("/etc", p.allowed().join("to-etc")).unwrap();
    let err = p.refused_at_create(&format!(
        "-o type=host -o path={}",
        p.allowed().join("to-etc").display()
    ));
    assert!(
        err.contains("leads through a symlink that is absolute or climbs out of"),
        "{err}"
    );

    // A pvc claim of a Docker local volume needs the Engine API: created,
    // then refused at `docker run` with the sentence.
    let claim = clean.volume(&unique("narrowed-local-claim"));
    dk(&format!("volume create {claim}"), &[]);
    let pvc_local = p.create(
        &mut clean,
        "narrowed-pvc-local",
        &format!("-o type=pvc -o claimName={claim}"),
    );
    let err = docker_fails(&[
        "run",
        "--rm",
        "-v",
        &format!("{pvc_local}:/p"),
        &image(),
        "true",
    ]);
    assert!(
        err.contains(&format!(
            "volume \"{pvc_local}\": a pvc volume whose claim is not a volume of this plugin needs the Docker Engine API, and this plugin runs without it (\"/var/run/docker.sock\" is not a socket"
        )),
        "{err}"
    );

    // A pvc claim of the plugin's own host volume needs no Engine API.
    let pvc_own = p.create(
        &mut clean,
        "narrowed-pvc-own",
        &format!("-o type=pvc -o claimName={host_vol} -o subPath=sandbox"),
    );
    run_sh(&format!("-v {pvc_own}:/p"), "echo via-pvc > /p/g");
    assert_eq!(
        fs::read_to_string(work.join("sandbox/g")).unwrap(),
        "via-pvc\n"
    );

    // An s3 volume: the bucket is all it needs.
    p.check_s3_volume(&mut clean);
}

#[test]
fn object_storage_only_plugin_serves_s3_volumes_and_no_host_directory() {
    require!(Root, Dockerd, Moto, Prometheus);
    let p = Installed::install(Profile::ObjectOnly);
    let mut clean = Cleanup::default();
    p.check_grants(&[]);
    let s3_vol = p.check_s3_volume(&mut clean);

    // The operator's view of the managed plugin from the host, while a
    // container holds the volume mounted.
    let holder = clean.container(&unique("narrowed-holder"));
    run_detached(&holder, &format!("-v {s3_vol}:/s"), "sleep 600");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_opensandbox-volume"))
        .args(["status", "--json", "--state-dir"])
        .arg(p.base().join("state"))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    let volume = report["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == s3_vol.as_str())
        .unwrap_or_else(|| panic!("{s3_vol} missing from {report:#}"));
    assert_eq!(volume["state"], "mounted", "{report:#}");
    let addr = p.metrics.unwrap();
    let mut scraped = String::new();
    common::wait_for("the plugin's metrics to show the volume mounted", || {
        scraped = match http_get(addr, "/metrics") {
            Ok((200, body)) => body,
            _ => return false,
        };
        scraped.lines().any(|l| {
            l.starts_with("osv_volume_state{")
                && l.contains(&format!("volume=\"{s3_vol}\""))
                && l.contains("state=\"mounted\"")
                && l.ends_with(" 1")
        })
    });
    let (clean_text, problems) = promtool_check_metrics(&scraped);
    assert!(clean_text, "promtool check metrics: {problems}");
    docker_ok(&["rm", "-f", &holder]);

    let err = p.refused_at_create(&format!("-o type=host -o path={}", p.host().display()));
    assert!(
        err.contains(
            "host volumes are disabled on this plugin because no allowed host paths are configured"
        ),
        "{err}"
    );
}
