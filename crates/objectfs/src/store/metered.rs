//! A store that counts every request it passes on ([`Metered`]): its
//! operation, outcome and latency, and the object bytes that went each way
//! (into [`crate::metrics::Metrics`]). It wraps the real store in the mount
//! process, so the filesystem core counts nothing itself. Retries are
//! separate requests, so each is counted; a HEAD of a missing object
//! counts as `not_found`.

use super::{ListPage, ObjectMeta, ObjectStore, PutMeta, Segments, StoreResult, WriteCondition};
use crate::metrics::{Metrics, Outcome, StoreOp};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

pub struct Metered {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<Metrics>,
}

impl Metered {
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: Arc<Metrics>) -> Metered {
        Metered { inner, metrics }
    }

    /// Runs `request` and counts it as `op`; `outcome` says how a success
    /// counts (a HEAD that found nothing is `not_found`).
    async fn count<T>(
        &self,
        op: StoreOp,
        key: &str,
        request: impl std::future::Future<Output = StoreResult<T>>,
        outcome: impl FnOnce(&T) -> Outcome,
    ) -> StoreResult<T> {
        let started = Instant::now();
        let result = request.await;
        let how = match &result {
            Ok(v) => outcome(v),
            Err(e) => Outcome::of_error(e),
        };
        let took = started.elapsed();
        tracing::trace!(
            ?op,
            key,
            ?how,
            micros = took.as_micros() as u64,
            "store request"
        );
        self.metrics.store(op, how, took);
        result
    }
}

fn ok<T>(_: &T) -> Outcome {
    Outcome::Ok
}

#[async_trait]
impl ObjectStore for Metered {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.count(
            StoreOp::Head,
            key,
            self.inner.head(key),
            |found| match found {
                Some(_) => Outcome::Ok,
                None => Outcome::NotFound,
            },
        )
        .await
    }

    async fn get_range(&self, key: &str, start: u64, len: u64) -> StoreResult<Bytes> {
        let body = self
            .count(StoreOp::Get, key, self.inner.get_range(key, start, len), ok)
            .await?;
        self.metrics.read_bytes(body.len() as u64);
        Ok(body)
    }

    async fn get_range_segments(&self, key: &str, start: u64, len: u64) -> StoreResult<Segments> {
        let body = self
            .count(
                StoreOp::Get,
                key,
                self.inner.get_range_segments(key, start, len),
                ok,
            )
            .await?;
        self.metrics.read_bytes(body.len() as u64);
        Ok(body)
    }

    async fn get_range_tagged(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> StoreResult<(Segments, Option<String>)> {
        let (body, etag) = self
            .count(
                StoreOp::Get,
                key,
                self.inner.get_range_tagged(key, start, len),
                ok,
            )
            .await?;
        self.metrics.read_bytes(body.len() as u64);
        Ok((body, etag))
    }

    async fn get_whole(
        &self,
        key: &str,
        max: u64,
    ) -> StoreResult<Option<(ObjectMeta, Option<Bytes>)>> {
        let found = self
            .count(
                StoreOp::Get,
                key,
                self.inner.get_whole(key, max),
                |found| match found {
                    Some(_) => Outcome::Ok,
                    None => Outcome::NotFound,
                },
            )
            .await?;
        if let Some((_, Some(body))) = &found {
            self.metrics.read_bytes(body.len() as u64);
        }
        Ok(found)
    }

    async fn put(&self, key: &str, body: Bytes, meta: &PutMeta) -> StoreResult<Option<String>> {
        let len = body.len() as u64;
        let etag = self
            .count(StoreOp::Put, key, self.inner.put(key, body, meta), ok)
            .await?;
        self.metrics.written_bytes(len);
        Ok(etag)
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &PutMeta,
        condition: &WriteCondition,
    ) -> StoreResult<Option<String>> {
        let len = body.len() as u64;
        let etag = self
            .count(
                StoreOp::Put,
                key,
                self.inner.put_if(key, body, meta, condition),
                ok,
            )
            .await?;
        self.metrics.written_bytes(len);
        Ok(etag)
    }

    async fn create_multipart(&self, key: &str, meta: &PutMeta) -> StoreResult<String> {
        self.count(
            StoreOp::CreateMultipart,
            key,
            self.inner.create_multipart(key, meta),
            ok,
        )
        .await
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        let len = body.len() as u64;
        let etag = self
            .count(
                StoreOp::UploadPart,
                key,
                self.inner.upload_part(key, upload_id, part_number, body),
                ok,
            )
            .await?;
        self.metrics.written_bytes(len);
        Ok(etag)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
    ) -> StoreResult<Option<String>> {
        self.count(
            StoreOp::CompleteMultipart,
            key,
            self.inner.complete_multipart(key, upload_id, parts),
            ok,
        )
        .await
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
        condition: &WriteCondition,
    ) -> StoreResult<Option<String>> {
        self.count(
            StoreOp::CompleteMultipart,
            key,
            self.inner
                .complete_multipart_if(key, upload_id, parts, condition),
            ok,
        )
        .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.count(
            StoreOp::AbortMultipart,
            key,
            self.inner.abort_multipart(key, upload_id),
            ok,
        )
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: i32,
    ) -> StoreResult<ListPage> {
        self.count(
            StoreOp::List,
            prefix,
            self.inner.list(prefix, delimiter, token, max_keys),
            ok,
        )
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.count(StoreOp::Delete, key, self.inner.delete(key), ok)
            .await
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        self.count(
            StoreOp::DeleteMany,
            keys.first().map_or("", |k| k.as_str()),
            self.inner.delete_many(keys),
            ok,
        )
        .await
    }

    async fn copy(
        &self,
        src: &str,
        size: Option<u64>,
        dst: &str,
        meta: Option<&PutMeta>,
    ) -> StoreResult<Option<String>> {
        self.count(
            StoreOp::Copy,
            dst,
            self.inner.copy(src, size, dst, meta),
            ok,
        )
        .await
    }

    async fn copy_if(
        &self,
        src: &str,
        size: Option<u64>,
        dst: &str,
        meta: Option<&PutMeta>,
        etag: &str,
    ) -> StoreResult<Option<String>> {
        self.count(
            StoreOp::Copy,
            dst,
            self.inner.copy_if(src, size, dst, meta, etag),
            ok,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn every_request_is_counted_with_its_outcome_and_bytes() {
        let metrics = Arc::new(Metrics::new());
        let memory = Arc::new(MemoryStore::new());
        let store = Metered::new(memory.clone(), metrics.clone());
        block_on(async {
            let meta = PutMeta::default();
            memory.fail_next(
                1,
                crate::store::StoreError::throttled("PutObject", "a", "SlowDown"),
            );
            assert!(
                store
                    .put("a", Bytes::from_static(b"hello"), &meta)
                    .await
                    .is_err()
            );
            store
                .put("a", Bytes::from_static(b"hello"), &meta)
                .await
                .unwrap();
            store
                .put("b", Bytes::from_static(b"hi"), &meta)
                .await
                .unwrap();
            assert!(store.head("a").await.unwrap().is_some());
            assert!(store.head("missing").await.unwrap().is_none());
            assert_eq!(&store.get_range("a", 1, 3).await.unwrap()[..], b"ell");
            assert!(store.copy("nothing", None, "c", None).await.is_err());
            store.delete("b").await.unwrap();
        });
        let s = metrics.snapshot();
        assert_eq!(s.store_requests["PutObject"]["ok"], 2);
        assert_eq!(s.store_requests["PutObject"]["throttled"], 1);
        assert_eq!(s.store_requests["HeadObject"]["ok"], 1);
        assert_eq!(s.store_requests["HeadObject"]["not_found"], 1);
        assert_eq!(s.store_requests["GetObject"]["ok"], 1);
        assert_eq!(s.store_requests["CopyObject"]["not_found"], 1);
        assert_eq!(s.store_requests["DeleteObject"]["ok"], 1);
        assert_eq!(s.store_latency["PutObject"].count, 3);
        // The refused body never reached the store.
        assert_eq!((s.store_bytes_written, s.store_bytes_read), (7, 3));
        assert_eq!((s.requests_last_minute, s.errors_last_minute), (8, 1));
    }
}
