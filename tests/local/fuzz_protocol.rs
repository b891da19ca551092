//! Hostile input against the protocol layer and the option parser.
//!
//! * The corpus in tests/data/fuzz (one directory per call, one request
//!   body per file, the expected HTTP status first in the file name) is
//!   replayed in order against the real router, served in this process on
//!   a unix socket and driven with raw HTTP as dockerd sends it. (`tower`
//!   is not a direct dependency, so the router is not called with
//!   `oneshot`; serving it on a socket exercises hyper's parsing as well.)
//! * proptest then sends generated, mutated and random bodies to every
//!   call, and feeds `spec::parse_options` and `protocol::parse_request`
//!   directly.
//!
//! Properties: no panic, no hang (each call answers within
//! [`CALL_TIMEOUT`]), every reply is JSON, every refusal is exactly
//! `{"Err": "<one sentence>"}` with the status the protocol tests expect
//! (400 for a body that is not a request, 404 for an unknown call, 500
//! for a refused call), and no error ever quotes an access key, secret or
//! session token. `PROPTEST_CASES=N` runs N cases per property instead of
//! the defaults below; the number of inputs tried is printed (see it with
//! `--nocapture`).

use objectfs::UploadMode;
use opensandbox_volume::driver::{Driver, DriverConfig};
use opensandbox_volume::protocol::{self, parse_request};
use opensandbox_volume::spec::{BackendSpec, Credentials, VolumeSpec, parse_options};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

/// Longest any single call may take before it counts as a hang.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cases per property (override with PROPTEST_CASES).
const PROTOCOL_CASES: u32 = 2_500;
const OPTIONS_CASES: u32 = 8_000;
const REQUEST_PARSER_CASES: u32 = 4_000;
/// Threads of the in-process server are named this, so a panic on one of
/// them is counted (a panic in a blocking task would otherwise surface
/// only as a 500 reply).
const SERVER_THREAD: &str = "osv-fuzz-server";
/// Marker every generated secret carries, so a leak is recognised.
const SECRET_MARKER: &str = "SeCrEtK";
/// Secrets of the corpus files.
const CORPUS_SECRETS: &[&str] = &["CORPUSKEYID", "CORPUSSECRET", "CORPUSTOKEN"];

const ENDPOINTS: &[&str] = &[
    "Plugin.Activate",
    "VolumeDriver.Capabilities",
    "VolumeDriver.List",
    "VolumeDriver.Create",
    "VolumeDriver.Get",
    "VolumeDriver.Path",
    "VolumeDriver.Mount",
    "VolumeDriver.Unmount",
    "VolumeDriver.Remove",
];

static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_server_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(SERVER_THREAD) {
                SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    })
}

// ---------------------------------------------------------------------------
// The router, served in this process.

/// The real router and driver on a unix socket in a temp directory. Object
/// mounts point at a binary that does not exist and pvc lookups at a socket
/// nobody serves, so every Mount fails or succeeds at once; host volumes
/// are real bind mounts of `allowed` (root), undone on drop.
struct Server {
    base: tempfile::TempDir,
    socket: PathBuf,
    allowed: PathBuf,
    mount_root: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        count_server_panics();
        let base = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(base.path()).unwrap();
        let allowed = root.join("allowed");
        std::fs::create_dir_all(&allowed).unwrap();
        let socket = root.join("osv.sock");
        let mount_root = root.join("mounts");
        let config = DriverConfig {
            state_dir: root.join("state"),
            mount_root: mount_root.clone(),
            allowed_host_paths: vec![allowed.clone()],
            host_root: "/".into(),
            host_root_path: "/".into(),
            default_upload: UploadMode::Async,
            default_cache_size: objectfs::config::DEFAULT_CACHE_SIZE,
            docker_socket: root.join("no-docker.sock"),
            credentials_dir: root.join("credentials"),
            mount_exe: root.join("no-such-mount-binary"),
            mount_log: opensandbox_volume::logging::LogOutput {
                bounds: opensandbox_volume::logging::rotation::Bounds {
                    max_size: 1 << 20,
                    max_files: 2,
                },
                format: opensandbox_volume::logging::LogFormat::Text,
            },
        };
        let driver = Arc::new(Driver::open(config).unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sock = socket.clone();
        let thread = std::thread::Builder::new()
            .name(SERVER_THREAD.into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(SERVER_THREAD)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = protocol::server::bind_socket(&sock).await.unwrap();
                    ready_tx.send(()).unwrap();
                    let stop = async move {
                        let _ = stop_rx.await;
                    };
                    protocol::server::serve(listener, &sock, protocol::router(driver), stop)
                        .await
                        .unwrap();
                });
            })
            .unwrap();
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Server {
            base,
            socket,
            allowed,
            mount_root,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Everything mounted under the mount root must be the allowed
    /// directory or a directory below it (device and inode compared).
    fn assert_mounts_confined(&self) {
        let allowed = std::fs::metadata(&self.allowed).unwrap();
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        for mp in opensandbox_volume::mounts::parse_mount_points(&text) {
            if !mp.starts_with(&self.mount_root) {
                continue;
            }
            let meta = std::fs::metadata(&mp).unwrap();
            assert_eq!(meta.dev(), allowed.dev(), "{mp:?} is on another device");
            let inside = walkdir_inodes(&self.allowed).contains(&meta.ino());
            assert!(inside, "{mp:?} is not a directory of {:?}", self.allowed);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounted: Vec<PathBuf> = opensandbox_volume::mounts::parse_mount_points(&text)
            .into_iter()
            .filter(|p| p.starts_with(self.base.path()))
            .collect();
        mounted.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for mp in mounted {
            let _ = opensandbox_volume::mounts::unmount(&mp);
        }
    }
}

/// Inodes of every directory under `root` (symlinks not followed).
fn walkdir_inodes(root: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        out.push(meta.ino());
        if let Ok(entries) = std::fs::read_dir(&dir) {
            todo.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// A raw HTTP client with a deadline.

struct Reply {
    status: u16,
    body: Vec<u8>,
    elapsed: Duration,
}

/// A request as dockerd sends it: POST, no Content-Type, the plugin Accept.
fn docker_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: plugin\r\nUser-Agent: Go-http-client/1.1\r\n\
         Content-Length: {}\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n\
         Accept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Sends `raw`, reads the reply to EOF; a reply later than CALL_TIMEOUT is
/// an error (a hang), as is anything that is not an HTTP response.
fn send(socket: &Path, raw: &[u8]) -> Result<Reply, String> {
    let start = Instant::now();
    let mut stream = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(CALL_TIMEOUT)).unwrap();
    // The server may answer (413, say) and close before reading it all.
    let _ = stream.write_all(raw);
    let mut bytes = Vec::new();
    if let Err(e) = stream.read_to_end(&mut bytes)
        && bytes.is_empty()
    {
        return Err(format!(
            "no reply within {CALL_TIMEOUT:?} ({e}) after {:?}",
            start.elapsed()
        ));
    }
    let elapsed = start.elapsed();
    if elapsed >= CALL_TIMEOUT {
        return Err(format!("the reply took {elapsed:?}"));
    }
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {:?}", String::from_utf8_lossy(&bytes)))?;
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    let rest = &bytes[split + 4..];
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let lower = head.to_ascii_lowercase();
    let body = if lower.contains("transfer-encoding: chunked") {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        body,
        elapsed,
    })
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line")?;
        let size = std::str::from_utf8(&body[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or("bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let data = body
            .get(line_end + 2..line_end + 2 + size)
            .ok_or("short chunk")?;
        out.extend_from_slice(data);
        body = body.get(line_end + 4 + size..).ok_or("short chunk end")?;
    }
}

// ---------------------------------------------------------------------------
// What a reply must look like.

/// Why `s` is not one sentence a person can act on, if it is not.
fn sentence_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is empty".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Some(format!("contains the control character {c:?}"));
    }
    if s.trim() != s {
        return Some("has leading or trailing whitespace".into());
    }
    // The sentence the protocol layer uses when a handler panicked.
    if s.contains("panicked") || s.contains("the plugin failed while") {
        return Some("reports a panic".into());
    }
    None
}

/// Checks a reply's shape; returns its JSON body.
fn check_reply(endpoint: Option<&str>, reply: &Reply, mount_root: &Path) -> Result<Value, String> {
    let text = std::str::from_utf8(&reply.body)
        .map_err(|_| format!("status {}: the body is not UTF-8", reply.status))?;
    let body: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "status {}: the body is not JSON ({e}): {text:?}",
            reply.status
        )
    })?;
    let object = body
        .as_object()
        .ok_or_else(|| format!("status {}: the body is not an object: {text}", reply.status))?;
    if reply.status != 200 {
        if !(400..600).contains(&reply.status) {
            return Err(format!("unexpected status {}: {text}", reply.status));
        }
        if object.len() != 1 {
            return Err(format!("an error must be exactly {{\"Err\": ...}}: {text}"));
        }
        let err = object
            .get("Err")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("an error without a string `Err`: {text}"))?;
        if let Some(problem) = sentence_problem(err) {
            return Err(format!("`Err` {problem}: {err:?}"));
        }
        return Ok(body);
    }
    if let Some(e) = object.get("Err")
        && e != &json!("")
    {
        return Err(format!("status 200 with an error: {text}"));
    }
    let shape_ok = match endpoint {
        Some("Plugin.Activate") => body == json!({"Implements": ["VolumeDriver"]}),
        Some("VolumeDriver.Capabilities") => body == json!({"Capabilities": {"Scope": "local"}}),
        Some("VolumeDriver.List") => body["Volumes"].as_array().is_some_and(|vs| {
            vs.iter()
                .all(|v| v["Name"].is_string() && v["CreatedAt"].is_string())
        }),
        Some("VolumeDriver.Mount") => body["Mountpoint"]
            .as_str()
            .is_some_and(|mp| Path::new(mp).parent() == Some(mount_root)),
        Some("VolumeDriver.Path") => {
            object.is_empty()
                || body["Mountpoint"]
                    .as_str()
                    .is_some_and(|mp| Path::new(mp).parent() == Some(mount_root))
        }
        Some("VolumeDriver.Get") => {
            body["Volume"]["Name"].is_string()
                && body["Volume"]["CreatedAt"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
                && body["Volume"]["Status"].is_object()
        }
        Some(_) => object.is_empty(),
        None => false,
    };
    if !shape_ok {
        return Err(format!("{endpoint:?} replied 200 with {text}"));
    }
    Ok(body)
}

/// The status the protocol must answer `body` on `endpoint` with, as far
/// as it follows from the body alone: `Some(400)` for a body that is not a
/// request, `Some(200)` for calls that ignore their body, `None` when the
/// driver decides (200 or 500).
fn expected_status(endpoint: Option<&str>, body: &[u8]) -> Option<u16> {
    let Some(endpoint) = endpoint else {
        return Some(404);
    };
    if matches!(
        endpoint,
        "Plugin.Activate" | "VolumeDriver.Capabilities" | "VolumeDriver.List"
    ) {
        return Some(200);
    }
    match parse_request(body) {
        Err(_) => Some(400),
        Ok(r) if r.name.is_none() => Some(400),
        Ok(r)
            if r.id.is_none()
                && matches!(endpoint, "VolumeDriver.Mount" | "VolumeDriver.Unmount") =>
        {
            Some(400)
        }
        Ok(_) => None,
    }
}

// ---------------------------------------------------------------------------
// The corpus.

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz")
}

/// `(endpoint, file name, body)` for every corpus file, placeholders
/// filled in: `@ALLOWED@` is the allowed host directory, `@HUGE@` 100,000
/// `x`s (kept out of the repository).
fn corpus(allowed: &Path) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for endpoint in ENDPOINTS {
        let dir = corpus_dir().join(endpoint);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let raw = std::fs::read(&file).unwrap();
            let body = replace(&raw, b"@ALLOWED@", allowed.to_str().unwrap().as_bytes());
            let body = replace(&body, b"@HUGE@", "x".repeat(100_000).as_bytes());
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            out.push((endpoint.to_string(), name, body));
        }
    }
    out
}

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn corpus_replays_with_the_expected_statuses_and_sentences() {
    require!(Root);
    let server = Server::start();
    let corpus = corpus(&server.allowed);
    assert!(corpus.len() > 150, "corpus has {} files", corpus.len());
    let mut failures = Vec::new();
    for (endpoint, file, body) in &corpus {
        let reply = send(
            &server.socket,
            &docker_request(&format!("/{endpoint}"), body),
        )
        .unwrap_or_else(|e| panic!("{endpoint}/{file}: {e}"));
        let json = match check_reply(Some(endpoint), &reply, &server.mount_root) {
            Ok(json) => json,
            Err(e) => {
                failures.push(format!("{endpoint}/{file}: {e}"));
                continue;
            }
        };
        let want = file.split('-').next().unwrap();
        if want != "any" && want != reply.status.to_string() {
            failures.push(format!(
                "{endpoint}/{file}: status {} (wanted {want}): {json}",
                reply.status
            ));
        }
        let text = String::from_utf8_lossy(&reply.body);
        for secret in CORPUS_SECRETS {
            if text.contains(secret) {
                failures.push(format!("{endpoint}/{file}: the reply shows a key: {text}"));
            }
        }
        if text.contains("hunter2") {
            failures.push(format!("{endpoint}/{file}: the reply shows a password"));
        }
        server.assert_mounts_confined();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        SERVER_PANICS.load(Ordering::SeqCst),
        0,
        "the server panicked"
    );
    // Every corpus volume was removed again and nothing is left mounted.
    let list = send(&server.socket, &docker_request("/VolumeDriver.List", b"{}")).unwrap();
    let list: Value = serde_json::from_slice(&list.body).unwrap();
    let left: Vec<&Value> = list["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["Name"] != "corpus-nfs")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !opensandbox_volume::mounts::parse_mount_points(&text)
            .iter()
            .any(|p| p.starts_with(&server.mount_root)),
        "a mount was left under the mount root"
    );
    eprintln!("fuzz_protocol corpus: {} requests replayed", corpus.len());
}

/// Requests that are odd at the HTTP level rather than in their body.
#[test]
fn http_level_oddities_get_json_errors() {
    let server = Server::start();
    let huge = format!(r#"{{"Name":"{}"}}"#, "n".repeat(3 << 20));
    let chunked = b"POST /VolumeDriver.Get HTTP/1.1\r\nHost: plugin\r\nTransfer-Encoding: chunked\r\n\
                    Connection: close\r\n\r\n5\r\n{\"Nam\r\n9\r\ne\":\"nope\"\r\n1\r\n}\r\n0\r\n\r\n"
        .to_vec();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unknown call", docker_request("/VolumeDriver.Frobnicate", b"{}"), 404),
        ("lower-case call", docker_request("/volumedriver.get", b"{}"), 404),
        ("trailing slash", docker_request("/VolumeDriver.Get/", b"{}"), 404),
        ("encoded call name", docker_request("/%56olumeDriver.Get", b"{}"), 404),
        ("dot-dot path", docker_request("/../VolumeDriver.Get", b"{}"), 404),
        ("root path", docker_request("/", b"{}"), 404),
        (
            "query string",
            docker_request("/VolumeDriver.Get?Name=x", br#"{"Name":"nope"}"#),
            500,
        ),
        ("chunked body", chunked, 500),
        (
            "a JSON content type",
            b"POST /VolumeDriver.Get HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\n\
              Content-Length: 15\r\nConnection: close\r\n\r\n{\"Name\":\"nope\"}"
                .to_vec(),
            500,
        ),
        (
            "a wrong content type",
            b"POST /VolumeDriver.Get HTTP/1.1\r\nHost: p\r\nContent-Type: text/plain\r\n\
              Content-Length: 15\r\nConnection: close\r\n\r\n{\"Name\":\"nope\"}"
                .to_vec(),
            500,
        ),
        (
            "GET of a call",
            b"GET /VolumeDriver.List HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n".to_vec(),
            405,
        ),
        (
            "PUT of a call",
            b"PUT /VolumeDriver.Create HTTP/1.1\r\nHost: p\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                .to_vec(),
            405,
        ),
        (
            "a body over the size limit",
            docker_request("/VolumeDriver.Get", huge.as_bytes()),
            413,
        ),
    ];
    let mut failures = Vec::new();
    for (what, raw, want) in cases {
        let reply = match send(&server.socket, &raw) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{what}: {e}"));
                continue;
            }
        };
        if reply.status != want {
            failures.push(format!(
                "{what}: status {} (wanted {want}): {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
        }
        if let Err(e) = check_reply(Some("VolumeDriver.Get"), &reply, &server.mount_root) {
            failures.push(format!("{what}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Still serving.
    let r = send(&server.socket, &docker_request("/Plugin.Activate", b"")).unwrap();
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------
// Generators.

const SECRET_OPTIONS: &[&str] = &["accessKeyId", "accessKeySecret", "sessionToken"];

/// An option name the parser documents (spec::option_names, so a new option
/// is fuzzed without editing this file).
fn known_option_name() -> impl Strategy<Value = String> + Clone {
    proptest::sample::select(opensandbox_volume::spec::option_names()).prop_map(str::to_string)
}

fn pick(items: &'static [&'static str]) -> impl Strategy<Value = String> + Clone {
    proptest::sample::select(items).prop_map(str::to_string)
}

/// Strings that have broken parsers before: empty, dots, separators,
/// NUL and other control characters, bidi and line separators, percent
/// encodings, over-long names, and arbitrary text.
fn nasty_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => pick(&[
            "", " ", ".", "..", "...", "/", "//", "/..", "../", "a/../..", "\0", "a\0b", "\n",
            "\r\n", "\t", "\u{1b}[31m", "\u{7f}", "\u{85}", "\u{202e}", "\u{2028}", "\u{feff}",
            "é", "😀", "%2e%2e", "%2F", "..%2F..", "%00", "\\", "C:\\", "~", "$HOME", "`id`",
            "'", "\"", "{}", "[]", "null", "true", "1e999", "-0", "NaN",
        ]),
        1 => (1usize..6, 250usize..262).prop_map(|(n, len)| "a".repeat(len) + &"/b".repeat(n)),
        1 => (0usize..3).prop_map(|i| ["a".repeat(4097), "é".repeat(3000), "/a".repeat(2100)][i].clone()),
        3 => "\\PC{0,24}",
        2 => any::<String>(),
    ]
    .boxed()
}

/// A path (absolute or not) made of awkward components.
fn path_like() -> BoxedStrategy<String> {
    let component = prop_oneof![
        4 => pick(&["a", "data", "srv", "etc", "sandboxes", "x y", "tmp"]),
        2 => pick(&["..", ".", "", "%2e%2e", "%2F", "\0", "a\nb", "\u{202e}", "-o", "*"]),
        1 => (250usize..260).prop_map(|n| "c".repeat(n)),
        1 => "\\PC{1,8}",
    ];
    (
        any::<bool>(),
        proptest::collection::vec(component, 0..6),
        any::<bool>(),
    )
        .prop_map(|(leading, parts, trailing)| {
            let mut s = parts.join("/");
            if leading {
                s.insert(0, '/');
            }
            if trailing {
                s.push('/');
            }
            s
        })
        .boxed()
}

/// A secret value, marked so that a leak is recognisable; some are
/// damaged the way a bad copy damages them.
fn secret() -> BoxedStrategy<String> {
    prop_oneof![
        5 => "[A-Za-z0-9+/=]{0,40}".prop_map(|s| format!("{SECRET_MARKER}{s}")),
        2 => ("[A-Za-z0-9]{0,20}", pick(&[" ", "\n", "\t", "\r", "\0", "\u{a0}", "\u{2028}"]), "[A-Za-z0-9]{0,20}")
            .prop_map(|(a, ws, b)| format!("{SECRET_MARKER}{a}{ws}{b}")),
        1 => Just(String::new()),
    ]
    .boxed()
}

/// A plausible or hostile value for option `key` (any spelling).
fn option_value(key: &str) -> BoxedStrategy<Value> {
    let s = |items: &'static [&'static str]| pick(items).prop_map(Value::String).boxed();
    let typed: BoxedStrategy<Value> = match key.to_ascii_lowercase().as_str() {
        "type" => s(&[
            "host", "pvc", "ossfs", "s3", "nfs", "HOST", " s3 ", "Ossfs", "tmpfs", "", "host\n",
        ]),
        "path" | "subpath" | "prefix" => path_like().prop_map(Value::String).boxed(),
        "readonly" | "pathstyle" => prop_oneof![
            s(&[
                "true", "false", "yes", "no", "1", "0", "on", "off", "TRUE", " true ", "maybe", ""
            ]),
            any::<bool>().prop_map(Value::Bool),
            (-2i64..3).prop_map(Value::from),
        ]
        .boxed(),
        "bucket" => prop_oneof![
            s(&[
                "my-bucket",
                "corpus-oss",
                "a.b-c",
                "ab",
                "a..b",
                "192.168.1.1",
                "-bucket",
                "Bucket",
                "../b"
            ]),
            "[a-z0-9.-]{0,70}".prop_map(Value::String),
        ]
        .boxed(),
        "endpoint" => s(&[
            "http://127.0.0.1:9000",
            "oss-cn-hangzhou.aliyuncs.com",
            "https://s3.amazonaws.com",
            "http://[::1]:9000",
            "http://user:SeCrEtKpw@127.0.0.1:9000",
            "ftp://example.com",
            "http://host:99999",
            "http://h/path?q#f",
            "http://",
            "://",
            "",
            " ",
            "h\nost",
        ]),
        "accesskeyid" | "accesskeysecret" | "sessiontoken" => prop_oneof![
            4 => secret().prop_map(Value::String),
            1 => (1u64..u64::MAX).prop_map(|n| Value::String(format!("{SECRET_MARKER}{n}"))),
        ]
        .boxed(),
        "credentials" => s(&[
            "team-a",
            "a.b_c-1",
            "../x",
            ".hidden",
            "a/b",
            "",
            "x\n",
            "/etc/passwd",
        ]),
        "uid" | "gid" => prop_oneof![
            s(&[
                "0",
                "1000",
                "4294967294",
                "4294967295",
                "-1",
                "1e3",
                " 7 ",
                "",
                "99999999999999999999",
                "0x10"
            ]),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
        ]
        .boxed(),
        "umask" => s(&[
            "022", "0022", "777", "0777", "778", "8", "-0", "", "00000", "0o22",
        ]),
        "upload" => s(&["async", "sync", "SYNC", " async ", "later", ""]),
        "metadatattl" => prop_oneof![
            s(&[
                "0", "1", "0.25", "3600", "3600.0", "3600.1", "1e3", "-1", "inf", "NaN", ".5",
                "5.", "", "\u{ff11}"
            ]),
            any::<f64>().prop_map(|f| json!(f)),
        ]
        .boxed(),
        "cachesize" => prop_oneof![
            s(&[
                "64MiB",
                "2GiB",
                "100MB",
                "1TB",
                "67108864",
                "67108863",
                "63MiB",
                "0",
                "1.5GiB",
                "2 GiB",
                "512M",
                "-1GiB",
                "GiB",
                "",
                "99999999999TiB",
                "\u{ff11}GiB"
            ]),
            any::<u64>().prop_map(Value::from),
        ]
        .boxed(),
        "version" => s(&["1.0", "2.0", "3.0", " 1.0", "", "1"]),
        "options" => proptest::collection::vec(
            pick(&[
                "allow_other",
                "ro",
                "uid=1000",
                "gid=0",
                "umask=022",
                "umask=999",
                "uid=x",
                "stat_cache_expire=5",
                "attr_timeout=0.5",
                "use_cache=/tmp",
                "-o allow_other",
                "vers=4.1",
                "soft",
                "timeo=600",
                "nolock",
                "addr=1.2.3.4",
                "uid",
                "ro=1",
                "a\nb",
                "",
                " ",
                "=",
                "x=",
                "=x",
                "sec=krb5",
                "nconnect=16",
            ]),
            0..6,
        )
        .prop_map(|items| Value::String(items.join(",")))
        .boxed(),
        "claimname" => s(&[
            "team-data",
            "a",
            "-a",
            "A",
            "a_b",
            "../x",
            "",
            "corpus-host",
        ]),
        "server" => s(&[
            "nfs.example.com",
            "127.0.0.1",
            "[::1]",
            "[zz]",
            "-o",
            "a..b",
            "",
            "h:1",
        ]),
        "region" => s(&["us-west-2", "cn-hangzhou", "", "a b", "us_west"]),
        _ => nasty_string().prop_map(Value::String).boxed(),
    };
    prop_oneof![
        8 => typed,
        2 => nasty_string().prop_map(Value::String),
        1 => any_json(),
    ]
    .boxed()
}

/// Any JSON value, nested a little.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// An option name: documented, differently cased, or invented.
fn option_key() -> BoxedStrategy<String> {
    prop_oneof![
        6 => known_option_name(),
        2 => (known_option_name(), any::<bool>()).prop_map(|(k, up)| if up {
            k.to_ascii_uppercase()
        } else {
            k.to_ascii_lowercase()
        }),
        1 => "[a-zA-Z_]{1,12}",
        1 => nasty_string(),
    ]
    .boxed()
}

/// A map of Docker volume options: usually a type, then a few options of
/// any type with values chosen for their key.
fn option_map(host_path: Option<String>) -> BoxedStrategy<Map<String, Value>> {
    let entry = option_key().prop_flat_map(|k| {
        let v = option_value(&k);
        (Just(k), v)
    });
    let valid_host = match host_path {
        Some(p) => Just(Some(p)).boxed(),
        None => Just(None).boxed(),
    };
    (
        proptest::option::weighted(0.9, option_value("type")),
        proptest::collection::vec(entry, 0..8),
        proptest::option::weighted(0.3, valid_host),
    )
        .prop_map(|(ty, entries, host)| {
            let mut map = Map::new();
            if let Some(ty) = ty {
                map.insert("type".into(), ty);
            }
            for (k, v) in entries {
                map.insert(k, v);
            }
            // Now and then a volume that Create accepts.
            if let Some(Some(path)) = host {
                map.clear();
                map.insert("type".into(), json!("host"));
                map.insert("path".into(), json!(path));
            }
            map
        })
        .boxed()
}

/// Secret values in `opts` that carry the marker.
fn secrets_in(opts: &Map<String, Value>) -> Vec<String> {
    opts.iter()
        .filter(|(k, _)| SECRET_OPTIONS.iter().any(|s| s.eq_ignore_ascii_case(k)))
        .filter_map(|(_, v)| v.as_str())
        .filter(|v| v.contains(SECRET_MARKER))
        .map(str::to_string)
        .collect()
}

/// Whether `text` shows `secret`, as is or escaped.
fn leaks(text: &str, secret: &str) -> bool {
    let escaped = secret.escape_debug().to_string();
    let after_marker = secret.strip_prefix(SECRET_MARKER).unwrap_or(secret);
    text.contains(secret)
        || text.contains(&escaped)
        // The part after the marker, when long enough to be recognisable.
        || (after_marker.len() >= 12 && text.contains(after_marker))
}

// ---------------------------------------------------------------------------
// The option parser.

/// Invariants of a spec `parse_options` accepted.
fn check_spec(spec: &VolumeSpec, secrets: &[String]) -> Result<(), String> {
    if let Some(sub) = &spec.sub_path {
        let plain = sub
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
        if sub.starts_with('/') || !plain {
            return Err(format!("accepted subPath {sub:?}"));
        }
    }
    match &spec.backend {
        BackendSpec::Host { path } => {
            let p = path.to_str().unwrap();
            let plain = p == "/"
                || p.strip_prefix('/').is_some_and(|rest| {
                    rest.split('/')
                        .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
                });
            if !plain {
                return Err(format!("accepted host path {p:?}"));
            }
        }
        BackendSpec::Pvc { claim_name, .. } => {
            if !opensandbox_volume::spec::is_claim_name(claim_name) {
                return Err(format!("accepted claimName {claim_name:?}"));
            }
        }
        BackendSpec::Nfs(nfs) => {
            if nfs
                .options
                .iter()
                .any(|o| o.contains([',', '\n', ' ', '\0']))
            {
                return Err(format!("accepted NFS options {:?}", nfs.options));
            }
        }
        BackendSpec::S3(obj) | BackendSpec::Ossfs(obj) => {
            let prefix_ok = obj.prefix.is_empty()
                || (obj.prefix.ends_with('/')
                    && obj.prefix[..obj.prefix.len() - 1]
                        .split('/')
                        .all(|c| !c.is_empty() && c != "." && c != ".."));
            if !prefix_ok {
                return Err(format!("accepted prefix {:?}", obj.prefix));
            }
            if let Credentials::Inline {
                access_key_id,
                access_key_secret,
                session_token,
            } = &obj.credentials
            {
                let keys = [
                    Some(access_key_id),
                    Some(access_key_secret),
                    session_token.as_ref(),
                ];
                if keys
                    .into_iter()
                    .flatten()
                    .any(|k| k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()))
                {
                    return Err("accepted an empty or damaged key".into());
                }
            }
        }
    }
    let debug = format!("{spec:?}");
    if let Some(s) = secrets.iter().find(|s| leaks(&debug, s)) {
        return Err(format!("the spec's Debug shows secret {s:?}: {debug}"));
    }
    // The spec is what the state file holds: it must read back the same.
    let saved = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let back: VolumeSpec = serde_json::from_str(&saved).map_err(|e| format!("{e}: {saved}"))?;
    if &back != spec {
        return Err(format!("the spec does not survive its state file: {saved}"));
    }
    Ok(())
}

fn check_options(opts: &Map<String, Value>) -> Result<(), TestCaseError> {
    let secrets = secrets_in(opts);
    let result = parse_options(Some(opts));
    // The same input must give the same answer (no hidden state).
    let again = parse_options(Some(opts));
    prop_assert_eq!(&result, &again);
    match result {
        Ok(spec) => check_spec(&spec, &secrets).map_err(TestCaseError::fail)?,
        Err(e) => {
            let msg = e.to_string();
            if let Some(problem) = sentence_problem(&msg) {
                return Err(TestCaseError::fail(format!(
                    "error {problem}: {msg:?} for {opts:?}"
                )));
            }
            for s in &secrets {
                prop_assert!(!leaks(&msg, s), "error shows secret {:?}: {}", s, msg);
                prop_assert!(!leaks(&format!("{e:?}"), s), "Debug shows secret {:?}", s);
            }
        }
    }
    Ok(())
}

#[test]
fn option_parser_never_panics_and_errors_are_sentences_without_secrets() {
    let n = cases(OPTIONS_CASES);
    let tried = std::cell::Cell::new(0u64);
    runner(n)
        .run(&option_map(None), |opts| {
            tried.set(tried.get() + 1);
            check_options(&opts)
        })
        .unwrap();
    // Null and empty maps, as Docker sends them.
    assert!(parse_options(None).is_err());
    check_options(&Map::new()).unwrap();
    eprintln!(
        "fuzz_protocol option parser: {} option maps tried",
        tried.get() + 2
    );
}

#[test]
fn request_parser_never_panics() {
    let n = cases(REQUEST_PARSER_CASES);
    let tried = std::cell::Cell::new(0u64);
    runner(n)
        .run(&request_body(None), |body| {
            tried.set(tried.get() + 1);
            match parse_request(&body) {
                Ok(_) => {}
                Err(e) => {
                    if let Some(problem) = sentence_problem(&e) {
                        return Err(TestCaseError::fail(format!("error {problem}: {e:?}")));
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!("fuzz_protocol request parser: {} bodies tried", tried.get());
}

// ---------------------------------------------------------------------------
// The whole protocol.

/// Volume names: a few that Create and Mount share, hostile ones, any.
fn volume_name() -> BoxedStrategy<String> {
    prop_oneof![
        6 => pick(&["fz-a", "fz-b", "fz-c", "../fz-a", "fz-a/../fz-b", "%2e%2e", ".", "fz a"]),
        2 => nasty_string(),
        1 => (250usize..260).prop_map(|n| "v".repeat(n)),
    ]
    .boxed()
}

/// A JSON text for one request field: usually the right type, at times
/// any other.
fn field_text(strategy: BoxedStrategy<Value>) -> BoxedStrategy<String> {
    prop_oneof![
        8 => strategy.prop_map(|v| v.to_string()),
        2 => any_json().prop_map(|v| v.to_string()),
    ]
    .boxed()
}

/// A request body written field by field, so that keys may repeat (JSON
/// allows it; serde_json keeps the last) and be spelt in any case.
fn structured_body(host_path: Option<String>) -> BoxedStrategy<Vec<u8>> {
    let name = field_text(volume_name().prop_map(Value::String).boxed());
    let id = field_text(
        prop_oneof![
            4 => pick(&["m1", "m2", "m3"]).prop_map(Value::String),
            1 => nasty_string().prop_map(Value::String),
        ]
        .boxed(),
    );
    let opts = prop_oneof![
        8 => option_map(host_path).prop_map(|m| Value::Object(m).to_string()),
        1 => Just("null".to_string()),
        1 => any_json().prop_map(|v| v.to_string()),
    ];
    let key = |names: &'static [&'static str]| pick(names);
    let fields = (
        proptest::option::weighted(0.9, (key(&["Name", "name", "NAME", "nAmE"]), name)),
        proptest::option::weighted(0.7, (key(&["ID", "Id", "id"]), id)),
        proptest::option::weighted(0.8, (key(&["Opts", "opts", "OPTS"]), opts)),
        proptest::collection::vec(("\\PC{0,8}", any_json().prop_map(|v| v.to_string())), 0..3),
        any::<bool>(),
    );
    fields
        .prop_map(|(name, id, opts, extra, repeat_first)| {
            let mut pairs: Vec<(String, String)> = Vec::new();
            pairs.extend(name);
            pairs.extend(id);
            pairs.extend(opts);
            for (k, v) in extra {
                pairs.push((k, v));
            }
            if repeat_first && let Some(first) = pairs.first().cloned() {
                pairs.push(first);
            }
            let fields: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                .collect();
            format!("{{{}}}", fields.join(",")).into_bytes()
        })
        .boxed()
}

/// Damage done to a body: cut short, a byte changed, bytes inserted,
/// wrapped in deep nesting, prefixed with a BOM.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Replace(usize, u8),
    Insert(usize, Vec<u8>),
    Nest(usize),
    Bom,
    Pad,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<usize>().prop_map(Mutation::Truncate),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (1usize..3000).prop_map(Mutation::Nest),
        1 => Just(Mutation::Bom),
        1 => Just(Mutation::Pad),
    ]
}

fn mutate(mut body: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Truncate(i) => body.truncate(at(*i, body.len())),
        Mutation::Replace(i, b) if !body.is_empty() => {
            let n = body.len();
            body[i % n] = *b;
        }
        Mutation::Replace(..) => {}
        Mutation::Insert(i, bytes) => {
            let pos = at(*i, body.len());
            body.splice(pos..pos, bytes.iter().copied());
        }
        Mutation::Nest(depth) => {
            let mut out = b"{\"Name\":".repeat(*depth);
            out.extend_from_slice(&body);
            out.extend(std::iter::repeat_n(b'}', *depth));
            body = out;
        }
        Mutation::Bom => {
            body.splice(0..0, *b"\xef\xbb\xbf");
        }
        Mutation::Pad => {
            body.splice(0..0, *b" \t\r\n");
            body.extend_from_slice(b"\n\n");
        }
    }
    body
}

/// Every kind of body: structured, structured and damaged, corpus files
/// damaged, deep nesting, huge, random bytes.
fn request_body(corpus_bodies: Option<Vec<Vec<u8>>>) -> BoxedStrategy<Vec<u8>> {
    let corpus_bodies = corpus_bodies.unwrap_or_else(|| vec![b"{}".to_vec()]);
    prop_oneof![
        6 => structured_body(None),
        3 => (structured_body(None), mutation()).prop_map(|(b, m)| mutate(b, &m)),
        3 => (proptest::sample::select(corpus_bodies), proptest::collection::vec(mutation(), 1..3))
            .prop_map(|(b, ms)| ms.iter().fold(b, mutate)),
        1 => (1usize..20_000, any::<bool>()).prop_map(|(depth, close)| {
            let mut b = "[".repeat(depth);
            if close {
                b.push_str(&"]".repeat(depth));
            }
            b.into_bytes()
        }),
        1 => (1usize..300_000).prop_map(|n| format!(r#"{{"Name":"{}","ID":"x"}}"#, "h".repeat(n)).into_bytes()),
        1 => (1usize..3_000).prop_map(|n| {
            let opts: Vec<String> = (0..n).map(|i| format!(r#""k{i}":"{i}""#)).collect();
            format!(r#"{{"Name":"fz-many","Opts":{{"type":"s3",{}}}}}"#, opts.join(",")).into_bytes()
        }),
        2 => proptest::collection::vec(any::<u8>(), 0..300),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Call {
    /// `None`: a path that is no call of the plugin.
    endpoint: Option<String>,
    path: String,
    body: Vec<u8>,
    /// Generated structurally: a secret in it must never come back.
    structured: bool,
}

fn protocol_call(allowed: &Path, corpus_bodies: Vec<Vec<u8>>) -> BoxedStrategy<Call> {
    let host = Some(allowed.display().to_string());
    let endpoint = prop_oneof![
        12 => proptest::sample::select(ENDPOINTS).prop_map(|e| Some(e.to_string())),
        1 => Just(None),
    ];
    let bogus_path = prop_oneof![
        pick(&[
            "/",
            "/VolumeDriver",
            "/VolumeDriver.",
            "/Plugin.Activate/x",
            "/VolumeDriver.Create/"
        ]),
        "/[A-Za-z0-9._~%-]{0,30}",
    ];
    let body = prop_oneof![
        3 => structured_body(host).prop_map(|b| (b, true)),
        2 => request_body(Some(corpus_bodies)).prop_map(|b| (b, false)),
    ];
    (endpoint, bogus_path, body)
        .prop_map(|(endpoint, bogus, (body, structured))| {
            let path = match &endpoint {
                Some(e) => format!("/{e}"),
                None if ENDPOINTS.iter().any(|e| bogus == format!("/{e}")) => "/nope".into(),
                None => bogus,
            };
            Call {
                endpoint,
                path,
                body,
                structured,
            }
        })
        .boxed()
}

#[test]
fn every_call_answers_in_time_with_well_formed_json() {
    let server = Server::start();
    let corpus_bodies: Vec<Vec<u8>> = corpus(&server.allowed)
        .into_iter()
        .map(|(_, _, b)| b)
        .collect();
    let n = cases(PROTOCOL_CASES);
    let tried = std::cell::Cell::new(0u64);
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, u64>::new());
    let slowest = std::cell::Cell::new(Duration::ZERO);
    runner(n)
        .run(&protocol_call(&server.allowed, corpus_bodies), |call| {
            tried.set(tried.get() + 1);
            let reply = send(&server.socket, &docker_request(&call.path, &call.body))
                .map_err(TestCaseError::fail)?;
            slowest.set(slowest.get().max(reply.elapsed));
            *statuses.borrow_mut().entry(reply.status).or_default() += 1;
            let json = check_reply(call.endpoint.as_deref(), &reply, &server.mount_root)
                .map_err(TestCaseError::fail)?;
            if let Some(want) = expected_status(call.endpoint.as_deref(), &call.body) {
                prop_assert_eq!(reply.status, want, "{}", json);
            } else {
                prop_assert!(matches!(reply.status, 200 | 500), "{}", json);
            }
            if call.structured {
                let text = json.to_string();
                prop_assert!(
                    !text.contains(SECRET_MARKER),
                    "a reply shows a secret: {}",
                    text
                );
            }
            prop_assert_eq!(
                SERVER_PANICS.load(Ordering::SeqCst),
                0,
                "the server panicked"
            );
            Ok(())
        })
        .unwrap();
    server.assert_mounts_confined();
    // Still serving, and List still answers with every volume.
    let r = send(&server.socket, &docker_request("/VolumeDriver.List", b"{}")).unwrap();
    check_reply(Some("VolumeDriver.List"), &r, &server.mount_root).unwrap();
    eprintln!(
        "fuzz_protocol: {} requests tried; statuses {:?}; slowest reply {:?}",
        tried.get(),
        statuses.borrow(),
        slowest.get()
    );
}
