//! A real S3 API for tests: `moto_server` on a free loopback port, one per
//! test binary, killed with the test process.
//!
//! The binary is `$OSV_MOTO_SERVER` (scripts/test.sh installs moto in a venv
//! and sets it), else `moto_server` on PATH. moto checks no signatures, so
//! the dummy keys "test"/"test" do.

use objectfs::store::s3::S3Config;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long moto may take to answer after start (Python imports are slow).
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct MotoServer {
    pub addr: SocketAddr,
    pub log: PathBuf,
    /// Kept so the child is never reaped early; PR_SET_PDEATHSIG ends it.
    _child: Mutex<Child>,
}

/// The test binary's shared server, started on first use.
pub fn moto() -> &'static MotoServer {
    static SERVER: OnceLock<MotoServer> = OnceLock::new();
    SERVER.get_or_init(MotoServer::start)
}

/// The moto_server binary: `$OSV_MOTO_SERVER`, else `moto_server` on PATH.
pub fn moto_binary() -> PathBuf {
    match std::env::var_os("OSV_MOTO_SERVER") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("moto_server"),
    }
}

/// A loopback port nothing listens on (bound, then closed).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl MotoServer {
    fn start() -> MotoServer {
        let binary = moto_binary();
        let log = std::env::temp_dir().join(format!("osv-moto-{}.log", std::process::id()));
        let mut last_error = String::new();
        // The port is free when chosen but could be taken before moto binds
        // it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            let out = std::fs::File::create(&log).unwrap();
            let mut command = Command::new(&binary);
            command
                .arg("-H")
                .arg("127.0.0.1")
                .arg("-p")
                .arg(port.to_string())
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            // Nothing from the developer's AWS set-up may leak in.
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("AWS_") {
                    command.env_remove(&name);
                }
            }
            let mut child = spawn(command, &binary);
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if answers(addr) {
                    return MotoServer {
                        addr,
                        log,
                        _child: Mutex::new(child),
                    };
                }
                if let Some(status) = child.try_wait().unwrap() {
                    last_error = format!(
                        "{} exited with {status}; output:\n{}",
                        binary.display(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{} did not answer on {addr} within {START_TIMEOUT:?}; output:\n{}",
                        binary.display(),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto_server did not start: {last_error}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A config for a bucket that does not exist (yet).
    pub fn config_for(&self, bucket: &str) -> S3Config {
        S3Config {
            bucket: bucket.to_string(),
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

    /// Creates a fresh bucket, `name` plus a suffix unique in this test
    /// process, and returns a config pointing at it.
    pub fn new_bucket(&self, name: &str) -> S3Config {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut base: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        base.truncate(40);
        let bucket = format!("{}-{}-{n}", base.trim_matches('-'), std::process::id());
        let (status, body) = self.raw_request("PUT", &format!("/{bucket}"));
        assert_eq!(status, 200, "creating bucket {bucket}: {body}");
        self.config_for(&bucket)
    }

    /// One plain HTTP/1.1 request with an empty body (moto checks no
    /// signatures); returns the status and body.
    pub fn raw_request(&self, method: &str, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        let text = String::from_utf8_lossy(&reply).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad reply from moto: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

fn spawn(command: Command, binary: &std::path::Path) -> Child {
    let exists = binary.components().count() == 1 || binary.exists();
    assert!(
        exists,
        "{} does not exist; run scripts/test.sh (it installs moto) or set OSV_MOTO_SERVER",
        binary.display()
    );
    super::spawn_tied_to_test_process(command)
}

/// Whether an HTTP server answers on `addr`.
pub fn answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).is_ok() && first.starts_with(b"HTTP/1.")
}
