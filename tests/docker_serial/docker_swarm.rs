//! Docker Swarm on a two-node swarm of this one machine
//! (tests/common/swarm.rs): services and a stack whose tasks mount this
//! driver's s3 volumes, with the legacy plugin (one daemon under
//! /run/docker/plugins, which both dockerds find) and with the managed
//! plugin installed on each node from the loopback registry, each with its
//! own state, as on two hosts. Every outcome is checked in the bucket with
//! the test's own S3 client:
//! - `docker service create --mount …,volume-driver=…,volume-opt=…` (global,
//!   legacy plugin): each node's task writes its file;
//! - `docker stack deploy` of a compose file whose volume has `driver` and
//!   `driver_opts` (global), then `docker stack rm`, with the legacy plugin
//!   and again with the managed plugins;
//! - a global service on the managed plugins: both nodes write into one
//!   prefix, each through its own plugin;
//! - a task moved from node 1 to node 2 (`service update --constraint-rm
//!   --constraint-add`) reads what the old task wrote and says so in the
//!   bucket.
//!
//! At the end nothing of it is left on either node, both have left the
//! swarm, the second daemon is gone, and the first still starts containers
//! on its default bridge.

use crate::common;

use common::docker::{SharedPlugin, TEST_DRIVER, image, unique};
use common::managed_plugin::{REPO, install, registry, remove_plugins};
use common::objectfs_mount::Bucket;
use common::s3server::moto;
use common::swarm::{Node, SecondDockerd, Swarm};
use objectfs::store::s3::S3Config;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static PLUGIN: OnceLock<SharedPlugin> = OnceLock::new();

/// How long a task may take to be placed, start, write and have its data
/// reach the bucket; or to go away after its service is removed.
const TASK_WAIT: Duration = Duration::from_secs(90);

/// Polls `ok` every 200 ms until it holds; panics after `timeout` with
/// `what` and `why()` (the state that matters, read at that moment).
fn poll(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool, why: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            why()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Services, stacks and volumes the test made, removed (services and
/// stacks first, then their containers are waited for, then the volumes on
/// both nodes) by [`Self::remove_all`] or when dropped.
struct Deployed<'a> {
    swarm: &'a Swarm,
    services: Vec<String>,
    stacks: Vec<String>,
    volumes: Vec<String>,
}

impl<'a> Deployed<'a> {
    fn new(swarm: &'a Swarm) -> Self {
        Deployed {
            swarm,
            services: Vec::new(),
            stacks: Vec::new(),
            volumes: Vec::new(),
        }
    }

    fn service(&mut self, name: &str) -> String {
        self.services.push(name.to_string());
        name.to_string()
    }

    fn stack(&mut self, name: &str) -> String {
        self.stacks.push(name.to_string());
        name.to_string()
    }

    fn volume(&mut self, name: &str) -> String {
        self.volumes.push(name.to_string());
        name.to_string()
    }

    /// The filters matching the containers of what is deployed.
    fn container_filters(&self) -> Vec<String> {
        let services = self
            .services
            .iter()
            .map(|s| format!("label=com.docker.swarm.service.name={s}"));
        let stacks = self
            .stacks
            .iter()
            .map(|s| format!("label=com.docker.stack.namespace={s}"));
        services.chain(stacks).collect()
    }

    /// Containers of what is deployed on `node`.
    fn containers_on(&self, node: &Node) -> Vec<String> {
        self.container_filters()
            .iter()
            .flat_map(|f| node.lines(&["ps", "-aq", "--filter", f]))
            .collect()
    }

    /// Removes everything; returns what could not be removed.
    fn remove_all(&mut self) -> Vec<String> {
        let manager = &self.swarm.manager;
        for stack in &self.stacks {
            let _ = manager.docker(&["stack", "rm", stack]);
        }
        for service in &self.services {
            let _ = manager.docker(&["service", "rm", service]);
        }
        let mut problems = Vec::new();
        // Tasks' containers go a moment later, on each node; a volume is
        // removable once no container uses it.
        for node in self.swarm.nodes() {
            let deadline = Instant::now() + TASK_WAIT;
            loop {
                let left = self.containers_on(node);
                if left.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    problems.push(format!("{}: containers left: {left:?}", node.label));
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        for node in self.swarm.nodes() {
            let listed = node.lines(&["volume", "ls", "-q"]);
            for volume in self.volumes.iter().filter(|v| listed.contains(v)) {
                let out = node.docker(&["volume", "rm", volume]);
                if !out.status.success() {
                    problems.push(format!(
                        "{}: docker volume rm {volume}: {}",
                        node.label,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
        }
        self.services.clear();
        self.stacks.clear();
        problems
    }
}

impl Drop for Deployed<'_> {
    fn drop(&mut self) {
        for problem in self.remove_all() {
            eprintln!("removing the swarm test's services: {problem}");
        }
    }
}

/// The managed plugin installed on each node, removed (with its volumes)
/// from every node when dropped.
struct ManagedPlugins {
    name: String,
    nodes: Vec<Node>,
}

impl ManagedPlugins {
    /// Installs the pushed plugin on `node` as an operator would on each
    /// host: same name and tag, same settings, its own state and
    /// credentials directories under `dir`, and the Engine API of its own
    /// daemon (`docker_socket`; `None`: the default /var/run/docker.sock).
    fn install(&mut self, node: &Node, dir: &Path, docker_socket: Option<&Path>) {
        self.nodes.push(node.clone());
        for sub in ["state", "credentials"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
            fs::set_permissions(dir.join(sub), fs::Permissions::from_mode(0o700)).unwrap();
        }
        let mut settings = vec![
            format!("state.source={}", dir.join("state").display()),
            format!("credentials.source={}", dir.join("credentials").display()),
        ];
        if let Some(socket) = docker_socket {
            settings.push(format!("docker-socket.source={}", socket.display()));
        }
        install(|args| node.docker(args), &self.name, None, &settings);
    }

    /// Removes the plugins; returns what could not be removed.
    fn remove(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        for node in self.nodes.drain(..) {
            for problem in remove_plugins(|args| node.docker(args)) {
                problems.push(format!("{}: {problem}", node.label));
            }
        }
        problems
    }
}

impl Drop for ManagedPlugins {
    fn drop(&mut self) {
        for problem in self.remove() {
            eprintln!("removing the managed plugins: {problem}");
        }
    }
}

/// `--mount` options of an s3 volume on `prefix` of the bucket.
fn volume_opts(bucket: &S3Config, prefix: &str) -> String {
    format!(
        "volume-opt=type=s3,volume-opt=bucket={},volume-opt=endpoint={},volume-opt=accessKeyId=swarm-key,volume-opt=accessKeySecret=swarm-secret,volume-opt=prefix={prefix}",
        bucket.bucket,
        bucket.endpoint.as_deref().unwrap()
    )
}

/// `docker service create` of a service whose tasks run `script` once
/// (no restart) on the host network, with the volume at /data and their
/// node's swarm ID in `$NODE`.
fn create_service(
    swarm: &Swarm,
    name: &str,
    placement: &str,
    driver: &str,
    volume: &str,
    opts: &str,
    script: &str,
) {
    swarm.manager.words(
        &format!(
            "service create -d --no-resolve-image --name {name} {placement} --network host \
             --restart-condition none --stop-grace-period 20s --env NODE={{{{.Node.ID}}}} \
             --mount type=volume,source={volume},target=/data,volume-driver={driver},{opts} {}",
            image()
        ),
        &["sh", "-c", script],
    );
}

/// Waits until every (key, content) pair is in the bucket.
fn wait_for_objects(swarm: &Swarm, objects: &Bucket, service: &str, want: &[(String, String)]) {
    let what = format!(
        "{} in the bucket",
        want.iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    poll(
        &what,
        TASK_WAIT,
        || {
            want.iter()
                .all(|(key, content)| objects.get(key).as_deref() == Some(content.as_bytes()))
        },
        || {
            let mut why = format!("keys: {:?}\n", objects.keys(""));
            let out = swarm
                .manager
                .docker(&["service", "ps", "--no-trunc", service]);
            why += &String::from_utf8_lossy(&out.stdout);
            why += &String::from_utf8_lossy(&out.stderr);
            why
        },
    );
}

/// The pair "key, content" of each node's file `PREFIX/NAME-ID` written by
/// `echo "WORD ID"`.
fn per_node(swarm: &Swarm, key: impl Fn(&str) -> String, word: &str) -> Vec<(String, String)> {
    [&swarm.manager_id, &swarm.worker_id]
        .iter()
        .map(|id| (key(id), format!("{word} {id}\n")))
        .collect()
}

/// Mount processes of this machine whose command line names `volume`.
fn mount_processes_of(volume: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let argv: Vec<String> = raw
                .split(|&b| b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let is_mount = argv.first()?.ends_with("opensandbox-volume")
                && argv.get(1).is_some_and(|a| a == "mount");
            (is_mount && argv.iter().any(|a| a.contains(volume)))
                .then(|| format!("{pid}: {}", argv.join(" ")))
        })
        .collect()
}

#[test]
fn services_and_stacks_on_a_two_node_swarm() {
    require!(Root, Dockerd, Moto);
    let _turn = common::docker::turn();
    let started = Instant::now();
    // Where the time goes, for whoever wonders why it took long.
    let at = |what: &str| {
        eprintln!(
            "swarm test: {what} at {:.1} s",
            started.elapsed().as_secs_f64()
        )
    };
    let first = Node::first();
    let dirs = tempfile::Builder::new()
        .prefix("osv-swarm-plugins-")
        .tempdir_in("/tmp")
        .unwrap();

    // Node 2 and its copy of the test image.
    let mut second = SecondDockerd::start();
    second.load_image(&image());
    let node2 = second.node();
    at("node 2 up");

    // The legacy plugin: one socket, found by both daemons once a volume
    // command looks for drivers.
    SharedPlugin::get(&PLUGIN, TEST_DRIVER);
    // The managed plugin on each node: one name, one set of settings, a
    // state of its own per node.
    let mut plugins = ManagedPlugins {
        name: registry().pushed("1"),
        nodes: Vec::new(),
    };
    let managed = plugins.name.clone();
    at("managed plugin pushed");
    plugins.install(&first, &dirs.path().join("node1"), None);
    plugins.install(&node2, &dirs.path().join("node2"), Some(&second.socket));
    for node in [&first, &node2] {
        node.ok(&["volume", "ls"]);
    }
    at("plugins installed on both nodes");

    let mut swarm = Swarm::form(&second);
    swarm.wait_for_volume_drivers(&[TEST_DRIVER, &managed]);
    let (n1, n2) = (swarm.manager_id.clone(), swarm.worker_id.clone());
    let mut deployed = Deployed::new(&swarm);
    let bucket = moto().new_bucket("swarm");
    let objects = Bucket::new(&bucket);

    // a. `docker service create --mount …volume-driver=…,volume-opt=…`
    // with the legacy plugin, a task on each node.
    let service = deployed.service(&unique("swlegacy"));
    let volume = deployed.volume(&unique("swlegacy"));
    create_service(
        &swarm,
        &service,
        "--mode global",
        TEST_DRIVER,
        &volume,
        &volume_opts(&bucket, "legacy"),
        r#"echo "legacy $NODE" > "/data/legacy-$NODE""#,
    );
    let want = per_node(&swarm, |id| format!("legacy/legacy-{id}"), "legacy");
    wait_for_objects(&swarm, &objects, &service, &want);
    for node in swarm.nodes() {
        let listed = node.lines(&[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("driver={TEST_DRIVER}"),
        ]);
        assert!(
            listed.contains(&volume),
            "{} made no volume {volume}: {listed:?}",
            node.label
        );
    }
    at("a. done (legacy service)");

    // b. A compose file with `driver` and `driver_opts`, deployed as a
    // stack, then removed with `docker stack rm`: with the legacy plugin,
    // then with the managed plugins (each node's own).
    for (driver, tag) in [(TEST_DRIVER, "stack"), (managed.as_str(), "mstack")] {
        let stack = deployed.stack(&unique(&format!("sw{tag}")));
        let stack_volume = deployed.volume(&format!("{stack}_data"));
        let compose = dirs.path().join("stack.yml");
        fs::write(
            &compose,
            format!(
                r#"version: "3.8"
services:
  writer:
    image: {image}
    command: ["sh", "-c", 'echo "{tag} $$NODE" > "/data/{tag}-$$NODE"']
    environment:
      NODE: "{{{{.Node.ID}}}}"
    volumes:
      - data:/data
    networks:
      - hostnet
    deploy:
      mode: global
      restart_policy:
        condition: none
volumes:
  data:
    driver: {driver}
    driver_opts:
      type: s3
      bucket: {bucket}
      endpoint: "{endpoint}"
      accessKeyId: swarm-key
      accessKeySecret: swarm-secret
      prefix: {tag}
networks:
  hostnet:
    external: true
    name: host
"#,
                image = image(),
                bucket = bucket.bucket,
                endpoint = bucket.endpoint.as_deref().unwrap(),
            ),
        )
        .unwrap();
        swarm.manager.ok(&[
            "stack",
            "deploy",
            "-c",
            compose.to_str().unwrap(),
            "--resolve-image",
            "never",
            &stack,
        ]);
        let want = per_node(&swarm, |id| format!("{tag}/{tag}-{id}"), tag);
        wait_for_objects(&swarm, &objects, &format!("{stack}_writer"), &want);
        swarm.manager.ok(&["stack", "rm", &stack]);
        let filter = format!("label=com.docker.stack.namespace={stack}");
        for node in swarm.nodes() {
            poll(
                &format!("the stack's containers on {} to go", node.label),
                TASK_WAIT,
                || node.lines(&["ps", "-aq", "--filter", &filter]).is_empty(),
                || node.lines(&["ps", "-a", "--filter", &filter]).join("\n"),
            );
            // `stack rm` leaves volumes to the operator, as Docker documents.
            let listed = node.lines(&["volume", "ls", "-q"]);
            assert!(
                listed.contains(&stack_volume),
                "{}: {stack_volume} not kept after stack rm: {listed:?}",
                node.label
            );
        }
        // One legacy plugin serves both daemons here (on two hosts each has
        // its own): the first removal forgets the volume in it, and the other
        // daemon then finds it gone and drops its own record. Each managed
        // plugin has its own record to remove.
        swarm.manager.ok(&["volume", "rm", &stack_volume]);
        let out = swarm.worker.docker(&["volume", "rm", &stack_volume]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || stderr.contains("no such volume"),
            "node 2: docker volume rm {stack_volume}: {stderr}"
        );
        for node in swarm.nodes() {
            let listed = node.lines(&["volume", "ls", "-q"]);
            assert!(
                !listed.contains(&stack_volume),
                "{}: {stack_volume} still listed",
                node.label
            );
        }
        assert!(
            swarm
                .manager
                .lines(&["service", "ls", "-q", "--filter", &filter])
                .is_empty(),
            "stack rm left services"
        );
        at(&format!("b. done (stack, {driver})"));
    }

    // c. A global service on the managed plugins: both nodes write into one
    // prefix, each through the plugin of its own daemon.
    let service = deployed.service(&unique("swglobal"));
    let volume = deployed.volume(&unique("swglobal"));
    create_service(
        &swarm,
        &service,
        "--mode global",
        &managed,
        &volume,
        &volume_opts(&bucket, "global"),
        r#"echo "global $NODE" > "/data/$NODE""#,
    );
    let want = per_node(&swarm, |id| format!("global/{id}"), "global");
    wait_for_objects(&swarm, &objects, &service, &want);
    let stem = opensandbox_volume::names::file_stem(&volume);
    for node in ["node1", "node2"] {
        let record = dirs
            .path()
            .join(format!("{node}/state/volumes/{stem}.json"));
        assert!(record.exists(), "{node}'s plugin has no record {record:?}");
    }
    at("c. done (global service, managed plugins)");

    // d. A task moved from node 1 to node 2 finds the data the old one
    // wrote, and writes what it read back under its own node's ID.
    let service = deployed.service(&unique("swmove"));
    let volume = deployed.volume(&unique("swmove"));
    create_service(
        &swarm,
        &service,
        &format!("--replicas 1 --constraint node.id=={n1}"),
        &managed,
        &volume,
        &volume_opts(&bucket, "move"),
        r#"trap 'exit 0' TERM
           if [ -e /data/note ]; then cat /data/note > "/data/read-on-$NODE"
           else echo "written on $NODE" > /data/note; fi
           sleep 600 & wait"#,
    );
    let label = format!("label=com.docker.swarm.service.name={service}");
    poll(
        "the first task to write its note on node 1",
        TASK_WAIT,
        || {
            let running = first.lines(&["ps", "-q", "--filter", &label]);
            running.len() == 1
                && first
                    .docker(&["exec", &running[0], "test", "-e", "/data/note"])
                    .status
                    .success()
        },
        || {
            String::from_utf8_lossy(
                &swarm
                    .manager
                    .docker(&["service", "ps", "--no-trunc", &service])
                    .stdout,
            )
            .into_owned()
        },
    );
    // The note need not be in the bucket yet: node 1's task stops first, and
    // its Unmount (the plugin's flush) returns before the new task starts.
    swarm.manager.words(
        &format!("service update -d --constraint-rm node.id=={n1} --constraint-add node.id=={n2} {service}"),
        &[],
    );
    let want = vec![
        (format!("move/read-on-{n2}"), format!("written on {n1}\n")),
        ("move/note".to_string(), format!("written on {n1}\n")),
    ];
    wait_for_objects(&swarm, &objects, &service, &want);
    assert_eq!(
        objects.keys("move/"),
        vec!["move/note".to_string(), format!("move/read-on-{n2}")],
        "only node 2's task found a note"
    );
    // The old node released its mount; its volume record stays until removed.
    assert_eq!(
        first.ok(&[
            "volume",
            "inspect",
            "--format",
            "{{.Status.mounts}}",
            &volume
        ]),
        "0"
    );
    at("d. done (task moved)");

    // Everything goes: services, volumes and plugins on both nodes, mount
    // processes, the swarm, the second daemon.
    let volumes = deployed.volumes.clone();
    let problems = deployed.remove_all();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    drop(deployed);
    for node in swarm.nodes() {
        let listed = node.lines(&["volume", "ls", "-q"]);
        let left: Vec<&String> = volumes.iter().filter(|v| listed.contains(v)).collect();
        assert!(left.is_empty(), "{}: volumes left: {left:?}", node.label);
    }
    let services = swarm.manager.lines(&["service", "ls", "-q"]);
    assert!(services.is_empty(), "services left: {services:?}");
    let problems = plugins.remove();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for node in [&first, &node2] {
        let listed = node.lines(&["plugin", "ls", "--format", "{{.Name}}"]);
        assert!(
            !listed.iter().any(|p| p.contains(REPO)),
            "{}: plugins left: {listed:?}",
            node.label
        );
    }
    for volume in &volumes {
        let left = mount_processes_of(volume);
        assert!(left.is_empty(), "mount processes left: {left:?}");
    }
    let problems = swarm.leave();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    drop(swarm);
    let problems = second.stop();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(!second.base.exists(), "{:?} removed", second.base);
    at("everything removed");

    // Node 1 is as it was: out of any swarm, and containers start on the
    // default bridge (docker0 was never touched).
    assert_eq!(first.swarm_state(), "inactive");
    assert!(
        Path::new("/sys/class/net/docker0").exists(),
        "docker0 is gone"
    );
    let out = first.ok(&["run", "--rm", &image(), "sh", "-c", "ls /sys/class/net"]);
    assert!(
        out.split_whitespace().any(|i| i == "eth0"),
        "a container on the default bridge has no eth0: {out}"
    );
    at("finished");
}
