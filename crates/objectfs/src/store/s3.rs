//! aws-sdk-s3 implementation of [`ObjectStore`](super::ObjectStore): AWS,
//! Alibaba OSS through its S3-compatible API, and any S3-compatible server.
//!
//! The client is built from explicit settings only (never the environment
//! or `~/.aws`, unless the config names the AWS default chain as its
//! credential source), so one process can serve volumes with different
//! credentials; where keys come from when they are not static, and when
//! they are fetched again, is `credentials`. Checksums are "when required"
//! because OSS and many S3-compatible stores reject the SDK's default
//! `aws-chunked` CRC uploads.
//! Where a config points, and which service is behind it (hence its
//! CopyObject limit), is worked out in `endpoint`; how an error answer
//! becomes a [`StoreError`] in `errors`; an `http://` endpoint is reached
//! through `plain_http`'s client, an https one through the SDK's.
//! `wire_tests` runs the client against a loopback listener that records
//! the raw requests.

pub mod credentials;
mod endpoint;
mod errors;
mod plain_http;
mod renewing;
#[cfg(test)]
mod wire_tests;

pub use credentials::{CredentialSource, CredentialState, CredentialsUnavailable, RefreshFailure};
pub use endpoint::{EndpointError, ResolvedEndpoint, StoreKind, resolve_endpoint};

use super::*;
use anyhow::bail;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpRequest;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, IdentityCache, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, SharedHttpClient,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, EncodingType, MetadataDirective,
    ObjectIdentifier,
};
use errors::{classify, classify_service};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Connecting to the store; a dead endpoint fails fast and is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt of one request, large part uploads included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Server-side copies and completions of large uploads take longer.
const SLOW_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(600);
/// HEAD, LIST and GET up to its answer's head, the SDK's retries included:
/// a store that accepts connections but never answers must not hold a
/// reader for minutes (objectfs tries a read 6 times: EIO within ~63 s).
/// GET bodies are bounded by the SDK's stalled-stream protection instead.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The SDK's own retries; our layer retries again above it.
const SDK_MAX_ATTEMPTS: u32 = 3;
/// Parts of a multipart server-side copy: at least this, and enough to stay
/// within MAX_PARTS.
const COPY_PART_SIZE: u64 = 512 * 1024 * 1024;
/// UploadPartCopy requests in flight per copy.
const COPY_CONCURRENCY: usize = 4;
/// Copies by parts begun again when the source changes during one.
const COPY_ATTEMPTS: u32 = 3;

/// Where and how to reach one bucket. Deserialized from volume options, so
/// every field but the bucket is optional.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
pub struct S3Config {
    pub bucket: String,
    /// `http://127.0.0.1:9000`, `oss-cn-hangzhou.aliyuncs.com`,
    /// `https://s3.us-west-2.amazonaws.com`; without a scheme, https.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub access_key_secret: Option<String>,
    pub session_token: Option<String>,
    /// `None`: path style for IP-address and `localhost` endpoints,
    /// virtual-hosted style otherwise.
    pub path_style: Option<bool>,
    /// The service behind the endpoint. `None`: OSS for `*.aliyuncs.com`
    /// endpoints, S3 otherwise; the plugin says OSS for `ossfs` volumes,
    /// whose endpoint may be a custom domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StoreKind>,
    /// Where the keys come from when they are not the static ones above
    /// (which must then be unset), fetched again as they change or expire;
    /// `None`: the static keys, or anonymous access without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_source: Option<CredentialSource>,
}

/// Debug by hand so a config in a log line never shows a secret.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &hidden(&self.access_key_secret))
            .field("session_token", &hidden(&self.session_token))
            .field("path_style", &self.path_style)
            .field("kind", &self.kind)
            .field("credential_source", &self.credential_source)
            .finish()
    }
}

/// An [`ObjectStore`] on one bucket through aws-sdk-s3.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Where the keys come from and their expiry; also the secrets
    /// scrubbed from error strings, as a last line of defence.
    credentials: Arc<CredentialState>,
    /// Objects larger than this are copied part by part: the endpoint
    /// kind's CopyObject limit.
    max_copy_object_size: u64,
    copy_part_size: u64,
    /// The service behind the endpoint: OSS also takes its own header for
    /// a write that must not overwrite.
    kind: StoreKind,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// Builds the client from explicit settings only (never from the
    /// environment or ~/.aws, unless the credential source is the AWS
    /// default chain); no network I/O. A profile credential source is read
    /// now; metadata services are asked at the first request.
    pub fn new(config: &S3Config) -> anyhow::Result<S3Store> {
        Self::build(config, None)
    }

    /// Where this store's keys come from, when they expire and the last
    /// failure to fetch them: for the mount's status.
    pub fn credential_state(&self) -> Arc<CredentialState> {
        self.credentials.clone()
    }

    /// Test knob: copy objects larger than `threshold` with UploadPartCopy
    /// in parts of `part_size`, so the multipart path can be exercised
    /// without 5 GiB objects.
    #[doc(hidden)]
    pub fn with_multipart_copy(mut self, threshold: u64, part_size: u64) -> S3Store {
        self.max_copy_object_size = threshold;
        self.copy_part_size = part_size.max(1);
        self
    }

    fn build(config: &S3Config, http_client: Option<SharedHttpClient>) -> anyhow::Result<S3Store> {
        Self::build_with_clock(config, http_client, credentials::Clock::default())
    }

    /// [`S3Store::build`] with the credential provider's clock (tests move
    /// it ahead).
    fn build_with_clock(
        config: &S3Config,
        http_client: Option<SharedHttpClient>,
        clock: credentials::Clock,
    ) -> anyhow::Result<S3Store> {
        let bucket = config.bucket.trim();
        if bucket.is_empty() {
            bail!("the S3 bucket is not set");
        }
        if bucket.contains('/') || bucket.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!(
                "the S3 bucket {bucket:?} is not a bucket name (no '/', spaces or control characters)"
            );
        }
        let resolved = resolve_endpoint(config)?;
        fn non_empty(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.is_empty())
        }
        let key_id = non_empty(&config.access_key_id);
        let secret = non_empty(&config.access_key_secret);
        let token = non_empty(&config.session_token);

        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(resolved.region.clone()))
            .force_path_style(resolved.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            );
        if let Some(url) = &resolved.url {
            builder = builder.endpoint_url(url);
        }
        let credentials = match &config.credential_source {
            Some(source) => {
                if key_id.is_some() || secret.is_some() || token.is_some() {
                    bail!(
                        "the S3 keys and a credential source ({}) are both set; give one or the other",
                        source.describe()
                    );
                }
                let provider =
                    credentials::RefreshingProvider::new(source, &resolved.region, clock)
                        .map_err(anyhow::Error::msg)?;
                let state = provider.state();
                // The provider keeps the keys itself and must be asked
                // before every request, to see a changed profile at once:
                // no SDK cache on top of it.
                builder = builder
                    .credentials_provider(provider)
                    .identity_cache(IdentityCache::no_cache());
                state
            }
            None => {
                builder = static_keys(builder, key_id, secret, token)?;
                let description = if key_id.is_some() {
                    "static keys"
                } else {
                    "anonymous"
                };
                let secrets: Vec<&str> = [secret, token].into_iter().flatten().collect();
                Arc::new(CredentialState::fixed(description, &secrets))
            }
        };
        let http_client = http_client.unwrap_or_else(|| {
            let url = resolved.url.as_deref().unwrap_or_default();
            let plain = url.starts_with("http://") && plain_http::reached_directly(url);
            let make = if plain { plain_client } else { sdk_client };
            SharedHttpClient::new(renewing::RenewingClient::new(make))
        });
        builder = builder.http_client(http_client);
        Ok(S3Store {
            client: Client::from_conf(builder.build()),
            bucket: bucket.to_string(),
            credentials,
            max_copy_object_size: resolved.kind.max_copy_object_size(),
            copy_part_size: COPY_PART_SIZE,
            kind: resolved.kind,
        })
    }

    /// Maps an SDK error to a [`StoreError`]; `op` names the request.
    fn error<E>(&self, op: &'static str, key: &str, err: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let context = format!("{op} {}/{key}", self.bucket);
        let mut mapped = classify(op, key, &context, &err);
        if let Some(message) = mapped.message_mut() {
            *message = self.scrub(std::mem::take(message));
        }
        mapped
    }

    /// As [`Self::error`] for a read that answers `None` when the object
    /// does not exist (HEAD, a whole GET).
    fn missing_is_none<E, T>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E>,
    ) -> StoreResult<Option<T>>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match self.error(op, key, err) {
            StoreError::NotFound { .. } => Ok(None),
            other => Err(other),
        }
    }

    /// A GET whose answer began but whose body could not be read (the
    /// connection broke): worth another try.
    fn unreadable_body<E: std::error::Error>(&self, key: &str, err: E) -> StoreError {
        StoreError::transient(
            "GetObject",
            key,
            self.scrub(format!(
                "GetObject {}/{key}: reading the body: {}",
                self.bucket,
                DisplayErrorContext(&err)
            )),
        )
    }

    fn scrub(&self, s: String) -> String {
        self.credentials.scrub(s)
    }

    /// Maps the error of a write sent with `condition`: an `If-Match` write
    /// answered "no such key" found no object to match, so the condition
    /// failed (the other refusals are classified as such already).
    fn write_error<E>(
        &self,
        op: &'static str,
        key: &str,
        err: SdkError<E>,
        condition: Option<&WriteCondition>,
    ) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let no_such_key = err.code() == Some("NoSuchKey");
        match self.error(op, key, err) {
            StoreError::NotFound { .. }
                if no_such_key && matches!(condition, Some(WriteCondition::Etag(_))) =>
            {
                StoreError::precondition_failed(
                    op,
                    key,
                    format!(
                        "NoSuchKey: no object to match If-Match ({op} {}/{key}, HTTP 404)",
                        self.bucket
                    ),
                )
            }
            other => other,
        }
    }

    /// Adds to a write what `condition` asks the store for beyond the
    /// SDK's `If-Match` / `If-None-Match`: on OSS, its own
    /// `x-oss-forbid-overwrite: true` for "no object" (OSS documents it for
    /// PutObject and CompleteMultipartUpload, and refuses with 409
    /// `FileAlreadyExists`).
    fn condition_headers(
        &self,
        condition: Option<&WriteCondition>,
    ) -> impl Fn(&mut HttpRequest) + Send + Sync + 'static {
        let forbid = self.kind == StoreKind::Oss && condition == Some(&WriteCondition::Absent);
        move |request: &mut HttpRequest| {
            if forbid {
                request.headers_mut().insert(OSS_FORBID_OVERWRITE, "true");
            }
        }
    }

    /// PutObject, conditional when `condition` is given.
    async fn put_object(
        &self,
        key: &str,
        body: Bytes,
        meta: &PutMeta,
        condition: Option<&WriteCondition>,
    ) -> StoreResult<Option<String>> {
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .set_content_type(meta.content_type.clone())
            .set_metadata(Some(to_hash_map(&meta.metadata)))
            .set_if_none_match(if_none_match(condition))
            .set_if_match(if_match(condition))
            .customize()
            .mutate_request(self.condition_headers(condition))
            .send()
            .await
            .map_err(|e| self.write_error("PutObject", key, e, condition))?;
        Ok(out.e_tag)
    }

    /// CompleteMultipartUpload, conditional when `condition` is given.
    async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        mut parts: Vec<(i32, String)>,
        condition: Option<&WriteCondition>,
    ) -> StoreResult<Option<String>> {
        parts.sort_by_key(|(n, _)| *n);
        let count = parts.len();
        let expected = multipart_etag(&parts);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .into_iter()
                    .map(|(n, etag)| CompletedPart::builder().part_number(n).e_tag(etag).build())
                    .collect(),
            ))
            .build();
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .set_if_none_match(if_none_match(condition))
            .set_if_match(if_match(condition))
            .customize()
            .config_override(slow_attempts())
            .mutate_request(self.condition_headers(condition))
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.e_tag),
            // Some servers (moto 5) answer 200 with a body whose root
            // element the SDK does not expect. A 200 without an error code
            // means the upload was assembled; check that the object is
            // there as this upload made it: the ETag these parts give
            // (where their ETags are MD5s), else one of this many parts.
            Err(SdkError::ServiceError(e))
                if e.raw().status().is_success() && e.err().code().is_none() =>
            {
                let etag = self.head(key).await?.and_then(|m| m.etag);
                let assembled = etag.as_deref().is_some_and(|t| {
                    let t = t.trim_matches('"');
                    match &expected {
                        Some(want) => t == want,
                        None => t.ends_with(&format!("-{count}")),
                    }
                });
                if assembled {
                    Ok(etag)
                } else {
                    Err(StoreError::transient(
                        "CompleteMultipartUpload",
                        key,
                        format!(
                            "CompleteMultipartUpload of {key:?} answered 200 with an unreadable body and the object is not there"
                        ),
                    ))
                }
            }
            Err(e) => Err(self.write_error("CompleteMultipartUpload", key, e, condition)),
        }
    }

    /// CopyObject with the directive and headers `meta` asks for.
    async fn copy_object(
        &self,
        src: &str,
        dst: &str,
        meta: Option<&PutMeta>,
        if_match: Option<&str>,
    ) -> StoreResult<Option<String>> {
        let mut request = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(dst)
            .copy_source(copy_source(&self.bucket, src))
            .set_copy_source_if_match(if_match.map(str::to_string));
        request = match meta {
            Some(meta) => request
                .metadata_directive(MetadataDirective::Replace)
                .set_content_type(meta.content_type.clone())
                .set_metadata(Some(to_hash_map(&meta.metadata))),
            None => request.metadata_directive(MetadataDirective::Copy),
        };
        let out = request
            .customize()
            .config_override(slow_attempts())
            .send()
            .await
            .map_err(|e| self.error("CopyObject", src, e))?;
        Ok(out
            .copy_object_result()
            .and_then(|r| r.e_tag())
            .map(str::to_string))
    }

    /// A copy part by part with UploadPartCopy, for objects CopyObject
    /// refuses. Metadata comes from `meta`, else from the source.
    async fn copy_multipart(
        &self,
        src: &ObjectMeta,
        dst: &str,
        meta: Option<&PutMeta>,
    ) -> StoreResult<Option<String>> {
        let headers = match meta {
            Some(meta) => meta.clone(),
            None => PutMeta {
                content_type: src.content_type.clone(),
                metadata: src.metadata.clone(),
            },
        };
        let part_size = self.copy_part_size.max(src.size.div_ceil(MAX_PARTS));
        let upload_id = self.create_multipart(dst, &headers).await?;
        match self.copy_parts(src, dst, &upload_id, part_size).await {
            Ok(parts) => match self.complete_multipart(dst, &upload_id, parts).await {
                Ok(etag) => Ok(etag),
                Err(e) => {
                    let _ = self.abort_multipart(dst, &upload_id).await;
                    Err(e)
                }
            },
            Err(e) => {
                let _ = self.abort_multipart(dst, &upload_id).await;
                Err(e)
            }
        }
    }

    async fn copy_parts(
        &self,
        src: &ObjectMeta,
        dst: &str,
        upload_id: &str,
        part_size: u64,
    ) -> StoreResult<Vec<(i32, String)>> {
        let mut ranges = Vec::new();
        let mut start = 0;
        while start < src.size {
            let end = (start + part_size).min(src.size);
            ranges.push((ranges.len() as i32 + 1, start, end - 1));
            start = end;
        }
        let mut parts = Vec::with_capacity(ranges.len());
        let mut tasks = tokio::task::JoinSet::new();
        let mut pending = ranges.into_iter();
        loop {
            while tasks.len() < COPY_CONCURRENCY {
                let Some((number, first, last)) = pending.next() else {
                    break;
                };
                let store = self.clone();
                let (src_key, dst, upload_id) =
                    (src.key.clone(), dst.to_string(), upload_id.to_string());
                let src_etag = src.etag.clone();
                tasks.spawn(async move {
                    let out = store
                        .client
                        .upload_part_copy()
                        .bucket(&store.bucket)
                        .key(&dst)
                        .upload_id(&upload_id)
                        .part_number(number)
                        .copy_source(copy_source(&store.bucket, &src_key))
                        .copy_source_range(format!("bytes={first}-{last}"))
                        // Every part of the one version the HEAD saw: a
                        // rewrite meanwhile fails the part (412), never
                        // splices two versions.
                        .set_copy_source_if_match(src_etag.clone())
                        .customize()
                        .config_override(slow_attempts())
                        .send()
                        .await
                        .map_err(|e| store.error("UploadPartCopy", &src_key, e))?;
                    let etag = out
                        .copy_part_result()
                        .and_then(|r| r.e_tag())
                        .ok_or_else(|| {
                            StoreError::transient(
                                "UploadPartCopy",
                                dst.clone(),
                                format!("UploadPartCopy {dst}: no ETag in the answer"),
                            )
                        })?;
                    Ok::<_, StoreError>((number, etag.to_string()))
                });
            }
            match tasks.join_next().await {
                None => break,
                Some(Ok(Ok(part))) => parts.push(part),
                Some(Ok(Err(e))) => return Err(e),
                Some(Err(join)) => {
                    return Err(StoreError::transient(
                        "UploadPartCopy",
                        dst,
                        format!("UploadPartCopy task failed: {join}"),
                    ));
                }
            }
        }
        parts.sort_by_key(|(n, _)| *n);
        Ok(parts)
    }
}

impl S3Store {
    /// One DeleteObjects request for at most [`MAX_DELETE_KEYS`] keys, in
    /// quiet mode (the answer lists only the keys that failed). It carries
    /// Content-MD5, see [`with_content_md5`].
    async fn delete_objects(&self, keys: &[String]) -> StoreResult<()> {
        const OP: &str = "DeleteObjects";
        let first = keys.first().map_or("", String::as_str);
        let local = |e: aws_sdk_s3::error::BuildError| {
            StoreError::permanent(OP, first, format!("{OP} {}: {e}", self.bucket))
        };
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(local)?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(local)?;
        let out = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .customize()
            .mutate_request(with_content_md5)
            .send()
            .await
            .map_err(|e| self.error(OP, first, e))?;
        // A key that was not there is deleted, as DeleteObject has it.
        let failed = out.errors().iter().find_map(|e| {
            let key = e.key().unwrap_or(first);
            let context = format!("{OP} {}/{key}", self.bucket);
            match classify_service(OP, key, &context, 200, e.code(), e.message()) {
                StoreError::NotFound { .. } => None,
                mut other => {
                    if let Some(message) = other.message_mut() {
                        *message = self.scrub(std::mem::take(message));
                    }
                    Some(other)
                }
            }
        });
        failed.map_or(Ok(()), Err)
    }
}

/// Sets DeleteObjects' Content-MD5 header and drops the SDK's own checksum
/// headers, before the request is signed. S3 requires Content-MD5 on
/// DeleteObjects and so does OSS, with no alternative; aws-sdk-s3 since its
/// flexible checksums sends `x-amz-checksum-crc32` instead, even with
/// checksums "when required", and its MD5 choice is deprecated (it computes
/// a CRC32). The body is the XML list of keys, always in memory.
fn with_content_md5(request: &mut HttpRequest) {
    use md5::Digest;
    let Some(body) = request.body().bytes() else {
        return;
    };
    let md5 = aws_smithy_types::base64::encode(md5::Md5::digest(body));
    let headers = request.headers_mut();
    let checksums: Vec<String> = headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .filter(|name| {
            name.starts_with("x-amz-checksum-") || name == "x-amz-sdk-checksum-algorithm"
        })
        .collect();
    for name in checksums {
        headers.remove(name);
    }
    headers.insert("content-md5", md5);
}

/// OSS's request header that makes a write fail where an object exists.
const OSS_FORBID_OVERWRITE: &str = "x-oss-forbid-overwrite";

/// `If-None-Match` of a write under `condition`.
fn if_none_match(condition: Option<&WriteCondition>) -> Option<String> {
    matches!(condition, Some(WriteCondition::Absent)).then(|| "*".to_string())
}

/// `If-Match` of a write under `condition`.
fn if_match(condition: Option<&WriteCondition>) -> Option<String> {
    match condition {
        Some(WriteCondition::Etag(etag)) => Some(etag.clone()),
        _ => None,
    }
}

/// A config override with the long attempt timeout, for server-side work.
fn slow_attempts() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(SLOW_ATTEMPT_TIMEOUT)
            .build(),
    )
}

/// The client signs with static keys, or not at all without them.
fn static_keys(
    builder: aws_sdk_s3::config::Builder,
    key_id: Option<&str>,
    secret: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<aws_sdk_s3::config::Builder> {
    Ok(match (key_id, secret) {
        (Some(id), Some(secret)) => builder.credentials_provider(Credentials::new(
            id,
            secret,
            token.map(str::to_string),
            None,
            "opensandbox-volume",
        )),
        (Some(_), None) => {
            bail!("the S3 access key secret is missing (the access key id is set)")
        }
        (None, Some(_)) => {
            bail!("the S3 access key id is missing (the access key secret is set)")
        }
        (None, None) if token.is_some() => {
            bail!("the S3 session token is set without an access key id and secret")
        }
        // Anonymous: no credentials provider, requests go unsigned.
        (None, None) => builder.allow_no_auth(),
    })
}

/// The client of `http://` endpoints reached directly (`plain_http`), with
/// a connection pool of its own.
fn plain_client() -> SharedHttpClient {
    SharedHttpClient::new(plain_http::PlainHttpClient::default())
}

/// The SDK's default client (hyper 1 with rustls on aws-lc, the proxy of
/// the environment's settings), as the SDK builds it for this behaviour
/// version, with a connection pool of its own: built here so that it can
/// be renewed (`renewing`).
fn sdk_client() -> SharedHttpClient {
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig, tls};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// A config override bounding a read request as a whole, see READ_TIMEOUT.
fn read_timeouts() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default().timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(READ_TIMEOUT)
            .operation_timeout(READ_TIMEOUT)
            .build(),
    )
}

/// The ETag S3 gives an object assembled from parts with these ETags
/// (without quotes): the MD5 of their MD5s, a dash, their count. None
/// when a part's ETag is not an MD5 (SSE-KMS, some servers).
fn multipart_etag(parts: &[(i32, String)]) -> Option<String> {
    use md5::Digest;
    let mut md5s = Vec::with_capacity(parts.len() * 16);
    for (_, etag) in parts {
        let hex = etag.trim_matches('"');
        if hex.len() != 32 {
            return None;
        }
        for i in (0..32).step_by(2) {
            md5s.push(u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()?);
        }
    }
    let digest = md5::Md5::digest(&md5s);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("{hex}-{}", parts.len()))
}

/// `x-amz-copy-source`: `bucket/key`, every byte of the key percent-encoded
/// except unreserved characters and '/'.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() * 3 + 1);
    out.push_str(bucket);
    out.push('/');
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a key from a listing with `encoding-type=url` (S3 encodes a space
/// as '+' there, as form encoding does).
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn to_hash_map(metadata: &BTreeMap<String, String>) -> HashMap<String, String> {
    metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn to_system_time(t: Option<&DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

fn size(len: Option<i64>) -> u64 {
    len.unwrap_or(0).max(0) as u64
}

/// What a HEAD or a GET says of an object: size, date, ETag, type, and
/// the user metadata with lower-case names.
fn object_meta(
    key: &str,
    content_length: Option<i64>,
    last_modified: Option<&aws_sdk_s3::primitives::DateTime>,
    e_tag: Option<&str>,
    content_type: Option<&str>,
    metadata: Option<&std::collections::HashMap<String, String>>,
) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size: size(content_length),
        last_modified: to_system_time(last_modified),
        etag: e_tag.map(str::to_string),
        content_type: content_type.map(str::to_string),
        metadata: metadata
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .customize()
            .config_override(read_timeouts())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => return self.missing_is_none("HeadObject", key, e),
        };
        Ok(Some(object_meta(
            key,
            out.content_length(),
            out.last_modified(),
            out.e_tag(),
            out.content_type(),
            out.metadata(),
        )))
    }

    async fn get_range(&self, key: &str, start: u64, len: u64) -> StoreResult<Bytes> {
        let body = self.get_range_segments(key, start, len).await?;
        Ok(body.slice(0, body.len()))
    }

    async fn get_range_segments(&self, key: &str, start: u64, len: u64) -> StoreResult<Segments> {
        Ok(self.get_range_tagged(key, start, len).await?.0)
    }

    async fn get_range_tagged(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> StoreResult<(Segments, Option<String>)> {
        if len == 0 {
            return Ok((Segments::default(), None));
        }
        let last = start.saturating_add(len - 1);
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={start}-{last}"))
            .customize()
            .config_override(read_timeouts())
            .send()
            .await
        {
            Ok(out) => out,
            // A range starting at or after the end of the object.
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 416 => {
                return Ok((Segments::default(), None));
            }
            Err(e) => return Err(self.error("GetObject", key, e)),
        };
        let etag = out.e_tag.clone();
        let ranged = out.content_range().is_some();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| self.unreadable_body(key, e))?;
        let body = Segments::new(body.into_segments());
        // A server that ignores Range sends the whole object.
        if !ranged && body.len() as u64 > len {
            let from = start.min(body.len() as u64) as usize;
            let to = start.saturating_add(len).min(body.len() as u64) as usize;
            return Ok((Segments::from(body.slice(from, to)), etag));
        }
        Ok((body, etag))
    }

    async fn get_whole(
        &self,
        key: &str,
        max: u64,
    ) -> StoreResult<Option<(ObjectMeta, Option<Bytes>)>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .customize()
            .config_override(read_timeouts())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => return self.missing_is_none("GetObject", key, e),
        };
        let meta = object_meta(
            key,
            out.content_length(),
            out.last_modified(),
            out.e_tag(),
            out.content_type(),
            out.metadata(),
        );
        if meta.size > max {
            // Dropping the unread body closes its connection.
            return Ok(Some((meta, None)));
        }
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| self.unreadable_body(key, e))?;
        let body = body.into_bytes();
        if body.len() as u64 != meta.size {
            return Err(StoreError::transient(
                "GetObject",
                key,
                format!(
                    "GetObject {}/{key}: {} bytes received of {}",
                    self.bucket,
                    body.len(),
                    meta.size
                ),
            ));
        }
        Ok(Some((meta, Some(body))))
    }

    async fn put(&self, key: &str, body: Bytes, meta: &PutMeta) -> StoreResult<Option<String>> {
        self.put_object(key, body, meta, None).await
    }

    async fn put_if(
        &self,
        key: &str,
        body: Bytes,
        meta: &PutMeta,
        condition: &WriteCondition,
    ) -> StoreResult<Option<String>> {
        self.put_object(key, body, meta, Some(condition)).await
    }

    async fn create_multipart(&self, key: &str, meta: &PutMeta) -> StoreResult<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_content_type(meta.content_type.clone())
            .set_metadata(Some(to_hash_map(&meta.metadata)))
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key, e))?;
        out.upload_id().map(str::to_string).ok_or_else(|| {
            StoreError::transient(
                "CreateMultipartUpload",
                key,
                format!(
                    "CreateMultipartUpload {}/{key}: no upload id in the answer",
                    self.bucket
                ),
            )
        })
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> StoreResult<String> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.error("UploadPart", key, e))?;
        out.e_tag().map(str::to_string).ok_or_else(|| {
            StoreError::transient(
                "UploadPart",
                key,
                format!("UploadPart {}/{key}: no ETag in the answer", self.bucket),
            )
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
    ) -> StoreResult<Option<String>> {
        self.complete(key, upload_id, parts, None).await
    }

    async fn complete_multipart_if(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<(i32, String)>,
        condition: &WriteCondition,
    ) -> StoreResult<Option<String>> {
        self.complete(key, upload_id, parts, Some(condition)).await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> StoreResult<()> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| self.error("AbortMultipartUpload", key, e))?;
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        token: Option<String>,
        max_keys: i32,
    ) -> StoreResult<ListPage> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix((!prefix.is_empty()).then(|| prefix.to_string()))
            .set_delimiter(delimiter.filter(|d| !d.is_empty()).map(str::to_string))
            .set_continuation_token(token)
            .set_max_keys((max_keys > 0).then_some(max_keys))
            // Keys may hold characters XML 1.0 cannot carry.
            .encoding_type(EncodingType::Url)
            .customize()
            .config_override(read_timeouts())
            .send()
            .await
            .map_err(|e| self.error("ListObjectsV2", prefix, e))?;
        // Decode only if the server says it encoded: some ignore the request.
        let encoded = out.encoding_type() == Some(&EncodingType::Url);
        let decode = |s: &str| {
            if encoded {
                url_decode(s)
            } else {
                s.to_string()
            }
        };
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectMeta {
                    key: decode(o.key()?),
                    size: size(o.size()),
                    last_modified: to_system_time(o.last_modified()),
                    etag: o.e_tag().map(str::to_string),
                    content_type: None,
                    metadata: BTreeMap::new(),
                })
            })
            .collect();
        let common_prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(decode))
            .collect();
        let next_token = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_string)
        } else {
            None
        };
        Ok(ListPage {
            objects,
            common_prefixes,
            next_token,
        })
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.error("DeleteObject", key, e) {
                StoreError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        for chunk in keys.chunks(MAX_DELETE_KEYS) {
            self.delete_objects(chunk).await?;
        }
        Ok(())
    }

    async fn copy(
        &self,
        src: &str,
        size: Option<u64>,
        dst: &str,
        meta: Option<&PutMeta>,
    ) -> StoreResult<Option<String>> {
        self.copy_checked(src, size, dst, meta, None).await
    }

    async fn copy_if(
        &self,
        src: &str,
        size: Option<u64>,
        dst: &str,
        meta: Option<&PutMeta>,
        etag: &str,
    ) -> StoreResult<Option<String>> {
        self.copy_checked(src, size, dst, meta, Some(etag)).await
    }
}

impl S3Store {
    /// A server-side copy, of the version with ETag `if_match` only when
    /// given (`x-amz-copy-source-if-match`; a copy by parts checks it
    /// against its HEAD, and sends the HEAD's on every part).
    async fn copy_checked(
        &self,
        src: &str,
        size: Option<u64>,
        dst: &str,
        meta: Option<&PutMeta>,
        if_match: Option<&str>,
    ) -> StoreResult<Option<String>> {
        // A known size spares the HEAD. Should the object have grown past
        // the limit since (S3 refuses CopyObject with a 400; a store may
        // say it another way), the copy is done as without a size: only a
        // missing source and a retryable failure are answers.
        if size.is_some_and(|s| s <= self.max_copy_object_size) {
            match self.copy_object(src, dst, meta, if_match).await {
                Err(e) if !matches!(e, StoreError::NotFound { .. }) && !e.is_transient() => {
                    tracing::debug!(error = %e, "CopyObject with a known size refused; asking the size");
                }
                done => return done,
            }
        }
        let mut attempt = 1;
        loop {
            let source = self
                .head(src)
                .await?
                .ok_or_else(|| StoreError::not_found("CopyObject", src))?;
            if let Some(want) = if_match
                && source.etag.as_deref() != Some(want)
            {
                return Err(StoreError::precondition_failed(
                    "CopyObject",
                    src,
                    "the source is another version than the one to copy",
                ));
            }
            if source.size <= self.max_copy_object_size {
                return self.copy_object(src, dst, meta, if_match).await;
            }
            match self.copy_multipart(&source, dst, meta).await {
                // The source was rewritten during the copy: again, whole,
                // from the version there now.
                Err(StoreError::PreconditionFailed { .. }) if attempt < COPY_ATTEMPTS => {
                    tracing::debug!(src, "the source of a copy by parts changed; copying again");
                    attempt += 1;
                }
                done => return done,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_of_an_object_assembled_from_parts() {
        let parts = vec![
            (1, "\"0cc175b9c0f1b6a831c399e269772661\"".to_string()), // MD5 of "a"
            (2, "92eb5ffee6ae2fec3ad71c777531578f".to_string()),     // of "b"
        ];
        assert_eq!(
            multipart_etag(&parts).as_deref(),
            Some("96e024ba2074fe77e8e965ba43a704be-2")
        );
        let kms = vec![(1, "\"not-an-md5\"".to_string())];
        assert_eq!(multipart_etag(&kms), None);
    }

    fn config(endpoint: Option<&str>) -> S3Config {
        S3Config {
            bucket: "bucket".into(),
            endpoint: endpoint.map(str::to_string),
            ..S3Config::default()
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let err = |c: &S3Config| S3Store::new(c).unwrap_err().to_string();
        for bad in [
            "ftp://x",
            "http://",
            "http://h:port",
            "a b",
            "http://h/?q",
            "",
        ] {
            let e = err(&config(Some(bad)));
            assert!(e.contains("endpoint"), "{bad:?}: {e}");
        }
        assert!(err(&S3Config::default()).contains("bucket"));
        let mut c = config(None);
        c.region = Some("".into());
        assert!(err(&c).contains("region"));
        let mut c = config(None);
        c.access_key_id = Some("AKID".into());
        assert!(err(&c).contains("secret"));
        let mut c = config(None);
        c.access_key_secret = Some("s3cr3t-s3cr3t".into());
        let e = err(&c);
        assert!(e.contains("access key id") && !e.contains("s3cr3t"), "{e}");
        let mut c = config(None);
        c.session_token = Some("tok".into());
        assert!(err(&c).contains("session token"));
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = config(None);
        c.access_key_id = Some("AKID".into());
        c.access_key_secret = Some("the-secret-value".into());
        c.session_token = Some("the-token-value".into());
        let text = format!("{c:?}");
        assert!(
            text.contains("AKID") && text.contains("<redacted>"),
            "{text}"
        );
        assert!(!text.contains("the-secret-value") && !text.contains("the-token-value"));
        let store = S3Store::new(&c).unwrap();
        assert!(!format!("{store:?}").contains("the-secret-value"));
    }

    #[test]
    fn copy_source_is_percent_encoded() {
        assert_eq!(copy_source("b", "a/b.txt"), "b/a/b.txt");
        assert_eq!(
            copy_source("b", "d i r/x+y%z ü"),
            "b/d%20i%20r/x%2By%25z%20%C3%BC"
        );
    }

    #[test]
    fn url_decode_handles_plus_percent_and_junk() {
        assert_eq!(url_decode("a+b%2Bc%25d%C3%BC"), "a b+c%dü");
        assert_eq!(url_decode("100%"), "100%");
        assert_eq!(url_decode("%zz"), "%zz");
    }
}
