//! The rule of a size-rotated log, as plain decisions (no I/O): which files
//! make up a log, when the current file is full, and what renaming rotates
//! it. `logging::file` carries the decisions out.
//!
//! A log `PATH` is the current file `PATH` and, oldest last, `PATH.1`,
//! `PATH.2`, … up to `PATH.(max_files - 1)`: `max_files` files in all, each
//! at most `max_size` bytes unless one write alone is larger (a file then
//! holds that write and nothing else).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The log's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Bytes one file may hold.
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
}

/// One file operation of a rotation, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Remove(PathBuf),
    Rename { from: PathBuf, to: PathBuf },
}

/// `PATH.n`, the `n`-th older file of the log at `path` (`n` = 0: `path`).
pub fn numbered(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Whether `name` is a file of the log whose file name is `base`: `base`
/// itself (`Some(0)`) or `base.N` (`Some(N)`).
pub fn number_of(base: &str, name: &str) -> Option<u32> {
    if name == base {
        return Some(0);
    }
    let n = name.strip_prefix(base)?.strip_prefix('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
        return None;
    }
    n.parse().ok().filter(|n| *n > 0)
}

/// Whether a write of `incoming` bytes must go to a fresh file: the current
/// one holds `size` bytes and would pass the bound. An empty file takes any
/// write, so a line longer than the bound still gets written.
pub fn must_rotate(size: u64, incoming: u64, bounds: Bounds) -> bool {
    size > 0 && size.saturating_add(incoming) > bounds.max_size
}

/// What rotates the log at `path`: the oldest file goes, every other one
/// moves one number up, the current one becomes `PATH.1` (with one file,
/// the current one just goes). Missing files are skipped by the caller.
pub fn steps(path: &Path, bounds: Bounds) -> Vec<Step> {
    let last = bounds.max_files.max(1) - 1;
    let mut out = vec![Step::Remove(numbered(path, last))];
    for n in (0..last).rev() {
        out.push(Step::Rename {
            from: numbered(path, n),
            to: numbered(path, n + 1),
        });
    }
    out
}

/// The numbers among `found` (files of one log) that a log of `bounds`
/// no longer keeps: left by an earlier run with a larger `max_files`.
pub fn beyond(found: &[u32], bounds: Bounds) -> Vec<u32> {
    let mut out: Vec<u32> = found
        .iter()
        .copied()
        .filter(|n| *n >= bounds.max_files.max(1))
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        max_size: 100,
        max_files: 3,
    };

    #[test]
    fn files_of_a_log_are_the_path_and_its_numbered_elders() {
        let p = Path::new("/s/logs/v.log");
        assert_eq!(numbered(p, 0), p);
        assert_eq!(numbered(p, 2), Path::new("/s/logs/v.log.2"));
        assert_eq!(number_of("v.log", "v.log"), Some(0));
        assert_eq!(number_of("v.log", "v.log.1"), Some(1));
        assert_eq!(number_of("v.log", "v.log.12"), Some(12));
        for other in [
            "v.log.",
            "v.log.0",
            "v.log.01",
            "v.log.1x",
            "v.logx",
            "w.log",
            "v.log.-1",
            "v.log.1.2",
        ] {
            assert_eq!(number_of("v.log", other), None, "{other}");
        }
        // Another volume whose name starts like this one's.
        assert_eq!(number_of("v", "v.log"), None);
    }

    #[test]
    fn a_file_rotates_before_a_write_would_pass_the_bound() {
        assert!(!must_rotate(0, 10, B));
        assert!(!must_rotate(90, 10, B), "exactly the bound fits");
        assert!(must_rotate(91, 10, B));
        assert!(must_rotate(100, 1, B));
        // A line longer than the bound: into a fresh file, whole.
        assert!(must_rotate(1, 500, B));
        assert!(!must_rotate(0, 500, B));
        assert!(!must_rotate(
            u64::MAX - 1,
            0,
            Bounds {
                max_size: u64::MAX,
                max_files: 1
            }
        ));
    }

    #[test]
    fn rotation_drops_the_oldest_and_shifts_the_rest() {
        let p = Path::new("/l/v.log");
        assert_eq!(
            steps(p, B),
            vec![
                Step::Remove("/l/v.log.2".into()),
                Step::Rename {
                    from: "/l/v.log.1".into(),
                    to: "/l/v.log.2".into()
                },
                Step::Rename {
                    from: "/l/v.log".into(),
                    to: "/l/v.log.1".into()
                },
            ]
        );
        let one = Bounds {
            max_size: 100,
            max_files: 1,
        };
        assert_eq!(steps(p, one), vec![Step::Remove("/l/v.log".into())]);
        // Zero is taken as one: the log is never left without a file.
        let zero = Bounds {
            max_size: 100,
            max_files: 0,
        };
        assert_eq!(steps(p, zero), steps(p, one));
    }

    #[test]
    fn files_beyond_a_smaller_count_are_named() {
        assert_eq!(beyond(&[0, 1, 2], B), Vec::<u32>::new());
        assert_eq!(beyond(&[7, 0, 3, 1, 2, 5], B), vec![3, 5, 7]);
    }
}
