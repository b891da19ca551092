//! The plugin binary over a real unix socket, driven with raw HTTP exactly
//! as dockerd sends it. Mounts are real bind mounts (the tests run as root).

use crate::common;

use common::http::{call, docker_request, err_of, send_raw};
use common::{Plugin, is_mounted, unmount_all_under};
use serde_json::json;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// A plugin with its own temp directory; `allowed` is `base/allowed`.
struct Env {
    plugin: Plugin,
    allowed: PathBuf,
    base: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let base = tempfile::tempdir().unwrap();
        let allowed = base.path().join("allowed");
        fs::create_dir_all(&allowed).unwrap();
        let plugin = Plugin::start(
            &base.path().join("osv.sock"),
            base.path(),
            std::slice::from_ref(&allowed),
        );
        Env {
            plugin,
            allowed,
            base,
        }
    }

    fn socket(&self) -> &Path {
        &self.plugin.socket
    }

    fn create(&self, name: &str, opts: serde_json::Value) -> String {
        let body = json!({"Name": name, "Opts": opts}).to_string();
        err_of(&call(self.socket(), "VolumeDriver.Create", &body))
    }

    fn host_dir(&self, rel: &str) -> PathBuf {
        let p = self.allowed.join(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn mount(&self, name: &str, id: &str) -> Result<PathBuf, String> {
        let r = call(
            self.socket(),
            "VolumeDriver.Mount",
            &json!({"Name": name, "ID": id}).to_string(),
        );
        match err_of(&r).as_str() {
            "" => Ok(PathBuf::from(r.body["Mountpoint"].as_str().unwrap())),
            e => Err(e.to_string()),
        }
    }

    fn unmount(&self, name: &str, id: &str) -> String {
        err_of(&call(
            self.socket(),
            "VolumeDriver.Unmount",
            &json!({"Name": name, "ID": id}).to_string(),
        ))
    }

    fn get(&self, name: &str) -> common::http::Reply {
        call(
            self.socket(),
            "VolumeDriver.Get",
            &json!({"Name": name}).to_string(),
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.plugin.kill();
        unmount_all_under(self.base.path());
    }
}

#[test]
fn activate_with_empty_body_and_capabilities() {
    let env = Env::new();
    let r = send_raw(env.socket(), &docker_request("Plugin.Activate", ""));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"Implements": ["VolumeDriver"]}));
    let r = call(env.socket(), "VolumeDriver.Capabilities", "{}");
    assert_eq!(r.status, 200);
    assert_eq!(r.body["Capabilities"]["Scope"], "local");
    let r = call(env.socket(), "VolumeDriver.List", "{}");
    assert_eq!(r.body, json!({"Volumes": []}));
}

#[test]
fn null_opts_is_a_sentence_about_type() {
    let env = Env::new();
    let r = call(
        env.socket(),
        "VolumeDriver.Create",
        r#"{"Name":"v","Opts":null}"#,
    );
    assert_eq!(r.status, 500);
    let e = err_of(&r);
    assert!(
        e.contains("\"v\"") && e.contains("`type` is required") && e.contains("host"),
        "{e}"
    );
}

#[test]
fn malformed_requests_get_err_and_the_plugin_keeps_serving() {
    let env = Env::new();
    for body in [
        "{",
        "[]",
        "\"Name\"",
        r#"{"Name": 5}"#,
        r#"{"Name":"v","Opts":"x"}"#,
    ] {
        let r = call(env.socket(), "VolumeDriver.Create", body);
        assert_eq!(r.status, 400, "{body}");
        assert!(!err_of(&r).is_empty(), "{body}: {}", r.raw_body);
    }
    let r = call(env.socket(), "VolumeDriver.Get", "{}");
    assert!(err_of(&r).contains("no volume `Name`"), "{}", r.raw_body);
    let r = call(env.socket(), "VolumeDriver.Mount", r#"{"Name":"v"}"#);
    assert!(err_of(&r).contains("mount `ID`"), "{}", r.raw_body);
    let r = call(env.socket(), "VolumeDriver.Frobnicate", "{}");
    assert_eq!(r.status, 404);
    assert!(err_of(&r).contains("not a call of this plugin"));
    // Still alive and well.
    let r = send_raw(env.socket(), &docker_request("Plugin.Activate", ""));
    assert_eq!(r.status, 200);
}

#[test]
fn chunked_body_lowercase_fields_and_unknown_fields() {
    let env = Env::new();
    let dir = env.host_dir("chunked");
    let body =
        json!({"name": "c", "opts": {"type": "host", "path": dir}, "Extra": {"x": 1}}).to_string();
    let raw = format!(
        "POST /VolumeDriver.Create HTTP/1.1\r\nHost: plugin\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let r = send_raw(env.socket(), raw.as_bytes());
    assert_eq!(r.status, 200, "{}", r.raw_body);
    assert_eq!(env.get("c").body["Volume"]["Name"], "c");
}

#[test]
fn full_lifecycle_with_repeated_mount_ids() {
    require!(Root);
    let env = Env::new();
    let dir = env.host_dir("life");
    fs::write(dir.join("existing"), b"data").unwrap();
    assert_eq!(env.create("life", json!({"type": "host", "path": dir})), "");

    let got = env.get("life");
    let vol = &got.body["Volume"];
    assert_eq!(vol["Name"], "life");
    assert!(vol.get("Mountpoint").is_none(), "not mounted yet: {vol}");
    assert_eq!(vol["Status"]["type"], "host");
    assert_eq!(vol["Status"]["mounts"], 0);
    let created = vol["CreatedAt"].as_str().unwrap();
    humantime::parse_rfc3339(created).expect("CreatedAt is RFC 3339");

    // Same ID twice (docker cp), then a second container.
    let mp = env.mount("life", "A").unwrap();
    assert!(mp.starts_with(&env.plugin.mount_root), "{mp:?}");
    assert!(is_mounted(&mp));
    assert_eq!(fs::read(mp.join("existing")).unwrap(), b"data");
    assert_eq!(env.mount("life", "A").unwrap(), mp);
    assert_eq!(env.mount("life", "B").unwrap(), mp);
    fs::write(mp.join("new"), b"via mount").unwrap();
    assert_eq!(fs::read(dir.join("new")).unwrap(), b"via mount");

    let r = call(env.socket(), "VolumeDriver.Path", r#"{"Name":"life"}"#);
    assert_eq!(r.body["Mountpoint"], json!(mp));
    assert_eq!(env.get("life").body["Volume"]["Status"]["mounts"], 3);

    let e = err_of(&call(
        env.socket(),
        "VolumeDriver.Remove",
        r#"{"Name":"life"}"#,
    ));
    assert!(e.contains("in use by 3 mount"), "{e}");

    assert_eq!(env.unmount("life", "A"), "");
    assert_eq!(env.unmount("life", "B"), "");
    assert!(is_mounted(&mp), "one mount of A remains");
    assert_eq!(env.unmount("life", "A"), "");
    assert!(!is_mounted(&mp));
    assert_eq!(env.unmount("life", "A"), "", "unknown ID succeeds");
    let r = call(env.socket(), "VolumeDriver.Path", r#"{"Name":"life"}"#);
    assert_eq!(r.body, json!({}));

    assert_eq!(
        err_of(&call(
            env.socket(),
            "VolumeDriver.Remove",
            r#"{"Name":"life"}"#
        )),
        ""
    );
    let e = err_of(&env.get("life"));
    assert!(e.contains("does not exist"), "{e}");
    // The user's data is never deleted.
    assert_eq!(fs::read(dir.join("new")).unwrap(), b"via mount");
    assert_eq!(fs::read(dir.join("existing")).unwrap(), b"data");
}

#[test]
fn read_only_is_enforced_by_the_plugin_mount() {
    require!(Root);
    let env = Env::new();
    let dir = env.host_dir("ro");
    fs::write(dir.join("f"), b"x").unwrap();
    assert_eq!(
        env.create(
            "ro",
            json!({"type": "host", "path": dir, "readOnly": "true"})
        ),
        ""
    );
    let mp = env.mount("ro", "id").unwrap();
    assert_eq!(fs::read(mp.join("f")).unwrap(), b"x");
    let err = fs::write(mp.join("g"), b"y").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    assert_eq!(env.unmount("ro", "id"), "");
}

#[test]
fn sub_paths_are_created_and_isolated() {
    require!(Root);
    let env = Env::new();
    let dir = env.host_dir("shared");
    assert_eq!(
        env.create(
            "s1",
            json!({"type": "host", "path": dir, "subPath": "one/deep"})
        ),
        ""
    );
    assert_eq!(
        env.create("s2", json!({"type": "host", "path": dir, "subPath": "two"})),
        ""
    );
    let m1 = env.mount("s1", "a").unwrap();
    let m2 = env.mount("s2", "b").unwrap();
    fs::write(m1.join("f1"), b"1").unwrap();
    fs::write(m2.join("f2"), b"2").unwrap();
    assert!(dir.join("one/deep/f1").exists());
    assert!(dir.join("two/f2").exists());
    assert!(!m1.join("f2").exists() && !m2.join("f1").exists());
    assert_eq!(env.unmount("s1", "a"), "");
    assert_eq!(env.unmount("s2", "b"), "");
}

#[test]
fn allow_list_escapes_are_refused_with_sentences() {
    let env = Env::new();
    let outside = env.base.path().join("allowed-sibling");
    fs::create_dir_all(&outside).unwrap();
    symlink(&outside, env.allowed.join("escape")).unwrap();

    let e = env.create("p", json!({"type": "host", "path": outside}));
    assert!(e.contains("outside the allowed host paths"), "{e}");
    let e = env.create(
        "l",
        json!({"type": "host", "path": env.allowed.join("escape")}),
    );
    assert!(e.contains("outside the allowed host paths"), "{e}");
    let e = env.create(
        "d",
        json!({"type": "host", "path": format!("{}/../allowed-sibling", env.allowed.display())}),
    );
    assert!(e.contains("normalised"), "{e}");
    let e = env.create(
        "s",
        json!({"type": "host", "path": env.allowed, "subPath": "../x"}),
    );
    assert!(e.contains("`subPath`"), "{e}");
    let e = env.create(
        "a",
        json!({"type": "host", "path": env.allowed, "subPath": "/etc"}),
    );
    assert!(e.contains("`subPath`"), "{e}");

    // A subPath symlink planted after Create is refused at Mount.
    assert_eq!(
        env.create(
            "late",
            json!({"type": "host", "path": env.allowed, "subPath": "later"})
        ),
        ""
    );
    symlink(&outside, env.allowed.join("later")).unwrap();
    let e = env.mount("late", "x").unwrap_err();
    assert!(e.contains("symlink or not a directory"), "{e}");
    assert_eq!(env.get("late").body["Volume"]["Status"]["mounts"], 0);

    // Nothing was created outside.
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn option_errors_name_the_option_and_what_is_accepted() {
    let env = Env::new();
    let e = env.create(
        "u",
        json!({"type": "host", "path": env.allowed, "bukket": "b"}),
    );
    assert!(
        e.contains("`bukket`") && e.contains("accepted options"),
        "{e}"
    );
    let e = env.create("t", json!({"type": "s3"}));
    assert!(e.contains("`bucket` is required"), "{e}");
    let e = env.create("p", json!({"type": "pvc"}));
    assert!(e.contains("`claimName` is required for type=pvc"), "{e}");
    let e = env.create(
        "n",
        json!({"type": "host", "path": env.allowed.join("missing")}),
    );
    assert!(e.contains("does not exist"), "{e}");
    let e = env.create("", json!({"type": "host", "path": env.allowed}));
    assert!(e.contains("name is empty"), "{e}");
    // None of the failures left a volume behind.
    let r = call(env.socket(), "VolumeDriver.List", "{}");
    assert_eq!(r.body["Volumes"], json!([]));
}

/// Least privilege: a plugin left without the Engine API socket (the
/// managed plugin's docker-socket mount pointed at /dev/null) and with a
/// narrowed view of the host. A pvc volume whose claim is Docker's gets
/// one sentence at Mount, one claiming a volume of the plugin still works;
/// a host path outside the narrowed view gets its own sentence, one under
/// it works.
#[test]
fn a_plugin_without_the_engine_api_and_with_a_narrowed_host_view() {
    require!(Root);
    let base = tempfile::tempdir().unwrap();
    let host = fs::canonicalize(base.path()).unwrap().join("host-view");
    fs::create_dir_all(host.join("team/data")).unwrap();
    let plugin = Plugin::start_with(
        &base.path().join("s.sock"),
        base.path(),
        &[PathBuf::from("/srv/sandboxes/team")],
        &[
            "--docker-socket",
            "/dev/null",
            "--host-root",
            host.to_str().unwrap(),
            "--host-root-path",
            "/srv/sandboxes",
        ],
    );
    let create = |name: &str, opts: serde_json::Value| {
        err_of(&call(
            &plugin.socket,
            "VolumeDriver.Create",
            &json!({"Name": name, "Opts": opts}).to_string(),
        ))
    };
    let mount = |name: &str| {
        call(
            &plugin.socket,
            "VolumeDriver.Mount",
            &json!({"Name": name, "ID": "c1"}).to_string(),
        )
    };
    let unmount = |name: &str| {
        call(
            &plugin.socket,
            "VolumeDriver.Unmount",
            &json!({"Name": name, "ID": "c1"}).to_string(),
        )
    };

    assert_eq!(
        create(
            "docker-claim",
            json!({"type": "pvc", "claimName": "team-data"})
        ),
        ""
    );
    let e = err_of(&mount("docker-claim"));
    assert!(
        e.contains("needs the Docker Engine API") && e.contains("/dev/null"),
        "{e}"
    );

    let e = create("outside", json!({"type": "host", "path": "/etc"}));
    assert!(
        e.contains("outside the part of the host this plugin sees"),
        "{e}"
    );

    assert_eq!(
        create(
            "team",
            json!({"type": "host", "path": "/srv/sandboxes/team/data"})
        ),
        ""
    );
    assert_eq!(
        create("own-claim", json!({"type": "pvc", "claimName": "team"})),
        ""
    );
    let r = mount("own-claim");
    assert_eq!(err_of(&r), "");
    let mountpoint = PathBuf::from(r.body["Mountpoint"].as_str().unwrap());
    fs::write(mountpoint.join("hello"), b"through the claim").unwrap();
    assert_eq!(
        fs::read(host.join("team/data/hello")).unwrap(),
        b"through the claim"
    );
    assert_eq!(err_of(&unmount("own-claim")), "");
    unmount_all_under(&plugin.mount_root);
}

#[test]
fn recreate_is_idempotent_but_conflicting_options_fail() {
    let env = Env::new();
    let dir = env.host_dir("re");
    assert_eq!(env.create("re", json!({"type": "host", "path": dir})), "");
    assert_eq!(env.create("re", json!({"Type": "host", "Path": dir})), "");
    let e = env.create(
        "re",
        json!({"type": "host", "path": dir, "readOnly": "true"}),
    );
    assert!(e.contains("already exists with different options"), "{e}");
}

#[test]
fn hostile_names_stay_inside_the_plugins_directories() {
    require!(Root);
    let env = Env::new();
    let dir = env.host_dir("names");
    for name in ["../../escape", "a/b", "..", "x y"] {
        assert_eq!(
            env.create(name, json!({"type": "host", "path": dir})),
            "",
            "{name}"
        );
        let mp = env.mount(name, "id").unwrap();
        assert_eq!(
            mp.parent().unwrap(),
            env.plugin.mount_root,
            "{name} -> {mp:?}"
        );
        assert_eq!(env.unmount(name, "id"), "");
    }
    let files: Vec<_> = fs::read_dir(env.plugin.state_dir.join("volumes"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 4);
    assert!(!env.base.path().join("escape.json").exists());
    let r = call(env.socket(), "VolumeDriver.List", "{}");
    assert_eq!(r.body["Volumes"].as_array().unwrap().len(), 4);
}

#[test]
fn host_volumes_are_refused_when_no_prefix_is_allowed() {
    let base = tempfile::tempdir().unwrap();
    let plugin = Plugin::start(&base.path().join("s.sock"), base.path(), &[]);
    let r = call(
        &plugin.socket,
        "VolumeDriver.Create",
        &json!({"Name": "h", "Opts": {"type": "host", "path": "/tmp"}}).to_string(),
    );
    let e = err_of(&r);
    assert!(e.contains("--allowed-host-paths"), "{e}");
}

#[test]
fn state_survives_sigkill_and_mounts_are_adopted() {
    require!(Root);
    let mut env = Env::new();
    let dir = env.host_dir("persist");
    assert_eq!(env.create("keep", json!({"type": "host", "path": dir})), "");
    assert_eq!(env.create("idle", json!({"type": "host", "path": dir})), "");
    let mp = env.mount("keep", "c1").unwrap();

    env.plugin.kill(); // SIGKILL: no cleanup, the socket file stays behind
    assert!(env.socket().exists(), "a crash leaves a stale socket file");
    env.plugin.restart(); // and the new process replaces it
    assert!(is_mounted(&mp), "the mount outlives the plugin");
    let r = call(env.socket(), "VolumeDriver.List", "{}");
    let names: Vec<&str> = r.body["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["idle", "keep"]);
    let vol = env.get("keep").body["Volume"].clone();
    assert_eq!(vol["Mountpoint"], json!(mp));
    assert_eq!(vol["Status"]["mounts"], 1);

    // The adopted refcount still works: a second mount, then both released.
    assert_eq!(env.mount("keep", "c2").unwrap(), mp);
    assert_eq!(env.unmount("keep", "c1"), "");
    assert!(is_mounted(&mp));
    assert_eq!(env.unmount("keep", "c2"), "");
    assert!(!is_mounted(&mp));
}

#[test]
fn stale_mount_ids_are_dropped_when_nothing_is_mounted() {
    require!(Root);
    // What a host reboot looks like: IDs recorded, mount table empty.
    let mut env = Env::new();
    let dir = env.host_dir("reboot");
    assert_eq!(env.create("rb", json!({"type": "host", "path": dir})), "");
    let mp = env.mount("rb", "old").unwrap();
    env.plugin.kill();
    common::unmount_all_under(&env.plugin.mount_root);
    env.plugin.restart();
    assert_eq!(env.get("rb").body["Volume"]["Status"]["mounts"], 0);
    assert!(!is_mounted(&mp));
    assert_eq!(
        err_of(&call(
            env.socket(),
            "VolumeDriver.Remove",
            r#"{"Name":"rb"}"#
        )),
        ""
    );
}

#[test]
fn a_live_socket_is_not_taken_over_and_sigterm_removes_the_socket() {
    let mut env = Env::new();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--socket"])
        .arg(env.socket())
        .arg("--state-dir")
        .arg(env.base.path().join("other-state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already serving"), "{stderr}");

    let status = env.plugin.terminate();
    assert!(status.success(), "{status}");
    assert!(!env.socket().exists(), "socket removed on SIGTERM");
}

#[test]
fn concurrent_mounts_and_unmounts_balance_out() {
    require!(Root);
    let env = Env::new();
    let dir = env.host_dir("conc");
    for v in ["c0", "c1"] {
        assert_eq!(env.create(v, json!({"type": "host", "path": dir})), "");
    }
    std::thread::scope(|s| {
        for t in 0..16 {
            let env = &env;
            s.spawn(move || {
                let vol = if t % 2 == 0 { "c0" } else { "c1" };
                for i in 0..10 {
                    let id = format!("t{t}-{i}");
                    env.mount(vol, &id).unwrap();
                    // A List in the middle must never block or fail.
                    let r = call(env.socket(), "VolumeDriver.List", "{}");
                    assert_eq!(r.status, 200);
                    assert_eq!(env.unmount(vol, &id), "");
                }
            });
        }
    });
    for v in ["c0", "c1"] {
        assert_eq!(env.get(v).body["Volume"]["Status"]["mounts"], 0);
    }
    assert!(!is_mounted(&env.plugin.mount_root.join("c0")));
    assert!(!is_mounted(&env.plugin.mount_root.join("c1")));
}

#[test]
fn help_documents_every_setting_and_its_variable() {
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--socket",
        "OSV_SOCKET",
        "--state-dir",
        "OSV_STATE_DIR",
        "--mount-root",
        "OSV_MOUNT_ROOT",
        "--allowed-host-paths",
        "OSV_ALLOWED_HOST_PATHS",
        "--log-level",
        "OSV_LOG_LEVEL",
    ] {
        assert!(help.contains(needle), "missing {needle} in:\n{help}");
    }
    // The README's settings table must list the same flags and variables.
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for line in help.lines().map(str::trim) {
        if let Some(flag) = line
            .strip_prefix("--")
            .and_then(|l| l.split([' ', '=']).next())
            && !["help", "version"].contains(&flag)
        {
            assert!(
                readme.contains(&format!("`--{flag}")),
                "README lacks --{flag}"
            );
        }
        if let Some(var) = line
            .split("[env: ")
            .nth(1)
            .and_then(|v| v.split('=').next())
        {
            assert!(readme.contains(var), "README lacks {var}");
        }
    }
}

#[test]
fn the_socket_is_for_root_only() {
    require!(Root);
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new();
    let meta = std::fs::metadata(env.socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0, "owned by root (the plugin runs as root)");
}
