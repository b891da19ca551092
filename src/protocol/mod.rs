//! Docker's volume plugin protocol: request parsing, replies and the router;
//! `metrics` is the Prometheus endpoint. Nothing outside this module knows
//! about HTTP.
//!
//! dockerd sends `POST /<Method>` with no Content-Type, an empty body for
//! Activate, `"Opts": null` at times, and decodes field names without regard
//! to case; so bodies are read as bytes and fields looked up the same way.

pub mod metrics;
pub mod server;

use crate::driver::{Driver, DriverError, VolumeInfo};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// The fields of a request body, found case-insensitively.
#[derive(Debug, Default, PartialEq)]
pub struct Request {
    pub name: Option<String>,
    pub id: Option<String>,
    pub opts: Option<Map<String, Value>>,
}

/// Parses a request body. Empty and `null` bodies are an empty request;
/// anything that is not a JSON object is a one-sentence error.
pub fn parse_request(body: &[u8]) -> Result<Request, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Request::default());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the request body is not valid JSON ({e}); send a JSON object"))?;
    let object = match value {
        Value::Null => return Ok(Request::default()),
        Value::Object(o) => o,
        _ => return Err("the request body must be a JSON object".into()),
    };
    let mut request = Request::default();
    for (key, value) in object {
        match key.to_ascii_lowercase().as_str() {
            "name" => request.name = Some(string_field("Name", value)?),
            "id" => request.id = Some(string_field("ID", value)?),
            "opts" => {
                request.opts = match value {
                    Value::Null => None,
                    Value::Object(o) => Some(o),
                    _ => return Err("field `Opts` must be an object of strings or null".into()),
                }
            }
            _ => {} // Docker's own rule: unknown fields are ignored.
        }
    }
    Ok(request)
}

fn string_field(field: &str, value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(format!("field `{field}` must be a string")),
    }
}

/// A reply that Docker reads as an error: non-200 status and `Err`.
fn error_reply(status: StatusCode, message: impl Into<String>) -> Response {
    let message = crate::spec::printable(&message.into());
    tracing::warn!(error = %message, "request refused");
    (status, axum::Json(json!({ "Err": message }))).into_response()
}

fn ok_reply(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn volume_json(info: &VolumeInfo) -> Value {
    let mut v = json!({
        "Name": info.name,
        "CreatedAt": info.created_at,
        "Status": info.status,
    });
    if let Some(mp) = &info.mountpoint {
        v["Mountpoint"] = json!(mp);
    }
    v
}

/// The driver's verbs that a request maps to.
#[derive(Clone, Copy, Debug)]
enum Call {
    Create,
    Remove,
    Mount,
    Unmount,
    Path,
    Get,
}

impl Call {
    fn needs_id(self) -> bool {
        matches!(self, Call::Mount | Call::Unmount)
    }
}

/// Parses the body, runs the driver call on the blocking pool (it fsyncs
/// and mounts) and shapes the reply.
async fn handle(driver: Arc<Driver>, call: Call, body: Bytes) -> Response {
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return error_reply(StatusCode::BAD_REQUEST, e),
    };
    let Some(name) = request.name.clone() else {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "the request has no volume `Name`; send {\"Name\": \"...\"}",
        );
    };
    let id = match (call.needs_id(), request.id.clone()) {
        (true, None) => {
            return error_reply(
                StatusCode::BAD_REQUEST,
                format!(
                    "the request for volume {name:?} has no mount `ID`; send {{\"Name\": ..., \"ID\": ...}}"
                ),
            );
        }
        (_, id) => id.unwrap_or_default(),
    };
    tracing::debug!(?call, volume = %name, id = %id, "request");
    let result = tokio::task::spawn_blocking(move || -> Result<Value, DriverError> {
        match call {
            Call::Create => driver
                .create(&name, request.opts.as_ref())
                .map(|_| json!({})),
            Call::Remove => driver.remove(&name).map(|_| json!({})),
            Call::Mount => driver
                .mount(&name, &id)
                .map(|mp| json!({ "Mountpoint": mp })),
            Call::Unmount => driver.unmount(&name, &id).map(|_| json!({})),
            Call::Path => driver.get(&name).map(|info| match info.mountpoint {
                Some(mp) => json!({ "Mountpoint": mp }),
                None => json!({}),
            }),
            Call::Get => driver
                .get(&name)
                .map(|info| json!({ "Volume": volume_json(&info) })),
        }
    })
    .await;
    match result {
        Ok(Ok(body)) => ok_reply(body),
        // Docker probes with Get before every Create: a miss there is routine.
        Ok(Err(e @ DriverError::NotFound(_))) if matches!(call, Call::Get) => {
            tracing::debug!(error = %e, "volume not found");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({ "Err": crate::spec::printable(&e.to_string()) })),
            )
                .into_response()
        }
        Ok(Err(e)) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(join) => error_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the plugin failed while handling this request ({join}); see the plugin's log"),
        ),
    }
}

async fn activate() -> Response {
    ok_reply(json!({ "Implements": ["VolumeDriver"] }))
}

async fn capabilities() -> Response {
    ok_reply(json!({ "Capabilities": { "Scope": "local" } }))
}

async fn list(State(driver): State<Arc<Driver>>) -> Response {
    match tokio::task::spawn_blocking(move || driver.list()).await {
        Ok(volumes) => {
            let volumes: Vec<Value> = volumes.iter().map(volume_json).collect();
            ok_reply(json!({ "Volumes": volumes }))
        }
        Err(join) => error_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the plugin failed while listing volumes ({join}); see the plugin's log"),
        ),
    }
}

/// A body that could not be read, e.g. one over axum's 2 MB limit (413).
fn unreadable_body(rejection: BytesRejection) -> Response {
    error_reply(
        rejection.status(),
        format!(
            "the request body could not be read ({}); send a JSON object of at most 2 MB",
            rejection.body_text()
        ),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    error_reply(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} {uri} is not a call of this plugin; its calls are POST requests"),
    )
}

async fn unknown(method: Method, uri: Uri) -> Response {
    error_reply(
        StatusCode::NOT_FOUND,
        format!(
            "{method} {uri} is not a call of this plugin; it implements Plugin.Activate and VolumeDriver.*"
        ),
    )
}

/// The nine calls of the volume plugin protocol.
pub fn router(driver: Arc<Driver>) -> Router {
    fn route(call: Call) -> axum::routing::MethodRouter<Arc<Driver>> {
        post(
            move |State(d): State<Arc<Driver>>, body: Result<Bytes, BytesRejection>| async move {
                match body {
                    Ok(body) => handle(d, call, body).await,
                    Err(rejection) => unreadable_body(rejection),
                }
            },
        )
    }
    Router::new()
        .route("/Plugin.Activate", post(activate))
        .route("/VolumeDriver.Capabilities", post(capabilities))
        .route("/VolumeDriver.List", post(list))
        .route("/VolumeDriver.Create", route(Call::Create))
        .route("/VolumeDriver.Remove", route(Call::Remove))
        .route("/VolumeDriver.Mount", route(Call::Mount))
        .route("/VolumeDriver.Unmount", route(Call::Unmount))
        .route("/VolumeDriver.Path", route(Call::Path))
        .route("/VolumeDriver.Get", route(Call::Get))
        .fallback(unknown)
        .method_not_allowed_fallback(wrong_method)
        .with_state(driver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_null_bodies_are_empty_requests() {
        assert_eq!(parse_request(b"").unwrap(), Request::default());
        assert_eq!(parse_request(b" \n").unwrap(), Request::default());
        assert_eq!(parse_request(b"null").unwrap(), Request::default());
        assert_eq!(parse_request(b"{}").unwrap(), Request::default());
    }

    #[test]
    fn fields_are_case_insensitive_and_unknown_ones_ignored() {
        let r = parse_request(br#"{"name":"v","Id":"x","OPTS":null,"Extra":[1]}"#).unwrap();
        assert_eq!(r.name.as_deref(), Some("v"));
        assert_eq!(r.id.as_deref(), Some("x"));
        assert_eq!(r.opts, None);
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(crate::spec::printable("plain `x`"), "plain `x`");
        assert_eq!(
            crate::spec::printable("a\nb\u{1b}[2J\0"),
            "a\\nb\\u{1b}[2J\\u{0}"
        );
    }

    #[test]
    fn malformed_bodies_are_sentences() {
        for body in [
            &b"{"[..],
            b"[1]",
            b"\"x\"",
            br#"{"Name":1}"#,
            br#"{"Opts":"a"}"#,
        ] {
            let err = parse_request(body).unwrap_err();
            assert!(!err.is_empty() && !err.contains('\n'), "{err}");
        }
    }
}
