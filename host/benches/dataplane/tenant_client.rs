//! A tenant's side of the API a Sluice side serves: creating the fleet's projects with
//! `POST /v1/projects` and the tenant's key, as a tenant would, and a light open-loop load of
//! reads (`GET /v1/projects/{id}` and `GET /v1/projects/{id}/runs`) on a thread of its own.

use super::*;

use std::sync::Mutex;

/// Requests the creating client keeps in flight: a tenant's deployment script is not one request
/// at a time, nor thousands.
const CREATES_IN_FLIGHT: usize = 32;

/// Creates `settings.n` projects at `rate(1 second)` through the API at `base`, project i by
/// tenant i mod T with its key, on the tenant's streams (see [`stream_arn`]) and with
/// `settings.trust`, and adds each to its member's projects in index order.
pub async fn create_projects(base: &str, members: &mut [Member], settings: &SluiceSettings, source_url: &str) {
    let client = reqwest::Client::new();
    let tenants = members.len();
    let mut keys: Vec<Option<ProjectKey>> = vec![None; settings.n];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..settings.n {
        let t = i % tenants;
        let member = &members[t];
        let body = json!({
            "name": format!("project-{i}"),
            "schedule": "rate(1 second)",
            "source": {"url": source_url},
            "plugin_id": member.plugin_id,
            "target": {"stream_arn": stream_arn(settings.streams_per_tenant, t, i / tenants), "role_arn": ROLE_ARN},
            "trust": settings.trust,
        });
        let request = client.post(format!("{base}/v1/projects")).bearer_auth(&member.token).json(&body);
        let tenant = member.tenant.id.clone();
        tasks.spawn(async move {
            let response = request.send().await.expect("POST /v1/projects failed");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(status, StatusCode::CREATED, "POST /v1/projects answered {status}: {body}");
            let id = body["id"].as_str().expect("a created project has an id");
            (i, ProjectKey::new(tenant.as_str(), id))
        });
        while tasks.len() >= CREATES_IN_FLIGHT {
            let (i, key) = tasks.join_next().await.unwrap().unwrap();
            keys[i] = Some(key);
        }
    }
    while let Some(done) = tasks.join_next().await {
        let (i, key) = done.unwrap();
        keys[i] = Some(key);
    }
    for (i, key) in keys.into_iter().enumerate() {
        members[i % tenants].projects.push(key.expect("every create answered"));
    }
}

/// The reads' outcome: (0 for a project, 1 for its runs; ms from the due time to the end of the
/// body; whether it answered 200).
type Outcome = (usize, f64, bool);

/// Starts the read load on a thread with a current-thread runtime of its own, so that it is not
/// held up by the workers it measures: `rate` reads a second, open-loop (read i is due at
/// `i / rate` s whatever came before, and its latency counts from then), alternating between a
/// project and its runs, each read by a project's tenant with its key; `warmup` first, then the
/// measured `window`. The thread's result is the window's summary.
pub fn start_reads(
    base: String,
    targets: Vec<(String, String)>,
    rate: f64,
    warmup: Duration,
    window: Duration,
) -> std::thread::JoinHandle<Value> {
    std::thread::Builder::new()
        .name("bench-reads".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(reads(base, targets, rate, warmup, window))
        })
        .expect("cannot start the read load")
}

async fn reads(base: String, targets: Vec<(String, String)>, rate: f64, warmup: Duration, window: Duration) -> Value {
    let client = reqwest::Client::new();
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let start = Instant::now();
    let (from, to) = (start + warmup, start + warmup + window);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0u64.. {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due >= to {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        // A well-spread project for each read.
        let (token, project) = &targets[(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) as usize % targets.len()];
        let kind = (i % 2) as usize;
        let url = match kind {
            0 => format!("{base}/v1/projects/{project}"),
            _ => format!("{base}/v1/projects/{project}/runs"),
        };
        let request = client.get(url).bearer_auth(token);
        let (outcomes, counted) = (outcomes.clone(), due >= from);
        tasks.spawn(async move {
            let ok = match request.send().await {
                Ok(response) => response.status() == StatusCode::OK && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            if counted {
                outcomes.lock().unwrap().push((kind, due.elapsed().as_secs_f64() * 1000.0, ok));
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), async { while tasks.join_next().await.is_some() {} }).await;
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let summary = |kind: Option<usize>| {
        let mut ms: Vec<f64> = outcomes.iter().filter(|o| kind.is_none_or(|k| o.0 == k)).map(|o| o.1).collect();
        ms.sort_by(f64::total_cmp);
        json!({
            "count": ms.len(),
            "p50_ms": percentile(&ms, 0.50),
            "p99_ms": percentile(&ms, 0.99),
            "max_ms": ms.last().copied().unwrap_or(f64::NAN),
        })
    };
    json!({
        "offered_per_s": rate,
        "achieved_per_s": outcomes.len() as f64 / window.as_secs_f64(),
        "errors": outcomes.iter().filter(|o| !o.2).count(),
        "all": summary(None),
        "project": summary(Some(0)),
        "runs": summary(Some(1)),
    })
}
