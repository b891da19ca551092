//! The HTTP client a store sends its requests through, replaced by a new
//! one when a request goes unanswered for long. A path that stopped
//! carrying anything (a hung server, a load balancer or NAT that lost its
//! connections) leaves every idle connection of the pool as dead as the one
//! that timed out, and each retry would take the next one and wait out its
//! whole timeout again: a read failed with EIO after its 6 tries, a minute
//! after the store had come back. A request dropped after [`STUCK_AFTER`]
//! without an answer's head (the SDK's timeout, or a caller giving it up)
//! sends the requests that follow through a new client, on new
//! connections; the old client's idle connections close once the requests
//! still using it are done. Only a request of the current client renews
//! it: one still hanging on a client replaced already (an upload part with
//! a long timeout) leaves the new one alone. A request cancelled on purpose
//! after 5 s (read-ahead or parts dropped) renews it too, which costs new
//! connections, nothing more. Wraps both the client of `http://` endpoints
//! (`plain_http`) and the SDK's own (https).

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::{
    RuntimeComponents, RuntimeComponentsBuilder,
};
use aws_smithy_runtime_api::shared::IntoShared;
use aws_smithy_types::config_bag::ConfigBag;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a request may go without an answer before, once it is given
/// up, the client's other connections are taken for dead too.
const STUCK_AFTER: Duration = Duration::from_secs(5);

/// Makes a client with a pool of its own.
type Make = Box<dyn Fn() -> SharedHttpClient + Send + Sync>;

/// A client the requests go through, renewed as the module says.
#[derive(Clone)]
pub(super) struct RenewingClient {
    state: Arc<State>,
}

struct State {
    make: Make,
    /// The client new requests use, and how many clients came before it.
    current: Mutex<(SharedHttpClient, u64)>,
    stuck_after: Duration,
}

impl std::fmt::Debug for RenewingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewingClient").finish_non_exhaustive()
    }
}

impl RenewingClient {
    pub(super) fn new(make: impl Fn() -> SharedHttpClient + Send + Sync + 'static) -> Self {
        Self::renewed_after(make, STUCK_AFTER)
    }

    fn renewed_after(
        make: impl Fn() -> SharedHttpClient + Send + Sync + 'static,
        stuck_after: Duration,
    ) -> Self {
        let first = make();
        RenewingClient {
            state: Arc::new(State {
                make: Box::new(make),
                current: Mutex::new((first, 0)),
                stuck_after,
            }),
        }
    }
}

impl State {
    /// The current client and its generation.
    fn client(&self) -> (SharedHttpClient, u64) {
        self.current.lock().unwrap().clone()
    }

    /// Replaces the client of `generation` (requests stuck together are
    /// given up together: the first replaces it, the others find it gone).
    fn renew(&self, generation: u64, waited: Duration) {
        let mut current = self.current.lock().unwrap();
        if current.1 != generation {
            return;
        }
        *current = ((self.make)(), generation + 1);
        tracing::warn!(
            waited_s = waited.as_secs(),
            "the store left a request unanswered; its other kept-alive connections are dropped and new ones opened"
        );
    }
}

impl HttpClient for RenewingClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let (client, generation) = self.state.client();
        Watched {
            inner: client.http_connector(settings, components),
            generation,
            state: self.state.clone(),
        }
        .into_shared()
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.state
            .client()
            .0
            .validate_base_client_config(components, cfg)
    }

    fn validate_final_config(
        &self,
        components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.state.client().0.validate_final_config(components, cfg)
    }

    fn connector_metadata(
        &self,
    ) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.state.client().0.connector_metadata()
    }
}

/// A client's connector (of that `generation`), each request watched
/// until answered.
struct Watched {
    inner: SharedHttpConnector,
    generation: u64,
    state: Arc<State>,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl HttpConnector for Watched {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut waiting = Unanswered {
            state: self.state.clone(),
            generation: self.generation,
            since: Instant::now(),
            answered: false,
        };
        let answer = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let answer = answer.await;
            waiting.answered();
            answer
        })
    }
}

/// A request waiting for its answer (its head): given up unanswered after
/// the state's `stuck_after` or more, it renews the client it went through
/// (of `generation`), if that is still the current one.
struct Unanswered {
    state: Arc<State>,
    generation: u64,
    since: Instant,
    answered: bool,
}

impl Unanswered {
    fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let waited = self.since.elapsed();
        if !self.answered && waited >= self.state.stuck_after {
            self.state.renew(self.generation, waited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_types::body::SdkBody;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A loopback server answering every request with an empty 200, whose
    /// connections go silent (what they are sent is read and dropped) once
    /// the returned counter is raised past the value it had when they were
    /// accepted; later connections are answered. Also returns the
    /// connections accepted.
    fn silencing_server() -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let silenced = Arc::new(AtomicUsize::new(0));
        let (counter, generation) = (accepted.clone(), silenced.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                let born = generation.load(Ordering::SeqCst);
                let generation = generation.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                        if generation.load(Ordering::SeqCst) != born {
                            continue;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted, silenced)
    }

    /// What the SDK hands a client's connector: the real clock, tokio's
    /// sleep.
    fn components() -> RuntimeComponents {
        RuntimeComponentsBuilder::for_tests()
            .with_time_source(Some(aws_smithy_async::time::SystemTimeSource::new()))
            .with_sleep_impl(Some(aws_smithy_async::rt::sleep::TokioSleep::new()))
            .build()
            .unwrap()
    }

    fn get(addr: std::net::SocketAddr) -> HttpRequest {
        HttpRequest::try_from(
            hyper::Request::get(format!("http://{addr}/bucket/key"))
                .body(SdkBody::empty())
                .unwrap(),
        )
        .unwrap()
    }

    /// Kept-alive connections that all went silent: the request that found
    /// one is given up (as the SDK's timeout does), and the next goes out
    /// on a new connection instead of the next silent one; through the
    /// client of `http://` endpoints and through the SDK's.
    async fn silent_connections_are_left_behind(make: fn() -> SharedHttpClient) {
        let (addr, accepted, silenced) = silencing_server();
        let client = RenewingClient::renewed_after(make, Duration::from_millis(200));
        let components = components();
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_secs(2))
            .build();
        let connector = || client.http_connector(&settings, &components);
        let asks: Vec<_> = (0..3).map(|_| connector().call(get(addr))).collect();
        for answer in futures_util::future::join_all(asks).await {
            assert_eq!(answer.unwrap().status().as_u16(), 200);
        }
        let kept = accepted.load(Ordering::SeqCst);
        assert!(kept >= 2, "{kept} connection(s) kept alive");
        silenced.fetch_add(1, Ordering::SeqCst);
        let limit = Duration::from_millis(500);
        let first = tokio::time::timeout(limit, connector().call(get(addr))).await;
        assert!(first.is_err(), "a silent connection answered");
        let second =
            tokio::time::timeout(Duration::from_secs(3), connector().call(get(addr))).await;
        let second = second.expect("the next request went out on a silent connection too");
        assert_eq!(second.unwrap().status().as_u16(), 200);
        assert!(accepted.load(Ordering::SeqCst) > kept, "no new connection");
    }

    /// Two requests stuck on one client: the first given up replaces it;
    /// the second, given up later, leaves the new client alone.
    #[tokio::test]
    async fn only_a_request_of_the_current_client_renews_it() {
        // A server that accepts and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().collect();
            drop(held);
        });
        let made = Arc::new(AtomicUsize::new(0));
        let count = made.clone();
        let make = move || {
            count.fetch_add(1, Ordering::SeqCst);
            super::super::plain_client()
        };
        let client = RenewingClient::renewed_after(make, Duration::from_millis(100));
        let (components, settings) = (components(), HttpConnectorSettings::builder().build());
        let connector = client.http_connector(&settings, &components);
        let (first, second) = (connector.call(get(addr)), connector.call(get(addr)));
        let first = tokio::time::timeout(Duration::from_millis(300), first).await;
        assert!(first.is_err(), "answered");
        assert_eq!(
            made.load(Ordering::SeqCst),
            2,
            "the first renewed the client"
        );
        let second = tokio::time::timeout(Duration::from_millis(300), second).await;
        assert!(second.is_err(), "answered");
        assert_eq!(
            made.load(Ordering::SeqCst),
            2,
            "the second renewed it again"
        );
    }

    #[tokio::test]
    async fn the_plain_client_leaves_silent_connections_behind() {
        silent_connections_are_left_behind(super::super::plain_client).await;
    }

    #[tokio::test]
    async fn the_sdks_client_leaves_silent_connections_behind() {
        silent_connections_are_left_behind(super::super::sdk_client).await;
    }

    /// The SDK's client as the store builds it speaks TLS to an https
    /// endpoint: what reaches the server first is a TLS handshake record
    /// (0x16), not a plain request, and a server that answers in plain
    /// text is an error.
    #[tokio::test]
    async fn the_sdks_client_speaks_tls_to_https_endpoints() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, first) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).unwrap();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            let _ = tx.send(byte[0]);
        });
        let client = RenewingClient::new(super::super::sdk_client);
        let components = components();
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_secs(2))
            .build();
        let request = HttpRequest::try_from(
            hyper::Request::get(format!("https://{addr}/bucket/key"))
                .body(SdkBody::empty())
                .unwrap(),
        )
        .unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            client.http_connector(&settings, &components).call(request),
        )
        .await
        .expect("no answer within 5 s");
        assert!(answer.is_err(), "a plain-text answer was taken over https");
        let first = first.recv_timeout(Duration::from_secs(5));
        assert_eq!(first, Ok(0x16), "not a TLS handshake");
    }
}
