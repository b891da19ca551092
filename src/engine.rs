//! The Docker Engine API over its unix socket: the one question `pvc`
//! volumes ask of Docker, "does this named volume exist, and where is it?".
//!
//! Calls are short and bounded (a hung dockerd must not hang a Mount
//! forever), and are made without holding any lock another volume waits on.

use http_body_util::{BodyExt, Empty};
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
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the named volume {0:?} does not exist; create it first (docker volume create {0})")]
    NoSuchVolume(String),
    #[error(
        "the Docker Engine API at {socket:?} cannot be reached ({reason}); the plugin needs it to look up pvc claims (set --docker-socket / OSV_DOCKER_SOCKET)"
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

    /// `GET /volumes/NAME`, blocking the calling thread (which must not be
    /// a runtime worker: the driver runs on blocking threads).
    pub fn volume(&self, name: &str) -> Result<EngineVolume, EngineError> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(self.volume_async(name)),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| self.unreachable(e))?
                .block_on(self.volume_async(name)),
        }
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> EngineError {
        EngineError::Unreachable {
            socket: self.socket.clone(),
            reason: reason.to_string(),
        }
    }

    async fn volume_async(&self, name: &str) -> Result<EngineVolume, EngineError> {
        // Claim names are DNS labels (checked at Create): nothing to escape.
        let uri: hyper::Uri =
            hyperlocal::Uri::new(&self.socket, &format!("/volumes/{name}")).into();
        let client: Client<UnixConnector, Empty<Bytes>> = Client::unix();
        let call = async {
            let response = client.get(uri).await.map_err(|e| self.unreachable(e))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.unreachable(e))?
                .to_bytes();
            Ok::<_, EngineError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| EngineError::Timeout {
                socket: self.socket.clone(),
                secs: self.timeout.as_secs(),
            })??;
        match status {
            200 => serde_json::from_slice(&body).map_err(|e| EngineError::Api {
                name: name.into(),
                status,
                message: format!("unreadable answer: {e}"),
            }),
            404 => Err(EngineError::NoSuchVolume(name.into())),
            _ => Err(EngineError::Api {
                name: name.into(),
                status,
                message: engine_message(&body),
            }),
        }
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
