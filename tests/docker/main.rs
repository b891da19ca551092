//! Test binary for the plugin as a legacy driver under the real dockerd
//! (root, a running dockerd, moto for object volumes). Its tests run in
//! parallel and share one plugin daemon (driver `osvtest`); the one test
//! that SIGKILLs that daemon takes `common::docker::DAEMON` for writing,
//! every other test holds it for reading. Tests that restart dockerd or load
//! the machine live in tests/docker_serial instead.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod docker_credentials;
mod docker_e2e;
mod docker_object;
mod docker_pvc;
mod sandbox_server;
