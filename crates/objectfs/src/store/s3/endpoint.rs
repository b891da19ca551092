//! Where an S3 config points: the endpoint URL, the region, the addressing
//! style and the service behind it ([`StoreKind`]), worked out from the
//! settings alone (no network), and why a setting cannot be used
//! ([`EndpointError`]).

use super::S3Config;
use crate::store::{MAX_COPY_SIZE, OSS_MAX_COPY_SIZE};

/// Region used when neither the config nor the endpoint names one.
const DEFAULT_REGION: &str = "us-east-1";
/// Alibaba Cloud's domain: hosts under it are OSS's.
const ALIYUN_DOMAIN: &str = "aliyuncs.com";

/// The service behind an endpoint, where services differ in what a client
/// must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// AWS S3 or any other S3-compatible server.
    S3,
    /// Alibaba Cloud OSS through its S3-compatible API.
    Oss,
}

impl StoreKind {
    /// The largest object one CopyObject copies; larger objects are copied
    /// part by part with UploadPartCopy.
    pub fn max_copy_object_size(self) -> u64 {
        match self {
            StoreKind::S3 => MAX_COPY_SIZE,
            StoreKind::Oss => OSS_MAX_COPY_SIZE,
        }
    }
}

/// The effective endpoint of a config, see [`resolve_endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    /// `None`: AWS, the SDK derives the endpoint from the region.
    pub url: Option<String>,
    /// The SigV4 signing region.
    pub region: String,
    pub path_style: bool,
    pub kind: StoreKind,
}

/// Why a config's endpoint or region cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("the S3 region is empty; leave it out or name a region")]
    EmptyRegion,
    #[error("the S3 region {0:?} is not a region name (letters, digits and '-')")]
    BadRegion(String),
    #[error("the S3 endpoint is empty; leave it out for AWS or give a host name or URL")]
    EmptyEndpoint,
    #[error("the S3 endpoint {endpoint:?} is not valid: {reason}")]
    BadEndpoint {
        endpoint: String,
        reason: &'static str,
    },
}

impl EndpointError {
    /// What is wrong, for a sentence that names the endpoint already: the
    /// reason alone for a malformed endpoint, else the whole message.
    pub fn reason(&self) -> String {
        match self {
            EndpointError::BadEndpoint { reason, .. } => reason.to_string(),
            other => other.to_string(),
        }
    }
}

/// The effective endpoint URL, signing region, addressing style and
/// service for a config.
///
/// Without a scheme the endpoint is https. OSS's regional endpoints give
/// the signing region when none is set (see `oss_endpoint`); the public
/// and internal ones become the S3-compatible hosts
/// `s3.oss-REGION[-internal].aliyuncs.com`, every other endpoint is used
/// as given. IP addresses and `localhost` default to path style,
/// everything else to virtual-hosted style. The service is the config's
/// `kind`, else OSS for any `*.aliyuncs.com` host and S3 otherwise.
pub fn resolve_endpoint(config: &S3Config) -> Result<ResolvedEndpoint, EndpointError> {
    let region = match config.region.as_deref().map(str::trim) {
        Some("") => return Err(EndpointError::EmptyRegion),
        Some(r) if !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') => {
            return Err(EndpointError::BadRegion(r.to_string()));
        }
        Some(r) => Some(r.to_string()),
        None => None,
    };
    let Some(endpoint) = config.endpoint.as_deref().map(str::trim) else {
        return Ok(ResolvedEndpoint {
            url: None,
            region: region.unwrap_or_else(|| DEFAULT_REGION.to_string()),
            path_style: config.path_style.unwrap_or(false),
            kind: config.kind.unwrap_or(StoreKind::S3),
        });
    };
    let parsed = parse_endpoint(endpoint)?;
    let is_aliyun = parsed.host == ALIYUN_DOMAIN
        || parsed
            .host
            .strip_suffix(ALIYUN_DOMAIN)
            .is_some_and(|rest| rest.ends_with('.'));
    let oss = oss_endpoint(&parsed.host);
    let host = oss.as_ref().map_or(&parsed.host, |o| &o.s3_host).clone();
    let region = region
        .or(oss.map(|o| o.region))
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let default_path_style = is_ip_or_localhost(&host);
    let port = parsed.port.map(|p| format!(":{p}")).unwrap_or_default();
    Ok(ResolvedEndpoint {
        url: Some(format!("{}://{host}{port}{}", parsed.scheme, parsed.path)),
        region,
        path_style: config.path_style.unwrap_or(default_path_style),
        kind: config.kind.unwrap_or(if is_aliyun {
            StoreKind::Oss
        } else {
            StoreKind::S3
        }),
    })
}

struct ParsedEndpoint {
    scheme: String,
    /// Lower case; IPv6 literals keep their brackets.
    host: String,
    port: Option<u16>,
    /// Empty, or starting with '/' without a trailing '/'.
    path: String,
}

fn parse_endpoint(endpoint: &str) -> Result<ParsedEndpoint, EndpointError> {
    let bad = |reason: &'static str| EndpointError::BadEndpoint {
        endpoint: endpoint.to_string(),
        reason,
    };
    if endpoint.is_empty() {
        return Err(EndpointError::EmptyEndpoint);
    }
    if endpoint
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("it contains spaces or control characters"));
    }
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((s, rest)) => (s.to_ascii_lowercase(), rest),
        None => ("https".to_string(), endpoint),
    };
    if scheme != "http" && scheme != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    if rest.contains(['?', '#']) {
        return Err(bad("it must not have a query or fragment"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(bad("it must not contain user information"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inner, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("the bracketed host is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (format!("[{inner}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?,
        ),
    };
    if host.is_empty() {
        return Err(bad("it has no host"));
    }
    if !host.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(bad("the host name has characters a host name cannot have"));
    }
    Ok(ParsedEndpoint {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
        path: path.to_string(),
    })
}

/// Which of an OSS region's endpoints a host is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OssNetwork {
    /// `oss-REGION.aliyuncs.com`: the internet, IPv4.
    Public,
    /// `oss-REGION-internal.aliyuncs.com`: the region's VPCs.
    Internal,
    /// `REGION.oss.aliyuncs.com`: the internet, IPv4 and IPv6.
    DualStack,
}

/// An OSS regional endpoint: its region (the SigV4 signing region OSS
/// expects), its network, and the host an S3 client talks to.
#[derive(Debug, PartialEq, Eq)]
struct OssEndpoint {
    region: String,
    network: OssNetwork,
    s3_host: String,
}

/// The OSS regional endpoint a host names, with or without the `s3.` that
/// OSS documents for S3 clients: `[s3.]oss-REGION.aliyuncs.com`,
/// `[s3.]oss-REGION-internal.aliyuncs.com`, `REGION.oss.aliyuncs.com`.
/// The public and internal hosts gain the `s3.`; OSS documents no such
/// form of the dual-stack host, which is kept as given. Acceleration
/// endpoints (`oss-accelerate[-overseas]`) name no region and are not
/// matched, nor is any other host.
fn oss_endpoint(host: &str) -> Option<OssEndpoint> {
    let (name, has_s3) = match host.strip_prefix("s3.") {
        Some(rest) => (rest, true),
        None => (host, false),
    };
    let name = name.strip_suffix(ALIYUN_DOMAIN)?.strip_suffix('.')?;
    let (region, network) = if let Some(region) = name.strip_suffix(".oss") {
        (region, OssNetwork::DualStack)
    } else {
        let name = name.strip_prefix("oss-")?;
        match name.strip_suffix("-internal") {
            Some(region) => (region, OssNetwork::Internal),
            None => (name, OssNetwork::Public),
        }
    };
    let valid = !region.is_empty()
        && !region.starts_with("accelerate")
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if !valid {
        return None;
    }
    let s3_host = match network {
        OssNetwork::Public | OssNetwork::Internal if !has_s3 => format!("s3.{host}"),
        _ => host.to_string(),
    };
    Some(OssEndpoint {
        region: region.to_string(),
        network,
        s3_host,
    })
}

fn is_ip_or_localhost(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.starts_with('[')
        || host.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: Option<&str>) -> S3Config {
        S3Config {
            bucket: "bucket".into(),
            endpoint: endpoint.map(str::to_string),
            ..S3Config::default()
        }
    }

    #[test]
    fn endpoint_errors_say_why() {
        let e = resolve_endpoint(&config(Some("ftp://x"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"the S3 endpoint "ftp://x" is not valid: the scheme must be http or https"#
        );
        assert_eq!(e.reason(), "the scheme must be http or https");
        // Without an endpoint to name, the reason is the whole message.
        let e = resolve_endpoint(&config(Some(""))).unwrap_err();
        assert_eq!(e, EndpointError::EmptyEndpoint);
        assert_eq!(e.reason(), e.to_string());
    }

    fn resolved(endpoint: &str) -> ResolvedEndpoint {
        resolve_endpoint(&config(Some(endpoint))).unwrap()
    }

    fn want(url: &str, region: &str, path_style: bool, kind: StoreKind) -> ResolvedEndpoint {
        ResolvedEndpoint {
            url: Some(url.to_string()),
            region: region.to_string(),
            path_style,
            kind,
        }
    }

    fn oss(url: &str, region: &str) -> ResolvedEndpoint {
        want(url, region, false, StoreKind::Oss)
    }

    fn s3(url: &str, region: &str, path_style: bool) -> ResolvedEndpoint {
        want(url, region, path_style, StoreKind::S3)
    }

    /// Each kind of OSS regional endpoint, as OSS's endpoint table writes
    /// it and with the `s3.` OSS documents for S3 clients: the host the
    /// client talks to, the signing region, virtual-hosted style, OSS.
    #[test]
    fn oss_endpoints_map_to_host_region_and_style() {
        for (given, url, region) in [
            // Public.
            (
                "oss-cn-hangzhou.aliyuncs.com",
                "https://s3.oss-cn-hangzhou.aliyuncs.com",
                "cn-hangzhou",
            ),
            (
                "https://oss-ap-southeast-1.aliyuncs.com/",
                "https://s3.oss-ap-southeast-1.aliyuncs.com",
                "ap-southeast-1",
            ),
            (
                "http://OSS-cn-beijing.aliyuncs.com",
                "http://s3.oss-cn-beijing.aliyuncs.com",
                "cn-beijing",
            ),
            (
                "s3.oss-cn-hangzhou.aliyuncs.com",
                "https://s3.oss-cn-hangzhou.aliyuncs.com",
                "cn-hangzhou",
            ),
            // Internal (VPC).
            (
                "oss-cn-hangzhou-internal.aliyuncs.com",
                "https://s3.oss-cn-hangzhou-internal.aliyuncs.com",
                "cn-hangzhou",
            ),
            (
                "s3.oss-eu-central-1-internal.aliyuncs.com",
                "https://s3.oss-eu-central-1-internal.aliyuncs.com",
                "eu-central-1",
            ),
            // Dual-stack: no documented s3. form, kept as given.
            (
                "cn-hangzhou.oss.aliyuncs.com",
                "https://cn-hangzhou.oss.aliyuncs.com",
                "cn-hangzhou",
            ),
            (
                "http://us-west-1.oss.aliyuncs.com:8080",
                "http://us-west-1.oss.aliyuncs.com:8080",
                "us-west-1",
            ),
        ] {
            assert_eq!(resolved(given), oss(url, region), "{given}");
        }
    }

    #[test]
    fn oss_host_names_the_network() {
        let network = |h: &str| oss_endpoint(h).map(|o| o.network);
        assert_eq!(
            network("oss-cn-shanghai.aliyuncs.com"),
            Some(OssNetwork::Public)
        );
        assert_eq!(
            network("s3.oss-cn-shanghai-internal.aliyuncs.com"),
            Some(OssNetwork::Internal)
        );
        assert_eq!(
            network("cn-shanghai.oss.aliyuncs.com"),
            Some(OssNetwork::DualStack)
        );
        for other in [
            "oss-accelerate.aliyuncs.com",
            "oss-accelerate-overseas.aliyuncs.com",
            "oss-.aliyuncs.com",
            "oss--internal.aliyuncs.com",
            ".oss.aliyuncs.com",
            "ecs.cn-hangzhou.aliyuncs.com",
            "mybucket.oss-cn-hangzhou.aliyuncs.com",
            "oss-cn-hangzhou.aliyuncs.com.example.com",
            "oss-cn-hangzhouxaliyuncs.com",
        ] {
            assert_eq!(oss_endpoint(other), None, "{other}");
        }
    }

    #[test]
    fn an_explicit_region_wins_over_the_derived_one() {
        for endpoint in [
            "oss-cn-hangzhou.aliyuncs.com",
            "oss-cn-hangzhou-internal.aliyuncs.com",
            "cn-hangzhou.oss.aliyuncs.com",
        ] {
            let mut c = config(Some(endpoint));
            c.region = Some("cn-shanghai".into());
            assert_eq!(resolve_endpoint(&c).unwrap().region, "cn-shanghai");
        }
    }

    #[test]
    fn custom_and_other_endpoints_are_honoured_as_given() {
        assert_eq!(
            resolved("data.example.com"),
            s3("https://data.example.com", "us-east-1", false)
        );
        assert_eq!(
            resolved("http://files.example.cn:8080/base/"),
            s3("http://files.example.cn:8080/base", "us-east-1", false)
        );
        assert_eq!(
            resolved("https://s3.us-west-2.amazonaws.com"),
            s3("https://s3.us-west-2.amazonaws.com", "us-east-1", false)
        );
        // Acceleration endpoints name no region: left alone, but OSS.
        assert_eq!(
            resolved("oss-accelerate.aliyuncs.com"),
            oss("https://oss-accelerate.aliyuncs.com", "us-east-1")
        );
        let mut c = config(Some("https://s3.us-west-2.amazonaws.com"));
        c.region = Some("us-west-2".into());
        assert_eq!(resolve_endpoint(&c).unwrap().region, "us-west-2");
    }

    #[test]
    fn ip_and_localhost_default_to_path_style() {
        assert_eq!(
            resolved("http://127.0.0.1:9000"),
            s3("http://127.0.0.1:9000", "us-east-1", true)
        );
        assert_eq!(
            resolved("10.0.0.5:9000"),
            s3("https://10.0.0.5:9000", "us-east-1", true)
        );
        assert_eq!(
            resolved("http://localhost:3900"),
            s3("http://localhost:3900", "us-east-1", true)
        );
        assert_eq!(
            resolved("http://[::1]:9000"),
            s3("http://[::1]:9000", "us-east-1", true)
        );
    }

    #[test]
    fn path_style_setting_overrides() {
        let mut c = config(Some("http://127.0.0.1:9000"));
        c.path_style = Some(false);
        assert!(!resolve_endpoint(&c).unwrap().path_style);
        for endpoint in [
            "oss-cn-hangzhou.aliyuncs.com",
            "oss-cn-hangzhou-internal.aliyuncs.com",
            "cn-hangzhou.oss.aliyuncs.com",
        ] {
            let mut c = config(Some(endpoint));
            c.path_style = Some(true);
            assert!(resolve_endpoint(&c).unwrap().path_style, "{endpoint}");
        }
        let mut c = config(None);
        c.path_style = Some(true);
        assert!(resolve_endpoint(&c).unwrap().path_style);
    }

    #[test]
    fn no_endpoint_is_aws() {
        assert_eq!(
            resolve_endpoint(&config(None)).unwrap(),
            ResolvedEndpoint {
                url: None,
                region: "us-east-1".into(),
                path_style: false,
                kind: StoreKind::S3,
            }
        );
        let mut c = config(None);
        c.region = Some("eu-central-1".into());
        assert_eq!(resolve_endpoint(&c).unwrap().region, "eu-central-1");
    }

    /// Any Alibaba Cloud host is OSS, whatever its shape; the config's
    /// `kind` overrides (an `ossfs` volume on a custom domain).
    #[test]
    fn the_kind_is_oss_for_aliyun_hosts_or_when_set() {
        let kind = |endpoint: Option<&str>, set: Option<StoreKind>| {
            let mut c = config(endpoint);
            c.kind = set;
            resolve_endpoint(&c).unwrap().kind
        };
        for endpoint in [
            "oss-cn-hangzhou.aliyuncs.com",
            "https://s3.oss-cn-hangzhou-internal.aliyuncs.com",
            "cn-hangzhou.oss.aliyuncs.com",
            "oss-accelerate.aliyuncs.com",
            "http://ALIYUNCS.COM",
        ] {
            assert_eq!(kind(Some(endpoint), None), StoreKind::Oss, "{endpoint}");
        }
        for endpoint in [
            "data.example.com",
            "https://s3.us-west-2.amazonaws.com",
            "notaliyuncs.com",
            "aliyuncs.com.example.com",
            "http://127.0.0.1:9000",
        ] {
            assert_eq!(kind(Some(endpoint), None), StoreKind::S3, "{endpoint}");
        }
        assert_eq!(kind(None, None), StoreKind::S3);
        assert_eq!(
            kind(Some("files.example.cn"), Some(StoreKind::Oss)),
            StoreKind::Oss
        );
        assert_eq!(
            kind(Some("oss-cn-hangzhou.aliyuncs.com"), Some(StoreKind::S3)),
            StoreKind::S3
        );
    }

    #[test]
    fn oss_copies_with_copy_object_only_below_one_gb() {
        assert_eq!(StoreKind::S3.max_copy_object_size(), 5 << 30);
        // Objects smaller than 10^9 bytes, which is below 1 GB whether OSS
        // means 10^9 or 2^30 bytes.
        assert_eq!(StoreKind::Oss.max_copy_object_size(), 999_999_999);
    }
}
