//! A test source API on loopback: the external HTTP API a project polls.
//!
//! `GET /items` answers in the shape the `incremental` and `json-split` plugins read:
//! `{"items": [{"id", "updated_at", "n"}], "next": "<absolute url>" | null}`, filtered by
//! `since` and split into pages of `page_size`. `GET /plain` answers a fixed body, for
//! `passthrough`. When a key is required, a request without it (as header or query parameter)
//! gets 401. Every request is recorded so that tests can see what the daemon sent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
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
        self.lock().key = Some((name.to_lowercase(), value.to_string()));
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
