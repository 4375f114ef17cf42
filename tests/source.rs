//! A test source API on loopback: the external HTTP API a project polls.
//!
//! `GET /items` answers in the shape the `incremental` and `json-split` plugins read:
//! `{"items": [{"id", "updated_at", "n"}], "next": "<absolute url>" | null}`, filtered by
//! `since` and split into pages of `page_size`. `GET /plain` answers a fixed body, for
//! `passthrough`. When a key is required, a request without it (as header or query parameter)
//! gets 401. Every request is recorded so that tests can see what the daemon sent.
//!
//! `GET /events/<log>` serves an append-only log of numbered events (see
//! [`TestSource::append_events`]) after the cursor in `since`, in pages with a `next` link, for
//! the `incremental` plugin with `cursor_field=cursor`, and records every sequence number it
//! served. `/leak/...` are sources that repeat the request (API key included) back in the ways
//! real APIs do: in error bodies, `WWW-Authenticate`, redirects and next-page links.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One request the source saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
}

#[derive(Default)]
struct Inner {
    items: Vec<Value>,
    page_size: usize,
    /// (header name or `?param`, expected value)
    key: Option<(String, String)>,
    seen: Vec<Seen>,
    /// Answer this status to the next N requests, with this Retry-After in seconds.
    fail_next: Option<(u16, u32, u32)>,
    logs: HashMap<String, EventLog>,
}

/// One append-only event log of `/events/<log>`, and what was served from it.
#[derive(Debug, Clone, Default)]
pub struct EventLog {
    /// The last sequence number appended; events are numbered from 1.
    pub appended: u64,
    /// Every sequence number served, in any response.
    pub served: BTreeSet<u64>,
    /// Requests for this log.
    pub requests: u64,
    /// The `since` of the latest request (0 without one) and how many events it got.
    pub last_since: u64,
    pub last_served: usize,
}

/// An event's cursor: zero-padded, so that the plugin's string comparison orders it.
pub fn event_cursor(sequence: u64) -> String {
    format!("{sequence:012}")
}

/// The running source; it stops with the test process.
#[derive(Clone)]
pub struct TestSource {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl TestSource {
    /// Starts the source on its own thread and runtime, so that it serves blocking tests too.
    pub fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner { page_size: 100, ..Inner::default() }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = (inner.clone(), base.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new()
                    .route("/items", axum::routing::get(items))
                    .route("/plain", axum::routing::get(plain))
                    .route("/events/{log}", axum::routing::get(events))
                    .route("/leak/{mode}", axum::routing::get(leak))
                    .with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        Self { base, inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds items `from..to` with ids `item-<n>` and increasing `updated_at`.
    pub fn add_items(&self, range: std::ops::Range<u32>) {
        let mut inner = self.lock();
        for n in range {
            inner.items.push(json!({
                "id": format!("item-{n}"),
                "updated_at": format!("2026-01-01T00:00:{:02}.{:03}Z", n / 1000, n % 1000),
                "n": n,
            }));
        }
    }

    pub fn set_page_size(&self, size: usize) {
        self.lock().page_size = size.max(1);
    }

    /// Requires the key in a header, or in a query parameter when `name` starts with `?`.
    pub fn require_key(&self, name: &str, value: &str) {
        crate::register_secret(value);
        self.lock().key = Some((name.to_lowercase(), value.to_string()));
    }

    /// Appends `count` events to the log `log`; returns the last sequence number appended.
    pub fn append_events(&self, log: &str, count: u64) -> u64 {
        let mut inner = self.lock();
        let log = inner.logs.entry(log.to_string()).or_default();
        log.appended += count;
        log.appended
    }

    /// The log `log` as it stands (empty if nothing was appended or served).
    pub fn event_log(&self, log: &str) -> EventLog {
        self.lock().logs.get(log).cloned().unwrap_or_default()
    }

    /// Answers `status` (with `Retry-After: 1`) to the next `times` requests.
    pub fn fail_next(&self, status: u16, times: u32) {
        self.fail_next_with(status, times, 1);
    }

    /// Answers `status` with `Retry-After: <retry_after_s>` to the next `times` requests.
    pub fn fail_next_with(&self, status: u16, times: u32, retry_after_s: u32) {
        self.lock().fail_next = Some((status, times, retry_after_s));
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }
}

type Shared = (Arc<Mutex<Inner>>, String);

fn admit(inner: &mut Inner, path: &str, query: &HashMap<String, String>, headers: &HeaderMap) -> Option<Response> {
    let headers: HashMap<String, String> =
        headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    inner.seen.push(Seen { path: path.into(), query: query.clone(), headers: headers.clone() });
    if let Some((status, times, retry_after_s)) = inner.fail_next
        && times > 0
    {
        inner.fail_next = Some((status, times - 1, retry_after_s));
        let status = StatusCode::from_u16(status).unwrap();
        return Some((status, [("retry-after", retry_after_s.to_string())], "try again later").into_response());
    }
    if let Some((name, value)) = &inner.key {
        let given = match name.strip_prefix('?') {
            Some(param) => query.get(param),
            None => headers.get(name),
        };
        if given != Some(value) {
            return Some((StatusCode::UNAUTHORIZED, "bad or missing api key").into_response());
        }
    }
    None
}

async fn items(
    State((inner, base)): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    // `delay_ms` makes a slow source, so that runs are in flight when a test stops a host.
    if let Some(ms) = query.get("delay_ms").and_then(|ms| ms.parse().ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(refused) = admit(&mut inner, "/items", &query, &headers) {
        return refused;
    }
    let since = query.get("since").cloned().unwrap_or_default();
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let newer: Vec<&Value> =
        inner.items.iter().filter(|item| item["updated_at"].as_str().unwrap_or("") > since.as_str()).collect();
    let size = inner.page_size;
    let chunk: Vec<&Value> = newer.iter().skip(page * size).take(size).copied().collect();
    let next = ((page + 1) * size < newer.len()).then(|| {
        let since = if since.is_empty() { String::new() } else { format!("&since={since}") };
        format!("{base}/items?page={}{since}", page + 1)
    });
    axum::Json(json!({"items": chunk, "next": next})).into_response()
}

async fn plain(
    State((inner, _)): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(refused) = admit(&mut inner, "/plain", &query, &headers) {
        return refused;
    }
    ([("content-type", "application/json")], r#"{"temperature": 21.5}"#).into_response()
}

/// Events after `since` (a cursor; none means from the start), at most a page of them, with a
/// `next` link that carries the last one's cursor.
async fn events(
    State((inner, base)): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(refused) = admit(&mut inner, &format!("/events/{name}"), &query, &headers) {
        return refused;
    }
    let Ok(since) = query.get("since").map_or(Ok(0), |since| since.parse::<u64>()) else {
        return (StatusCode::BAD_REQUEST, "`since` must be a cursor this source issued").into_response();
    };
    let size = inner.page_size as u64;
    let log = inner.logs.entry(name.clone()).or_default();
    let last = log.appended.min(since.saturating_add(size));
    let page: Vec<Value> = (since + 1..=last)
        .map(|n| json!({"id": format!("{name}-{n}"), "cursor": event_cursor(n), "log": name, "seq": n}))
        .collect();
    log.served.extend(since + 1..=last);
    log.requests += 1;
    log.last_since = since;
    log.last_served = page.len();
    let next = (last < log.appended).then(|| format!("{base}/events/{name}?since={}", event_cursor(last)));
    axum::Json(json!({"items": page, "next": next})).into_response()
}

/// A source that repeats the request back, API key included, the way `mode` says:
///
/// - `refuse-401`, `refuse-403`: that status, with the request in the body and in
///   `WWW-Authenticate`;
/// - `bad-request`: 400 with the request in `items`, so that a plugin's JSON error quotes it;
/// - `next-link`: 200 with no items and a relative `next` link carrying the request's query;
/// - `redirect`: 302 to `/leak/landing` with the request in the query; `landing` answers 503
///   with the request in the body;
/// - `redirect-away`: 302 to the same port on `localhost` (another origin), key in the query;
/// - `redirect-loop`: 302 to itself with the request's query, forever;
/// - `slow`: the body after 3 s.
async fn leak(
    State((inner, _)): State<Shared>,
    Path(mode): Path<String>,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (echo, headers) = {
        let mut inner = inner.lock().unwrap_or_else(|e| e.into_inner());
        let headers: HashMap<String, String> =
            headers.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
        let sent: Vec<String> = headers
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "host" | "user-agent" | "accept" | "accept-encoding"))
            .map(|(name, value)| format!("{name}: {value}"))
            .collect();
        inner.seen.push(Seen { path: format!("/leak/{mode}"), query, headers: headers.clone() });
        (format!("you sent {uri} with {}", sent.join(", ")), headers)
    };
    let query = uri.query().unwrap_or("");
    let redirect = |location: String| (StatusCode::FOUND, [("location", location)]).into_response();
    match mode.as_str() {
        "refuse-401" | "refuse-403" => {
            let status = if mode == "refuse-401" { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
            let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{}\"", echo.replace('"', "'"));
            (status, [("www-authenticate", challenge)], axum::Json(json!({"error": echo}))).into_response()
        }
        "bad-request" => (StatusCode::BAD_REQUEST, axum::Json(json!({"items": echo}))).into_response(),
        "next-link" => {
            axum::Json(json!({"items": [], "next": format!("/leak/next-link?{query}&page=2")})).into_response()
        }
        "redirect" => redirect(format!("/leak/landing?{query}&from=redirect")),
        "landing" => (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], echo).into_response(),
        "redirect-away" => {
            let port = headers.get("host").and_then(|h| h.rsplit(':').next());
            redirect(format!("http://localhost:{}/leak/landing?{query}", port.unwrap_or("80")))
        }
        "redirect-loop" => redirect(format!("/leak/redirect-loop?{query}&again=1")),
        "slow" => {
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            axum::Json(json!({"items": []})).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "no such leak mode").into_response(),
    }
}
