//! Object-storage volumes (`type=s3`, `type=ossfs`) end to end: the real
//! dockerd, the plugin binary as a legacy driver, its FUSE mount processes,
//! and moto as the S3 server on loopback. Buckets are checked with an
//! independent S3 client.

use crate::common;

use common::docker::{
    Cleanup, SharedPlugin, TEST_DRIVER, dk, docker, docker_fails, docker_ok, image, inspect_volume,
    mounts_of, run_detached, run_sh, unique,
};
use common::objectfs_mount::Bucket;
use common::s3server::{free_port, moto};
use common::wait_for_within;
use objectfs::store::s3::S3Config;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock, RwLockReadGuard};
use std::time::Duration;

static PLUGIN: OnceLock<SharedPlugin> = OnceLock::new();
fn plugin() -> &'static SharedPlugin {
    SharedPlugin::get(&PLUGIN, TEST_DRIVER)
}

/// Tests share one daemon; the one that SIGKILLs it runs alone, since
/// dockerd retries a call cut by the kill with an empty body (the plugin
/// then rightly refuses a Mount without a Name).
static DAEMON: &RwLock<()> = &common::docker::DAEMON;
fn shared_daemon() -> RwLockReadGuard<'static, ()> {
    DAEMON.read().unwrap_or_else(|e| e.into_inner())
}

/// Secrets no log line, Status or error may ever show.
const KEY_ID: &str = "AKIDVISIBLEINLOGS7Q";
const SECRET: &str = "sEcReT-never-in-logs-Zq9";

/// `-o` options of an s3 volume on `config`'s bucket, inline keys.
fn s3_opts(config: &S3Config) -> String {
    format!(
        "-o type=s3 -o bucket={} -o endpoint={} -o accessKeyId={KEY_ID} -o accessKeySecret={SECRET}",
        config.bucket,
        config.endpoint.as_deref().unwrap()
    )
}

fn create(clean: &mut Cleanup, tag: &str, opts: &str) -> String {
    let vol = clean.volume(&unique(tag));
    dk(
        &format!("volume create -d {} {opts} {vol}", plugin().driver),
        &[],
    );
    vol
}

/// The mount process's pid for a volume, from its cache directory.
fn mount_pid(vol: &str) -> u32 {
    let cache = plugin().plugin().state_dir.join("cache").join(vol);
    fs::read_to_string(cache.join("mount.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Running (a zombie is not: an orphaned mount process may never be
/// reaped where PID 1 is not an init).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

#[test]
fn s3_volume_data_is_in_the_bucket_when_docker_run_returns() {
    require!(Root, Dockerd, Moto);
    let _shared = shared_daemon();
    let p = plugin();
    let config = moto().new_bucket("run");
    let bucket = Bucket::new(&config);
    let mut clean = Cleanup::default();

    // docker volume create, then -v.
    let vol = create(&mut clean, "s3run", &s3_opts(&config));
    run_sh(
        &format!("-v {vol}:/data"),
        "mkdir -p /data/out && for i in 1 2 3 4 5; do echo line-$i > /data/out/f$i; done && \
         head -c 3000000 /dev/urandom > /data/big && cat /data/out/f3",
    );
    // No sleep: the last Unmount uploaded everything before returning.
    for i in 1..=5 {
        assert_eq!(
            bucket.get(&format!("out/f{i}")).as_deref(),
            Some(format!("line-{i}\n").as_bytes()),
            "out/f{i}"
        );
    }
    assert_eq!(bucket.head("big").unwrap().size, 3_000_000);
    assert_eq!(mounts_of(&vol), 0);

    // --mount with volume-opt (created on first use), without --rm: the
    // data must be there as soon as `docker run` returns too.
    let vol2 = clean.volume(&unique("s3mount"));
    let name = clean.container(&unique("s3mount-c"));
    let mount = format!(
        "type=volume,src={vol2},dst=/data,volume-driver={},volume-opt=type=s3,volume-opt=bucket={},volume-opt=endpoint={},volume-opt=prefix=via-mount,volume-opt=accessKeyId={KEY_ID},volume-opt=accessKeySecret={SECRET}",
        p.driver,
        config.bucket,
        config.endpoint.as_deref().unwrap()
    );
    docker_ok(&[
        "run",
        "--name",
        &name,
        "--mount",
        &mount,
        &image(),
        "sh",
        "-c",
        "echo hello > /data/hello.txt",
    ]);
    assert_eq!(
        bucket.get("via-mount/hello.txt").as_deref(),
        Some(&b"hello\n"[..])
    );

    // Status shows where the data goes and never a secret.
    let v = inspect_volume(&vol);
    let status = &v["Status"];
    assert_eq!(status["type"], "s3");
    assert_eq!(status["bucket"], config.bucket.as_str());
    assert_eq!(status["endpoint"], config.endpoint.as_deref().unwrap());
    assert_eq!(status["mount"], "not mounted");
    assert_eq!(status["credentials"], "inline keys (hidden)");
    // (Docker itself shows the -o options under "Options": that is why
    // credential profiles exist.)
    let text = status.to_string();
    assert!(!text.contains(SECRET) && !text.contains(KEY_ID), "{text}");
}

#[test]
fn two_containers_share_one_mount_and_read_only_and_sub_path_hold() {
    require!(Root, Dockerd, Moto);
    let _shared = shared_daemon();
    let p = plugin();
    let config = moto().new_bucket("share");
    let bucket = Bucket::new(&config);
    bucket.put("outside.txt", b"not yours");
    bucket.put("inner/seed.txt", b"seed");
    let mut clean = Cleanup::default();

    let vol = create(&mut clean, "s3share", &s3_opts(&config));
    let a = clean.container(&unique("share-a"));
    run_detached(
        &a,
        &format!("-v {vol}:/data"),
        "echo from-a > /data/a.txt; while [ ! -e /data/b.txt ]; do sleep 0.1; done; cat /data/b.txt; sleep 600",
    );
    wait_for_within("container a's file", Duration::from_secs(30), || {
        bucket.get("a.txt").is_some() || mounts_of(&vol) == 1
    });
    let seen = run_sh(
        &format!("-v {vol}:/data"),
        "while [ ! -e /data/a.txt ]; do sleep 0.1; done; cat /data/a.txt; echo from-b > /data/b.txt",
    );
    assert_eq!(seen, "from-a");
    wait_for_within("a to see b's file", Duration::from_secs(30), || {
        dk(&format!("logs {a}"), &[]).contains("from-b")
    });
    // The Status of a mounted volume: what still waits for the bucket and
    // what the cache holds (the mount refreshes its report every second).
    // a.txt and b.txt are 7 bytes each.
    let mut last = serde_json::Value::Null;
    let reported = (0..100).any(|_| {
        last = inspect_volume(&vol)["Status"].clone();
        let ok = last["mount"] == "mounted"
            && last["pendingUploadBytes"].is_u64()
            && last["pendingChanges"].is_u64()
            && last["cacheBytes"] == 14;
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(reported, "the mounted volume's status: {last}");
    assert_eq!(mounts_of(&vol), 1, "b's Unmount left a's mount alone");
    dk(&format!("rm -f {a}"), &[]);
    assert_eq!(mounts_of(&vol), 0);
    assert_eq!(bucket.get("b.txt").as_deref(), Some(&b"from-b\n"[..]));

    // readOnly: every write fails with EROFS, reads work.
    let ro = create(
        &mut clean,
        "s3ro",
        &format!("{} -o readOnly=true", s3_opts(&config)),
    );
    let out = run_sh(
        &format!("-v {ro}:/data"),
        "cat /data/outside.txt; echo; touch /data/new 2>&1; true",
    );
    assert!(out.starts_with("not yours"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(bucket.head("new").is_none());

    // subPath: confined to inner/; outside is neither visible nor touched.
    let sub = create(
        &mut clean,
        "s3sub",
        &format!("{} -o subPath=inner", s3_opts(&config)),
    );
    let out = run_sh(
        &format!("-v {sub}:/data"),
        "ls /data; echo made > /data/made.txt; rm -f /data/outside.txt",
    );
    assert_eq!(out, "seed.txt");
    assert_eq!(
        bucket.get("inner/made.txt").as_deref(),
        Some(&b"made\n"[..])
    );
    assert_eq!(
        bucket.get("outside.txt").as_deref(),
        Some(&b"not yours"[..])
    );
    let _ = p;
}

/// `attrsFromListing=true` reaches the mount process: a listing shows the
/// listing's attributes (the default mode) where a default volume shows the
/// mode kept in the object's metadata.
#[test]
fn attrs_from_listing_is_passed_to_the_mount() {
    require!(Root, Dockerd, Moto);
    let _shared = shared_daemon();
    let config = moto().new_bucket("listattrs");
    let bucket = Bucket::new(&config);
    let mut clean = Cleanup::default();
    let exact = create(&mut clean, "s3exact", &s3_opts(&config));
    // Over 1 KiB: smaller objects are HEADed anyway (they may be symlinks).
    run_sh(
        &format!("-v {exact}:/data"),
        "head -c 4096 /dev/zero > /data/tool.sh && chmod 755 /data/tool.sh",
    );
    assert!(bucket.head("tool.sh").is_some());
    let mode_in = |vol: &str| {
        run_sh(
            &format!("-v {vol}:/data"),
            "ls -l /data | awk '$NF == \"tool.sh\" { print $1 }'",
        )
    };
    assert_eq!(mode_in(&exact), "-rwxr-xr-x");
    let listed = create(
        &mut clean,
        "s3listed",
        &format!("{} -o attrsFromListing=true", s3_opts(&config)),
    );
    assert_eq!(mode_in(&listed), "-rw-r--r--");

    let bad = clean.volume(&unique("s3badbool"));
    let create = format!(
        "volume create -d {} {} -o attrsFromListing=maybe {bad}",
        plugin().driver,
        s3_opts(&config)
    );
    let out = docker(&create.split_whitespace().collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(r#"option `attrsFromListing`="maybe" must be true or false"#),
        "{stderr}"
    );
}

#[test]
fn ossfs_options_map_and_unknown_ones_are_refused_by_name() {
    require!(Root, Dockerd, Moto);
    let _shared = shared_daemon();
    let p = plugin();
    let config = moto().new_bucket("ossfs");
    let bucket = Bucket::new(&config);
    bucket.put("agents/plain.txt", b"no metadata");
    let mut clean = Cleanup::default();

    let opts = format!(
        "-o type=ossfs -o bucket={} -o endpoint={} -o accessKeyId={KEY_ID} -o accessKeySecret={SECRET} -o path=/agents -o version=1.0",
        config.bucket,
        config.endpoint.as_deref().unwrap()
    );
    // ossfs 1.0 options as sandbox configurations carry them: mapped ones
    // take effect, tuning objectfs has no setting for is noted.
    let vol = create(
        &mut clean,
        "ossfs",
        &format!(
            "{opts} -o options=allow_other,uid=1234,gid=2345,umask=027,kernel_cache,max_stat_cache_size=1000,stat_cache_expire=2"
        ),
    );
    let out = run_sh(
        &format!("-v {vol}:/data"),
        "stat -c '%u:%g:%a' /data/plain.txt; echo x > /data/written.txt",
    );
    assert_eq!(out, "1234:2345:640");
    assert_eq!(
        bucket.get("agents/written.txt").as_deref(),
        Some(&b"x\n"[..])
    );
    let status = &inspect_volume(&vol)["Status"];
    assert_eq!(status["type"], "ossfs");
    assert_eq!(status["version"], "1.0");
    assert_eq!(status["prefix"], "agents/");
    let notes: Vec<&str> = status["ignoredOptions"]
        .as_array()
        .unwrap_or_else(|| panic!("no ignoredOptions in {status}"))
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].starts_with("kernel_cache: accepted without effect; objectfs "),
        "{notes:?}"
    );
    assert!(
        notes[1].starts_with("max_stat_cache_size=1000: accepted without effect; "),
        "{notes:?}"
    );
    let log = fs::read_to_string(&p.plugin().log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("ossfs option accepted without effect")
                && l.contains(&vol)
                && l.contains("max_stat_cache_size=1000")),
        "no log line for {vol}"
    );

    let err = docker_fails(&[
        "volume",
        "create",
        "-d",
        &p.driver,
        "-o",
        "type=ossfs",
        "-o",
        &format!("bucket={}", config.bucket),
        "-o",
        "endpoint=oss-cn-hangzhou.aliyuncs.com",
        "-o",
        "options=allow_other,no_such_option=1",
        &unique("ossfs-bad"),
    ]);
    assert!(
        err.contains("ossfs option `no_such_option` in `options` is not an ossfs 2.0 option"),
        "{err}"
    );
    assert!(err.contains("allow_other"), "the known list: {err}");
    // An option of the other version, by name and version.
    let err = docker_fails(&[
        "volume",
        "create",
        "-d",
        &p.driver,
        "-o",
        "type=ossfs",
        "-o",
        &format!("bucket={}", config.bucket),
        "-o",
        "endpoint=oss-cn-hangzhou.aliyuncs.com",
        "-o",
        "version=1.0",
        "-o",
        "options=upload_concurrency=64",
        &unique("ossfs-bad-version"),
    ]);
    assert!(
        err.contains("`upload_concurrency` in `options` is an ossfs 2.0 option, and this volume is version=1.0"),
        "{err}"
    );
}

#[test]
fn credential_profiles_keep_secrets_out_of_docker_and_logs() {
    require!(Root, Dockerd, Moto);
    let _shared = shared_daemon();
    let p = plugin();
    let config = moto().new_bucket("profile");
    let bucket = Bucket::new(&config);
    let mut clean = Cleanup::default();
    let creds = p.plugin().credentials_dir.clone();
    fs::create_dir_all(&creds).unwrap();
    let profile = creds.join("team-a.json");
    fs::write(
        &profile,
        format!(r#"{{"accessKeyId": "{KEY_ID}", "accessKeySecret": "{SECRET}"}}"#),
    )
    .unwrap();
    fs::set_permissions(&profile, fs::Permissions::from_mode(0o600)).unwrap();

    let vol = create(
        &mut clean,
        "profile",
        &format!(
            "-o type=s3 -o bucket={} -o endpoint={} -o credentials=team-a",
            config.bucket,
            config.endpoint.as_deref().unwrap()
        ),
    );
    run_sh(&format!("-v {vol}:/data"), "echo via-profile > /data/p.txt");
    assert_eq!(bucket.get("p.txt").as_deref(), Some(&b"via-profile\n"[..]));
    let v = inspect_volume(&vol);
    assert_eq!(v["Status"]["credentials"], "profile team-a");

    // A profile that does not exist is refused at Create.
    let err = docker_fails(&[
        "volume",
        "create",
        "-d",
        &p.driver,
        "-o",
        "type=s3",
        "-o",
        &format!("bucket={}", config.bucket),
        "-o",
        "credentials=nobody",
        &unique("noprofile"),
    ]);
    assert!(err.contains("nobody"), "{err}");

    // A volume with inline keys, whose state file must hold them sealed.
    let inline = clean.volume(&unique("inline-sealed"));
    dk(
        &format!(
            "volume create -d {} {} {inline}",
            p.driver,
            s3_opts(&config)
        ),
        &[],
    );

    // Neither the daemon's debug log, its state files, the mount logs nor
    // inspect show a secret (inline keys of the other tests included).
    let plugin = p.plugin();
    let mut places: Vec<(String, String)> = vec![
        ("plugin log".into(), plugin.log_text()),
        ("inspect Status".into(), v["Status"].to_string()),
    ];
    for dir in [plugin.state_dir.join("logs")] {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            // Remove deletes a volume's log: another test's may go meanwhile.
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            places.push((path.display().to_string(), text));
        }
    }
    let record = fs::read_dir(plugin.state_dir.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|path| fs::read_to_string(path).unwrap().contains("team-a"))
        .expect("the profile volume's state file");
    places.push(("state file".into(), fs::read_to_string(&record).unwrap()));
    let sealed = plugin
        .state_dir
        .join("volumes")
        .join(format!("{inline}.json"));
    let text = fs::read_to_string(&sealed).unwrap();
    assert!(
        text.contains("\"sealed\""),
        "inline keys are sealed:\n{text}"
    );
    places.push(("state file".into(), text));
    for (what, text) in places {
        assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
        if what == "state file" {
            assert!(!text.contains(KEY_ID), "{what} shows the key id:\n{text}");
        }
    }
}

/// Which of `secrets` `/proc/PID/cmdline` or `/proc/PID/environ` shows,
/// as "FILE shows SECRET".
fn proc_shows(pid: u32, secrets: &[&str]) -> Vec<String> {
    let mut shown = Vec::new();
    for file in ["cmdline", "environ"] {
        let bytes = fs::read(format!("/proc/{pid}/{file}")).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            if text.contains(secret) {
                shown.push(format!("{file} shows {secret}"));
            }
        }
    }
    shown
}

/// The plugin hands a mount process its keys on stdin: neither its
/// arguments nor its environment (`ps e`, /proc) show a key id, secret or
/// session token, whether the keys are inline or from a profile.
#[test]
fn mount_processes_show_no_key_in_arguments_or_environment() {
    let _shared = shared_daemon();
    let p = plugin();
    let config = moto().new_bucket("procenv");
    let mut clean = Cleanup::default();

    // The check itself catches a key in either place.
    let mut canary = std::process::Command::new("sh")
        .args(["-c", "sleep 30; true", "canary", KEY_ID])
        .env("OSV_ACCESS_KEY_SECRET", SECRET)
        .spawn()
        .unwrap();
    let canary_cmdline = format!("/proc/{}/cmdline", canary.id());
    wait_for_within("the canary to exec", Duration::from_secs(5), || {
        fs::read(&canary_cmdline).is_ok_and(|c| c.starts_with(b"sh\0-c\0"))
    });
    let caught = proc_shows(canary.id(), &[KEY_ID, SECRET]);
    let _ = canary.kill();
    let _ = canary.wait();
    assert_eq!(
        caught,
        [
            format!("cmdline shows {KEY_ID}"),
            format!("environ shows {SECRET}")
        ]
    );

    const TOKEN: &str = "sEsSiOn-tOkEn-not-in-proc-4Kd";
    const PROFILE_KEY_ID: &str = "AKIDPROFILEPROC9X";
    const PROFILE_SECRET: &str = "pRoFiLe-secret-not-in-proc-Vb2";
    const PROFILE_TOKEN: &str = "pRoFiLe-token-not-in-proc-Hq5";
    let inline = create(
        &mut clean,
        "procinline",
        &format!("{} -o sessionToken={TOKEN}", s3_opts(&config)),
    );
    let creds = p.plugin().credentials_dir.clone();
    fs::create_dir_all(&creds).unwrap();
    let profile = creds.join("proc-b.json");
    fs::write(
        &profile,
        format!(
            r#"{{"accessKeyId": "{PROFILE_KEY_ID}", "accessKeySecret": "{PROFILE_SECRET}", "sessionToken": "{PROFILE_TOKEN}"}}"#
        ),
    )
    .unwrap();
    fs::set_permissions(&profile, fs::Permissions::from_mode(0o600)).unwrap();
    let profiled = create(
        &mut clean,
        "procprofile",
        &format!(
            "-o type=s3 -o bucket={} -o endpoint={} -o credentials=proc-b",
            config.bucket,
            config.endpoint.as_deref().unwrap()
        ),
    );
    let secrets = [
        KEY_ID,
        SECRET,
        TOKEN,
        PROFILE_KEY_ID,
        PROFILE_SECRET,
        PROFILE_TOKEN,
    ];
    for vol in [inline, profiled] {
        let c = clean.container(&unique("procenv-c"));
        run_detached(
            &c,
            &format!("-v {vol}:/data"),
            "echo up > /data/up.txt && sleep 120",
        );
        wait_for_within(
            "the container to mount the volume",
            Duration::from_secs(30),
            || mounts_of(&vol) == 1,
        );
        let pid = mount_pid(&vol);
        assert!(alive(pid), "{vol}: the mount process runs");
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            String::from_utf8_lossy(&cmdline).contains("--config-stdin"),
            "{vol}: pid {pid} is the mount process"
        );
        let shown = proc_shows(pid, &secrets);
        assert!(shown.is_empty(), "{vol}: {shown:?}");
        dk(&format!("rm -f {c}"), &[]);
        assert_eq!(mounts_of(&vol), 0);
    }
}

#[test]
fn sigkill_of_the_daemon_does_not_disturb_a_writing_container() {
    require!(Root, Dockerd, Moto);
    let _alone = DAEMON.write().unwrap_or_else(|e| e.into_inner());
    let p = plugin();
    let config = moto().new_bucket("sigkill");
    let bucket = Bucket::new(&config);
    let mut clean = Cleanup::default();
    let vol = create(&mut clean, "s3kill", &s3_opts(&config));
    let c = clean.container(&unique("s3kill-c"));
    // 400 lines over ~8 s, each appended and the file reopened every time.
    run_detached(
        &c,
        &format!("-v {vol}:/data"),
        "i=0; while [ $i -lt 400 ]; do echo line-$i >> /data/stream.log || exit 7; i=$((i+1)); sleep 0.02; done",
    );
    wait_for_within(
        "the container to start writing",
        Duration::from_secs(30),
        || mounts_of(&vol) == 1,
    );
    let pid = mount_pid(&vol);
    std::thread::sleep(Duration::from_secs(1));
    {
        let mut daemon = p.plugin();
        daemon.kill();
        std::thread::sleep(Duration::from_millis(500));
        assert!(alive(pid), "the mount process outlives the daemon");
        daemon.restart();
    }
    let code = dk(&format!("wait {c}"), &[]);
    assert_eq!(code, "0", "the container saw no error");
    assert_eq!(
        mount_pid(&vol),
        pid,
        "the restarted daemon adopted the mount"
    );
    dk(&format!("rm {c}"), &[]);
    assert_eq!(mounts_of(&vol), 0);
    assert!(!alive(pid), "the last Unmount stopped the mount process");
    let data = String::from_utf8(bucket.get("stream.log").unwrap()).unwrap();
    let want: String = (0..400).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(data, want);
}

#[test]
fn a_killed_mount_process_is_replaced_and_its_staged_data_uploaded() {
    require!(Root, Dockerd, Moto);
    let _shared = shared_daemon();
    let config = moto().new_bucket("mountkill");
    let bucket = Bucket::new(&config);
    let mut clean = Cleanup::default();
    let vol = create(&mut clean, "s3mk", &s3_opts(&config));
    let c = clean.container(&unique("s3mk-c"));
    run_detached(
        &c,
        &format!("-v {vol}:/data"),
        "head -c 200000 /dev/urandom > /data/staged.bin && sha256sum /data/staged.bin > /tmp/sum && touch /data/done; sleep 600",
    );
    let cache: PathBuf = plugin().plugin().state_dir.join("cache").join(&vol);
    // Every byte staged (not just the first: a kill in the middle of the
    // write rightly keeps only what was written) and not yet uploaded,
    // which waits for close and then the 1 s upload delay.
    wait_for_within("the write to be staged", Duration::from_secs(30), || {
        largest_staged_file(&cache) == 200_000
    });
    let pid = mount_pid(&vol);
    // SAFETY: kill(2) of the mount process this test found.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_for_within("the mount process to die", Duration::from_secs(10), || {
        !alive(pid)
    });
    dk(&format!("rm -f {c}"), &[]);
    // The next container gets a fresh, working mount, which uploads what
    // the dead one had staged before serving.
    let out = run_sh(
        &format!("-v {vol}:/data"),
        "wc -c < /data/staged.bin; echo after > /data/after.txt",
    );
    assert_eq!(out, "200000");
    assert_ne!(mount_pid(&vol), pid);
    assert_eq!(bucket.head("staged.bin").unwrap().size, 200_000);
    assert_eq!(bucket.get("after.txt").as_deref(), Some(&b"after\n"[..]));
}

/// The size of the largest staging file in a volume's cache directory.
fn largest_staged_file(cache: &Path) -> u64 {
    let Ok(dir) = fs::read_dir(cache.join("staging")) else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

#[test]
fn storage_down_at_mount_is_a_clear_error_and_other_volumes_work() {
    require!(Root, Dockerd, Moto);
    let _shared = shared_daemon();
    let config = moto().new_bucket("down");
    let bucket = Bucket::new(&config);
    let mut clean = Cleanup::default();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let bad = create(
        &mut clean,
        "s3down",
        &format!(
            "-o type=s3 -o bucket={} -o endpoint={dead} -o accessKeyId=k -o accessKeySecret=s",
            config.bucket
        ),
    );
    let good = create(&mut clean, "s3up", &s3_opts(&config));
    let started = std::time::Instant::now();
    let out = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{bad}:/data"),
        &image(),
        "true",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&config.bucket) && err.contains("could not be mounted"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(mounts_of(&bad), 0);
    run_sh(&format!("-v {good}:/data"), "echo fine > /data/ok.txt");
    assert_eq!(bucket.get("ok.txt").as_deref(), Some(&b"fine\n"[..]));
    let bucket_missing = create(
        &mut clean,
        "s3nobucket",
        &format!(
            "-o type=s3 -o bucket=no-such-bucket-{} -o endpoint={} -o accessKeyId=k -o accessKeySecret=s",
            std::process::id(),
            config.endpoint.as_deref().unwrap()
        ),
    );
    let out = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{bucket_missing}:/data"),
        &image(),
        "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NoSuchBucket"),
        "the storage's own reason: {err}"
    );
}
