//! Moving whole files between a local staging file and the store, with
//! retries: one PutObject for small files, parallel multipart for large ones
//! (part size grown so any size up to 5 TiB fits in 10,000 parts), either
//! of them conditional if asked, and parallel ranged GETs to fill a staging
//! file.

use crate::store::{
    MAX_PARTS, MIN_PART_SIZE, ObjectStore, PutMeta, StoreError, StoreResult, WriteCondition,
};
use bytes::Bytes;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How hard to retry transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// For calls a process is waiting on (read, fsync, sync close):
    /// 6 attempts over about 6 s, then EIO.
    pub const INTERACTIVE: RetryPolicy = RetryPolicy {
        attempts: 6,
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
    };

    /// Delay before attempt `n` (1-based, n ≥ 2): doubling, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(2).min(16);
        (self.first_delay * factor).min(self.max_delay)
    }
}

/// Runs `op` until it succeeds, fails permanently, or runs out of attempts.
pub async fn retry<T, F, Fut>(policy: RetryPolicy, what: &str, mut op: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_transient() && attempt < policy.attempts => {
                attempt += 1;
                let delay = policy.delay(attempt);
                tracing::debug!(what, error = %e, attempt, ?delay, "retrying");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// Files up to this size go up in one PutObject.
pub const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
/// Smallest part we use (S3 needs ≥ 5 MiB; larger parts mean fewer calls).
const BASE_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Bytes of parts in memory at once for one upload: the upload memory bound.
pub const UPLOAD_BUFFER: u64 = 64 * 1024 * 1024;

/// The part size for a file of `size` bytes: 8 MiB, or larger (whole MiB)
/// when 10,000 such parts would not hold the file.
pub fn part_size(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS);
    let mib = 1024 * 1024;
    BASE_PART_SIZE
        .max(needed.div_ceil(mib) * mib)
        .max(MIN_PART_SIZE)
}

/// Upload bytes held in memory by the whole process, in MiB permits: all
/// uploads together (single PUT bodies and multipart parts) stay within
/// UPLOAD_BUFFER however many files are being uploaded at once.
static UPLOAD_MEMORY: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new((UPLOAD_BUFFER >> 20) as usize);

/// Reserves memory for `bytes` of upload body (at least 1 MiB, at most the
/// whole budget, so one oversized part can still proceed alone).
async fn reserve(bytes: u64) -> tokio::sync::SemaphorePermit<'static> {
    let mib = bytes.div_ceil(1 << 20).clamp(1, UPLOAD_BUFFER >> 20) as u32;
    UPLOAD_MEMORY
        .acquire_many(mib)
        .await
        .expect("the upload memory semaphore is never closed")
}

/// How many parts of `part` bytes may be in flight within UPLOAD_BUFFER.
pub fn parallel_parts(part: u64) -> usize {
    (UPLOAD_BUFFER / part).clamp(1, 16) as usize
}

/// `len` bytes at `offset` of the staged file that goes to `key`.
fn read_exact_at(file: &File, key: &str, offset: u64, len: u64) -> StoreResult<Bytes> {
    let mut buf = crate::partbuf::take(len as usize);
    file.read_exact_at(buf.as_mut_slice(), offset)
        .map_err(|e| {
            StoreError::permanent(
                "upload",
                key,
                format!("reading the staged file failed: {e}"),
            )
        })?;
    Ok(buf.into_body())
}

/// Uploads the first `size` bytes of `file` to `key`; returns the new
/// object's ETag when the store says it.
pub async fn upload_file(
    store: &Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    key: &str,
    file: Arc<File>,
    size: u64,
    meta: &PutMeta,
) -> StoreResult<Option<String>> {
    upload_file_if(store, policy, key, file, size, meta, None).await
}

/// As [`upload_file`], written only while `condition` (when given) holds
/// at `key`: the PutObject, or the completion of the multipart upload, is
/// conditional. A refused write is `PreconditionFailed`, and a multipart
/// upload that could not be completed is aborted.
pub async fn upload_file_if(
    store: &Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    key: &str,
    file: Arc<File>,
    size: u64,
    meta: &PutMeta,
    condition: Option<&WriteCondition>,
) -> StoreResult<Option<String>> {
    if size <= SINGLE_PUT_MAX {
        let _memory = reserve(size).await;
        let body = read_exact_at(&file, key, 0, size)?;
        return retry(policy, "put", || async {
            match condition {
                Some(c) => store.put_if(key, body.clone(), meta, c).await,
                None => store.put(key, body.clone(), meta).await,
            }
        })
        .await;
    }
    let part = part_size(size);
    let upload_id = retry(policy, "create multipart", || {
        store.create_multipart(key, meta)
    })
    .await?;
    let parts = part_ranges(size, part, 1).collect();
    let result = match upload_parts(store, policy, key, &upload_id, file, parts, part).await {
        Ok(parts) => {
            retry(policy, "complete multipart", || async {
                match condition {
                    Some(c) => {
                        store
                            .complete_multipart_if(key, &upload_id, parts.clone(), c)
                            .await
                    }
                    None => {
                        store
                            .complete_multipart(key, &upload_id, parts.clone())
                            .await
                    }
                }
            })
            .await
        }
        Err(e) => Err(e),
    };
    if result.is_err() {
        // Best effort: an orphaned upload only costs storage until the
        // bucket's lifecycle rule (if any) removes it.
        let _ = store.abort_multipart(key, &upload_id).await;
    }
    result
}

/// One part of a multipart upload: its number (1-based) and the bytes of
/// the file it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRange {
    pub number: i32,
    pub offset: u64,
    pub len: u64,
}

/// The parts of a `size`-byte file cut in `part`-byte pieces, from part
/// number `first` on (the last one shorter).
fn part_ranges(size: u64, part: u64, first: i32) -> impl Iterator<Item = PartRange> {
    let skip = (first.max(1) - 1) as u64;
    (skip..size.div_ceil(part)).map(move |i| PartRange {
        number: (i + 1) as i32,
        offset: i * part,
        len: part.min(size - i * part),
    })
}

/// Uploads one part of `file` to multipart upload `upload_id` of `key`,
/// holding its bytes within the upload memory budget; returns its ETag.
pub async fn upload_part_of(
    store: &Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    key: &str,
    upload_id: &str,
    file: Arc<File>,
    range: PartRange,
) -> StoreResult<String> {
    let _memory = reserve(range.len).await;
    let read_key = key.to_string();
    let body = tokio::task::spawn_blocking(move || {
        read_exact_at(&file, &read_key, range.offset, range.len)
    })
    .await
    .map_err(|e| StoreError::permanent("upload", key, e.to_string()))??;
    retry(policy, "upload part", || {
        store.upload_part(key, upload_id, range.number, body.clone())
    })
    .await
}

/// Uploads `parts` of `file`, as many in parallel as the memory budget
/// allows for `part`-byte parts; returns their numbers and ETags in order.
async fn upload_parts(
    store: &Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    key: &str,
    upload_id: &str,
    file: Arc<File>,
    parts: Vec<PartRange>,
    part: u64,
) -> StoreResult<Vec<(i32, String)>> {
    let window = parallel_parts(part);
    let mut tasks: JoinSet<StoreResult<(i32, String)>> = JoinSet::new();
    let mut done = Vec::with_capacity(parts.len());
    let mut todo = parts.into_iter();
    loop {
        while tasks.len() < window {
            let Some(range) = todo.next() else { break };
            let (store, file) = (store.clone(), file.clone());
            let (key, id) = (key.to_string(), upload_id.to_string());
            tasks.spawn(async move {
                let etag = upload_part_of(&store, policy, &key, &id, file, range).await?;
                Ok((range.number, etag))
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let finished = joined.map_err(|e| StoreError::permanent("upload", key, e.to_string()))?;
        done.push(finished?);
    }
    done.sort_by_key(|(n, _)| *n);
    Ok(done)
}

/// Chunk size for filling a staging file from the store.
const DOWNLOAD_CHUNK: u64 = 8 * 1024 * 1024;
const DOWNLOAD_PARALLEL: usize = 8;

/// Why [`download_to_file`] made no copy: the store, the local file, or
/// the object changed.
#[derive(Debug)]
pub enum DownloadError {
    /// The store's answer (or its absence).
    Store(StoreError),
    /// The local file refused the bytes (its disk full, say).
    Local(std::io::Error),
    /// The object is no longer the one of the size asked for: it is larger
    /// or smaller now, or the GETs saw different versions of it (another
    /// client rewrote it meanwhile). No copy of one version of it was made.
    Changed,
}

impl From<StoreError> for DownloadError {
    fn from(e: StoreError) -> Self {
        DownloadError::Store(e)
    }
}

/// Copies object `key` (`size` bytes) into `file` with parallel ranged
/// GETs. Returns the ETag of the object the bytes came from (`None` when
/// the store says none), or [`DownloadError::Changed`] when they are not
/// one whole version of `size` bytes: the GETs saw different ETags, or
/// another size (the last GET asks for one byte past the end, so an object
/// that grew is caught as well as one that shrank).
pub async fn download_to_file(
    store: &Arc<dyn ObjectStore>,
    policy: RetryPolicy,
    key: &str,
    file: Arc<File>,
    size: u64,
) -> Result<Option<String>, DownloadError> {
    let count = size.div_ceil(DOWNLOAD_CHUNK);
    let mut tasks: JoinSet<Result<Option<String>, DownloadError>> = JoinSet::new();
    let mut etags = std::collections::HashSet::new();
    let mut next = 0;
    while next < count || !tasks.is_empty() {
        while next < count && tasks.len() < DOWNLOAD_PARALLEL {
            let (store, file, key) = (store.clone(), file.clone(), key.to_string());
            let offset = next * DOWNLOAD_CHUNK;
            let len = DOWNLOAD_CHUNK.min(size - offset);
            let asked = if offset + len == size { len + 1 } else { len };
            tasks.spawn(async move {
                let (data, etag) = retry(policy, "get", || {
                    store.get_range_tagged(&key, offset, asked)
                })
                .await?;
                if data.len() as u64 != len {
                    return Err(DownloadError::Changed);
                }
                let data = data.slice(0, data.len());
                tokio::task::spawn_blocking(move || file.write_all_at(&data, offset))
                    .await
                    .map_err(|e| StoreError::permanent("download", key.clone(), e.to_string()))?
                    .map_err(DownloadError::Local)?;
                Ok(etag)
            });
            next += 1;
        }
        if let Some(joined) = tasks.join_next().await {
            let joined = joined.map_err(|e| StoreError::permanent("download", key, e.to_string()));
            match joined? {
                Ok(etag) => {
                    etags.insert(etag);
                }
                Err(e) => {
                    tasks.abort_all();
                    return Err(e);
                }
            }
        }
    }
    match etags.len() {
        0 | 1 => Ok(etags.into_iter().next().flatten()),
        _ => Err(DownloadError::Changed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn part_sizes_cover_five_tebibytes() {
        assert_eq!(part_size(1), 8 << 20);
        assert_eq!(part_size(80_000 << 20), 8 << 20);
        let five_tib = 5u64 << 40;
        let p = part_size(five_tib);
        assert!(five_tib.div_ceil(p) <= MAX_PARTS, "{p}");
        assert_eq!(p % (1 << 20), 0);
        assert!(parallel_parts(p) as u64 * p <= UPLOAD_BUFFER.max(p));
        assert_eq!(parallel_parts(8 << 20), 8);
    }

    #[test]
    fn part_ranges_cover_the_file_from_the_first_asked() {
        let all: Vec<PartRange> = part_ranges(20, 8, 1).collect();
        assert_eq!(
            all,
            [
                PartRange {
                    number: 1,
                    offset: 0,
                    len: 8
                },
                PartRange {
                    number: 2,
                    offset: 8,
                    len: 8
                },
                PartRange {
                    number: 3,
                    offset: 16,
                    len: 4
                }
            ]
        );
        assert_eq!(part_ranges(20, 8, 3).collect::<Vec<_>>(), all[2..]);
        assert_eq!(part_ranges(16, 8, 1).count(), 2);
        assert_eq!(part_ranges(0, 8, 1).count(), 0);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::INTERACTIVE;
        assert_eq!(p.delay(2), Duration::from_millis(100));
        assert_eq!(p.delay(3), Duration::from_millis(200));
        assert_eq!(p.delay(30), Duration::from_secs(2));
    }

    fn temp_file_with(data: &[u8]) -> Arc<File> {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(data, 0).unwrap();
        Arc::new(f)
    }

    #[tokio::test]
    async fn multipart_upload_survives_transient_failures() {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let data: Vec<u8> = (0..(SINGLE_PUT_MAX + 3 * 1024 * 1024))
            .map(|i| (i % 251) as u8)
            .collect();
        mem.fail_next(3, StoreError::throttled("UploadPart", "k", "503 Slow Down"));
        let fast = RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        upload_file(
            &store,
            fast,
            "big",
            temp_file_with(&data),
            data.len() as u64,
            &PutMeta::default(),
        )
        .await
        .unwrap();
        assert_eq!(mem.object("big").unwrap(), data);
        assert!(
            mem.counters
                .parts
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 3
        );

        // And back down into a file.
        let out = Arc::new(tempfile::tempfile().unwrap());
        download_to_file(&store, fast, "big", out.clone(), data.len() as u64)
            .await
            .unwrap();
        let mut back = vec![0u8; data.len()];
        out.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, data);
    }

    #[tokio::test]
    async fn a_download_of_another_size_than_the_object_makes_no_copy() {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let fast = RetryPolicy {
            attempts: 2,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        mem.insert("k", b"0123456789".to_vec(), PutMeta::default());
        let out = Arc::new(tempfile::tempfile().unwrap());
        // Exactly its size: the copy, labelled.
        let label = download_to_file(&store, fast, "k", out.clone(), 10).await;
        assert!(matches!(label, Ok(Some(_))), "{label:?}");
        // The object grew past what the caller knows, or shrank below it.
        for known in [4, 9, 11, 20] {
            let got = download_to_file(&store, fast, "k", out.clone(), known).await;
            assert!(
                matches!(got, Err(DownloadError::Changed)),
                "{known}: {got:?}"
            );
        }
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        mem.fail_next(
            1,
            StoreError::access_denied("PutObject", "k", "AccessDenied"),
        );
        let err = upload_file(
            &store,
            RetryPolicy::INTERACTIVE,
            "k",
            temp_file_with(b"x"),
            1,
            &PutMeta::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err,
            StoreError::access_denied("PutObject", "k", "AccessDenied")
        );
        assert_eq!(mem.object("k"), None);
    }

    /// A conditional upload the store refuses leaves the object as it
    /// was, and aborts its multipart upload; one whose condition holds
    /// goes through.
    #[tokio::test]
    async fn a_refused_conditional_upload_changes_nothing() {
        let mem = Arc::new(MemoryStore::new());
        let store: Arc<dyn ObjectStore> = mem.clone();
        let large: Vec<u8> = (0..(SINGLE_PUT_MAX + 1)).map(|i| (i % 251) as u8).collect();
        for data in [&b"small"[..], &large] {
            mem.insert("k", &b"another client's"[..], PutMeta::default());
            let stale = WriteCondition::Etag("\"what this mount saw\"".into());
            for condition in [WriteCondition::Absent, stale] {
                let err = upload_file_if(
                    &store,
                    RetryPolicy::INTERACTIVE,
                    "k",
                    temp_file_with(data),
                    data.len() as u64,
                    &PutMeta::default(),
                    Some(&condition),
                )
                .await
                .unwrap_err();
                assert!(
                    matches!(err, StoreError::PreconditionFailed { .. }),
                    "{condition:?}: {err:?}"
                );
                assert_eq!(mem.object("k").unwrap(), &b"another client's"[..]);
                assert_eq!(mem.open_uploads(), 0, "{condition:?}");
            }
            let current = store.head("k").await.unwrap().unwrap().etag.unwrap();
            upload_file_if(
                &store,
                RetryPolicy::INTERACTIVE,
                "k",
                temp_file_with(data),
                data.len() as u64,
                &PutMeta::default(),
                Some(&WriteCondition::Etag(current)),
            )
            .await
            .unwrap();
            assert_eq!(mem.object("k").unwrap(), data);
        }
    }
}
