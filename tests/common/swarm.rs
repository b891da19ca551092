//! A two-node Docker swarm on this one machine: the daemon the tests use
//! (`DOCKER_HOST`, else /var/run/docker.sock) as the manager, and a second
//! dockerd started here with its own data root, exec root, pid file, socket
//! and bridge under /tmp/osv-swarm-PID, joined as a worker over loopback.
//! Dropping a [`Swarm`] makes both nodes leave it; dropping the
//! [`SecondDockerd`] stops it and removes its mounts, bridge and
//! directories. Both happen when a test fails too.
//!
//! Why the second daemon gets a bridge of its own instead of `--bridge
//! none`: a dockerd started with `--bridge none` deletes the network
//! interface `docker0` at start-up (moby 20.10, daemon/daemon_unix.go,
//! `removeDefaultBridgeInterface`). Both daemons share the host's network
//! namespace, so that is the first daemon's bridge: its containers could no
//! longer start on the default network ("could not find bridge docker0")
//! until it was restarted. Given `--bridge NAME` (a bridge that must exist),
//! the second daemon uses that one and never touches docker0.

use super::s3server::free_port;
use super::{spawn_tied_to_test_process, unmount_all_under, wait_for_within};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a daemon may take to start, stop or settle a swarm change.
const DAEMON_WAIT: Duration = Duration::from_secs(60);

/// One daemon, as the docker CLI reaches it.
#[derive(Clone, Debug)]
pub struct Node {
    /// `-H` for the CLI; `None` for the daemon the tests use.
    host: Option<String>,
    /// For messages: "node 1", "node 2".
    pub label: &'static str,
}

impl Node {
    /// The daemon every other test uses.
    pub fn first() -> Node {
        Node {
            host: None,
            label: "node 1",
        }
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        let mut command = Command::new("docker");
        if let Some(host) = &self.host {
            command.arg("-H").arg(host);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running the docker CLI")
    }

    /// [`Self::docker`] that must succeed; returns trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "{}: docker {}\nstatus: {}\nstdout: {}\nstderr: {}",
            self.label,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// [`Self::ok`] with `words` split on whitespace and `tail` passed whole.
    pub fn words(&self, words: &str, tail: &[&str]) -> String {
        let mut args: Vec<&str> = words.split_whitespace().collect();
        args.extend_from_slice(tail);
        self.ok(&args)
    }

    /// `docker info`'s swarm state: `inactive`, `active`, `pending`, …
    pub fn swarm_state(&self) -> String {
        self.ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"])
    }

    /// Lines of `docker ARGS` (empty when it fails).
    pub fn lines(&self, args: &[&str]) -> Vec<String> {
        let out = self.docker(args);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }
}

/// The second dockerd, stopped and removed when dropped.
pub struct SecondDockerd {
    /// /tmp/osv-swarm-PID: data root, exec root, socket, pid file, log.
    pub base: PathBuf,
    pub socket: PathBuf,
    /// The bridge it uses instead of docker0 (see the opening comment).
    bridge: String,
    child: Option<Child>,
}

impl SecondDockerd {
    /// Starts it and waits until it answers.
    pub fn start() -> SecondDockerd {
        let pid = std::process::id();
        let base = PathBuf::from(format!("/tmp/osv-swarm-{pid}"));
        // Interface names have at most 15 bytes: "osvsw" and a pid fit.
        let bridge = format!("osvsw{pid}");
        remove_tree(&base);
        for dir in ["root", "exec"] {
            fs::create_dir_all(base.join(dir)).unwrap();
        }
        // Its own (empty) configuration: /etc/docker/daemon.json belongs to
        // the first daemon and could name the same data root or hosts.
        fs::write(base.join("daemon.json"), "{}\n").unwrap();
        let _ = ip(&["link", "del", &bridge]);
        let added = ip(&["link", "add", "name", &bridge, "type", "bridge"]);
        assert!(
            added.status.success(),
            "ip link add {bridge} type bridge: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        let socket = base.join("docker.sock");
        let mut daemon = SecondDockerd {
            base: base.clone(),
            socket: socket.clone(),
            bridge: bridge.clone(),
            child: None,
        };
        let log = fs::File::create(base.join("dockerd.log")).unwrap();
        let mut command = Command::new("dockerd");
        command
            .arg("--config-file")
            .arg(base.join("daemon.json"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(base.join("root"))
            .arg("--exec-root")
            .arg(base.join("exec"))
            .arg("--pidfile")
            .arg(base.join("docker.pid"))
            .arg("--bridge")
            .arg(&bridge)
            .args(["--iptables=false", "--ip-masq=false", "--ip-forward=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        daemon.child = Some(spawn_tied_to_test_process(command));
        let node = daemon.node();
        let deadline = Instant::now() + DAEMON_WAIT;
        while !node.docker(&["info"]).status.success() {
            if let Some(status) = daemon.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "the second dockerd exited with {status}; its log:\n{}",
                    daemon.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the second dockerd did not answer within {DAEMON_WAIT:?}; its log:\n{}",
                daemon.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        daemon
    }

    pub fn node(&self) -> Node {
        Node {
            host: Some(format!("unix://{}", self.socket.display())),
            label: "node 2",
        }
    }

    /// Copies `image` from the first daemon (nothing can be pulled here).
    pub fn load_image(&self, image: &str) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(r#"docker save "$1" | docker -H "$2" load"#)
            .arg("sh")
            .arg(image)
            .arg(format!("unix://{}", self.socket.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "docker save {image} | docker load (node 2): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The last 60 lines of its log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.base.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Stops the daemon (SIGTERM, SIGKILL after [`DAEMON_WAIT`]) and removes
    /// what it leaves: the containerd it started if it was killed, mounts
    /// under its directory (network namespace files), its bridge, the
    /// directory. Returns what could not be done.
    pub fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + DAEMON_WAIT;
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    problems.push(format!(
                        "the second dockerd ignored SIGTERM for {DAEMON_WAIT:?}: killed"
                    ));
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        } else {
            return problems;
        }
        // dockerd stops the containerd it started, unless it was killed.
        let containerd = self.base.join("exec/containerd/containerd.pid");
        if let Some(pid) = fs::read_to_string(&containerd)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "containerd" {
                problems.push(format!(
                    "its containerd (pid {pid}) was still running: killed"
                ));
                // SAFETY: plain kill(2) of the containerd this daemon started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        unmount_all_under(&self.base);
        let del = ip(&["link", "del", &self.bridge]);
        if !del.status.success() {
            problems.push(format!(
                "ip link del {}: {}",
                self.bridge,
                String::from_utf8_lossy(&del.stderr).trim()
            ));
        }
        if let Err(e) = fs::remove_dir_all(&self.base) {
            problems.push(format!("removing {}: {e}", self.base.display()));
        }
        problems
    }
}

impl Drop for SecondDockerd {
    fn drop(&mut self) {
        for problem in self.stop() {
            eprintln!("stopping the second dockerd: {problem}");
        }
    }
}

/// Unmounts what is mounted under `dir` and removes it (a directory of an
/// earlier process with the same pid).
fn remove_tree(dir: &std::path::Path) {
    if dir.exists() {
        unmount_all_under(dir);
        let _ = fs::remove_dir_all(dir);
    }
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)")
}

/// The two nodes in one swarm: the first daemon as manager, the second as
/// worker. Both leave it when this is dropped.
pub struct Swarm {
    pub manager: Node,
    pub worker: Node,
    /// Swarm node IDs (both nodes have the host's name, so constraints use
    /// `node.id`).
    pub manager_id: String,
    pub worker_id: String,
    /// Whether the first daemon had a `docker_gwbridge` network before (swarm
    /// init creates one, and leaving the swarm keeps it).
    had_gwbridge: bool,
    left: bool,
}

impl Swarm {
    /// `swarm init` on the first daemon, `swarm join` of the second, both on
    /// loopback ports; returns once both nodes are ready. The first daemon
    /// must not be in a swarm already (one we did not make is not ours to
    /// leave).
    pub fn form(second: &SecondDockerd) -> Swarm {
        let manager = Node::first();
        let worker = second.node();
        let state = manager.swarm_state();
        assert_eq!(
            state, "inactive",
            "the first dockerd is already in a swarm; these tests form their own \
             (after an interrupted run: `docker swarm leave --force`)"
        );
        let had_gwbridge = manager
            .lines(&["network", "ls", "--format", "{{.Name}}"])
            .iter()
            .any(|n| n == "docker_gwbridge");
        let mut swarm = Swarm {
            manager,
            worker,
            manager_id: String::new(),
            worker_id: String::new(),
            had_gwbridge,
            left: false,
        };
        let manager_addr = format!("127.0.0.1:{}", free_port());
        let worker_addr = format!("127.0.0.1:{}", free_port());
        swarm.manager.ok(&[
            "swarm",
            "init",
            "--advertise-addr",
            &manager_addr,
            "--listen-addr",
            &manager_addr,
            "--data-path-port",
            &data_path_port().to_string(),
        ]);
        let token = swarm.manager.ok(&["swarm", "join-token", "-q", "worker"]);
        swarm.worker.ok(&[
            "swarm",
            "join",
            "--token",
            &token,
            "--listen-addr",
            &worker_addr,
            "--advertise-addr",
            &worker_addr,
            &manager_addr,
        ]);
        swarm.manager_id = swarm.manager.ok(&["info", "--format", "{{.Swarm.NodeID}}"]);
        swarm.worker_id = swarm.worker.ok(&["info", "--format", "{{.Swarm.NodeID}}"]);
        for id in [swarm.manager_id.clone(), swarm.worker_id.clone()] {
            wait_for_within(&format!("swarm node {id} to be ready"), DAEMON_WAIT, || {
                swarm
                    .manager
                    .docker(&["node", "inspect", "--format", "{{.Status.State}}", &id])
                    .stdout
                    .starts_with(b"ready")
            });
        }
        swarm
    }

    pub fn nodes(&self) -> [&Node; 2] {
        [&self.manager, &self.worker]
    }

    /// Waits until both nodes report each volume driver in `drivers` to the
    /// manager, which places a task that mounts a driver's volume only on
    /// nodes that report it ("missing plugin on 1 node"). A node reports
    /// its enabled managed plugins, and only the legacy drivers its daemon
    /// has met (a volume command found the socket), when it joins and then
    /// every 20 s or so; so the tests make both meet them before joining.
    pub fn wait_for_volume_drivers(&self, drivers: &[&str]) {
        for id in [&self.manager_id, &self.worker_id] {
            let deadline = Instant::now() + DAEMON_WAIT;
            loop {
                let last = self.manager.ok(&[
                    "node",
                    "inspect",
                    "--format",
                    r#"{{range .Description.Engine.Plugins}}{{if eq .Type "Volume"}}{{.Name}} {{end}}{{end}}"#,
                    id,
                ]);
                let reported: Vec<&str> = last.split_whitespace().collect();
                if drivers.iter().all(|d| reported.contains(d)) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} reports the volume drivers {last:?}, not all of {drivers:?}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }

    /// Both nodes leave (the worker first); the first daemon drops the
    /// `docker_gwbridge` network swarm init made. Returns what went wrong.
    pub fn leave(&mut self) -> Vec<String> {
        if self.left {
            return Vec::new();
        }
        self.left = true;
        let mut problems = Vec::new();
        for node in [&self.worker, &self.manager] {
            let out = node.docker(&["swarm", "leave", "--force"]);
            let state = node.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
            if !state.stdout.starts_with(b"inactive") {
                problems.push(format!(
                    "{} is still in the swarm after `swarm leave --force`: {}",
                    node.label,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        if !self.had_gwbridge {
            // Leaving takes the ingress endpoint off it a moment later.
            let gone = || {
                !self
                    .manager
                    .lines(&["network", "ls", "--format", "{{.Name}}"])
                    .iter()
                    .any(|n| n == "docker_gwbridge")
            };
            let deadline = Instant::now() + DAEMON_WAIT;
            while !gone() {
                let _ = self.manager.docker(&["network", "rm", "docker_gwbridge"]);
                if Instant::now() > deadline {
                    problems.push("node 1 keeps the docker_gwbridge network".to_string());
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        problems
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for problem in self.leave() {
            eprintln!("leaving the swarm: {problem}");
        }
    }
}

/// A UDP port for the swarm's VXLAN data path that nothing here uses (not
/// the default 4789, which a host's own VXLAN may hold); swarm wants one in
/// 1024–49151, below the range a bind to port 0 picks from.
fn data_path_port() -> u16 {
    (4790..4890)
        .find(|p| std::net::UdpSocket::bind(("0.0.0.0", *p)).is_ok())
        .expect("a free UDP port in 4790..4890")
}
