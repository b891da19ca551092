//! Bounded logs and state (issue 17): a mount process's and the daemon's
//! log files rotate by size and keep a bounded number of files, and a
//! removed object volume leaves nothing in the state directory once its
//! data is in the bucket, but keeps what is not.
//!
//! Mount processes here are real (FUSE over s3s-fs); plugin daemons are
//! private ones driven with the requests dockerd sends (Create, Mount,
//! Unmount, Remove) on their own sockets, as in
//! tests/common/plugin_volume.rs, without dockerd.

use crate::common;

use crate::plugin_metrics::status_json;
use common::fast_s3::FastS3Server;
use common::fault_proxy::{FaultProxy, Mode};
use common::http::{Reply, docker_request, err_of, send_raw_within};
use common::objectfs_mount::Bucket;
use common::{BIN, Plugin, is_mounted, spawn_tied_to_test_process, wait_for, wait_for_within};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The bound the tests set on every log file.
const MAX_SIZE: u64 = 4096;

/// The files of the log at `path` (`path`, `path.1`, …) with their text,
/// newest first.
fn log_files(path: &Path) -> Vec<(String, String)> {
    let base = path.file_name().unwrap().to_str().unwrap();
    let mut found: Vec<(u32, String, String)> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let n = if name == base {
                0
            } else {
                name.strip_prefix(base)?.strip_prefix('.')?.parse().ok()?
            };
            let text = fs::read_to_string(path.parent().unwrap().join(&name)).unwrap();
            Some((n, name, text))
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .map(|(_, name, text)| (name, text))
        .collect()
}

/// Every file of the log is within the bound, or holds a single line
/// longer than it (the bound plus one line).
fn assert_bounded(files: &[(String, String)], max_files: usize) {
    assert!(
        files.len() <= max_files,
        "{} files: {:?}",
        files.len(),
        files.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for (name, text) in files {
        assert!(
            text.len() as u64 <= MAX_SIZE || text.trim_end().lines().count() == 1,
            "{name} holds {} bytes:\n{text}",
            text.len()
        );
    }
}

/// `opensandbox-volume mount` of `bucket` at `mnt`, with its stdout and
/// stderr on `log` as the plugin starts one, and `args` after the store's.
fn spawn_mount(
    endpoint: &str,
    bucket: &str,
    mnt: &Path,
    cache: &Path,
    log: &Path,
    args: &[&str],
) -> std::process::Child {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("mount")
        .arg(mnt)
        .args(["--bucket", bucket, "--endpoint", endpoint])
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .env("OSV_ACCESS_KEY_ID", "test")
        .env("OSV_ACCESS_KEY_SECRET", "test")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    spawn_tied_to_test_process(cmd)
}

/// A mount process at debug level with a 4 KiB bound writes far past it:
/// three files are kept, none over the bound, every line a JSON object,
/// the newest line (its last before exit) in the current file. Then a
/// mount that fails on its first request, started with the log one line
/// short of full: the log rotates under it, and its last words (written to
/// stderr, not through the logger) are still the current file's last line,
/// where the plugin reads a failed mount's reason.
#[test]
fn a_mount_process_log_rotates_past_its_bound_and_keeps_its_last_words() {
    require!(Root, Fuse, FastS3);
    let server = FastS3Server::start();
    let config = server.new_bucket("log-rotation");
    let endpoint = config.endpoint.clone().unwrap();
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("mnt");
    let log = base.path().join("logs/v.log");
    fs::create_dir_all(&mnt).unwrap();
    fs::create_dir_all(log.parent().unwrap()).unwrap();
    let log_arg = log.to_str().unwrap();
    let args = [
        "--log-level",
        "debug",
        "--log-file",
        log_arg,
        "--log-max-size",
        "4KiB",
        "--log-max-files",
        "3",
        "--log-format",
        "json",
    ];
    let cache = base.path().join("cache");
    let mut child = spawn_mount(&endpoint, &config.bucket, &mnt, &cache, &log, &args);
    wait_for_within("the FUSE mount", Duration::from_secs(30), || {
        is_mounted(&mnt) && fs::metadata(&mnt).is_ok()
    });
    for i in 0..60 {
        fs::write(mnt.join(format!("f{i:02}.txt")), format!("file {i}\n")).unwrap();
    }
    assert_eq!(fs::read_dir(&mnt).unwrap().count(), 60);
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let files = log_files(&log);
    assert!(status.success(), "{status}: {files:?}");
    assert_eq!(files.len(), 3, "the log rotated and kept 3 files");
    assert_bounded(&files, 3);
    let mut total = 0;
    for (name, text) in &files {
        for line in text.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{name}: not a JSON line ({e}): {line}"));
            assert!(
                v["timestamp"].is_string() && v["level"].is_string(),
                "{line}"
            );
            total += 1;
        }
    }
    assert!(total > 10, "{total} lines");
    // The newest lines are in the current file: the last one of the run.
    assert!(
        files[0]
            .1
            .contains(r#""message":"every write is in the bucket""#),
        "{files:?}"
    );
    assert_eq!(Bucket::new(&config).keys("").len(), 60);

    // The log one short of full: the failing mount's first line rotates it.
    let size = fs::metadata(&log).unwrap().len();
    let pad = "x".repeat((MAX_SIZE - size - 2) as usize);
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(format!("{pad}\n").as_bytes())
        .unwrap();
    let mut failing = spawn_mount(&endpoint, "no-such-bucket", &mnt, &cache, &log, &args);
    let status = failing.wait().unwrap();
    assert!(!status.success());
    let files = log_files(&log);
    assert_bounded(&files, 3);
    assert!(
        files[1].1.ends_with(&format!("{pad}\n")),
        "rotated at start"
    );
    let last_line = files[0].1.lines().last().unwrap_or_default().to_string();
    assert!(
        last_line.starts_with("opensandbox-volume: the bucket cannot be listed"),
        "{files:?}"
    );
}

/// A plugin daemon of the test's own on a private socket.
struct Daemon {
    plugin: Plugin,
    _base: tempfile::TempDir,
}

impl Daemon {
    fn start(extra: &[&str]) -> Daemon {
        let base = tempfile::Builder::new()
            .prefix("osv-state-")
            .tempdir()
            .unwrap();
        let plugin = Plugin::start_with(&base.path().join("osv.sock"), base.path(), &[], extra);
        Daemon {
            plugin,
            _base: base,
        }
    }

    fn state(&self) -> &Path {
        &self.plugin.state_dir
    }

    fn call(&self, method: &str, body: Value) -> Reply {
        // Unmount may wait 50 s for the mount process.
        let raw = docker_request(method, &body.to_string());
        send_raw_within(&self.plugin.socket, &raw, Duration::from_secs(90))
    }

    fn ok(&self, method: &str, body: Value) -> Reply {
        let reply = self.call(method, body.clone());
        assert_eq!(
            err_of(&reply),
            "",
            "{method} {body}; log:\n{}",
            self.plugin.log_text()
        );
        reply
    }

    fn create(&self, name: &str, opts: Value) {
        self.ok("VolumeDriver.Create", json!({"Name": name, "Opts": opts}));
    }

    fn mount(&self, name: &str) -> PathBuf {
        let reply = self.ok("VolumeDriver.Mount", json!({"Name": name, "ID": "c1"}));
        PathBuf::from(reply.body["Mountpoint"].as_str().unwrap())
    }

    fn unmount(&self, name: &str) {
        self.ok("VolumeDriver.Unmount", json!({"Name": name, "ID": "c1"}));
    }

    fn remove(&self, name: &str) {
        self.ok("VolumeDriver.Remove", json!({"Name": name}));
    }

    fn stem(name: &str) -> String {
        opensandbox_volume::names::file_stem(name)
    }

    fn cache_dir(&self, name: &str) -> PathBuf {
        self.state().join("cache").join(Self::stem(name))
    }

    fn volume_log(&self, name: &str) -> PathBuf {
        self.state()
            .join("logs")
            .join(format!("{}.log", Self::stem(name)))
    }

    fn mount_pid(&self, name: &str) -> i32 {
        fs::read_to_string(self.cache_dir(name).join("mount.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Create, Mount, write one file, Unmount, Remove, as a sandbox with
    /// an anonymous volume does.
    fn cycle(&self, name: &str, opts: Value) {
        self.create(name, opts);
        let at = self.mount(name);
        fs::write(at.join(format!("{name}.txt")), name).unwrap();
        self.unmount(name);
        self.remove(name);
    }
}

/// The s3 volume options of `config`'s bucket (through `endpoint`), under
/// `prefix`.
fn s3_opts(bucket: &str, endpoint: &str, prefix: &str) -> Value {
    json!({
        "type": "s3",
        "bucket": bucket,
        "endpoint": endpoint,
        "prefix": prefix,
        "accessKeyId": "test",
        "accessKeySecret": "test",
    })
}

/// Every path under `dir` with its size (files) or `None` (directories).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<u64>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            if entry.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                todo.push(path);
            } else {
                out.insert(rel, Some(entry.metadata().unwrap().len()));
            }
        }
    }
    out
}

/// A volume's own log and the daemon's log file both rotate within the
/// bound the daemon is given (4 KiB, 2 files), and a Mount that fails
/// still reports the mount process's reason, read from the volume's log.
#[test]
fn plugin_volume_and_daemon_logs_rotate_and_a_failed_mount_still_says_why() {
    require!(Root, Fuse, FastS3);
    let server = FastS3Server::start();
    let config = server.new_bucket("plugin-logs");
    let endpoint = config.endpoint.clone().unwrap();
    let base = tempfile::tempdir().unwrap();
    let daemon_log = base.path().join("daemon/serve.log");
    let daemon = Daemon::start(&[
        "--log-file",
        daemon_log.to_str().unwrap(),
        "--log-max-size",
        "4KiB",
        "--log-max-files",
        "2",
    ]);
    let name = "rotating";
    daemon.create(name, s3_opts(&config.bucket, &endpoint, ""));
    for i in 0..12 {
        let at = daemon.mount(name);
        fs::write(at.join(format!("{i}.txt")), "x").unwrap();
        daemon.unmount(name);
    }
    let files = log_files(&daemon.volume_log(name));
    assert_eq!(files.len(), 2, "{files:?}");
    assert_bounded(&files, 2);
    assert!(
        files[0].1.contains("every write is in the bucket"),
        "{files:?}"
    );
    // The daemon logs at trace: many rotations of its own file.
    let files = log_files(&daemon_log);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_bounded(&files, 2);
    assert!(
        files
            .iter()
            .any(|(_, t)| t.contains("unmounted volume=rotating mounts=0")),
        "{files:?}"
    );

    daemon.create("missing", s3_opts("no-such-bucket", &endpoint, ""));
    let reply = daemon.call("VolumeDriver.Mount", json!({"Name": "missing", "ID": "c1"}));
    let err = err_of(&reply);
    assert!(
        err.contains("could not be mounted: the bucket cannot be listed"),
        "{err}"
    );
    daemon.remove("missing");
    daemon.remove(name);
}

/// 100 volumes created, mounted, written, unmounted and removed as
/// anonymous volumes of sandboxes are: the state directory ends as it
/// began (every file and directory, every file's size), and every file
/// written is in the bucket.
#[test]
fn plugin_removed_volumes_leave_the_state_directory_as_it_was() {
    require!(Root, Fuse, FastS3);
    let server = FastS3Server::start();
    let config = server.new_bucket("state-cleanup");
    let endpoint = config.endpoint.clone().unwrap();
    let daemon = Daemon::start(&[]);
    // The first mount creates the cache and log directories, which stay.
    daemon.cycle("warm-up", s3_opts(&config.bucket, &endpoint, "warm-up"));
    for dir in ["cache", "logs"] {
        let left: Vec<_> = fs::read_dir(daemon.state().join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    let before = snapshot(daemon.state());
    std::thread::scope(|s| {
        for t in 0..4 {
            let (daemon, config, endpoint) = (&daemon, &config, &endpoint);
            s.spawn(move || {
                for i in 0..25 {
                    let name = format!("{:064x}", t * 1000 + i);
                    daemon.cycle(&name, s3_opts(&config.bucket, endpoint, &name));
                }
            });
        }
    });
    let after = snapshot(daemon.state());
    assert_eq!(before, after, "log:\n{}", daemon.plugin.log_text());
    let keys = Bucket::new(&config).keys("");
    assert_eq!(keys.len(), 101, "{keys:?}");
}

/// A removed volume whose mount process died with a file not yet in the
/// bucket (the store down, then kill -9) keeps its cache directory and log
/// after Remove, and the daemon log says what is kept and how it is
/// uploaded; the next mount of a volume of the same name uploads it, and
/// that volume's Remove then leaves nothing.
#[test]
fn plugin_a_removed_volume_keeps_data_not_uploaded_until_a_mount_uploads_it() {
    require!(Root, Fuse, FastS3);
    let server = FastS3Server::start();
    let config = server.new_bucket("kept");
    let proxy = FaultProxy::start(server.addr);
    let daemon = Daemon::start(&[]);
    let name = "kept";
    let opts = s3_opts(&config.bucket, &proxy.endpoint(), "");
    daemon.create(name, opts.clone());
    let at = daemon.mount(name);
    // Created while the store answers; written and closed once it is down.
    let mut f = fs::File::create(at.join("late.txt")).unwrap();
    proxy.set(Mode::Down);
    f.write_all(b"not in the bucket yet\n").unwrap();
    drop(f);
    let cache = daemon.cache_dir(name);
    wait_for("the file journalled", || {
        objectfs::staging::journalled(&cache).unwrap().0 == 1
    });
    let pid = daemon.mount_pid(name);
    // SAFETY: kill(2) of the volume's mount process, read from its pid file.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for("the mount process gone", || common::docker::is_gone(pid));
    daemon.unmount(name);
    daemon.remove(name);
    assert_eq!(objectfs::staging::journalled(&cache).unwrap(), (1, 22));
    assert!(daemon.volume_log(name).exists());
    let log = daemon.plugin.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("data not yet in the bucket is kept")
                && l.contains("volume=kept")
                && l.contains("files=1")
                && l.contains("bytes=22")),
        "{log}"
    );
    let bucket = Bucket::new(&config);
    assert_eq!(bucket.get("late.txt"), None);
    // `status` shows what was kept, and fails as a health check.
    let (code, report) = status_json(daemon.state(), &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        report["removedWithData"],
        json!([{"volume": "kept", "cacheDir": cache, "pendingFiles": 1,
                "pendingBytes": 22, "pendingChanges": 0}]),
        "{report:#}"
    );

    proxy.set(Mode::Pass);
    daemon.create(name, opts);
    daemon.mount(name);
    assert_eq!(
        bucket.get("late.txt").as_deref(),
        Some(&b"not in the bucket yet\n"[..]),
        "uploaded before the mount served anything"
    );
    daemon.unmount(name);
    daemon.remove(name);
    assert!(!cache.exists());
    assert!(log_files(&daemon.volume_log(name)).is_empty());
    let (code, report) = status_json(daemon.state(), &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["removedWithData"], json!([]), "{report:#}");
}

/// A volume removed while its mount process still uploads (the store was
/// down through the whole of Unmount's 50 s, so Unmount returned with the
/// process still flushing) keeps everything until the process is done;
/// once the store is back and the upload made, the daemon removes the
/// cache directory and log by itself.
#[test]
fn plugin_a_volume_removed_while_its_mount_process_uploads_goes_once_it_is_done() {
    require!(Root, Fuse, FastS3);
    let server = FastS3Server::start();
    let config = server.new_bucket("flushing");
    let proxy = FaultProxy::start(server.addr);
    let daemon = Daemon::start(&[]);
    let name = "flushing";
    daemon.create(name, s3_opts(&config.bucket, &proxy.endpoint(), ""));
    let at = daemon.mount(name);
    let mut f = fs::File::create(at.join("slow.txt")).unwrap();
    proxy.set(Mode::Down);
    f.write_all(b"uploaded after Remove\n").unwrap();
    drop(f);
    let pid = daemon.mount_pid(name);
    daemon.unmount(name);
    assert!(
        !common::docker::is_gone(pid),
        "the mount process should still be uploading"
    );
    daemon.remove(name);
    let cache = daemon.cache_dir(name);
    assert!(cache.exists() && daemon.volume_log(name).exists());
    assert!(
        daemon
            .plugin
            .log_text()
            .contains("the volume's mount process is still uploading")
    );
    proxy.set(Mode::Pass);
    wait_for_within(
        "the cache directory removed",
        Duration::from_secs(180),
        || !cache.exists(),
    );
    assert!(common::docker::is_gone(pid));
    assert!(log_files(&daemon.volume_log(name)).is_empty());
    assert_eq!(
        Bucket::new(&config).get("slow.txt").as_deref(),
        Some(&b"uploaded after Remove\n"[..])
    );
}
