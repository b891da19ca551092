//! Storage backends: how a volume's spec becomes something mounted at the
//! directory the plugin returns to Docker.
//!
//! The driver calls `validate` at Create (cheap, local checks only),
//! `attach` on a volume's first Mount and `detach` on its last Unmount.
//! A backend never deletes the user's data: Remove only forgets the volume.

pub mod host;
pub mod object;

use crate::mounts;
use crate::spec::{BackendSpec, Credentials, VolumeSpec};
use host::{HostBackend, HostError};
use object::{ObjectBackend, ObjectError, ObjectSettings};
use serde_json::{Map, Value, json};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Object(#[from] ObjectError),
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
    object: ObjectBackend,
}

impl Backends {
    pub fn new(
        allowed_host_paths: Vec<PathBuf>,
        host_root: PathBuf,
        object: ObjectSettings,
    ) -> Self {
        Backends {
            host: HostBackend::new(allowed_host_paths, host_root),
            object: ObjectBackend::new(object),
        }
    }

    /// True when the volume's mount at `target` is there and answering, so
    /// a later Mount can share it.
    pub fn is_healthy(&self, spec: &VolumeSpec, target: &Path) -> bool {
        match &spec.backend {
            BackendSpec::Host { .. } => mounts::is_mount_point(target).unwrap_or(false),
            BackendSpec::S3(_) | BackendSpec::Ossfs(_) => self.object.is_healthy(target),
        }
    }

    /// Checks at Create what can be checked without mounting, so a bad
    /// volume fails at `docker volume create` rather than at first use.
    pub fn validate(&self, spec: &VolumeSpec) -> Result<(), BackendError> {
        match &spec.backend {
            BackendSpec::Host { path } => {
                self.host.check(path)?;
            }
            BackendSpec::S3(obj) | BackendSpec::Ossfs(obj) => self.object.validate(obj)?,
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
            BackendSpec::S3(obj) | BackendSpec::Ossfs(obj) => {
                Ok(self.object.attach(spec, obj, target)?)
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
            BackendSpec::S3(_) | BackendSpec::Ossfs(_) => {
                self.object
                    .detach(target)
                    .map_err(|source| BackendError::Unmount {
                        target: target.into(),
                        source,
                    })
            }
        }
    }

    /// What `docker volume inspect` shows under Status (never a secret).
    pub fn status(&self, spec: &VolumeSpec, target: &Path) -> Map<String, Value> {
        let mut status = Map::new();
        status.insert("type".into(), json!(spec.backend.type_name()));
        match &spec.backend {
            BackendSpec::Host { path } => {
                status.insert("path".into(), json!(path));
            }
            BackendSpec::S3(obj) | BackendSpec::Ossfs(obj) => {
                status.insert("bucket".into(), json!(obj.bucket));
                if let Some(e) = &obj.endpoint {
                    status.insert("endpoint".into(), json!(e));
                }
                if let Some(r) = &obj.region {
                    status.insert("region".into(), json!(r));
                }
                if let Some(v) = &obj.version {
                    status.insert("version".into(), json!(v));
                }
                let prefix = object::mount_prefix(obj, spec.sub_path.as_deref());
                status.insert("prefix".into(), json!(prefix));
                let credentials = match &obj.credentials {
                    Credentials::Default => "none (anonymous requests)".to_string(),
                    Credentials::Profile { name } => format!("profile {name}"),
                    Credentials::Inline { .. } => "inline keys (hidden)".to_string(),
                };
                status.insert("credentials".into(), json!(credentials));
                let (state, reported) = self.object.mount_status(target);
                status.insert("mount".into(), json!(state));
                if let Some(r) = reported {
                    status.insert("pendingUploadBytes".into(), json!(r.pending_bytes));
                }
            }
        }
        if let Some(sub) = &spec.sub_path {
            status.insert("subPath".into(), json!(sub));
        }
        status.insert("readOnly".into(), json!(spec.read_only));
        status
    }
}
