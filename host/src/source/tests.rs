//! The fetcher against a real HTTP server on 127.0.0.1 (see `tests/server.rs`). Functional tests
//! allow private sources, since the server is on loopback; the egress tests do not, and check
//! that refused addresses were never contacted.

mod server;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde_json::Value;
use url::Url;

use super::*;
use server::{GZIP_BOMB, MIB, Server, hang_up, raw_once, reset_mid_body};

const KEY: &str = "sk-live-7f3a9c1e5b20d4";

fn open_config() -> SourceConfig {
    SourceConfig { connect_timeout_ms: 2_000, timeout_ms: 5_000, allow_private: true, ..SourceConfig::default() }
}

fn open() -> Fetcher {
    Fetcher::new(open_config()).unwrap()
}

/// Fetches `url` with `GET` on `url`'s own origin.
async fn get(fetcher: &Fetcher, url: &str) -> Result<Fetched, FetchError> {
    get_with_key(fetcher, url, None).await
}

async fn get_with_key(fetcher: &Fetcher, url: &str, api_key: Option<SourceKey<'_>>) -> Result<Fetched, FetchError> {
    let origin = Url::parse(url).unwrap();
    let request = FetchRequest { method: "GET", url, origin: &origin, headers: &[], body: None, api_key };
    fetcher.fetch(request).await
}

fn header<'a>(fetched: &'a Fetched, name: &str) -> Option<&'a str> {
    fetched.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn json(fetched: &Fetched) -> Value {
    serde_json::from_slice(&fetched.body).unwrap()
}

fn encoded(location: &str) -> String {
    url::form_urlencoded::byte_serialize(location.as_bytes()).collect()
}

#[tokio::test]
async fn get_returns_status_headers_and_body() {
    let server = Server::start().await;
    let fetched = get(&open(), &server.url("/plain")).await.unwrap();
    assert_eq!(fetched.status, 200);
    assert_eq!(header(&fetched, "x-test"), Some("yes"));
    assert_eq!(fetched.body, b"hello");
    assert_eq!(fetched.retry_after, None);
}

#[tokio::test]
async fn error_statuses_are_responses_not_errors() {
    let server = Server::start().await;
    for code in [401, 404, 500] {
        let fetched = get(&open(), &server.url(&format!("/status/{code}"))).await.unwrap();
        assert_eq!(fetched.status, code);
        assert_eq!(fetched.body, format!("status {code}").as_bytes());
    }
}

#[tokio::test]
async fn post_sends_method_headers_and_body() {
    let server = Server::start().await;
    let url = server.url("/echo");
    let origin = Url::parse(&url).unwrap();
    let headers = [("Authorization".to_owned(), "Basic abc".to_owned())];
    let request = FetchRequest {
        method: "post",
        url: &url,
        origin: &origin,
        headers: &headers,
        body: Some(b"{\"a\":1}"),
        api_key: None,
    };
    let echoed = json(&open().fetch(request).await.unwrap());
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["authorization"][0], "Basic abc");
    assert_eq!(echoed["body"], "{\"a\":1}");

    for method in ["GET", "PUT", "PATCH", "DELETE"] {
        let echoed = json(&open().fetch(FetchRequest { method, body: None, ..request }).await.unwrap());
        assert_eq!(echoed["method"], method);
    }
    // A HEAD response declares a length but has no body, so the cap does not apply to it.
    let capped = Fetcher::new(SourceConfig { max_body_bytes: 1000, ..open_config() }).unwrap();
    let url = server.url("/sized/5000");
    let head = FetchRequest { method: "HEAD", url: &url, origin: &origin, headers: &[], body: None, api_key: None };
    let fetched = capped.fetch(head).await.unwrap();
    assert_eq!((fetched.status, fetched.body.len(), header(&fetched, "content-length")), (200, 0, Some("5000")));
}

#[tokio::test]
async fn refuses_other_methods_and_host_set_headers() {
    let origin = Url::parse("http://127.0.0.1:9/").unwrap();
    let request = FetchRequest {
        method: "TRACE",
        url: "http://127.0.0.1:9/",
        origin: &origin,
        headers: &[],
        body: None,
        api_key: None,
    };
    let err = open().fetch(request).await.unwrap_err();
    assert!(matches!(err, FetchError::InvalidRequest(_)) && !err.is_transient(), "{err}");
    assert!(err.to_string().contains("use GET, POST, PUT, PATCH, DELETE or HEAD"), "{err}");

    let headers = [("Host".to_owned(), "internal.example".to_owned())];
    let err = open().fetch(FetchRequest { method: "GET", headers: &headers, ..request }).await.unwrap_err();
    assert_eq!(err, FetchError::InvalidRequest("header `host` is set by the host; remove it".into()));

    let headers = [("x-token".to_owned(), "secret\r\nx-evil: 1".to_owned())];
    let err = open().fetch(FetchRequest { method: "GET", headers: &headers, ..request }).await.unwrap_err();
    assert!(err.to_string().contains("header `x-token`") && !err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn header_key_arrives_with_prefix_and_replaces_a_plugin_value() {
    let server = Server::start().await;
    let url = server.url("/echo");
    let origin = Url::parse(&url).unwrap();
    let headers = [("X-Api-Key".to_owned(), "plugin-chosen".to_owned())];
    let key = SourceKey { value: KEY, placement: KeyPlacement::Header { name: "x-api-key", prefix: "Token " } };
    let request =
        FetchRequest { method: "GET", url: &url, origin: &origin, headers: &headers, body: None, api_key: Some(key) };
    let echoed = json(&open().fetch(request).await.unwrap());
    assert_eq!(echoed["x-api-key"], serde_json::json!([format!("Token {KEY}")]));
}

#[tokio::test]
async fn query_key_arrives_with_prefix_and_replaces_a_plugin_value() {
    let server = Server::start().await;
    let url = server.url("/echo?page=2&api_key=plugin-chosen&q=a%20b");
    let key = SourceKey { value: KEY, placement: KeyPlacement::Query { param: "api_key", prefix: "Key " } };
    let echoed = json(&get_with_key(&open(), &url, Some(key)).await.unwrap());
    let want = serde_json::json!([["page", "2"], ["q", "a b"], ["api_key", format!("Key {KEY}")]]);
    assert_eq!(echoed["query"], want);
}

#[tokio::test]
async fn the_key_never_appears_in_errors() {
    let server = Server::start().await;
    let query_key = Some(SourceKey { value: KEY, placement: KeyPlacement::Query { param: "api_key", prefix: "" } });
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let short_body = raw_once("HTTP/1.1 200 OK\r\ncontent-length: 100", b"only ten b".to_vec()).await;
    let fast = Fetcher::new(SourceConfig { timeout_ms: 200, ..open_config() }).unwrap();
    let cases = [
        (open(), format!("http://{closed}/x?page=1"), "connect"),
        // The loop carries the query, key included, into every redirect URL.
        (open(), server.url("/loop?page=1"), "redirects"),
        (fast, server.url("/slow"), "timeout"),
        (open(), format!("http://{short_body}/x"), "body"),
    ];
    for (fetcher, url, what) in cases {
        let err = get_with_key(&fetcher, &url, query_key).await.unwrap_err();
        let (display, debug) = (err.to_string(), format!("{err:?}"));
        assert!(!display.contains(KEY) && !debug.contains(KEY), "{what}: {display} / {debug}");
        match what {
            "connect" => assert!(matches!(err, FetchError::Connect { .. }) && err.is_transient(), "{debug}"),
            "redirects" => assert_eq!(err, FetchError::TooManyRedirects { limit: 5 }),
            "timeout" => assert!(matches!(err, FetchError::Timeout { limit_ms: 200, .. }), "{debug}"),
            _ => assert!(matches!(err, FetchError::Body { .. }) && err.is_transient(), "{debug}"),
        }
    }
    // Header placement: the request's own Debug output hides the key too.
    let key = SourceKey { value: KEY, placement: KeyPlacement::Header { name: "x-api-key", prefix: "" } };
    assert!(!format!("{key:?}").contains(KEY));
}

#[tokio::test]
async fn gzip_and_deflate_bodies_are_decoded() {
    let server = Server::start().await;
    let fetched = get(&open(), &server.url("/gzip")).await.unwrap();
    assert_eq!(fetched.body, b"hello gzip");
    assert_eq!(header(&fetched, "content-encoding"), None);
    let fetched = get(&open(), &server.url("/deflate")).await.unwrap();
    assert_eq!(fetched.body, b"hello deflate");
}

#[tokio::test]
async fn body_cap_counts_decoded_bytes() {
    let server = Server::start().await;
    assert!(GZIP_BOMB.len() < 100 * 1024, "the bomb is {} bytes compressed", GZIP_BOMB.len());
    let fetcher = Fetcher::new(SourceConfig { max_body_bytes: 10 * MIB as u64, ..open_config() }).unwrap();
    let err = get(&fetcher, &server.url("/bomb")).await.unwrap_err();
    assert_eq!(err, FetchError::TooLarge { limit_bytes: 10 * MIB as u64 });
    assert!(err.to_string().contains("10485760 bytes") && !err.is_transient(), "{err}");
}

#[tokio::test]
async fn body_cap_applies_to_plain_bodies_with_and_without_a_length() {
    let server = Server::start().await;
    let fetcher = Fetcher::new(SourceConfig { max_body_bytes: 1000, ..open_config() }).unwrap();
    assert_eq!(get(&fetcher, &server.url("/sized/1000")).await.unwrap().body.len(), 1000);
    let err = get(&fetcher, &server.url("/sized/1001")).await.unwrap_err();
    assert_eq!(err, FetchError::TooLarge { limit_bytes: 1000 });

    let big = Fetcher::new(SourceConfig { max_body_bytes: 10 * MIB as u64, ..open_config() }).unwrap();
    let err = get(&big, &server.url(&format!("/sized/{}", 10 * MIB + 1))).await.unwrap_err();
    assert_eq!(err, FetchError::TooLarge { limit_bytes: 10 * MIB as u64 });

    // No Content-Length: the body runs to the end of the connection and is cut off while read.
    let addr = raw_once("HTTP/1.1 200 OK\r\nconnection: close", vec![b'a'; 3 * MIB]).await;
    let err = get(&big_enough(MIB), &format!("http://{addr}/")).await.unwrap_err();
    assert_eq!(err, FetchError::TooLarge { limit_bytes: MIB as u64 });
    let addr = raw_once("HTTP/1.1 200 OK\r\nconnection: close", vec![b'a'; MIB]).await;
    assert_eq!(get(&big_enough(MIB), &format!("http://{addr}/")).await.unwrap().body.len(), MIB);
}

fn big_enough(limit: usize) -> Fetcher {
    Fetcher::new(SourceConfig { max_body_bytes: limit as u64, ..open_config() }).unwrap()
}

#[tokio::test]
async fn same_origin_redirects_are_followed_with_the_key() {
    let server = Server::start().await;
    let url = server.url("/redirect?to=/echo%3Ffrom%3Dredirect");
    let key = SourceKey { value: KEY, placement: KeyPlacement::Header { name: "x-api-key", prefix: "" } };
    let echoed = json(&get_with_key(&open(), &url, Some(key)).await.unwrap());
    assert_eq!(echoed["query"], serde_json::json!([["from", "redirect"]]));
    assert_eq!(echoed["x-api-key"], serde_json::json!([KEY]));
    assert_eq!(echoed["referer"], serde_json::json!([]));
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn redirects_off_the_origin_are_refused() {
    let server = Server::start().await;
    let other = Server::start().await;
    let port = server.port();
    let origin = format!("http://127.0.0.1:{port}");
    let targets = [
        (other.url("/plain"), format!("http://127.0.0.1:{}", other.port())),
        (format!("http://localhost:{port}/plain"), format!("http://localhost:{port}")),
        (format!("https://127.0.0.1:{port}/plain"), format!("https://127.0.0.1:{port}")),
    ];
    for (to, target) in targets {
        let err = get(&open(), &server.url(&format!("/redirect?to={}", encoded(&to)))).await.unwrap_err();
        assert_eq!(err, FetchError::OffOrigin { target, origin: origin.clone() });
        assert!(!err.is_transient());
    }
    assert_eq!(server.hits(), 3);
    assert_eq!(other.hits(), 0);
}

#[tokio::test]
async fn redirect_limit_is_exact_and_stops_loops() {
    let server = Server::start().await;
    assert_eq!(get(&open(), &server.url("/chain/5")).await.unwrap().body, b"done");
    assert_eq!(server.hits(), 6);
    let err = get(&open(), &server.url("/chain/6")).await.unwrap_err();
    assert_eq!(err, FetchError::TooManyRedirects { limit: 5 });
    assert!(!err.is_transient());

    let before = server.hits();
    let err = get(&open(), &server.url("/loop")).await.unwrap_err();
    assert_eq!(err, FetchError::TooManyRedirects { limit: 5 });
    assert_eq!(server.hits() - before, 6, "the first request and five redirects");
}

#[tokio::test]
async fn initial_url_off_the_origin_is_refused_before_sending() {
    let server = Server::start().await;
    let origin = Url::parse(&format!("http://localhost:{}/v1", server.port())).unwrap();
    let url = server.url("/plain");
    let request = FetchRequest { method: "GET", url: &url, origin: &origin, headers: &[], body: None, api_key: None };
    let err = open().fetch(request).await.unwrap_err();
    let want = FetchError::OffOrigin {
        target: format!("http://127.0.0.1:{}", server.port()),
        origin: format!("http://localhost:{}", server.port()),
    };
    assert_eq!(err, want);
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn total_timeout_covers_a_slow_response() {
    let server = Server::start().await;
    let fetcher = Fetcher::new(SourceConfig { timeout_ms: 200, ..open_config() }).unwrap();
    let started = Instant::now();
    let err = get(&fetcher, &server.url("/slow")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err, FetchError::Timeout { limit_ms: 200, setting: "timeout_ms" });
    assert!(err.is_transient());
    assert!(elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(1_500), "{elapsed:?}");
}

/// A listener whose accept queue is full: Linux then drops new connections' SYNs, so a connect
/// neither completes nor is refused. It is the one way to make a connect hang on loopback, where
/// tests must stay.
async fn full_listener() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            _ => break,
        }
    }
    (listener, queued, addr)
}

#[tokio::test]
async fn connect_timeout_bounds_a_source_that_never_accepts() {
    let (_listener, queued, addr) = full_listener().await;
    assert!(!queued.is_empty() && queued.len() < 16, "the accept queue filled after {} connections", queued.len());
    let fetcher = Fetcher::new(SourceConfig { connect_timeout_ms: 300, timeout_ms: 10_000, ..open_config() }).unwrap();
    let started = Instant::now();
    let err = get(&fetcher, &format!("http://{addr}/plain")).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err, FetchError::Timeout { limit_ms: 300, setting: "connect_timeout_ms" });
    assert!(err.is_transient());
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_millis(2_000), "{elapsed:?}");
}

#[tokio::test]
async fn retry_after_is_read_in_both_forms() {
    let server = Server::start().await;
    let fetched = get(&open(), &server.url("/retry/seconds")).await.unwrap();
    assert_eq!((fetched.status, fetched.retry_after), (429, Some(Duration::from_secs(120))));
    let fetched = get(&open(), &server.url("/retry/date")).await.unwrap();
    let delay = fetched.retry_after.unwrap();
    assert_eq!(fetched.status, 503);
    assert!(delay >= Duration::from_secs(80) && delay <= Duration::from_secs(90), "{delay:?}");
}

#[tokio::test]
async fn private_addresses_are_refused_without_connecting() {
    let server = Server::start().await;
    let closed = Fetcher::new(SourceConfig { allow_private: false, ..open_config() }).unwrap();
    let port = server.port();
    let cases: [(String, &str, IpAddr); 7] = [
        (format!("http://127.0.0.1:{port}/plain"), "127.0.0.1", Ipv4Addr::LOCALHOST.into()),
        (format!("http://localhost:{port}/plain"), "localhost", Ipv4Addr::LOCALHOST.into()),
        (format!("http://[::1]:{port}/plain"), "[::1]", "::1".parse().unwrap()),
        (format!("http://[::ffff:127.0.0.1]:{port}/plain"), "[::ffff:7f00:1]", "::ffff:7f00:1".parse().unwrap()),
        (format!("http://0.0.0.0:{port}/plain"), "0.0.0.0", Ipv4Addr::UNSPECIFIED.into()),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "169.254.169.254",
            Ipv4Addr::new(169, 254, 169, 254).into(),
        ),
        ("http://10.0.0.1/".into(), "10.0.0.1", Ipv4Addr::new(10, 0, 0, 1).into()),
    ];
    for (url, want_host, want_address) in cases {
        let err = get(&closed, &url).await.unwrap_err();
        let FetchError::Refused { host, address, .. } = &err else { panic!("{url}: {err:?}") };
        assert_eq!(host, want_host, "{url}");
        // `localhost` may resolve to ::1 first; either loopback address is the right refusal.
        assert!(*address == want_address || (host == "localhost" && address.is_loopback()), "{url}: {address}");
        assert!(err.to_string().contains("SLUICE_ALLOW_PRIVATE_SOURCES=true") && !err.is_transient(), "{err}");
    }
    assert_eq!(server.hits(), 0);
    let err = get(&closed, "http://10.0.0.1/").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "refused to connect to 10.0.0.1: private addresses are blocked; an operator can allow the network in the \
         source setting allowed_private_networks, or every private network with SLUICE_ALLOW_PRIVATE_SOURCES=true"
    );
}

/// A guarded fetcher that lets the operator's `allowed` networks through.
fn allowing(allowed: &[&str]) -> Fetcher {
    let allowed_private_networks = allowed.iter().map(|entry| entry.parse().unwrap()).collect();
    Fetcher::new(SourceConfig { allow_private: false, allowed_private_networks, ..open_config() }).unwrap()
}

#[tokio::test]
async fn redirects_are_checked_by_the_guard() {
    let server = Server::start().await;
    // The guard refuses everything private except the test server's own address.
    let guarded = allowing(&["127.0.0.1"]);
    assert_eq!(get(&guarded, &server.url("/plain")).await.unwrap().status, 200);

    let to = encoded("http://169.254.169.254/latest/meta-data/iam/");
    let err = get(&guarded, &server.url(&format!("/redirect?to={to}"))).await.unwrap_err();
    let want = FetchError::Refused {
        host: "169.254.169.254".into(),
        address: Ipv4Addr::new(169, 254, 169, 254).into(),
        range: "link-local (cloud metadata)",
    };
    assert_eq!(err, want);
    // Another loopback address is off the origin too, but the guard speaks first: the refusal
    // says what the target is, not merely that it moved.
    let to = encoded(&format!("http://127.0.0.2:{}/plain", server.port()));
    let err = get(&guarded, &server.url(&format!("/redirect?to={to}"))).await.unwrap_err();
    let FetchError::Refused { address, range: "loopback", .. } = err else { panic!("{err:?}") };
    assert_eq!(address, Ipv4Addr::new(127, 0, 0, 2));
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn allowed_private_networks_open_those_networks_only() {
    let server = Server::start().await;
    let port = server.port();
    // Resolved names are judged like literals: `localhost` reaches the server through 127.0.0.1.
    for entry in ["127.0.0.1", "127.0.0.0/8"] {
        for url in [server.url("/plain"), format!("http://localhost:{port}/plain")] {
            assert_eq!(get(&allowing(&[entry]), &url).await.unwrap().body, b"hello", "{entry} {url}");
        }
    }
    // A neighbouring network, or another family, opens nothing.
    for entry in ["127.0.0.2", "127.0.1.0/24", "10.0.0.0/8", "::1"] {
        let err = get(&allowing(&[entry]), &server.url("/plain")).await.unwrap_err();
        assert!(matches!(err, FetchError::Refused { range: "loopback", .. }), "{entry}: {err:?}");
    }
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn a_failed_tls_handshake_is_named() {
    // A server that answers the ClientHello in plain HTTP, and one that reads it and hangs up.
    let plain = raw_once("HTTP/1.1 400 Bad Request\r\ncontent-length: 0", Vec::new()).await;
    let silent = hang_up().await;
    for (addr, want) in [(plain, "corrupt message"), (silent, "eof")] {
        let err = get(&open(), &format!("https://{addr}/")).await.unwrap_err();
        let FetchError::Tls { origin, reason } = &err else { panic!("{addr}: {err:?}") };
        assert_eq!(origin, &format!("https://{addr}"));
        assert!(reason.to_lowercase().contains(want), "{reason}");
        assert!(err.to_string().starts_with(&format!("the TLS handshake with https://{addr} failed: ")), "{err}");
        assert!(err.is_transient());
    }
    // Nothing listening is a failed connection, not a failed handshake.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = get(&open(), &format!("https://{closed}/")).await.unwrap_err();
    assert!(matches!(err, FetchError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn a_reset_mid_body_is_a_body_error() {
    let addr = reset_mid_body().await;
    let err = get(&open(), &format!("http://{addr}/")).await.unwrap_err();
    let FetchError::Body { reason } = &err else { panic!("{err:?}") };
    assert!(reason.contains("Connection reset by peer"), "{reason}");
    assert!(err.is_transient());
}

#[test]
fn config_defaults_and_unknown_fields() {
    let config: SourceConfig = serde_json::from_str(r#"{"timeout_ms": 1000}"#).unwrap();
    assert_eq!(
        (
            config.connect_timeout_ms,
            config.timeout_ms,
            config.max_body_bytes,
            config.max_redirects,
            config.allow_private
        ),
        (5_000, 1_000, 10 * 1024 * 1024, 5, false)
    );
    let err = serde_json::from_str::<SourceConfig>(r#"{"timeout": 1}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `timeout`"), "{err}");
    let err = Fetcher::new(SourceConfig { timeout_ms: 0, ..SourceConfig::default() }).err().unwrap();
    assert_eq!(err.to_string(), "source setting `timeout_ms` must be greater than 0");
}

#[test]
fn allowed_private_networks_are_read_from_toml_and_bad_entries_named() {
    let config: SourceConfig =
        toml::from_str(r#"allowed_private_networks = ["10.1.2.0/24", "127.0.0.2", "fd00:1::/64"]"#).unwrap();
    let entries: Vec<String> = config.allowed_private_networks.iter().map(ToString::to_string).collect();
    assert_eq!(entries, ["10.1.2.0/24", "127.0.0.2/32", "fd00:1::/64"]);
    assert!(SourceConfig::default().allowed_private_networks.is_empty());

    let err =
        toml::from_str::<SourceConfig>(r#"allowed_private_networks = ["10.1.2.0/24", "10.1.2.3/24"]"#).unwrap_err();
    assert_eq!(
        err.message(),
        "in source.allowed_private_networks, `10.1.2.3/24` has bits set past its /24 prefix; write 10.1.2.0/24, \
         or 10.1.2.3 alone for that one address"
    );
}
