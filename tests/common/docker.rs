//! Driving the real dockerd with the docker CLI, and the plugin registered
//! as a legacy driver under /run/docker/plugins.

use super::Plugin;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard};
use std::time::Duration;

/// One driver name for every test binary and scripts/check-install.sh.
/// dockerd keeps every legacy driver it has met and, for calls that touch
/// all drivers (`volume ls`, a lookup of an unknown name), waits ~15 s on
/// each one whose socket is gone; reusing one name leaves no dead ones.
pub const TEST_DRIVER: &str = "osvtest";

pub fn image() -> String {
    std::env::var("OSV_TEST_IMAGE").unwrap_or_else(|_| "osv-test-busybox".into())
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running the docker CLI")
}

fn show(args: &[&str], out: &Output) -> String {
    format!(
        "docker {}\nstatus: {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs docker and returns its trimmed stdout; panics with everything on failure.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(out.status.success(), "{}", show(args, &out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs docker expecting failure; returns stderr.
pub fn docker_fails(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        !out.status.success(),
        "expected failure: {}",
        show(args, &out)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `docker volume inspect` as JSON (the first element).
pub fn inspect_volume(name: &str) -> serde_json::Value {
    let text = docker_ok(&["volume", "inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[0].clone()
}

/// How many mounts the plugin holds for `name`, as its Status reports.
pub fn mounts_of(name: &str) -> u64 {
    inspect_volume(name)["Status"]["mounts"]
        .as_u64()
        .expect("Status.mounts")
}

/// Tests of a binary share one plugin daemon; the one that SIGKILLs it
/// takes this for writing and runs alone, since dockerd retries a call cut
/// by the kill with an empty body (the plugin then rightly refuses a Mount
/// without a Name). Every other test of that binary holds it for reading
/// ([`shared_daemon`]).
pub static DAEMON: RwLock<()> = RwLock::new(());

/// [`DAEMON`] for reading: this test runs alongside the others.
pub fn shared_daemon() -> RwLockReadGuard<'static, ()> {
    DAEMON.read().unwrap_or_else(|e| e.into_inner())
}

/// Tests that restart dockerd, reconfigure the managed plugin or load the
/// machine take turns on this lock (tests/docker_serial).
pub static TURN: Mutex<()> = Mutex::new(());

/// [`TURN`], held until the guard drops.
pub fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// A plugin registered with dockerd as driver `driver`, shared by the tests
/// of one test binary. Its state lives in a fresh directory per run.
/// Handles of one driver (each test file keeps one in its own cell) share
/// one daemon: there is one socket per driver name.
#[derive(Clone)]
pub struct SharedPlugin {
    pub driver: String,
    pub base: PathBuf,
    pub allowed: PathBuf,
    plugin: Arc<Mutex<Plugin>>,
}

impl SharedPlugin {
    pub fn get(cell: &'static OnceLock<SharedPlugin>, driver: &str) -> &'static SharedPlugin {
        cell.get_or_init(|| Self::of_driver(driver))
    }

    /// The binary's daemon for `driver`, started on first use.
    fn of_driver(driver: &str) -> SharedPlugin {
        static STARTED: Mutex<Vec<SharedPlugin>> = Mutex::new(Vec::new());
        let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = started.iter().find(|p| p.driver == driver) {
            return shared.clone();
        }
        assert!(
            docker(&["info"]).status.success(),
            "these tests need a running dockerd: run scripts/test.sh, which starts one"
        );
        let base = PathBuf::from(format!("/tmp/{driver}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let allowed = base.join("allowed");
        fs::create_dir_all(&allowed).unwrap();
        let socket = PathBuf::from(format!("/run/docker/plugins/{driver}.sock"));
        let plugin = Plugin::start(&socket, &base, std::slice::from_ref(&allowed));
        let shared = SharedPlugin {
            driver: driver.to_string(),
            base,
            allowed,
            plugin: Arc::new(Mutex::new(plugin)),
        };
        started.push(shared.clone());
        shared
    }

    pub fn plugin(&self) -> MutexGuard<'_, Plugin> {
        self.plugin.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh host directory under the allowed prefix.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        let p = self.allowed.join(name);
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }
}

/// Removes containers and volumes a test made, even when it fails midway,
/// so a failed test does not leave dockerd holding volumes of a dead driver.
/// Register only volumes that exist (or will once the test goes well):
/// removing an unknown name makes dockerd query every driver it has seen.
#[derive(Default)]
pub struct Cleanup {
    containers: Vec<String>,
    volumes: Vec<String>,
}

impl Cleanup {
    pub fn container(&mut self, name: &str) -> String {
        self.containers.push(name.to_string());
        name.to_string()
    }
    pub fn volume(&mut self, name: &str) -> String {
        self.volumes.push(name.to_string());
        name.to_string()
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = docker(&["rm", "-f", c]);
        }
        for v in &self.volumes {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
    }
}

/// A unique name per test and process, so reruns never collide.
pub fn unique(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path:?}: {e}"))
}

/// `docker` with `words` split on whitespace (no quoting needed for the
/// names and paths tests use) and `tail` passed whole (a shell script, say).
pub fn docker_words(words: &str, tail: &[&str]) -> Output {
    let mut args: Vec<&str> = words.split_whitespace().collect();
    args.extend_from_slice(tail);
    docker(&args)
}

/// [`docker_words`] that must succeed; returns trimmed stdout.
pub fn dk(words: &str, tail: &[&str]) -> String {
    let mut args: Vec<&str> = words.split_whitespace().collect();
    args.extend_from_slice(tail);
    docker_ok(&args)
}

/// `docker run --rm ARGS IMAGE sh -c SCRIPT`, which must succeed.
pub fn run_sh(args: &str, script: &str) -> String {
    dk(
        &format!("run --rm {args} {}", image()),
        &["sh", "-c", script],
    )
}

/// `docker run -d --name NAME ARGS IMAGE sh -c SCRIPT`.
pub fn run_detached(name: &str, args: &str, script: &str) {
    dk(
        &format!("run -d --name {name} {args} {}", image()),
        &["sh", "-c", script],
    );
}

impl SharedPlugin {
    /// `docker volume create -d DRIVER -o type=host -o path=DIR EXTRA… NAME`
    /// on a fresh host directory named after `tag`; returns (volume, dir).
    pub fn create_host_volume(
        &self,
        clean: &mut Cleanup,
        tag: &str,
        extra_opts: &str,
    ) -> (String, PathBuf) {
        let dir = self.host_dir(tag);
        let vol = clean.volume(&unique(tag));
        dk(
            &format!(
                "volume create -d {} -o type=host -o path={} {extra_opts} {vol}",
                self.driver,
                dir.display()
            ),
            &[],
        );
        (vol, dir)
    }
}

/// The running dockerd's pid and argv, read from /proc.
pub fn running_dockerd() -> (i32, Vec<String>) {
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

pub fn is_gone(pid: i32) -> bool {
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
pub fn restart_dockerd() {
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
        let argv = stop_dockerd();
        start_dockerd(&argv);
    }
    wait_for_dockerd();
}

/// Stops the running dockerd (SIGTERM, then waits); returns its argv.
pub fn stop_dockerd() -> Vec<String> {
    let (pid, argv) = running_dockerd();
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    super::wait_for_within("dockerd to stop", Duration::from_secs(60), || is_gone(pid));
    argv
}

/// Starts dockerd with `argv`, detached from the test process (it must
/// outlive it); returns at once, before it answers.
pub fn start_dockerd(argv: &[String]) {
    let log_path = std::env::var("OSV_DOCKERD_LOG")
        .unwrap_or_else(|_| "/tmp/osv-dockerd-restarted.log".into());
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap();
    // `setsid --fork` detaches dockerd into its own session and returns at
    // once, so it is not our child and outlives the test process.
    let status = Command::new("setsid")
        .arg("--fork")
        .args(argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("starting dockerd again");
    assert!(status.success(), "setsid dockerd: {status}");
}

/// Waits until dockerd answers.
pub fn wait_for_dockerd() {
    super::wait_for_within("dockerd to answer", Duration::from_secs(60), || {
        docker(&["info"]).status.success()
    });
}
