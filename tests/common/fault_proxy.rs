//! A fault-injecting TCP proxy between objectfs and an S3 server, for the
//! reliability tests: it listens on a free loopback port, forwards bytes to
//! the upstream server, and a test switches what it does at run time with
//! [`FaultProxy::set`]:
//!
//! | mode | new connections | connections already open |
//! |---|---|---|
//! | `Pass` | forwarded | forwarded |
//! | `Latency(d)` | forwarded, `d` added each time the conversation turns (before a request goes up, before its answer comes back) | the same |
//! | `Reset` | accepted, then closed with RST (SO_LINGER 0) | closed with RST |
//! | `ServerError(s)` | each request answered `s` with an S3 XML error (code `AccessDenied` for 403, as for revoked keys; `InternalError` or `ServiceUnavailable` otherwise), upstream never contacted, `Connection: close` | closed |
//! | `Stall` | accepted, requests read and discarded, never answered | frozen: nothing more forwarded, ever |
//! | `StallBody` | forwarded until the server has sent 4 KiB on it (an answer's head and first bytes), then frozen | the same |
//! | `Down` | refused (ECONNREFUSED): the listening socket is closed, the port kept by a bound socket that does not listen, and listening again when the mode changes | closed |
//!
//! A frozen connection stays frozen even after the mode goes back to
//! `Pass`: the client has to time out by itself, as it would with a hung
//! server. Apart from the modes, [`FaultProxy::hold`] keeps one chosen
//! request (by its method and path) from the server until the test lets it
//! go, so the test can act in between. Threads and std::net only;
//! everything stops when the proxy is dropped.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the proxy does; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Latency(Duration),
    Reset,
    ServerError(u16),
    Stall,
    StallBody,
    Down,
}

/// How often blocked threads look at the mode and the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// `StallBody`: bytes of the server's answers forwarded before freezing.
const STALL_BODY_AFTER: u64 = 4096;

/// Counters of what the proxy did, for the tests' figures.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted (in any mode).
    pub accepted: AtomicU64,
    /// Requests answered with a canned error.
    pub errors: AtomicU64,
    /// Connections closed with RST.
    pub resets: AtomicU64,
    /// Connections frozen or held by `Stall`/`StallBody`.
    pub stalled: AtomicU64,
    /// Bytes forwarded either way.
    pub forwarded_bytes: AtomicU64,
}

struct Shared {
    mode: Mutex<Mode>,
    stop: AtomicBool,
    stats: Stats,
    /// The request to hold, until it arrives.
    hold: Mutex<Option<Arc<Hold>>>,
}

/// A request held on its way to the server; see [`FaultProxy::hold`].
pub struct Hold {
    /// How the request's first bytes start (`PUT /bucket/key?`).
    start: Vec<u8>,
    arrived: AtomicBool,
    released: AtomicBool,
}

impl Hold {
    /// Whether the request has arrived (and is being held).
    pub fn arrived(&self) -> bool {
        self.arrived.load(Ordering::SeqCst)
    }

    /// Lets the request go on to the server.
    pub fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
    }
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    /// The hold `bytes` (the start of what a client sends) arrive at, if
    /// any; it is taken, so only the first such request is held.
    fn hold_for(&self, bytes: &[u8]) -> Option<Arc<Hold>> {
        let mut hold = self.hold.lock().unwrap();
        match hold.as_ref() {
            Some(h) if bytes.starts_with(&h.start) => hold.take(),
            _ => None,
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    pub upstream: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy in `Pass` mode in front of `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            hold: Mutex::new(None),
        });
        let s = shared.clone();
        let acceptor = thread::spawn(move || accept_loop(listener, addr, upstream, s));
        FaultProxy {
            addr,
            upstream,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:PORT`, the endpoint to give objectfs.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode()
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Holds the next request whose first bytes start with `start` (its
    /// method and path, e.g. `PUT /bucket/dir/key?`: a request always
    /// begins a read, since HTTP/1.1 clients wait for each answer) before
    /// it reaches the server, until [`Hold::release`]. Other requests pass
    /// as the mode says.
    pub fn hold(&self, start: &str) -> Arc<Hold> {
        let hold = Arc::new(Hold {
            start: start.as_bytes().to_vec(),
            arrived: AtomicBool::new(false),
            released: AtomicBool::new(false),
        });
        *self.shared.hold.lock().unwrap() = Some(hold.clone());
        hold
    }

    /// `set(mode)` now and `set(Mode::Pass)` after `after`, from a thread.
    pub fn fault_for(&self, mode: Mode, after: Duration) -> thread::JoinHandle<()> {
        self.set(mode);
        let shared = self.shared.clone();
        thread::spawn(move || {
            thread::sleep(after);
            *shared.mode.lock().unwrap() = Mode::Pass;
        })
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, addr: SocketAddr, upstream: SocketAddr, s: Arc<Shared>) {
    let mut listener = Some(listener);
    let mut reserved: Option<OwnedFd> = None;
    while !s.stopped() {
        if s.mode() == Mode::Down {
            if listener.take().is_some() {
                // Connects now fail at once (and connections still in the
                // backlog get RST); the port stays ours meanwhile.
                reserved = reserve_port(addr);
            }
            thread::sleep(POLL);
            continue;
        }
        let Some(l) = listener.as_ref() else {
            drop(reserved.take());
            // Std sets SO_REUSEADDR, so the port is ours again at once.
            match TcpListener::bind(addr) {
                Ok(l) => {
                    l.set_nonblocking(true).unwrap();
                    listener = Some(l);
                }
                Err(_) => thread::sleep(POLL),
            }
            continue;
        };
        match l.accept() {
            Ok((client, _)) => {
                s.stats.accepted.fetch_add(1, Ordering::Relaxed);
                client.set_nonblocking(false).unwrap();
                let s = s.clone();
                thread::spawn(move || handle(client, upstream, s));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(2)),
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// A TCP socket bound to `addr` but not listening: connections to it are
/// refused, and no one else (a free-port probe of another test) gets the
/// port while the proxy is `Down`.
fn reserve_port(addr: SocketAddr) -> Option<OwnedFd> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    // SAFETY: plain socket calls on a descriptor we own; the address is a
    // correctly sized sockaddr_in.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let bound = libc::bind(
            fd.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        (bound == 0).then_some(fd)
    }
}

/// Closes `stream` with RST instead of FIN: SO_LINGER on, timeout 0.
pub fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

fn handle(client: TcpStream, upstream: SocketAddr, s: Arc<Shared>) {
    match s.mode() {
        Mode::Reset | Mode::Down => {
            s.stats.resets.fetch_add(1, Ordering::Relaxed);
            reset(client);
        }
        Mode::ServerError(status) => answer_errors(client, status, &s),
        Mode::Stall => {
            s.stats.stalled.fetch_add(1, Ordering::Relaxed);
            discard_until_stopped(client, &s);
        }
        Mode::Pass | Mode::Latency(_) | Mode::StallBody => {
            match TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) {
                Ok(server) => forward(client, server, s),
                Err(_) => {
                    s.stats.resets.fetch_add(1, Ordering::Relaxed);
                    reset(client);
                }
            }
        }
    }
}

/// Reads and throws away whatever the client sends until the proxy stops
/// or the client gives up.
fn discard_until_stopped(mut client: TcpStream, s: &Shared) {
    client.set_read_timeout(Some(POLL)).unwrap();
    let mut buf = [0u8; 64 * 1024];
    while !s.stopped() {
        match client.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// `ServerError`: answers each request on the connection with `status` and
/// an S3 error document, reading (and dropping) its body first so the close
/// that follows is clean. One request per connection (`Connection: close`).
fn answer_errors(mut client: TcpStream, status: u16, s: &Shared) {
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let Some((head, already)) = read_head(&mut client) else {
        return;
    };
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let header = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let is_head = text.starts_with("head ");
    let expects_continue = header("expect:").is_some_and(|v| v == "100-continue");
    // Without `Expect: 100-continue` the body follows the head: read it, so
    // the reply is not lost to an RST for unread data.
    if !expects_continue {
        let mut left = header("content-length:")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_sub(already);
        let mut buf = [0u8; 64 * 1024];
        while left > 0 {
            match client.read(&mut buf[..left.min(64 * 1024) as usize]) {
                Ok(0) | Err(_) => return,
                Ok(n) => left -= n as u64,
            }
        }
    }
    let (code, reason) = match status {
        500 => ("InternalError", "Internal Server Error"),
        503 => ("ServiceUnavailable", "Service Unavailable"),
        // What a store says to keys it no longer accepts.
        403 => ("AccessDenied", "Forbidden"),
        _ => ("InternalError", "Error"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>injected by the test fault proxy</Message>\
         <RequestId>fault-proxy</RequestId></Error>"
    );
    let mut reply = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nx-amz-request-id: fault-proxy\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !is_head {
        reply.push_str(&body);
    }
    s.stats.errors.fetch_add(1, Ordering::Relaxed);
    if client.write_all(reply.as_bytes()).is_ok() {
        let _ = client.shutdown(Shutdown::Write);
        // Let the client read the answer and close first.
        client
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = client.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

/// Reads up to the end of an HTTP request head. Returns the head and how
/// many bytes of body came with it.
fn read_head(client: &mut TcpStream) -> Option<(Vec<u8>, u64)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = client.read(&mut buf).ok().filter(|&n| n > 0)?;
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = (data.len() - end - 4) as u64;
            data.truncate(end);
            return Some((data, body));
        }
        if data.len() > 1 << 20 {
            return None;
        }
    }
}

/// One forwarded connection: a pump thread each way, until either side
/// closes, the mode closes it, or the proxy stops.
fn forward(client: TcpStream, server: TcpStream, s: Arc<Shared>) {
    let conn = Arc::new(Conn {
        frozen: AtomicBool::new(false),
        last_direction: AtomicU8::new(NONE),
        answered: AtomicU64::new(0),
        streams: Mutex::new(Some((
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
        ))),
    });
    let up = {
        let (conn, s) = (conn.clone(), s.clone());
        let (from, to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        thread::spawn(move || pump(from, to, UP, &conn, &s))
    };
    pump(server, client, DOWN, &conn, &s);
    let _ = up.join();
}

const UP: u8 = 0;
const DOWN: u8 = 1;
const NONE: u8 = 2;

struct Conn {
    frozen: AtomicBool,
    /// Which way the last forwarded bytes went (for `Latency`).
    last_direction: AtomicU8,
    /// Bytes the server sent on this connection (for `StallBody`).
    answered: AtomicU64,
    /// Both ends, taken by whichever pump closes the connection.
    streams: Mutex<Option<(TcpStream, TcpStream)>>,
}

impl Conn {
    fn close(&self, hard: bool) {
        if let Some((client, server)) = self.streams.lock().unwrap().take() {
            if hard {
                reset(client);
                reset(server);
            } else {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            }
        }
    }

    fn freeze(&self, s: &Shared) {
        if !self.frozen.swap(true, Ordering::Relaxed) {
            s.stats.stalled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, direction: u8, conn: &Conn, s: &Shared) {
    from.set_read_timeout(Some(POLL)).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if s.stopped() {
            conn.close(true);
            return;
        }
        match s.mode() {
            Mode::Reset => {
                s.stats.resets.fetch_add(1, Ordering::Relaxed);
                conn.close(true);
                return;
            }
            Mode::ServerError(_) | Mode::Down => {
                conn.close(false);
                return;
            }
            Mode::Stall => conn.freeze(s),
            Mode::Pass | Mode::Latency(_) | Mode::StallBody => {}
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                // One side finished sending: pass the half-close on.
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                conn.close(true);
                return;
            }
        };
        if conn.frozen.load(Ordering::Relaxed) {
            continue; // a hung server: swallow everything, say nothing
        }
        if direction == UP
            && let Some(hold) = s.hold_for(&buf[..n])
        {
            hold.arrived.store(true, Ordering::SeqCst);
            while !hold.released.load(Ordering::SeqCst) && !s.stopped() {
                thread::sleep(POLL);
            }
        }
        let mut n = n;
        if direction == DOWN && s.mode() == Mode::StallBody {
            let sent = conn.answered.load(Ordering::Relaxed);
            let room = STALL_BODY_AFTER.saturating_sub(sent) as usize;
            if room < n {
                n = room;
                conn.freeze(s);
            }
        }
        if let Mode::Latency(d) = s.mode()
            && conn.last_direction.swap(direction, Ordering::Relaxed) != direction
        {
            thread::sleep(d);
        }
        if direction == DOWN {
            conn.answered.fetch_add(n as u64, Ordering::Relaxed);
        }
        if n > 0 && to.write_all(&buf[..n]).is_err() {
            conn.close(true);
            return;
        }
        s.stats
            .forwarded_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}
