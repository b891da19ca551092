//! The typed volume a Create records: [`VolumeSpec`] and its parts, as the
//! rest of the crate and the state file see them (serde shapes unchanged).
//! Parsing lives in the sibling modules; nothing here checks a value.

use objectfs::store::s3::CredentialSource;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A validated volume: one backend plus the options common to all backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub backend: BackendSpec,
    /// Relative, normalised (no empty, `.` or `..` component), no leading `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// The backend-specific part of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BackendSpec {
    /// A directory of the Docker host; absolute and normalised, not yet
    /// resolved (symlinks are resolved and checked at every use).
    Host { path: PathBuf },
    /// A bucket (or a prefix of one) of AWS S3 or any S3-compatible store,
    /// mounted with objectfs.
    S3(ObjectSpec),
    /// An Alibaba Cloud OSS bucket, as OpenSandbox's `ossfs` volume
    /// describes it; mounted with objectfs through OSS's S3-compatible API.
    Ossfs(ObjectSpec),
    /// A Docker named volume (OpenSandbox's `pvc`), looked up at Mount;
    /// `subPath` selects a directory inside it.
    Pvc {
        /// 1–253 of `[a-z0-9-]`, alphanumeric at both ends (the server's
        /// rule), so nothing in it needs escaping in an Engine API path.
        claim_name: String,
        /// A missing claim is created at Mount as a local named volume
        /// labelled as created by this plugin. Records written before this
        /// field existed read `false`: their claims had to exist.
        #[serde(default)]
        create_if_not_exists: bool,
        /// Removing this volume also removes the claim, when no other pvc
        /// volume of the plugin uses it and its label says the plugin
        /// created it.
        #[serde(default)]
        delete_on_sandbox_termination: bool,
    },
    /// An NFS export, mounted by the kernel.
    Nfs(NfsSpec),
}

/// An NFS volume, validated at Create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NfsSpec {
    /// Host name, IPv4 address or bracketed IPv6 address.
    pub server: String,
    /// The export: absolute and normalised.
    pub path: String,
    /// Mount options, each from [`super::NFS_MOUNT_OPTIONS`], in the given order.
    #[serde(default)]
    pub options: Vec<String>,
}

impl BackendSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendSpec::Host { .. } => "host",
            BackendSpec::S3(_) => "s3",
            BackendSpec::Ossfs(_) => "ossfs",
            BackendSpec::Pvc { .. } => "pvc",
            BackendSpec::Nfs(_) => "nfs",
        }
    }

    /// The object-storage part, for `s3` and `ossfs` volumes.
    pub fn object(&self) -> Option<&ObjectSpec> {
        match self {
            BackendSpec::S3(o) | BackendSpec::Ossfs(o) => Some(o),
            BackendSpec::Host { .. } | BackendSpec::Pvc { .. } | BackendSpec::Nfs(_) => None,
        }
    }
}

/// An object-storage volume, validated at Create (no storage contacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSpec {
    pub bucket: String,
    /// As given, scheme optional (`http://127.0.0.1:9000`,
    /// `oss-cn-hangzhou.aliyuncs.com`); `None`: AWS S3 for the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Key prefix from `prefix` (s3) or `path` (ossfs): empty or ending in
    /// `/`, without the volume's `subPath` (the backend appends that).
    #[serde(default)]
    pub prefix: String,
    /// `None`: path style for IP addresses and localhost, virtual-hosted
    /// style otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    pub credentials: Credentials,
    /// ossfs `version` as given (`1.0` or `2.0`); both are served by objectfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Items of ossfs's `options` accepted without effect (ossfs tuning
    /// that objectfs has no setting for), as given: logged at Create and
    /// shown in Status with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_options: Vec<String>,
    #[serde(default)]
    pub tuning: MountTuning,
}

/// Where a mount's keys come from.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Credentials {
    /// No keys given: anonymous (unsigned) requests, for public buckets;
    /// the store never reads keys from the plugin's environment.
    Default,
    /// `credentials=NAME`: a profile file on the plugin side; only the name
    /// is recorded.
    Profile { name: String },
    /// Keys passed as volume options (what the OpenSandbox API sends).
    Inline {
        access_key_id: String,
        access_key_secret: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_token: Option<String>,
    },
    /// `credentialSource=ecsRamRole`: the temporary keys of an Alibaba
    /// Cloud ECS RAM role, from the instance metadata service (its role
    /// `ramRole`, else the instance's), fetched and refreshed by the mount.
    #[serde(rename = "ecsRamRole")]
    EcsRamRole {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
        /// `metadataEndpoint`, else the service's own address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
    /// `credentialSource=aws`: the AWS SDK's default chain (environment,
    /// web identity, container and instance metadata), run by the mount.
    Aws {
        /// `metadataEndpoint`: the instance metadata service's address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
}

impl Credentials {
    /// The source a mount reads its keys from itself (profiles in
    /// `profiles`), or `None` for anonymous access and inline keys.
    pub fn source(&self, profiles: &std::path::Path) -> Option<CredentialSource> {
        match self {
            Credentials::Default | Credentials::Inline { .. } => None,
            Credentials::Profile { name } => Some(CredentialSource::Profile {
                dir: profiles.to_path_buf(),
                name: name.clone(),
            }),
            Credentials::EcsRamRole { role, endpoint } => Some(CredentialSource::EcsRamRole {
                role: role.clone(),
                endpoint: endpoint.clone(),
            }),
            Credentials::Aws { endpoint } => Some(CredentialSource::AwsDefault {
                imds_endpoint: endpoint.clone(),
            }),
        }
    }

    /// Where the keys come from, in words, for Status and log lines; never
    /// a key. A source's words are its own (`CredentialSource::describe`).
    pub fn describe(&self) -> String {
        match (self, self.source(std::path::Path::new(""))) {
            (_, Some(source)) => source.describe(),
            (Credentials::Inline { .. }, None) => "inline keys (hidden)".to_string(),
            (_, None) => "none (anonymous requests)".to_string(),
        }
    }
}

/// Debug by hand: a spec in a log line or an error never shows a secret.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Default => f.write_str("Default"),
            Credentials::Profile { name } => f.debug_struct("Profile").field("name", name).finish(),
            Credentials::Inline { .. } => f.write_str("Inline(<redacted>)"),
            Credentials::EcsRamRole { role, endpoint } => f
                .debug_struct("EcsRamRole")
                .field("role", role)
                .field("endpoint", endpoint)
                .finish(),
            Credentials::Aws { endpoint } => {
                f.debug_struct("Aws").field("endpoint", endpoint).finish()
            }
        }
    }
}

/// objectfs settings a volume may choose (`None`: the mount's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountTuning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umask: Option<u32>,
    /// `async` or `sync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<objectfs::UploadMode>,
    /// Attribute and negative-lookup cache, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_ttl_ms: Option<u64>,
    /// Listed files take their attributes from the listing (no HEAD each):
    /// `mount --attrs-from-listing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs_from_listing: Option<bool>,
    /// Bound of the file data the mount caches, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<u64>,
}
