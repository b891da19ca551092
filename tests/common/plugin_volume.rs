//! One object volume served by a plugin daemon of its own, on a private
//! socket, and driven with the requests dockerd sends (Create with the
//! volume's options, Mount, Get, Unmount, Remove), but without dockerd:
//! the whole plugin path (options, registry, a mount process fed its
//! configuration on stdin) for test binaries that must not take the shared
//! driver socket under /run/docker/plugins. The test reads and writes the
//! mount point as a container would, can kill the mount process as a crash
//! would and mount the volume again as the next container would. Dropped,
//! it ends a mount process still running (SIGKILL) and unmounts, then
//! stops the daemon.

use super::http::{Reply, call, err_of};
use super::{Plugin, is_mounted};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The container ID the volume is mounted for.
const MOUNT_ID: &str = "c0ffee";

pub struct PluginVolume {
    pub name: String,
    /// Where the volume is mounted, once it is.
    pub mountpoint: Option<PathBuf>,
    /// The mount process's log as it was at the last Unmount: Remove
    /// deletes the file.
    last_mount_log: Option<String>,
    plugin: Plugin,
    /// The daemon's directories; removed after `plugin` stops (field order).
    _base: tempfile::TempDir,
}

impl PluginVolume {
    /// Starts a plugin daemon for the volume `name` (not created yet).
    pub fn new(name: &str) -> PluginVolume {
        Self::with_serve_flags(name, &[])
    }

    /// [`Self::new`] with more `serve` flags (`--metrics-addr …`).
    pub fn with_serve_flags(name: &str, flags: &[&str]) -> PluginVolume {
        let base = tempfile::Builder::new()
            .prefix("osv-plugin-volume-")
            .tempdir()
            .unwrap();
        let plugin = Plugin::start_with(&base.path().join("osv.sock"), base.path(), &[], flags);
        std::fs::create_dir_all(&plugin.credentials_dir).unwrap();
        PluginVolume {
            name: name.to_string(),
            mountpoint: None,
            last_mount_log: None,
            plugin,
            _base: base,
        }
    }

    /// The daemon's state directory (registry, cache and status files).
    pub fn state_dir(&self) -> &Path {
        &self.plugin.state_dir
    }

    /// The daemon's credential profiles directory (`credentials=NAME`).
    pub fn credentials_dir(&self) -> &Path {
        &self.plugin.credentials_dir
    }

    fn call(&self, method: &str, body: Value) -> Reply {
        call(&self.plugin.socket, method, &body.to_string())
    }

    /// Creates the volume with `opts` and mounts it; both must succeed.
    pub fn create_and_mount(&mut self, opts: Value) {
        let create = self.call(
            "VolumeDriver.Create",
            json!({"Name": self.name, "Opts": opts}),
        );
        assert_eq!(err_of(&create), "", "Create");
        self.mount();
    }

    /// Unmounts and mounts the volume again, as Docker does for its next
    /// container: a mount process that died is replaced by a new one,
    /// which uploads what the dead one had staged before it serves.
    pub fn remount(&mut self) {
        let unmount = self.call(
            "VolumeDriver.Unmount",
            json!({"Name": self.name, "ID": MOUNT_ID}),
        );
        assert_eq!(err_of(&unmount), "", "Unmount");
        self.mountpoint = None;
        self.mount();
    }

    /// SIGKILL of the volume's mount process, as a crash: returns once it
    /// is gone (its mount point then answers ENOTCONN).
    pub fn kill_mount_process(&self) {
        let pid = self.mount_pid();
        // SAFETY: kill(2) of the mount process this volume started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let target = self.target();
        super::wait_for_within("the mount process to die", Duration::from_secs(10), || {
            !process_serves(pid, &target)
        });
    }

    /// Mount; must succeed.
    fn mount(&mut self) {
        let mount = self.call(
            "VolumeDriver.Mount",
            json!({"Name": self.name, "ID": MOUNT_ID}),
        );
        assert_eq!(err_of(&mount), "", "Mount; log:\n{}", self.mount_log());
        let at = mount.body["Mountpoint"].as_str().expect("Mountpoint");
        self.mountpoint = Some(PathBuf::from(at));
    }

    /// Mounts the volume for one more container mount `id`, as dockerd does
    /// for a second container; must succeed.
    pub fn mount_for(&self, id: &str) {
        let mount = self.call("VolumeDriver.Mount", json!({"Name": self.name, "ID": id}));
        assert_eq!(err_of(&mount), "", "Mount {id}; log:\n{}", self.mount_log());
    }

    /// Undoes [`Self::mount_for`]; must succeed.
    pub fn unmount_for(&self, id: &str) {
        let unmount = self.call("VolumeDriver.Unmount", json!({"Name": self.name, "ID": id}));
        assert_eq!(err_of(&unmount), "", "Unmount {id}");
    }

    /// `rel` under the mount point.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.as_ref().expect("mounted").join(rel)
    }

    fn stem(&self) -> String {
        opensandbox_volume::names::file_stem(&self.name)
    }

    /// The pid of the volume's mount process, as the plugin recorded it.
    pub fn mount_pid(&self) -> i32 {
        let file = self
            .plugin
            .state_dir
            .join("cache")
            .join(self.stem())
            .join("mount.pid");
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {file:?}: {e}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// The volume's `Status`, as `docker volume inspect` shows it.
    pub fn status(&self) -> Value {
        let reply = self.call("VolumeDriver.Get", json!({"Name": self.name}));
        assert_eq!(err_of(&reply), "", "Get");
        reply.body["Volume"]["Status"].clone()
    }

    /// The mount process's log (its current file); once the volume is
    /// removed, which deletes it, as it was at the last Unmount.
    pub fn mount_log(&self) -> String {
        let log = self
            .plugin
            .state_dir
            .join("logs")
            .join(format!("{}.log", self.stem()));
        std::fs::read_to_string(log)
            .ok()
            .or_else(|| self.last_mount_log.clone())
            .unwrap_or_default()
    }

    /// The daemon's log.
    pub fn plugin_log(&self) -> String {
        self.plugin.log_text()
    }

    /// Unmounts as Docker does when the container stops: the mount process
    /// uploads everything and exits before the call returns. Then removes
    /// the volume.
    pub fn unmount_and_remove(&mut self) {
        let pid = self.mount_pid();
        let unmount = self.call(
            "VolumeDriver.Unmount",
            json!({"Name": self.name, "ID": MOUNT_ID}),
        );
        assert_eq!(err_of(&unmount), "", "Unmount");
        assert!(
            !process_serves(pid, &self.target()),
            "the mount process is still running after Unmount; log:\n{}",
            self.mount_log()
        );
        assert!(!is_mounted(&self.target()));
        self.mountpoint = None;
        self.last_mount_log = Some(self.mount_log());
        let remove = self.call("VolumeDriver.Remove", json!({"Name": self.name}));
        assert_eq!(err_of(&remove), "", "Remove");
    }

    /// Where the plugin mounts the volume (the mount point, without any
    /// subPath).
    fn target(&self) -> PathBuf {
        self.plugin.mount_root.join(self.stem())
    }
}

/// Whether `pid` is a live `mount` process serving `target` (and not a
/// recycled pid).
fn process_serves(pid: i32, target: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = target.as_os_str().as_encoded_bytes();
    let alive = !super::docker::is_gone(pid);
    alive
        && cmdline.split(|b| *b == 0).any(|a| a == b"mount")
        && cmdline.split(|b| *b == 0).any(|a| a == want)
}

impl Drop for PluginVolume {
    fn drop(&mut self) {
        if self.mountpoint.is_none() {
            return;
        }
        let target = self.target();
        if let Ok(pid) = std::fs::read_to_string(
            self.plugin
                .state_dir
                .join("cache")
                .join(self.stem())
                .join("mount.pid"),
        ) && let Ok(pid) = pid.trim().parse::<i32>()
            && process_serves(pid, &target)
        {
            // SAFETY: kill(2) of the mount process this volume started,
            // checked by its command line.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while process_serves(pid, &target) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = opensandbox_volume::mounts::unmount(&target);
    }
}
