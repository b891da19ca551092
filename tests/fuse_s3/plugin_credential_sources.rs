//! A running mount follows credentials that change at their source (issue
//! 15), through the whole plugin path: a plugin daemon on a private socket
//! takes the volume options as dockerd hands them over, starts the mount
//! process, and the test writes into the mount point as a container would
//! (tests/common/plugin_volume.rs says why not through dockerd). The store
//! is s3s-fs, which checks SigV4 signatures against the one key pair it
//! is started with: restarting it with another pair is a rotation, and a
//! write reaches the bucket only if the mount signs with the new keys.
//! s3s-fs does not check `x-amz-security-token` (it is signed, but its
//! value is not verified), so the session tokens ride along unchecked.
//!
//! Both tests keep writing files while the keys rotate; every file written
//! before, during and after the rotation must be in the bucket once the
//! volume is unmounted, the same mount process must have served it all (no
//! remount), and no key, secret or token may appear in the mount's or the
//! daemon's log.

use crate::common;

use common::fake_ecs_metadata::{FakeEcsMetadata, ROLES_PATH, RoleKeys, TOKEN_HEADER, TTL_HEADER};
use common::fast_s3::FastS3Server;
use common::objectfs_mount::Bucket;
use common::plugin_volume::PluginVolume;
use common::wait_for_within;
use objectfs::store::s3::S3Config;
use serde_json::json;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

const ROLE: &str = "sandbox-writer";
/// The first keys' lifetime: the mount fetches again after half of it (a
/// lifetime under 10 minutes is refreshed at half, not 5 minutes ahead).
/// Long enough that the mount comes up and writes its first files on a
/// loaded machine before the keys expire.
const SHORT_LIFETIME: Duration = Duration::from_secs(30);
const LONG_LIFETIME: Duration = Duration::from_secs(3600);
/// Bound for the mount to take up new keys and upload with them: the
/// refresh comes at most SHORT_LIFETIME after the first fetch.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(120);
/// Files that must reach the bucket after the rotation.
const AFTER_ROTATION: usize = 5;

fn content(i: usize) -> Vec<u8> {
    format!("file {i} of the writer\n").into_bytes()
}

/// `config`'s bucket seen with the key pair `(id, secret)`.
fn bucket_with(config: &S3Config, id: &str, secret: &str) -> Bucket {
    let mut config = config.clone();
    config.access_key_id = Some(id.to_string());
    config.access_key_secret = Some(secret.to_string());
    Bucket::new(&config)
}

/// A volume name unique to this test process.
fn unique(tag: &str) -> String {
    format!("{tag}-{}", std::process::id())
}

/// Writes `w-0`, `w-1`, … into a directory one after another, about ten a
/// second, until stopped, as a sandbox's program would. While the store
/// refuses the mount's keys a new name's lookup can fail: the writer tries
/// again, as a program would; a file it could not write within a minute
/// ends it with an error.
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Result<usize, String>>>,
}

impl Writer {
    fn start(dir: PathBuf) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::spawn({
            let (stop, written) = (stop.clone(), written.clone());
            move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let path = dir.join(format!("w-{i}"));
                    let mut tries = 0;
                    while let Err(e) = fs::write(&path, content(i)) {
                        tries += 1;
                        if tries > 600 {
                            return Err(format!("writing {path:?}: {e}"));
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    i += 1;
                    written.store(i, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok(i)
            }
        });
        Writer {
            stop,
            written,
            thread: Some(thread),
        }
    }

    /// How many files it has written so far.
    fn written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }

    /// Waits until it has written `n` files; panics if it gave up.
    fn wait_written(&self, n: usize) {
        wait_for_within(
            &format!("the writer to write {n} files"),
            FOLLOW_TIMEOUT,
            || {
                assert!(
                    !self.thread.as_ref().unwrap().is_finished(),
                    "the writer stopped early"
                );
                self.written() >= n
            },
        );
    }

    /// Stops it; how many files it wrote.
    fn finish(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().unwrap();
        thread.join().unwrap().unwrap()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Writes `rel` in the volume and fsyncs it: it is in the bucket when this
/// returns.
fn write_synced(vol: &PluginVolume, rel: &str, data: &[u8]) {
    let mut file = fs::File::create(vol.path(rel)).unwrap();
    file.write_all(data).unwrap();
    file.sync_all().unwrap();
}

/// The start both tests share: a file written and fsynced is in the bucket
/// under the first keys (`with_first_keys`), and a writer is running.
fn writing_under_the_first_keys(vol: &PluginVolume, with_first_keys: &Bucket) -> Writer {
    write_synced(vol, "before.txt", b"signed with the first keys");
    assert_eq!(
        with_first_keys.get("before.txt").unwrap(),
        b"signed with the first keys"
    );
    let writer = Writer::start(vol.mountpoint.clone().unwrap());
    writer.wait_written(3);
    writer
}

/// The part of the rotation both tests share: files written from now on
/// (the writer's index after `rotated`) reach the bucket under the new
/// keys; then the writer stops, the volume is unmounted (which uploads
/// everything left) and every file the writer wrote is checked.
fn files_after_the_rotation_arrive(
    vol: &mut PluginVolume,
    writer: Writer,
    with_new_keys: &Bucket,
    pid: i32,
) {
    // The file being written when the rotation came may have started
    // before it: count from the next one.
    let first = writer.written() + 1;
    let last = first + AFTER_ROTATION;
    writer.wait_written(last);
    wait_for_within(
        "files written after the rotation to reach the bucket with the new keys",
        FOLLOW_TIMEOUT,
        || (first..last).all(|i| with_new_keys.head(&format!("w-{i}")).is_some()),
    );
    wait_for_within("the status to show no store error", FOLLOW_TIMEOUT, || {
        vol.status()["storeError"].is_null()
    });
    let written = writer.finish();
    assert_eq!(vol.mount_pid(), pid, "no remount");
    vol.unmount_and_remove();
    let mut expected: Vec<String> = (0..written).map(|i| format!("w-{i}")).collect();
    expected.push("before.txt".into());
    expected.sort();
    let mut keys = with_new_keys.keys("");
    keys.sort();
    assert_eq!(keys, expected, "nothing lost, nothing more");
    for i in 0..written {
        assert_eq!(
            with_new_keys.get(&format!("w-{i}")).unwrap(),
            content(i),
            "w-{i}"
        );
    }
}

/// No `secrets` in the mount's or the daemon's log.
fn assert_no_secret_in_logs(vol: &PluginVolume, secrets: &[&str]) {
    for (which, log) in [("mount", vol.mount_log()), ("plugin", vol.plugin_log())] {
        assert!(!log.is_empty(), "the {which} log is empty");
        for secret in secrets {
            assert!(
                !log.contains(secret),
                "the {which} log shows {secret:?}:\n{log}"
            );
        }
    }
}

fn role_keys(tag: char, lifetime: Duration) -> RoleKeys {
    RoleKeys {
        id: format!("STS-role-key-{tag}"),
        secret: format!("role-secret-{tag}-9fQ2"),
        token: format!("role-token-{tag}-7kP4"),
        expiration: SystemTime::now() + lifetime,
    }
}

#[test]
fn an_ecs_ram_role_mount_follows_the_keys_the_metadata_service_hands_out() {
    require!(Root, Fuse, FastS3);
    let mut server = FastS3Server::start();
    let config = server.new_bucket("ecs-role");
    let (a, b) = (
        role_keys('a', SHORT_LIFETIME),
        role_keys('b', LONG_LIFETIME),
    );
    server.restart_with_keys(&a.id, &a.secret);
    let fake = FakeEcsMetadata::start(ROLE, a.clone());
    let mut vol = PluginVolume::new(&unique("ecs-role"));
    vol.create_and_mount(json!({
        "type": "s3",
        "bucket": config.bucket,
        "endpoint": config.endpoint,
        "credentialSource": "ecsRamRole",
        "ramRole": ROLE,
        "metadataEndpoint": fake.endpoint(),
    }));
    let pid = vol.mount_pid();
    assert_eq!(vol.status()["credentials"], format!("ECS RAM role {ROLE}"));
    // `status` shows where the keys come from and when they expire: the
    // first pair's expiration, as the metadata service said it.
    let expiry = || {
        let out = std::process::Command::new(common::BIN)
            .args(["status", "--json", "--state-dir"])
            .arg(vol.state_dir())
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let creds = report["volumes"][0]["credentials"].clone();
        assert_eq!(
            creds["source"],
            format!("ECS RAM role {ROLE}"),
            "{report:#}"
        );
        creds["expiresAt"]
            .as_str()
            .map(|t| humantime::parse_rfc3339(t).unwrap())
    };
    let mut expires = None;
    wait_for_within("status to show the keys' expiry", FOLLOW_TIMEOUT, || {
        expires = expiry();
        expires.is_some()
    });
    let (expires, said) = (expires.unwrap(), a.expiration);
    let apart = expires
        .duration_since(said)
        .unwrap_or_else(|e| e.duration());
    assert!(
        apart < Duration::from_secs(1),
        "{expires:?} is not {said:?}"
    );

    let writer = writing_under_the_first_keys(&vol, &bucket_with(&config, &a.id, &a.secret));

    // The rotation: the store takes only the new pair, and the metadata
    // service hands it out. The mount is told nothing.
    server.restart_with_keys(&b.id, &b.secret);
    fake.hand_out(b.clone());
    let with_b = bucket_with(&config, &b.id, &b.secret);
    files_after_the_rotation_arrive(&mut vol, writer, &with_b, pid);

    let seen = fake.seen();
    // Hardened mode: every fetch asked for a session token with its
    // lifetime (the first fetch, and at least the one that brought the
    // new keys)…
    let puts: Vec<_> = seen.iter().filter(|s| s.method == "PUT").collect();
    assert!(puts.len() >= 2, "{seen:#?}");
    for put in &puts {
        let ttl = put.header(TTL_HEADER).and_then(|v| v.parse::<u64>().ok());
        assert!(ttl.is_some_and(|t| t > 0), "{put:?}");
        assert_eq!(put.status, 200, "{put:?}");
    }
    // …and every GET carried one the service had handed out, asking for
    // the named role's keys (never the role list: the role was given).
    let tokens = fake.tokens();
    let gets: Vec<_> = seen.iter().filter(|s| s.method == "GET").collect();
    for get in &gets {
        let token = get.header(TOKEN_HEADER).unwrap_or_default();
        assert!(tokens.iter().any(|t| t == token), "{get:?}");
        assert_eq!(get.path, format!("{ROLES_PATH}{ROLE}"));
        assert_eq!(get.status, 200, "{get:?}");
    }
    assert_eq!(seen.len(), puts.len() + gets.len(), "{seen:#?}");
    // Both key pairs were handed out, the first one first.
    let handed: Vec<&str> = gets
        .iter()
        .filter_map(|g| g.handed_out.as_deref())
        .collect();
    assert_eq!(handed.first(), Some(&a.id.as_str()));
    assert!(handed.contains(&b.id.as_str()), "{handed:?}");

    let mut secrets: Vec<&str> = [&a.id, &a.secret, &a.token, &b.id, &b.secret, &b.token]
        .map(String::as_str)
        .to_vec();
    secrets.extend(tokens.iter().map(String::as_str));
    assert_no_secret_in_logs(&vol, &secrets);
}

/// A profile's keys, as a sidecar writing STS tokens would put them.
struct ProfileKeys {
    id: String,
    secret: String,
    token: String,
    expiration: SystemTime,
}

impl ProfileKeys {
    /// Keys of the same length for every `tag`, so two profiles differ in
    /// content only.
    fn new(tag: char, lifetime: Duration) -> ProfileKeys {
        ProfileKeys {
            id: format!("STS-profile-key-{tag}"),
            secret: format!("profile-secret-{tag}-3hW8"),
            token: format!("profile-token-{tag}-5mR1"),
            expiration: SystemTime::now() + lifetime,
        }
    }

    fn json(&self) -> Vec<u8> {
        format!(
            r#"{{"accessKeyId": "{}", "accessKeySecret": "{}", "sessionToken": "{}", "expiration": "{}"}}"#,
            self.id,
            self.secret,
            self.token,
            humantime::format_rfc3339_seconds(self.expiration)
        )
        .into_bytes()
    }
}

/// What the mount's change check compares: device, inode, size and
/// modification time (to the nanosecond).
fn identity(m: &fs::Metadata) -> (u64, u64, u64, i64, i64) {
    (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec())
}

/// Rewrites `path` in place with `data` (of the same length) and puts its
/// access and modification times back; its identity before and after.
fn rewrite_in_place(path: &Path, data: &[u8]) -> [(u64, u64, u64, i64, i64); 2] {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    let before = file.metadata().unwrap();
    assert_eq!(before.len(), data.len() as u64, "same length");
    file.write_all_at(data, 0).unwrap();
    file.sync_all().unwrap();
    let times = [
        libc::timespec {
            tv_sec: before.atime(),
            tv_nsec: before.atime_nsec(),
        },
        libc::timespec {
            tv_sec: before.mtime(),
            tv_nsec: before.mtime_nsec(),
        },
    ];
    // SAFETY: futimens(2) on an open descriptor with two valid timespecs.
    let rc = unsafe { libc::futimens(std::os::fd::AsRawFd::as_raw_fd(&file), times.as_ptr()) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    [identity(&before), identity(&file.metadata().unwrap())]
}

/// A process stopped with SIGSTOP (every thread of it) until dropped.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Stopped {
        // SAFETY: kill(2) of the test's own mount process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        let stopped = Stopped(pid);
        wait_for_within("the mount process to stop", Duration::from_secs(10), || {
            fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .all(|task| {
                    let stat =
                        fs::read_to_string(task.unwrap().path().join("stat")).unwrap_or_default();
                    let state = stat.rsplit(") ").next().unwrap_or("");
                    state.starts_with('T') || state.starts_with('t')
                })
        });
        stopped
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the process stopped above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// The profile says its keys expire in SHORT_LIFETIME. Its file is then
/// rewritten in place with new keys, keeping its device, inode, size and
/// modification time, while the mount process is stopped (so it cannot
/// look at the file halfway through): the once-a-second change check has
/// nothing to see, and only the expiration rule (read again at half the
/// remaining lifetime, or at expiry at the latest) can bring the new keys
/// in. The store takes only the new keys, so files reaching the bucket
/// after that show the mount read the profile again by itself. Whether the
/// read came before the old keys' expiry depends on when the mount next
/// sends a request, which is the machine's timing; the test does not
/// assert it (no timed assertions).
#[test]
fn a_profile_is_read_again_for_its_expiration_when_its_file_looks_unchanged() {
    require!(Root, Fuse, FastS3);
    let mut server = FastS3Server::start();
    let config = server.new_bucket("profile-expiry");
    let (a, b) = (
        ProfileKeys::new('a', SHORT_LIFETIME),
        ProfileKeys::new('b', LONG_LIFETIME),
    );
    server.restart_with_keys(&a.id, &a.secret);
    let mut vol = PluginVolume::new(&unique("profile-expiry"));
    let name = "sts-sidecar";
    let profile = vol.credentials_dir().join(format!("{name}.json"));
    fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&profile)
        .unwrap()
        .write_all(&a.json())
        .unwrap();
    vol.create_and_mount(json!({
        "type": "s3",
        "bucket": config.bucket,
        "endpoint": config.endpoint,
        "credentials": name,
    }));
    let pid = vol.mount_pid();
    assert_eq!(vol.status()["credentials"], format!("profile {name}"));

    let writer = writing_under_the_first_keys(&vol, &bucket_with(&config, &a.id, &a.secret));

    // The rotation: the store takes only the new pair; the profile gets it
    // without any change the mount's check could see.
    server.restart_with_keys(&b.id, &b.secret);
    let [before, after] = {
        let _stopped = Stopped::new(pid);
        rewrite_in_place(&profile, &b.json())
    };
    assert_eq!(before, after, "device, inode, size and mtime kept");
    let read = opensandbox_volume::credentials::load_profile(vol.credentials_dir(), name).unwrap();
    assert_eq!(read.access_key_id, b.id, "the file holds the new keys");

    let with_b = bucket_with(&config, &b.id, &b.secret);
    files_after_the_rotation_arrive(&mut vol, writer, &with_b, pid);
    let secrets = [&a.id, &a.secret, &a.token, &b.id, &b.secret, &b.token].map(String::as_str);
    assert_no_secret_in_logs(&vol, &secrets);
}
