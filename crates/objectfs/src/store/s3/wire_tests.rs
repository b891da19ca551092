//! Wire tests of the S3 store: the real aws-sdk-s3 client sends its
//! requests to a listener on a loopback address that records each raw
//! request and answers it with a scripted reply, so what a store would
//! receive (resolved host name, Host header, request line, SigV4 scope,
//! headers, body) is pinned down, not only our own strings. Rotating
//! credentials on the wire: `rotation`; conditional writes: `conditional`.

mod conditional;
mod rotation;

use super::*;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A resolver that sends every host name to one loopback address and
/// remembers the names.
#[derive(Debug, Clone)]
struct Loopback {
    ip: IpAddr,
    asked: Arc<Mutex<Vec<String>>>,
}

impl aws_smithy_runtime_api::client::dns::ResolveDns for Loopback {
    fn resolve_dns<'a>(
        &'a self,
        name: &'a str,
    ) -> aws_smithy_runtime_api::client::dns::DnsFuture<'a> {
        self.asked.lock().unwrap().push(name.to_string());
        aws_smithy_runtime_api::client::dns::DnsFuture::ready(Ok(vec![self.ip]))
    }
}

/// A raw listener. Port 80 on a loopback address of its own where allowed
/// (the tests run as root), so the endpoint needs no port and the Host
/// header is exactly what a real request carries; else any port, given in
/// the endpoint.
fn listener() -> (TcpListener, Option<u16>) {
    let base = 20 + (std::process::id() % 200) as u8;
    for i in 0..20u8 {
        let ip = Ipv4Addr::new(127, 0, base.wrapping_add(i * 3) | 1, 7);
        if let Ok(l) = TcpListener::bind((ip, 80)) {
            return (l, None);
        }
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, Some(port))
}

/// One request as it arrived.
#[derive(Debug)]
struct Request {
    /// Request line and headers, without the blank line.
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The Host header without the fallback listener's port.
    fn host(&self) -> &str {
        let host = self.header("host").unwrap_or("");
        host.split(':').next().unwrap_or(host)
    }

    /// The SigV4 credential scope of the Authorization header: key id,
    /// date, region, service, terminator.
    fn scope(&self) -> Vec<&str> {
        let auth = self.header("authorization").unwrap_or("");
        let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 Credential=") else {
            return Vec::new();
        };
        rest.split(',').next().unwrap_or("").split('/').collect()
    }

    fn text(&self) -> String {
        format!(
            "{}\r\n\r\n{}",
            self.head,
            String::from_utf8_lossy(&self.body)
        )
    }
}

/// Reads one request (head and Content-Length body); `None` when the
/// connection closes before a whole head arrives.
fn read_request(stream: &mut TcpStream) -> Option<Request> {
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let request = Request {
                head,
                body: Vec::new(),
            };
            let length = request
                .header("content-length")
                .map_or(0, |v| v.parse::<usize>().unwrap());
            if data.len() >= end + 4 + length {
                return Some(Request {
                    body: data[end + 4..end + 4 + length].to_vec(),
                    ..request
                });
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// A reply with its Content-Length (the body's unless `headers` give
/// one), closing the connection so that each request of a test comes on a
/// connection of its own.
fn reply(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str(&format!("Connection: close\r\n\r\n{body}"));
    out
}

fn not_found() -> String {
    reply("404 Not Found", &[], "")
}

fn denied() -> String {
    reply(
        "403 Forbidden",
        &[("Content-Type", "application/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Error><Code>AccessDenied</Code><Message>denied by the test</Message></Error>",
    )
}

/// What HEAD answers for an object of `size` bytes: its Content-Length is
/// the object's, and no body follows.
fn head_of(size: u64) -> String {
    let size = size.to_string();
    reply(
        "200 OK",
        &[
            ("Content-Length", size.as_str()),
            ("ETag", "\"src-etag\""),
            ("Last-Modified", "Wed, 01 Jan 2025 00:00:00 GMT"),
        ],
        "",
    )
}

fn xml(body: &str) -> String {
    reply(
        "200 OK",
        &[("Content-Type", "application/xml")],
        &format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>{body}"),
    )
}

/// A config for `endpoint` (scheme and host; the listener's port is added
/// when it has one) with keys `AKID` / `SECRETKEY123`.
fn signed(endpoint: &str) -> S3Config {
    S3Config {
        bucket: "mybucket".into(),
        endpoint: Some(endpoint.into()),
        access_key_id: Some("AKID".into()),
        access_key_secret: Some("SECRETKEY123".into()),
        ..S3Config::default()
    }
}

/// Runs `op` against a store built from `config` whose every connection
/// goes to a local listener answering the n-th request with `replies[n]`;
/// returns the requests, the host names resolved and `op`'s result.
async fn capture<T>(
    config: S3Config,
    replies: Vec<String>,
    op: impl AsyncFnOnce(&S3Store) -> T,
) -> (Vec<Request>, Vec<String>, T) {
    capture_with_clock(config, replies, credentials::Clock::default(), op).await
}

/// [`capture`] with the credential provider's clock, which the test moves.
async fn capture_with_clock<T>(
    mut config: S3Config,
    replies: Vec<String>,
    clock: credentials::Clock,
    op: impl AsyncFnOnce(&S3Store) -> T,
) -> (Vec<Request>, Vec<String>, T) {
    let (listener, port) = listener();
    let addr: SocketAddr = listener.local_addr().unwrap();
    // Polled, so the server can stop when the store sends fewer requests
    // than there are replies; it keeps its address until then, so no other
    // test's listener takes it over.
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut requests = Vec::new();
            let mut replies = replies.into_iter();
            while replies.len() > 0 {
                let mut stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        continue;
                    }
                    Err(e) => panic!("accept: {e}"),
                };
                stream.set_nonblocking(false).unwrap();
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                stream
                    .write_all(replies.next().unwrap().as_bytes())
                    .unwrap();
                requests.push(request);
            }
            requests
        }
    });
    let asked = Arc::new(Mutex::new(Vec::new()));
    let resolver = Loopback {
        ip: addr.ip(),
        asked: asked.clone(),
    };
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_with_resolver(resolver);
    if let (Some(p), Some(endpoint)) = (port, config.endpoint.as_mut()) {
        endpoint.push_str(&format!(":{p}"));
    }
    let store = S3Store::build_with_clock(&config, Some(http_client), clock).unwrap();
    let out = op(&store).await;
    stop.store(true, Ordering::SeqCst);
    let requests = server.join().unwrap();
    let asked = asked.lock().unwrap().clone();
    (requests, asked, out)
}

/// Each kind of OSS endpoint on the wire: the host name resolved, the Host
/// header, path or virtual-hosted style in the request line, and the SigV4
/// scope with the region OSS expects. (http:// so a plain listener can read
/// it; https differs only in the scheme, see the endpoint unit tests.)
#[tokio::test]
async fn oss_endpoints_on_the_wire_have_the_right_host_style_and_scope() {
    struct Case {
        endpoint: &'static str,
        region: Option<&'static str>,
        path_style: Option<bool>,
        kind: Option<StoreKind>,
        host: &'static str,
        line: &'static str,
        scope_region: &'static str,
    }
    let virtual_hosted = "HEAD /key HTTP/1.1";
    let cases = [
        // Public.
        Case {
            endpoint: "http://oss-cn-hangzhou.aliyuncs.com",
            region: None,
            path_style: None,
            kind: None,
            host: "mybucket.s3.oss-cn-hangzhou.aliyuncs.com",
            line: virtual_hosted,
            scope_region: "cn-hangzhou",
        },
        Case {
            endpoint: "http://s3.oss-ap-southeast-1.aliyuncs.com",
            region: None,
            path_style: None,
            kind: None,
            host: "mybucket.s3.oss-ap-southeast-1.aliyuncs.com",
            line: virtual_hosted,
            scope_region: "ap-southeast-1",
        },
        // Internal.
        Case {
            endpoint: "http://oss-cn-shanghai-internal.aliyuncs.com",
            region: None,
            path_style: None,
            kind: None,
            host: "mybucket.s3.oss-cn-shanghai-internal.aliyuncs.com",
            line: virtual_hosted,
            scope_region: "cn-shanghai",
        },
        // Internal, path style asked for.
        Case {
            endpoint: "http://oss-cn-hangzhou-internal.aliyuncs.com",
            region: None,
            path_style: Some(true),
            kind: None,
            host: "s3.oss-cn-hangzhou-internal.aliyuncs.com",
            line: "HEAD /mybucket/key HTTP/1.1",
            scope_region: "cn-hangzhou",
        },
        // Dual-stack.
        Case {
            endpoint: "http://cn-beijing.oss.aliyuncs.com",
            region: None,
            path_style: None,
            kind: None,
            host: "mybucket.cn-beijing.oss.aliyuncs.com",
            line: virtual_hosted,
            scope_region: "cn-beijing",
        },
        // Dual-stack with a region given: the given one signs.
        Case {
            endpoint: "http://cn-beijing.oss.aliyuncs.com",
            region: Some("cn-shanghai"),
            path_style: None,
            kind: None,
            host: "mybucket.cn-beijing.oss.aliyuncs.com",
            line: virtual_hosted,
            scope_region: "cn-shanghai",
        },
        // An ossfs volume on a custom domain: used as given, its region.
        Case {
            endpoint: "http://files.example.cn",
            region: Some("cn-hangzhou"),
            path_style: None,
            kind: Some(StoreKind::Oss),
            host: "mybucket.files.example.cn",
            line: virtual_hosted,
            scope_region: "cn-hangzhou",
        },
    ];
    for case in cases {
        let mut config = signed(case.endpoint);
        config.region = case.region.map(str::to_string);
        config.path_style = case.path_style;
        config.kind = case.kind;
        let (requests, asked, out) = capture(config, vec![not_found()], async |s: &S3Store| {
            s.head("key").await
        })
        .await;
        let what = case.endpoint;
        assert_eq!(out, Ok(None), "{what}");
        let [request] = &requests[..] else {
            panic!("{what}: {requests:?}")
        };
        assert_eq!(asked, [case.host], "{what}");
        assert_eq!(request.host(), case.host, "{what}");
        assert_eq!(request.line(), case.line, "{what}");
        let scope = request.scope();
        assert_eq!(scope.len(), 5, "{what}: {}", request.head);
        assert_eq!(scope[0], "AKID", "{what}");
        assert!(
            scope[1].len() == 8 && scope[1].bytes().all(|b| b.is_ascii_digit()),
            "{what}: {scope:?}"
        );
        assert_eq!(
            scope[2..],
            [case.scope_region, "s3", "aws4_request"],
            "{what}"
        );
        let auth = request.header("authorization").unwrap();
        assert!(auth.contains("SignedHeaders=host;"), "{what}: {auth}");
        assert!(!request.text().contains("SECRETKEY123"), "{what}");
    }
}

/// Uploads carry a plain Content-Length body: no aws-chunked encoding and
/// no CRC trailer, which OSS and many S3-compatible stores reject.
#[tokio::test]
async fn put_on_the_wire_has_no_chunked_checksum() {
    let ok = reply("200 OK", &[("ETag", "\"abc\"")], "");
    let (requests, _, out) = capture(
        signed("http://oss-cn-hangzhou.aliyuncs.com"),
        vec![ok],
        async |s: &S3Store| {
            let meta = PutMeta {
                content_type: Some("text/plain".into()),
                metadata: [("mode".to_string(), "33188".to_string())].into(),
            };
            s.put("dir/a b+c", Bytes::from_static(b"hello"), &meta)
                .await
        },
    )
    .await;
    assert!(out.is_ok(), "{out:?}");
    let request = &requests[0];
    // The SDK adds `x-id` to most requests; servers ignore it.
    assert_eq!(
        request.line(),
        "PUT /dir/a%20b%2Bc?x-id=PutObject HTTP/1.1",
        "{}",
        request.head
    );
    assert_eq!(request.header("content-length"), Some("5"));
    assert_eq!(request.header("content-type"), Some("text/plain"));
    assert_eq!(request.header("x-amz-meta-mode"), Some("33188"));
    assert_eq!(request.header("content-encoding"), None);
    assert_eq!(request.header("transfer-encoding"), None);
    let lower = request.head.to_ascii_lowercase();
    assert!(!lower.contains("aws-chunked"), "{}", request.head);
    assert!(!lower.contains("x-amz-checksum-"), "{}", request.head);
    assert!(!lower.contains("x-amz-trailer"), "{}", request.head);
    assert_eq!(request.body, b"hello");
}

/// Without keys the request goes out unsigned.
#[tokio::test]
async fn anonymous_request_on_the_wire_is_unsigned() {
    let config = S3Config {
        bucket: "mybucket".into(),
        endpoint: Some("http://oss-cn-hangzhou.aliyuncs.com".into()),
        ..S3Config::default()
    };
    let (requests, _, out) = capture(config, vec![not_found()], async |s: &S3Store| {
        s.head("key").await
    })
    .await;
    assert_eq!(out, Ok(None));
    assert_eq!(requests[0].header("authorization"), None);
    assert!(
        !requests[0]
            .head
            .to_ascii_lowercase()
            .contains("x-amz-security-token")
    );
}

/// What a copy of an object of `size` bytes sends after its HEAD when the
/// store refuses the next request: CopyObject (`PUT dst` with
/// `x-amz-copy-source`) or the start of a multipart copy
/// (`POST dst?uploads`).
async fn copy_request(config: S3Config, size: u64) -> (Request, StoreError) {
    let (mut requests, _, out) = capture(config, vec![head_of(size), denied()], async |s| {
        s.copy("src", None, "dst", None).await
    })
    .await;
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(requests[0].line().starts_with("HEAD /src "), "{requests:?}");
    (requests.pop().unwrap(), out.unwrap_err())
}

fn is_copy_object(r: &Request) -> bool {
    r.line().starts_with("PUT /dst?x-id=CopyObject ")
        && r.header("x-amz-copy-source") == Some("mybucket/src")
}

fn is_multipart_start(r: &Request) -> bool {
    r.line().starts_with("POST /dst?uploads") && r.header("x-amz-copy-source").is_none()
}

/// The switch from CopyObject to UploadPartCopy happens at the endpoint
/// kind's limit: below 1 GB on OSS (any `*.aliyuncs.com` endpoint, or
/// a config that says OSS), at 5 GiB elsewhere.
#[tokio::test]
async fn copy_switches_to_multipart_at_the_endpoint_kinds_limit() {
    let oss = || signed("http://oss-cn-hangzhou.aliyuncs.com");
    let custom_oss = || S3Config {
        kind: Some(StoreKind::Oss),
        ..signed("http://files.example.cn")
    };
    let s3 = || signed("http://storage.example.com");
    for (what, config, size, multipart) in [
        ("oss, just below 1 GB", oss(), 999_999_999, false),
        ("oss, 1 GB", oss(), 1_000_000_000, true),
        ("oss, 2 GB", oss(), 2_000_000_000, true),
        (
            "ossfs on a custom domain, 1 GB",
            custom_oss(),
            1_000_000_000,
            true,
        ),
        ("s3, 2 GB", s3(), 2_000_000_000, false),
        ("s3, 5 GiB", s3(), 5 << 30, false),
        ("s3, over 5 GiB", s3(), (5 << 30) + 1, true),
    ] {
        let (request, err) = copy_request(config, size).await;
        if multipart {
            assert!(is_multipart_start(&request), "{what}: {}", request.head);
            assert_eq!(err.op(), "CreateMultipartUpload", "{what}");
        } else {
            assert!(is_copy_object(&request), "{what}: {}", request.head);
            assert_eq!(err.op(), "CopyObject", "{what}");
        }
        assert!(matches!(err, StoreError::AccessDenied { .. }), "{what}");
    }
}

/// A copy whose source size the caller knows (a listing gave it) sends
/// CopyObject at once, without a HEAD; a size past the limit still asks
/// first. A source gone meanwhile is "not found", from the copy itself.
#[tokio::test]
async fn a_copy_of_a_known_size_sends_no_head() {
    let copied = xml("<CopyObjectResult><ETag>\"dst-etag\"</ETag>\
         <LastModified>2025-01-01T00:00:00.000Z</LastModified></CopyObjectResult>");
    let s3 = || signed("http://storage.example.com");
    let (requests, _, out) = capture(s3(), vec![copied], async |s: &S3Store| {
        s.copy("src", Some(5 << 30), "dst", None).await
    })
    .await;
    // The copy's ETag, from the answer.
    assert_eq!(out, Ok(Some("\"dst-etag\"".to_string())));
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(is_copy_object(&requests[0]), "{}", requests[0].head);

    let (requests, _, out) = capture(s3(), vec![head_of((5 << 30) + 1), denied()], async |s| {
        s.copy("src", Some((5 << 30) + 1), "dst", None).await
    })
    .await;
    assert!(requests[0].line().starts_with("HEAD /src "), "{requests:?}");
    assert!(is_multipart_start(&requests[1]), "{}", requests[1].head);
    assert_eq!(out.unwrap_err().op(), "CreateMultipartUpload");

    let (requests, _, out) = capture(s3(), vec![not_found()], async |s| {
        s.copy("src", Some(10), "dst", None).await
    })
    .await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(matches!(out, Err(StoreError::NotFound { .. })), "{out:?}");
}

/// A known size that is out of date (the object grew past the limit
/// after it was listed): the store refuses CopyObject (S3: a 400; any
/// refusal but "not found" or a retryable one counts), and the HEAD then
/// sends the copy part by part.
#[tokio::test]
async fn a_copy_refused_for_its_size_asks_the_size_and_copies_by_parts() {
    let too_large = reply(
        "400 Bad Request",
        &[("Content-Type", "application/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidRequest</Code>\
         <Message>The specified copy source is larger than the maximum allowable size \
         for a copy source: 5368709120</Message></Error>",
    );
    for refusal in [too_large, denied()] {
        let replies = vec![refusal, head_of((5 << 30) + 1), denied()];
        let (requests, _, out) = capture(
            signed("http://storage.example.com"),
            replies,
            async |s: &S3Store| s.copy("src", Some(10), "dst", None).await,
        )
        .await;
        assert_eq!(requests.len(), 3, "{requests:?}");
        assert!(is_copy_object(&requests[0]), "{}", requests[0].head);
        let head = &requests[1];
        assert!(head.line().starts_with("HEAD /src "), "{}", head.head);
        assert!(is_multipart_start(&requests[2]), "{}", requests[2].head);
        assert_eq!(out.unwrap_err().op(), "CreateMultipartUpload");
    }
}

/// A 1.5 GB object on OSS is copied whole by UploadPartCopy: three ranges
/// that cover it exactly, then the completion naming the three parts.
#[tokio::test]
async fn oss_copy_of_a_large_object_on_the_wire() {
    const SIZE: u64 = 1_500_000_000;
    let part = xml("<CopyPartResult><ETag>\"part-etag\"</ETag>\
         <LastModified>2025-01-01T00:00:00.000Z</LastModified></CopyPartResult>");
    let replies = vec![
        head_of(SIZE),
        xml(
            "<InitiateMultipartUploadResult><Bucket>mybucket</Bucket><Key>dst</Key>\
             <UploadId>UP1</UploadId></InitiateMultipartUploadResult>",
        ),
        part.clone(),
        part.clone(),
        part,
        xml(
            "<CompleteMultipartUploadResult><Bucket>mybucket</Bucket><Key>dst</Key>\
             <ETag>\"dst-etag-3\"</ETag></CompleteMultipartUploadResult>",
        ),
    ];
    let (requests, _, out) = capture(
        signed("http://oss-cn-hangzhou.aliyuncs.com"),
        replies,
        async |s: &S3Store| s.copy("src", None, "dst", None).await,
    )
    .await;
    assert_eq!(out, Ok(Some("\"dst-etag-3\"".to_string())));
    assert_eq!(requests.len(), 6, "{requests:?}");
    assert!(is_multipart_start(&requests[1]), "{}", requests[1].head);
    let mut ranges: Vec<(String, String)> = requests[2..5]
        .iter()
        .map(|r| {
            assert!(r.line().starts_with("PUT /dst?"), "{}", r.head);
            assert!(r.line().contains("uploadId=UP1"), "{}", r.head);
            assert_eq!(r.header("x-amz-copy-source"), Some("mybucket/src"));
            // Of the version the HEAD saw, every part.
            assert_eq!(r.header("x-amz-copy-source-if-match"), Some("\"src-etag\""));
            let number = r
                .line()
                .split(['?', '&', ' '])
                .find_map(|p| p.strip_prefix("partNumber="))
                .unwrap()
                .to_string();
            let range = r.header("x-amz-copy-source-range").unwrap().to_string();
            (number, range)
        })
        .collect();
    ranges.sort();
    let part = COPY_PART_SIZE;
    assert_eq!(
        ranges,
        [
            ("1".to_string(), format!("bytes=0-{}", part - 1)),
            ("2".to_string(), format!("bytes={part}-{}", 2 * part - 1)),
            ("3".to_string(), format!("bytes={}-{}", 2 * part, SIZE - 1)),
        ]
    );
    let complete = &requests[5];
    assert!(
        complete.line().starts_with("POST /dst?uploadId=UP1"),
        "{}",
        complete.head
    );
    let body = String::from_utf8_lossy(&complete.body);
    for n in 1..=3 {
        assert!(
            body.contains(&format!("<PartNumber>{n}</PartNumber>")),
            "{body}"
        );
    }
}

/// The base64 MD5 of `bytes`, as Content-MD5 carries it.
fn content_md5(bytes: &[u8]) -> String {
    use md5::Digest;
    aws_smithy_types::base64::encode(md5::Md5::digest(bytes))
}

#[test]
fn content_md5_matches_known_values() {
    // RFC 1321's test suite, base64-encoded.
    assert_eq!(content_md5(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
}

/// Checks a DeleteObjects request: its Content-MD5 is the MD5 of the body
/// that arrived, it is signed, the SDK's CRC headers are gone, and the
/// body lists `keys` in quiet mode.
fn assert_delete_objects(request: &Request, keys: &[String]) {
    let head = &request.head;
    assert!(
        request.line().starts_with("POST /?delete"),
        "{}",
        request.line()
    );
    let md5 = request.header("content-md5").expect(head);
    assert_eq!(md5, content_md5(&request.body), "{head}");
    let auth = request.header("authorization").unwrap();
    assert!(auth.contains("content-md5"), "{auth}");
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("x-amz-checksum-"), "{head}");
    assert!(!lower.contains("x-amz-sdk-checksum-algorithm"), "{head}");
    let body = String::from_utf8(request.body.clone()).unwrap();
    assert!(body.contains("<Quiet>true</Quiet>"), "{body}");
    assert_eq!(body.matches("<Key>").count(), keys.len(), "{body}");
    for key in keys {
        let escaped = key
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(body.contains(&format!("<Key>{escaped}</Key>")), "{body}");
    }
}

/// Every DeleteObjects carries a correct Content-MD5 (OSS refuses the
/// request without one), 1,000 keys a request at most.
#[tokio::test]
async fn delete_objects_on_the_wire_carries_content_md5() {
    let done = || xml("<DeleteResult></DeleteResult>");
    let keys: Vec<String> = ["a", "dir/b c", "x&y<z>ü"].map(String::from).to_vec();
    let (requests, _, out) = capture(
        signed("http://oss-cn-hangzhou.aliyuncs.com"),
        vec![done()],
        async |s: &S3Store| s.delete_many(&keys).await,
    )
    .await;
    assert_eq!(out, Ok(()));
    let [request] = &requests[..] else {
        panic!("{requests:?}")
    };
    assert_eq!(request.host(), "mybucket.s3.oss-cn-hangzhou.aliyuncs.com");
    assert_delete_objects(request, &keys);

    let many: Vec<String> = (0..MAX_DELETE_KEYS + 1).map(|i| format!("k{i}")).collect();
    let (requests, _, out) = capture(
        signed("http://storage.example.com"),
        vec![done(), done()],
        async |s: &S3Store| s.delete_many(&many).await,
    )
    .await;
    assert_eq!(out, Ok(()));
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_delete_objects(&requests[0], &many[..MAX_DELETE_KEYS]);
    assert_delete_objects(&requests[1], &many[MAX_DELETE_KEYS..]);
    // Nothing to delete, nothing sent.
    let (requests, _, out) = capture(
        signed("http://storage.example.com"),
        vec![done()],
        async |s: &S3Store| s.delete_many(&[]).await,
    )
    .await;
    assert_eq!(out, Ok(()));
    assert!(requests.is_empty(), "{requests:?}");
}

/// A key the answer lists as failed fails the call, named; a key that
/// was not there counts as deleted.
#[tokio::test]
async fn delete_objects_reports_the_keys_that_failed() {
    let keys: Vec<String> = ["a", "b"].map(String::from).to_vec();
    let missing = "<Error><Key>a</Key><Code>NoSuchKey</Code><Message>gone</Message></Error>";
    let denied = "<Error><Key>b</Key><Code>AccessDenied</Code><Message>no</Message></Error>";
    let (_, _, out) = capture(
        signed("http://storage.example.com"),
        vec![xml(&format!("<DeleteResult>{missing}</DeleteResult>"))],
        async |s: &S3Store| s.delete_many(&keys).await,
    )
    .await;
    assert_eq!(out, Ok(()));
    let (_, _, out) = capture(
        signed("http://storage.example.com"),
        vec![xml(&format!(
            "<DeleteResult>{missing}{denied}</DeleteResult>"
        ))],
        async |s: &S3Store| s.delete_many(&keys).await,
    )
    .await;
    let err = out.unwrap_err();
    assert!(matches!(err, StoreError::AccessDenied { .. }), "{err:?}");
    assert_eq!((err.op(), err.key()), ("DeleteObjects", "b"));
    assert!(err.to_string().contains("AccessDenied: no"), "{err}");
}
