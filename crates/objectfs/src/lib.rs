//! objectfs: a POSIX-enough filesystem over an object store.
//!
//! The core ([`ObjectFs`]) speaks inode numbers, errnos and byte buffers and
//! knows nothing of FUSE, so it is tested in process against the in-memory
//! store; `fuse` adapts it to fuser. See docs/SEMANTICS.md for what each
//! operation does on object storage and what other clients see, when.
//!
//! Parts, from the kernel down:
//! - `fuse`: the fuser adapter; `mount`: mounting, serving and unmounting;
//!   `status`: the status file a mount keeps written for the plugin, with
//!   what `metrics` counts (FUSE and store requests, latencies, bytes).
//! - `core`: the filesystem, made of an inode table (`core::inodes`, no
//!   store calls), an upload queue (`core::uploads`), the local cache
//!   (`core::cache` bookkeeping, `core::copies` its I/O), the queue of
//!   namespace changes (`core::opqueue`, sent by `core::ops`; directory
//!   renames queued by `core::rename`), the upload of a file's parts while
//!   it is appended to (`core::streaming`) and the operations on top of them
//!   (`core::namespace`, `core::listing`, `core::files`); store errors
//!   become errnos in one place there.
//! - `reader` (sequential read-ahead), `staging` (local copies of file
//!   data, their journal and cache tags; `datapool` keeps empty data files
//!   ready for it), `oplog` (the journal of queued
//!   namespace changes), `transfer` (whole-file uploads and downloads with
//!   retries), `layout` (how names and attributes map to keys and
//!   metadata).
//! - `store`: the object store interface and its typed errors, with the S3
//!   implementation (and where its credentials come from,
//!   `store::s3::credentials`), a wrapper counting every request
//!   (`store::metered`) and, behind feature `memory`, an in-memory one; `profile` reads credential profile files (the plugin's too).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod core;
mod datapool;
pub mod fuse;
pub mod iomode;
pub mod layout;
pub mod metrics;
pub mod mount;
pub mod oplog;
pub mod partbuf;
pub mod profile;
pub mod reader;
pub mod staging;
pub mod status;
pub mod store;
pub mod transfer;

pub use self::core::ObjectFs;
pub use config::MountConfig;
pub use layout::Kind;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The root directory's inode number (FUSE's convention).
pub const ROOT_INO: u64 = 1;

/// A failed operation, as the errno the caller sees.
pub type Errno = i32;
pub type FsResult<T> = Result<T, Errno>;

/// When close(2) returns relative to the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadMode {
    /// close returns at once; the upload runs in the background.
    Async,
    /// close waits until the data is in the bucket and reports failures.
    Sync,
}

impl std::str::FromStr for UploadMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "async" => Ok(UploadMode::Async),
            "sync" => Ok(UploadMode::Sync),
            _ => Err(format!("upload mode {s:?} must be async or sync")),
        }
    }
}

impl UploadMode {
    /// The spelling the command line and the options use.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadMode::Async => "async",
            UploadMode::Sync => "sync",
        }
    }
}

/// Everything that shapes one mount's filesystem (see [`config::MountConfig`]
/// for the whole mount).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FsOptions {
    /// Key prefix the mount is confined to: empty or ending in `/`.
    pub prefix: String,
    pub defaults: layout::Defaults,
    pub read_only: bool,
    pub upload: UploadMode,
    /// Staging files and their journal.
    pub cache_dir: PathBuf,
    /// How long attributes and negative lookups are trusted.
    pub metadata_ttl: Duration,
    /// How long unmount waits for background uploads before giving up
    /// (the data stays journalled in the cache directory).
    pub flush_timeout: Duration,
    /// How long a closed file waits before its background upload starts
    /// (`upload=async` only; unmount and fsync never wait for it).
    pub upload_delay: Duration,
    /// Take listed files' attributes from the listing (size, LastModified,
    /// the mount's default owner and mode) instead of a HEAD per file.
    pub attrs_from_listing: bool,
    /// Bound, in bytes, of the file data kept in the cache directory. Clean
    /// copies (already in the bucket) are evicted least recently used first
    /// to stay under it; dirty data is never evicted, and a writer that
    /// would take the cache past it waits for uploads, then gets ENOSPC.
    #[serde(default = "default_cache_size")]
    pub cache_size: u64,
    /// How long a writer waits for uploads to free cache space before it
    /// gets ENOSPC ([`config::DIRTY_WAIT`] unless a test says otherwise).
    #[serde(default = "default_dirty_wait")]
    pub dirty_wait: Duration,
    /// How the mount's log lines about the store name it (the plugin says
    /// `volume NAME (credentials: SOURCE)`); never a key.
    #[serde(default)]
    pub label: String,
}

fn default_dirty_wait() -> Duration {
    config::DIRTY_WAIT
}

fn default_cache_size() -> u64 {
    config::DEFAULT_CACHE_SIZE
}

/// An open file: its handle, whether the kernel may keep the page cache
/// it has of the file (`FOPEN_KEEP_CACHE`), and, for a read-only open of
/// a file with a complete local copy, that copy (the kernel may read it
/// itself: `iomode`). The copy stays the node's, unchanged in place, until
/// the handle is released.
#[derive(Debug, Clone)]
pub struct Opened {
    pub fh: u64,
    pub keep_cache: bool,
    pub local: Option<std::sync::Arc<std::fs::File>>,
}

/// File attributes as the kernel wants them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    /// Permission bits only.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// When the store last confirmed these attributes; `None` for state the
    /// store cannot contradict (a file being written, open or with a change
    /// queued; the root). The kernel may keep them only for what is left of
    /// the metadata TTL from then.
    pub confirmed: Option<std::time::Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: String,
}

/// One readdirplus entry: the name, and its attributes when the node is
/// known; `exact` when they may be cached for the metadata TTL.
#[derive(Debug, Clone)]
pub struct PlusEntry {
    pub entry: DirEntry,
    pub attr: Option<Attr>,
    pub exact: bool,
}

/// What setattr may change; `None` leaves a field alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub perm: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
    /// Clear the set-user-ID and set-group-ID bits unless `perm` is given
    /// (the kernel leaves that to us: a chown, or a truncate by a caller
    /// without the privilege to keep them).
    pub kill_set_ids: bool,
}

/// Open flags objectfs cares about.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenFlags {
    pub write: bool,
    pub truncate: bool,
}

impl OpenFlags {
    pub fn from_libc(flags: i32) -> OpenFlags {
        let acc = flags & libc::O_ACCMODE;
        OpenFlags {
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            truncate: flags & libc::O_TRUNC != 0,
        }
    }
}
