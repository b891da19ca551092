//! Credentials that change under a running mount (issue 15), end to end:
//! the real dockerd, the plugin as a legacy driver, s3s-fs (which checks
//! signatures, and is restarted with a new key pair to rotate keys). A
//! container writes all along; the mount follows the new keys without a
//! remount, and every file the container wrote is in the bucket.

use crate::common;

use common::docker::{
    Cleanup, SharedPlugin, TEST_DRIVER, dk, inspect_volume, mounts_of, run_detached, unique,
};
use common::fast_s3::FastS3Server;
use common::objectfs_mount::Bucket;
use common::wait_for_within;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{OnceLock, RwLockReadGuard};
use std::time::Duration;

static PLUGIN: OnceLock<SharedPlugin> = OnceLock::new();
fn plugin() -> &'static SharedPlugin {
    SharedPlugin::get(&PLUGIN, TEST_DRIVER)
}

fn shared_daemon() -> RwLockReadGuard<'static, ()> {
    common::docker::DAEMON
        .read()
        .unwrap_or_else(|e| e.into_inner())
}

/// Writes a profile as a rotation job would: a new file renamed over the
/// old one, mode 0600 from the start.
fn write_profile(path: &Path, id: &str, secret: &str) {
    let tmp = path.with_extension("json.tmp");
    fs::write(
        &tmp,
        format!(r#"{{"accessKeyId": "{id}", "accessKeySecret": "{secret}"}}"#),
    )
    .unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

#[test]
fn a_rotated_profile_is_used_by_the_running_mount_and_nothing_is_lost() {
    require!(Root, Dockerd, FastS3);
    let _shared = shared_daemon();
    let p = plugin();
    let mut server = FastS3Server::start();
    let config = server.new_bucket("rotation");
    let mut clean = Cleanup::default();
    let creds = p.plugin().credentials_dir.clone();
    fs::create_dir_all(&creds).unwrap();
    let name = unique("rot");
    let profile = creds.join(format!("{name}.json"));
    write_profile(&profile, "test", "test");

    let vol = clean.volume(&unique("rotation"));
    dk(
        &format!(
            "volume create -d {} -o type=s3 -o bucket={} -o endpoint={} -o credentials={name} {vol}",
            p.driver,
            config.bucket,
            config.endpoint.as_deref().unwrap()
        ),
        &[],
    );
    // 60 files over about 6 s. While the old keys are refused and the new
    // ones not yet read, creating a name can fail (its lookup is refused):
    // the writer tries again, as a program would; a write that succeeded
    // must reach the bucket.
    let c = clean.container(&unique("rotation-c"));
    run_detached(
        &c,
        &format!("-v {vol}:/data"),
        "i=0; while [ $i -lt 60 ]; do \
           t=0; until echo file-$i > /data/f$i; do t=$((t+1)); [ $t -gt 100 ] && exit 7; sleep 0.1; done; \
           i=$((i+1)); sleep 0.1; done",
    );
    wait_for_within("the container to write", Duration::from_secs(30), || {
        mounts_of(&vol) == 1
    });
    let cache = p.plugin().state_dir.join("cache").join(&vol);
    let pid = fs::read_to_string(cache.join("mount.pid")).unwrap();
    std::thread::sleep(Duration::from_secs(2));

    // The rotation: the store takes only the new pair, then the profile
    // says so.
    server.restart_with_keys("rotated-key", "rotated-secret");
    write_profile(&profile, "rotated-key", "rotated-secret");

    assert_eq!(dk(&format!("wait {c}"), &[]), "0", "the writer gave up");
    let mut rotated = config.clone();
    rotated.access_key_id = Some("rotated-key".into());
    rotated.access_key_secret = Some("rotated-secret".into());
    let bucket = Bucket::new(&rotated);
    wait_for_within("every file in the bucket", Duration::from_secs(60), || {
        (0..60).all(|i| bucket.get(&format!("f{i}")).is_some())
    });
    for i in 0..60 {
        assert_eq!(
            bucket.get(&format!("f{i}")).unwrap(),
            format!("file-{i}\n").into_bytes()
        );
    }
    assert_eq!(
        fs::read_to_string(cache.join("mount.pid")).unwrap(),
        pid,
        "no remount"
    );
    let status = inspect_volume(&vol)["Status"].clone();
    assert_eq!(status["credentials"], format!("profile {name}"));
    assert!(status["storeError"].is_null(), "{status}");
    dk(&format!("rm {c}"), &[]);
    let _ = fs::remove_file(&profile);
}
