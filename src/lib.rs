//! opensandbox-volume: a Docker volume plugin that turns OpenSandbox volume
//! descriptions into Docker named volumes.
//!
//! Layers, from the wire inwards (a module imports only modules below it;
//! docs/ARCHITECTURE.md draws the data path of a Mount through them):
//! - `cli`: the commands and their flags (`serve`, `mount`, `status`,
//!   `translate`, `supervise`); builds a `driver` for `serve` and an
//!   `objectfs::MountConfig` for `mount`.
//! - `supervisor`: the managed plugin's PID 1; restarts `serve`, keeps the
//!   mount processes alive.
//! - `protocol`: Docker's volume plugin JSON over the unix socket (axum),
//!   and the Prometheus endpoint (`protocol::metrics`); nothing else knows
//!   HTTP.
//! - `status` and `prometheus`: a `report` as `status` prints it (table,
//!   JSON, health verdict) and as Prometheus text; both pure.
//! - `report`: what the state directory says about each volume (registry
//!   records joined with each mount process's status file), read without
//!   the daemon.
//! - `driver`: the durable registry, mount-ID refcounts, sealed state
//!   files, one lock per volume.
//! - `backend`: how each storage type is mounted (host bind mounts, pvc
//!   claims, nfs kernel mounts, object volumes as `opensandbox-volume
//!   mount` processes fed a `MountConfig` on stdin).
//! - `translate`: the sandbox server's `volumes` JSON → `docker run
//!   --mount` / Engine API mounts (rules apart from rendering).
//! - `spec`: options → typed `VolumeSpec`, every option declared once in
//!   `spec::table`, every error sentence in `spec::error`.
//! - Small helpers with one job each: `engine` (the Docker Engine API, for
//!   pvc claims), `credentials` (key profiles: objectfs's `profile`),
//!   `logging` (level, text or JSON, stderr or a log file rotated by
//!   size), `mounts` (mountinfo, bind mounts, unmount), `names` (volume name →
//!   path component), `residency` (an idle mount process gives back the
//!   code pages and free memory it holds).
//!
//! The FUSE filesystem and the object store live in the `objectfs` crate
//! (crates/objectfs), which imports nothing of this crate.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod backend;
pub mod cli;
pub mod driver;
pub mod engine;
pub mod logging;
pub mod mounts;
pub mod names;
pub mod prometheus;
pub mod protocol;
pub mod report;
pub mod residency;
pub mod spec;
pub mod status;
pub mod supervisor;
pub mod translate;

/// Credential profiles `NAME.json`: objectfs's `profile` module, which the
/// mount process uses too, to read a profile again while it runs.
pub use objectfs::profile as credentials;
