//! Test binary for everything that needs no outside service: the option
//! parser, translate, the filesystem core against the in-memory store, the
//! managed plugin's config.json, and the plugin binary on a unix socket in a
//! temporary directory. Tests that make bind mounts need root; without it
//! they skip (tests/common/requirements.rs), so `cargo test` as a normal
//! user runs the rest.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod fuzz_protocol;
mod objectfs_cache;
mod objectfs_copy_etags;
mod objectfs_core;
mod objectfs_fixture;
mod objectfs_journal_refused;
mod objectfs_open_versions;
mod objectfs_ops;
mod objectfs_refusals;
mod objectfs_streaming;
mod objectfs_sync;
mod path_attacks;
mod plugin_config;
mod protocol;
mod state_sweep;
mod translate;
