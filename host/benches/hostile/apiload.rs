//! The API load generator (the `apiload` role, started by a Sluice side with a [`Plan`] of what to
//! send): a process of its own, so that its CPU is not counted as Sluice's, that sends a fixed mix
//! of tenant and operator requests to the API that Sluice side serves on loopback.
//!
//! It is open-loop: request i is due at `start + i / rate` whatever happened to the ones before,
//! and its latency is measured from that due time, not from when it was actually sent. A closed
//! loop would send less while the server is slow and so hide exactly the stalls this measures
//! (coordinated omission). How late the sender itself was is reported apart.

use super::*;

use sluice_side::Plan;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    GetProject,
    ListRuns,
    Usage,
    PatchSettings,
    Create,
    Delete,
    ListProjects,
    ListPlugins,
    Me,
    OperatorListTenants,
    OperatorGetTenant,
    Metrics,
}

/// The mix, in requests per 100: mostly a tenant's console or CI reading its projects and runs,
/// some settings changes and project churn, and the operator's tooling and Prometheus.
const MIX: [(Kind, usize, &str); 12] = [
    (Kind::GetProject, 25, "GET /v1/projects/{id}"),
    (Kind::ListRuns, 15, "GET /v1/projects/{id}/runs"),
    (Kind::Usage, 10, "GET /v1/usage"),
    (Kind::PatchSettings, 10, "PATCH /v1/projects/{id} (plugin_settings)"),
    (Kind::Create, 5, "POST /v1/projects"),
    (Kind::Delete, 5, "DELETE /v1/projects/{id} (one created before)"),
    (Kind::ListProjects, 5, "GET /v1/projects"),
    (Kind::ListPlugins, 5, "GET /v1/plugins"),
    (Kind::Me, 5, "GET /v1/me"),
    (Kind::OperatorListTenants, 5, "GET /v1/tenants (operator)"),
    (Kind::OperatorGetTenant, 8, "GET /v1/tenants/{id} (operator)"),
    (Kind::Metrics, 2, "GET /metrics"),
];

/// Requests in flight beyond which a due request is dropped and counted as such: a server that
/// stalls for seconds must not make the generator open thousands of connections.
const MAX_IN_FLIGHT: usize = 1024;

/// A well-mixed number from a request's index, for picking tenants and projects reproducibly.
fn pick(i: u64, salt: u64) -> usize {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as usize
}

/// 100 slots holding each kind as often as its share, interleaved rather than in runs, so that
/// every second sees the whole mix.
fn slots() -> Vec<Kind> {
    let mut slots: Vec<(u64, Kind)> = Vec::new();
    for (kind, share, _) in MIX {
        slots.extend((0..share).map(|j| (((j as u64 * 2 + 1) * 1000) / (share as u64 * 2), kind)));
    }
    slots.sort_by_key(|(position, _)| *position);
    slots.into_iter().map(|(_, kind)| kind).collect()
}

#[derive(Default)]
struct Record {
    /// Milliseconds from the due time to the end of the response body.
    latency: Vec<f64>,
    /// Milliseconds from sending to the end of the response body.
    service: Vec<f64>,
    /// How late the request was sent after its due time, in milliseconds.
    late: Vec<f64>,
    /// Unexpected answers: status code, or "transport: ...".
    errors: BTreeMap<String, u64>,
    /// Deletes not sent because no project created earlier had come back yet: a sign that creates
    /// were slow, not an error of the API.
    skipped: u64,
}

struct Shared {
    plan: Plan,
    client: reqwest::Client,
    created: Mutex<VecDeque<(usize, String)>>,
    records: Mutex<HashMap<Kind, Record>>,
    in_flight: AtomicUsize,
}

fn project_body(plugin_id: &str, i: u64) -> Value {
    json!({
        "name": format!("churn-{i}"),
        "schedule": "rate(1 minute)",
        "source": {"url": format!("https://api.example.com/items/{i}")},
        "plugin_id": plugin_id,
        "target": {"stream_arn": STREAM_ARN, "role_arn": ROLE_ARN},
    })
}

async fn request(shared: Arc<Shared>, kind: Kind, i: u64, due: Instant, counted: bool) {
    let plan = &shared.plan;
    let (client, base) = (&shared.client, &plan.base);
    let mut t = pick(i, 1) % plan.tenants.len();
    let tenant = &plan.tenants[t];
    let project = &tenant.projects[pick(i, 2) % tenant.projects.len()];
    let builder = match kind {
        Kind::GetProject => client.get(format!("{base}/v1/projects/{project}")),
        Kind::ListRuns => client.get(format!("{base}/v1/projects/{project}/runs")),
        Kind::Usage => client.get(format!("{base}/v1/usage")),
        Kind::PatchSettings => client
            .patch(format!("{base}/v1/projects/{project}"))
            .json(&json!({"plugin_settings": {"revision": i.to_string()}})),
        Kind::Create => client.post(format!("{base}/v1/projects")).json(&project_body(&tenant.plugin_id, i)),
        Kind::Delete => {
            let Some((owner, id)) = shared.created.lock().unwrap().pop_front() else {
                if counted {
                    shared.records.lock().unwrap().entry(kind).or_default().skipped += 1;
                }
                return;
            };
            t = owner;
            client.delete(format!("{base}/v1/projects/{id}"))
        }
        Kind::ListProjects => client.get(format!("{base}/v1/projects")),
        Kind::ListPlugins => client.get(format!("{base}/v1/plugins")),
        Kind::Me => client.get(format!("{base}/v1/me")),
        Kind::OperatorListTenants => client.get(format!("{base}/v1/tenants")),
        Kind::OperatorGetTenant => client.get(format!("{base}/v1/tenants/{}", tenant.id)),
        Kind::Metrics => client.get(format!("{base}/metrics")),
    };
    let builder = match kind {
        Kind::OperatorListTenants | Kind::OperatorGetTenant => builder.bearer_auth(&plan.operator_token),
        Kind::Metrics => builder,
        _ => builder.bearer_auth(&plan.tenants[t].token),
    };
    let expected = match kind {
        Kind::Create => 201,
        Kind::Delete => 204,
        _ => 200,
    };
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let sent = Instant::now();
    let outcome = match builder.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            response.bytes().await.map(|body| (status, body)).map_err(|e| format!("transport: {e}"))
        }
        Err(e) => Err(format!("transport: {e}")),
    };
    let done = Instant::now();
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    let error = match &outcome {
        Ok((status, _)) if *status == expected => None,
        Ok((status, body)) => Some(format!("{status} {}", String::from_utf8_lossy(&body[..body.len().min(120)]))),
        Err(e) => Some(e.chars().take(120).collect()),
    };
    if let (Kind::Create, Ok((201, body))) = (kind, &outcome)
        && let Some(id) = serde_json::from_slice::<Value>(body).ok().and_then(|v| v["id"].as_str().map(String::from))
    {
        shared.created.lock().unwrap().push_back((t, id));
    }
    if counted {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut records = shared.records.lock().unwrap();
        let record = records.entry(kind).or_default();
        record.latency.push(ms(done - due));
        record.service.push(ms(done - sent));
        record.late.push(ms(sent.saturating_duration_since(due)));
        if let Some(error) = error {
            *record.errors.entry(error).or_default() += 1;
        }
    }
}

fn summary(mut values: Vec<f64>) -> (usize, f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values.len(), percentile(&values, 0.50), percentile(&values, 0.99), values.last().copied().unwrap_or(f64::NAN))
}

pub async fn apiload_side(plan_file: PathBuf) -> Value {
    let plan: Plan = serde_json::from_slice(&std::fs::read(plan_file).unwrap()).unwrap();
    let (rate, warmup, window) =
        (plan.rate, Duration::from_secs_f64(plan.warmup_s), Duration::from_secs_f64(plan.window_s));
    let client = reqwest::Client::builder().pool_max_idle_per_host(MAX_IN_FLIGHT).build().unwrap();
    let shared = Arc::new(Shared {
        plan,
        client,
        created: Mutex::default(),
        records: Mutex::default(),
        in_flight: AtomicUsize::new(0),
    });
    let slots = slots();
    let start = Instant::now() + Duration::from_millis(100);
    let (from, to) = (start + warmup, start + warmup + window);
    // Tells the Sluice side, which reads our stdout, that the measured window begins.
    tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        println!("WINDOW");
        std::io::stdout().flush().unwrap();
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut dropped = 0u64;
    for i in 0u64.. {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due >= to {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let counted = due >= from;
        if shared.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            dropped += u64::from(counted);
            continue;
        }
        tasks.spawn(request(shared.clone(), slots[i as usize % slots.len()], i, due, counted));
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let sent_until = Instant::now();
    let drained = tokio::time::timeout(Duration::from_secs(30), async { while tasks.join_next().await.is_some() {} });
    let unfinished = if drained.await.is_err() { tasks.len() } else { 0 };

    let mut records = std::mem::take(&mut *shared.records.lock().unwrap());
    let (mut all, mut late, mut errors) = (Vec::new(), Vec::new(), 0u64);
    let kinds: Vec<Value> = MIX
        .iter()
        .map(|(kind, share, label)| {
            let record = records.remove(kind).unwrap_or_default();
            all.extend(&record.latency);
            late.extend(&record.late);
            errors += record.errors.values().sum::<u64>();
            let (count, p50, p99, max) = summary(record.latency);
            let (_, service_p50, service_p99, _) = summary(record.service);
            json!({
                "kind": label,
                "share": share,
                "count": count,
                "p50_ms": p50,
                "p99_ms": p99,
                "max_ms": max,
                "service_p50_ms": service_p50,
                "service_p99_ms": service_p99,
                "errors": record.errors,
                "skipped": record.skipped,
            })
        })
        .collect();
    let (count, p50, p99, max) = summary(all);
    let (_, late_p50, late_p99, late_max) = summary(late);
    json!({
        "side": "apiload",
        "offered_per_s": rate,
        "window_s": window.as_secs_f64(),
        "completed": count,
        "achieved_per_s": count as f64 / window.as_secs_f64(),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
        "errors": errors,
        "dropped": dropped,
        "unfinished": unfinished,
        "late_p50_ms": late_p50,
        "late_p99_ms": late_p99,
        "late_max_ms": late_max,
        "sender_overrun_ms": sent_until.saturating_duration_since(to).as_secs_f64() * 1000.0,
        "kinds": kinds,
    })
}
