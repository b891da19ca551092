//! Two mounts of one bucket prefix, as two hosts would have them: two
//! `opensandbox-volume mount` processes over the same bucket and prefix,
//! each with its own cache directory. What one changes (a new file, an
//! overwrite, an append, renames, deletes) the other sees at its next look
//! once the metadata TTL has passed, exactly and never the old bytes again;
//! both writing at once lose nothing. This guards any local data cache: a
//! mount may serve what it last saw for at most the TTL.
//!
//! The plugin's view of the same contract, through two plugin daemons, is
//! tests/fuse_s3/plugin_two_hosts.rs, which uses the helpers marked
//! `pub(crate)` here.
//!
//! "Upload done" is observed, not slept for: most steps fsync on the writer
//! (objectfs uploads then and there) and check the bucket with an
//! independent client; the async cases poll the other mount with a
//! deadline. The only sleeps wait until a mount's last look is older than
//! the TTL.

use crate::common;

use common::objectfs_mount::{Bucket, Mounted};
use common::s3server::moto;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

/// The metadata TTL of both mounts.
pub(crate) const TTL: Duration = Duration::from_secs(1);

/// Added to the TTL before a mount must have forgotten what it saw.
const TTL_MARGIN: Duration = Duration::from_millis(500);

/// How long an async upload plus the TTL may take before the other mount
/// must show it (a bound for a hung test, not a speed check).
const POLL_DEADLINE: Duration = Duration::from_secs(20);

/// The key prefix both mounts share.
const PREFIX: &str = "shared";

/// Two mounts ("hosts" A and B) of one bucket prefix, and a client for
/// the bucket. The mounts are dropped before their directories.
struct TwoHosts {
    a: Mounted,
    b: Mounted,
    bucket: Bucket,
    config: objectfs::store::s3::S3Config,
    base: tempfile::TempDir,
}

impl TwoHosts {
    /// A fresh bucket mounted twice, each mount with its own cache
    /// directory, both with the TTL above and async uploads after the
    /// default delay.
    fn start(name: &str) -> TwoHosts {
        let base = tempfile::tempdir().unwrap();
        let config = moto().new_bucket(name);
        let a = mount(&base.path().join("host-a"), &config);
        let b = mount(&base.path().join("host-b"), &config);
        assert_ne!(a.cache, b.cache, "each host has its own cache directory");
        TwoHosts {
            bucket: Bucket::new(&config),
            a,
            b,
            config,
            base,
        }
    }

    /// The object key of `rel` under the shared prefix.
    fn key(rel: &str) -> String {
        format!("{PREFIX}/{rel}")
    }
}

/// One "host": a mount of `config` under `base` with its own cache directory.
fn mount(base: &Path, config: &objectfs::store::s3::S3Config) -> Mounted {
    let ttl = TTL.as_secs_f64().to_string();
    Mounted::start(
        base,
        config,
        PREFIX,
        &["--metadata-ttl", &ttl, "--upload", "async"],
    )
}

/// Text of exactly `len` bytes, different for each `seed`.
pub(crate) fn content(seed: u32, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut line = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("seed {seed:04} line {line:08}\n").as_bytes());
        line += 1;
    }
    out.truncate(len);
    out
}

/// What a read returned, short enough for a failure message.
fn summary(r: &io::Result<Vec<u8>>) -> String {
    match r {
        Ok(data) if data.len() <= 48 => format!("{:?}", String::from_utf8_lossy(data)),
        Ok(data) => format!(
            "{} bytes starting {:?}",
            data.len(),
            String::from_utf8_lossy(&data[..48])
        ),
        Err(e) => format!("error {e}"),
    }
}

/// Creates or truncates `path`, writes `data` and fsyncs (objectfs uploads
/// on fsync) before closing.
pub(crate) fn write_synced(path: &Path, data: &[u8]) {
    let mut f = fs::File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

/// fsync of a directory: with `--upload async` the namespace changes made
/// so far (mkdir, unlink, rmdir, ...) are in the bucket when it returns.
pub(crate) fn sync_dir(dir: &Path) {
    fs::File::open(dir).unwrap().sync_all().unwrap();
}

/// `path` must read exactly `want` now.
pub(crate) fn expect_reads(step: &str, path: &Path, want: &[u8]) {
    let got = fs::read(path);
    assert!(
        got.as_ref().is_ok_and(|g| g == want),
        "{step}: {} read {}, want {}",
        path.display(),
        summary(&got),
        summary(&Ok(want.to_vec()))
    );
}

/// `path` must be gone: stat and open both fail with ENOENT.
pub(crate) fn expect_absent(step: &str, path: &Path) {
    let stat = fs::symlink_metadata(path).map(|_| ());
    let open = fs::File::open(path).map(|_| ());
    for (call, r) in [("stat", stat), ("open", open)] {
        assert_eq!(
            r.as_ref().err().and_then(|e| e.raw_os_error()),
            Some(libc::ENOENT),
            "{step}: {call} {} gave {r:?}, want ENOENT",
            path.display()
        );
    }
}

/// The bucket must hold exactly `want` at `rel` (so the upload is done).
fn expect_object(hosts: &TwoHosts, rel: &str, want: &[u8]) {
    let got = hosts.bucket.get(&TwoHosts::key(rel));
    assert!(
        got.as_deref() == Some(want),
        "the bucket's {rel} holds {}, want {}",
        got.map_or("nothing".to_string(), |g| summary(&Ok(g))),
        summary(&Ok(want.to_vec()))
    );
}

/// Sleeps until `last_look` (when a mount last read or listed what is
/// about to be checked) is older than the TTL, kernel's and objectfs's.
pub(crate) fn wait_past_ttl(last_look: Instant) {
    let until = last_look + TTL + TTL_MARGIN;
    if let Some(left) = until.checked_duration_since(Instant::now()) {
        std::thread::sleep(left);
    }
}

/// Reads `path` every 100 ms until it holds `want`, for at most
/// [`POLL_DEADLINE`]. Every read before that must find it absent or
/// holding one of `earlier`: never anything else, partial content
/// included. Once `want` has been read, reads spread over more than the
/// TTL must all find `want` again.
fn read_until(step: &str, path: &Path, want: &[u8], earlier: &[&[u8]]) {
    let deadline = Instant::now() + POLL_DEADLINE;
    let mut seen = Vec::new();
    loop {
        let got = fs::read(path);
        match &got {
            Ok(g) if g == want => break,
            Ok(g) if earlier.contains(&g.as_slice()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            _ => panic!(
                "{step}: {} read {} before it held {}",
                path.display(),
                summary(&got),
                summary(&Ok(want.to_vec()))
            ),
        }
        let s = summary(&got);
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        assert!(
            Instant::now() < deadline,
            "{step}: {} did not read {} within {POLL_DEADLINE:?}; it read: {}",
            path.display(),
            summary(&Ok(want.to_vec())),
            seen.join(", then ")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..3 {
        std::thread::sleep(TTL / 2);
        expect_reads(&format!("{step}, read again after it held it"), path, want);
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_file_closed_on_a_reaches_b_after_the_async_upload() {
    require!(Root, Fuse, Moto);
    let hosts = TwoHosts::start("two-mounts-new");
    let (a, b) = (&hosts.a, &hosts.b);
    let top = content(1, 3000);
    let nested = content(2, 70_000);

    // Written and closed on A, no fsync: A uploads after its delay.
    fs::write(a.path("new.txt"), &top).unwrap();
    fs::create_dir(a.path("docs")).unwrap();
    fs::write(a.path("docs/readme.txt"), &nested).unwrap();

    // B sees nothing, then all of it, and keeps seeing all of it.
    read_until("B, a new file of A's", &b.path("new.txt"), &top, &[]);
    read_until(
        "B, a new file of A's in a new directory",
        &b.path("docs/readme.txt"),
        &nested,
        &[],
    );
    assert_eq!(names_in(&b.dir), ["docs", "new.txt"], "B's listing");
    expect_object(&hosts, "new.txt", &top);
    expect_object(&hosts, "docs/readme.txt", &nested);
}

/// The guard for a local data cache: B read (and may keep) the old bytes;
/// once the object changed and B's last look is older than the TTL, B's
/// next open must give the new bytes, even when size and mtime match.
#[test]
fn an_overwrite_on_a_replaces_what_b_read_before() {
    require!(Root, Fuse, Moto);
    let hosts = TwoHosts::start("two-mounts-overwrite");
    let (a, b) = (&hosts.a, &hosts.b);
    let old = content(10, 1 << 20);
    let new = content(11, (1 << 20) + 12_345);
    write_synced(&a.path("data.bin"), &old);
    // Same size and, below, same mtime: only the bytes differ.
    let same_old = content(20, 200_000);
    let same_new = content(21, 200_000);
    write_synced(&a.path("same.bin"), &same_old);

    // B reads the old content, twice (a cache would keep it).
    for _ in 0..2 {
        expect_reads("B, before any change", &b.path("data.bin"), &old);
        expect_reads("B, before any change", &b.path("same.bin"), &same_old);
    }
    let b_md = fs::metadata(b.path("same.bin")).unwrap();
    let b_mtime = b_md.modified().unwrap();
    let b_ctime = ctime_of(&b_md);
    let b_looked = Instant::now();

    // A overwrites data.bin with longer content (truncate, write, fsync).
    write_synced(&a.path("data.bin"), &new);
    expect_object(&hosts, "data.bin", &new);
    // A rewrites same.bin in place with as many bytes and puts the mtime
    // back to what B saw (as `cp -p` or tar would).
    {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(a.path("same.bin"))
            .unwrap();
        f.write_all_at(&same_new, 0).unwrap();
        f.set_modified(b_mtime).unwrap();
        f.sync_all().unwrap();
    }
    expect_object(&hosts, "same.bin", &same_new);
    let stored_mtime = &hosts.bucket.metadata(&TwoHosts::key("same.bin"))["mtime"];
    let b_since = b_mtime.duration_since(UNIX_EPOCH).unwrap();
    let b_text = format!("{}.{:09}", b_since.as_secs(), b_since.subsec_nanos());
    assert_eq!(
        stored_mtime.trim_end_matches(".000000000"),
        b_text.trim_end_matches(".000000000"),
        "A kept same.bin's stored mtime"
    );

    wait_past_ttl(b_looked);
    let step = "B, after A's overwrite and the TTL";
    expect_reads(step, &b.path("data.bin"), &new);
    let md = fs::metadata(b.path("same.bin")).unwrap();
    assert_eq!(
        (md.len(), md.modified().unwrap()),
        (same_old.len() as u64, b_mtime),
        "{step}: same.bin's size and mtime are what B saw before"
    );
    assert!(
        ctime_of(&md) > b_ctime,
        "{step}: same.bin's ctime moved on from {b_ctime:?} (git sees the change): {:?}",
        ctime_of(&md)
    );
    expect_reads(step, &b.path("same.bin"), &same_new);
    // And it stays new, across another TTL.
    std::thread::sleep(TTL + TTL_MARGIN);
    expect_reads("B, a TTL later", &b.path("data.bin"), &new);
    expect_reads("B, a TTL later", &b.path("same.bin"), &same_new);
}

/// A file's ctime as (seconds, nanoseconds).
fn ctime_of(md: &fs::Metadata) -> (i64, i64) {
    (md.ctime(), md.ctime_nsec())
}

/// A file's ctime and mtime travel with its upload, and its inode number
/// is its path's: the other host and a remount show what the writer showed,
/// to the nanosecond, so `git status` there finds every file unchanged
/// instead of hashing it again. An object without a stored ctime has its
/// date for one, in whole seconds.
#[test]
fn ctime_and_inode_are_the_same_on_every_host_and_after_a_remount() {
    require!(Root, Fuse, Moto);
    let mut hosts = TwoHosts::start("two-mounts-ctime");
    write_synced(&hosts.a.path("f.txt"), &content(30, 5000));
    let on_a = fs::metadata(hosts.a.path("f.txt")).unwrap();
    let stat = |md: &fs::Metadata| (ctime_of(md), md.mtime(), md.mtime_nsec(), md.ino());
    // B meets other names first: the numbers do not depend on the order.
    fs::write(hosts.b.path("g.txt"), "g").unwrap();
    let md = fs::metadata(hosts.b.path("f.txt")).unwrap();
    assert_eq!(stat(&md), stat(&on_a), "B's ctime, mtime and inode are A's");
    hosts.a.stop();
    hosts.a.restart();
    let md = fs::metadata(hosts.a.path("f.txt")).unwrap();
    assert_eq!(stat(&md), stat(&on_a), "A's after a remount");
    // Written by a client that stores no ctime: its date.
    hosts.bucket.put(&TwoHosts::key("plain.txt"), b"plain");
    wait_past_ttl(Instant::now()); // B listed its root without it
    let date = hosts.bucket.head(&TwoHosts::key("plain.txt")).unwrap();
    let secs = date
        .last_modified
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap();
    let md = fs::metadata(hosts.b.path("plain.txt")).unwrap();
    assert_eq!(
        ctime_of(&md),
        (secs.as_secs() as i64, 0),
        "a plain object's ctime"
    );
    // A change through the mount is a change now, as on a local disk.
    let changed_now = |what: &str, change: &dyn Fn(&Path)| {
        let before = std::time::SystemTime::now();
        change(&hosts.a.path("f.txt"));
        let md = fs::metadata(hosts.a.path("f.txt")).unwrap();
        let at = UNIX_EPOCH + Duration::new(md.ctime() as u64, md.ctime_nsec() as u32);
        assert!(at >= before, "{what} on A set ctime to its time");
    };
    changed_now("a write", &|p| {
        let f = fs::OpenOptions::new().write(true).open(p).unwrap();
        f.write_all_at(b"x", 10).unwrap();
    });
    changed_now("chmod", &|p| {
        fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap()
    });
    // A rename's ctime travels with the copy: B shows what A shows.
    fs::File::open(hosts.a.path("f.txt"))
        .unwrap()
        .sync_all()
        .unwrap();
    fs::rename(hosts.a.path("f.txt"), hosts.a.path("h.txt")).unwrap();
    sync_dir(&hosts.a.dir);
    let on_a = fs::metadata(hosts.a.path("h.txt")).unwrap();
    wait_past_ttl(Instant::now());
    let on_b = fs::metadata(hosts.b.path("h.txt")).unwrap();
    assert_eq!(
        (ctime_of(&on_b), on_b.mtime(), on_b.mtime_nsec()),
        (ctime_of(&on_a), on_a.mtime(), on_a.mtime_nsec()),
        "B's ctime and mtime of a file A renamed"
    );
}

#[test]
fn an_append_on_a_shows_old_and_new_on_b() {
    require!(Root, Fuse, Moto);
    let hosts = TwoHosts::start("two-mounts-append");
    let (a, b) = (&hosts.a, &hosts.b);
    let first = content(30, 5000);
    let second = content(31, 777);
    let third = content(32, 4321);
    write_synced(&a.path("log.txt"), &first);
    expect_reads("B, before the append", &b.path("log.txt"), &first);
    let b_looked = Instant::now();

    let append = |data: &[u8], sync: bool| {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(a.path("log.txt"))
            .unwrap();
        f.write_all(data).unwrap();
        if sync {
            f.sync_all().unwrap();
        }
    };
    // O_APPEND, write, fsync, close.
    append(&second, true);
    let two = [first.as_slice(), &second].concat();
    expect_object(&hosts, "log.txt", &two);
    wait_past_ttl(b_looked);
    expect_reads(
        "B, after A's synced append and the TTL",
        &b.path("log.txt"),
        &two,
    );

    // O_APPEND, write, close: uploaded in the background.
    append(&third, false);
    let three = [two.as_slice(), &third].concat();
    read_until(
        "B, after A's async append",
        &b.path("log.txt"),
        &three,
        &[&two],
    );
    expect_object(&hosts, "log.txt", &three);
}

#[test]
fn renames_on_a_show_on_b_under_the_new_names_only() {
    require!(Root, Fuse, Moto);
    let hosts = TwoHosts::start("two-mounts-rename");
    let (a, b) = (&hosts.a, &hosts.b);
    let file = content(40, 9000);
    let one = content(41, 100);
    let two = content(42, 150_000);
    write_synced(&a.path("old-name.txt"), &file);
    fs::create_dir_all(a.path("old-dir/sub")).unwrap();
    write_synced(&a.path("old-dir/one.txt"), &one);
    write_synced(&a.path("old-dir/sub/two.txt"), &two);

    let step = "B, before the renames";
    expect_reads(step, &b.path("old-name.txt"), &file);
    expect_reads(step, &b.path("old-dir/one.txt"), &one);
    expect_reads(step, &b.path("old-dir/sub/two.txt"), &two);
    assert_eq!(names_in(&b.dir), ["old-dir", "old-name.txt"], "{step}");
    let b_looked = Instant::now();

    fs::rename(a.path("old-name.txt"), a.path("new-name.txt")).unwrap();
    fs::rename(a.path("old-dir"), a.path("new-dir")).unwrap();
    // A directory's rename is queued (upload=async); fsync of the parent
    // sends it.
    sync_dir(&a.dir);
    let keys = hosts.bucket.keys(&format!("{PREFIX}/"));
    assert!(
        !keys.iter().any(|k| k.contains("old-")),
        "old keys left in the bucket: {keys:?}"
    );

    wait_past_ttl(b_looked);
    let step = "B, after A's renames and the TTL";
    expect_reads(step, &b.path("new-name.txt"), &file);
    expect_reads(step, &b.path("new-dir/one.txt"), &one);
    expect_reads(step, &b.path("new-dir/sub/two.txt"), &two);
    for gone in [
        "old-name.txt",
        "old-dir",
        "old-dir/one.txt",
        "old-dir/sub/two.txt",
    ] {
        expect_absent(step, &b.path(gone));
    }
    assert_eq!(names_in(&b.dir), ["new-dir", "new-name.txt"], "{step}");
    assert_eq!(names_in(&b.path("new-dir")), ["one.txt", "sub"], "{step}");
}

#[test]
fn deletes_on_a_give_enoent_on_b() {
    require!(Root, Fuse, Moto);
    let hosts = TwoHosts::start("two-mounts-delete");
    let (a, b) = (&hosts.a, &hosts.b);
    let kept = content(50, 10);
    write_synced(&a.path("kept.txt"), &kept);
    write_synced(&a.path("gone.txt"), &content(51, 2000));
    fs::create_dir(a.path("emptied")).unwrap();
    write_synced(&a.path("emptied/x"), &content(52, 10));
    write_synced(&a.path("emptied/y"), &content(53, 20));

    let step = "B, before the deletes";
    expect_reads(step, &b.path("gone.txt"), &content(51, 2000));
    expect_reads(step, &b.path("emptied/x"), &content(52, 10));
    assert_eq!(names_in(&b.path("emptied")), ["x", "y"], "{step}");
    assert_eq!(
        names_in(&b.dir),
        ["emptied", "gone.txt", "kept.txt"],
        "{step}"
    );
    let b_looked = Instant::now();

    fs::remove_file(a.path("gone.txt")).unwrap();
    fs::remove_file(a.path("emptied/x")).unwrap();
    fs::remove_file(a.path("emptied/y")).unwrap();
    fs::remove_dir(a.path("emptied")).unwrap();
    // Deletes are queued (upload=async); a directory's fsync sends them.
    sync_dir(&a.dir);
    assert_eq!(
        hosts.bucket.keys(&format!("{PREFIX}/")),
        [TwoHosts::key("kept.txt")],
        "the bucket after A's deletes"
    );

    wait_past_ttl(b_looked);
    let step = "B, after A's deletes and the TTL";
    for gone in ["gone.txt", "emptied/x", "emptied/y", "emptied"] {
        expect_absent(step, &b.path(gone));
    }
    assert_eq!(names_in(&b.dir), ["kept.txt"], "{step}");
    expect_reads(step, &b.path("kept.txt"), &kept);
}

/// A miss is kept by B's kernel (a negative entry) for what is left of
/// B's TTL on it: B looking for an absent file again and again sends its
/// mount one lookup, not one per look; and no longer: once A has created
/// the file and B's last look is older than the TTL, B reads it.
#[test]
fn a_miss_is_kept_by_the_kernel_for_the_ttl_and_no_longer() {
    require!(Root, Fuse, Moto);
    let hosts = TwoHosts::start("two-mounts-miss");
    let (a, b) = (&hosts.a, &hosts.b);
    let data = content(60, 500);
    let step = "B, looking for a file nobody wrote yet";
    // Past the TTL of B's first listing: its own miss from now on.
    wait_past_ttl(Instant::now());
    let before = lookups_sent(b, Instant::now());
    for _ in 0..20 {
        expect_absent(step, &b.path("later.txt"));
    }
    let b_looked = Instant::now();
    let sent = lookups_sent(b, b_looked) - before;
    assert!(sent <= 2, "{step}: 40 looks sent {sent} lookups");

    write_synced(&a.path("later.txt"), &data);
    wait_past_ttl(b_looked);
    expect_reads(
        "B, after A's create and the TTL",
        &b.path("later.txt"),
        &data,
    );
}

/// Lookups the kernel has sent `m` so far, from a status file written
/// after `since`.
fn lookups_sent(m: &Mounted, since: Instant) -> u64 {
    let st = fresh_status(m, since);
    st["metrics"]["fuseOps"]["lookup"].as_u64().unwrap_or(0)
}

/// `m`'s status file, once one written after `since` is there.
fn fresh_status(m: &Mounted, since: Instant) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = m.status();
        let age = st["updatedAt"].as_str().and_then(status_age);
        if age.is_some_and(|a| a < since.elapsed()) {
            return st;
        }
        assert!(Instant::now() < deadline, "no fresh status file: {st}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// HEADs `m` has sent so far, from a status file written after `since`.
fn heads_sent(m: &Mounted, since: Instant) -> u64 {
    let st = fresh_status(m, since);
    st["metrics"]["storeRequests"]["HeadObject"]["ok"]
        .as_u64()
        .unwrap_or(0)
}

/// How old a status file's `updatedAt` (RFC 3339, UTC) is.
fn status_age(stamp: &str) -> Option<Duration> {
    let t = humantime::parse_rfc3339(stamp).ok()?;
    std::time::SystemTime::now().duration_since(t).ok()
}

/// What `ls -l DIR` asks of a mount: the names, then each one's attributes.
fn ls_l(dir: &Path) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let mode = fs::symlink_metadata(e.path()).unwrap().permissions().mode();
            (e.file_name().into_string().unwrap(), mode & 0o7777)
        })
        .collect();
    out.sort();
    out
}

/// After the TTL, a listing confirms the files whose object it shows
/// unchanged (same ETag, size and date as when their metadata was read),
/// so `ls -l` sends no HEAD for them, also for files whose mtime is not
/// their object's date (as after `tar x`). A mode rewritten in place by
/// another client keeps the ETag but not the date, and is read again.
#[test]
fn a_listing_confirms_unchanged_files_and_sees_a_mode_changed_elsewhere() {
    require!(Root, Fuse, Moto);
    let hosts = TwoHosts::start("two-mounts-relist");
    let (a, b) = (&hosts.a, &hosts.b);
    fs::create_dir(a.path("d")).unwrap();
    let old = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for i in 0..20 {
        let p = a.path(&format!("d/f{i:02}"));
        fs::write(&p, content(70 + i, 100)).unwrap();
        let f = fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(old).unwrap();
        f.sync_all().unwrap();
    }
    sync_dir(&a.path("d"));
    let keys = hosts.bucket.keys(&format!("{PREFIX}/d/"));
    assert_eq!(
        keys.iter().filter(|k| !k.ends_with('/')).count(),
        20,
        "{keys:?}"
    );
    // B reads the metadata more than two seconds after the objects' dates
    // (whole seconds): a later rewrite then has another date.
    std::thread::sleep(Duration::from_millis(2500));
    let first = ls_l(&b.path("d"));
    assert_eq!(first.len(), 20);
    assert!(first.iter().all(|(_, m)| *m == 0o644), "{first:?}");
    let looked = Instant::now();
    wait_past_ttl(looked);
    let before = heads_sent(b, looked);
    let listed = Instant::now();
    assert_eq!(ls_l(&b.path("d")), first, "the same listing after the TTL");
    let mtime = fs::metadata(b.path("d/f03")).unwrap().modified().unwrap();
    assert_eq!(mtime, old, "the file's mtime, not its object's date");
    // At most the directory's own: its attributes are on its marker.
    let heads = heads_sent(b, listed) - before;
    assert!(
        heads <= 2,
        "{heads} HEADs: the 20 files the listing showed unchanged need none"
    );

    // Another client changes one file's mode in place.
    let key = TwoHosts::key("d/f05");
    let mut meta = hosts.bucket.metadata(&key);
    assert_eq!(meta.get("mode").map(String::as_str), Some("33188"));
    meta.insert("mode".into(), (0o100600).to_string());
    let etag = hosts.bucket.head(&key).unwrap().etag;
    hosts.bucket.set_metadata(
        &key,
        &objectfs::store::PutMeta {
            content_type: None,
            metadata: meta,
        },
    );
    assert_eq!(
        hosts.bucket.head(&key).unwrap().etag,
        etag,
        "same content, same ETag"
    );
    wait_past_ttl(Instant::now());
    let after = ls_l(&b.path("d"));
    let changed: Vec<_> = after.iter().filter(|(_, m)| *m != 0o644).collect();
    assert_eq!(changed, [&("f05".to_string(), 0o600)], "{after:?}");
}

#[test]
fn changes_on_b_reach_a_too() {
    require!(Root, Fuse, Moto);
    let hosts = TwoHosts::start("two-mounts-reverse");
    let (a, b) = (&hosts.a, &hosts.b);
    let v1 = content(60, 40_000);
    let v2 = content(61, 25_000);
    let from_b = content(62, 6000);

    // A wrote the file itself (so it may hold its bytes locally) and read it.
    write_synced(&a.path("shared.txt"), &v1);
    expect_reads("A, its own file", &a.path("shared.txt"), &v1);
    let a_looked = Instant::now();

    expect_reads("B, A's file", &b.path("shared.txt"), &v1);
    write_synced(&b.path("shared.txt"), &v2); // shorter: truncated, rewritten
    expect_object(&hosts, "shared.txt", &v2);
    // A new file on B, closed without fsync.
    fs::write(b.path("from-b.txt"), &from_b).unwrap();

    wait_past_ttl(a_looked);
    expect_reads(
        "A, after B's overwrite and the TTL",
        &a.path("shared.txt"),
        &v2,
    );
    read_until("A, a new file of B's", &a.path("from-b.txt"), &from_b, &[]);
    assert_eq!(
        names_in(&a.dir),
        ["from-b.txt", "shared.txt"],
        "A's listing"
    );
}

#[test]
fn both_writing_at_once_lose_nothing() {
    require!(Root, Fuse, Moto);
    const PER_HOST: usize = 50;
    let mut hosts = TwoHosts::start("two-mounts-concurrent");
    fs::create_dir(hosts.a.path("both")).unwrap();
    // The directory's marker is queued (upload=async): in the bucket, so
    // that B sees the directory, once A's fsync of its parent returns.
    sync_dir(&hosts.a.dir);
    let want = |host: &str, i: usize| -> Vec<u8> {
        format!("host {host} file {i}\n").repeat(i + 1).into_bytes()
    };

    // 50 files from each host into the same directory, at the same time,
    // closed without fsync.
    std::thread::scope(|s| {
        for (host, m) in [("a", &hosts.a), ("b", &hosts.b)] {
            let dir = m.path("both");
            s.spawn(move || {
                for i in 0..PER_HOST {
                    fs::write(dir.join(format!("{host}-{i:02}")), want(host, i))
                        .unwrap_or_else(|e| panic!("host {host} writing file {i}: {e}"));
                }
            });
        }
    });
    // Both unmount cleanly (SIGTERM: each uploads what it has, then exits 0).
    hosts.a.stop();
    hosts.b.stop();

    let mut expected: Vec<String> = ["a", "b"]
        .iter()
        .flat_map(|host| (0..PER_HOST).map(move |i| format!("{host}-{i:02}")))
        .collect();
    expected.sort();
    let keys = hosts.bucket.keys(&TwoHosts::key("both/"));
    let mut want_keys = vec![TwoHosts::key("both/")];
    want_keys.extend(expected.iter().map(|n| TwoHosts::key(&format!("both/{n}"))));
    assert_eq!(keys, want_keys, "the bucket after both unmounted");
    for name in &expected {
        let (host, i) = name.split_once('-').unwrap();
        expect_object(
            &hosts,
            &format!("both/{name}"),
            &want(host, i.parse().unwrap()),
        );
    }

    // A third, fresh mount lists all of them.
    let c = mount(&hosts.base.path().join("host-c"), &hosts.config);
    assert_eq!(
        names_in(&c.path("both")),
        expected,
        "a fresh mount's listing"
    );
    expect_reads("a fresh mount", &c.path("both/b-49"), &want("b", 49));
}
