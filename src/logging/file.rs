//! A log file that rotates by size and keeps a bounded number of files
//! (the rule is `logging::rotation`'s; this is its I/O), and the removal
//! of a log's files.
//!
//! When the process's standard output or error is the log file itself (a
//! mount process started by the plugin has both pointed at its log), they
//! follow the current file at every rotation, so what is written to them
//! directly (a panic, the last error before exit) lands beside the log
//! lines instead of in a file already rotated away.

use super::rotation::{self, Bounds, Step};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub struct RotatingFile {
    path: PathBuf,
    bounds: Bounds,
    file: File,
    /// Bytes in the current file.
    size: u64,
    /// Standard descriptors (1, 2) that were the log file when it was
    /// opened, and follow it.
    followers: Vec<RawFd>,
}

/// Device and inode of an open descriptor.
fn identity(fd: RawFd) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a stat into the buffer, which outlives the call;
    // a closed descriptor only makes it fail.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so the buffer is initialised.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// A missing file is not an error: a rotation skips what is not there.
fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The numbers of the files of the log at `path` now on disk.
fn existing(path: &Path) -> io::Result<Vec<u32>> {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        if let Some(n) = entry?
            .file_name()
            .to_str()
            .and_then(|name| rotation::number_of(base, name))
        {
            found.push(n);
        }
    }
    Ok(found)
}

/// Removes every file of the log at `path` (`path` and `path.N`); returns
/// how many there were.
pub fn remove_log(path: &Path) -> io::Result<usize> {
    let found = existing(path)?;
    for n in &found {
        ignore_missing(std::fs::remove_file(rotation::numbered(path, *n)))?;
    }
    Ok(found.len())
}

impl RotatingFile {
    /// Opens the log at `path` for appending (created mode 0600, with its
    /// directory), dropping files an earlier run with a larger count left.
    pub fn open(path: &Path, bounds: Bounds) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        for n in rotation::beyond(&existing(path)?, bounds) {
            ignore_missing(std::fs::remove_file(rotation::numbered(path, n)))?;
        }
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        let me = identity(file.as_raw_fd());
        let followers = [libc::STDOUT_FILENO, libc::STDERR_FILENO]
            .into_iter()
            .filter(|fd| me.is_some() && identity(*fd) == me)
            .collect();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            bounds,
            file,
            size,
            followers,
        })
    }

    /// Moves the current file aside and starts a new one.
    fn rotate(&mut self) -> io::Result<()> {
        for step in rotation::steps(&self.path, self.bounds) {
            ignore_missing(match step {
                Step::Remove(p) => std::fs::remove_file(p),
                Step::Rename { from, to } => std::fs::rename(from, to),
            })?;
        }
        let file = open_append(&self.path)?;
        for fd in &self.followers {
            // SAFETY: dup2 of a descriptor we own onto a standard one; it
            // only replaces what that number refers to.
            unsafe { libc::dup2(file.as_raw_fd(), *fd) };
        }
        self.size = file.metadata().map(|m| m.size()).unwrap_or(0);
        self.file = file;
        Ok(())
    }
}

impl Write for RotatingFile {
    /// One call is one log event (tracing writes each formatted event at
    /// once), so a line is never split across two files.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if rotation::must_rotate(self.size, buf.len() as u64, self.bounds)
            && let Err(e) = self.rotate()
        {
            // Keep logging into the full file rather than lose lines; say
            // why once per failed attempt, where the lines go.
            let note = format!("log rotation of {} failed: {e}\n", self.path.display());
            let _ = self.file.write_all(note.as_bytes());
            self.size += note.len() as u64;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    std::fs::read_to_string(e.path()).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn writes_past_the_bound_keep_max_files_of_at_most_max_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/v.log");
        let bounds = Bounds {
            max_size: 64,
            max_files: 3,
        };
        let mut log = RotatingFile::open(&path, bounds).unwrap();
        for i in 0..100 {
            log.write_all(format!("line {i:03} of the log\n").as_bytes())
                .unwrap();
        }
        let found = files(path.parent().unwrap());
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["v.log", "v.log.1", "v.log.2"]);
        for (name, text) in &found {
            assert!(text.len() as u64 <= bounds.max_size, "{name}: {text:?}");
        }
        // 20 bytes a line, 3 to a file: the newest 7 to 9 lines are kept,
        // in order, the last one in the current file.
        assert!(found[0].1.ends_with("line 099 of the log\n"), "{found:?}");
        let kept: String = [&found[2].1, &found[1].1, &found[0].1]
            .into_iter()
            .cloned()
            .collect();
        assert!(kept.ends_with("line 097 of the log\nline 098 of the log\nline 099 of the log\n"));
        assert!(kept.starts_with("line 09"), "{kept}");
    }

    #[test]
    fn reopening_appends_and_a_smaller_count_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.log");
        let big = Bounds {
            max_size: 10,
            max_files: 5,
        };
        let mut log = RotatingFile::open(&path, big).unwrap();
        for i in 0..6 {
            log.write_all(format!("{i}23456789\n").as_bytes()).unwrap();
        }
        drop(log);
        assert_eq!(existing(&path).unwrap().len(), 5);
        let small = Bounds {
            max_size: 100,
            max_files: 2,
        };
        let mut log = RotatingFile::open(&path, small).unwrap();
        log.write_all(b"again\n").unwrap();
        assert_eq!(
            files(dir.path()),
            [
                ("v.log".to_string(), "523456789\nagain\n".to_string()),
                ("v.log.1".to_string(), "423456789\n".to_string()),
            ]
        );
        // Another log in the same directory is left alone by its removal.
        std::fs::write(dir.path().join("v.log.x"), "other").unwrap();
        std::fs::write(dir.path().join("w.log"), "other").unwrap();
        assert_eq!(remove_log(&path).unwrap(), 2);
        let names: Vec<String> = files(dir.path()).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["v.log.x", "w.log"]);
        assert_eq!(remove_log(&path).unwrap(), 0);
    }

    #[test]
    fn a_line_longer_than_the_bound_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.log");
        let bounds = Bounds {
            max_size: 8,
            max_files: 2,
        };
        let mut log = RotatingFile::open(&path, bounds).unwrap();
        log.write_all(b"short\n").unwrap();
        log.write_all(b"a line far longer than eight bytes\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "a line far longer than eight bytes\n"
        );
        assert_eq!(
            std::fs::read_to_string(rotation::numbered(&path, 1)).unwrap(),
            "short\n"
        );
    }
}
