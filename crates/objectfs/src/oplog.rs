//! The journal of namespace changes not yet in the bucket (`upload=async`):
//! one small JSON file per change in the cache directory's `ops/`, named by
//! its sequence number, written before the change is acknowledged (into a
//! file made ahead, renamed into place) and removed once the store has it. The next mount of the same cache
//! directory replays what is left, in order, before anything else.

use crate::datapool::DataPool;
use crate::store::PutMeta;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One namespace change, as the store will see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NsOp {
    /// A new object with this body and metadata: a directory marker
    /// (empty body) or a symbolic link (the target).
    Put {
        key: String,
        meta: PutMeta,
        body: Vec<u8>,
    },
    /// The object is deleted (a missing one is fine).
    Delete { key: String },
    /// The object's metadata is replaced (a copy onto itself); `size`,
    /// a file's size as the mount knew it, spares the copy a HEAD.
    SetMeta {
        key: String,
        meta: PutMeta,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
    },
    /// A directory renamed: each of `names` (relative to `from`, `""` for
    /// the marker) is copied to `to` and then deleted at `from`; with
    /// `marker`, a marker is written at `to` (`from` had none). With
    /// `list`, the names are whatever `from` holds when the change is sent
    /// (nothing else can land there before: later changes and uploads of
    /// both prefixes wait for this one, and its record is removed before
    /// they are sent), and `marker` is written only when
    /// `from` has none. Safe to repeat: a name already moved is skipped.
    RenameDir {
        from: String,
        to: String,
        names: Vec<String>,
        marker: Option<PutMeta>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        list: bool,
    },
}

impl NsOp {
    /// The key the change is about (a renamed directory's new prefix).
    pub fn key(&self) -> &str {
        match self {
            NsOp::Put { key, .. } | NsOp::Delete { key } | NsOp::SetMeta { key, .. } => key,
            NsOp::RenameDir { to, .. } => to,
        }
    }

    /// Whether the change affects what the store has at `key`.
    pub fn covers(&self, key: &str) -> bool {
        match self {
            NsOp::RenameDir { from, to, .. } => key.starts_with(from) || key.starts_with(to),
            _ => self.key() == key,
        }
    }

    /// Whether the change affects some key starting with `prefix`.
    pub fn touches_under(&self, prefix: &str) -> bool {
        match self {
            NsOp::RenameDir { from, to, .. } => [from, to]
                .iter()
                .any(|p| p.starts_with(prefix) || prefix.starts_with(p.as_str())),
            _ => self.key().starts_with(prefix),
        }
    }
}

/// How many namespace changes the cache directory `cache_dir` holds that
/// are not in the bucket yet (unreadable records included), read only.
pub fn recorded(cache_dir: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(cache_dir.join("ops")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut n = 0;
    for entry in entries {
        let name = entry?.file_name();
        if name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .is_some_and(|seq| seq.parse::<u64>().is_ok())
        {
            n += 1;
        }
    }
    Ok(n)
}

pub struct OpLog {
    dir: PathBuf,
    /// Empty `N.tmp` files, made ahead: a record costs no inode allocation.
    blanks: DataPool,
}

impl OpLog {
    pub fn open(cache_dir: &Path) -> io::Result<OpLog> {
        let dir = cache_dir.join("ops");
        fs::create_dir_all(&dir)?;
        Ok(OpLog {
            blanks: DataPool::new(dir.clone(), "tmp", 1),
            dir,
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    /// Records change `seq` (or replaces what was recorded for it).
    pub fn write(&self, seq: u64, op: &NsOp) -> io::Result<()> {
        let json = serde_json::to_vec(op).map_err(io::Error::other)?;
        let (id, mut file) = self.blanks.take()?;
        let tmp = self.blanks.path(id);
        let written = file.write_all(&json);
        drop(file);
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, self.path(seq))) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(())
    }

    /// Change `seq` is in the store (or was cancelled).
    pub fn remove(&self, seq: u64) {
        let _ = fs::remove_file(self.path(seq));
    }

    /// What an earlier mount left, in order. An unreadable record is left
    /// in place and reported; half-written temporary files are dropped.
    pub fn replay(&self) -> io::Result<Vec<(u64, NsOp)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some(seq) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                let _ = fs::remove_file(&path);
                continue;
            };
            match fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<NsOp>(&b).ok())
            {
                Some(op) => out.push((seq, op)),
                None => tracing::error!(path = %path.display(),
                    "unreadable namespace journal entry left in place for inspection"),
            }
        }
        out.sort_by_key(|(seq, _)| *seq);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_in_order_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let log = OpLog::open(dir.path()).unwrap();
        let put = NsOp::Put {
            key: "p/d/".into(),
            meta: PutMeta::default(),
            body: Vec::new(),
        };
        let del = NsOp::Delete { key: "p/f".into() };
        assert_eq!(recorded(dir.path()).unwrap(), 0);
        log.write(10, &del).unwrap();
        log.write(9, &put).unwrap();
        fs::write(dir.path().join("ops/00000000000000000011.tmp"), b"{").unwrap();
        // A half-written record is not a change; the two whole ones are.
        assert_eq!(recorded(dir.path()).unwrap(), 2);
        drop(log); // as a mount ends: its blank files go with it
        let again = OpLog::open(dir.path()).unwrap();
        assert_eq!(again.replay().unwrap(), vec![(9, put), (10, del.clone())]);
        again.remove(9);
        assert_eq!(again.replay().unwrap(), vec![(10, del)]);
        assert_eq!(recorded(dir.path()).unwrap(), 1);
        assert_eq!(fs::read_dir(dir.path().join("ops")).unwrap().count(), 1);
    }

    /// A metadata change keeps the size it was queued with, and a record
    /// written before it had one (an earlier version) reads back without.
    #[test]
    fn a_metadata_change_keeps_its_size_and_older_records_read_without() {
        let sized = NsOp::SetMeta {
            key: "p/f".into(),
            meta: PutMeta::default(),
            size: Some(42),
        };
        let json = serde_json::to_string(&sized).unwrap();
        assert_eq!(serde_json::from_str::<NsOp>(&json).unwrap(), sized);
        let older = r#"{"op":"set_meta","key":"p/f","meta":{"content_type":null,"metadata":{}}}"#;
        let NsOp::SetMeta { size, .. } = serde_json::from_str::<NsOp>(older).unwrap() else {
            panic!("not a metadata change")
        };
        assert_eq!(size, None);
    }
}
