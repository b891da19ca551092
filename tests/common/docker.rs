//! Driving the real dockerd with the docker CLI, and the plugin registered
//! as a legacy driver under /run/docker/plugins.

use super::Plugin;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};

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

/// A plugin registered with dockerd as driver `driver`, shared by the tests
/// of one test binary. Its state lives in a fresh directory per run.
pub struct SharedPlugin {
    pub driver: String,
    pub base: PathBuf,
    pub allowed: PathBuf,
    plugin: Mutex<Plugin>,
}

impl SharedPlugin {
    pub fn get(cell: &'static OnceLock<SharedPlugin>, driver: &str) -> &'static SharedPlugin {
        cell.get_or_init(|| {
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
            SharedPlugin {
                driver: driver.to_string(),
                base,
                allowed,
                plugin: Mutex::new(plugin),
            }
        })
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
