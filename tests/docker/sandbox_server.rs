//! The sandbox server's side against the real dockerd: OpenSandbox Lifecycle
//! API volumes → `opensandbox-volume translate` → Docker, with the plugin
//! binary registered as a legacy driver and moto as the S3 server.
//!
//! - the api form posted to the Engine API (`POST /containers/create` with
//!   `HostConfig.Mounts`), as a server that speaks HTTP to dockerd would;
//! - the cli form pasted into `sh -c "docker run … $ARGS image …"`, values
//!   with commas, quotes and apostrophes included; a `pvc` claim (an
//!   existing local volume) with `subPath`s; a `pvc` claim as the server
//!   sends it (a 253-character name, a non-normal `subPath`, the
//!   provisioning hints), created by the first sandbox and removed with the
//!   second; named volumes (`--name-prefix`) reused by a second sandbox;
//! - examples/sandbox_sdk.py, the Docker SDK for Python, as the (Python)
//!   OpenSandbox server would.
//!
//! Each checks what the container saw, what it wrote (on the host, in the
//! bucket), and what removing the container does to the volumes.

use crate::common;

use common::BIN;
use common::docker::{Cleanup, SharedPlugin, TEST_DRIVER, docker, docker_ok, image, read, unique};
use common::objectfs_mount::Bucket;
use common::s3server::moto;
use common::wait_for;
use opensandbox_volume::translate::shell_quote;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

static PLUGIN: OnceLock<SharedPlugin> = OnceLock::new();
fn plugin() -> &'static SharedPlugin {
    SharedPlugin::get(&PLUGIN, TEST_DRIVER)
}

/// `opensandbox-volume translate --driver osvtest ARGS` on `volumes`;
/// returns stdout (it must succeed).
fn translate(args: &[&str], volumes: &Value) -> String {
    translate_warning(args, volumes).0
}

/// [`translate`], with its warnings (standard error).
fn translate_warning(args: &[&str], volumes: &Value) -> (String, String) {
    let mut child = Command::new(BIN)
        .arg("translate")
        .arg("--driver")
        .arg(&plugin().driver)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(volumes.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "translate {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// dockerd's socket: `$DOCKER_HOST` when it is a unix socket, else the default.
fn docker_socket() -> PathBuf {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => PathBuf::from(&host["unix://".len()..]),
        _ => PathBuf::from("/var/run/docker.sock"),
    }
}

/// One Engine API call. HTTP/1.0, so the reply is never chunked and ends
/// at EOF. Returns the status and the raw body.
fn engine(method: &str, path: &str, body: Option<&Value>) -> (u16, Vec<u8>) {
    let mut stream = UnixStream::connect(docker_socket()).expect("connecting to dockerd");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).unwrap();
    let end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers: {:?}", String::from_utf8_lossy(&reply)));
    let head = String::from_utf8_lossy(&reply[..end]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, reply[end + 4..].to_vec())
}

/// An Engine API call that must answer `expect`; returns the body as JSON
/// (null when empty).
fn engine_ok(method: &str, path: &str, body: Option<&Value>, expect: u16) -> Value {
    let (status, reply) = engine(method, path, body);
    let text = String::from_utf8_lossy(&reply);
    assert_eq!(status, expect, "{method} {path}: {text}");
    if reply.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&reply).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }
}

/// A container's output, from the multiplexed log stream of a container
/// without a TTY: frames of [stream, 0, 0, 0, size (big-endian u32)] + data.
fn logs(id: &str) -> (String, String) {
    let (status, raw) = engine(
        "GET",
        &format!("/containers/{id}/logs?stdout=1&stderr=1"),
        None,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&raw));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut rest = &raw[..];
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "truncated log frame header");
        let size = u32::from_be_bytes(rest[4..8].try_into().unwrap()) as usize;
        let data = &rest[8..8 + size];
        match rest[0] {
            1 => out.extend_from_slice(data),
            2 => err.extend_from_slice(data),
            other => panic!("log frame of stream {other}"),
        }
        rest = &rest[8 + size..];
    }
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Removes a container and its anonymous volumes (`docker rm -f -v`) when
/// the test ends, however it ends.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.0]);
    }
}

/// Whether dockerd knows a volume of this name.
fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).status.success()
}

/// The volume names of a container's mounts, by mount path.
fn mounted_volumes(id: &str) -> Vec<(String, String, String)> {
    let info = engine_ok("GET", &format!("/containers/{id}/json"), None, 200);
    info["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Destination"].as_str().unwrap().to_string(),
                m["Name"].as_str().unwrap().to_string(),
                m["Driver"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A host directory under the plugin's allowed prefix holding `input.txt`.
fn host_dir_with_input(tag: &str, text: &str) -> PathBuf {
    let dir = plugin().host_dir(&unique(tag));
    std::fs::write(dir.join("input.txt"), text).unwrap();
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn api_form_posted_to_the_engine_api() {
    require!(Root, Dockerd, Moto);
    let _shared = common::docker::shared_daemon();
    let _p = plugin();
    let dir = host_dir_with_input("tr-api", "from-host\n");
    let config = moto().new_bucket("translate-api");
    let bucket = Bucket::new(&config);
    bucket.put("runs/in.txt", b"from-bucket\n");

    let volumes = json!({
        "image": {"uri": image()},
        "volumes": [
            {"name": "work", "host": {"path": path_str(&dir)}, "mountPath": "/mnt/work"},
            {
                "name": "data",
                "s3": {
                    "bucket": config.bucket,
                    "endpoint": config.endpoint.as_deref().unwrap(),
                    "prefix": "runs",
                    "accessKeyId": "test",
                    "accessKeySecret": "test"
                },
                "mountPath": "/mnt/data"
            },
            {
                "name": "inputs",
                "host": {"path": path_str(&dir)},
                "mountPath": "/mnt/inputs",
                "subPath": "sub",
                "readOnly": true
            }
        ]
    });
    let mounts: Value = serde_json::from_str(&translate(&["--format", "api"], &volumes)).unwrap();
    assert_eq!(mounts.as_array().unwrap().len(), 3);
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/seed.txt"), "seed\n").unwrap();

    let name = unique("tr-api-c");
    let script = "cat /mnt/work/input.txt /mnt/data/in.txt /mnt/inputs/seed.txt && \
                  echo out-host > /mnt/work/out.txt && echo out-bucket > /mnt/data/out.txt && \
                  if echo x > /mnt/inputs/x 2>/dev/null; then echo inputs-writable; \
                  else echo inputs-read-only; fi";
    let created = engine_ok(
        "POST",
        &format!("/containers/create?name={name}"),
        Some(&json!({
            "Image": image(),
            "Cmd": ["sh", "-c", script],
            "HostConfig": {"Mounts": mounts}
        })),
        201,
    );
    let _container = Container(name.clone());
    let id = created["Id"].as_str().unwrap().to_string();

    // Docker created one anonymous volume of our driver per entry.
    let volumes_of = mounted_volumes(&id);
    assert_eq!(volumes_of.len(), 3, "{volumes_of:?}");
    for (dst, vol, driver) in &volumes_of {
        assert_eq!(driver, TEST_DRIVER, "{dst}");
        assert_eq!(
            vol.len(),
            64,
            "{dst}: anonymous volumes get a random name: {vol}"
        );
    }

    engine_ok("POST", &format!("/containers/{id}/start"), None, 204);
    let waited = engine_ok("POST", &format!("/containers/{id}/wait"), None, 200);
    let (stdout, stderr) = logs(&id);
    assert_eq!(
        waited["StatusCode"], 0,
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(
        stdout, "from-host\nfrom-bucket\nseed\ninputs-read-only\n",
        "stderr: {stderr}"
    );

    // What the container wrote is on the host and in the bucket.
    assert_eq!(read(&dir.join("out.txt")), "out-host\n");
    wait_for("out.txt in the bucket", || {
        bucket.get("runs/out.txt").as_deref() == Some(&b"out-bucket\n"[..])
    });
    assert!(!dir.join("sub/x").exists());

    // `docker rm -v`: Docker's records of the anonymous volumes go (the
    // plugin forgets them); the data stays.
    engine_ok("DELETE", &format!("/containers/{id}?v=1"), None, 204);
    for (dst, vol, _) in &volumes_of {
        assert!(
            !volume_exists(vol),
            "{dst}: volume {vol} outlived docker rm -v"
        );
    }
    assert_eq!(read(&dir.join("input.txt")), "from-host\n");
    assert_eq!(read(&dir.join("out.txt")), "out-host\n");
    assert_eq!(
        bucket.get("runs/in.txt").as_deref(),
        Some(&b"from-bucket\n"[..])
    );
    assert_eq!(
        bucket.get("runs/out.txt").as_deref(),
        Some(&b"out-bucket\n"[..])
    );
}

#[test]
fn cli_form_pasted_into_a_shell() {
    require!(Root, Dockerd, Moto);
    let _shared = common::docker::shared_daemon();
    let _p = plugin();
    // A directory and a mount path with a comma, double quotes and an
    // apostrophe: CSV quoting inside, shell quoting outside.
    let dir = plugin().host_dir(&unique("tr-cli it's, \"odd\""));
    std::fs::write(dir.join("input.txt"), "odd-dir\n").unwrap();
    let plain = host_dir_with_input("tr-cli-plain", "plain\n");
    let config = moto().new_bucket("translate-cli");
    let bucket = Bucket::new(&config);
    bucket.put("in.txt", b"cli-bucket\n");
    let odd_target = "/mnt/a,b \"c\" 'd'";
    let volumes = json!([
        {"name": "odd", "host": {"path": path_str(&dir)}, "mountPath": odd_target},
        {"name": "plain", "host": {"path": path_str(&plain)}, "mountPath": "/mnt/plain"},
        {
            "name": "data",
            "ossfs": {
                "bucket": config.bucket,
                "endpoint": config.endpoint.as_deref().unwrap(),
                "accessKeyId": "test",
                "accessKeySecret": "test",
                "options": ["allow_other", "umask=0022", "uid=1000"]
            },
            "mountPath": "/mnt/data"
        }
    ]);
    let args = translate(&[], &volumes);
    assert!(args.contains(r#""volume-opt=options=allow_other,umask=0022,uid=1000""#));
    let name = unique("tr-cli-c");
    let _container = Container(name.clone());
    let odd_file = shell_quote(&format!("{odd_target}/input.txt"));
    let script = format!(
        "docker run --rm --name {name} {} {} sh -c {}",
        args.trim_end(),
        image(),
        shell_quote(&format!(
            "cat {odd_file} /mnt/plain/input.txt /mnt/data/in.txt && stat -c %u /mnt/data/in.txt \
             && echo from-cli > /mnt/plain/cli.txt && echo cli-out > /mnt/data/cli.txt"
        ))
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // uid=1000 from ossfs `options`: owner of objects without metadata.
    assert_eq!(stdout, "odd-dir\nplain\ncli-bucket\n1000\n");
    assert_eq!(read(&plain.join("cli.txt")), "from-cli\n");
    wait_for("cli.txt in the bucket", || {
        bucket.get("cli.txt").as_deref() == Some(&b"cli-out\n"[..])
    });
}

#[test]
fn named_volumes_outlive_the_container_and_are_shared() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let _p = plugin();
    let mut clean = Cleanup::default();
    let dir = host_dir_with_input("tr-named", "shared\n");
    let prefix = format!("{}-", unique("sbx"));
    let volumes = json!({"volumes": [
        {"name": "work", "host": {"path": path_str(&dir)}, "mountPath": "/mnt/work", "subPath": "agent-1"}
    ]});
    let args = translate(&["--name-prefix", &prefix], &volumes);
    let vol = format!("{prefix}work");
    assert!(args.contains(&format!(",src={vol},")), "{args}");
    let run = |script: &str| {
        let command = format!(
            "docker run --rm {} {} sh -c {}",
            args.trim_end(),
            image(),
            shell_quote(script)
        );
        let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
        assert!(
            out.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run("echo first > /mnt/work/note");
    clean.volume(&vol);
    // `--rm` removed the container, not the named volume: a second sandbox
    // with the same request finds what the first wrote.
    assert!(volume_exists(&vol));
    assert_eq!(run("cat /mnt/work/note"), "first\n");
    let status = &docker_ok(&["volume", "inspect", "-f", "{{json .Status}}", &vol]);
    assert!(status.contains("agent-1"), "{status}");
    // Removing it forgets it; the data stays on the host.
    docker_ok(&["volume", "rm", &vol]);
    assert_eq!(read(&dir.join("agent-1/note")), "first\n");
}

/// The Python that has the Docker SDK: $OSV_TEST_PYTHON, else the test
/// venv's (scripts/test.sh installs `docker` there).
fn python() -> PathBuf {
    match std::env::var_os("OSV_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/opt/osv-test-venv/bin/python"),
    }
}

#[test]
fn python_sdk_example_runs_a_sandbox() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let _p = plugin();
    let dir = host_dir_with_input("tr-py", "from-host-py\n");
    let volumes = json!({"volumes": [
        {"name": "work", "host": {"path": path_str(&dir)}, "mountPath": "/mnt/work"},
        {"name": "ro", "host": {"path": path_str(&dir)}, "mountPath": "/mnt/ro", "readOnly": true}
    ]});
    let file = dir.with_extension("volumes.json");
    std::fs::write(&file, volumes.to_string()).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sandbox_sdk.py");
    let python = python();
    assert!(
        python.exists(),
        "{} does not exist; run scripts/test.sh (it installs the Docker SDK for Python there) \
         or set OSV_TEST_PYTHON",
        python.display()
    );
    let sdk = |volumes: &Path, script: &str| {
        Command::new(&python)
            .arg(&example)
            .args(["--driver", &plugin().driver, "--image", &image()])
            .arg("--volumes")
            .arg(volumes)
            .arg("--translate")
            .arg(BIN)
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap()
    };
    let out = sdk(
        &file,
        "cat /mnt/work/input.txt && echo py > /mnt/work/py.txt && \
         (touch /mnt/ro/x 2>/dev/null && echo ro-writable || echo ro-refused)",
    );
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from-host-py\nro-refused\n"
    );
    assert_eq!(read(&dir.join("py.txt")), "py\n");

    // The command's exit status comes back; invalid volumes are refused
    // before anything is created, with the API's message and status 2.
    assert_eq!(sdk(&file, "exit 3").status.code(), Some(3));
    let bad = dir.with_extension("bad.json");
    std::fs::write(
        &bad,
        json!({"volumes": [{"name": "w", "mountPath": "mnt", "host": {"path": "/srv/a"}}]})
            .to_string(),
    )
    .unwrap();
    let out = sdk(&bad, "true");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "volumes[0].mountPath: Mount path 'mnt' must be an absolute path starting with '/'.\n"
    );
}

#[test]
fn pvc_claim_with_a_sub_path() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let _p = plugin();
    let mut clean = Cleanup::default();
    // The claim: an existing local named volume, with a file in `team/`.
    let claim = clean.volume(&unique("tr-claim"));
    docker_ok(&["volume", "create", &claim]);
    docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{claim}:/c"),
        &image(),
        "sh",
        "-c",
        "mkdir -p /c/team && echo in-claim > /c/team/f",
    ]);
    let volumes = json!({"volumes": [
        {"name": "models", "pvc": {"claimName": claim}, "mountPath": "/mnt/models", "subPath": "team", "readOnly": true},
        {"name": "scratch", "pvc": {"claimName": claim}, "mountPath": "/mnt/scratch", "subPath": "agent-1"}
    ]});
    let args = translate(&[], &volumes);
    let command = format!(
        "docker run --rm {} {} sh -c {}",
        args.trim_end(),
        image(),
        shell_quote(
            "cat /mnt/models/f && echo s > /mnt/scratch/s && \
             (echo x > /mnt/models/x 2>/dev/null && echo models-writable || echo models-read-only)"
        )
    );
    let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "in-claim\nmodels-read-only\n"
    );
    // The claim keeps what the sandbox wrote, in its own subdirectory.
    let listing = docker_ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{claim}:/c"),
        &image(),
        "sh",
        "-c",
        "cat /c/agent-1/s && ls /c/team",
    ]);
    assert_eq!(listing, "s\nf");
}

/// `docker run --rm ARGS IMAGE sh -c SCRIPT` through a shell, as a server
/// pasting translate's cli form would; returns stdout (it must succeed).
fn sandbox(args: &str, script: &str) -> String {
    let command = format!(
        "docker run --rm {} {} sh -c {}",
        args.trim_end(),
        image(),
        shell_quote(script)
    );
    let out = Command::new("sh").arg("-c").arg(&command).output().unwrap();
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `pvc` entry as the OpenSandbox server accepts it today: a claim name of
/// 253 characters that does not exist yet, a `subPath` with `.` and empty
/// components, the Kubernetes provisioning hints (warned about, dropped).
/// The first sandbox creates the claim (`createIfNotExists`, the default);
/// the second, with `deleteOnSandboxTermination`, takes it away with its
/// container.
#[test]
fn pvc_as_the_server_sends_it_is_created_and_removed_with_the_sandbox() {
    require!(Root, Dockerd);
    let _shared = common::docker::shared_daemon();
    let _p = plugin();
    let head = unique("osv-srv-claim");
    let claim = format!("{head}-{}", "c".repeat(253 - head.len() - 1));
    struct RemoveOnFailure(String);
    impl Drop for RemoveOnFailure {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let _ = docker(&["volume", "rm", "-f", &self.0]);
            }
        }
    }
    let _guard = RemoveOnFailure(claim.clone());
    assert!(!volume_exists(&claim));

    let first = json!({"volumes": [{
        "name": "work", "mountPath": "/mnt/work", "subPath": "runs/./one//two",
        "pvc": {"claimName": claim, "storageClass": "standard", "storage": "1Gi",
                "accessModes": ["ReadWriteOnce"]}
    }]});
    let (args, warnings) = translate_warning(&[], &first);
    assert_eq!(
        warnings
            .lines()
            .map(|l| l.split(':').nth(1).unwrap().trim())
            .collect::<Vec<_>>(),
        [
            "volumes[0].pvc.storageClass",
            "volumes[0].pvc.storage",
            "volumes[0].pvc.accessModes"
        ],
        "{warnings}"
    );
    assert!(!args.contains("storageClass"), "{args}");
    sandbox(&args, "echo from-first > /mnt/work/f");
    let created = common::docker::inspect_volume(&claim);
    assert_eq!(created["Driver"], "local");
    assert_eq!(
        created["Labels"]["opensandbox.io/volume-managed-by"],
        "opensandbox-volume"
    );
    let data = PathBuf::from(created["Mountpoint"].as_str().unwrap());
    assert_eq!(read(&data.join("runs/one/two/f")), "from-first\n");

    let second = json!({"volumes": [{
        "name": "work", "mountPath": "/mnt/work", "subPath": "runs/one/two", "readOnly": true,
        "pvc": {"claimName": claim, "deleteOnSandboxTermination": true}
    }]});
    let (args, warnings) = translate_warning(&[], &second);
    assert_eq!(warnings, "");
    assert_eq!(sandbox(&args, "cat /mnt/work/f"), "from-first\n");
    // `--rm` removes the anonymous pvc volume with the container, and the
    // plugin the claim it created (Docker does so after `docker run`
    // returns).
    wait_for("the claim to go with the sandbox", || {
        !volume_exists(&claim)
    });
    assert!(!data.exists());
}
