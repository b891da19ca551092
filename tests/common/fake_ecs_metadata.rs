//! A fake Alibaba Cloud ECS instance metadata service on 127.0.0.1, for
//! tests of mounts whose keys come from a RAM role. It speaks only the
//! hardened mode: `PUT /latest/api/token` with the token's lifetime in
//! `X-aliyun-ecs-metadata-token-ttl-seconds` gives a session token, and
//! every GET under `/latest/meta-data/ram/security-credentials/` must carry
//! one in `X-aliyun-ecs-metadata-token` (else 401). It lists its one role
//! and answers the role's keys as the test last set them (`AccessKeyId`,
//! `AccessKeySecret`, `SecurityToken`, `Expiration`, `LastUpdated`, `Code`
//! "Success"), and records every request with what it answered. One thread,
//! one request per connection (it answers `Connection: close`); it stops
//! when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub const TOKEN_PATH: &str = "/latest/api/token";
pub const ROLES_PATH: &str = "/latest/meta-data/ram/security-credentials/";
pub const TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
pub const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
/// Longest session token lifetime the service grants (6 hours).
const MAX_TTL_SECS: u64 = 21_600;
/// A client that sends nothing is dropped after this.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The keys the role has; what the service hands out.
#[derive(Debug, Clone)]
pub struct RoleKeys {
    pub id: String,
    pub secret: String,
    pub token: String,
    pub expiration: SystemTime,
}

/// One request as it arrived, and the answer's status.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub status: u16,
    /// The key id of the keys it answered with, for a role's keys.
    pub handed_out: Option<String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    role: String,
    keys: Mutex<(RoleKeys, SystemTime)>,
    seen: Mutex<Vec<Seen>>,
    tokens: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// The running service.
pub struct FakeEcsMetadata {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FakeEcsMetadata {
    /// Starts the service for `role`, handing out `keys`.
    pub fn start(role: &str, keys: RoleKeys) -> FakeEcsMetadata {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            role: role.to_string(),
            keys: Mutex::new((keys, SystemTime::now())),
            seen: Mutex::default(),
            tokens: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::spawn({
            let shared = shared.clone();
            move || {
                for stream in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &shared);
                    }
                }
            }
        });
        FakeEcsMetadata {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, as the volume option `metadataEndpoint`
    /// takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Hands out `keys` from now on, as the service does after a rotation.
    pub fn hand_out(&self, keys: RoleKeys) {
        *self.shared.keys.lock().unwrap() = (keys, SystemTime::now());
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The session tokens it gave out.
    pub fn tokens(&self) -> Vec<String> {
        self.shared.tokens.lock().unwrap().clone()
    }
}

impl Drop for FakeEcsMetadata {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request, records it, answers it and closes the connection.
fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let path = words.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        match reader.read_line(&mut header) {
            Ok(0) | Err(_) => return,
            Ok(_) if header.trim().is_empty() => break,
            Ok(_) => {
                if let Some((name, value)) = header.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
            }
        }
    }
    let body_len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(0);
    let _ = std::io::copy(&mut reader.by_ref().take(body_len), &mut std::io::sink());
    let mut seen = Seen {
        method,
        path,
        headers,
        status: 0,
        handed_out: None,
    };
    let (status, content_type, body) = answer(shared, &mut seen);
    seen.status = status;
    shared.seen.lock().unwrap().push(seen);
    let reply = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let mut write_half = write_half;
    let _ = write_half.write_all(reply.as_bytes());
    let _ = write_half.shutdown(std::net::Shutdown::Both);
}

/// The answer to `seen`: status, content type, body. Sets what it hands
/// out.
fn answer(shared: &Shared, seen: &mut Seen) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain";
    if seen.path == TOKEN_PATH {
        if seen.method != "PUT" {
            return (405, TEXT, String::new());
        }
        let ttl = seen.header(TTL_HEADER).and_then(|v| v.parse::<u64>().ok());
        if !ttl.is_some_and(|t| (1..=MAX_TTL_SECS).contains(&t)) {
            return (400, TEXT, String::new());
        }
        let mut tokens = shared.tokens.lock().unwrap();
        let token = format!("ecs-session-{}-{}", tokens.len(), std::process::id());
        tokens.push(token.clone());
        return (200, TEXT, token);
    }
    let Some(role) = seen.path.strip_prefix(ROLES_PATH) else {
        return (404, TEXT, String::new());
    };
    if seen.method != "GET" {
        return (405, TEXT, String::new());
    }
    let known = seen
        .header(TOKEN_HEADER)
        .is_some_and(|t| shared.tokens.lock().unwrap().iter().any(|k| k == t));
    if !known {
        return (401, TEXT, String::new());
    }
    if role.is_empty() {
        return (200, TEXT, shared.role.clone());
    }
    if role != shared.role {
        return (404, TEXT, String::new());
    }
    let (keys, updated) = shared.keys.lock().unwrap().clone();
    seen.handed_out = Some(keys.id.clone());
    let body = serde_json::json!({
        "AccessKeyId": keys.id,
        "AccessKeySecret": keys.secret,
        "SecurityToken": keys.token,
        "Expiration": humantime::format_rfc3339_seconds(keys.expiration).to_string(),
        "LastUpdated": humantime::format_rfc3339_seconds(updated).to_string(),
        "Code": "Success",
    });
    (200, "application/json", body.to_string())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    }
}
