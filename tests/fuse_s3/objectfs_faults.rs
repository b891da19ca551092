//! objectfs under storage faults: real FUSE mounts whose endpoint is a
//! fault-injecting proxy (tests/common/fault_proxy.rs) in front of s3s-fs,
//! the bucket checked with a client that talks to s3s-fs directly.
//!
//! What is asserted (docs/SEMANTICS.md, "Never losing a written byte"):
//! reads are retried and either succeed or fail with EIO within a bound
//! derived below; async uploads are retried until they land; a sync close
//! or fsync that cannot upload returns EIO and the data still reaches the
//! bucket once the store is back (or at the next mount of the cache
//! directory); every file whose close returned 0 is in the bucket.
//! Figures: docs/RELIABILITY-faults.md.

use crate::common;

use common::fast_s3::FastS3Server;
use common::fault_proxy::{FaultProxy, Mode, Stats};
use common::objectfs_mount::{Bucket, Mounted};
use common::wait_for_within;
use objectfs::mount::read_status;
use objectfs::store::s3::S3Config;
use objectfs::transfer::RetryPolicy;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const PREFIX: &str = "vol";

/// crates/objectfs/src/store/s3.rs READ_TIMEOUT: one HEAD, LIST or GET (up to its answer's
/// head), the SDK's own retries included.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The most the SDK's backoff sleeps between its 3 attempts of one request
/// (standard retry: up to 1 s, then up to 2 s, jittered).
const SDK_BACKOFF: Duration = Duration::from_secs(3);
/// Linux retries a failed read-ahead once with a synchronous read: one
/// read(2) may cost objectfs two failed read requests.
const KERNEL_READ_TRIES: u32 = 2;

/// The sleeps of objectfs' interactive retry loop (0.1+0.2+0.4+0.8+1.6 s).
fn interactive_backoff() -> Duration {
    let p = RetryPolicy::INTERACTIVE;
    (2..=p.attempts).map(|n| p.delay(n)).sum()
}

/// Slack for scheduling, process start-up and the kernel.
const SLACK: Duration = Duration::from_secs(8);

/// A store that accepts requests and never answers: every attempt of every
/// read request is cut at READ_TIMEOUT (2 × (6 × 10 + 3.1) s). Bodies that
/// stall are cut sooner, by the SDK's stalled-stream protection (5 s).
fn read_bound_any() -> Duration {
    let request = READ_TIMEOUT * RetryPolicy::INTERACTIVE.attempts + interactive_backoff();
    request * KERNEL_READ_TRIES + SLACK
}

/// When the store fails fast (refused, reset, 5xx), only the backoffs
/// count: 2 × (6 × 3 s + 3.1 s).
fn read_bound_fast() -> Duration {
    let request = SDK_BACKOFF * RetryPolicy::INTERACTIVE.attempts + interactive_backoff();
    request * KERNEL_READ_TRIES + SLACK
}

/// One S3 server (s3s-fs) with a bucket, a proxy in front of it, a client
/// for the bucket that bypasses the proxy, and a directory for the mount.
struct Rig {
    bucket: Bucket,
    via_proxy: S3Config,
    proxy: FaultProxy,
    server: FastS3Server,
    base: tempfile::TempDir,
}

impl Rig {
    fn new(name: &str) -> Rig {
        let server = FastS3Server::start();
        let upstream = server.new_bucket(name);
        let proxy = FaultProxy::start(server.addr);
        let mut via_proxy = upstream.clone();
        via_proxy.endpoint = Some(proxy.endpoint());
        Rig {
            bucket: Bucket::new(&upstream),
            via_proxy,
            proxy,
            server,
            base: tempfile::tempdir().unwrap(),
        }
    }

    fn mount(&self, extra: &[&str]) -> Mounted {
        Mounted::start(self.base.path(), &self.via_proxy, PREFIX, extra)
    }

    fn key(rel: &str) -> String {
        format!("{PREFIX}/{rel}")
    }

    /// The object's bytes as s3s-fs has them (no proxy in between).
    fn object(&self, rel: &str) -> Option<Vec<u8>> {
        self.bucket.get(&Self::key(rel))
    }

    /// The object's bytes read straight from s3s-fs's storage (it keeps
    /// each object as a plain file): what a GET returns, without the cost
    /// of one, for checking a thousand objects.
    fn stored(&self, key: &str) -> Option<Vec<u8>> {
        fs::read(self.server.bucket_dir(&self.via_proxy.bucket).join(key)).ok()
    }

    /// One of the proxy's counters.
    fn count(&self, which: fn(&Stats) -> &AtomicU64) -> u64 {
        which(self.proxy.stats()).load(Ordering::Relaxed)
    }
}

/// Distinct pseudo-random bytes for `seed` (xorshift).
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// close(2) with its result (dropping a File ignores it).
fn close(file: File) -> std::io::Result<()> {
    let fd = file.into_raw_fd();
    // SAFETY: we own the descriptor; it is closed exactly once.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// create, write, close; Ok only if every step succeeded (acknowledged).
fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(data)?;
    close(f)
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// Runs `f` on a thread; panics if it has not returned within `limit` (a
/// hang). Returns its result and how long it took.
fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => (v, start.elapsed()),
        Err(_) => panic!("{what}: still blocked after {limit:?}"),
    }
}

fn read_within(path: PathBuf, limit: Duration) -> (std::io::Result<Vec<u8>>, Duration) {
    let what = format!("reading {}", path.display());
    within(&what, limit, move || fs::read(path))
}

/// Waits until every key is in the bucket (LIST, from s3s-fs directly).
/// Returns how long that took.
fn wait_until_in_bucket(rig: &Rig, keys: &[String], timeout: Duration) -> Duration {
    let start = Instant::now();
    wait_for_within(
        &format!("{} keys in the bucket", keys.len()),
        timeout,
        || {
            let listed: std::collections::HashSet<String> =
                rig.bucket.keys("").into_iter().collect();
            keys.iter().all(|k| listed.contains(k))
        },
    );
    start.elapsed()
}

/// Prints a test's wall time when it ends (pass or fail).
struct Timer(&'static str, Instant);

impl Timer {
    fn start(name: &'static str) -> Timer {
        Timer(name, Instant::now())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        eprintln!("TIME {}: {:.1?}", self.0, self.1.elapsed());
    }
}

// ----- the proxy itself ----------------------------------------------------

/// Each mode does what tests/common/fault_proxy.rs says, at the TCP level
/// (upstream: a one-line HTTP server).
#[test]
fn the_fault_proxy_modes_behave_as_documented() {
    let _timer = Timer::start("the_fault_proxy_modes_behave_as_documented");
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    thread::spawn(move || {
        for mut c in upstream.incoming().flatten() {
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let body = "x".repeat(64 * 1024);
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                    if c.write_all(head.as_bytes()).is_err()
                        || c.write_all(body.as_bytes()).is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    let proxy = FaultProxy::start(upstream_addr);
    // One GET; the answer's bytes, or the error.
    let get = || -> std::io::Result<Vec<u8>> {
        let mut c = std::net::TcpStream::connect(proxy.addr)?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        c.write_all(b"GET /k HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        while got.len() < 64 * 1024 {
            match c.read(&mut buf)? {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        Ok(got)
    };
    let starts = |r: &std::io::Result<Vec<u8>>, prefix: &str| {
        r.as_ref().is_ok_and(|b| b.starts_with(prefix.as_bytes()))
    };
    assert!(starts(&get(), "HTTP/1.1 200 OK"));

    proxy.set(Mode::ServerError(503));
    let r = get();
    assert!(starts(&r, "HTTP/1.1 503 Service Unavailable"), "{r:?}");
    assert!(
        String::from_utf8_lossy(r.as_ref().unwrap()).contains("<Code>ServiceUnavailable</Code>")
    );

    proxy.set(Mode::Reset);
    let e = get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");

    proxy.set(Mode::Down);
    thread::sleep(Duration::from_millis(100));
    let e = get().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");

    proxy.set(Mode::Stall);
    thread::sleep(Duration::from_millis(100));
    let e = get().unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );

    proxy.set(Mode::StallBody);
    let e = get().unwrap_err(); // the head and the first bytes, then nothing
    assert!(
        matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{e}"
    );

    proxy.set(Mode::Latency(Duration::from_millis(300)));
    let start = Instant::now();
    assert!(starts(&get(), "HTTP/1.1 200 OK"));
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );

    proxy.set(Mode::Pass);
    assert!(starts(&get(), "HTTP/1.1 200 OK"));
}

// ----- reads ---------------------------------------------------------------

/// Faults that end: every read succeeds, having waited them out.
#[test]
fn reads_are_retried_through_5xx_resets_latency_and_stalls() {
    require!(Root, Fuse, FastS3);
    let _timer = Timer::start("reads_are_retried_through_5xx_resets_latency_and_stalls");
    let rig = Rig::new("reads-retried");
    let objects = [
        ("503.bin", 1 << 20),
        ("reset.bin", 1 << 20),
        ("latency.bin", 6 << 20),
        ("mid-read.bin", 16 << 20),
        ("stall-body.bin", 2 << 20),
        ("stall.bin", 256 << 10),
    ];
    for (i, (name, len)) in objects.iter().enumerate() {
        rig.bucket.put(&Rig::key(name), &content(i as u64, *len));
    }
    let want = |name: &str| {
        let i = objects.iter().position(|(n, _)| *n == name).unwrap();
        content(i as u64, objects[i].1)
    };
    let m = rig.mount(&[]);
    let bound = read_bound_any();
    let mut figures = Vec::new();

    // 503 for 3 s, then Pass: lookup and GETs answered 503 until then.
    let ends = rig
        .proxy
        .fault_for(Mode::ServerError(503), Duration::from_secs(3));
    let (got, took) = read_within(m.path("503.bin"), bound);
    assert_eq!(got.unwrap(), want("503.bin"));
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    ends.join().unwrap();
    let errors = rig.count(|s| &s.errors);
    assert!(errors > 0);
    figures.push(format!(
        "503 for 3 s: read ok after {took:.1?}, {errors} requests answered 503"
    ));

    // Connections reset for 3 s.
    let ends = rig.proxy.fault_for(Mode::Reset, Duration::from_secs(3));
    let (got, took) = read_within(m.path("reset.bin"), bound);
    assert_eq!(got.unwrap(), want("reset.bin"));
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    ends.join().unwrap();
    let resets = rig.count(|s| &s.resets);
    assert!(resets > 0);
    figures.push(format!(
        "reset for 3 s: read ok after {took:.1?}, {resets} connections reset"
    ));

    // 200 ms each way on every request: slower, never a timeout.
    rig.proxy.set(Mode::Latency(Duration::from_millis(200)));
    let (got, took) = read_within(m.path("latency.bin"), bound);
    assert_eq!(got.unwrap(), want("latency.bin"));
    rig.proxy.set(Mode::Pass);
    figures.push(format!("200 ms latency: 6 MiB read in {took:.1?}"));

    // 500 in the middle of a sequential read (read-ahead chunks in flight).
    let data = want("mid-read.bin");
    let path = m.path("mid-read.bin");
    let mut f = File::open(&path).unwrap();
    let mut back = vec![0u8; data.len()];
    f.read_exact(&mut back[..1 << 20]).unwrap();
    let start = Instant::now();
    let ends = rig
        .proxy
        .fault_for(Mode::ServerError(500), Duration::from_secs(3));
    f.read_exact(&mut back[1 << 20..]).unwrap();
    let took = start.elapsed();
    ends.join().unwrap();
    assert!(back == data, "the bytes read through the 500s differ");
    assert!(took < bound, "{took:?}");
    figures.push(format!(
        "500 for 3 s after the first MiB: rest of 16 MiB read in {took:.1?}"
    ));

    // An answer whose body stops after its first 4 KiB (for 2 s): the GET
    // is abandoned by the SDK's stalled-stream protection and retried.
    let ends = rig.proxy.fault_for(Mode::StallBody, Duration::from_secs(2));
    let (got, took) = read_within(m.path("stall-body.bin"), bound);
    assert_eq!(got.unwrap(), want("stall-body.bin"));
    ends.join().unwrap();
    figures.push(format!(
        "body stalled (2 s of new connections): read ok after {took:.1?}"
    ));

    // A store that accepts and never answers (for 2 s): the frozen request
    // is cut at READ_TIMEOUT and retried, on a new connection (every one
    // kept alive froze too: each retry waited on the next, and the read
    // failed with EIO after six, beside busy loops 2 runs in 3).
    let ends = rig.proxy.fault_for(Mode::Stall, Duration::from_secs(2));
    let (got, took) = read_within(m.path("stall.bin"), bound);
    assert_eq!(got.unwrap(), want("stall.bin"));
    ends.join().unwrap();
    figures.push(format!(
        "no answer (2 s of new connections): read ok after {took:.1?}"
    ));

    eprintln!("FIGURES reads retried:\n  {}", figures.join("\n  "));
}

/// Faults that last: a read of an object that is not cached fails with
/// EIO within the bound, whatever the store does; afterwards the mount
/// reads normally again. One mount per fault, all at once.
#[test]
fn read_of_an_uncached_object_fails_with_eio_within_the_bound_when_the_store_stays_broken() {
    require!(Root, Fuse, FastS3);
    let _timer = Timer::start(
        "read_of_an_uncached_object_fails_with_eio_within_the_bound_when_the_store_stays_broken",
    );
    let cases = [
        ("down", Mode::Down, read_bound_fast()),
        ("reset", Mode::Reset, read_bound_fast()),
        ("500", Mode::ServerError(500), read_bound_fast()),
        ("503", Mode::ServerError(503), read_bound_fast()),
        ("stall-body", Mode::StallBody, read_bound_any()),
        ("stall", Mode::Stall, read_bound_any()),
    ];
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(name, mode, bound)| {
            thread::spawn(move || {
                let rig = Rig::new(&format!("eio-{name}"));
                let data = content(7, 2 << 20);
                rig.bucket.put(&Rig::key("obj"), &data);
                // Attributes cached for an hour: the fault hits the GETs.
                let m = rig.mount(&["--metadata-ttl", "3600"]);
                assert_eq!(
                    fs::metadata(m.path("obj")).unwrap().len(),
                    data.len() as u64
                );
                rig.proxy.set(mode);
                let (got, took) = read_within(m.path("obj"), bound + Duration::from_secs(30));
                let err = got.expect_err("a read with the store broken");
                assert_eq!(errno(&err), libc::EIO, "{name}: {err}");
                assert!(took < bound, "{name}: EIO after {took:?}, bound {bound:?}");
                let connections = rig.count(|s| &s.accepted);
                // Back to normal: the same mount reads the object.
                rig.proxy.set(Mode::Pass);
                let (got, _) = read_within(m.path("obj"), read_bound_fast());
                assert!(got.unwrap() == data, "{name}: read after recovery");
                format!(
                    "{name}: EIO after {took:.1?} (bound {bound:.1?}), {connections} connections"
                )
            })
        })
        .collect();
    let figures: Vec<String> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    eprintln!("FIGURES time to EIO:\n  {}", figures.join("\n  "));
}

// ----- async writes ------------------------------------------------------------

/// Files written and closed while the store fails (upload delay 0, so the
/// uploads are tried during the fault): close returns 0 at once, nothing
/// lands during the fault, and after it every file arrives by itself, byte
/// for byte (one of them multipart).
#[test]
fn async_uploads_during_5xx_resets_and_stalls_all_arrive_afterwards() {
    require!(Root, Fuse, FastS3);
    let _timer = Timer::start("async_uploads_during_5xx_resets_and_stalls_all_arrive_afterwards");
    let cases = [
        ("503", Mode::ServerError(503)),
        ("reset", Mode::Reset),
        ("stall", Mode::Stall),
        ("latency", Mode::Latency(Duration::from_millis(300))),
    ];
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(name, mode)| {
            thread::spawn(move || {
                let rig = Rig::new(&format!("async-{name}"));
                let mut m = rig.mount(&["--metadata-ttl", "3600", "--upload-delay", "0s"]);
                // The listing of the (empty) root answers the creates' lookups.
                assert_eq!(fs::read_dir(&m.dir).unwrap().count(), 0);
                rig.proxy.set(mode);
                let mut files: Vec<(String, Vec<u8>)> = (0..20)
                    .map(|i| (format!("f{i}"), content(100 + i, 1 + i as usize * 9_999)))
                    .collect();
                files.push(("big".into(), content(99, 20 << 20)));
                let written = Instant::now();
                for (name, data) in &files {
                    write_file(&m.path(name), data).unwrap();
                }
                let close_took = written.elapsed();
                assert!(close_took < Duration::from_secs(10), "{name}: {close_took:?}");
                thread::sleep(Duration::from_secs(3));
                if !matches!(mode, Mode::Latency(_)) {
                    let landed = rig.bucket.keys(&format!("{PREFIX}/"));
                    assert!(landed.is_empty(), "{name}: landed during the fault: {landed:?}");
                }
                let pending = read_status(&m.cache).map(|s| s.pending_bytes).unwrap_or(0);
                rig.proxy.set(Mode::Pass);
                let keys: Vec<String> = files.iter().map(|(n, _)| Rig::key(n)).collect();
                let arrived = wait_until_in_bucket(&rig, &keys, Duration::from_secs(120));
                m.stop();
                for (n, data) in &files {
                    assert!(rig.object(n).as_ref() == Some(data), "{name}: {n} differs");
                }
                format!(
                    "{name}: {} files closed in {close_took:.1?}, {pending} bytes pending during the fault, all in the bucket {arrived:.1?} after it ended",
                    files.len()
                )
            })
        })
        .collect();
    let figures: Vec<String> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    eprintln!("FIGURES async uploads:\n  {}", figures.join("\n  "));
}

/// A file name and the bytes written to it.
type Written = (String, Vec<u8>);

/// Creates files `f00000`, `f00001`, … in `dir` (create, write, close)
/// until `stop`. Returns the acknowledged ones (close returned 0) with
/// their bytes, and the refused ones with their errno.
fn create_files_until(
    dir: &Path,
    seed: u64,
    pause: Duration,
    stop: &AtomicBool,
) -> (Vec<Written>, Vec<(String, i32)>) {
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let name = format!("f{i:05}");
        let data = content(seed + i, 1 + (i as usize * 7919) % 65_536);
        match write_file(&dir.join(&name), &data) {
            Ok(()) => acked.push((name, data)),
            Err(e) => refused.push((name, errno(&e))),
        }
        i += 1;
        thread::sleep(pause);
    }
    (acked, refused)
}

/// The scenario at the objectfs level: the S3 server stops for
/// 30 s in the middle of continuous writes, then starts again. Two mounts
/// of the bucket (async) go through the same stopped server:
/// - `vol`, with the defaults a container gets: new files one after the
///   other, and appends to a file kept open (closed and reopened every
///   2 s). Once the 1 s metadata TTL has passed, creates fail with EIO
///   during the outage (a create asks the store whether the name exists,
///   docs/SEMANTICS.md) and are not acknowledged; appends go on.
/// - `vol2`, with `--metadata-ttl 3600` and its directory listed
///   beforehand: creates are answered from the cached listing, so files
///   keep being created and closed throughout the outage.
///
/// Every file whose close returned 0 is in the bucket with its bytes, and
/// nothing reaches the bucket while the server is stopped.
#[test]
fn store_down_for_30_s_during_continuous_writes_every_acknowledged_file_arrives() {
    require!(Root, Fuse, FastS3);
    let _timer = Timer::start(
        "store_down_for_30_s_during_continuous_writes_every_acknowledged_file_arrives",
    );
    let rig = Rig::new("down-30s");
    let mut m = rig.mount(&["--upload", "async"]);
    let base2 = rig.base.path().join("second");
    fs::create_dir(&base2).unwrap();
    let mut m2 = Mounted::start(
        &base2,
        &rig.via_proxy,
        "vol2",
        &["--upload", "async", "--metadata-ttl", "3600"],
    );
    assert_eq!(fs::read_dir(&m2.dir).unwrap().count(), 0);
    let stop = AtomicBool::new(false);
    let mut peak_pending = 0;
    let mut in_bucket_while_down = 0;
    let (((acked, refused), (log, failed_reopens)), (acked2, refused2)) = thread::scope(|scope| {
        let creator =
            scope.spawn(|| create_files_until(&m.dir, 1000, Duration::from_millis(20), &stop));
        let creator2 =
            scope.spawn(|| create_files_until(&m2.dir, 100_000, Duration::from_millis(50), &stop));
        let appender = scope.spawn(|| {
            let path = m.path("log");
            let mut log = Vec::new();
            let mut failed_reopens = 0;
            let mut f = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .unwrap(),
            );
            let mut opened = Instant::now();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Some(file) = f.as_mut() {
                    let line = format!("line {n} {}\n", "x".repeat(n % 200));
                    file.write_all(line.as_bytes()).unwrap();
                    log.extend_from_slice(line.as_bytes());
                    n += 1;
                }
                if opened.elapsed() > Duration::from_secs(2) {
                    if let Some(file) = f.take() {
                        close(file).unwrap();
                    }
                    // The file is staged here, so reopening needs no store.
                    match OpenOptions::new().append(true).open(&path) {
                        Ok(file) => f = Some(file),
                        Err(_) => failed_reopens += 1,
                    }
                    opened = Instant::now();
                }
                thread::sleep(Duration::from_millis(50));
            }
            if let Some(file) = f {
                close(file).unwrap();
            }
            (log, failed_reopens)
        });

        thread::sleep(Duration::from_secs(3));
        rig.proxy.set(Mode::Down);
        let down = Instant::now();
        thread::sleep(Duration::from_secs(1));
        let at_start = rig.bucket.keys("").len();
        while down.elapsed() < Duration::from_secs(30) {
            let pending: u64 = [&m.cache, &m2.cache]
                .iter()
                .filter_map(|c| read_status(c))
                .map(|s| s.pending_bytes)
                .sum();
            peak_pending = peak_pending.max(pending);
            thread::sleep(Duration::from_millis(500));
        }
        in_bucket_while_down = rig.bucket.keys("").len();
        assert_eq!(
            in_bucket_while_down, at_start,
            "nothing passes a stopped server"
        );
        rig.proxy.set(Mode::Pass);
        thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::Relaxed);
        (
            (creator.join().unwrap(), appender.join().unwrap()),
            creator2.join().unwrap(),
        )
    });

    let mut expected: Vec<(String, &[u8])> = vec![(Rig::key("log"), &log[..])];
    expected.extend(acked.iter().map(|(n, d)| (Rig::key(n), &d[..])));
    expected.extend(acked2.iter().map(|(n, d)| (format!("vol2/{n}"), &d[..])));
    // The mounts catch up by themselves; unmount then has nothing left.
    let keys: Vec<String> = expected.iter().map(|(k, _)| k.clone()).collect();
    let caught_up = wait_until_in_bucket(&rig, &keys, Duration::from_secs(90));
    m.stop();
    m2.stop();

    let mut bytes = 0;
    for (i, (key, data)) in expected.iter().enumerate() {
        assert!(rig.stored(key).as_deref() == Some(*data), "{key} differs");
        // And through the S3 API, for a sample (a GET costs ~50 ms here).
        if i % 50 == 0 {
            assert!(
                rig.bucket.get(key).as_deref() == Some(*data),
                "{key} differs"
            );
        }
        bytes += data.len() as u64;
    }
    assert_eq!(failed_reopens, 0);
    assert!(refused.iter().all(|(_, e)| *e == libc::EIO), "{refused:?}");
    for (name, _) in &refused {
        assert!(
            rig.object(name).is_none(),
            "{name}: refused, yet in the bucket"
        );
    }
    assert!(
        refused2.is_empty(),
        "creates on the listed mount: {refused2:?}"
    );
    assert!(acked.len() > 100, "only {} files written", acked.len());
    assert!(acked2.len() > 200, "only {} files written", acked2.len());
    eprintln!(
        "FIGURES 30 s outage: {} files acknowledged in all ({bytes} bytes): default mount {} new files + 1 appended file, {} creates refused with EIO; listed mount {} new files, none refused; {in_bucket_while_down} objects in the bucket during the outage (uploaded before it); peak pending {peak_pending} bytes; everything in the bucket {caught_up:.1?} after the writers stopped; bytes lost: 0",
        expected.len(),
        acked.len(),
        refused.len(),
        acked2.len(),
    );
}

// ----- sync writes -------------------------------------------------------------

/// --upload sync with the store refusing connections for longer than the
/// retry budget: fsync and close return EIO and nothing is in the bucket.
/// Once the store is back, the close of the file whose fsync failed
/// uploads it and returns 0, and the file whose close failed is uploaded by
/// the mount's background retry, without anyone asking.
#[test]
fn sync_fsync_and_close_report_eio_while_the_store_is_down_then_the_data_arrives() {
    require!(Root, Fuse, FastS3);
    let _timer = Timer::start(
        "sync_fsync_and_close_report_eio_while_the_store_is_down_then_the_data_arrives",
    );
    let rig = Rig::new("sync-down");
    let mut m = rig.mount(&["--upload", "sync"]);
    let a = content(1, 300_000);
    let b = content(2, 20 << 20); // multipart
    let mut fa = File::create(m.path("a")).unwrap();
    let mut fb = File::create(m.path("b")).unwrap();
    fa.write_all(&a).unwrap();
    fb.write_all(&b).unwrap();
    rig.proxy.set(Mode::Down);

    let limit = Duration::from_secs(60);
    let ((fsync_a, fa, fsync_took), (close_b, close_took)) = thread::scope(|scope| {
        let closing = scope.spawn(|| within("close b", limit, move || close(fb)));
        let ((fsync_a, fa), fsync_took) = within("fsync a", limit, move || (fa.sync_all(), fa));
        ((fsync_a, fa, fsync_took), closing.join().unwrap())
    });
    assert_eq!(errno(&fsync_a.unwrap_err()), libc::EIO);
    assert_eq!(errno(&close_b.unwrap_err()), libc::EIO);
    assert_eq!(rig.object("a"), None);
    assert_eq!(rig.object("b"), None);

    rig.proxy.set(Mode::Pass);
    let back = Instant::now();
    let (r, _) = within("close a", limit, move || close(fa));
    r.unwrap();
    assert!(
        rig.object("a") == Some(a),
        "close returned 0: a is in the bucket"
    );
    wait_until_in_bucket(&rig, &[Rig::key("b")], Duration::from_secs(60));
    let arrived = back.elapsed();
    m.stop();
    assert!(rig.object("b") == Some(b), "the multipart file differs");
    eprintln!(
        "FIGURES sync, store down: fsync EIO after {fsync_took:.1?}; close of a 20 MiB file EIO after {close_took:.1?}; store back: close after the failed fsync returned 0 with the object in the bucket, the failed close's file in the bucket {arrived:.1?} later by itself"
    );
}

/// --upload sync with the store answering 500: close returns EIO; the mount
/// is then killed (SIGKILL) while the store is still broken, and a new
/// mount of the same cache directory uploads the journalled file before it
/// serves.
#[test]
fn sync_close_eio_on_500_then_a_remount_of_the_cache_dir_uploads_it() {
    require!(Root, Fuse, FastS3);
    let _timer = Timer::start("sync_close_eio_on_500_then_a_remount_of_the_cache_dir_uploads_it");
    let rig = Rig::new("sync-500");
    let mut m = rig.mount(&["--upload", "sync"]);
    let data = content(3, 1 << 20);
    let mut f = File::create(m.path("c")).unwrap();
    f.write_all(&data).unwrap();
    rig.proxy.set(Mode::ServerError(500));
    let (r, took) = within("close", Duration::from_secs(60), move || close(f));
    assert_eq!(errno(&r.unwrap_err()), libc::EIO);
    let errors = rig.count(|s| &s.errors);
    // Let the background retry the release queued fail once more, then die
    // with the file still journalled.
    thread::sleep(Duration::from_secs(1));
    m.kill9();
    assert_eq!(rig.object("c"), None);
    rig.proxy.set(Mode::Pass);
    m.restart();
    // Recovery happens before the mount serves: it is there already.
    assert!(rig.object("c") == Some(data), "recovered after remount");
    assert!(fs::read(m.path("c")).unwrap() == rig.object("c").unwrap());
    m.stop();
    eprintln!(
        "FIGURES sync, store answering 500: close EIO after {took:.1?} ({errors} answers 500), uploaded by the next mount of the cache directory"
    );
}

/// --upload sync while the proxy flaps every 700 ms between Pass, 503,
/// resets, 500 and latency: every close that returned 0 (half of the files
/// fsynced first) had its object in the bucket at that moment. The faults
/// are shorter than the retry budget, so closes are expected to succeed
/// after retries; any that fails must say EIO, and its data still arrives
/// (background retry, unmount).
#[test]
fn sync_every_successful_close_is_in_the_bucket_at_once_under_flapping_faults() {
    require!(Root, Fuse, FastS3);
    let _timer =
        Timer::start("sync_every_successful_close_is_in_the_bucket_at_once_under_flapping_faults");
    let rig = Rig::new("sync-flap");
    let mut m = rig.mount(&["--upload", "sync", "--metadata-ttl", "3600"]);
    assert_eq!(fs::read_dir(&m.dir).unwrap().count(), 0);
    let modes = [
        Mode::Pass,
        Mode::ServerError(503),
        Mode::Pass,
        Mode::Reset,
        Mode::Latency(Duration::from_millis(100)),
        Mode::ServerError(500),
    ];
    let stop = AtomicBool::new(false);
    let (mut acked, mut failed) = (Vec::new(), Vec::new());
    thread::scope(|scope| {
        scope.spawn(|| {
            for mode in modes.iter().cycle() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                rig.proxy.set(*mode);
                thread::sleep(Duration::from_millis(700));
            }
            rig.proxy.set(Mode::Pass);
        });
        let start = Instant::now();
        let mut i = 0u64;
        while start.elapsed() < Duration::from_secs(15) {
            let name = format!("s{i:04}");
            let data = content(5000 + i, 1 + (i as usize * 4099) % 200_000);
            let path = m.path(&name);
            let result = (|| {
                let mut f = File::create(&path)?;
                f.write_all(&data)?;
                if i.is_multiple_of(2) {
                    f.sync_all()?;
                }
                close(f)
            })();
            match result {
                Ok(()) => {
                    assert!(
                        rig.object(&name).as_ref() == Some(&data),
                        "{name}: close returned 0 but the bucket does not have it"
                    );
                    acked.push((name, data));
                }
                Err(e) => {
                    assert_eq!(errno(&e), libc::EIO, "{name}: {e}");
                    failed.push((name, data));
                }
            }
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(rig.proxy.mode(), Mode::Pass);
    m.stop();
    for (name, data) in acked.iter().chain(&failed) {
        assert!(rig.object(name).as_ref() == Some(data), "{name} lost");
    }
    let (errors, resets) = (rig.count(|s| &s.errors), rig.count(|s| &s.resets));
    assert!(errors > 0 && resets > 0, "the faults did not bite");
    assert!(acked.len() > 10, "{} closes returned 0", acked.len());
    eprintln!(
        "FIGURES sync under flapping faults: {} closes returned 0 (each in the bucket at once), {} returned EIO (uploaded later); {errors} requests answered 5xx, {resets} connections reset; bytes lost: 0",
        acked.len(),
        failed.len()
    );
}
