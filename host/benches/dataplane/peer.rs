//! The peer: the source, STS and Kinesis in the minimum of code, in a process of its own.

use super::*;

/// How long the credentials the peer's `AssumeRole` issues last, whatever was asked for.
pub const CREDENTIALS_S: i64 = 3600;

#[derive(Default)]
pub struct PeerState {
    body: Bytes,
    gets: AtomicU64,
    puts: AtomicU64,
    records: AtomicU64,
    assumes: AtomicU64,
    /// The distinct (external id, session name) pairs `AssumeRole` was called with, as sent
    /// (form-encoded): the sessions the callers hold.
    sessions: std::sync::Mutex<std::collections::HashSet<Vec<u8>>>,
}

/// A ~1 KiB JSON array, like a small page of an API.
pub fn source_body() -> Bytes {
    let items: Vec<Value> = (0..8)
        .map(|i| {
            json!({
                "id": format!("item-{i:04}"),
                "name": format!("widget {i}"),
                "price_cents": 1999 + i,
                "tags": ["a", "b", "c"],
                "updated_at": "2026-11-23T12:00:00Z",
                "note": "x".repeat(20),
            })
        })
        .collect();
    Bytes::from(serde_json::to_vec(&items).unwrap())
}

pub fn peer() {
    // The peer dies with its parent: the orchestrator holds our stdin and never writes to it.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_line(&mut String::new());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let state = Arc::new(PeerState { body: source_body(), ..PeerState::default() });
        let app = axum::Router::new()
            .route("/items", get(peer_items))
            .route("/stats", get(peer_stats))
            .route("/", post(peer_aws))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("LISTEN {}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

pub async fn peer_items(State(peer): State<Arc<PeerState>>) -> Response {
    peer.gets.fetch_add(1, Ordering::Relaxed);
    ([(header::CONTENT_TYPE, "application/json")], peer.body.clone()).into_response()
}

pub async fn peer_stats(State(peer): State<Arc<PeerState>>) -> Response {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    axum::Json(json!({
        "gets": load(&peer.gets),
        "puts": load(&peer.puts),
        "records": load(&peer.records),
        "assumes": load(&peer.assumes),
        "sessions": peer.sessions.lock().unwrap().len(),
    }))
    .into_response()
}

#[derive(Deserialize)]
pub struct PutRecordsBody {
    #[serde(rename = "Records")]
    records: Vec<serde::de::IgnoredAny>,
}

pub async fn peer_aws(State(peer): State<Arc<PeerState>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    match target {
        Some("Kinesis_20131202.PutRecords") => {
            let Ok(request) = serde_json::from_slice::<PutRecordsBody>(&body) else {
                return (StatusCode::BAD_REQUEST, r#"{"__type":"SerializationException"}"#).into_response();
            };
            let n = request.records.len();
            peer.puts.fetch_add(1, Ordering::Relaxed);
            peer.records.fetch_add(n as u64, Ordering::Relaxed);
            let entry = r#"{"SequenceNumber":"1","ShardId":"shardId-000000000000"}"#;
            let mut out = String::with_capacity(40 + n * (entry.len() + 1));
            out.push_str(r#"{"FailedRecordCount":0,"Records":["#);
            for i in 0..n {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(entry);
            }
            out.push_str("]}");
            ([(header::CONTENT_TYPE, "application/x-amz-json-1.1")], out).into_response()
        }
        None if body.windows(18).any(|w| w == b"Action=AssumeRole&") || body.ends_with(b"Action=AssumeRole") => {
            peer.assumes.fetch_add(1, Ordering::Relaxed);
            let param = |name: &str| {
                body.split(|&b| b == b'&').find(|p| p.starts_with(name.as_bytes())).unwrap_or_default().to_vec()
            };
            let session = [param("ExternalId="), param("RoleSessionName=")].join(&b'&');
            peer.sessions.lock().unwrap().insert(session);
            let expiration = Timestamp::from_second(Timestamp::now().as_second() + CREDENTIALS_S).unwrap();
            let xml = [
                r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>"#,
                "<Credentials><AccessKeyId>ASIABENCHBENCHBENCH0</AccessKeyId>",
                "<SecretAccessKey>benchsecretbenchsecretbenchsecretbench00</SecretAccessKey>",
                "<SessionToken>benchsessiontoken</SessionToken>",
                &format!("<Expiration>{expiration}</Expiration></Credentials>"),
                "<AssumedRoleUser><AssumedRoleId>AROABENCH:bench</AssumedRoleId>",
                "<Arn>arn:aws:sts::123456789012:assumed-role/bench/bench</Arn></AssumedRoleUser>",
                "</AssumeRoleResult><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata>",
                "</AssumeRoleResponse>",
            ]
            .concat();
            ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "unsupported operation").into_response(),
    }
}

pub async fn peer_counters() -> Value {
    let url = format!("http://{}/stats", peer_addr());
    match reqwest::get(url).await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}
