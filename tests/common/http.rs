//! A raw HTTP/1.1 client over a unix socket that sends requests byte for
//! byte the way dockerd's plugin client does: POST, no Content-Type, the
//! plugin Accept header, a Content-Length (0 for Activate).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
    pub raw_body: String,
}

/// Sends `raw` (a complete HTTP request) and reads the reply to EOF.
pub fn send_raw(socket: &Path, raw: &[u8]) -> Reply {
    send_raw_within(socket, raw, Duration::from_secs(30))
}

/// [`send_raw`], waiting up to `timeout` for the reply (dockerd gives
/// Unmount a minute).
pub fn send_raw_within(socket: &Path, raw: &[u8], timeout: Duration) -> Reply {
    let mut stream = UnixStream::connect(socket).expect("connecting to the plugin socket");
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("reading the reply");
    let text = String::from_utf8(bytes).expect("reply is UTF-8");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in reply: {text:?}"));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let body_text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let json = serde_json::from_str(&body_text)
        .unwrap_or_else(|e| panic!("reply body is not JSON ({e}): {body_text:?}"));
    Reply {
        status,
        body: json,
        raw_body: body_text,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// A request as dockerd sends it.
pub fn docker_request(method: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /{method} HTTP/1.1\r\nHost: plugin\r\nUser-Agent: Go-http-client/1.1\r\n\
         Content-Length: {}\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n\
         Accept-Encoding: gzip\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn call(socket: &Path, method: &str, body: &str) -> Reply {
    send_raw(socket, &docker_request(method, body))
}

/// The `Err` field of a reply, or "" when there is none.
pub fn err_of(reply: &Reply) -> String {
    reply.body["Err"].as_str().unwrap_or("").to_string()
}
