//! Test binary for what disturbs dockerd or the whole machine: dockerd
//! restarts, the managed plugin (installed, upgraded, crashed, dockerd
//! restarted under it, installed with a narrowed profile), a two-node
//! swarm (a second dockerd joined to the first), the stress test, and the
//! leftovers check shown failing. Every test here takes
//! `common::docker::turn()` first, so they run one at a time; cargo runs
//! test binaries one after another, so nothing else runs meanwhile.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod docker_plugin;
mod docker_plugin_narrowed;
mod docker_restart;
mod docker_swarm;
mod leftovers;
mod stress;
