//! scripts/check-leftovers.sh (the test command's last check) shown failing:
//! a throwaway plugin is left on purpose, the script must exit non-zero and
//! name it on a line of its own, and the plugin is removed again (also when
//! an assertion fails).

use crate::common;

use common::docker::{docker, docker_ok};
use std::fs;
use std::path::Path;
use std::process::Command;

/// The probe's name: osvtest*, as the script looks for the tests' plugins.
const PROBE: &str = "osvtest-leak-probe";

/// Removes the probe plugin when dropped.
struct Probe;

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = docker(&["plugin", "rm", "-f", PROBE]);
    }
}

#[test]
fn the_leftovers_check_fails_on_a_leaked_plugin_and_names_it() {
    require!(Root, Dockerd);
    let _turn = common::docker::turn();
    // A disabled plugin from an empty rootfs: never started, only listed.
    let dir = tempfile::Builder::new()
        .prefix("osvtest-leak-probe-")
        .tempdir()
        .unwrap();
    fs::create_dir(dir.path().join("rootfs")).unwrap();
    fs::write(
        dir.path().join("config.json"),
        r#"{"description":"osvtest leak probe (never enabled)","documentation":"https://example.invalid","entrypoint":["/probe"],"interface":{"types":["docker.volumedriver/1.0"],"socket":"probe.sock"},"network":{"type":"host"}}"#,
    )
    .unwrap();
    let _ = docker(&["plugin", "rm", "-f", PROBE]); // from an interrupted run
    let probe = Probe;
    docker_ok(&["plugin", "create", PROBE, dir.path().to_str().unwrap()]);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-leftovers.sh");
    let out = Command::new(&script)
        .env("OSV_LEFTOVERS_WAIT", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("leftover: plugin {PROBE}:latest "))),
        "the probe is not named:\n{stdout}"
    );

    drop(probe);
    let listed = docker_ok(&["plugin", "ls", "--format", "{{.Name}}"]);
    assert!(
        !listed.contains(PROBE),
        "the probe is still there: {listed}"
    );
}
