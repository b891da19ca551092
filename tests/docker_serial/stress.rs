//! Load: many containers at once against the plugin (a legacy driver on the
//! real dockerd), over volumes of mixed types, some shared. Each container
//! writes its own files and reads them back; afterwards every file is
//! checked on disk or in the bucket, every refcount is zero, no mount and no
//! mount process is left. Prints containers per second and peak RSS.
//!
//! Short form (the test command): 50 containers over 10 volumes, one round.
//! Long form, by hand: `scripts/stress.sh` (more containers and rounds via
//! OSV_STRESS_CONTAINERS, OSV_STRESS_ROUNDS).

use crate::common;

use common::docker::{Cleanup, SharedPlugin, TEST_DRIVER, dk, docker, mounts_of, unique};
use common::objectfs_mount::Bucket;
use common::s3server::moto;
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

static PLUGIN: std::sync::OnceLock<SharedPlugin> = std::sync::OnceLock::new();

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident set of a process, from /proc (KiB).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Pids of mount processes serving a mount point under `root`.
fn mount_processes_under(root: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.len() > 2 && args[1] == b"mount" && args[2].starts_with(root.as_bytes())
            })
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

enum Target {
    Host(PathBuf),
    Bucket(Bucket),
}

#[test]
fn many_containers_at_once_over_shared_mixed_volumes() {
    require!(Root, Dockerd, Moto);
    let _turn = common::docker::turn();
    let p = SharedPlugin::get(&PLUGIN, TEST_DRIVER);
    let containers = env_usize("OSV_STRESS_CONTAINERS", 50);
    let volumes = env_usize("OSV_STRESS_VOLUMES", 10).max(2);
    let rounds = env_usize("OSV_STRESS_ROUNDS", 1);
    let files = env_usize("OSV_STRESS_FILES", 5);
    let mut clean = Cleanup::default();

    // Half host volumes, half s3 volumes (each on its own bucket).
    let mut vols: Vec<(String, Target)> = Vec::new();
    for i in 0..volumes {
        if i % 2 == 0 {
            let (vol, dir) = p.create_host_volume(&mut clean, &format!("stress-h{i}"), "");
            vols.push((vol, Target::Host(dir)));
        } else {
            let bucket = moto().new_bucket(&format!("stress{i}"));
            let vol = clean.volume(&unique(&format!("stress-s{i}")));
            dk(
                &format!(
                    "volume create -d {} -o type=s3 -o bucket={} -o endpoint={} -o accessKeyId=k -o accessKeySecret=s {vol}",
                    p.driver,
                    bucket.bucket,
                    bucket.endpoint.as_deref().unwrap()
                ),
                &[],
            );
            vols.push((vol, Target::Bucket(Bucket::new(&bucket))));
        }
    }

    // Peak RSS of the mount processes, sampled while they live.
    let root = p.plugin().mount_root.display().to_string();
    let stop_sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (root, stop) = (root.clone(), stop_sampling.clone());
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for pid in mount_processes_under(&root) {
                    peak = peak.max(peak_rss_kib(pid).unwrap_or(0));
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            peak
        })
    };
    let mut run_secs = 0.0;
    let mut failures = Vec::new();
    for round in 0..rounds {
        let start = Instant::now();
        // Container c uses volume c % volumes: every volume is shared by
        // several containers running at the same time.
        let handles: Vec<_> = (0..containers)
            .map(|c| {
                let vol = vols[c % volumes].0.clone();
                let script = format!(
                    "set -e; d=/data/r{round}c{c}; mkdir -p $d; i=0; while [ $i -lt {files} ]; do \
                     head -c $((4096 + i * 1000 + {c})) /dev/urandom > $d/f$i; i=$((i+1)); done; \
                     sums=$(sha256sum $d/*); echo \"$sums\" | sha256sum -c - >/dev/null; echo \"$sums\""
                );
                std::thread::spawn(move || {
                    let image = common::docker::image();
                    let out = docker(&[
                        "run",
                        "--rm",
                        "-v",
                        &format!("{vol}:/data"),
                        &image,
                        "sh",
                        "-c",
                        &script,
                    ]);
                    (c, out)
                })
            })
            .collect();
        let outputs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        run_secs += start.elapsed().as_secs_f64();
        for (c, out) in outputs {
            if !out.status.success() {
                failures.push(format!(
                    "container {c}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                continue;
            }
            // Check what the container wrote, where it must be.
            let (vol, target) = &vols[c % volumes];
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let (sum, path) = line.split_once("  ").unwrap();
                let rel = path.trim_start_matches("/data/");
                let data = match target {
                    Target::Host(dir) => fs::read(dir.join(rel)).ok(),
                    Target::Bucket(bucket) => bucket.get(rel),
                };
                match data {
                    None => failures.push(format!("{vol}: {rel} missing")),
                    Some(bytes) if sha256_hex(&bytes) != sum => {
                        failures.push(format!("{vol}: {rel} corrupt"))
                    }
                    Some(_) => {}
                }
            }
        }
    }
    let secs = run_secs;
    let total = containers * rounds;
    let plugin_rss = peak_rss_kib(p.plugin().pid()).unwrap_or(0);
    stop_sampling.store(true, std::sync::atomic::Ordering::Relaxed);
    let mount_rss = sampler.join().unwrap();
    eprintln!(
        "stress: {total} containers over {volumes} volumes ({files} files each) in {secs:.1} s = {:.1} containers/s; peak RSS: plugin daemon {} MiB, largest mount process {} MiB",
        total as f64 / secs,
        plugin_rss / 1024,
        mount_rss / 1024
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing left behind.
    for (vol, _) in &vols {
        assert_eq!(mounts_of(vol), 0, "{vol}'s refcount");
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mountinfo
        .lines()
        .filter(|l| {
            vols.iter()
                .any(|(v, _)| l.contains(&format!("{root}/{v} ")))
        })
        .collect();
    assert!(left.is_empty(), "mounts left behind:\n{}", left.join("\n"));
    common::wait_for("the mount processes to exit", || {
        mount_processes_under(&root).iter().all(|pid| {
            !vols.iter().any(|(v, _)| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&format!("{root}/{v}\0")))
            })
        })
    });
}
