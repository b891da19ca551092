//! The HTTP client for `http://` endpoints (a store on the same host or
//! network: Garage, MinIO, SeaweedFS…): hyper-util's pooled HTTP/1.1
//! client, whose sockets acknowledge every answer at once.
//!
//! Why not the SDK's own client: on a kept-alive connection Linux delays
//! the ACK of an answer's first segment (up to 40 ms) once the exchange
//! looks like request/response. A server that writes the headers and then
//! the body in two writes without TCP_NODELAY (Garage does, for every
//! object larger than it keeps inline, about 3 KiB) holds the body back
//! until that ACK: each such GET took 44 ms instead of 1 ms on loopback.
//! Setting TCP_QUICKACK after each write leaves that delayed-ACK mode for
//! the answer that follows. The SDK's client gives no hook on its sockets,
//! so this one wraps hyper-util's connector; https endpoints keep the
//! SDK's client and its TLS set-up, and so does an endpoint the
//! environment's proxy settings (`HTTP_PROXY`, `NO_PROXY`…) route through a
//! proxy ([`reached_directly`]).
//!
//! What the SDK's client does and this one does too: TCP_NODELAY, the
//! connect timeout (over the name lookup and every address tried) and the
//! read timeout of the connector settings, a connection pool per setting,
//! errors sorted as the retry logic expects (I/O and connect failures
//! retryable, timeouts as timeouts), and the connection handed to the SDK
//! so that a retry after a transient error does not reuse it.

use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{
    CaptureConnection, Connected, Connection, HttpConnector as TcpConnector, capture_connection,
};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Whether requests to `url` go straight to it: no proxy of the
/// environment's settings applies (checked the way the SDK's client does).
pub(super) fn reached_directly(url: &str) -> bool {
    reached_directly_by(&Matcher::from_env(), url)
}

fn reached_directly_by(proxies: &Matcher, url: &str) -> bool {
    url.parse::<Uri>()
        .is_ok_and(|uri| proxies.intercept(&uri).is_none())
}

/// The connect timeout and read timeout a connector was built for.
type Timeouts = (Option<Duration>, Option<Duration>);

/// The client: one connector (and connection pool) per pair of timeouts
/// the SDK asks for; a store asks for one pair only.
#[derive(Debug, Default)]
pub(super) struct PlainHttpClient {
    connectors: Mutex<HashMap<Timeouts, SharedHttpConnector>>,
}

impl HttpClient for PlainHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        self.connectors
            .lock()
            .unwrap()
            .entry(key)
            .or_insert_with(|| SharedHttpConnector::new(Pooled::new(key.0, key.1)))
            .clone()
    }
}

/// A pool of connections with the given timeouts.
#[derive(Clone)]
struct Pooled {
    client: Client<QuickAckConnector, SdkBody>,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl Pooled {
    fn new(connect_timeout: Option<Duration>, read_timeout: Option<Duration>) -> Pooled {
        let mut tcp = TcpConnector::new();
        tcp.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(QuickAckConnector {
                tcp,
                connect_timeout,
            });
        Pooled {
            client,
            read_timeout,
        }
    }
}

impl HttpConnector for Pooled {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let connection = capture_connection(&mut request);
        if let Some(capture) = request.extensions().get::<CaptureSmithyConnection>() {
            capture.set_connection_retriever(move || smithy_connection(&connection));
        }
        let answer = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let answer = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, answer).await {
                    Ok(answer) => answer,
                    Err(elapsed) => return Err(ConnectorError::timeout(elapsed.into())),
                },
                None => answer.await,
            };
            match answer {
                Ok(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(connector_error(e)),
            }
        })
    }
}

/// The connection a request went out on, as the SDK's retry logic sees it:
/// after a transient error it poisons the connection, which the pool then
/// drops instead of reusing it.
fn smithy_connection(connection: &CaptureConnection) -> Option<ConnectionMetadata> {
    connection.connection_metadata().as_ref()?;
    let connection = connection.clone();
    Some(
        ConnectionMetadata::builder()
            .proxied(false)
            .poison_fn(move || {
                if let Some(connected) = connection.connection_metadata().as_ref() {
                    connected.poison();
                }
            })
            .build(),
    )
}

/// Sorts a failed request as the SDK's own client does: a connect failure,
/// a closed connection or an I/O error can be retried; a timeout (hyper's,
/// or the connect timeout's) is one; a message cut short is transient.
fn connector_error(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let connect = err.is_connect();
    let boxed: BoxError = Box::new(err);
    let mut hyper_error = None;
    let mut io_error = false;
    let mut connect_timeout = false;
    let mut next: Option<&(dyn StdError + 'static)> = Some(boxed.as_ref());
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            hyper_error.get_or_insert(h);
        }
        io_error |= e.is::<io::Error>();
        connect_timeout |= e.is::<tokio::time::error::Elapsed>();
        next = e.source();
    }
    let timeout = connect_timeout || hyper_error.is_some_and(|h| h.is_timeout());
    let user = hyper_error.is_some_and(|h| h.is_user());
    let closed = hyper_error.is_some_and(|h| h.is_closed() || h.is_canceled());
    let incomplete = hyper_error.is_some_and(|h| h.is_incomplete_message());
    if timeout {
        ConnectorError::timeout(boxed)
    } else if user {
        ConnectorError::user(boxed)
    } else if connect || closed || io_error {
        ConnectorError::io(boxed)
    } else if incomplete {
        ConnectorError::other(boxed, Some(ErrorKind::TransientError))
    } else {
        ConnectorError::other(boxed, None)
    }
}

/// hyper-util's TCP connector, its connections wrapped in [`QuickAck`];
/// the connect timeout covers the name lookup and every address tried.
#[derive(Clone)]
struct QuickAckConnector {
    tcp: TcpConnector,
    connect_timeout: Option<Duration>,
}

impl tower_service::Service<Uri> for QuickAckConnector {
    type Response = QuickAck;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<QuickAck, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.tcp.call(uri);
        let limit = self.connect_timeout;
        Box::pin(async move {
            let stream = match limit {
                Some(limit) => tokio::time::timeout(limit, connecting).await??,
                None => connecting.await?,
            };
            Ok(QuickAck { stream })
        })
    }
}

/// A connection that asks the kernel, after each write, to acknowledge what
/// comes back at once.
struct QuickAck {
    stream: TokioIo<TcpStream>,
}

impl QuickAck {
    #[cfg(test)]
    fn new(stream: TcpStream) -> QuickAck {
        QuickAck {
            stream: TokioIo::new(stream),
        }
    }

    /// Best effort: a socket that refuses keeps the kernel's default.
    fn ack_at_once(&self) {
        let _ = socket2::SockRef::from(self.stream.inner()).set_tcp_quickack(true);
    }
}

impl Read for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl Write for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.ack_at_once();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.ack_at_once();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connection for QuickAck {
    fn connected(&self) -> Connected {
        self.stream.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::poll_fn;
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;

    /// A loopback server answering every read with a short reply, for
    /// request/response exchanges on one connection.
    fn answering_server() -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                        if stream.write_all(b"answer").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    fn quickack(stream: &TcpStream) -> bool {
        socket2::SockRef::from(stream).tcp_quickack().unwrap()
    }

    /// The kernel behaviour behind the 40 ms GETs, and the way out: after a
    /// few exchanges a plain socket is in delayed-ACK (ping-pong) mode when
    /// it has sent its next request; a [`QuickAck`] socket is not.
    #[tokio::test]
    async fn after_a_request_the_socket_acknowledges_the_answer_at_once() {
        let addr = answering_server();
        let mut answer = [0u8; 6];

        let mut plain = TcpStream::connect(addr).await.unwrap();
        for _ in 0..5 {
            tokio::io::AsyncWriteExt::write_all(&mut plain, b"ask")
                .await
                .unwrap();
            plain.read_exact(&mut answer).await.unwrap();
        }
        tokio::io::AsyncWriteExt::write_all(&mut plain, b"ask")
            .await
            .unwrap();
        assert!(
            !quickack(&plain),
            "a plain socket should delay its ACKs once the exchange is request/response"
        );

        let mut wrapped = QuickAck::new(TcpStream::connect(addr).await.unwrap());
        for round in 0..6 {
            let n = poll_fn(|cx| Pin::new(&mut wrapped).poll_write(cx, b"ask"))
                .await
                .unwrap();
            assert_eq!(n, 3);
            assert!(
                quickack(wrapped.stream.inner()),
                "round {round}: the socket should acknowledge the answer at once"
            );
            wrapped
                .stream
                .inner_mut()
                .read_exact(&mut answer)
                .await
                .unwrap();
        }
    }

    /// A loopback server answering every request on a connection with an
    /// empty 200, and the number of connections it accepted.
    fn http_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get(addr: impl std::fmt::Display) -> HttpRequest {
        HttpRequest::try_from(
            hyper::Request::get(format!("http://{addr}/bucket/key"))
                .body(SdkBody::empty())
                .unwrap(),
        )
        .unwrap()
    }

    /// Connections are kept alive and reused; the SDK learns which one a
    /// request used, so that its retry after a transient error can take it
    /// out of the pool.
    #[tokio::test]
    async fn the_sdk_can_poison_the_connection_a_request_used() {
        let pooled = Pooled::new(Some(Duration::from_secs(2)), None);
        let (addr, accepted) = http_server();
        let ask = |poison: bool| {
            let mut request = get(addr);
            let capture = CaptureSmithyConnection::new();
            request.add_extension(capture.clone());
            let pooled = pooled.clone();
            async move {
                let answer = pooled.call(request).await.unwrap();
                assert_eq!(answer.status().as_u16(), 200);
                let connection = capture.get().expect("the connection should be known");
                if poison {
                    connection.poison();
                }
            }
        };
        ask(false).await;
        ask(true).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the second request reuses the connection"
        );
        ask(false).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "a poisoned connection is not reused"
        );
    }

    /// A connect that gets no answer ends at the connect timeout, as a
    /// timeout: a listener whose backlog is full drops the SYN.
    #[tokio::test]
    async fn a_connect_without_answer_is_a_timeout() {
        let listener =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        listener
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        // Fill the backlog with connections nobody accepts.
        let mut held = Vec::new();
        for _ in 0..4 {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&addr.into());
            held.push(s);
        }
        let pooled = Pooled::new(Some(Duration::from_millis(300)), None);
        let started = std::time::Instant::now();
        let err = pooled.call(get(addr)).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    /// An endpoint the proxy settings route through a proxy keeps the SDK's
    /// client (which uses the proxy); one they exempt is reached directly.
    #[test]
    fn a_proxied_endpoint_is_not_reached_directly() {
        let proxies = Matcher::builder()
            .http("http://proxy.example:3128")
            .no("127.0.0.1,garage.internal")
            .build();
        assert!(!reached_directly_by(&proxies, "http://store.example:9000"));
        assert!(reached_directly_by(&proxies, "http://127.0.0.1:3900"));
        assert!(reached_directly_by(&proxies, "http://garage.internal:3900"));
        assert!(reached_directly_by(
            &Matcher::builder().build(),
            "http://store.example:9000"
        ));
    }

    /// A store that is down: the error is one the SDK retries (I/O).
    #[tokio::test]
    async fn a_refused_connection_is_a_retryable_io_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pooled = Pooled::new(Some(Duration::from_secs(2)), None);
        let err = pooled
            .call(get(format!("127.0.0.1:{port}")))
            .await
            .unwrap_err();
        assert!(err.is_io(), "{err:?}");
    }
}
