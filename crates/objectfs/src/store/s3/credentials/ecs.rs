//! An Alibaba Cloud ECS instance's RAM role credentials, from its
//! metadata service in hardened mode: a session token first (`PUT
//! /latest/api/token` with the token's lifetime in
//! `X-aliyun-ecs-metadata-token-ttl-seconds`), then, with the token in
//! `X-aliyun-ecs-metadata-token`, the role name if none was given (`GET
//! /latest/meta-data/ram/security-credentials/`) and the role's keys (`GET
//! …/security-credentials/ROLE`: `AccessKeyId`, `AccessKeySecret`,
//! `SecurityToken`, `Expiration`, and `Code` "Success"). Plain HTTP, as the
//! service speaks it; no fallback to the tokenless mode. Answers are parsed
//! by hand and never quoted in errors: they hold the keys.

use crate::profile::Keys;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::Duration;

/// Where the metadata service answers on every ECS instance.
pub const DEFAULT_ENDPOINT: &str = "http://100.100.100.200";
pub(crate) const TOKEN_PATH: &str = "/latest/api/token";
pub(crate) const ROLES_PATH: &str = "/latest/meta-data/ram/security-credentials/";
pub(crate) const TOKEN_TTL_HEADER: &str = "X-aliyun-ecs-metadata-token-ttl-seconds";
pub(crate) const TOKEN_HEADER: &str = "X-aliyun-ecs-metadata-token";
/// Lifetime asked for a session token: each fetch gets a new one and uses
/// it at once, for one or two requests.
pub(crate) const TOKEN_TTL_SECS: u32 = 60;
/// One request to the metadata service, connection included.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting to it (a link-local address: there or not).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Its answers are a token, a role name or a small JSON object.
const MAX_ANSWER: usize = 64 * 1024;
/// Longest role name (RAM allows 64).
const MAX_ROLE_LEN: usize = 64;

/// A client of one metadata service, for one role or the instance's.
#[derive(Debug)]
pub(super) struct EcsMetadata {
    /// `http://HOST[:PORT]`, no trailing `/`.
    base: String,
    role: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl EcsMetadata {
    /// Checks the endpoint and role name; no I/O.
    pub(super) fn new(endpoint: Option<&str>, role: Option<&str>) -> Result<EcsMetadata, String> {
        let base = parse_endpoint(endpoint.unwrap_or(DEFAULT_ENDPOINT))?;
        if let Some(role) = role
            && !is_role_name(role)
        {
            return Err(format!(
                "{role:?} is not a RAM role name (1–64 letters, digits, `.`, `_` or `-`)"
            ));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        Ok(EcsMetadata {
            base,
            role: role.map(str::to_string),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// The role's keys now, with the role's name.
    pub(super) async fn fetch(&self) -> Result<(Keys, String), String> {
        let token = self.token().await?;
        let role = match &self.role {
            Some(role) => role.clone(),
            None => {
                let body = self.get(ROLES_PATH, &token, Ask::RoleName).await?;
                parse_role_list(&body)?
            }
        };
        let path = format!("{ROLES_PATH}{role}");
        let body = self.get(&path, &token, Ask::Keys).await?;
        let keys = parse_credentials(&body)
            .map_err(|e| format!("the metadata service's answer for role {role} {e}"))?;
        Ok((keys, role))
    }

    /// A session token (hardened mode).
    async fn token(&self) -> Result<String, String> {
        let request = Request::builder()
            .method(Method::PUT)
            .uri(format!("{}{TOKEN_PATH}", self.base))
            .header(TOKEN_TTL_HEADER, TOKEN_TTL_SECS.to_string())
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("cannot build a metadata request ({e})"))?;
        let body = self.exchange(request, Ask::Token).await?;
        let token = std::str::from_utf8(&body)
            .ok()
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic()))
            .ok_or_else(|| {
                format!(
                    "the metadata service at {} answered the session token request with no usable token",
                    self.base
                )
            })?;
        Ok(token.to_string())
    }

    async fn get(&self, path: &str, token: &str, what: Ask) -> Result<Bytes, String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{path}", self.base))
            .header(TOKEN_HEADER, token)
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("cannot build a metadata request ({e})"))?;
        self.exchange(request, what).await
    }

    /// One request; the answer's body if it is 200 OK. Errors name the
    /// request and the status, never the body.
    async fn exchange(&self, request: Request<Full<Bytes>>, ask: Ask) -> Result<Bytes, String> {
        let line = format!("{} {}", request.method(), request.uri().path());
        let what = ask.what();
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                format!(
                    "the metadata service at {} could not be reached for {what} ({line}: {})",
                    self.base,
                    error_chain(&e)
                )
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| {
                    format!(
                        "the metadata service at {}'s answer for {what} could not be read ({line}: {e})",
                        self.base
                    )
                })?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(format!(
                    "the metadata service at {} answered {status} for {what} ({line}){}",
                    self.base,
                    ask.hint(status)
                ));
            }
            Ok(body)
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the metadata service at {} did not answer within {}s for {what} ({line})",
                    self.base,
                    EXCHANGE_TIMEOUT.as_secs()
                ))
            })
    }
}

/// What a request to the metadata service asks for.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Token,
    RoleName,
    Keys,
}

impl Ask {
    fn what(self) -> &'static str {
        match self {
            Ask::Token => "a session token",
            Ask::RoleName => "the role name",
            Ask::Keys => "the role's credentials",
        }
    }

    /// What an operator can do about a refusal.
    fn hint(self, status: StatusCode) -> &'static str {
        match (self, status.as_u16()) {
            (Ask::RoleName | Ask::Keys, 404) => {
                "; is a RAM role attached to the instance, and is its name right?"
            }
            (Ask::Token, 403 | 405) => "; objectfs uses the hardened mode (a session token) only",
            _ => "",
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `http://HOST[:PORT]` (a trailing `/` allowed), without the `/`.
pub(crate) fn parse_endpoint(endpoint: &str) -> Result<String, String> {
    let refuse = |why: &str| {
        Err(format!(
            "the metadata endpoint {endpoint:?} {why}; give http://HOST[:PORT], e.g. {DEFAULT_ENDPOINT}"
        ))
    };
    let Ok(uri) = endpoint.parse::<Uri>() else {
        return refuse("is not a URL");
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return refuse("is not plain http (the metadata service has no TLS)"),
        None => return refuse("has no http:// in front"),
    }
    let Some(authority) = uri.authority() else {
        return refuse("names no host");
    };
    if authority.as_str().contains('@') {
        return refuse("must not contain user information");
    }
    if authority.host().is_empty() {
        return refuse("names no host");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return refuse("must not have a path or query");
    }
    Ok(format!("http://{authority}"))
}

/// A RAM role name: 1–64 letters, digits, `.`, `_` or `-` (so it is one
/// path segment).
pub(crate) fn is_role_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ROLE_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The role the metadata service lists (its first line).
pub(crate) fn parse_role_list(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).unwrap_or("");
    match text.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(role) if is_role_name(role) => Ok(role.to_string()),
        Some(_) => Err(
            "the metadata service names a role that is not a RAM role name; give the role".into(),
        ),
        None => {
            Err("the metadata service names no RAM role: is one attached to the instance?".into())
        }
    }
}

/// The keys in a role's credentials answer. Errors finish the sentence
/// "the answer for role R …" and name only field names.
pub(crate) fn parse_credentials(body: &[u8]) -> Result<Keys, String> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err("is not a JSON object".into());
    };
    let text = |name: &str| match fields.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(format!("has a field `{name}` that is not a string")),
        None => Err(format!("has no field `{name}`")),
    };
    if let Some(code) = fields.get("Code") {
        match code {
            Value::String(c) if c == "Success" => {}
            // Codes are words such as "Failed", never keys.
            Value::String(c) if c.len() <= 64 && c.chars().all(|c| c.is_ascii_alphanumeric()) => {
                return Err(format!("says Code {c:?}, not \"Success\""));
            }
            _ => return Err("has a Code that is not \"Success\"".into()),
        }
    }
    let key = |name: &str| {
        let value = text(name)?;
        if crate::profile::is_clean_key(value) {
            Ok(value.to_string())
        } else {
            Err(format!(
                "has a field `{name}` that is empty or contains whitespace"
            ))
        }
    };
    let access_key_id = key("AccessKeyId")?;
    let access_key_secret = key("AccessKeySecret")?;
    let session_token = key("SecurityToken")?;
    let expiration = crate::profile::parse_rfc3339(text("Expiration")?)
        .ok_or("has an `Expiration` that is not an RFC 3339 time")?;
    Ok(Keys {
        access_key_id,
        access_key_secret,
        session_token: Some(session_token),
        expiration: Some(expiration),
    })
}
