//! Test binary for objectfs and the S3 store against real S3 servers on
//! loopback (moto, s3s-fs, s3fs for interop) and real FUSE mounts (root,
//! /dev/fuse). The servers are shared by the whole binary, one of each.
//! Without root or a server a test skips (tests/common/requirements.rs).

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod objectfs_conflicts;
mod objectfs_crash_ops;
mod objectfs_credentials;
mod objectfs_disk_full;
mod objectfs_faults;
mod objectfs_fetch_ahead;
mod objectfs_fuse;
mod objectfs_interop;
mod objectfs_mount_copies;
mod objectfs_passthrough;
mod objectfs_two_mounts;
mod plugin_credential_sources;
mod plugin_logs_and_state;
mod plugin_metrics;
mod plugin_two_hosts;
mod secrets_in_logs;
mod store_s3;
