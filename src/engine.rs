//! The Docker Engine API over its unix socket: the questions `pvc` volumes
//! ask of Docker, "does this named volume exist, and where is it?", and
//! the two changes they make, creating a missing claim (`createIfNotExists`)
//! and removing one the plugin created (`deleteOnSandboxTermination`).
//!
//! Calls are short and bounded (a hung dockerd must not hang a Mount
//! forever), and are made without holding any lock another volume waits on.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one Engine API call may take.
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

/// What `GET /volumes/NAME` says about a volume (the fields pvc needs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EngineVolume {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Mountpoint", default)]
    pub mountpoint: String,
    /// The driver options it was created with (`null` when none).
    #[serde(rename = "Options", default)]
    pub options: Option<BTreeMap<String, String>>,
    /// Its labels (`null` when none).
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the named volume {0:?} does not exist; create it first (docker volume create {0})")]
    NoSuchVolume(String),
    #[error(
        "the Docker Engine API at {socket:?} cannot be reached ({reason}); the plugin needs it for pvc claims (set --docker-socket / OSV_DOCKER_SOCKET)"
    )]
    Unreachable { socket: PathBuf, reason: String },
    #[error("the Docker Engine API at {socket:?} did not answer within {secs} s")]
    Timeout { socket: PathBuf, secs: u64 },
    #[error("the Docker Engine API answered {status} about volume {name:?}: {message}")]
    Api {
        name: String,
        status: u16,
        message: String,
    },
}

/// A client of one Engine API socket.
#[derive(Debug, Clone)]
pub struct Engine {
    socket: PathBuf,
    timeout: Duration,
}

impl Engine {
    pub fn new(socket: PathBuf) -> Self {
        Engine {
            socket,
            timeout: ENGINE_TIMEOUT,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether the socket is there at all: a plugin installed without the
    /// Engine API (the managed plugin's docker-socket mount pointed at
    /// /dev/null) has something else, or nothing, at its path.
    pub fn is_present(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(&self.socket).is_ok_and(|m| m.file_type().is_socket())
    }

    /// `GET /volumes/NAME`, blocking the calling thread (which must not be
    /// a runtime worker: the driver runs on blocking threads).
    pub fn volume(&self, name: &str) -> Result<EngineVolume, EngineError> {
        let (status, body) = self.call("GET", &format!("/volumes/{name}"), None)?;
        match status {
            200 => self.described(name, status, &body),
            404 => Err(EngineError::NoSuchVolume(name.into())),
            _ => Err(api_error(name, status, &body)),
        }
    }

    /// `POST /volumes/create`: a volume of the `local` driver without
    /// options, with `labels`. Docker answers with the existing volume when
    /// the name is taken already (by a local volume).
    pub fn create_local_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<EngineVolume, EngineError> {
        let request = serde_json::json!({"Name": name, "Driver": "local", "Labels": labels});
        let (status, body) = self.call("POST", "/volumes/create", Some(request.to_string()))?;
        match status {
            200 | 201 => self.described(name, status, &body),
            _ => Err(api_error(name, status, &body)),
        }
    }

    /// `DELETE /volumes/NAME`; a volume already gone is no error.
    pub fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        let (status, body) = self.call("DELETE", &format!("/volumes/{name}"), None)?;
        match status {
            204 | 200 | 404 => Ok(()),
            _ => Err(api_error(name, status, &body)),
        }
    }

    fn described(&self, name: &str, status: u16, body: &[u8]) -> Result<EngineVolume, EngineError> {
        serde_json::from_slice(body).map_err(|e| EngineError::Api {
            name: name.into(),
            status,
            message: format!("unreadable answer: {e}"),
        })
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> EngineError {
        EngineError::Unreachable {
            socket: self.socket.clone(),
            reason: reason.to_string(),
        }
    }

    /// One call, its status and body. Volume names in `path` are claim
    /// names (checked at Create: `[a-z0-9-]` only), nothing to escape.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), EngineError> {
        let call = self.call_async(method, path, body);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(call),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| self.unreachable(e))?
                .block_on(call),
        }
    }

    async fn call_async(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Bytes), EngineError> {
        let uri: hyper::Uri = hyperlocal::Uri::new(&self.socket, path).into();
        let mut request = hyper::Request::builder().method(method).uri(uri);
        if body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.unreachable(e))?;
        let client: Client<UnixConnector, Full<Bytes>> = Client::unix();
        let call = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| self.unreachable(e))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(e))?
                .to_bytes();
            Ok::<_, EngineError>((status, body))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| EngineError::Timeout {
                socket: self.socket.clone(),
                secs: self.timeout.as_secs(),
            })?
    }
}

fn api_error(name: &str, status: u16, body: &[u8]) -> EngineError {
    EngineError::Api {
        name: name.into(),
        status,
        message: engine_message(body),
    }
}

/// The `message` of an Engine API error body, else the body itself.
fn engine_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        message: String,
    }
    serde_json::from_slice::<ErrorBody>(body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixListener;

    /// A one-shot fake dockerd answering `status` with `body`.
    fn fake_engine(status: &str, body: &'static str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let status = status.to_string();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(reply.as_bytes()).unwrap();
        });
        (dir, socket)
    }

    /// A one-shot fake dockerd answering `status` with `body`, handing
    /// back the request it read (head and body).
    fn recording_engine(
        status: &'static str,
        body: &'static str,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        std::sync::mpsc::Receiver<String>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            // The test may not want the request: a closed channel is fine.
            let _ = tx.send(String::from_utf8_lossy(&request).to_string());
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(reply.as_bytes()).unwrap();
        });
        (dir, socket, rx)
    }

    #[test]
    fn a_missing_claim_is_created_as_a_labelled_local_volume() {
        let (_dir, socket, request) = recording_engine(
            "201 Created",
            r#"{"Name":"team-data","Driver":"local","Mountpoint":"/var/lib/docker/volumes/team-data/_data","Labels":{"k":"v"},"Options":null}"#,
        );
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let v = Engine::new(socket)
            .create_local_volume("team-data", &labels)
            .unwrap();
        assert_eq!(v.labels, Some(labels));
        assert_eq!(v.mountpoint, "/var/lib/docker/volumes/team-data/_data");
        let request = request.recv().unwrap();
        assert!(
            request.starts_with("POST /volumes/create HTTP/1.1\r\n"),
            "{request}"
        );
        let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"Name": "team-data", "Driver": "local", "Labels": {"k": "v"}})
        );

        let (_dir, socket, _) = recording_engine(
            "400 Bad Request",
            r#"{"message":"create a: \"a\" includes invalid characters for a local volume name"}"#,
        );
        let e = Engine::new(socket)
            .create_local_volume("a", &BTreeMap::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the Docker Engine API answered 400 about volume \"a\": create a: \"a\" includes invalid characters for a local volume name"
        );
    }

    #[test]
    fn removing_a_volume_tolerates_one_already_gone() {
        for (status, ok) in [
            ("204 No Content", true),
            ("404 Not Found", true),
            ("409 Conflict", false),
        ] {
            let (_dir, socket, request) =
                recording_engine(status, r#"{"message":"volume is in use"}"#);
            let result = Engine::new(socket).remove_volume("team-data");
            assert_eq!(result.is_ok(), ok, "{status}: {result:?}");
            let request = request.recv().unwrap();
            assert!(
                request.starts_with("DELETE /volumes/team-data HTTP/1.1\r\n"),
                "{request}"
            );
            if let Err(e) = result {
                assert!(e.to_string().contains("volume is in use"), "{e}");
            }
        }
    }

    #[test]
    fn an_existing_volume_is_described() {
        let (_dir, socket) = fake_engine(
            "200 OK",
            r#"{"Name":"data","Driver":"local","Mountpoint":"/var/lib/docker/volumes/data/_data","Options":null,"Scope":"local"}"#,
        );
        let v = Engine::new(socket).volume("data").unwrap();
        assert_eq!(v.driver, "local");
        assert_eq!(v.mountpoint, "/var/lib/docker/volumes/data/_data");
        assert_eq!(v.options, None);
    }

    #[test]
    fn a_missing_volume_and_a_missing_daemon_are_sentences() {
        let (_dir, socket) =
            fake_engine("404 Not Found", r#"{"message":"get nope: no such volume"}"#);
        let e = Engine::new(socket).volume("nope").unwrap_err();
        assert!(matches!(e, EngineError::NoSuchVolume(_)), "{e}");
        assert!(e.to_string().contains("docker volume create nope"));

        let e = Engine::new("/nonexistent/docker.sock".into())
            .volume("x")
            .unwrap_err();
        assert!(matches!(e, EngineError::Unreachable { .. }), "{e}");
    }

    #[test]
    fn a_silent_daemon_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let _listener = UnixListener::bind(&socket).unwrap(); // never answers
        let mut engine = Engine::new(socket);
        engine.timeout = Duration::from_millis(200);
        let e = engine.volume("x").unwrap_err();
        assert!(matches!(e, EngineError::Timeout { .. }), "{e}");
    }
}
