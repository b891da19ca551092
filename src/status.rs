//! What `opensandbox-volume status` prints (pure): a [`Report`] as a table
//! for people or JSON for programs, and the health verdict its exit status
//! follows: a problem is a volume whose mount failed, a store that fails a
//! mount's uploads, data that has waited for the bucket longer than the
//! threshold, or a registry file the daemon cannot read.

use crate::report::{MountState, Report, VolumeReport, age};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// The exit status when every volume is healthy, when one is not, and
/// when the state directory cannot be read.
pub const EXIT_HEALTHY: i32 = 0;
pub const EXIT_PROBLEM: i32 = 1;
pub const EXIT_UNREADABLE: i32 = 2;

/// One thing wrong: the volume (or registry file) and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub subject: String,
    pub sentence: String,
}

/// `d` for people: `45s`, `3m05s`, `2h10m`, `3d4h`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// `n` bytes for people: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `n` things: `1 file`, `2 files`.
fn count(n: usize, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        n => format!("{n} {thing}s"),
    }
}

/// How long the volume's oldest change has waited for the bucket.
fn oldest_wait(v: &VolumeReport, now: SystemTime) -> Option<Duration> {
    age(v.reported.as_ref()?.oldest_pending_since.as_deref(), now)
}

/// Everything wrong in `report`, given how long data may wait.
pub fn problems(report: &Report, max_pending_age: Duration) -> Vec<Problem> {
    let now = report.taken_at;
    let mut found = Vec::new();
    for v in &report.volumes {
        let mut say = |sentence: String| {
            found.push(Problem {
                subject: v.name.clone(),
                sentence,
            })
        };
        if v.state == MountState::Failed {
            say(match v.mounts {
                0 => "its mount process is gone with data not in the bucket; the next Mount of the volume uploads it".to_string(),
                n => format!(
                    "{n} container mount(s) use it but no mount process serves it (it died, hung or was stopped); the next Mount starts a new one"
                ),
            });
        }
        let running = matches!(
            v.state,
            MountState::Mounted | MountState::Recovering | MountState::Flushing
        );
        if let Some(s) = v.reported.as_ref().filter(|_| running)
            && let Some(error) = &s.store_error
        {
            let since = s.store_error_since.as_deref().unwrap_or("?");
            let ago = age(Some(since), now)
                .map_or(String::new(), |a| format!(" ({} ago)", human_duration(a)));
            say(format!(
                "the store fails since {since}{ago}: {error}; what waits stays queued"
            ));
        }
        // Whole seconds, as the sentence says them.
        if let Some(waited) =
            oldest_wait(v, now).filter(|w| w.as_secs() > max_pending_age.as_secs())
        {
            say(format!(
                "data has waited {} for the bucket, longer than {}",
                human_duration(waited),
                human_duration(max_pending_age)
            ));
        }
    }
    for r in &report.removed_with_data {
        found.push(Problem {
            subject: r.stem.clone(),
            sentence: format!(
                "the volume was removed with {} ({}) and {} not in the bucket, kept in {}; a mount of a volume of this name uploads it (or `opensandbox-volume mount --cache-dir` with its bucket and prefix)",
                count(r.files, "file"),
                human_bytes(r.bytes),
                count(r.changes, "namespace change"),
                r.cache_dir.display()
            ),
        });
    }
    for (path, reason) in &report.unreadable {
        found.push(Problem {
            subject: path.display().to_string(),
            sentence: format!(
                "this registry file cannot be read ({reason}); its volume is not served"
            ),
        });
    }
    found
}

/// The exit status for `problems`.
pub fn exit_status(problems: &[Problem]) -> i32 {
    match problems.is_empty() {
        true => EXIT_HEALTHY,
        false => EXIT_PROBLEM,
    }
}

/// Where the keys come from, and when they expire if they do.
fn credentials_cell(v: &VolumeReport, now: SystemTime) -> String {
    let Some(source) = &v.credentials else {
        return "-".into();
    };
    let expires = v
        .reported
        .as_ref()
        .and_then(|s| s.credentials.as_ref())
        .and_then(|c| c.expires_at.as_deref())
        .and_then(|t| humantime::parse_rfc3339(t).ok());
    match expires {
        None => source.clone(),
        Some(t) => match t.duration_since(now) {
            Ok(left) => format!("{source}, keys expire in {}", human_duration(left)),
            Err(e) => format!(
                "{source}, keys expired {} ago",
                human_duration(e.duration())
            ),
        },
    }
}

/// The table for people, then the problems and notes, one line each.
pub fn table(report: &Report, problems: &[Problem]) -> String {
    let now = report.taken_at;
    let header = [
        "VOLUME",
        "TYPE",
        "STATE",
        "PID",
        "CONTAINERS",
        "PENDING",
        "OLDEST",
        "CACHE",
        "REQ/MIN",
        "ERR/MIN",
        "CREDENTIALS",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for v in &report.volumes {
        let s = v.reported.as_ref();
        let dash = || "-".to_string();
        let pending = s.map_or_else(dash, |s| {
            if s.pending_files == 0 && s.pending_changes == 0 && s.pending_bytes == 0 {
                return "0".into();
            }
            let mut text = format!(
                "{} ({})",
                count(s.pending_files, "file"),
                human_bytes(s.pending_bytes)
            );
            if s.pending_changes > 0 {
                text.push_str(&format!(" + {}", count(s.pending_changes, "change")));
            }
            text
        });
        rows.push(vec![
            v.name.clone(),
            v.type_name.to_string(),
            v.state.words().to_string(),
            s.map_or_else(dash, |s| s.pid.to_string()),
            v.mounts.to_string(),
            pending,
            oldest_wait(v, now).map_or_else(dash, human_duration),
            s.map_or_else(dash, |s| human_bytes(s.cache_bytes)),
            s.map_or_else(dash, |s| s.metrics.requests_last_minute.to_string()),
            s.map_or_else(dash, |s| s.metrics.errors_last_minute.to_string()),
            credentials_cell(v, now),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[c] - cell.chars().count();
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if report.volumes.is_empty() {
        out.push_str(&format!("(no volumes in {})\n", report.state_dir.display()));
    }
    let notes: Vec<String> = report
        .volumes
        .iter()
        .filter_map(|v| {
            let c = v.reported.as_ref()?.credentials.as_ref()?;
            let error = c.refresh_error.as_ref()?;
            let since = c.refresh_error_since.as_deref().unwrap_or("?");
            Some(format!(
                "{}: fetching new keys fails since {since}: {error}",
                v.name
            ))
        })
        .collect();
    if !problems.is_empty() {
        out.push_str("\nproblems:\n");
        for p in problems {
            out.push_str(&format!("  {}: {}\n", p.subject, p.sentence));
        }
    }
    if !notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in notes {
            out.push_str(&format!("  {n}\n"));
        }
    }
    out
}

/// The report for programs: every field of the table, unrounded, plus the
/// mount IDs, the last error and the verdict.
pub fn json(report: &Report, problems: &[Problem], max_pending_age: Duration) -> Value {
    let now = report.taken_at;
    let volumes: Vec<Value> = report
        .volumes
        .iter()
        .map(|v| {
            let s = v.reported.as_ref();
            let credentials = v.credentials.as_ref().map(|source| {
                let c = s.and_then(|s| s.credentials.as_ref());
                json!({
                    "source": source,
                    "expiresAt": c.and_then(|c| c.expires_at.clone()),
                    "refreshError": c.and_then(|c| c.refresh_error.clone()),
                    "refreshErrorSince": c.and_then(|c| c.refresh_error_since.clone()),
                })
            });
            json!({
                "name": v.name,
                "type": v.type_name,
                "state": v.state.words(),
                "containers": v.mounts,
                "mountIds": v.mount_ids,
                "pid": s.map(|s| s.pid),
                "pendingFiles": s.map(|s| s.pending_files),
                "pendingBytes": s.map(|s| s.pending_bytes),
                "pendingChanges": s.map(|s| s.pending_changes),
                "oldestPendingSince": s.and_then(|s| s.oldest_pending_since.clone()),
                "oldestPendingSeconds": oldest_wait(v, now).map(|d| d.as_secs()),
                "cacheBytes": s.map(|s| s.cache_bytes),
                "cacheDirtyBytes": s.map(|s| s.cache_dirty_bytes),
                "requestsLastMinute": s.map(|s| s.metrics.requests_last_minute),
                "errorsLastMinute": s.map(|s| s.metrics.errors_last_minute),
                "storeError": s.and_then(|s| s.store_error.clone()),
                "storeErrorSince": s.and_then(|s| s.store_error_since.clone()),
                "credentials": credentials,
                "statusUpdatedAt": s.and_then(|s| s.updated_at.clone()),
            })
        })
        .collect();
    json!({
        "stateDir": report.state_dir,
        "takenAt": humantime::format_rfc3339_seconds(report.taken_at).to_string(),
        "healthy": problems.is_empty(),
        "maxPendingAgeSeconds": max_pending_age.as_secs(),
        "problems": problems
            .iter()
            .map(|p| json!({"subject": p.subject, "problem": p.sentence}))
            .collect::<Vec<_>>(),
        "volumes": volumes,
        "removedWithData": report
            .removed_with_data
            .iter()
            .map(|r| json!({
                "volume": r.stem,
                "cacheDir": r.cache_dir,
                "pendingFiles": r.files,
                "pendingBytes": r.bytes,
                "pendingChanges": r.changes,
            }))
            .collect::<Vec<_>>(),
        "unreadable": report
            .unreadable
            .iter()
            .map(|(path, reason)| json!({"path": path, "reason": reason}))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use objectfs::status::MountStatus;
    use std::path::PathBuf;

    fn at(t: &str) -> SystemTime {
        humantime::parse_rfc3339(t).unwrap()
    }

    fn object(name: &str, state: MountState, status: serde_json::Value) -> VolumeReport {
        let reported: MountStatus = serde_json::from_value(status).unwrap();
        VolumeReport {
            name: name.into(),
            type_name: "s3",
            mount_ids: vec!["c0ffee".into()],
            mounts: 1,
            state,
            credentials: Some("profile team-a".into()),
            reported: Some(reported),
        }
    }

    fn report(volumes: Vec<VolumeReport>) -> Report {
        Report {
            state_dir: PathBuf::from("/var/lib/opensandbox-volume"),
            taken_at: at("2026-01-01T00:10:00Z"),
            volumes,
            unreadable: vec![],
            removed_with_data: vec![],
        }
    }

    fn healthy() -> VolumeReport {
        object(
            "data",
            MountState::Mounted,
            json!({"pid": 4242, "state": "mounted", "pendingBytes": 0,
                "cacheBytes": 3 << 20,
                "credentials": {"source": "profile team-a", "expiresAt": "2026-01-01T01:00:00Z"},
                "metrics": {"requestsLastMinute": 120, "errorsLastMinute": 0}}),
        )
    }

    fn host() -> VolumeReport {
        VolumeReport {
            name: "work".into(),
            type_name: "host",
            mount_ids: vec![],
            mounts: 0,
            state: MountState::NotMounted,
            credentials: None,
            reported: None,
        }
    }

    #[test]
    fn people_read_durations_and_sizes() {
        assert_eq!(human_duration(Duration::from_secs(45)), "45s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3m05s");
        assert_eq!(human_duration(Duration::from_secs(7800)), "2h10m");
        assert_eq!(
            human_duration(Duration::from_secs(4 * 86400 + 7200)),
            "4d2h"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn a_healthy_host_prints_a_table_and_exits_zero() {
        let r = report(vec![healthy(), host()]);
        let found = problems(&r, Duration::from_secs(600));
        assert_eq!(found, vec![]);
        assert_eq!(exit_status(&found), EXIT_HEALTHY);
        let text = table(&r, &found);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "VOLUME  TYPE  STATE        PID   CONTAINERS  PENDING  OLDEST  CACHE    REQ/MIN  ERR/MIN  CREDENTIALS",
                "data    s3    mounted      4242  1           0        -       3.0 MiB  120      0        profile team-a, keys expire in 50m00s",
                "work    host  not mounted  -     0           -        -       -        -        -        -",
            ]
        );
    }

    #[test]
    fn failures_a_failing_store_and_old_data_are_problems() {
        let failing = object(
            "slow",
            MountState::Mounted,
            json!({"pid": 7, "state": "mounted", "pendingBytes": 2048, "pendingFiles": 2,
                "pendingChanges": 1, "oldestPendingSince": "2026-01-01T00:00:00Z",
                "storeError": "connection refused", "storeErrorSince": "2026-01-01T00:08:00Z",
                "credentials": {"source": "ECS RAM role r", "refreshError": "metadata down",
                    "refreshErrorSince": "2026-01-01T00:09:00Z"}}),
        );
        let mut dead = object(
            "dead",
            MountState::Failed,
            json!({"pid": 8, "state": "mounted", "pendingBytes": 0}),
        );
        dead.mounts = 2;
        let mut r = report(vec![dead, failing]);
        r.unreadable
            .push((PathBuf::from("/s/volumes/x.json"), "bad JSON".into()));
        let found = problems(&r, Duration::from_secs(300));
        let sentences: Vec<String> = found
            .iter()
            .map(|p| format!("{}: {}", p.subject, p.sentence))
            .collect();
        assert_eq!(
            sentences,
            [
                "dead: 2 container mount(s) use it but no mount process serves it (it died, hung or was stopped); the next Mount starts a new one",
                "slow: the store fails since 2026-01-01T00:08:00Z (2m00s ago): connection refused; what waits stays queued",
                "slow: data has waited 10m00s for the bucket, longer than 5m00s",
                "/s/volumes/x.json: this registry file cannot be read (bad JSON); its volume is not served",
            ]
        );
        assert_eq!(exit_status(&found), EXIT_PROBLEM);
        // A threshold as long as the wait forgives it, not the rest.
        assert_eq!(problems(&r, Duration::from_secs(600)).len(), 3);
        let text = table(&r, &found);
        assert!(
            text.contains("2 files (2.0 KiB) + 1 change  10m00s"),
            "{text}"
        );
        assert!(
            text.contains("\nproblems:\n  dead: 2 container mount(s)"),
            "{text}"
        );
        assert!(
            text.contains("\nnotes:\n  slow: fetching new keys fails since 2026-01-01T00:09:00Z: metadata down\n"),
            "{text}"
        );
    }

    #[test]
    fn a_removed_volume_with_data_not_in_the_bucket_is_a_problem() {
        let mut r = report(vec![healthy()]);
        assert!(problems(&r, Duration::from_secs(600)).is_empty());
        r.removed_with_data.push(crate::report::RemovedWithData {
            stem: "gone".into(),
            cache_dir: PathBuf::from("/var/lib/opensandbox-volume/cache/gone"),
            files: 2,
            bytes: 2048,
            changes: 1,
        });
        let found = problems(&r, Duration::from_secs(600));
        assert_eq!(exit_status(&found), EXIT_PROBLEM);
        assert_eq!(
            found[0].sentence,
            "the volume was removed with 2 files (2.0 KiB) and 1 namespace change not in the bucket, kept in /var/lib/opensandbox-volume/cache/gone; a mount of a volume of this name uploads it (or `opensandbox-volume mount --cache-dir` with its bucket and prefix)"
        );
        let j = json(&r, &found, Duration::from_secs(600));
        assert_eq!(j["removedWithData"][0]["volume"], "gone");
        assert_eq!(j["removedWithData"][0]["pendingBytes"], 2048);
        assert!(table(&r, &found).contains("\nproblems:\n  gone: the volume was removed"));
    }

    #[test]
    fn a_failed_mount_without_containers_names_the_waiting_data() {
        let mut v = object(
            "v",
            MountState::Failed,
            json!({"pid": 8, "state": "mounted", "pendingBytes": 10, "pendingFiles": 1}),
        );
        v.mounts = 0;
        let found = problems(&report(vec![v]), Duration::from_secs(600));
        assert_eq!(
            found[0].sentence,
            "its mount process is gone with data not in the bucket; the next Mount of the volume uploads it"
        );
    }

    #[test]
    fn json_carries_every_field_and_the_verdict() {
        let mut v = healthy();
        v.reported.as_mut().unwrap().store_error = Some("AccessDenied".into());
        let r = report(vec![v, host()]);
        let found = problems(&r, Duration::from_secs(600));
        let j = json(&r, &found, Duration::from_secs(600));
        assert_eq!(j["healthy"], false);
        assert_eq!(j["maxPendingAgeSeconds"], 600);
        assert_eq!(j["takenAt"], "2026-01-01T00:10:00Z");
        assert_eq!(j["problems"][0]["subject"], "data");
        let data = &j["volumes"][0];
        assert_eq!(data["state"], "mounted");
        assert_eq!(data["mountIds"], json!(["c0ffee"]));
        assert_eq!(data["pid"], 4242);
        assert_eq!(data["pendingBytes"], 0);
        assert_eq!(data["oldestPendingSeconds"], Value::Null);
        assert_eq!(data["requestsLastMinute"], 120);
        assert_eq!(data["storeError"], "AccessDenied");
        assert_eq!(data["credentials"]["source"], "profile team-a");
        assert_eq!(data["credentials"]["expiresAt"], "2026-01-01T01:00:00Z");
        let work = &j["volumes"][1];
        assert_eq!(
            (work["type"].as_str(), work["state"].as_str()),
            (Some("host"), Some("not mounted"))
        );
        assert_eq!(
            (work["pid"].clone(), work["credentials"].clone()),
            (Value::Null, Value::Null)
        );
    }
}
