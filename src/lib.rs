//! opensandbox-volume: a Docker volume plugin that turns OpenSandbox volume
//! descriptions into Docker named volumes.
//!
//! Layers, from the wire inwards: `protocol` (Docker's JSON over a unix
//! socket) → `driver` (durable registry, mount refcounts) → `spec` (options
//! parsed once) → `backend` (how each storage type is mounted). `names`,
//! `mounts` and `credentials` (plugin-side key profiles) are small helpers
//! with one job each.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod backend;
pub mod cli;
pub mod credentials;
pub mod driver;
pub mod engine;
pub mod mounts;
pub mod names;
pub mod protocol;
pub mod spec;
pub mod supervisor;
pub mod translate;
