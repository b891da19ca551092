//! Storage backends: how a volume's spec becomes something mounted at the
//! directory the plugin returns to Docker.
//!
//! The driver calls `validate` at Create (cheap, local checks only),
//! `attach` on a volume's first Mount and `detach` on its last Unmount.
//! A backend never deletes the user's data: Remove only forgets the volume
//! (and the plugin's own files of an object volume once nothing in them
//! waits for the bucket: `object::ObjectBackend::discard`).

pub mod host;
pub mod nfs;
pub mod object;
pub mod pvc;

use crate::mounts;
use crate::spec::{BackendSpec, VolumeSpec};
use host::{HostBackend, HostError};
use nfs::{NfsBackend, NfsError};
use object::{ObjectBackend, ObjectError, ObjectSettings};
use pvc::{ClaimError, ClaimSource};
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
    #[error(transparent)]
    Nfs(#[from] NfsError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("claim {claim:?} could not be mounted: {reason}")]
    ClaimMount { claim: String, reason: String },
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
    nfs: NfsBackend,
}

impl Backends {
    pub fn new(
        allowed_host_paths: Vec<PathBuf>,
        host_root: PathBuf,
        host_root_path: PathBuf,
        object: ObjectSettings,
    ) -> Self {
        Backends {
            host: HostBackend::narrowed(allowed_host_paths, host_root, host_root_path),
            object: ObjectBackend::new(object),
            nfs: NfsBackend,
        }
    }

    /// The object-storage backend, for what outlives a volume's record
    /// (its cache directory and log).
    pub fn object(&self) -> &ObjectBackend {
        &self.object
    }

    /// True when the volume's mount at `target` is there and answering, so
    /// a later Mount can share it.
    pub fn is_healthy(&self, spec: &VolumeSpec, target: &Path) -> bool {
        match &spec.backend {
            BackendSpec::Host { .. } | BackendSpec::Pvc { .. } | BackendSpec::Nfs(_) => {
                mounts::is_mount_point(target).unwrap_or(false)
            }
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
            // Whether the claim exists is asked at Mount: it may be created
            // after this volume, and may be removed again before it is used.
            BackendSpec::Pvc { .. } => {}
            BackendSpec::Nfs(_) => self.nfs.validate()?,
        }
        Ok(())
    }

    /// Makes the volume's data appear at `target` (created if missing).
    /// `claim` is where a pvc volume's claim is (the driver looks it up).
    pub fn attach(
        &self,
        spec: &VolumeSpec,
        claim: Option<&ClaimSource>,
        target: &Path,
    ) -> Result<(), BackendError> {
        let sub_path = spec.sub_path.as_deref();
        match &spec.backend {
            BackendSpec::Host { path } => {
                let source = self.host.open_source(path, sub_path)?;
                bind(&source, target, spec.read_only)
            }
            BackendSpec::Pvc { claim_name, .. } => {
                let source = match claim {
                    Some(ClaimSource::Host(p)) => self.host.open_claim(p, true, sub_path)?,
                    Some(ClaimSource::Plugin(p)) => self.host.open_claim(p, false, sub_path)?,
                    None => return Err(ClaimError::NoMountpoint(claim_name.clone()).into()),
                };
                bind(&source, target, spec.read_only)
            }
            BackendSpec::Nfs(nfs) => {
                clear_stale(target)?;
                Ok(self.nfs.attach(nfs, target, spec.read_only)?)
            }
            BackendSpec::S3(obj) | BackendSpec::Ossfs(obj) => {
                Ok(self.object.attach(spec, obj, target)?)
            }
        }
    }

    /// Undoes `attach`; detaching what is not mounted succeeds.
    pub fn detach(&self, spec: &VolumeSpec, target: &Path) -> Result<(), BackendError> {
        match &spec.backend {
            BackendSpec::Host { .. } | BackendSpec::Pvc { .. } | BackendSpec::Nfs(_) => {
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
            BackendSpec::Pvc {
                claim_name,
                create_if_not_exists,
                delete_on_sandbox_termination,
            } => {
                status.insert("claimName".into(), json!(claim_name));
                status.insert("createIfNotExists".into(), json!(create_if_not_exists));
                status.insert(
                    "deleteOnSandboxTermination".into(),
                    json!(delete_on_sandbox_termination),
                );
            }
            BackendSpec::Nfs(nfs) => {
                status.insert("server".into(), json!(nfs.server));
                status.insert("path".into(), json!(nfs.path));
                status.insert("options".into(), json!(nfs.options.join(",")));
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
                if !obj.ignored_options.is_empty() {
                    let notes: Vec<String> = obj
                        .ignored_options
                        .iter()
                        .map(|item| {
                            let reason = crate::spec::ignored_ossfs_reason(item).unwrap_or("");
                            format!("{item}: accepted without effect; {reason}")
                        })
                        .collect();
                    status.insert("ignoredOptions".into(), json!(notes));
                }
                let prefix = object::mount_prefix(obj, spec.sub_path.as_deref());
                status.insert("prefix".into(), json!(prefix));
                status.insert("credentials".into(), json!(obj.credentials.describe()));
                let (state, reported) = self.object.mount_status(target);
                status.insert("mount".into(), json!(state));
                if let Some(r) = reported {
                    status.insert("pendingUploadBytes".into(), json!(r.pending_bytes));
                    status.insert("pendingChanges".into(), json!(r.pending_changes));
                    status.insert("cacheBytes".into(), json!(r.cache_bytes));
                    status.insert("passthroughOpens".into(), json!(r.passthrough_opens));
                    if let Some(e) = &r.store_error {
                        status.insert("storeError".into(), json!(e));
                        status.insert("storeErrorSince".into(), json!(r.store_error_since));
                    }
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

/// Creates `target` and detaches whatever a crash left mounted there (a
/// mount made before its state was saved), so nothing stacks under the new
/// mount.
fn clear_stale(target: &Path) -> Result<(), BackendError> {
    let mount_err = |source| BackendError::Mount {
        target: target.into(),
        source,
    };
    std::fs::create_dir_all(target).map_err(mount_err)?;
    if mounts::is_mount_point(target).map_err(mount_err)? {
        mounts::unmount(target).map_err(mount_err)?;
    }
    Ok(())
}

/// Bind-mounts the opened, checked directory `source` at `target`.
fn bind(source: &std::os::fd::OwnedFd, target: &Path, read_only: bool) -> Result<(), BackendError> {
    clear_stale(target)?;
    mounts::bind_mount(source.as_fd(), target, read_only).map_err(|source| BackendError::Mount {
        target: target.into(),
        source,
    })
}
