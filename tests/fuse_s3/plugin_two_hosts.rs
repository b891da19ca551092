//! The cross-host contract of docs/SEMANTICS.md ("Between hosts") through
//! the whole plugin path: two plugin daemons, each with its own state
//! directory, as two hosts would run them, each given the same `s3` volume
//! (same bucket, prefix and `metadataTtl`) with the requests dockerd sends
//! (tests/common/plugin_volume.rs), and the test reading and writing the
//! two mount points as containers would.
//!
//! - What A writes and fsyncs (a new file, an overwrite, a delete), B sees
//!   at its next open once the metadata TTL has passed.
//! - Two writers of one key: the last upload wins, whole, in the bucket
//!   and on both hosts, and stays so when both volumes are unmounted.
//! - A's mount process killed with a write not uploaded, B writing the
//!   name meanwhile: when A's volume is mounted again, B's object stays,
//!   A's bytes are beside it under the conflict name, and A's volume log
//!   says so once.
//!
//! The mount-level variety (appends, renames, listings, many files at
//! once, the same size and mtime) is tests/fuse_s3/objectfs_two_mounts.rs,
//! whose helpers these share; this file shows that the volume options
//! carry the contract through the plugin.

use crate::common;
use crate::objectfs_conflicts::assert_kept_beside;
use crate::objectfs_two_mounts::{
    TTL, content, expect_absent, expect_reads, sync_dir, wait_past_ttl, write_synced,
};

use common::objectfs_mount::Bucket;
use common::plugin_volume::PluginVolume;
use common::s3server::moto;
use serde_json::json;
use std::fs;
use std::io::Write;
use std::time::Instant;

/// The key prefix both hosts' volumes have.
const PREFIX: &str = "shared";

/// The same volume on two hosts (A and B), each served by a plugin daemon
/// of its own, and a client for the bucket.
struct TwoHosts {
    a: PluginVolume,
    b: PluginVolume,
    bucket: Bucket,
}

impl TwoHosts {
    /// A fresh bucket, and on each host a volume of it created and
    /// mounted with the same options: the shared prefix, the TTL of
    /// objectfs_two_mounts, async uploads.
    fn start(name: &str) -> TwoHosts {
        let config = moto().new_bucket(name);
        let opts = json!({
            "type": "s3",
            "bucket": config.bucket,
            "endpoint": config.endpoint,
            "prefix": PREFIX,
            "accessKeyId": "test",
            "accessKeySecret": "test",
            "metadataTtl": TTL.as_secs_f64().to_string(),
            "upload": "async",
        });
        let mut a = PluginVolume::new("work");
        a.create_and_mount(opts.clone());
        let mut b = PluginVolume::new("work");
        b.create_and_mount(opts);
        assert_ne!(a.mountpoint, b.mountpoint, "each host mounts its own");
        TwoHosts {
            a,
            b,
            bucket: Bucket::new(&config),
        }
    }

    /// The object key of `rel`.
    fn key(rel: &str) -> String {
        format!("{PREFIX}/{rel}")
    }
}

#[test]
fn what_a_syncs_b_sees_at_its_next_open_after_the_ttl() {
    require!(Root, Fuse, Moto);
    let hosts = TwoHosts::start("plugin-two-hosts-see");
    let (a, b, key) = (&hosts.a, &hosts.b, TwoHosts::key("f.txt"));
    let (first, second) = (content(1, 3000), content(2, 70_000));

    // A new file: B has looked for it already (and may keep that it is
    // not there for the TTL).
    expect_absent("B, before A writes", &b.path("f.txt"));
    let b_looked = Instant::now();
    write_synced(&a.path("f.txt"), &first);
    assert_eq!(hosts.bucket.get(&key).as_deref(), Some(&first[..]));
    wait_past_ttl(b_looked);
    expect_reads("B, A's new file", &b.path("f.txt"), &first);
    let b_looked = Instant::now();

    // An overwrite of what B has read.
    write_synced(&a.path("f.txt"), &second);
    assert_eq!(hosts.bucket.get(&key).as_deref(), Some(&second[..]));
    wait_past_ttl(b_looked);
    expect_reads("B, A's overwrite", &b.path("f.txt"), &second);
    let b_looked = Instant::now();

    // A delete: queued (upload=async), sent by the directory's fsync.
    fs::remove_file(a.path("f.txt")).unwrap();
    sync_dir(a.mountpoint.as_ref().unwrap());
    assert_eq!(hosts.bucket.get(&key), None);
    wait_past_ttl(b_looked);
    expect_absent("B, A's delete", &b.path("f.txt"));
}

/// Both hosts have the name open and written at once; A's fsync uploads
/// first, B's last. B's bytes win, whole: A's are longer, so a mix of the
/// two would show in the length as well as in the bytes.
#[test]
fn two_writers_of_one_key_the_last_upload_wins_whole() {
    require!(Root, Fuse, Moto);
    let mut hosts = TwoHosts::start("plugin-two-hosts-race");
    let key = TwoHosts::key("same.bin");
    let from_a = content(10, 3 << 20);
    let from_b = content(11, (2 << 20) + 777);
    let mut on_a = fs::File::create(hosts.a.path("same.bin")).unwrap();
    let mut on_b = fs::File::create(hosts.b.path("same.bin")).unwrap();
    let (a_half, b_half) = (from_a.len() / 2, from_b.len() / 2);
    on_a.write_all(&from_a[..a_half]).unwrap();
    on_b.write_all(&from_b[..b_half]).unwrap();
    on_a.write_all(&from_a[a_half..]).unwrap();
    on_b.write_all(&from_b[b_half..]).unwrap();
    on_a.sync_all().unwrap();
    assert_eq!(hosts.bucket.get(&key).as_deref(), Some(&from_a[..]));
    on_b.sync_all().unwrap();
    assert_eq!(hosts.bucket.get(&key).as_deref(), Some(&from_b[..]));
    drop((on_a, on_b));
    let looked = Instant::now();

    wait_past_ttl(looked);
    expect_reads("A, after B's upload", &hosts.a.path("same.bin"), &from_b);
    expect_reads("B, its own upload", &hosts.b.path("same.bin"), &from_b);
    // Nothing either host still holds changes that: unmounting uploads
    // whatever is pending, and leaves B's bytes, and nothing else.
    hosts.a.unmount_and_remove();
    hosts.b.unmount_and_remove();
    assert_eq!(hosts.bucket.keys(PREFIX), [key.as_str()]);
    assert_eq!(hosts.bucket.get(&key).as_deref(), Some(&from_b[..]));
}

/// A's mount process dies (SIGKILL) with a write staged and not uploaded:
/// the file is still open, and async uploads start only after close. B
/// then writes the name and fsyncs. A's volume mounted again (the next
/// container) recovers the staged write beside B's object.
#[test]
fn a_crashed_hosts_recovery_keeps_the_other_hosts_newer_object() {
    require!(Root, Fuse, Moto);
    let mut hosts = TwoHosts::start("plugin-two-hosts-crash");
    let key = TwoHosts::key("f.txt");
    let staged = b"from A, staged when its mount process died".to_vec();
    let newer = b"from B, written after A died".to_vec();
    let mut on_a = fs::File::create(hosts.a.path("f.txt")).unwrap();
    on_a.write_all(&staged).unwrap();
    hosts.a.kill_mount_process();
    // Its close fails on the dead mount, which is no matter: the data was
    // staged and journalled by the write.
    drop(on_a);
    assert_eq!(hosts.bucket.get(&key), None, "nothing of A's uploaded");

    write_synced(&hosts.b.path("f.txt"), &newer);
    hosts.a.remount();
    let conflict = assert_kept_beside(
        &hosts.bucket,
        &key,
        &newer,
        &staged,
        &hosts.a.mount_log(),
        "a HEAD found another object",
    );
    // A's volume shows both versions, under their names.
    expect_reads("A, after recovery", &hosts.a.path("f.txt"), &newer);
    let beside = &conflict[PREFIX.len() + 1..];
    expect_reads("A, its own bytes", &hosts.a.path(beside), &staged);
}
