//! The sample JSON API the demo's projects poll, on loopback.
//!
//! `GET /readings?site=…` answers `{"readings": [...]}` with new readings of that site on every
//! request, each stamped with `produced_at`, the moment the API produced it, so that the demo
//! can tell its two projects' records apart and show how long a record took from the API to the
//! tenant's stream. It wants the demo's key in `x-api-key`, as a real API would, so a record
//! arriving also proves that the daemon read the tenant's secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Readings produced per request: more than one shows json-split turning one response into
/// several records.
const READINGS_PER_REQUEST: u64 = 2;

const SENSORS: [&str; READINGS_PER_REQUEST as usize] = ["greenhouse", "cellar"];

/// The running API; it stops with the demo's process.
pub struct SampleApi {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    /// Requests answered with readings.
    served: AtomicU64,
    /// Requests refused for a missing or wrong key.
    refused: AtomicU64,
    /// Readings produced so far; the next reading's number.
    produced: AtomicU64,
}

struct Shared {
    key: String,
    counters: Arc<Counters>,
}

impl SampleApi {
    /// Starts the API on its own thread and runtime, so that it keeps answering while the demo
    /// blocks on anything else.
    pub fn start(key: &str) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let base = format!("http://{}", listener.local_addr()?);
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared { key: key.to_string(), counters: Arc::clone(&counters) });
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a bound listener converts");
                let app = axum::Router::new().route("/readings", axum::routing::get(readings)).with_state(shared);
                // The server only ends with the process, so an error here is worth a loud stop.
                axum::serve(listener, app).await.expect("the sample API serves");
            });
        });
        Ok(Self { base, counters })
    }

    /// Requests answered with readings so far.
    pub fn served(&self) -> u64 {
        self.counters.served.load(Ordering::Relaxed)
    }

    /// Requests refused for their key so far.
    pub fn refused(&self) -> u64 {
        self.counters.refused.load(Ordering::Relaxed)
    }
}

async fn readings(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let counters = &shared.counters;
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(shared.key.as_str()) {
        counters.refused.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::UNAUTHORIZED, "missing or wrong x-api-key").into_response();
    }
    counters.served.fetch_add(1, Ordering::Relaxed);
    let first = counters.produced.fetch_add(READINGS_PER_REQUEST, Ordering::Relaxed) + 1;
    // Milliseconds are enough: the delays the demo shows are tens of milliseconds and up.
    let produced_at = jiff::Timestamp::now().round(jiff::Unit::Millisecond).unwrap_or_else(|_| jiff::Timestamp::now());
    let readings: Vec<_> = (0..READINGS_PER_REQUEST)
        .map(|i| {
            let n = first + i;
            json!({
                "id": format!("reading-{n:04}"),
                "site": query.get("site").map_or("main", String::as_str),
                "sensor": SENSORS[i as usize],
                // A gentle, repeatable wave, so that the values look like a sensor's.
                "celsius": 18.0 + f64::from(u32::try_from(n % 9).unwrap_or(0)) * 0.5,
                "produced_at": produced_at.to_string(),
            })
        })
        .collect();
    axum::Json(json!({ "readings": readings })).into_response()
}
