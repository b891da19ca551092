//! Where a mount's S3 credentials come from, and when they are fetched
//! again.
//!
//! Without a [`CredentialSource`] a mount signs with the static keys of its
//! [`S3Config`](super::S3Config), or not at all. With one, the store's
//! client asks a `RefreshingProvider` for keys before every request; it
//! answers from its cache and fetches again:
//! - when it has no keys yet, or they have expired: the request waits;
//! - ahead of their expiry, [`REFRESH_AHEAD`] before it, or half the keys'
//!   lifetime for short-lived ones: one request fetches, the others go on
//!   with the current keys;
//! - for a profile, when its file changed (looked at, with one `stat`, at
//!   most once per [`PROFILE_CHECK_INTERVAL`]): the request waits, so the
//!   keys an operator's rotation job wrote are used within about a second.
//!
//! A fetch that fails, or brings no newer keys, is not tried again for
//! [`PROFILE_RETRY`] (a profile) or [`REMOTE_RETRY`] (a metadata service);
//! meanwhile the current keys are used while they are valid. A failure is
//! logged once per distinct message and kept in the shared
//! [`CredentialState`] (the source's description, the keys' expiry, the
//! failure and since when), never with a key: keys are in no log line,
//! error or `Debug` output. Keys that have expired are never sent; the
//! request fails with [`CredentialsUnavailable`], naming the source and
//! the last failure.
//!
//! The sources: a credential profile file (`crate::profile`, read again by
//! the mount itself), an Alibaba Cloud ECS RAM role (`ecs`: the instance
//! metadata service in hardened mode) and the AWS SDK's own default chain
//! (aws-config: environment, profile files, web identity token file, ECS
//! container endpoint, EC2 IMDS, reading only this process's environment).
//! The pure decision of what to do with a request is `plan`.

mod ecs;
#[cfg(test)]
pub(super) mod fake_metadata;
#[cfg(test)]
pub(super) mod tests;

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError as ProviderError;
use aws_credential_types::provider::{ProvideCredentials, future};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use ecs::DEFAULT_ENDPOINT as DEFAULT_ECS_METADATA_ENDPOINT;

/// Keys are fetched again at most this long before they expire.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// A profile file is looked at (one `stat`) at most this often.
pub const PROFILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// After a profile read that failed or brought no newer keys, the next
/// one waits this long.
pub const PROFILE_RETRY: Duration = Duration::from_secs(1);
/// After a metadata fetch that failed or brought no newer keys, the next
/// one waits this long.
pub const REMOTE_RETRY: Duration = Duration::from_secs(5);
/// Secrets kept for scrubbing error strings: the current keys' and the
/// previous ones' (secret and token each).
const SCRUB_KEEP: usize = 4;

/// Where a mount's keys come from when they are not static. Carried in
/// [`S3Config::credential_source`](super::S3Config::credential_source);
/// holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialSource {
    /// The credential profile `DIR/NAME.json` ([`crate::profile`]), read
    /// at start, again when the file changes and before its `expiration`.
    Profile { dir: PathBuf, name: String },
    /// The RAM role of the Alibaba Cloud ECS instance, from its metadata
    /// service in hardened mode (a session token first).
    EcsRamRole {
        /// The role; `None`: the one the metadata service names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        /// `http://HOST[:PORT]`; `None`: [`DEFAULT_ECS_METADATA_ENDPOINT`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
    /// The AWS SDK's default credentials chain, as this process sees it.
    AwsDefault {
        /// The EC2 instance metadata endpoint; `None`: the SDK's (its
        /// default, or `AWS_EC2_METADATA_SERVICE_ENDPOINT`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        imds_endpoint: Option<String>,
    },
}

impl CredentialSource {
    /// What the mount says about where its keys come from; never a key.
    pub fn describe(&self) -> String {
        match self {
            CredentialSource::Profile { name, .. } => format!("profile {name}"),
            CredentialSource::EcsRamRole { role: Some(r), .. } => format!("ECS RAM role {r}"),
            CredentialSource::EcsRamRole { role: None, .. } => {
                "ECS RAM role of the instance".to_string()
            }
            CredentialSource::AwsDefault { .. } => "AWS default chain".to_string(),
        }
    }
}

/// A failed fetch, as the mount's status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFailure {
    /// One sentence naming the source and what went wrong; no key.
    pub message: String,
    /// When the current run of failures began.
    pub since: SystemTime,
}

/// What a mount knows about its credentials, shared between the provider
/// that keeps it up to date and whoever reports on the mount
/// ([`S3Store::credential_state`](super::S3Store::credential_state)).
pub struct CredentialState {
    inner: Mutex<StateInner>,
}

struct StateInner {
    description: String,
    expires_at: Option<SystemTime>,
    obtained_at: Option<SystemTime>,
    failure: Option<RefreshFailure>,
    /// Secrets of the current and previous keys, scrubbed from error
    /// strings as a last line of defence.
    secrets: Vec<String>,
}

impl std::fmt::Debug for CredentialState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().unwrap();
        f.debug_struct("CredentialState")
            .field("description", &inner.description)
            .field("expires_at", &inner.expires_at)
            .field("obtained_at", &inner.obtained_at)
            .field("failure", &inner.failure)
            .finish_non_exhaustive()
    }
}

impl CredentialState {
    fn new(description: String) -> CredentialState {
        CredentialState {
            inner: Mutex::new(StateInner {
                description,
                expires_at: None,
                obtained_at: None,
                failure: None,
                secrets: Vec::new(),
            }),
        }
    }

    /// The state of static keys (or of none): they never change.
    pub(super) fn fixed(description: &str, secrets: &[&str]) -> CredentialState {
        let state = CredentialState::new(description.to_string());
        state.inner.lock().unwrap().secrets = scrubbable(secrets);
        state
    }

    /// Where the keys come from: `profile team-a`, `ECS RAM role web-role`,
    /// `AWS default chain`, `static keys`, `anonymous`. Never a key.
    pub fn describe(&self) -> String {
        self.inner.lock().unwrap().description.clone()
    }

    /// When the keys in use expire; `None` for keys without an expiry.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.inner.lock().unwrap().expires_at
    }

    /// When the keys in use were obtained; `None` for static keys.
    pub fn obtained_at(&self) -> Option<SystemTime> {
        self.inner.lock().unwrap().obtained_at
    }

    /// The last fetch's failure, until a fetch succeeds.
    pub fn last_failure(&self) -> Option<RefreshFailure> {
        self.inner.lock().unwrap().failure.clone()
    }

    /// `s` with every known secret replaced by `<redacted>`.
    pub(super) fn scrub(&self, mut s: String) -> String {
        for secret in &self.inner.lock().unwrap().secrets {
            s = s.replace(secret.as_str(), "<redacted>");
        }
        s
    }

    fn record_keys(&self, creds: &Credentials, now: SystemTime) {
        let mut inner = self.inner.lock().unwrap();
        inner.expires_at = creds.expiry();
        inner.obtained_at = Some(now);
        let mut secrets = scrubbable(&[creds.secret_access_key()]);
        secrets.extend(scrubbable(
            &creds.session_token().into_iter().collect::<Vec<_>>(),
        ));
        secrets.extend(std::mem::take(&mut inner.secrets));
        secrets.dedup();
        secrets.truncate(SCRUB_KEEP);
        inner.secrets = secrets;
    }

    fn record_success(&self) {
        self.inner.lock().unwrap().failure = None;
    }

    /// Records a failure; true when its message differs from the last one
    /// (then it is worth a log line).
    fn record_failure(&self, message: &str, now: SystemTime) -> bool {
        let mut inner = self.inner.lock().unwrap();
        match &mut inner.failure {
            Some(f) if f.message == message => false,
            Some(f) => {
                f.message = message.to_string();
                true
            }
            None => {
                inner.failure = Some(RefreshFailure {
                    message: message.to_string(),
                    since: now,
                });
                true
            }
        }
    }

    fn set_description(&self, description: String) {
        self.inner.lock().unwrap().description = description;
    }
}

fn scrubbable(secrets: &[&str]) -> Vec<String> {
    secrets
        .iter()
        .filter(|s| s.len() >= 8)
        .map(|s| s.to_string())
        .collect()
}

/// A request failed because no valid keys could be had: the source's
/// description and the last fetch's failure. What the store's client
/// reports (inside its own error) when the provider cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no valid credentials from the {source_description}: {message}")]
pub struct CredentialsUnavailable {
    pub source_description: String,
    pub message: String,
}

/// The provider's clock: the real one, moved ahead by tests.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock {
    ahead_ms: Arc<AtomicU64>,
}

impl Clock {
    fn now(&self) -> (Instant, SystemTime) {
        let ahead = Duration::from_millis(self.ahead_ms.load(Ordering::SeqCst));
        (Instant::now() + ahead, SystemTime::now() + ahead)
    }

    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        self.ahead_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

/// What a request does with the provider's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The current keys.
    Use,
    /// The current keys, after one request fetches newer ones ahead of
    /// their expiry (the others use them at once).
    RefreshAhead,
    /// Fetch, and wait for the answer.
    Fetch,
    /// Fail with the last failure: no valid keys, and the next fetch is
    /// not due yet.
    Fail,
}

/// The keys in use, as [`plan`] sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// When they were obtained (first seen, if fetched again unchanged).
    pub since: SystemTime,
    pub expires: Option<SystemTime>,
    /// The source says they are outdated (the profile file changed).
    pub stale: bool,
}

/// How long before expiry keys obtained at `since` are fetched again:
/// [`REFRESH_AHEAD`], or half their lifetime when that is shorter.
pub(crate) fn refresh_margin(since: SystemTime, expires: SystemTime) -> Duration {
    let lifetime = expires.duration_since(since).unwrap_or_default();
    REFRESH_AHEAD.min(lifetime / 2)
}

/// The decision for one request at `now`: `held` the keys in use (none
/// yet: `None`), `quiet` whether a recent fetch failed or brought nothing
/// newer, so the next one is not due.
pub(crate) fn plan(now: SystemTime, held: Option<Held>, quiet: bool) -> Plan {
    let Some(held) = held else {
        return if quiet { Plan::Fail } else { Plan::Fetch };
    };
    let expired = held.expires.is_some_and(|e| e <= now);
    if expired {
        return if quiet { Plan::Fail } else { Plan::Fetch };
    }
    if quiet {
        return Plan::Use;
    }
    if held.stale {
        return Plan::Fetch;
    }
    match held.expires {
        Some(e) if now + refresh_margin(held.since, e) >= e => Plan::RefreshAhead,
        _ => Plan::Use,
    }
}

/// A profile file's identity: whether it changed since it was read. A file
/// renamed over it is a new inode; one rewritten in place has a new
/// modification time (and usually size). Not the change time: a `chmod`
/// changes no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        })
    }
}

/// A credential profile file, watched.
#[derive(Debug)]
struct ProfileFile {
    dir: PathBuf,
    name: String,
    path: PathBuf,
    watch: Mutex<Watch>,
}

#[derive(Debug, Default)]
struct Watch {
    checked: Option<Instant>,
    /// The file's identity at the last look (`None`: it was not there).
    seen: Option<FileId>,
}

impl ProfileFile {
    /// The file's identity now, looked at no more than once per
    /// [`PROFILE_CHECK_INTERVAL`] (the last look's otherwise).
    fn look(&self, now: Instant) -> Option<FileId> {
        let mut watch = self.watch.lock().unwrap();
        let due = watch
            .checked
            .is_none_or(|t| now.saturating_duration_since(t) >= PROFILE_CHECK_INTERVAL);
        if due {
            watch.checked = Some(now);
            watch.seen = FileId::of(&self.path);
        }
        watch.seen
    }

    /// Reads the profile: its keys, and the identity of the file they
    /// came from (taken before the read, so a change during it is seen at
    /// the next look).
    fn read(&self, now: Instant) -> Result<(Credentials, Option<FileId>), String> {
        let id = FileId::of(&self.path);
        {
            let mut watch = self.watch.lock().unwrap();
            watch.checked = Some(now);
            watch.seen = id;
        }
        let keys =
            crate::profile::load_profile(&self.dir, &self.name).map_err(|e| e.to_string())?;
        Ok((credentials_of(keys, "profile"), id))
    }
}

/// The AWS SDK's default chain, built on first use (its builder is async).
struct AwsChain {
    region: String,
    /// The instance metadata client, when its endpoint is given.
    imds: Option<aws_config::imds::Client>,
    chain:
        tokio::sync::OnceCell<aws_config::default_provider::credentials::DefaultCredentialsChain>,
}

impl std::fmt::Debug for AwsChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsChain")
            .field("region", &self.region)
            .field("imds", &self.imds)
            .finish_non_exhaustive()
    }
}

impl AwsChain {
    fn new(region: &str, imds_endpoint: Option<&str>) -> Result<AwsChain, String> {
        let imds = match imds_endpoint {
            Some(endpoint) => Some(
                aws_config::imds::Client::builder()
                    .endpoint(endpoint)
                    .map_err(|e| {
                        format!("the instance metadata endpoint {endpoint:?} is not a URL ({e})")
                    })?
                    .build(),
            ),
            None => None,
        };
        Ok(AwsChain {
            region: region.to_string(),
            imds,
            chain: tokio::sync::OnceCell::new(),
        })
    }

    async fn fetch(&self) -> Result<Credentials, String> {
        use aws_config::default_provider::credentials::DefaultCredentialsChain;
        let chain = self
            .chain
            .get_or_init(|| async {
                let mut builder = DefaultCredentialsChain::builder()
                    .region(aws_sdk_s3::config::Region::new(self.region.clone()));
                if let Some(client) = &self.imds {
                    builder = builder.imds_client(client.clone());
                }
                builder.build().await
            })
            .await;
        chain.provide_credentials().await.map_err(|e| {
            format!(
                "the AWS default credentials chain gave no credentials ({})",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            )
        })
    }
}

/// How a source's keys are fetched.
#[derive(Debug)]
enum Fetcher {
    Profile(ProfileFile),
    Ecs(ecs::EcsMetadata),
    Aws(AwsChain),
}

/// The keys in use and when the next fetch is due.
#[derive(Default)]
struct Cache {
    current: Option<Current>,
    /// No fetch before this (after one that failed or brought nothing
    /// newer).
    quiet_until: Option<Instant>,
    /// The last fetch's failure, for requests that find no valid keys.
    last_error: Option<String>,
}

struct Current {
    creds: Credentials,
    since: SystemTime,
    /// The profile file these keys were read from.
    origin: Option<FileId>,
}

/// The credentials provider of a store whose config names a
/// [`CredentialSource`]: keeps the keys, fetches them again as the module
/// docs say, and keeps a [`CredentialState`] up to date.
pub(crate) struct RefreshingProvider {
    inner: Arc<Inner>,
}

struct Inner {
    state: Arc<CredentialState>,
    fetcher: Fetcher,
    clock: Clock,
    cache: Mutex<Cache>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    retry: Duration,
}

impl std::fmt::Debug for RefreshingProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingProvider")
            .field("state", &self.inner.state)
            .field("fetcher", &self.inner.fetcher)
            .finish_non_exhaustive()
    }
}

impl RefreshingProvider {
    /// The provider for `source`; `region` is the store's signing region
    /// (the AWS chain's STS calls use it). A profile is read now, so a
    /// missing or bad one fails the mount at once with its own sentence;
    /// the other sources fetch at the first request.
    pub(crate) fn new(
        source: &CredentialSource,
        region: &str,
        clock: Clock,
    ) -> Result<RefreshingProvider, String> {
        let describe = source.describe();
        let (fetcher, retry) = match source {
            CredentialSource::Profile { dir, name } => {
                let path = crate::profile::profile_path(dir, name).map_err(|e| e.to_string())?;
                let file = ProfileFile {
                    dir: dir.clone(),
                    name: name.clone(),
                    path,
                    watch: Mutex::default(),
                };
                (Fetcher::Profile(file), PROFILE_RETRY)
            }
            CredentialSource::EcsRamRole { role, endpoint } => (
                Fetcher::Ecs(
                    ecs::EcsMetadata::new(endpoint.as_deref(), role.as_deref())
                        .map_err(|e| format!("{describe}: {e}"))?,
                ),
                REMOTE_RETRY,
            ),
            CredentialSource::AwsDefault { imds_endpoint } => (
                Fetcher::Aws(
                    AwsChain::new(region, imds_endpoint.as_deref())
                        .map_err(|e| format!("{describe}: {e}"))?,
                ),
                REMOTE_RETRY,
            ),
        };
        let inner = Inner {
            state: Arc::new(CredentialState::new(describe)),
            fetcher,
            clock,
            cache: Mutex::default(),
            fetching: tokio::sync::Mutex::new(()),
            retry,
        };
        if let Fetcher::Profile(file) = &inner.fetcher {
            let (now_i, now) = inner.clock.now();
            let (creds, origin) = file.read(now_i)?;
            inner.keep(creds, origin, now);
        }
        Ok(RefreshingProvider {
            inner: Arc::new(inner),
        })
    }

    /// The state this provider keeps up to date.
    pub(crate) fn state(&self) -> Arc<CredentialState> {
        self.inner.state.clone()
    }
}

impl ProvideCredentials for RefreshingProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.inner.credentials())
    }
}

impl Inner {
    /// Keys for one request.
    async fn credentials(&self) -> Result<Credentials, ProviderError> {
        let decided = self.decide();
        match decided {
            (Plan::Use, Some(creds)) => Ok(creds),
            (Plan::RefreshAhead, Some(creds)) => {
                // One request fetches; the others go on meanwhile.
                if let Ok(_one) = self.fetching.try_lock()
                    && self.decide().0 == Plan::RefreshAhead
                {
                    self.fetch().await;
                }
                Ok(self.decide().1.unwrap_or(creds))
            }
            (Plan::Fetch, _) => {
                let _one = self.fetching.lock().await;
                // Another request may have fetched while this one waited.
                if self.decide().0 == Plan::Fetch {
                    self.fetch().await;
                }
                match self.decide() {
                    (Plan::Use | Plan::RefreshAhead, Some(creds)) => Ok(creds),
                    _ => Err(self.unavailable()),
                }
            }
            _ => Err(self.unavailable()),
        }
    }

    /// The plan for a request now, with the keys it would use.
    fn decide(&self) -> (Plan, Option<Credentials>) {
        let (now_i, now) = self.clock.now();
        let seen = match &self.fetcher {
            Fetcher::Profile(file) => Some(file.look(now_i)),
            _ => None,
        };
        let cache = self.cache.lock().unwrap();
        let quiet = cache.quiet_until.is_some_and(|t| now_i < t);
        let held = cache.current.as_ref().map(|c| Held {
            since: c.since,
            expires: c.creds.expiry(),
            stale: seen.is_some_and(|seen| seen != c.origin),
        });
        let creds = cache.current.as_ref().map(|c| c.creds.clone());
        (plan(now, held, quiet), creds)
    }

    fn unavailable(&self) -> ProviderError {
        let cache = self.cache.lock().unwrap();
        let message = cache
            .last_error
            .clone()
            .unwrap_or_else(|| "the keys have expired".to_string());
        ProviderError::provider_error(CredentialsUnavailable {
            source_description: self.state.describe(),
            message,
        })
    }

    /// One fetch from the source; its result goes into the cache and the
    /// state.
    async fn fetch(&self) {
        let result = match &self.fetcher {
            Fetcher::Profile(file) => file.read(self.clock.now().0),
            Fetcher::Ecs(metadata) => match metadata.fetch().await {
                Ok((keys, role)) => {
                    self.state.set_description(format!("ECS RAM role {role}"));
                    Ok((credentials_of(keys, "ecs-ram-role"), None))
                }
                Err(e) => Err(e),
            },
            Fetcher::Aws(chain) => chain.fetch().await.map(|c| (c, None)),
        };
        let (now_i, now) = self.clock.now();
        self.cache.lock().unwrap().quiet_until = Some(now_i + self.retry);
        match result {
            Ok((creds, _)) if creds.expiry().is_some_and(|e| e <= now) => {
                let when = aws_smithy_types::DateTime::from(creds.expiry().unwrap());
                let when = when
                    .fmt(aws_smithy_types::date_time::Format::DateTime)
                    .unwrap_or_default();
                self.fail(format!("the keys it gives expired at {when}"), now);
            }
            Ok((creds, origin)) => {
                self.keep(creds, origin, now);
                self.state.record_success();
            }
            Err(message) => self.fail(message, now),
        }
    }

    /// Takes `creds` as the keys in use, unless they are the ones in use
    /// already (then only where they came from is updated).
    fn keep(&self, creds: Credentials, origin: Option<FileId>, now: SystemTime) {
        let mut cache = self.cache.lock().unwrap();
        cache.last_error = None;
        if let Some(current) = cache.current.as_mut()
            && same_keys(&current.creds, &creds)
        {
            current.origin = origin;
            return;
        }
        self.state.record_keys(&creds, now);
        cache.current = Some(Current {
            creds,
            since: now,
            origin,
        });
    }

    /// Records a failed fetch; logs it once per distinct message, with
    /// what the mount does meanwhile.
    fn fail(&self, message: String, now: SystemTime) {
        let meanwhile = {
            let mut cache = self.cache.lock().unwrap();
            cache.last_error = Some(message.clone());
            match &cache.current {
                Some(c) if c.creds.expiry().is_none_or(|e| e > now) => {
                    "the mount goes on with the keys it has"
                }
                _ => "requests fail until valid keys can be had",
            }
        };
        if self.state.record_failure(&message, now) {
            tracing::warn!(
                "credentials from the {}: {message}; {meanwhile}",
                self.state.describe()
            );
        }
    }
}

/// Same key id, secret, token and expiry.
fn same_keys(a: &Credentials, b: &Credentials) -> bool {
    a.access_key_id() == b.access_key_id()
        && a.secret_access_key() == b.secret_access_key()
        && a.session_token() == b.session_token()
        && a.expiry() == b.expiry()
}

fn credentials_of(keys: crate::profile::Keys, provider: &'static str) -> Credentials {
    Credentials::new(
        keys.access_key_id,
        keys.access_key_secret,
        keys.session_token,
        keys.expiration,
        provider,
    )
}
