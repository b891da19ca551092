//! An in-process object store for fast tests of the filesystem core, with
//! fault injection: fail the next N calls of an operation, answer slowly,
//! or be "down" until told otherwise. It follows S3's semantics where objectfs relies on them
//! (lexicographic listing, delimiter folding, idempotent delete,
//! conditional writes).

use super::*;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone)]
struct Object {
    data: Bytes,
    meta: PutMeta,
    modified: SystemTime,
    /// Parts it was uploaded in (0: one PUT or a copy), which S3's ETag
    /// shows: a copy of an object uploaded in parts gets another ETag.
    parts: usize,
}

impl Object {
    fn etag(&self) -> String {
        etag_of(&self.data, self.parts)
    }
}

#[derive(Default)]
struct Upload {
    key: String,
    meta: PutMeta,
    parts: BTreeMap<i32, Bytes>,
}

#[derive(Default)]
struct Faults {
    /// Errors returned by the next calls of their operation, one each, in
    /// order.
    queued: std::collections::VecDeque<StoreError>,
    down: bool,
    /// Directory listings (with a delimiter) of this prefix answer what
    /// the bucket held when they were asked, this much later.
    slow_listing: Option<(String, std::time::Duration)>,
    /// Directory listings of every prefix below this one answer this much
    /// later.
    slow_listings_below: Option<(String, std::time::Duration)>,
    /// Listings of these whole prefixes (no delimiter) answer this much
    /// later.
    slow_walks: Vec<(String, std::time::Duration)>,
    /// Copies wait this long before they happen.
    slow_copy: Option<std::time::Duration>,
    /// Deletes wait this long before they happen.
    slow_delete: Option<std::time::Duration>,
    /// HEADs answer this much later.
    slow_head: Option<std::time::Duration>,
    /// Writes of keys under this prefix fail with this (a bucket policy).
    refused_writes: Option<(String, StoreError)>,
    /// PutObjects of keys under this prefix fail with this.
    refused_puts: Option<(String, StoreError)>,
    /// Called with the key once a delete has landed, before it answers.
    after_delete: Option<KeyHook>,
    /// Called with the source key once a copy has landed, before it
    /// answers.
    after_copy: Option<KeyHook>,
}

/// What a test runs between a change landing and its answer, with the key.
pub type KeyHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Counters a test can assert on.
#[derive(Debug, Default)]
pub struct Counters {
    pub gets: AtomicU64,
    pub bytes_read: AtomicU64,
    pub puts: AtomicU64,
    pub heads: AtomicU64,
    pub lists: AtomicU64,
    pub parts: AtomicU64,
    /// HEADs being answered right now, and the most at once since the
    /// test last reset it.
    pub heads_in_flight: AtomicU64,
    pub heads_in_flight_max: AtomicU64,
    /// The same for LISTs.
    pub lists_in_flight: AtomicU64,
    pub lists_in_flight_max: AtomicU64,
}

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<String, Object>>,
    uploads: Mutex<HashMap<String, Upload>>,
    next_upload: AtomicU64,
    faults: Mutex<Faults>,
    pub counters: Counters,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` calls of `err`'s operation fail with it (calls of
    /// other operations, a background listing say, go through).
    pub fn fail_next(&self, n: usize, err: StoreError) {
        let mut f = self.faults.lock().unwrap();
        f.queued.extend(std::iter::repeat_n(err, n));
    }

    /// Deletes `key` as another client would, counting no request.
    pub fn delete_now(&self, key: &str) {
        self.objects.lock().unwrap().remove(key);
    }

    /// Directory listings of `prefix` (with a delimiter) answer `delay`
    /// late, with what the bucket held when they were asked.
    pub fn slow_listings(&self, prefix: &str, delay: std::time::Duration) {
        self.faults.lock().unwrap().slow_listing = Some((prefix.to_string(), delay));
    }

    /// Directory listings (with a delimiter) of every prefix that starts
    /// with `prefix` answer `delay` late.
    pub fn slow_listings_below(&self, prefix: &str, delay: std::time::Duration) {
        self.faults.lock().unwrap().slow_listings_below = Some((prefix.to_string(), delay));
    }

    /// Listings of the whole subtree below `prefix` (no delimiter) answer
    /// `delay` late, with what the bucket held when they were asked.
    pub fn slow_walks(&self, prefix: &str, delay: std::time::Duration) {
        let mut f = self.faults.lock().unwrap();
        f.slow_walks.retain(|(p, _)| p != prefix);
        f.slow_walks.push((prefix.to_string(), delay));
    }

    /// Copies (a rename's first half) happen `delay` after they are asked.
    pub fn slow_copies(&self, delay: std::time::Duration) {
        self.faults.lock().unwrap().slow_copy = Some(delay);
    }

    /// Deletes happen `delay` after they are asked.
    pub fn slow_deletes(&self, delay: std::time::Duration) {
        self.faults.lock().unwrap().slow_delete = Some(delay);
    }

    /// HEADs answer `delay` after they are asked (with what the bucket
    /// held when asked), so that HEADs sent together overlap.
    pub fn slow_heads(&self, delay: std::time::Duration) {
        self.faults.lock().unwrap().slow_head = Some(delay);
    }

    /// Writes (puts, uploads, copies to, deletes) of keys under `prefix`
    /// fail with `err` from now on, every time (as a bucket policy denies
    /// them); `None` lifts it.
    pub fn refuse_writes_under(&self, refusal: Option<(&str, StoreError)>) {
        self.faults.lock().unwrap().refused_writes = refusal.map(|(p, e)| (p.to_string(), e));
    }

    /// As [`Self::refuse_writes_under`], for PutObject alone (deletes and
    /// copies go through).
    pub fn refuse_puts_under(&self, refusal: Option<(&str, StoreError)>) {
        self.faults.lock().unwrap().refused_puts = refusal.map(|(p, e)| (p.to_string(), e));
    }

    /// Runs `hook` with the key after each delete has landed, before the
    /// delete answers: the moment a crash would leave the bucket changed
    /// and the caller not told; `None` removes it.
    pub fn after_deletes(&self, hook: Option<KeyHook>) {
        self.faults.lock().unwrap().after_delete = hook;
    }

    /// Runs `hook` with the source key after each copy has landed, before
    /// the copy answers: the moment between a rename's copy and what the
    /// mount makes of it; `None` removes it.
    pub fn after_copies(&self, hook: Option<KeyHook>) {
        self.faults.lock().unwrap().after_copy = hook;
    }

    /// While down, every call fails as a refused connection would.
    pub fn set_down(&self, down: bool) {
        self.faults.lock().unwrap().down = down;
    }

    /// One page of a listing, as the bucket holds it now.
    fn list_now(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: i32,
    ) -> StoreResult<ListPage> {
        let objects = self.objects.lock().unwrap();
        let max = max_keys.max(1) as usize;
        let mut page = ListPage::default();
        let mut count = 0;
        // The token is the last key or prefix returned: resume after it.
        let after = token.unwrap_or_default();
        for (key, o) in objects.range(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            if !after.is_empty() && key.as_str() <= after.as_str() {
                continue;
            }
            if let Some(d) = delimiter
                && let Some(pos) = key[prefix.len()..].find(d)
            {
                let cp = &key[..prefix.len() + pos + d.len()];
                if page.common_prefixes.last().map(String::as_str) == Some(cp)
                    || (!after.is_empty() && cp <= after.as_str())
                {
                    continue;
                }
                if count == max {
                    page.next_token = Some(last_returned(&page));
                    break;
                }
                page.common_prefixes.push(cp.to_string());
                count += 1;
                continue;
            }
            if count == max {
                page.next_token = Some(last_returned(&page));
                break;
            }
            page.objects.push(Self::meta_of(key, o, false));
            count += 1;
        }
        Ok(page)
    }

    /// Fails request `op` on `key` if a fault says so.
    fn check(&self, op: &'static str, key: &str) -> StoreResult<()> {
        let mut f = self.faults.lock().unwrap();
        if f.down {
            return Err(StoreError::transient(
                op,
                key,
                "connection refused (store is down)",
            ));
        }
        match f.queued.iter().position(|e| e.op() == op) {
            Some(i) => Err(f.queued.remove(i).expect("found above")),
            None => Ok(()),
        }
    }

    /// As [`Self::check`], for a request that writes `key`: a key longer
    /// than the store takes is refused for good, and a refusal set for its
    /// prefix applies.
    fn check_write(&self, op: &'static str, key: &str) -> StoreResult<()> {
        self.check(op, key)?;
        if key.len() > super::KEY_MAX {
            return Err(StoreError::permanent(op, key, "KeyTooLongError"));
        }
        let f = self.faults.lock().unwrap();
        match (&f.refused_writes, &f.refused_puts) {
            (Some((p, e)), _) if key.starts_with(p.as_str()) => Err(e.clone()),
            (_, Some((p, e))) if op == "PutObject" && key.starts_with(p.as_str()) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Test helper: an object's ETag, bypassing faults.
    pub fn etag(&self, key: &str) -> Option<String> {
        self.objects.lock().unwrap().get(key).map(Object::etag)
    }

    /// Test helper: the bytes of an object, bypassing faults.
    pub fn object(&self, key: &str) -> Option<Bytes> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|o| o.data.clone())
    }

    /// Test helper: the metadata of an object, bypassing faults.
    pub fn object_meta(&self, key: &str) -> Option<PutMeta> {
        self.objects
            .lock()
            .unwrap()
            .get(key)
            .map(|o| o.meta.clone())
    }

    /// Test helper: multipart uploads created and neither completed nor
    /// aborted.
    pub fn open_uploads(&self) -> usize {
        self.uploads.lock().unwrap().len()
    }

    /// Test helper: every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }

    /// Test helper: writes an object as another tool would (no faults).
    pub fn insert(&self, key: &str, data: impl Into<Bytes>, meta: PutMeta) {
        self.objects.lock().unwrap().insert(
            key.to_string(),
            Object {
                data: data.into(),
                meta,
                modified: SystemTime::now(),
                parts: 0,
            },
        );
    }

    /// One GET: bytes `[start, start+len)` of `key` (shorter at the end)
    /// and the ETag of the object they came from, read together.
    fn read(&self, key: &str, start: u64, len: u64) -> StoreResult<(Bytes, String)> {
        self.check("GetObject", key)?;
        let objects = self.objects.lock().unwrap();
        let o = objects
            .get(key)
            .ok_or_else(|| StoreError::not_found("GetObject", key))?;
        let size = o.data.len() as u64;
        let (start, end) = (start.min(size), start.saturating_add(len).min(size));
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_read
            .fetch_add(end - start, Ordering::Relaxed);
        let data = o.data.slice(start as usize..end as usize);
        Ok((data, o.etag()))
    }

    /// Writes `data` at `key` if `condition` (when given) holds there,
    /// checked and written under one lock, as a store does; the new ETag.
    fn write(
        &self,
        op: &'static str,
        key: &str,
        data: Bytes,
        meta: PutMeta,
        condition: Option<&WriteCondition>,
        parts: usize,
    ) -> StoreResult<String> {
        let mut objects = self.objects.lock().unwrap();
        if let Some(condition) = condition {
            let now = objects.get(key).map(Object::etag);
            let holds = match condition {
                WriteCondition::Absent => now.is_none(),
                WriteCondition::Etag(etag) => now.as_ref() == Some(etag),
            };
            if !holds {
                return Err(StoreError::precondition_failed(
                    op,
                    key,
                    format!("PreconditionFailed: {condition:?} does not hold (HTTP 412)"),
                ));
            }
        }
        let object = Object {
            data,
            meta,
            modified: SystemTime::now(),
            parts,
        };
        let etag = object.etag();
        objects.insert(key.to_string(), object);
        Ok(etag)
    }

    /// PutObject, if `condition` (when given) holds.
    fn put_object(
        &self,
        key: &str,
        body: Bytes,
        meta: &PutMeta,
        condition: Option<&WriteCondition>,
    ) -> StoreResult<Option<String>> {
        self.check_write("PutObject", key)?;
        self.counters.puts.fetch_add(1, Ordering::Relaxed);
        let etag = self.write("PutObject", key, body, meta.clone(), condition, 0)?;
        Ok(Some(etag))
    }

    /// CompleteMultipartUpload, if `condition` (when given) holds; a
    /// refused completion leaves the upload open, as S3 does.
    fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
        condition: Option<&WriteCondition>,
    ) -> StoreResult<String> {
        self.check("CompleteMultipartUpload", key)?;
        let u = self
            .uploads
            .lock()
            .unwrap()
            .remove(upload_id)
            .ok_or_else(|| StoreError::not_found("CompleteMultipartUpload", key))?;
        if u.key != key {
            return Err(StoreError::permanent(
                "CompleteMultipartUpload",
                key,
                "upload belongs to another key",
            ));
        }
        let mut data = Vec::new();
        for (i, (n, _)) in parts.iter().enumerate() {
            let part = u.parts.get(n).ok_or_else(|| {
                StoreError::permanent(
                    "CompleteMultipartUpload",
                    key,
                    format!("part {n} was never uploaded"),
                )
            })?;
            if i + 1 < parts.len() && (part.len() as u64) < MIN_PART_SIZE {
                return Err(StoreError::permanent(
                    "CompleteMultipartUpload",
                    key,
                    format!("part {n} is smaller than 5 MiB and not the last"),
                ));
            }
            data.extend_from_slice(part);
        }
        let meta = u.meta.clone();
        let written = self.write(
            "CompleteMultipartUpload",
            key,
            data.into(),
            meta,
            condition,
            parts.len(),
        );
        if written.is_err() {
            self.uploads
                .lock()
                .unwrap()
                .insert(upload_id.to_string(), u);
        }
        written
    }

    fn meta_of(key: &str, o: &Object, with_user_meta: bool) -> ObjectMeta {
        ObjectMeta {
            key: key.to_string(),
            size: o.data.len() as u64,
            last_modified: Some(o.modified),
            etag: Some(o.etag()),
            content_type: o.meta.content_type.clone(),
            metadata: if with_user_meta {
                o.meta.metadata.clone()
            } else {
                BTreeMap::new()
            },
        }
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.check("HeadObject", key)?;
        self.counters.heads.fetch_add(1, Ordering::Relaxed);
        let found = {
            let objects = self.objects.lock().unwrap();
            objects.get(key).map(|o| Self::meta_of(key, o, true))
        };
        let slow = self.faults.lock().unwrap().slow_head;
        if let Some(delay) = slow {
            let c = &self.counters;
            let now = c.heads_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            c.heads_in_flight_max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            c.heads_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(found)
    }

    async fn get_range(&self, key: &str, start: u64, len: u64) -> StoreResult<Bytes> {
        Ok(self.read(key, start, len)?.0)
    }

    /// Split as an HTTP body arrives, in uneven pieces, so that readers
    /// are tested on replies that straddle two of them.
    async fn get_range_segments(&self, key: &str, start: u64, len: u64) -> StoreResult<Segments> {
        Ok(self.get_range_tagged(key, start, len).await?.0)
    }

    async fn get_range_tagged(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> StoreResult<(Segments, Option<String>)> {
        const PIECE: usize = 100_003;
        let (data, etag) = self.read(key, start, len)?;
        let pieces = (0..data.len())
            .step_by(PIECE)
            .map(|at| data.slice(at..(at + PIECE).min(data.len())));
        Ok((Segments::new(pieces), Some(etag)))
    }

    async fn get_whole(
        &self,
        key: &str,
        max: u64,
    ) -> StoreResult<Option<(ObjectMeta, Option<Bytes>)>> {
        self.check("GetObject", key)?;
        let objects = self.objects.lock().unwrap();
        let Some(o) = objects.get(key) else {
            return Ok(None);
        };
        self.counters.gets.fetch_add(1, Ordering::Relaxed);
        let meta = Self::meta_of(key, o, true);
        if meta.size > max {
            return Ok(Some((meta, None)));
        }
        self.counters
            .bytes_read
            .fetch_add(meta.size, Ordering::Relaxed);
        Ok(Some((meta, Some(o.data.clone()))))
    }

    async fn put(&self, key: &str, body: Bytes, meta: &PutMeta) -> StoreResult<Option<String>> {
        self.put_object(key, body, meta, None)
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &PutMeta,
        condition: &WriteCondition,
    ) -> StoreResult<Option<String>> {
        self.put_object(key, body, meta, Some(condition))
    }

    async fn create_multipart(&self, key: &str, meta: &PutMeta) -> StoreResult<String> {
        self.check_write("CreateMultipartUpload", key)?;
        let id = format!(
            "upload-{}",
            self.next_upload.fetch_add(1, Ordering::Relaxed)
        );
        self.uploads.lock().unwrap().insert(
            id.clone(),
            Upload {
                key: key.to_string(),
                meta: meta.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        self.check("UploadPart", key)?;
        self.counters.parts.fetch_add(1, Ordering::Relaxed);
        let mut uploads = self.uploads.lock().unwrap();
        let u = uploads
            .get_mut(upload_id)
            .ok_or_else(|| StoreError::not_found("UploadPart", key))?;
        let etag = format!("\"part-{part_number}-{}\"", body.len());
        u.parts.insert(part_number, body);
        Ok(etag)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
    ) -> StoreResult<Option<String>> {
        self.complete(key, upload_id, parts, None).map(Some)
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
        condition: &WriteCondition,
    ) -> StoreResult<Option<String>> {
        self.complete(key, upload_id, parts, Some(condition))
            .map(Some)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.check("AbortMultipartUpload", key)?;
        self.uploads.lock().unwrap().remove(upload_id);
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: i32,
    ) -> StoreResult<ListPage> {
        self.check("ListObjectsV2", prefix)?;
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        let slow = {
            let f = self.faults.lock().unwrap();
            let mut faults = match delimiter {
                Some(_) => f.slow_listing.iter().collect::<Vec<_>>(),
                None => f.slow_walks.iter().collect(),
            };
            faults.retain(|(p, _)| p == prefix);
            let below = f
                .slow_listings_below
                .iter()
                .filter(|(p, _)| delimiter.is_some() && prefix.starts_with(p.as_str()));
            faults.extend(below);
            faults.first().map(|(_, d)| *d)
        };
        let page = self.list_now(prefix, delimiter, token, max_keys);
        let c = &self.counters;
        let now = c.lists_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.lists_in_flight_max.fetch_max(now, Ordering::SeqCst);
        if let Some(delay) = slow {
            tokio::time::sleep(delay).await;
        }
        c.lists_in_flight.fetch_sub(1, Ordering::SeqCst);
        page
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.check_write("DeleteObject", key)?;
        let slow = self.faults.lock().unwrap().slow_delete;
        if let Some(delay) = slow {
            tokio::time::sleep(delay).await;
        }
        self.objects.lock().unwrap().remove(key);
        let hook = self.faults.lock().unwrap().after_delete.clone();
        if let Some(hook) = hook {
            hook(key);
        }
        Ok(())
    }

    async fn copy(
        &self,
        src: &str,
        _size: Option<u64>,
        dst: &str,
        meta: Option<&PutMeta>,
    ) -> StoreResult<Option<String>> {
        self.copy_of(src, dst, meta, None).await
    }

    async fn copy_if(
        &self,
        src: &str,
        _size: Option<u64>,
        dst: &str,
        meta: Option<&PutMeta>,
        etag: &str,
    ) -> StoreResult<Option<String>> {
        self.copy_of(src, dst, meta, Some(etag)).await
    }
}

impl MemoryStore {
    /// CopyObject, of the version with ETag `if_match` only when given.
    async fn copy_of(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&PutMeta>,
        if_match: Option<&str>,
    ) -> StoreResult<Option<String>> {
        self.check("CopyObject", src)?;
        self.check_write("CopyObject", dst)?;
        let slow = self.faults.lock().unwrap().slow_copy;
        if let Some(delay) = slow {
            tokio::time::sleep(delay).await;
        }
        let mut objects = self.objects.lock().unwrap();
        let o = objects
            .get(src)
            .ok_or_else(|| StoreError::not_found("CopyObject", src))?
            .clone();
        if if_match.is_some_and(|want| o.etag() != want) {
            return Err(StoreError::precondition_failed(
                "CopyObject",
                src,
                "PreconditionFailed: x-amz-copy-source-if-match does not hold (HTTP 412)",
            ));
        }
        let meta = meta.cloned().unwrap_or(o.meta);
        let copy = Object {
            data: o.data,
            meta,
            modified: SystemTime::now(),
            parts: 0,
        };
        let etag = copy.etag();
        objects.insert(dst.to_string(), copy);
        drop(objects);
        let hook = self.faults.lock().unwrap().after_copy.clone();
        if let Some(hook) = hook {
            hook(src);
        }
        Ok(Some(etag))
    }
}

/// An ETag that changes with the content, as S3's MD5 ETags do.
/// (`parts`: as S3 ends a multipart upload's ETag with its part count.)
fn etag_of(data: &[u8], parts: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    match parts {
        0 => format!("\"{:016x}-{}\"", h.finish(), data.len()),
        n => format!("\"{:016x}-{}-{n}\"", h.finish(), data.len()),
    }
}

/// The greatest key or prefix in a page, where the next page resumes.
fn last_returned(page: &ListPage) -> String {
    let k = page.objects.last().map(|o| o.key.as_str()).unwrap_or("");
    let p = page
        .common_prefixes
        .last()
        .map(String::as_str)
        .unwrap_or("");
    if k > p { k.to_string() } else { p.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn list_all(s: &MemoryStore, prefix: &str, max: i32) -> (Vec<String>, Vec<String>) {
        let (mut keys, mut prefixes, mut token) = (vec![], vec![], None);
        loop {
            let page = s.list(prefix, Some("/"), token, max).await.unwrap();
            keys.extend(page.objects.into_iter().map(|o| o.key));
            prefixes.extend(page.common_prefixes);
            match page.next_token {
                Some(t) => token = Some(t),
                None => return (keys, prefixes),
            }
        }
    }

    #[tokio::test]
    async fn listing_folds_prefixes_and_pages() {
        let s = MemoryStore::new();
        for k in ["p/a", "p/b/1", "p/b/2", "p/c", "p/d/x/y", "q/z", "p/"] {
            s.insert(k, "x", PutMeta::default());
        }
        for max in [1, 2, 1000] {
            let (keys, prefixes) = list_all(&s, "p/", max).await;
            assert_eq!(keys, ["p/", "p/a", "p/c"], "max {max}");
            assert_eq!(prefixes, ["p/b/", "p/d/"], "max {max}");
        }
    }

    #[tokio::test]
    async fn faults_are_injected_then_cleared() {
        let s = MemoryStore::new();
        s.fail_next(2, StoreError::transient("HeadObject", "k", "503"));
        assert!(s.head("k").await.unwrap_err().is_transient());
        assert!(s.head("k").await.is_err());
        assert_eq!(s.head("k").await.unwrap(), None);
        s.set_down(true);
        assert!(s.put("k", Bytes::new(), &PutMeta::default()).await.is_err());
        s.set_down(false);
        assert!(s.put("k", Bytes::new(), &PutMeta::default()).await.is_ok());
    }

    #[tokio::test]
    async fn multipart_enforces_part_sizes() {
        let s = MemoryStore::new();
        let id = s.create_multipart("k", &PutMeta::default()).await.unwrap();
        let e1 = s
            .upload_part("k", &id, 1, Bytes::from(vec![1u8; 10]))
            .await
            .unwrap();
        let e2 = s
            .upload_part("k", &id, 2, Bytes::from(vec![2u8; 10]))
            .await
            .unwrap();
        let err = s
            .complete_multipart("k", &id, vec![(1, e1), (2, e2)])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Permanent { .. }));
    }

    #[tokio::test]
    async fn conditional_writes_hold_or_are_refused() {
        let s = MemoryStore::new();
        let m = PutMeta::default();
        let absent = WriteCondition::Absent;
        let first = s.put_if("k", "one".into(), &m, &absent).await.unwrap();
        let refused = s.put_if("k", "two".into(), &m, &absent).await.unwrap_err();
        assert!(matches!(refused, StoreError::PreconditionFailed { .. }));
        let stale = WriteCondition::Etag("\"other\"".into());
        let refused = s.put_if("k", "two".into(), &m, &stale).await.unwrap_err();
        assert!(matches!(refused, StoreError::PreconditionFailed { .. }));
        assert_eq!(s.object("k").unwrap(), "one");
        let current = WriteCondition::Etag(first.unwrap());
        s.put_if("k", "three".into(), &m, &current).await.unwrap();
        assert_eq!(s.object("k").unwrap(), "three");

        // A refused completion leaves the upload open.
        let id = s.create_multipart("k", &m).await.unwrap();
        let e1 = s.upload_part("k", &id, 1, "four".into()).await.unwrap();
        let refused = s
            .complete_multipart_if("k", &id, vec![(1, e1.clone())], &absent)
            .await
            .unwrap_err();
        assert!(matches!(refused, StoreError::PreconditionFailed { .. }));
        assert_eq!(
            (s.open_uploads(), s.object("k").unwrap()),
            (1, "three".into())
        );
        let current = WriteCondition::Etag(s.head("k").await.unwrap().unwrap().etag.unwrap());
        s.complete_multipart_if("k", &id, vec![(1, e1)], &current)
            .await
            .unwrap();
        assert_eq!(
            (s.open_uploads(), s.object("k").unwrap()),
            (0, "four".into())
        );
    }
}
