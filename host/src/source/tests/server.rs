//! A real HTTP server on 127.0.0.1 for the fetcher's tests, counting every request it receives.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub(super) const MIB: usize = 1024 * 1024;

/// 11 MiB of zeros, gzip-compressed to a few kilobytes.
pub(super) static GZIP_BOMB: LazyLock<Vec<u8>> = LazyLock::new(|| gzip(&vec![0; 11 * MIB]));

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

pub(super) struct Server {
    pub(super) addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Server {
    /// Starts the test routes on a free port of 127.0.0.1.
    pub(super) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let app = routes().layer(from_fn_with_state(Arc::clone(&hits), count));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, hits }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(super) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many requests reached the server.
    pub(super) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn count(State(hits): State<Arc<AtomicUsize>>, request: Request, next: Next) -> Response {
    hits.fetch_add(1, Ordering::SeqCst);
    next.run(request).await
}

fn routes() -> Router {
    Router::new()
        .route("/plain", get(|| async { ([("x-test", "yes")], "hello") }))
        .route("/status/{code}", get(status))
        .route("/echo", any(echo))
        .route("/sized/{bytes}", get(|Path(bytes): Path<usize>| async move { vec![b'a'; bytes] }))
        .route("/gzip", get(|| async { ([(header::CONTENT_ENCODING, "gzip")], gzip(b"hello gzip")) }))
        .route("/deflate", get(|| async { ([(header::CONTENT_ENCODING, "deflate")], zlib(b"hello deflate")) }))
        .route("/bomb", get(|| async { ([(header::CONTENT_ENCODING, "gzip")], GZIP_BOMB.clone()) }))
        .route("/redirect", get(redirect))
        .route("/chain/{hops}", get(chain))
        .route("/loop", get(|RawQuery(query): RawQuery| async move { found(&with_query("/loop", query)) }))
        .route("/slow", get(slow))
        .route("/retry/seconds", get(|| async { (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "120")]) }))
        .route("/retry/date", get(retry_date))
}

async fn status(Path(code): Path<u16>) -> Response {
    (StatusCode::from_u16(code).unwrap(), format!("status {code}")).into_response()
}

/// Answers with what arrived: method, API-key headers, query pairs (decoded, in order) and body.
async fn echo(method: Method, headers: HeaderMap, RawQuery(query): RawQuery, body: Bytes) -> String {
    let all =
        |name: &str| -> Vec<String> { headers.get_all(name).iter().map(|v| v.to_str().unwrap().to_owned()).collect() };
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    serde_json::json!({
        "method": method.as_str(),
        "x-api-key": all("x-api-key"),
        "authorization": all("authorization"),
        "referer": all("referer"),
        "query": query,
        "body": String::from_utf8_lossy(&body),
    })
    .to_string()
}

fn found(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}

fn with_query(path: &str, query: Option<String>) -> String {
    match query {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    }
}

/// Redirects to `?to=` with a 302.
async fn redirect(Query(params): Query<HashMap<String, String>>) -> Response {
    found(&params["to"])
}

/// Redirects `hops` more times on the same origin, keeping the query, then answers "done".
async fn chain(Path(hops): Path<u32>, RawQuery(query): RawQuery) -> Response {
    match hops {
        0 => "done".into_response(),
        _ => found(&with_query(&format!("/chain/{}", hops - 1), query)),
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

/// A 503 whose `Retry-After` is an HTTP-date 90 seconds from now.
async fn retry_date() -> Response {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(90);
    let date = jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&at).unwrap();
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, date)]).into_response()
}

/// Starts a one-connection server that answers with `head` (status line and headers, without the
/// blank line) and `body`, then closes. It lets tests send bodies axum would frame correctly:
/// delimited by the end of the connection, or shorter than their `Content-Length`.
pub(super) async fn raw_once(head: &'static str, body: Vec<u8>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        // Read the request head (small, one read is enough for these tests), then answer.
        let mut buf = vec![0; 8192];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(format!("{head}\r\n\r\n").as_bytes()).await;
        // The client may hang up once it has enough, so write errors are expected.
        for chunk in body.chunks(64 * 1024) {
            if stream.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = stream.shutdown().await;
    });
    addr
}

/// Starts a one-connection server that reads what the client sends first and hangs up without
/// a word. It reads first because closing a socket with unread data resets the connection.
pub(super) async fn hang_up() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0; 8192];
        let _ = stream.read(&mut buf).await;
        let _ = stream.shutdown().await;
    });
    addr
}

/// Starts a one-connection server that promises 100,000 bytes, sends 1,000, and resets the
/// connection (a zero linger turns the close into a TCP RST).
pub(super) async fn reset_mid_body() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0; 8192];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n").await;
        let _ = stream.write_all(&[b'a'; 1000]).await;
        // The client must have the head and part of the body before the reset, or it would be a
        // failed connection rather than a broken body.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stream.set_zero_linger().unwrap();
        drop(stream);
    });
    addr
}
