//! The Prometheus text exposition format (version 0.0.4) of a [`Report`]:
//! a pure function from what the state directory says about each volume
//! (and the daemon's count of mount process restarts) to the text the
//! metrics endpoint serves. docs/METRICS.md lists every series.
//!
//! Label sets are small and fixed: `volume` (the volume's name), and for
//! some series one of objectfs's fixed names (a FUSE operation, an S3
//! call, an outcome), a mount state or `clean`/`dirty`. A name a status
//! file carries that this binary does not know is left out rather than
//! turned into a new label value, so no file can grow the label sets (and
//! no object key is ever a label).

use crate::report::{MountState, Report, VolumeReport, age};
use objectfs::metrics::{FuseOp, Outcome, StoreOp};
use objectfs::status::MountStatus;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family being written: its header once, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Starts family `name` of `kind` (counter, gauge, histogram).
fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> Family<'a> {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    Family { out }
}

/// A label value as the text format quotes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Microseconds as seconds, as the text format writes a float.
fn seconds_of_us(us: u64) -> String {
    format!("{}", us as f64 / 1e6)
}

/// The object volumes whose mount process reported, with what it said.
fn reporting(report: &Report) -> impl Iterator<Item = (&VolumeReport, &MountStatus)> {
    report
        .volumes
        .iter()
        .filter_map(|v| v.reported.as_ref().map(|s| (v, s)))
}

/// Renders `report`; `restarts` holds per volume the mount processes the
/// daemon started again after one died.
pub fn render(report: &Report, restarts: &BTreeMap<String, u64>) -> String {
    let mut out = String::new();
    let now = report.taken_at;

    let mut f = family(
        &mut out,
        "osv_volume_state",
        "gauge",
        "1 for the state the volume's mount is in (for object volumes, its mount process's), 0 for the others.",
    );
    for v in &report.volumes {
        for state in MountState::ALL {
            let labels = [
                ("volume", v.name.as_str()),
                ("type", v.type_name),
                ("state", state.label()),
            ];
            f.sample("osv_volume_state", &labels, u8::from(v.state == state));
        }
    }

    let mut f = family(
        &mut out,
        "osv_volume_containers",
        "gauge",
        "Container mounts of the volume the registry holds (Docker mount IDs, repeats counted).",
    );
    for v in &report.volumes {
        f.sample("osv_volume_containers", &[("volume", &v.name)], v.mounts);
    }

    let mut f = family(
        &mut out,
        "osv_mount_process_restarts_total",
        "counter",
        "Mount processes this daemon started again because the one serving the volume's containers had died, since the daemon started.",
    );
    for v in report.volumes.iter().filter(|v| v.is_object()) {
        let n = restarts.get(&v.name).copied().unwrap_or(0);
        f.sample(
            "osv_mount_process_restarts_total",
            &[("volume", &v.name)],
            n,
        );
    }

    let mut f = family(
        &mut out,
        "osv_fuse_requests_total",
        "counter",
        "Kernel (FUSE) requests the mount process answered, by operation.",
    );
    for (v, s) in reporting(report) {
        for (op, n) in &s.metrics.fuse_ops {
            if FuseOp::NAMES.contains(&op.as_str()) {
                f.sample(
                    "osv_fuse_requests_total",
                    &[("volume", &v.name), ("op", op)],
                    n,
                );
            }
        }
    }

    let mut f = family(
        &mut out,
        "osv_store_requests_total",
        "counter",
        "Object store requests by S3 call and outcome (retries counted one by one).",
    );
    for (v, s) in reporting(report) {
        for (op, outcomes) in &s.metrics.store_requests {
            if !StoreOp::NAMES.contains(&op.as_str()) {
                continue;
            }
            for (outcome, n) in outcomes {
                if Outcome::NAMES.contains(&outcome.as_str()) {
                    let labels = [
                        ("volume", v.name.as_str()),
                        ("op", op),
                        ("outcome", outcome),
                    ];
                    f.sample("osv_store_requests_total", &labels, n);
                }
            }
        }
    }

    let name = "osv_store_request_duration_seconds";
    let mut f = family(
        &mut out,
        name,
        "histogram",
        "Object store request latency by S3 call, all outcomes.",
    );
    for (v, s) in reporting(report) {
        let bounds = &s.metrics.latency_bounds_us;
        for (op, h) in &s.metrics.store_latency {
            if !StoreOp::NAMES.contains(&op.as_str()) || h.buckets.len() != bounds.len() + 1 {
                continue;
            }
            let mut cumulative = 0;
            for (bound, n) in bounds.iter().zip(&h.buckets) {
                cumulative += n;
                let le = seconds_of_us(*bound);
                let labels = [("volume", v.name.as_str()), ("op", op), ("le", &le)];
                f.sample(&format!("{name}_bucket"), &labels, cumulative);
            }
            let labels = [("volume", v.name.as_str()), ("op", op), ("le", "+Inf")];
            f.sample(&format!("{name}_bucket"), &labels, h.count);
            let labels = [("volume", v.name.as_str()), ("op", op.as_str())];
            f.sample(&format!("{name}_sum"), &labels, seconds_of_us(h.sum_us));
            f.sample(&format!("{name}_count"), &labels, h.count);
        }
    }

    type Field = fn(&MountStatus) -> u64;
    let simple: [(&str, &str, &str, Field); 7] = [
        (
            "osv_store_read_bytes_total",
            "counter",
            "Object data received from the store (GET bodies).",
            |s| s.metrics.store_bytes_read,
        ),
        (
            "osv_store_written_bytes_total",
            "counter",
            "Object data sent to the store (PUT and part bodies).",
            |s| s.metrics.store_bytes_written,
        ),
        (
            "osv_upload_queue_files",
            "gauge",
            "Files with data or attributes not in the bucket yet.",
            |s| s.pending_files as u64,
        ),
        (
            "osv_upload_queue_bytes",
            "gauge",
            "Bytes of files not in the bucket yet.",
            |s| s.pending_bytes,
        ),
        (
            "osv_upload_queue_changes",
            "gauge",
            "Namespace changes (mkdir, unlink, rename, chmod, ...) not in the bucket yet.",
            |s| s.pending_changes as u64,
        ),
        (
            "osv_passthrough_opens_total",
            "counter",
            "Opens the kernel served from the local copy itself (FUSE passthrough).",
            |s| s.passthrough_opens,
        ),
        (
            "osv_store_failing",
            "gauge",
            "1 while uploads and namespace changes fail (they stay queued), else 0.",
            |s| u64::from(s.store_error.is_some()),
        ),
    ];
    for (name, kind, help, field) in simple {
        let mut f = family(&mut out, name, kind, help);
        for (v, s) in reporting(report) {
            f.sample(name, &[("volume", &v.name)], field(s));
        }
    }

    let name = "osv_upload_oldest_pending_seconds";
    let mut f = family(
        &mut out,
        name,
        "gauge",
        "How long the oldest change not in the bucket (file data or a name) has waited; 0 when none waits.",
    );
    for (v, s) in reporting(report) {
        let waited = age(s.oldest_pending_since.as_deref(), now).unwrap_or_default();
        f.sample(name, &[("volume", &v.name)], waited.as_secs_f64());
    }

    let name = "osv_cache_bytes";
    let mut f = family(
        &mut out,
        name,
        "gauge",
        "File data in the mount's cache directory: dirty (not in the bucket yet, never evicted) and clean.",
    );
    for (v, s) in reporting(report) {
        let dirty = s.cache_dirty_bytes.min(s.cache_bytes);
        let clean = s.cache_bytes - dirty;
        f.sample(name, &[("volume", &v.name), ("state", "clean")], clean);
        f.sample(name, &[("volume", &v.name), ("state", "dirty")], dirty);
    }

    let name = "osv_credentials_expiry_timestamp_seconds";
    let mut f = family(
        &mut out,
        name,
        "gauge",
        "When the keys the mount uses expire (Unix time); only for keys with an expiry.",
    );
    for (v, s) in reporting(report) {
        let expiry = s
            .credentials
            .as_ref()
            .and_then(|c| c.expires_at.as_deref())
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        if let Some(at) = expiry {
            f.sample(name, &[("volume", &v.name)], at.as_secs());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use objectfs::metrics::{HistogramSnapshot, LATENCY_BOUNDS_US};
    use std::path::PathBuf;
    use std::time::SystemTime;

    fn status() -> MountStatus {
        serde_json::from_value(serde_json::json!({
            "pid": 9, "state": "mounted", "pendingBytes": 300, "pendingFiles": 2,
            "pendingChanges": 1, "cacheBytes": 1000, "cacheDirtyBytes": 300,
            "oldestPendingSince": "2026-01-01T00:00:00Z",
            "storeError": "connection refused", "storeErrorSince": "2026-01-01T00:00:00Z",
            "credentials": {"source": "profile team-a", "expiresAt": "2026-01-01T01:00:00Z"},
        }))
        .unwrap()
    }

    fn report() -> Report {
        let mut s = status();
        let m = &mut s.metrics;
        m.fuse_ops.insert("write".into(), 5);
        m.fuse_ops.insert("not-an-op".into(), 1);
        m.store_requests.insert(
            "PutObject".into(),
            BTreeMap::from([("ok".into(), 4), ("transient".into(), 1), ("odd".into(), 3)]),
        );
        m.store_requests
            .insert("SomeKey/xyz".into(), BTreeMap::from([("ok".into(), 1)]));
        let mut buckets = vec![0; LATENCY_BOUNDS_US.len() + 1];
        buckets[0] = 2;
        buckets[3] = 2;
        buckets[LATENCY_BOUNDS_US.len()] = 1;
        m.store_latency.insert(
            "PutObject".into(),
            HistogramSnapshot {
                count: 5,
                sum_us: 31_250_000,
                buckets,
            },
        );
        m.latency_bounds_us = LATENCY_BOUNDS_US.to_vec();
        m.store_bytes_written = 4096;
        let object = VolumeReport {
            name: "data \"x\"\\y".into(),
            type_name: "s3",
            mount_ids: vec!["c1".into()],
            mounts: 1,
            state: MountState::Mounted,
            credentials: Some("profile team-a".into()),
            reported: Some(s),
        };
        let host = VolumeReport {
            name: "work".into(),
            type_name: "host",
            mount_ids: vec![],
            mounts: 0,
            state: MountState::NotMounted,
            credentials: None,
            reported: None,
        };
        Report {
            state_dir: PathBuf::from("/state"),
            taken_at: humantime::parse_rfc3339("2026-01-01T00:00:30Z").unwrap(),
            volumes: vec![object, host],
            unreadable: vec![],
            removed_with_data: vec![],
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn every_series_of_a_report() {
        let text = render(
            &report(),
            &BTreeMap::from([(r#"data "x"\y"#.to_string(), 2)]),
        );
        let v = r#"volume="data \"x\"\\y""#;
        let samples = lines(&text);
        for want in [
            format!(r#"osv_volume_state{{{v},type="s3",state="mounted"}} 1"#),
            format!(r#"osv_volume_state{{{v},type="s3",state="failed"}} 0"#),
            r#"osv_volume_state{volume="work",type="host",state="not_mounted"} 1"#.into(),
            format!("osv_volume_containers{{{v}}} 1"),
            r#"osv_volume_containers{volume="work"} 0"#.into(),
            format!("osv_mount_process_restarts_total{{{v}}} 2"),
            format!(r#"osv_fuse_requests_total{{{v},op="write"}} 5"#),
            format!(r#"osv_store_requests_total{{{v},op="PutObject",outcome="ok"}} 4"#),
            format!(r#"osv_store_requests_total{{{v},op="PutObject",outcome="transient"}} 1"#),
            format!(
                r#"osv_store_request_duration_seconds_bucket{{{v},op="PutObject",le="0.005"}} 2"#
            ),
            format!(
                r#"osv_store_request_duration_seconds_bucket{{{v},op="PutObject",le="0.025"}} 2"#
            ),
            format!(
                r#"osv_store_request_duration_seconds_bucket{{{v},op="PutObject",le="0.05"}} 4"#
            ),
            format!(r#"osv_store_request_duration_seconds_bucket{{{v},op="PutObject",le="30"}} 4"#),
            format!(
                r#"osv_store_request_duration_seconds_bucket{{{v},op="PutObject",le="+Inf"}} 5"#
            ),
            format!(r#"osv_store_request_duration_seconds_sum{{{v},op="PutObject"}} 31.25"#),
            format!(r#"osv_store_request_duration_seconds_count{{{v},op="PutObject"}} 5"#),
            format!("osv_store_written_bytes_total{{{v}}} 4096"),
            format!("osv_store_read_bytes_total{{{v}}} 0"),
            format!("osv_upload_queue_files{{{v}}} 2"),
            format!("osv_upload_queue_bytes{{{v}}} 300"),
            format!("osv_upload_queue_changes{{{v}}} 1"),
            format!("osv_upload_oldest_pending_seconds{{{v}}} 30"),
            format!(r#"osv_cache_bytes{{{v},state="clean"}} 700"#),
            format!(r#"osv_cache_bytes{{{v},state="dirty"}} 300"#),
            format!("osv_store_failing{{{v}}} 1"),
            format!("osv_credentials_expiry_timestamp_seconds{{{v}}} 1767229200"),
        ] {
            assert!(samples.contains(&want.as_str()), "no {want} in\n{text}");
        }
        // Names this binary does not know never become label values, and
        // a volume without a mount process has only the registry's series.
        assert!(!text.contains("not-an-op") && !text.contains("SomeKey") && !text.contains("odd"));
        assert!(!text.contains(r#"osv_upload_queue_bytes{volume="work"}"#));
        assert!(!text.contains(r#"osv_mount_process_restarts_total{volume="work"}"#));
    }

    /// Every family has its HELP and TYPE once, before its samples, and
    /// the samples of a family are together (what the format requires).
    #[test]
    fn families_are_declared_once_and_kept_together() {
        let text = render(&report(), &BTreeMap::new());
        let mut seen: Vec<String> = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(!seen.contains(&name), "{name} declared twice");
                seen.push(name.clone());
                current = name;
            } else if !line.starts_with('#') {
                let metric = line.split(['{', ' ']).next().unwrap();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| metric.strip_suffix(s).filter(|b| *b == current))
                    .unwrap_or(metric);
                assert_eq!(base, current, "{line} outside its family");
            }
        }
        assert_eq!(seen.len(), 16, "{seen:?}");
        // The help precedes the type of every family.
        assert_eq!(text.matches("# HELP ").count(), seen.len());
    }

    /// docs/METRICS.md has a row for every family, with its type.
    #[test]
    fn the_metrics_doc_lists_every_series() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/METRICS.md"))
            .unwrap();
        let text = render(&report(), &BTreeMap::new());
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                let row = format!("| `{name}` | {kind} |");
                assert!(doc.contains(&row), "docs/METRICS.md lacks the row {row} …");
            }
        }
    }

    #[test]
    fn an_empty_registry_is_headers_only_and_no_wait_reads_zero() {
        let empty = Report {
            state_dir: PathBuf::from("/s"),
            taken_at: SystemTime::now(),
            volumes: vec![],
            unreadable: vec![],
            removed_with_data: vec![],
        };
        assert!(lines(&render(&empty, &BTreeMap::new())).is_empty());
        let mut r = report();
        let s = r.volumes[0].reported.as_mut().unwrap();
        s.oldest_pending_since = None;
        s.credentials = None;
        let text = render(&r, &BTreeMap::new());
        assert!(
            text.contains("osv_upload_oldest_pending_seconds{volume=\"data \\\"x\\\"\\\\y\"} 0\n")
        );
        assert!(
            !lines(&text)
                .iter()
                .any(|l| l.starts_with("osv_credentials_expiry"))
        );
    }
}
