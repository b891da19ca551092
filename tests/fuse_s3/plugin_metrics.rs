//! The operator's view (issue 17): a plugin daemon of its own (on a
//! private socket, driven as dockerd would: tests/common/plugin_volume.rs)
//! serves Prometheus metrics (`serve --metrics-addr`) of an s3 volume on
//! moto, behind the fault proxy. After a known workload (five files written
//! and fsynced, an object another client wrote read back) the scraped text
//! has the expected series and values, `promtool check metrics` finds
//! nothing to say, and a real Prometheus server scraping the daemon every
//! second sees the target up and the same values. `opensandbox-volume
//! status` reads the same daemon's state directory: the volume mounted
//! with nothing pending (exit status 0); while the store refuses the
//! mount's requests (the proxy answers 403, as for revoked keys) the
//! failure, the waiting data and exit status 1; once it takes them again,
//! healthy again. A mount process killed under its container is `failed`
//! at once, and the next container's Mount starts a new one, counted in
//! `osv_mount_process_restarts_total`.

use crate::common;

use common::fault_proxy::{FaultProxy, Mode};
use common::objectfs_mount::Bucket;
use common::plugin_volume::PluginVolume;
use common::prometheus::{Prometheus, http_get, promtool_check_metrics};
use common::s3server::{free_port, moto};
use common::{BIN, wait_for_within};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

const FILES: usize = 5;
const SIZE: usize = 10_000;
/// Bound for the status file (rewritten each second) and the scrapes to
/// show what happened: a hung process's bound, not a speed check.
const SETTLE: Duration = Duration::from_secs(30);

/// One sample of the text format: the metric's name and labels.
type Series = (String, BTreeMap<String, String>);

/// The samples of a scraped text (no escapes in this test's label values).
fn parse(text: &str) -> Vec<(Series, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let labels = inner
                        .split("\",")
                        .map(|kv| {
                            let (k, v) = kv.split_once("=\"").expect("label");
                            (k.to_string(), v.trim_end_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (series.to_string(), BTreeMap::new()),
            };
            ((name, labels), value.parse().expect("a number"))
        })
        .collect()
}

/// The value of the sample `name` with exactly `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse(text)
        .into_iter()
        .find(|((n, l), _)| n == name && *l == want)
        .map(|(_, v)| v)
}

fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http_get(addr, "/metrics").expect("the metrics endpoint answers");
    assert_eq!(status, 200, "{body}");
    body
}

/// `opensandbox-volume status --json` of `state_dir`: exit status and JSON.
pub(crate) fn status_json(state_dir: &std::path::Path, extra: &[&str]) -> (i32, Value) {
    let out = std::process::Command::new(BIN)
        .args(["status", "--json", "--state-dir"])
        .arg(state_dir)
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "status --json printed no JSON ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().expect("exited"), json)
}

#[test]
fn metrics_and_status_show_a_known_workload_and_a_failing_store() {
    require!(Root, Fuse, Moto, Prometheus);
    let config = moto().new_bucket("metrics");
    let bucket = Bucket::new(&config);
    let proxy = FaultProxy::start(moto().addr);
    let metrics: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let name = format!("metrics-{}", std::process::id());
    let v = name.as_str();
    let mut vol = PluginVolume::with_serve_flags(v, &["--metrics-addr", &metrics.to_string()]);
    // An object another client wrote: reading it through the mount is a GET.
    let other = vec![b'o'; 70_000];
    bucket.put("other.bin", &other);
    vol.create_and_mount(json!({
        "type": "s3",
        "bucket": config.bucket,
        "endpoint": proxy.endpoint(),
        "region": "us-east-1",
        "accessKeyId": "test",
        "accessKeySecret": "test",
    }));

    // The workload: five files, each fsynced (in the bucket when that
    // returns), and the other client's object read back.
    for i in 0..FILES {
        let mut f = fs::File::create(vol.path(&format!("f{i}.txt"))).unwrap();
        f.write_all(&vec![b'a' + i as u8; SIZE]).unwrap();
        f.sync_all().unwrap();
    }
    assert_eq!(fs::read(vol.path("other.bin")).unwrap(), other);

    let at_least = |text: &str, name: &str, labels: &[(&str, &str)], min: f64| {
        sample(text, name, labels).is_some_and(|n| n >= min)
    };
    let mut text = String::new();
    wait_for_within("the scrape to show the workload", SETTLE, || {
        text = scrape(metrics);
        at_least(
            &text,
            "osv_store_requests_total",
            &[("volume", v), ("op", "PutObject"), ("outcome", "ok")],
            FILES as f64,
        ) && at_least(
            &text,
            "osv_store_read_bytes_total",
            &[("volume", v)],
            other.len() as f64,
        ) && sample(&text, "osv_upload_queue_bytes", &[("volume", v)]) == Some(0.0)
    });
    let expect = [
        (
            "osv_fuse_requests_total",
            vec![("op", "write")],
            FILES as f64,
        ),
        (
            "osv_fuse_requests_total",
            vec![("op", "fsync")],
            FILES as f64,
        ),
        (
            "osv_store_written_bytes_total",
            vec![],
            (FILES * SIZE) as f64,
        ),
        (
            "osv_store_requests_total",
            vec![("op", "GetObject"), ("outcome", "ok")],
            1.0,
        ),
        (
            "osv_store_request_duration_seconds_count",
            vec![("op", "PutObject")],
            FILES as f64,
        ),
        (
            "osv_store_request_duration_seconds_bucket",
            vec![("op", "PutObject"), ("le", "+Inf")],
            FILES as f64,
        ),
        (
            "osv_volume_state",
            vec![("type", "s3"), ("state", "mounted")],
            1.0,
        ),
        ("osv_volume_containers", vec![], 1.0),
    ];
    for (metric, labels, min) in &expect {
        let mut labels = labels.clone();
        labels.insert(0, ("volume", v));
        assert!(
            at_least(&text, metric, &labels, *min),
            "{metric}{labels:?} < {min} in\n{text}"
        );
    }
    for (metric, labels) in [
        ("osv_upload_queue_files", vec![]),
        ("osv_upload_queue_changes", vec![]),
        ("osv_upload_oldest_pending_seconds", vec![]),
        ("osv_store_failing", vec![]),
        ("osv_cache_bytes", vec![("state", "dirty")]),
        ("osv_mount_process_restarts_total", vec![]),
        (
            "osv_volume_state",
            vec![("type", "s3"), ("state", "failed")],
        ),
    ] {
        let mut labels = labels;
        labels.insert(0, ("volume", v));
        assert_eq!(
            sample(&text, metric, &labels),
            Some(0.0),
            "{metric}{labels:?} in\n{text}"
        );
    }
    // No series names an object key.
    assert!(
        !text.contains("f0.txt") && !text.contains("other.bin"),
        "{text}"
    );
    let (clean, said) = promtool_check_metrics(&text);
    assert!(clean, "promtool check metrics:\n{said}\non\n{text}");

    // A real Prometheus scraping the daemon every second.
    let prometheus = Prometheus::start("osv", metrics);
    let put_ok = format!(r#"osv_store_requests_total{{volume="{v}",op="PutObject",outcome="ok"}}"#);
    let writes = format!(r#"osv_fuse_requests_total{{volume="{v}",op="write"}}"#);
    wait_for_within(
        "Prometheus to scrape the daemon",
        Duration::from_secs(60),
        || {
            prometheus.value(r#"up{job="osv"}"#) == Some(1.0)
                && prometheus.value(&put_ok).is_some_and(|n| n >= FILES as f64)
                && prometheus.value(&writes).is_some_and(|n| n >= FILES as f64)
        },
    );

    // `status` on the same state directory: mounted, nothing waiting.
    let (code, report) = status_json(vol.state_dir(), &[]);
    assert_eq!(code, 0, "{report:#}");
    let [volume] = report["volumes"].as_array().unwrap().as_slice() else {
        panic!("one volume: {report:#}")
    };
    assert_eq!(volume["name"], v);
    assert_eq!(volume["type"], "s3");
    assert_eq!(volume["state"], "mounted");
    assert_eq!(volume["containers"], 1);
    assert_eq!(volume["pid"], vol.mount_pid());
    assert_eq!(
        (
            volume["pendingBytes"].as_u64(),
            volume["pendingFiles"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(volume["credentials"]["source"], "inline keys (hidden)");
    assert!(
        volume["requestsLastMinute"].as_u64() >= Some(FILES as u64),
        "{volume:#}"
    );
    assert_eq!(report["healthy"], true);

    // The store refuses the mount's requests. The file is created while it
    // answers (a new name is looked up there), its data written after.
    let mut late = fs::File::create(vol.path("late.txt")).unwrap();
    proxy.set(Mode::ServerError(403));
    late.write_all(b"written while the store refuses").unwrap();
    drop(late);
    let mut failing = Value::Null;
    wait_for_within("status to report the failing store", SETTLE, || {
        let (code, report) = status_json(vol.state_dir(), &["--max-pending-age", "1"]);
        failing = report;
        let problems = failing["problems"].to_string();
        code == 1
            && problems.contains("the store fails since")
            && problems.contains("data has waited")
    });
    let volume = &failing["volumes"][0];
    assert_eq!(volume["state"], "mounted", "{failing:#}");
    assert!(
        volume["storeError"]
            .as_str()
            .unwrap()
            .contains("AccessDenied"),
        "{failing:#}"
    );
    assert!(volume["storeErrorSince"].as_str().unwrap().ends_with('Z'));
    assert!(volume["pendingFiles"].as_u64() >= Some(1), "{failing:#}");
    assert!(
        volume["errorsLastMinute"].as_u64() >= Some(1),
        "{failing:#}"
    );
    assert_eq!(failing["healthy"], false);
    // The table says it too, with the same exit status.
    let out = std::process::Command::new(BIN)
        .args(["status", "--state-dir"])
        .arg(vol.state_dir())
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{table}");
    assert!(
        table.starts_with("VOLUME ") && table.contains(&format!("\n{v} ")),
        "{table}"
    );
    assert!(
        table.contains("\nproblems:\n") && table.contains("AccessDenied"),
        "{table}"
    );

    let text = scrape(metrics);
    assert_eq!(
        sample(&text, "osv_store_failing", &[("volume", v)]),
        Some(1.0),
        "{text}"
    );
    assert!(
        at_least(
            &text,
            "osv_store_requests_total",
            &[
                ("volume", v),
                ("op", "PutObject"),
                ("outcome", "access_denied")
            ],
            1.0
        ),
        "{text}"
    );
    assert!(
        at_least(&text, "osv_upload_queue_files", &[("volume", v)], 1.0),
        "{text}"
    );
    assert!(
        at_least(
            &text,
            "osv_upload_oldest_pending_seconds",
            &[("volume", v)],
            1.0
        ),
        "{text}"
    );
    let (clean, said) = promtool_check_metrics(&text);
    assert!(clean, "promtool check metrics:\n{said}\non\n{text}");
    let store_failing = format!(r#"osv_store_failing{{volume="{v}"}}"#);
    wait_for_within(
        "Prometheus to see the failing store",
        Duration::from_secs(60),
        || prometheus.value(&store_failing) == Some(1.0),
    );

    // The store takes the requests again: what waited arrives, all clear.
    proxy.set(Mode::Pass);
    wait_for_within(
        "status to be healthy again",
        Duration::from_secs(60),
        || {
            let (code, report) = status_json(vol.state_dir(), &[]);
            code == 0 && report["volumes"][0]["pendingBytes"] == 0
        },
    );
    assert_eq!(
        bucket.get("late.txt").unwrap(),
        b"written while the store refuses"
    );
    drop(prometheus);

    // The mount process dies under its container: failed at once (its pid
    // is dead); the next container's Mount starts a new one, counted.
    let pid = vol.mount_pid();
    // SAFETY: kill(2) of the volume's mount process, as a crash would.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for_within("status to report the dead mount", SETTLE, || {
        let (code, report) = status_json(vol.state_dir(), &[]);
        code == 1 && report["volumes"][0]["state"] == "failed"
    });
    let text = scrape(metrics);
    let state = |text: &str, state: &str| {
        sample(
            text,
            "osv_volume_state",
            &[("volume", v), ("type", "s3"), ("state", state)],
        )
    };
    assert_eq!(state(&text, "failed"), Some(1.0), "{text}");
    assert_eq!(state(&text, "mounted"), Some(0.0), "{text}");
    vol.mount_for("second-container");
    assert_ne!(vol.mount_pid(), pid);
    wait_for_within("the new mount process to report", SETTLE, || {
        let text = scrape(metrics);
        state(&text, "mounted") == Some(1.0)
            && sample(&text, "osv_mount_process_restarts_total", &[("volume", v)]) == Some(1.0)
            && sample(&text, "osv_volume_containers", &[("volume", v)]) == Some(2.0)
    });
    assert_eq!(status_json(vol.state_dir(), &[]).0, 0);
    assert_eq!(fs::read(vol.path("f0.txt")).unwrap(), vec![b'a'; SIZE]);
    vol.unmount_for("second-container");

    vol.unmount_and_remove();
    let (code, report) = status_json(vol.state_dir(), &[]);
    assert_eq!(
        (code, report["volumes"].clone()),
        (0, json!([])),
        "{report:#}"
    );
}
