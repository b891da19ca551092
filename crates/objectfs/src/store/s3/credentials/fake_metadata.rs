//! Tests only: a fake instance metadata service on 127.0.0.1, as Alibaba
//! Cloud ECS runs it (hardened mode) or as AWS EC2 does (IMDSv2). It hands
//! out the keys a test gives it (and changes), insists on a session token
//! asked for with its lifetime header and carried by every GET, and records
//! each request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which service it plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Aliyun,
    Aws,
}

impl Flavor {
    pub(crate) fn ttl_header(self) -> &'static str {
        match self {
            Flavor::Aliyun => "x-aliyun-ecs-metadata-token-ttl-seconds",
            Flavor::Aws => "x-aws-ec2-metadata-token-ttl-seconds",
        }
    }

    pub(crate) fn token_header(self) -> &'static str {
        match self {
            Flavor::Aliyun => "x-aliyun-ecs-metadata-token",
            Flavor::Aws => "x-aws-ec2-metadata-token",
        }
    }

    pub(crate) fn roles_path(self) -> &'static str {
        match self {
            Flavor::Aliyun => "/latest/meta-data/ram/security-credentials/",
            Flavor::Aws => "/latest/meta-data/iam/security-credentials/",
        }
    }
}

/// Keys it hands out.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub key_id: String,
    pub secret: String,
    pub token: String,
    pub expiration: SystemTime,
}

impl Issued {
    /// The `n`-th set of keys, expiring `valid` from now (whole seconds).
    pub(crate) fn numbered(n: u32, valid: Duration) -> Issued {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        Issued {
            key_id: format!("AKID-ISSUED-{n}"),
            secret: format!("SECRET-ISSUED-{n}-zzQ9x"),
            token: format!("TOKEN-ISSUED-{n}-zzQ3k"),
            expiration: SystemTime::UNIX_EPOCH + Duration::from_secs(now) + valid,
        }
    }
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: String,
    pub path: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    flavor: Flavor,
    role: String,
    issued: Mutex<Issued>,
    seen: Mutex<Vec<Seen>>,
    tokens: Mutex<Vec<String>>,
    counter: AtomicU32,
    down: AtomicBool,
}

/// The running fake; stops when dropped.
pub(crate) struct FakeMetadata {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMetadata {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeMetadata {
    /// Starts one for `role`, handing out `issued`.
    pub(crate) async fn start(flavor: Flavor, role: &str, issued: Issued) -> FakeMetadata {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            flavor,
            role: role.to_string(),
            issued: Mutex::new(issued),
            seen: Mutex::default(),
            tokens: Mutex::default(),
            counter: AtomicU32::new(0),
            down: AtomicBool::new(false),
        });
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    tokio::spawn(serve(stream, shared.clone()));
                }
            }
        });
        FakeMetadata { addr, shared, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Hands out `issued` from now on.
    pub(crate) fn issue(&self, issued: Issued) {
        *self.shared.issued.lock().unwrap() = issued;
    }

    /// While down, it answers 500 to the role's credentials.
    pub(crate) fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// The requests so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The session tokens it handed out.
    pub(crate) fn tokens(&self) -> Vec<String> {
        self.shared.tokens.lock().unwrap().clone()
    }
}

async fn serve(mut stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break String::from_utf8_lossy(&data[..end]).into_owned();
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let seen = Seen {
        method,
        path,
        headers,
    };
    shared.seen.lock().unwrap().push(seen.clone());
    let reply = answer(&shared, &seen);
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn answer(shared: &Shared, seen: &Seen) -> String {
    let flavor = shared.flavor;
    if seen.method == "PUT" && seen.path == "/latest/api/token" {
        let ttl = seen
            .header(flavor.ttl_header())
            .and_then(|v| v.parse::<u32>().ok());
        return match ttl {
            Some(ttl @ 1..=21600) => {
                let n = shared.counter.fetch_add(1, Ordering::SeqCst);
                let token = format!("session-token-{n}");
                shared.tokens.lock().unwrap().push(token.clone());
                let ttl = ttl.to_string();
                reply(
                    "200 OK",
                    &[("X-aws-ec2-metadata-token-ttl-seconds", &ttl)],
                    &token,
                )
            }
            _ => reply("400 Bad Request", &[], ""),
        };
    }
    if seen.method != "GET" {
        return reply("405 Method Not Allowed", &[], "");
    }
    let token_ok = seen
        .header(flavor.token_header())
        .is_some_and(|t| shared.tokens.lock().unwrap().iter().any(|k| k == t));
    if !token_ok {
        return reply("401 Unauthorized", &[], "");
    }
    let Some(rest) = seen.path.strip_prefix(flavor.roles_path()) else {
        return reply("404 Not Found", &[], "");
    };
    if rest.is_empty() {
        return reply("200 OK", &[], &shared.role);
    }
    if rest != shared.role {
        return reply("404 Not Found", &[], "");
    }
    if shared.down.load(Ordering::SeqCst) {
        return reply("500 Internal Server Error", &[], "down");
    }
    let issued = shared.issued.lock().unwrap().clone();
    let expiration = aws_smithy_types::DateTime::from(issued.expiration)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap();
    let body = match flavor {
        Flavor::Aliyun => serde_json::json!({
            "AccessKeyId": issued.key_id,
            "AccessKeySecret": issued.secret,
            "SecurityToken": issued.token,
            "Expiration": expiration,
            "LastUpdated": "2025-01-01T00:00:00Z",
            "Code": "Success",
        }),
        Flavor::Aws => serde_json::json!({
            "Code": "Success",
            "LastUpdated": "2025-01-01T00:00:00Z",
            "Type": "AWS-HMAC",
            "AccessKeyId": issued.key_id,
            "SecretAccessKey": issued.secret,
            "Token": issued.token,
            "Expiration": expiration,
        }),
    };
    reply(
        "200 OK",
        &[("Content-Type", "application/json")],
        &body.to_string(),
    )
}

fn reply(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    out
}
