//! How the kernel does I/O on each open file (plain bookkeeping for the
//! FUSE adapter, no kernel calls).
//!
//! A read-only open of a file with a complete local copy may be answered
//! in passthrough mode: the kernel then reads (and maps) the local copy
//! itself, with no request to this process and at the speed of the disk's
//! own page cache. The kernel wants every open of an inode that has a
//! passthrough open to be passthrough too (else the open fails with EIO),
//! and refuses passthrough beside opens through its page cache (ETXTBSY).
//! So: while an inode has passthrough opens, all its opens are
//! passthrough, writers included (the kernel then writes to the local copy
//! itself; the core learns of it at flush, fsync and release); while it has
//! page-cache opens, none is.

use std::collections::HashMap;

/// The mode of one open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMode {
    /// The kernel reads and writes the local copy itself.
    Passthrough,
    /// Reads and writes are requests to this process, through the kernel's
    /// page cache (the default).
    Cached,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    passthrough: usize,
    cached: usize,
}

/// The open files of one mount and their modes.
#[derive(Debug, Default)]
pub struct IoModes {
    per_ino: HashMap<u64, Counts>,
    per_fh: HashMap<u64, (u64, IoMode)>,
}

impl IoModes {
    /// The mode for a new open of `ino`; `local_read` says the open is
    /// read-only, the file has a complete local copy and passthrough is
    /// available.
    pub fn choose(&self, ino: u64, local_read: bool) -> IoMode {
        let c = self.per_ino.get(&ino).copied().unwrap_or_default();
        if c.passthrough > 0 || (local_read && c.cached == 0) {
            IoMode::Passthrough
        } else {
            IoMode::Cached
        }
    }

    /// Open file `fh` of `ino` was answered in `mode`.
    pub fn opened(&mut self, fh: u64, ino: u64, mode: IoMode) {
        let c = self.per_ino.entry(ino).or_default();
        match mode {
            IoMode::Passthrough => c.passthrough += 1,
            IoMode::Cached => c.cached += 1,
        }
        self.per_fh.insert(fh, (ino, mode));
    }

    /// Open file `fh` was closed. Returns its inode when that was the
    /// inode's last passthrough open (its backing file can be let go).
    pub fn released(&mut self, fh: u64) -> Option<u64> {
        let (ino, mode) = self.per_fh.remove(&fh)?;
        let c = self.per_ino.get_mut(&ino)?;
        let last_passthrough = match mode {
            IoMode::Passthrough => {
                c.passthrough -= 1;
                c.passthrough == 0
            }
            IoMode::Cached => {
                c.cached -= 1;
                false
            }
        };
        if c.passthrough + c.cached == 0 {
            self.per_ino.remove(&ino);
        }
        last_passthrough.then_some(ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_read_goes_passthrough_unless_the_page_cache_is_in_use() {
        let mut m = IoModes::default();
        assert_eq!(m.choose(1, true), IoMode::Passthrough);
        assert_eq!(m.choose(1, false), IoMode::Cached);
        m.opened(10, 1, IoMode::Cached);
        assert_eq!(
            m.choose(1, true),
            IoMode::Cached,
            "a writer uses the page cache"
        );
        assert_eq!(
            m.choose(2, true),
            IoMode::Passthrough,
            "another inode is free"
        );
        assert_eq!(m.released(10), None);
        assert_eq!(m.choose(1, true), IoMode::Passthrough);
    }

    #[test]
    fn every_open_beside_a_passthrough_one_is_passthrough() {
        let mut m = IoModes::default();
        m.opened(1, 7, IoMode::Passthrough);
        assert_eq!(m.choose(7, false), IoMode::Passthrough, "a writer too");
        m.opened(2, 7, IoMode::Passthrough);
        assert_eq!(m.choose(8, false), IoMode::Cached, "another inode is free");
        assert_eq!(m.released(1), None, "another passthrough open remains");
        assert_eq!(m.released(2), Some(7), "the last passthrough open");
        assert_eq!(m.choose(7, false), IoMode::Cached);
        assert!(m.per_ino.is_empty() && m.per_fh.is_empty(), "nothing kept");
    }

    #[test]
    fn an_unknown_handle_is_ignored() {
        let mut m = IoModes::default();
        assert_eq!(m.released(99), None);
    }
}
