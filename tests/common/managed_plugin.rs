//! The managed plugin as tests get it: a registry on loopback (Debian's
//! docker-registry, one per test binary), plugin/build.sh run with the
//! test build of the binary and pushed there, installed from there as an
//! operator would, the plugin's processes as the host sees them, and
//! removal of every test plugin from a daemon. Any daemon on this machine
//! can `docker plugin install` what is pushed (dockerd treats 127.0.0.1
//! registries as insecure, i.e. plain http, by default).

use super::s3server::free_port;
use super::{spawn_tied_to_test_process, wait_for_within};
use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Repository every test plugin is named under, so leftovers of earlier
/// runs can be found and removed.
pub const REPO: &str = "osvtest/managed";

pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// This run's directory: the registry's storage and log, and whatever
    /// else the tests keep beside it.
    pub base: PathBuf,
    /// Lives as long as the test process (it gets SIGTERM when that ends).
    _process: std::process::Child,
    /// Tags built and pushed so far.
    pushed: Mutex<HashSet<String>>,
}

/// The test binary's registry, started on first use in a fresh
/// `/tmp/osv-managed-PID` (scripts/check-leftovers.sh knows the name).
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let base = PathBuf::from(format!("/tmp/osv-managed-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let (addr, process) = start(&base);
        Registry {
            addr,
            base,
            _process: process,
            pushed: Mutex::new(HashSet::new()),
        }
    })
}

impl Registry {
    /// `ADDR/osvtest/managed:TAG`.
    pub fn reference(&self, tag: &str) -> String {
        format!("{}/{REPO}:{tag}", self.addr)
    }

    /// [`Self::reference`] of `tag`, built and pushed on first use; only
    /// the registry keeps it (the local copy `docker plugin create` made is
    /// removed), so daemons get it with `docker plugin install`.
    pub fn pushed(&self, tag: &str) -> String {
        let name = self.reference(tag);
        let mut pushed = self.pushed.lock().unwrap_or_else(|e| e.into_inner());
        if !pushed.contains(tag) {
            build_and_push(&name);
            let rm = super::docker::docker(&["plugin", "rm", &name]);
            assert!(
                rm.status.success(),
                "docker plugin rm {name}: {}",
                String::from_utf8_lossy(&rm.stderr)
            );
            pushed.insert(tag.to_string());
        }
        name
    }
}

/// Debian's docker-registry on a free loopback port, storing in `base`.
fn start(base: &Path) -> (String, std::process::Child) {
    let port = free_port();
    let config = base.join("registry.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
            base.join("registry").display()
        ),
    )
    .unwrap();
    let mut command = Command::new("docker-registry");
    command
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(fs::File::create(base.join("registry.log")).unwrap());
    let child = spawn_tied_to_test_process(command);
    wait_for_within("the registry to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // The IP, not `localhost`: dockerd treats 127.0.0.1 as an insecure
    // (plain http) registry by default.
    (format!("127.0.0.1:{port}"), child)
}

/// plugin/build.sh with the test build of the binary: rootfs, `docker
/// plugin create NAME` on the default daemon, push.
pub fn build_and_push(name: &str) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugin/build.sh");
    let out = Command::new(script)
        .args(["--push", name])
        .env(
            "OSV_PLUGIN_BINARY",
            env!("CARGO_BIN_EXE_opensandbox-volume"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "plugin/build.sh --push {name}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Installs the pushed plugin `remote` as an operator would on a host:
/// disabled (under the local name `alias` when given), then `docker plugin
/// set` with `settings` (`KEY=VALUE` words: mount sources, `OSV_*`
/// variables), then enabled. `docker` talks to the daemon to install on.
pub fn install(
    docker: impl Fn(&[&str]) -> Output,
    remote: &str,
    alias: Option<&str>,
    settings: &[String],
) {
    let run = |args: &[&str]| {
        let out = docker(args);
        assert!(
            out.status.success(),
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut args = vec!["plugin", "install", "--grant-all-permissions", "--disable"];
    if let Some(alias) = alias {
        args.extend(["--alias", alias]);
    }
    args.push(remote);
    run(&args);
    let name = alias.unwrap_or(remote);
    if !settings.is_empty() {
        let mut args = vec!["plugin", "set", name];
        args.extend(settings.iter().map(String::as_str));
        run(&args);
    }
    run(&["plugin", "enable", name]);
}

/// Disables and removes every plugin under [`REPO`], with its volumes, from
/// the daemon `docker` talks to; returns what could not be done (it never
/// panics: it runs in drops).
pub fn remove_plugins(docker: impl Fn(&[&str]) -> Output) -> Vec<String> {
    let out = docker(&["plugin", "ls", "--format", "{{.Name}}"]);
    if !out.status.success() {
        return vec![format!(
            "docker plugin ls: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )];
    }
    let mut problems = Vec::new();
    for name in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.contains(REPO))
    {
        let volumes = docker(&["volume", "ls", "-q", "--filter", &format!("driver={name}")]);
        for v in String::from_utf8_lossy(&volumes.stdout).lines() {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        let _ = docker(&["plugin", "disable", "-f", name]);
        let rm = docker(&["plugin", "rm", "-f", name]);
        if !rm.status.success() {
            problems.push(format!(
                "docker plugin rm -f {name}: {}",
                String::from_utf8_lossy(&rm.stderr).trim()
            ));
        }
    }
    problems
}

/// Pids (host namespace) of processes whose command line is `argv`, or
/// starts with it when `prefix`.
pub fn pids_running(argv: &[&str], prefix: bool) -> Vec<i32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let matches = |c: Vec<u8>| {
        if prefix {
            c.starts_with(&want)
        } else {
            c == want
        }
    };
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(matches))
        .collect()
}
