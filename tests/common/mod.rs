//! Shared test helpers: the real plugin binary in a child process, and a
//! raw HTTP client for its socket.
#![allow(dead_code)] // each test crate uses a different subset

// First: its `require!` macro is used by the modules below and the tests.
#[macro_use]
pub mod requirements;

pub mod docker;
pub mod fake_ecs_metadata;
pub mod fast_s3;
pub mod fault_proxy;
pub mod http;
pub mod managed_plugin;
pub mod objectfs_mount;
pub mod plugin_volume;
pub mod prometheus;
pub mod s3fs;
pub mod s3server;
pub mod sha256;
pub mod swarm;

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_opensandbox-volume");

/// The plugin daemon running as a child process with its own directories.
pub struct Plugin {
    child: Option<Child>,
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub mount_root: PathBuf,
    pub allowed: Vec<PathBuf>,
    pub log: PathBuf,
    /// Credential profiles of object-storage volumes.
    pub credentials_dir: PathBuf,
    /// More `serve` arguments, after the ones every test daemon gets.
    extra: Vec<String>,
}

impl Plugin {
    /// Starts the plugin on `socket`, keeping state and mounts in `base`.
    pub fn start(socket: &Path, base: &Path, allowed: &[PathBuf]) -> Plugin {
        Plugin::start_with(socket, base, allowed, &[])
    }

    /// [`Plugin::start`] with more `serve` arguments (`extra`).
    pub fn start_with(socket: &Path, base: &Path, allowed: &[PathBuf], extra: &[&str]) -> Plugin {
        let mut plugin = Plugin {
            child: None,
            socket: socket.to_path_buf(),
            state_dir: base.join("state"),
            mount_root: base.join("mounts"),
            allowed: allowed.to_vec(),
            log: base.join("plugin.log"),
            credentials_dir: base.join("credentials"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        plugin.spawn();
        plugin
    }

    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let allowed: Vec<String> = self
            .allowed
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut command = Command::new(BIN);
        command
            .arg("serve")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--mount-root")
            .arg(&self.mount_root)
            .arg("--allowed-host-paths")
            .arg(allowed.join(","))
            .arg("--credentials-dir")
            .arg(&self.credentials_dir)
            .arg("--log-level")
            .arg("trace")
            .args(&self.extra)
            .env_remove("OSV_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(spawn_tied_to_test_process(command));
        self.wait_ready();
    }

    /// Waits until the socket accepts connections (10 s at most).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("plugin exited with {status}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "plugin did not listen within 10 s; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash would: no cleanup, the socket file stays behind.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait, as systemd or Docker would stop it.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("plugin is running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap()
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts it again after [`Self::kill`], on the same state.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the plugin is still running");
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("plugin is running").id()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.kill();
        // A socket file without a process makes dockerd retry for seconds.
        let _ = fs::remove_file(&self.socket);
    }
}

/// Spawns `command` from one long-lived thread with PR_SET_PDEATHSIG, so
/// the child gets SIGTERM when the test process exits (statics are never
/// dropped) but not when the test thread that asked for it ends.
pub fn spawn_tied_to_test_process(mut command: Command) -> Child {
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc;
    use std::sync::{Mutex, OnceLock};
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    // SAFETY: prctl is async-signal-safe; nothing else runs in pre_exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
            // The channel lives in a static, so this thread never ends.
        });
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    spawner.lock().unwrap().send((command, tx)).unwrap();
    rx.recv().unwrap().expect("starting the plugin binary")
}

/// Whether `path` is a mount point in this mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    opensandbox_volume::mounts::is_mount_point(path).unwrap()
}

/// Unmounts everything under `root` (best effort), for test cleanup.
pub fn unmount_all_under(root: &Path) {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for mp in opensandbox_volume::mounts::parse_mount_points(&text) {
        if mp.starts_with(root) {
            let _ = opensandbox_volume::mounts::unmount(&mp);
        }
    }
}

/// Polls `ok` every 100 ms until it holds; panics after `timeout`.
pub fn wait_for_within(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`wait_for_within`] ten seconds.
pub fn wait_for(what: &str, ok: impl FnMut() -> bool) {
    wait_for_within(what, Duration::from_secs(10), ok)
}

/// Runs `script` with `sh -c` in `dir`; it must succeed. Returns stdout.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}
