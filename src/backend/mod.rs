//! Storage backends: how a volume's spec becomes something mounted at the
//! directory the plugin returns to Docker.
//!
//! The driver calls `validate` at Create (cheap, local checks only),
//! `attach` on a volume's first Mount and `detach` on its last Unmount.
//! A backend never deletes the user's data: Remove only forgets the volume.

pub mod host;

use crate::mounts;
use crate::spec::{BackendSpec, VolumeSpec};
use host::{HostBackend, HostError};
use serde_json::{Map, Value, json};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(
        "could not mount at {target:?}: {source}{hint}",
        hint = if source.raw_os_error() == Some(libc::EPERM) { " (the plugin must run as root with CAP_SYS_ADMIN)" } else { "" }
    )]
    Mount { target: PathBuf, source: io::Error },
    #[error("could not unmount {target:?}: {source}")]
    Unmount { target: PathBuf, source: io::Error },
}

pub struct Backends {
    host: HostBackend,
}

impl Backends {
    pub fn new(allowed_host_paths: Vec<PathBuf>) -> Self {
        Backends {
            host: HostBackend::new(allowed_host_paths),
        }
    }

    /// Checks at Create what can be checked without mounting, so a bad
    /// volume fails at `docker volume create` rather than at first use.
    pub fn validate(&self, spec: &VolumeSpec) -> Result<(), BackendError> {
        match &spec.backend {
            BackendSpec::Host { path } => {
                self.host.check(path)?;
            }
        }
        Ok(())
    }

    /// Makes the volume's data appear at `target` (created if missing).
    pub fn attach(&self, spec: &VolumeSpec, target: &Path) -> Result<(), BackendError> {
        match &spec.backend {
            BackendSpec::Host { path } => {
                let source = self.host.open_source(path, spec.sub_path.as_deref())?;
                let mount_err = |source| BackendError::Mount {
                    target: target.into(),
                    source,
                };
                std::fs::create_dir_all(target).map_err(mount_err)?;
                // A mount left by a crash before its state was saved would
                // otherwise be stacked under the new one.
                if mounts::is_mount_point(target).map_err(mount_err)? {
                    mounts::unmount(target).map_err(mount_err)?;
                }
                mounts::bind_mount(source.as_fd(), target, spec.read_only).map_err(mount_err)
            }
        }
    }

    /// Undoes `attach`; detaching what is not mounted succeeds.
    pub fn detach(&self, spec: &VolumeSpec, target: &Path) -> Result<(), BackendError> {
        match &spec.backend {
            BackendSpec::Host { .. } => {
                mounts::unmount(target).map_err(|source| BackendError::Unmount {
                    target: target.into(),
                    source,
                })?;
                // Leave no empty directories behind; a failure here is
                // harmless (the directory is reused by the next Mount).
                let _ = std::fs::remove_dir(target);
                Ok(())
            }
        }
    }

    /// What `docker volume inspect` shows under Status (never a secret).
    pub fn status(spec: &VolumeSpec) -> Map<String, Value> {
        let mut status = Map::new();
        status.insert("type".into(), json!(spec.backend.type_name()));
        match &spec.backend {
            BackendSpec::Host { path } => {
                status.insert("path".into(), json!(path));
            }
        }
        if let Some(sub) = &spec.sub_path {
            status.insert("subPath".into(), json!(sub));
        }
        status.insert("readOnly".into(), json!(spec.read_only));
        status
    }
}
