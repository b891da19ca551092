//! A fast S3 API for the 1 GiB round trip: `s3s-fs` (crates.io, a Rust S3
//! server that keeps each object as a plain file) on a free loopback port,
//! owned by the test that starts it: dropping it stops the server and
//! deletes its files.
//!
//! moto keeps objects in Python memory and assembles a 1 GiB multipart
//! upload in minutes; s3s-fs does it at disk speed. It is used only where
//! speed matters: it implements the calls a single large file needs
//! (multipart upload, ranged GET, HEAD, ListObjectsV2, user metadata) but
//! stores directory markers as plain directories, without their metadata,
//! so layout tests stay on moto.
//!
//! The binary is `$OSV_FAST_S3_SERVER` (scripts/test.sh installs s3s-fs
//! under /opt and sets it), else `s3s-fs` on PATH. Unlike moto it checks
//! SigV4 signatures, with the keys "test"/"test".

use super::s3server::{answers, free_port};
use objectfs::store::s3::S3Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct FastS3Server {
    pub addr: SocketAddr,
    /// The server's output, in `dir`.
    pub log: PathBuf,
    child: Child,
    /// The server's buckets (one directory each under `dir/data`) and log.
    dir: tempfile::TempDir,
}

/// The s3s-fs binary: `$OSV_FAST_S3_SERVER`, else `s3s-fs` on PATH.
pub fn fast_s3_binary() -> PathBuf {
    match std::env::var_os("OSV_FAST_S3_SERVER") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("s3s-fs"),
    }
}

impl FastS3Server {
    /// Starts s3s-fs over a fresh temporary directory. If the test process
    /// dies, PR_SET_PDEATHSIG ends the server.
    pub fn start() -> FastS3Server {
        let dir = tempfile::Builder::new()
            .prefix("osv-fast-s3-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let log = dir.path().join("s3s-fs.log");
        let mut last_error = String::new();
        for _ in 0..3 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            match spawn(&dir, &log, addr, ("test", "test")) {
                Ok(child) => {
                    return FastS3Server {
                        addr,
                        log,
                        child,
                        dir,
                    };
                }
                // Most likely the port was taken in between: try another.
                Err(e) => last_error = e,
            }
        }
        panic!("s3s-fs did not start: {last_error}");
    }

    /// Stops the server and starts it again on the same port and data,
    /// accepting only the key pair `(id, secret)` from now on: clients with
    /// other keys are refused, as after a rotation or a revocation.
    pub fn restart_with_keys(&mut self, id: &str, secret: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + START_TIMEOUT;
        self.child = loop {
            match spawn(&self.dir, &self.log, self.addr, (id, secret)) {
                Ok(child) => break child,
                // The old process's port may take a moment to be free.
                Err(e) if Instant::now() > deadline => panic!("s3s-fs did not restart: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The directory holding `bucket`'s objects as files.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.dir.path().join("data").join(bucket)
    }

    /// Creates a fresh bucket, `name` plus a suffix unique in this test
    /// process, and returns a config pointing at it. An s3s-fs bucket is a
    /// directory under its root, so it is made directly (a CreateBucket
    /// request would need a signature).
    pub fn new_bucket(&self, name: &str) -> S3Config {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let bucket = format!("{name}-{n}");
        std::fs::create_dir(self.bucket_dir(&bucket)).unwrap();
        S3Config {
            bucket,
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".to_string()),
            access_key_id: Some("test".to_string()),
            access_key_secret: Some("test".to_string()),
            session_token: None,
            path_style: None,
            kind: None,
            credential_source: None,
        }
    }
}

/// Starts s3s-fs over `dir/data` on `addr` with one key pair and waits
/// until it answers; its output goes to `log`. The error says why not.
fn spawn(
    dir: &tempfile::TempDir,
    log: &std::path::Path,
    addr: SocketAddr,
    (id, secret): (&str, &str),
) -> Result<Child, String> {
    let binary = fast_s3_binary();
    assert!(
        binary.components().count() == 1 || binary.exists(),
        "{} does not exist; run scripts/test.sh (it installs s3s-fs) or set OSV_FAST_S3_SERVER",
        binary.display()
    );
    let out = std::fs::File::create(log).unwrap();
    let mut command = Command::new(&binary);
    command
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--access-key", id, "--secret-key", secret])
        .arg(dir.path().join("data"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let mut child = super::spawn_tied_to_test_process(command);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if answers(addr) {
            return Ok(child);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!(
                "{} exited with {status}; output:\n{}",
                binary.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not answer on {addr} within {START_TIMEOUT:?}; output:\n{}",
                binary.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for FastS3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Then `dir` goes, with every object.
    }
}
