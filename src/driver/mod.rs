//! The volume registry: what each Docker call does to the plugin's state.
//!
//! Locking: a short-lived map lock finds a volume's slot; each slot has an
//! `op` lock that serialises Create/Remove/Mount/Unmount of that volume
//! (held across its mount work) and a `record` lock held only to read or
//! replace the record. Get and List take only record locks, so a slow mount
//! of one volume never stalls `docker volume ls` or any other volume.
//!
//! The methods are blocking (fsync, mount(2)); the protocol layer runs them
//! on tokio's blocking pool.

mod leftovers;
pub mod refcount;
mod sealing;
pub mod state;

use crate::backend::object::ObjectSettings;
use crate::backend::pvc::{self, ClaimError, ClaimSource, claim_mount_id};
use crate::backend::{BackendError, Backends};
use crate::engine::{Engine, EngineError};
use crate::mounts;
use crate::names::{self, NameError};
use crate::spec::{self, BackendSpec, SpecError, VolumeSpec};
use serde_json::{Map, Value, json};
use state::{RECORD_VERSION, StateStore, VolumeRecord};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// Settings the driver needs; the CLI fills them from flags or `OSV_*`.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub state_dir: PathBuf,
    pub mount_root: PathBuf,
    pub allowed_host_paths: Vec<PathBuf>,
    /// Where the host's `/` is seen (`/` but in the managed plugin).
    pub host_root: PathBuf,
    /// The host path `host_root` shows: `/`, or the directory a narrowed
    /// hostfs mount was pointed at.
    pub host_root_path: PathBuf,
    /// Upload mode of object-storage volumes that set none.
    pub default_upload: objectfs::UploadMode,
    /// Cache bound, in bytes, of object-storage volumes that set none.
    pub default_cache_size: u64,
    /// The Docker Engine API socket, where `pvc` claims are looked up.
    pub docker_socket: PathBuf,
    /// Credential profiles of object-storage volumes (`NAME.json`).
    pub credentials_dir: PathBuf,
    /// The binary that serves object-storage mounts (`… mount`).
    pub mount_exe: PathBuf,
    /// How each mount process writes its log.
    pub mount_log: crate::logging::LogOutput,
}

/// Every error a Docker call can get, each one sentence naming the volume.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error(
        "volume {0:?} does not exist; create it first with `docker volume create -d <driver> -o type=... {0}`"
    )]
    NotFound(String),
    #[error("volume {name:?} is refused: {source}")]
    BadName { name: String, source: NameError },
    #[error("volume {name:?}: {source}")]
    Spec { name: String, source: SpecError },
    #[error("volume {name:?}: {source}")]
    Backend { name: String, source: BackendError },
    #[error(
        "volume {0:?} already exists with different options; remove it first (`docker volume rm {0}`) or choose another name"
    )]
    Conflict(String),
    #[error(
        "volume {name:?} is in use by {mounts} mount(s); stop the containers that use it, then remove it"
    )]
    InUse { name: String, mounts: u32 },
    #[error(
        "volume {name:?}: the plugin could not save its state ({source}); check that the state directory is writable and its disk is not full"
    )]
    State { name: String, source: io::Error },
}

/// What Get and List report for one volume.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeInfo {
    pub name: String,
    /// Set only while the volume is mounted.
    pub mountpoint: Option<PathBuf>,
    pub created_at: String,
    pub status: Map<String, Value>,
}

#[derive(Default)]
struct Slot {
    op: Mutex<()>,
    record: Mutex<Option<VolumeRecord>>,
}

pub struct Driver {
    store: StateStore,
    backends: Arc<Backends>,
    engine: Engine,
    mount_root: PathBuf,
    volumes: Arc<Mutex<BTreeMap<String, Arc<Slot>>>>,
    /// Removes what removed object volumes leave in the state directory.
    janitor: leftovers::Janitor,
    /// One lock per claim name, held while a pvc Mount looks its claim up
    /// (or creates it) and while a Remove decides on and removes a claim
    /// the plugin created, so a claim is never removed between another pvc
    /// volume's lookup and its use. One small entry per claim name ever
    /// used; never held across another volume's work.
    claim_locks: Mutex<BTreeMap<String, Arc<Mutex<()>>>>,
    /// Per object volume, how often this daemon started a new mount
    /// process for it because the one serving its containers had died (or
    /// its mount had vanished); for the metrics endpoint.
    restarts: Mutex<BTreeMap<String, u64>>,
}

/// A poisoned lock means a panic in another request; the data it guards is
/// still consistent (records are replaced whole), so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Driver {
    /// Loads the registry and reconciles it with the mount table. Runs before
    /// the socket listens, so the first Get already sees every volume.
    pub fn open(config: DriverConfig) -> io::Result<Driver> {
        let store = StateStore::open(&config.state_dir)?;
        std::fs::create_dir_all(&config.mount_root)?;
        let (records, unreadable) = store.load_all()?;
        for bad in &unreadable {
            tracing::error!(path = %bad.path.display(), reason = %bad.reason,
                "skipping a state file the plugin cannot read; its volume is not served until the file is repaired");
        }
        let backends = Arc::new(Backends::new(
            config.allowed_host_paths,
            config.host_root,
            config.host_root_path,
            ObjectSettings {
                exe: config.mount_exe,
                cache_root: config.state_dir.join("cache"),
                log_root: config.state_dir.join("logs"),
                credentials_dir: config.credentials_dir,
                default_upload: config.default_upload,
                default_cache_size: config.default_cache_size,
                log: config.mount_log,
            },
        ));
        let volumes = Arc::new(Mutex::new(BTreeMap::new()));
        let driver = Driver {
            store,
            janitor: leftovers::Janitor {
                backends: backends.clone(),
                volumes: volumes.clone(),
                mount_root: config.mount_root.clone(),
            },
            backends,
            engine: Engine::new(config.docker_socket),
            mount_root: config.mount_root,
            volumes,
            claim_locks: Mutex::new(BTreeMap::new()),
            restarts: Mutex::new(BTreeMap::new()),
        };
        let mut keep: Vec<String> = records.iter().map(|r| names::file_stem(&r.name)).collect();
        for record in records {
            let record = driver.reconcile(record);
            let slot = Slot {
                op: Mutex::new(()),
                record: Mutex::new(Some(record.clone())),
            };
            lock(&driver.volumes).insert(record.name.clone(), Arc::new(slot));
        }
        tracing::info!(volumes = lock(&driver.volumes).len(), "registry loaded");
        // No request is served yet: nothing can mount meanwhile. Volumes
        // whose state file is unreadable keep their files.
        keep.extend(
            unreadable
                .iter()
                .filter_map(|u| u.path.file_stem().map(|s| s.to_string_lossy().into_owned())),
        );
        driver.janitor.sweep(&keep);
        Ok(driver)
    }

    /// Brings one restored record in line with what is really mounted.
    ///
    /// After a plugin restart the mounts are still there and the record is
    /// right. After a host reboot nothing is mounted and the recorded IDs
    /// belong to containers that no longer run (Docker sends no Unmount for
    /// them), so they are dropped; otherwise the volume could never be
    /// removed. A mount with no recorded ID is left over from a crash
    /// between mounting and saving, and is undone.
    fn reconcile(&self, mut record: VolumeRecord) -> VolumeRecord {
        let target = self.mount_path(&record.name);
        let mounted = mounts::is_mount_point(&target).unwrap_or(false);
        if !record.mount_ids.is_empty() && !mounted {
            tracing::warn!(volume = %record.name, mounts = record.mount_ids.total(),
                "mounts were recorded but nothing is mounted (host rebooted?); forgetting them");
            record.mount_ids.clear();
            if let Err(e) = self.store.save(&record) {
                tracing::error!(volume = %record.name, error = %e, "could not save reconciled state");
            }
        } else if record.mount_ids.is_empty() && mounted {
            tracing::warn!(volume = %record.name, "unmounting a mount that no container holds");
            if let Err(e) = self.backends.detach(&record.spec, &target) {
                tracing::error!(volume = %record.name, error = %e, "could not undo a leftover mount");
            }
        }
        record
    }

    /// Where a volume is mounted; one component per volume, from a
    /// sanitised name, so no name can point outside the mount root.
    pub fn mount_path(&self, name: &str) -> PathBuf {
        self.mount_root.join(names::file_stem(name))
    }

    fn slot(&self, name: &str) -> Result<Arc<Slot>, DriverError> {
        lock(&self.volumes)
            .get(name)
            .cloned()
            .ok_or_else(|| DriverError::NotFound(name.to_string()))
    }

    /// Drops a slot whose volume is gone, unless a new one took its place.
    fn forget_slot(&self, name: &str, slot: &Arc<Slot>) {
        let mut map = lock(&self.volumes);
        if let Some(current) = map.get(name)
            && Arc::ptr_eq(current, slot)
            && lock(&slot.record).is_none()
        {
            map.remove(name);
        }
    }

    fn save(&self, record: &VolumeRecord) -> Result<(), DriverError> {
        self.store
            .save(record)
            .map_err(|source| DriverError::State {
                name: record.name.clone(),
                source,
            })
    }

    /// Validates and durably records a volume. Creating a name that exists
    /// with the same options succeeds (Docker may retry); with other
    /// options it fails rather than silently returning the old volume.
    pub fn create(&self, name: &str, opts: Option<&Map<String, Value>>) -> Result<(), DriverError> {
        names::validate(name).map_err(|source| DriverError::BadName {
            name: name.into(),
            source,
        })?;
        let spec = spec::parse_options(opts).map_err(|source| DriverError::Spec {
            name: name.into(),
            source,
        })?;
        if let BackendSpec::Pvc { claim_name, .. } = &spec.backend
            && claim_name == name
        {
            return Err(DriverError::Backend {
                name: name.into(),
                source: ClaimError::ItSelf(claim_name.clone()).into(),
            });
        }
        self.backends
            .validate(&spec)
            .map_err(|source| DriverError::Backend {
                name: name.into(),
                source,
            })?;

        let slot = lock(&self.volumes)
            .entry(name.to_string())
            .or_default()
            .clone();
        let _op = lock(&slot.op);
        if let Some(existing) = lock(&slot.record).as_ref() {
            return if existing.spec == spec {
                Ok(())
            } else {
                Err(DriverError::Conflict(name.into()))
            };
        }
        let record = VolumeRecord {
            version: RECORD_VERSION,
            name: name.to_string(),
            spec,
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            mount_ids: Default::default(),
        };
        if let Err(e) = self.save(&record) {
            drop(_op);
            self.forget_slot(name, &slot);
            return Err(e);
        }
        tracing::info!(volume = %name, r#type = record.spec.backend.type_name(), "created");
        for item in record
            .spec
            .backend
            .object()
            .map_or(&[][..], |o| &o.ignored_options)
        {
            tracing::warn!(volume = %name, option = %item,
                reason = spec::ignored_ossfs_reason(item).unwrap_or_default(),
                "ossfs option accepted without effect");
        }
        *lock(&slot.record) = Some(record);
        Ok(())
    }

    /// Forgets a volume that no container uses. The data stays where it is;
    /// an object volume's cache directory and log go once nothing in them
    /// waits for the bucket (`leftovers`).
    pub fn remove(&self, name: &str) -> Result<(), DriverError> {
        let slot = self.slot(name)?;
        let op = lock(&slot.op);
        let record = lock(&slot.record)
            .clone()
            .ok_or_else(|| DriverError::NotFound(name.into()))?;
        let mounts = record.mount_ids.total();
        if mounts > 0 {
            return Err(DriverError::InUse {
                name: name.into(),
                mounts,
            });
        }
        self.store
            .delete(name)
            .map_err(|source| DriverError::State {
                name: name.into(),
                source,
            })?;
        let _ = std::fs::remove_dir(self.mount_path(name));
        if record.spec.backend.object().is_some() {
            self.janitor.removed(name);
        }
        *lock(&slot.record) = None;
        drop(op);
        self.forget_slot(name, &slot);
        tracing::info!(volume = %name, "removed");
        if let BackendSpec::Pvc {
            claim_name,
            delete_on_sandbox_termination: true,
            ..
        } = &record.spec.backend
        {
            self.remove_created_claim(name, claim_name);
        }
        Ok(())
    }

    /// `deleteOnSandboxTermination`: removes the claim of pvc volume `name`
    /// (already forgotten) when no other pvc volume of the plugin names it
    /// and Docker's record of it carries the plugin's label. Best effort:
    /// the pvc volume is gone either way, so a failure is logged. Two
    /// Removes at once both see the other gone, so one of them removes it.
    fn remove_created_claim(&self, name: &str, claim: &str) {
        let claim_lock = self.claim_lock(claim);
        let _claim = lock(&claim_lock);
        let users: Vec<String> = self
            .list_records()
            .into_iter()
            .filter(|r| matches!(&r.spec.backend, BackendSpec::Pvc { claim_name, .. } if claim_name == claim))
            .map(|r| r.name)
            .collect();
        if !users.is_empty() {
            tracing::info!(volume = %name, claim = %claim, users = ?users,
                "claim kept: other pvc volumes use it");
            return;
        }
        let result = self.engine.volume(claim).and_then(|v| {
            if pvc::created_by_plugin(&v) {
                self.engine.remove_volume(claim).map(|()| true)
            } else {
                Ok(false)
            }
        });
        match result {
            Ok(true) => tracing::info!(volume = %name, claim = %claim,
                "claim removed: the plugin created it and no pvc volume uses it any more"),
            Ok(false) => tracing::info!(volume = %name, claim = %claim,
                "claim kept: the plugin did not create it"),
            Err(EngineError::NoSuchVolume(_)) => tracing::info!(volume = %name,
                claim = %claim, "claim already gone"),
            Err(e) => tracing::warn!(volume = %name, claim = %claim, error = %e,
                "could not remove the claim the plugin created; remove it with docker volume rm"),
        }
    }

    /// The lock of claim name `claim`.
    fn claim_lock(&self, claim: &str) -> Arc<Mutex<()>> {
        lock(&self.claim_locks)
            .entry(claim.to_string())
            .or_default()
            .clone()
    }

    /// Every volume record, for decisions over all of them.
    fn list_records(&self) -> Vec<VolumeRecord> {
        let slots: Vec<Arc<Slot>> = lock(&self.volumes).values().cloned().collect();
        slots
            .iter()
            .filter_map(|slot| lock(&slot.record).clone())
            .collect()
    }

    /// Records mount `id` and returns where the volume is; the first mount
    /// attaches the backend. The ID is saved only once the mount exists.
    pub fn mount(&self, name: &str, id: &str) -> Result<PathBuf, DriverError> {
        let slot = self.slot(name)?;
        let _op = lock(&slot.op);
        let mut record = lock(&slot.record)
            .clone()
            .ok_or_else(|| DriverError::NotFound(name.into()))?;
        let target = self.mount_path(name);
        let first = record.mount_ids.acquire(id);
        // Re-attach also when the mount vanished under a live record (an
        // operator's umount, say) or its mount process died: Docker
        // believes it is there.
        let attach = first || !self.backends.is_healthy(&record.spec, &target);
        if attach {
            if !first {
                // Re-attaching: the claim mount held so far is taken anew.
                self.release_claim(name, &record.spec);
            }
            let backend_err = |source| DriverError::Backend {
                name: name.into(),
                source,
            };
            let claim = self.claim_source(name, &record.spec).map_err(backend_err)?;
            if let Err(e) = self.backends.attach(&record.spec, claim.as_ref(), &target) {
                self.release_claim(name, &record.spec);
                return Err(backend_err(e));
            }
            if !first && record.spec.backend.object().is_some() {
                *lock(&self.restarts).entry(name.to_string()).or_default() += 1;
            }
        }
        if let Err(e) = self.save(&record) {
            if first {
                let _ = self.backends.detach(&record.spec, &target);
                self.release_claim(name, &record.spec);
            }
            return Err(e);
        }
        tracing::info!(volume = %name, mounts = record.mount_ids.total(), "mounted");
        *lock(&slot.record) = Some(record);
        Ok(target)
    }

    /// The spec of a volume this plugin serves, if it does.
    fn own_spec(&self, name: &str) -> Option<VolumeSpec> {
        let slot = lock(&self.volumes).get(name).cloned()?;
        let record = lock(&slot.record);
        record.as_ref().map(|r| r.spec.clone())
    }

    /// Where the claim of pvc volume `name` is; `None` for other types. A
    /// claim served by this plugin is mounted through it, held under
    /// [`claim_mount_id`] until [`Self::release_claim`]; a local volume is
    /// looked up through the Engine API (never under a lock other volumes
    /// wait on: only this volume's own lock is held).
    fn claim_source(
        &self,
        name: &str,
        spec: &VolumeSpec,
    ) -> Result<Option<ClaimSource>, BackendError> {
        let BackendSpec::Pvc {
            claim_name,
            create_if_not_exists,
            ..
        } = &spec.backend
        else {
            return Ok(None);
        };
        if claim_name == name {
            return Err(ClaimError::ItSelf(claim_name.clone()).into());
        }
        if let Some(claim_spec) = self.own_spec(claim_name) {
            if matches!(claim_spec.backend, BackendSpec::Pvc { .. }) {
                return Err(ClaimError::Chained(claim_name.clone()).into());
            }
            let path = self.mount(claim_name, &claim_mount_id(name)).map_err(|e| {
                BackendError::ClaimMount {
                    claim: claim_name.clone(),
                    reason: e.to_string(),
                }
            })?;
            return Ok(Some(ClaimSource::Plugin(path)));
        }
        // Any other claim is Docker's to describe.
        if !self.engine.is_present() {
            return Err(ClaimError::NoEngine(self.engine.socket().into()).into());
        }
        let claim_lock = self.claim_lock(claim_name);
        let _claim = lock(&claim_lock);
        let volume = match self.engine.volume(claim_name) {
            Err(EngineError::NoSuchVolume(_)) if *create_if_not_exists => {
                let created = self
                    .engine
                    .create_local_volume(claim_name, &pvc::created_labels())
                    .map_err(|source| ClaimError::Create {
                        claim: claim_name.clone(),
                        source,
                    })?;
                tracing::info!(volume = %name, claim = %claim_name,
                    "claim created (createIfNotExists): a local volume labelled as created by the plugin");
                created
            }
            other => other.map_err(|source| ClaimError::Engine {
                claim: claim_name.clone(),
                source,
            })?,
        };
        Ok(Some(pvc::local_claim(claim_name, &volume)?))
    }

    /// Gives back the mount a pvc volume held of a claim this plugin serves.
    fn release_claim(&self, name: &str, spec: &VolumeSpec) {
        if let BackendSpec::Pvc { claim_name, .. } = &spec.backend
            && self.own_spec(claim_name).is_some()
            && let Err(e) = self.unmount(claim_name, &claim_mount_id(name))
        {
            tracing::warn!(volume = %name, claim = %claim_name, error = %e,
                "could not release the claim's mount");
        }
    }

    /// Drops mount `id`; the last one detaches the backend. An unknown ID
    /// succeeds: Docker retries Unmounts it believes failed.
    pub fn unmount(&self, name: &str, id: &str) -> Result<(), DriverError> {
        let slot = self.slot(name)?;
        let _op = lock(&slot.op);
        let mut record = lock(&slot.record)
            .clone()
            .ok_or_else(|| DriverError::NotFound(name.into()))?;
        match record.mount_ids.release(id) {
            refcount::Release::Unknown => {
                tracing::debug!(volume = %name, "unmount of an unknown mount ID ignored");
                return Ok(());
            }
            refcount::Release::StillMounted => {}
            refcount::Release::Last => {
                self.backends
                    .detach(&record.spec, &self.mount_path(name))
                    .map_err(|source| DriverError::Backend {
                        name: name.into(),
                        source,
                    })?;
                self.release_claim(name, &record.spec);
            }
        }
        self.save(&record)?;
        tracing::info!(volume = %name, mounts = record.mount_ids.total(), "unmounted");
        *lock(&slot.record) = Some(record);
        Ok(())
    }

    fn info(&self, record: &VolumeRecord) -> VolumeInfo {
        let mut status = self
            .backends
            .status(&record.spec, &self.mount_path(&record.name));
        status.insert("mounts".into(), json!(record.mount_ids.total()));
        VolumeInfo {
            name: record.name.clone(),
            mountpoint: (!record.mount_ids.is_empty()).then(|| self.mount_path(&record.name)),
            created_at: record.created_at.clone(),
            status,
        }
    }

    /// Answers from the registry alone, never from storage.
    pub fn get(&self, name: &str) -> Result<VolumeInfo, DriverError> {
        let slot = self.slot(name)?;
        let record = lock(&slot.record);
        record
            .as_ref()
            .map(|r| self.info(r))
            .ok_or_else(|| DriverError::NotFound(name.into()))
    }

    pub fn list(&self) -> Vec<VolumeInfo> {
        self.list_records().iter().map(|r| self.info(r)).collect()
    }

    /// Per object volume, the mount processes this daemon started again
    /// after the one serving the volume's containers died.
    pub fn mount_process_restarts(&self) -> BTreeMap<String, u64> {
        lock(&self.restarts).clone()
    }
}
