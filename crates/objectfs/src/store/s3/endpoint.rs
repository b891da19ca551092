//! Where an S3 config points: the endpoint URL, the region and the
//! addressing style, worked out from the settings alone (no network), and
//! why a setting cannot be used ([`EndpointError`]).

use super::S3Config;

/// Region used when neither the config nor the endpoint names one.
const DEFAULT_REGION: &str = "us-east-1";

/// The effective endpoint of a config, see [`resolve_endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    /// `None`: AWS, the SDK derives the endpoint from the region.
    pub url: Option<String>,
    pub region: String,
    pub path_style: bool,
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

/// The effective endpoint URL, region and addressing style for a config.
///
/// Without a scheme the endpoint is https. Alibaba OSS native endpoints
/// (`oss-REGION.aliyuncs.com`, `oss-REGION-internal.aliyuncs.com`) become
/// the S3-compatible hosts `s3.oss-REGION[-internal].aliyuncs.com`, and give
/// the region when none is set; other endpoints are used as given. IP
/// addresses and `localhost` default to path style, everything else to
/// virtual-hosted style.
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
        });
    };
    let parsed = parse_endpoint(endpoint)?;
    let mut host = parsed.host.clone();
    let mut derived_region = None;
    if let Some((oss_region, internal)) = oss_native_region(&parsed.host) {
        host = format!("s3.{}", parsed.host);
        derived_region = Some((oss_region, internal));
    } else if let Some(rest) = parsed.host.strip_prefix("s3.") {
        derived_region = oss_native_region(rest);
    }
    let region = region
        .or(derived_region.map(|(r, _)| r))
        .unwrap_or_else(|| DEFAULT_REGION.to_string());
    let default_path_style = is_ip_or_localhost(&host);
    let port = parsed.port.map(|p| format!(":{p}")).unwrap_or_default();
    Ok(ResolvedEndpoint {
        url: Some(format!("{}://{host}{port}{}", parsed.scheme, parsed.path)),
        region,
        path_style: config.path_style.unwrap_or(default_path_style),
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

/// `oss-REGION.aliyuncs.com` / `oss-REGION-internal.aliyuncs.com` →
/// (REGION, internal). The global acceleration endpoints have no
/// S3-compatible form and are not matched.
fn oss_native_region(host: &str) -> Option<(String, bool)> {
    let name = host.strip_suffix(".aliyuncs.com")?.strip_prefix("oss-")?;
    let (region, internal) = match name.strip_suffix("-internal") {
        Some(r) => (r, true),
        None => (name, false),
    };
    let valid = !region.is_empty()
        && !region.starts_with("accelerate")
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    valid.then(|| (region.to_string(), internal))
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

    fn want(url: &str, region: &str, path_style: bool) -> ResolvedEndpoint {
        ResolvedEndpoint {
            url: Some(url.to_string()),
            region: region.to_string(),
            path_style,
        }
    }

    #[test]
    fn oss_native_endpoint_maps_to_s3_compatible_host_and_region() {
        assert_eq!(
            resolved("oss-cn-hangzhou.aliyuncs.com"),
            want(
                "https://s3.oss-cn-hangzhou.aliyuncs.com",
                "cn-hangzhou",
                false
            )
        );
        assert_eq!(
            resolved("https://oss-ap-southeast-1.aliyuncs.com/"),
            want(
                "https://s3.oss-ap-southeast-1.aliyuncs.com",
                "ap-southeast-1",
                false
            )
        );
        assert_eq!(
            resolved("http://OSS-cn-beijing.aliyuncs.com"),
            want("http://s3.oss-cn-beijing.aliyuncs.com", "cn-beijing", false)
        );
        // An explicit region wins over the derived one.
        let mut c = config(Some("oss-cn-hangzhou.aliyuncs.com"));
        c.region = Some("cn-shanghai".into());
        assert_eq!(resolve_endpoint(&c).unwrap().region, "cn-shanghai");
        // Already the S3-compatible host: kept, region still derived.
        assert_eq!(
            resolved("s3.oss-cn-hangzhou.aliyuncs.com"),
            want(
                "https://s3.oss-cn-hangzhou.aliyuncs.com",
                "cn-hangzhou",
                false
            )
        );
    }

    #[test]
    fn oss_internal_endpoint_keeps_internal() {
        assert_eq!(
            resolved("oss-cn-hangzhou-internal.aliyuncs.com"),
            want(
                "https://s3.oss-cn-hangzhou-internal.aliyuncs.com",
                "cn-hangzhou",
                false
            )
        );
        assert_eq!(
            resolved("s3.oss-cn-hangzhou-internal.aliyuncs.com"),
            want(
                "https://s3.oss-cn-hangzhou-internal.aliyuncs.com",
                "cn-hangzhou",
                false
            )
        );
    }

    #[test]
    fn custom_and_other_endpoints_are_honoured_as_given() {
        assert_eq!(
            resolved("data.example.com"),
            want("https://data.example.com", "us-east-1", false)
        );
        assert_eq!(
            resolved("http://files.example.cn:8080/base/"),
            want("http://files.example.cn:8080/base", "us-east-1", false)
        );
        assert_eq!(
            resolved("https://s3.us-west-2.amazonaws.com"),
            want("https://s3.us-west-2.amazonaws.com", "us-east-1", false)
        );
        // Acceleration endpoints have no s3. form: left alone.
        assert_eq!(
            resolved("oss-accelerate.aliyuncs.com"),
            want("https://oss-accelerate.aliyuncs.com", "us-east-1", false)
        );
        let mut c = config(Some("https://s3.us-west-2.amazonaws.com"));
        c.region = Some("us-west-2".into());
        assert_eq!(resolve_endpoint(&c).unwrap().region, "us-west-2");
    }

    #[test]
    fn ip_and_localhost_default_to_path_style() {
        assert_eq!(
            resolved("http://127.0.0.1:9000"),
            want("http://127.0.0.1:9000", "us-east-1", true)
        );
        assert_eq!(
            resolved("10.0.0.5:9000"),
            want("https://10.0.0.5:9000", "us-east-1", true)
        );
        assert_eq!(
            resolved("http://localhost:3900"),
            want("http://localhost:3900", "us-east-1", true)
        );
        assert_eq!(
            resolved("http://[::1]:9000"),
            want("http://[::1]:9000", "us-east-1", true)
        );
    }

    #[test]
    fn path_style_setting_overrides() {
        let mut c = config(Some("http://127.0.0.1:9000"));
        c.path_style = Some(false);
        assert!(!resolve_endpoint(&c).unwrap().path_style);
        let mut c = config(Some("oss-cn-hangzhou.aliyuncs.com"));
        c.path_style = Some(true);
        assert!(resolve_endpoint(&c).unwrap().path_style);
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
                path_style: false
            }
        );
        let mut c = config(None);
        c.region = Some("eu-central-1".into());
        assert_eq!(resolve_endpoint(&c).unwrap().region, "eu-central-1");
    }
}
