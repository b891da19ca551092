//! The durable registry: one JSON file per volume under `STATE_DIR/volumes`.
//!
//! A file per volume keeps every write small and independent: a crash while
//! saving one volume can never damage another. Each save writes a temporary
//! file, fsyncs it, renames it over the old one and fsyncs the directory, so
//! after a crash a volume's file is either the old or the new version, whole.

use super::refcount::MountIds;
use super::sealing::Sealer;
use crate::names;
use crate::spec::VolumeSpec;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Bumped when the record's meaning changes, so an older plugin refuses a
/// newer file instead of misreading it.
pub const RECORD_VERSION: u32 = 1;

/// Everything the plugin knows about one volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeRecord {
    pub version: u32,
    pub name: String,
    pub spec: VolumeSpec,
    /// RFC 3339, as Docker expects `CreatedAt`.
    pub created_at: String,
    #[serde(default)]
    pub mount_ids: MountIds,
}

pub struct StateStore {
    dir: PathBuf,
    /// Seals inline keys before they reach a file (see `sealing`).
    sealer: Sealer,
}

/// A state file that could not be read; the plugin logs it and goes on, so
/// one damaged file never takes every other volume down with it.
#[derive(Debug)]
pub struct UnreadableRecord {
    pub path: PathBuf,
    pub reason: String,
}

impl StateStore {
    /// Opens (creating, mode 0700) `state_dir/volumes`.
    pub fn open(state_dir: &Path) -> io::Result<Self> {
        let dir = state_dir.join("volumes");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let sealer = Sealer::open_or_create(&state_dir.join("secret.key"))?;
        Ok(StateStore { dir, sealer })
    }

    fn path_for(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{}.json", names::file_stem(name)))
    }

    /// Reads every record; unreadable files are returned apart.
    pub fn load_all(&self) -> io::Result<(Vec<VolumeRecord>, Vec<UnreadableRecord>)> {
        scan(&self.dir, true, |path| self.read_record(path))
    }

    /// Durably replaces the record of `record.name`.
    pub fn save(&self, record: &VolumeRecord) -> io::Result<()> {
        let path = self.path_for(&record.name);
        let tmp = path.with_extension("json.tmp");
        let mut value = serde_json::to_value(record).map_err(io::Error::other)?;
        self.sealer.seal_record(&record.name, &mut value)?;
        let bytes = serde_json::to_vec_pretty(&value).map_err(io::Error::other)?;
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)
    }

    /// Durably forgets `name`; forgetting an unknown name is not an error.
    pub fn delete(&self, name: &str) -> io::Result<()> {
        match fs::remove_file(self.path_for(name)) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl StateStore {
    fn read_record(&self, path: &Path) -> io::Result<VolumeRecord> {
        let invalid = |e| io::Error::new(io::ErrorKind::InvalidData, e);
        let bytes = fs::read(path)?;
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).map_err(invalid)?;
        let name = value
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string();
        self.sealer.unseal_record(&name, &mut value)?;
        serde_json::from_value(value).map_err(invalid)
    }
}

/// The records of the registry in `state_dir`, to show them (`status`, the
/// metrics endpoint) without changing anything: nothing is created or
/// removed, and the state key is never read, so inline keys stay sealed
/// (they read as [`super::sealing::HIDDEN`]).
pub fn load_for_display(
    state_dir: &Path,
) -> io::Result<(Vec<VolumeRecord>, Vec<UnreadableRecord>)> {
    scan(&state_dir.join("volumes"), false, |path| {
        let invalid = |e| io::Error::new(io::ErrorKind::InvalidData, e);
        let mut value: serde_json::Value =
            serde_json::from_slice(&fs::read(path)?).map_err(invalid)?;
        super::sealing::hide_sealed(&mut value);
        serde_json::from_value(value).map_err(invalid)
    })
}

/// Reads every `*.json` record in `dir` with `read`, sorted by name;
/// unreadable files are returned apart. With `tidy`, leftover `.tmp` files
/// from a crash mid-save are removed (the rename never happened, so the
/// old record, if any, is still whole).
fn scan(
    dir: &Path,
    tidy: bool,
    read: impl Fn(&Path) -> io::Result<VolumeRecord>,
) -> io::Result<(Vec<VolumeRecord>, Vec<UnreadableRecord>)> {
    let mut records = Vec::new();
    let mut bad = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            if tidy && path.to_string_lossy().ends_with(".json.tmp") {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        match read(&path) {
            Ok(r) if r.version > RECORD_VERSION => bad.push(UnreadableRecord {
                path,
                reason: format!("record version {} is newer than this plugin's", r.version),
            }),
            Ok(r) if dir.join(format!("{}.json", names::file_stem(&r.name))) != path => {
                bad.push(UnreadableRecord {
                    path,
                    reason: format!("file name does not match volume name {:?}", r.name),
                })
            }
            Ok(r) => records.push(r),
            Err(e) => bad.push(UnreadableRecord {
                path,
                reason: e.to_string(),
            }),
        }
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((records, bad))
}

/// A rename is durable only once its directory is synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::BackendSpec;

    fn record(name: &str) -> VolumeRecord {
        VolumeRecord {
            version: RECORD_VERSION,
            name: name.into(),
            spec: VolumeSpec {
                backend: BackendSpec::Host {
                    path: "/srv".into(),
                },
                sub_path: None,
                read_only: false,
            },
            created_at: "2026-01-01T00:00:00Z".into(),
            mount_ids: MountIds::default(),
        }
    }

    #[test]
    fn save_load_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut r = record("../evil/name");
        r.mount_ids.acquire("id1");
        store.save(&r).unwrap();
        store.save(&record("b")).unwrap();
        let (loaded, bad) = store.load_all().unwrap();
        assert!(bad.is_empty());
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0], r);
        // The odd name stayed inside the state directory.
        assert!(
            dir.path()
                .join("volumes/%2E%2E%2Fevil%2Fname.json")
                .exists()
        );
        store.delete("b").unwrap();
        store.delete("b").unwrap();
        assert_eq!(store.load_all().unwrap().0.len(), 1);
    }

    #[test]
    fn records_are_shown_without_the_state_key_and_without_changes() {
        use crate::spec::{BackendSpec, Credentials};
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let mut r = record("s3-vol");
        let obj: crate::spec::ObjectSpec = serde_json::from_value(serde_json::json!({
            "bucket": "b", "prefix": "", "credentials": {"source": "inline",
            "access_key_id": "AKIDSHOWN", "access_key_secret": "NOTSHOWN"}}))
        .unwrap();
        r.spec.backend = BackendSpec::S3(obj);
        store.save(&r).unwrap();
        store.save(&record("host-vol")).unwrap();
        fs::write(dir.path().join("volumes/half.json.tmp"), b"{").unwrap();
        // Without the key the sealed keys stay sealed.
        fs::remove_file(dir.path().join("secret.key")).unwrap();
        let (shown, bad) = load_for_display(dir.path()).unwrap();
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(shown.len(), 2);
        assert_eq!(shown[0], record("host-vol"));
        let BackendSpec::S3(obj) = &shown[1].spec.backend else {
            panic!("{:?}", shown[1])
        };
        assert!(
            matches!(&obj.credentials, Credentials::Inline { access_key_id, .. }
            if access_key_id == super::super::sealing::HIDDEN)
        );
        assert!(!format!("{shown:?}").contains("AKIDSHOWN"));
        // Nothing was created or tidied.
        assert!(!dir.path().join("secret.key").exists());
        assert!(dir.path().join("volumes/half.json.tmp").exists());
        assert!(load_for_display(&dir.path().join("none")).is_err());
    }

    #[test]
    fn damaged_files_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store.save(&record("good")).unwrap();
        fs::write(dir.path().join("volumes/broken.json"), b"{not json").unwrap();
        fs::write(dir.path().join("volumes/half.json.tmp"), b"{").unwrap();
        let mut future = record("future");
        future.version = RECORD_VERSION + 1;
        store.save(&future).unwrap();
        let (loaded, bad) = store.load_all().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].name, "good");
        assert_eq!(bad.len(), 2);
        assert!(!dir.path().join("volumes/half.json.tmp").exists());
    }
}
