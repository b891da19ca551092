//! What removed object volumes leave in the state directory, and when it
//! goes: their cache directory (`STATE_DIR/cache/VOLUME`) and log files
//! (`STATE_DIR/logs/VOLUME.log*`) are deleted at Remove, or once the mount
//! process that was still uploading has exited, or at the next daemon
//! start; never while they hold data the bucket does not have yet.
//!
//! Deleting a volume's files must not race a Mount of a new volume of the
//! same name, which would use the same directory: at Remove the volume's
//! own lock is held; later, the volume map's lock is held and no volume of
//! that name exists (a Mount needs one, and Create takes the map lock).

use super::{Slot, lock};
use crate::backend::Backends;
use crate::backend::object::Leftover;
use crate::names;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a removed volume's still running mount process is checked.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What the clean-up needs, shared with the threads that wait for mount
/// processes to finish.
#[derive(Clone)]
pub(super) struct Janitor {
    pub(super) backends: Arc<Backends>,
    pub(super) volumes: Arc<Mutex<BTreeMap<String, Arc<Slot>>>>,
    pub(super) mount_root: PathBuf,
}

impl Janitor {
    fn target(&self, stem: &OsStr) -> PathBuf {
        self.mount_root.join(stem)
    }

    /// After Remove of volume `name` (its lock held): deletes what it left,
    /// or says what stays and why; a mount process still uploading is
    /// waited for in the background.
    pub(super) fn removed(&self, name: &str) {
        let stem = OsString::from(names::file_stem(name));
        let outcome = self.backends.object().discard(&self.target(&stem));
        if self.report(&stem, outcome) {
            self.watch(stem);
        }
    }

    /// At start, before any request: every cache directory but those of
    /// the volumes whose file stems are `keep` is handled as at its Remove.
    pub(super) fn sweep(&self, keep: &[String]) {
        let found = match self.backends.object().cache_stems() {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the cache directories to clean up");
                return;
            }
        };
        for stem in found {
            if keep.iter().any(|s| OsStr::new(s) == stem) {
                continue;
            }
            let outcome = self.backends.object().discard(&self.target(&stem));
            if self.report(&stem, outcome) {
                self.watch(stem);
            }
        }
    }

    /// Logs what `discard` did; true when a mount process must be waited
    /// for.
    fn report(&self, stem: &OsStr, outcome: std::io::Result<Leftover>) -> bool {
        let volume = stem.to_string_lossy();
        match outcome {
            Ok(Leftover::Nothing) => false,
            Ok(Leftover::Gone) => {
                tracing::info!(volume = %volume, "cache directory and log files removed");
                false
            }
            Ok(Leftover::Running { pid }) => {
                tracing::info!(volume = %volume, pid,
                    "the volume's mount process is still uploading; its cache directory and log files are removed once it has finished");
                true
            }
            Ok(Leftover::Pending {
                files,
                bytes,
                changes,
                cache_dir,
            }) => {
                tracing::warn!(volume = %volume, files, bytes, changes, cache_dir = %cache_dir.display(),
                    "data not yet in the bucket is kept: the next mount of a volume of this name (same bucket and prefix) uploads it, or `opensandbox-volume mount` with --cache-dir set to this directory; the directory is removed at the first daemon start after that");
                false
            }
            Err(e) => {
                tracing::warn!(volume = %volume, error = %e,
                    "could not clean up the volume's cache directory and log files; the next daemon start tries again");
                false
            }
        }
    }

    /// Waits in the background for the mount process of the removed volume
    /// `stem` to exit, then cleans up as at Remove, unless a new volume of
    /// the same name took the directory meanwhile.
    fn watch(&self, stem: OsString) {
        let janitor = self.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(WATCH_EVERY);
                let target = janitor.target(&stem);
                // Quick look without the map lock; the decision is below.
                if janitor.backends.object().is_running(&target) {
                    continue;
                }
                let map = lock(&janitor.volumes);
                let same_name = map
                    .iter()
                    .filter(|(n, _)| OsStr::new(&names::file_stem(n)) == stem)
                    .map(|(_, slot)| slot)
                    .next();
                if let Some(slot) = same_name {
                    if lock(&slot.record).is_some() {
                        tracing::info!(volume = %stem.to_string_lossy(),
                            "a new volume of this name uses the cache directory; not removed");
                        return;
                    }
                    // A Create or Remove of that name under way: look again.
                    continue;
                }
                let outcome = janitor.backends.object().discard(&target);
                drop(map);
                if !janitor.report(&stem, outcome) {
                    return;
                }
            }
        });
    }
}
