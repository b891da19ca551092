//! Prometheus for the metrics tests: a real server (Debian's `prometheus`)
//! that scrapes one target every second, on a free loopback port, with its
//! database in a temporary directory named `osv-prometheus-*` (how
//! scripts/check-leftovers.sh tells it from a system Prometheus), stopped
//! and waited for when dropped; its HTTP API's instant queries; a plain
//! HTTP GET of a scrape target; and `promtool check metrics` of what it
//! served.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long Prometheus may take to answer after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Prometheus {
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Its configuration, database and log.
    dir: tempfile::TempDir,
}

/// `GET path` from `addr` over HTTP/1.0 (so no chunked answer): the status
/// and the body, or the error of connecting.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `s` percent-encoded for a query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `promtool check metrics` of `text`: whether it found nothing to say,
/// and what it said.
pub fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim().is_empty(), said)
}

impl Prometheus {
    /// Starts Prometheus scraping `target`'s /metrics every second as job
    /// `job`.
    pub fn start(job: &str, target: SocketAddr) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("osv-prometheus-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let port = super::s3server::free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = super::spawn_tied_to_test_process(command);
        let mut p = Prometheus {
            addr,
            child: Some(child),
            dir,
        };
        let ready = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if matches!(http_get(addr, "/-/ready"), Ok((200, _))) {
                return p;
            }
            if let Some(status) = p.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("prometheus exited with {status}; log:\n{}", p.log_text());
            }
            assert!(
                std::time::Instant::now() < ready,
                "prometheus did not get ready within {START_TIMEOUT:?}; log:\n{}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The result of instant query `promql` (its `data.result` array); panics
    /// on an answer that is not a success.
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let (status, body) = http_get(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        )
        .unwrap_or_else(|e| panic!("querying {promql}: {e}"));
        let answer: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{promql}: HTTP {status}, not JSON ({e}): {body}"));
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of the single series `promql` returns, if it returns one.
    pub fn value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        let [series] = result.as_slice() else {
            return None;
        };
        series["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
