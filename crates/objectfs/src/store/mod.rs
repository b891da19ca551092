//! The object store as objectfs sees it: a handful of S3 operations.
//!
//! `s3` implements it with aws-sdk-s3 (AWS, Alibaba OSS, any S3-compatible
//! server); `memory` implements it in process, with fault injection, so the
//! filesystem core is tested without a server. Keys are full object keys
//! (the mount's prefix already applied); user metadata keys are given
//! without the `x-amz-meta-` prefix, in lower case.

#[cfg(any(test, feature = "memory"))]
pub mod memory;
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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PutMeta {
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    /// With a delimiter: the "directories" one level down, each ending in it.
    pub common_prefixes: Vec<String>,
    pub next_token: Option<String>,
}

/// Store failures, split by what the caller should do about them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The object (or upload) does not exist.
    #[error("not found")]
    NotFound,
    /// Worth retrying: 5xx, throttling, timeouts, dropped connections.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help: access denied, no such bucket, bad request.
    #[error("{0}")]
    Permanent(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// S3's limits that shape uploads.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
pub const MAX_PARTS: u64 = 10_000;
/// CopyObject's limit; larger objects are copied part by part.
pub const MAX_COPY_SIZE: u64 = 5 * 1024 * 1024 * 1024;

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

    async fn put(&self, key: &str, body: Bytes, meta: &PutMeta) -> StoreResult<()>;

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
    ) -> StoreResult<()>;

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

    /// Server-side copy; `meta` replaces the metadata (else it is copied).
    async fn copy(&self, src: &str, dst: &str, meta: Option<&PutMeta>) -> StoreResult<()>;
}
