//! The object store as objectfs sees it: a handful of S3 operations.
//!
//! `s3` implements it with aws-sdk-s3 (AWS, Alibaba OSS, any S3-compatible
//! server); `memory` implements it in process, with fault injection, so the
//! filesystem core is tested without a server. Keys are full object keys
//! (the mount's prefix already applied); user metadata keys are given
//! without the `x-amz-meta-` prefix, in lower case.
//!
//! `metered` wraps a store and counts its requests for the mount's metrics.
//!
//! Failures are typed ([`StoreError`]): not found, access denied,
//! precondition failed, throttled, transient and permanent, each naming the
//! request and key; the filesystem core turns them into errnos in one place.

#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod metered;
pub mod s3;
mod segments;

pub use segments::Segments;

use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// What HEAD (or, with empty `metadata`, LIST) says about an object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
    pub etag: Option<String>,
    pub content_type: Option<String>,
    /// User metadata, keys lower case without `x-amz-meta-`. LIST returns
    /// none, so listed objects have an empty map.
    pub metadata: BTreeMap<String, String>,
}

/// Headers of a new object.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct PutMeta {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// A condition on a write that the store checks as it writes (S3's
/// conditional writes): where it no longer holds, the write is refused
/// with [`StoreError::PreconditionFailed`] and the bucket keeps what it
/// has. A store that ignores the headers writes anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// No object at the key (`If-None-Match: *`).
    Absent,
    /// The object at the key has this ETag (`If-Match`).
    Etag(String),
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// With a delimiter: the "directories" one level down, each ending in it.
    pub common_prefixes: Vec<String>,
    pub next_token: Option<String>,
}

/// Store failures, split by what the caller should do about them. Each
/// names the request that failed (`op`) and its key; `message` is what the
/// store (or the local step) said, and is what the error displays.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The object (or upload) does not exist.
    #[error("not found")]
    NotFound { op: &'static str, key: String },
    /// The credentials may not do this (S3's `AccessDenied`), or are not
    /// accepted at all (unknown, expired, a wrong signature): something
    /// the operator can fix while the mount runs, so what waits for the
    /// store stays queued.
    #[error("{message}")]
    AccessDenied {
        op: &'static str,
        key: String,
        message: String,
    },
    /// A condition of the request did not hold: HTTP 412, or a conditional
    /// write refused another way (409 `ConditionalRequestConflict`, OSS's
    /// 409 `FileAlreadyExists`, no object for `If-Match`).
    #[error("{message}")]
    PreconditionFailed {
        op: &'static str,
        key: String,
        message: String,
    },
    /// The store asks to slow down (SlowDown, HTTP 429 and the like):
    /// worth retrying after a pause.
    #[error("{message}")]
    Throttled {
        op: &'static str,
        key: String,
        message: String,
    },
    /// Worth retrying: 5xx, timeouts, dropped connections.
    #[error("{message}")]
    Transient {
        op: &'static str,
        key: String,
        message: String,
    },
    /// Retrying will not help: no such bucket, bad request, a local failure.
    #[error("{message}")]
    Permanent {
        op: &'static str,
        key: String,
        message: String,
    },
}

impl StoreError {
    pub fn not_found(op: &'static str, key: impl Into<String>) -> StoreError {
        StoreError::NotFound {
            op,
            key: key.into(),
        }
    }

    pub fn access_denied(
        op: &'static str,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> StoreError {
        StoreError::AccessDenied {
            op,
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn precondition_failed(
        op: &'static str,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> StoreError {
        StoreError::PreconditionFailed {
            op,
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn throttled(
        op: &'static str,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> StoreError {
        StoreError::Throttled {
            op,
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn transient(
        op: &'static str,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> StoreError {
        StoreError::Transient {
            op,
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn permanent(
        op: &'static str,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> StoreError {
        StoreError::Permanent {
            op,
            key: key.into(),
            message: message.into(),
        }
    }

    /// Whether retrying may help: throttling and transient failures.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Throttled { .. } | StoreError::Transient { .. }
        )
    }

    /// The request that failed.
    pub fn op(&self) -> &'static str {
        match self {
            StoreError::NotFound { op, .. }
            | StoreError::AccessDenied { op, .. }
            | StoreError::PreconditionFailed { op, .. }
            | StoreError::Throttled { op, .. }
            | StoreError::Transient { op, .. }
            | StoreError::Permanent { op, .. } => op,
        }
    }

    /// The key the failed request was about (empty when none).
    pub fn key(&self) -> &str {
        match self {
            StoreError::NotFound { key, .. }
            | StoreError::AccessDenied { key, .. }
            | StoreError::PreconditionFailed { key, .. }
            | StoreError::Throttled { key, .. }
            | StoreError::Transient { key, .. }
            | StoreError::Permanent { key, .. } => key,
        }
    }

    /// The message, to amend (`NotFound` has none).
    pub fn message_mut(&mut self) -> Option<&mut String> {
        match self {
            StoreError::NotFound { .. } => None,
            StoreError::AccessDenied { message, .. }
            | StoreError::PreconditionFailed { message, .. }
            | StoreError::Throttled { message, .. }
            | StoreError::Transient { message, .. }
            | StoreError::Permanent { message, .. } => Some(message),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// S3's limits that shape uploads.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub const MAX_PARTS: u64 = 10_000;
/// The largest object S3's CopyObject copies (5 GiB); larger objects are
/// copied part by part with UploadPartCopy.
pub const MAX_COPY_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The largest object copied with one CopyObject on Alibaba Cloud OSS.
/// OSS documents CopyObject for objects "smaller than 1 GB" and
/// UploadPartCopy beyond, without saying whether a GB is 10^9 or 2^30
/// bytes; the decimal reading is the smaller, so this is safe under both.
/// An object between this and 1 GiB costs two UploadPartCopy requests
/// instead of one CopyObject, nothing else.
pub const OSS_MAX_COPY_SIZE: u64 = 1_000_000_000 - 1;
/// DeleteObjects takes at most this many keys per request.
pub const MAX_DELETE_KEYS: usize = 1000;
/// The longest key, in bytes, every store objectfs speaks to takes (OSS:
/// 1023, S3: 1024).
pub const KEY_MAX: usize = 1023;

#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// `Ok(None)` when the object does not exist.
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>>;

    /// Bytes `[start, start+len)`; shorter at the end of the object.
    async fn get_range(&self, key: &str, start: u64, len: u64) -> StoreResult<Bytes>;

    /// As `get_range`, but the bytes stay in the buffers they arrived in
    /// (see [`Segments`]): what sequential read-ahead uses.
    async fn get_range_segments(&self, key: &str, start: u64, len: u64) -> StoreResult<Segments> {
        self.get_range(key, start, len).await.map(Segments::from)
    }

    /// As `get_range_segments`, with the ETag of the object the bytes came
    /// from: what a local copy is labelled with.
    async fn get_range_tagged(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> StoreResult<(Segments, Option<String>)>;

    /// A whole object and its metadata in one GET (the metadata is what a
    /// HEAD would say); the body is left unread (`None`) when the object is
    /// larger than `max`. `Ok(None)` when the object does not exist.
    async fn get_whole(
        &self,
        key: &str,
        max: u64,
    ) -> StoreResult<Option<(ObjectMeta, Option<Bytes>)>>;

    /// Writes an object; returns its ETag when the store says it.
    async fn put(&self, key: &str, body: Bytes, meta: &PutMeta) -> StoreResult<Option<String>>;

    /// As `put`, written only while `condition` holds at the key.
    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &PutMeta,
        condition: &WriteCondition,
    ) -> StoreResult<Option<String>>;

    /// Starts a multipart upload and returns its id.
    async fn create_multipart(&self, key: &str, meta: &PutMeta) -> StoreResult<String>;

    /// Uploads part `part_number` (1-based) and returns its ETag.
    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> StoreResult<String>;

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
    ) -> StoreResult<Option<String>>;

    /// As `complete_multipart`, completed only while `condition` holds at
    /// the key (the upload stays open when it does not).
    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
        condition: &WriteCondition,
    ) -> StoreResult<Option<String>>;

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()>;

    /// One page of keys starting with `prefix`; with `delimiter`, keys with
    /// it after the prefix are folded into `common_prefixes`.
    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: i32,
    ) -> StoreResult<ListPage>;

    /// Deleting a missing key succeeds (S3 semantics).
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// Deletes every key of `keys`, missing ones included, and returns the
    /// first failure. One key at a time unless the store has a batch
    /// request (S3: DeleteObjects, [`MAX_DELETE_KEYS`] keys a request).
    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }

    /// Server-side copy; `meta` replaces the metadata (else it is copied).
    /// `size` is the source's size when the caller knows it (from a
    /// listing, or the mount's table): S3 then sends no HEAD to choose how
    /// to copy, unless CopyObject is refused. Returns the copy's ETag when
    /// the store gives it: not always the source's (S3 gives the copy of an
    /// object uploaded in parts, or encrypted with KMS, a new one).
    async fn copy(
        &self,
        src: &str,
        size: Option<u64>,
        dst: &str,
        meta: Option<&PutMeta>,
    ) -> StoreResult<Option<String>>;

    /// [`Self::copy`] of the version of `src` whose ETag is `etag` only:
    /// another (rewritten since) is a `PreconditionFailed`, nothing copied.
    /// So the copy's ETag may stand for bytes the caller has.
    async fn copy_if(
        &self,
        src: &str,
        size: Option<u64>,
        dst: &str,
        meta: Option<&PutMeta>,
        etag: &str,
    ) -> StoreResult<Option<String>>;
}
