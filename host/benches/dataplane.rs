//! Data-plane benchmark, run by `cargo xtask bench dataplane`: N projects on `rate(1 second)`
//! through the whole pipeline (scheduler, AssumeRole, fetch, passthrough plugin, outbox,
//! PutRecords, commit, run history) against a local peer, beside a bare loop that only does
//! GET + PutRecords, measured in the same run.
//!
//! The binary plays four roles, chosen by `SLUICE_BENCH_ROLE`, so that every measured side is a
//! process of its own (its CPU time and RSS are its own, and one side's leftovers do not count
//! against the next):
//!
//! - (unset) the orchestrator: starts the peer, runs each scenario in a fresh child, prints the
//!   table.
//! - `peer`: the source (`GET /items`, a 1 KiB JSON body), STS `AssumeRole` (query protocol, fixed
//!   credentials an hour ahead) and Kinesis `PutRecords` (awsJson1.1, every record accepted) on
//!   127.0.0.1, in the minimum of code. The SDK reaches it through `AWS_ENDPOINT_URL`.
//! - `sluice`: a temp-dir store with one premium tenant and N projects using the `passthrough`
//!   plugin, a `Scheduler` with the default jitter window, `RunConfig` defaults, and
//!   `DataPlane::run`: a warm-up, then the measured window.
//! - `bare`: the ratio's baseline: C concurrent loops of reqwest GET of the source and
//!   aws-sdk-kinesis `PutRecords` of the body through one default client, closed-loop (as fast as
//!   it goes) or paced at a fixed rate. No scheduler, plugin, outbox or store.
//!
//! Measured per window: polls/s (successful runs, or loop iterations), schedule lag p50/p99 (a
//! run's `started_at` minus its due time: the nominal `scheduled_at` plus the project's jitter
//! offset, read from `Scheduler::next_tick` before the first run), CPU per poll (the process's
//! own user + system time over the window ÷ polls; the peer is another process and reported
//! apart), and RSS per 1,000 projects (VmRSS after the warm-up minus VmRSS before the projects
//! were created, ÷ N/1000).
//!
//! Settings (environment): `SLUICE_BENCH_DATAPLANE_N` (sizes, default `1000,10000`),
//! `SLUICE_BENCH_WINDOW_S` (measured window, default 20), `SLUICE_BENCH_CONCURRENCY` (the
//! scheduler's global and per-tenant caps, and the bare loop's concurrency, default 64),
//! `SLUICE_BENCH_SIDES` (which scenarios: `bare,sluice,shipped`), `SLUICE_BENCH_PERF` (a
//! directory: record a `perf` CPU profile of each measured window there) and `SLUICE_BENCH_LAGS`
//! (a path prefix: write each Sluice window's runs as "ms into the window, lag ms" lines).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};
use sluice::aws::{Aws, AwsConfig};
use sluice::metrics::Metrics;
use sluice::run::{DataPlane, LoadedPlugins, Parts, RunConfig};
use sluice::runtime::{Runtime, RuntimeConfig};
use sluice::scheduler::{Clock, ProjectKey, Scheduler, SchedulerConfig};
use sluice::source::{Fetcher, SourceConfig};
use sluice::store::{
    CreatePlugin, CreateProject, Onboarding, PluginMeta, Project, ProjectStatus, RunOutcome, RunTrigger, Source, Store,
    Target, Tier, now_rfc3339, random_hex,
};

const ROLE: &str = "SLUICE_BENCH_ROLE";
const PEER: &str = "SLUICE_BENCH_PEER";
const PEER_PID: &str = "SLUICE_BENCH_PEER_PID";
const STREAM_ARN: &str = "arn:aws:kinesis:eu-central-1:123456789012:stream/bench";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/bench";
/// Linux reports process CPU time in ticks of 1/100 s (`USER_HZ`) on every architecture we run on.
const TICKS_PER_SECOND: f64 = 100.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn plugin_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("SLUICE_PLUGINS_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-wasip2/release")
    });
    dir.join(format!("{name}.wasm"))
}

fn main() {
    match std::env::var(ROLE).as_deref() {
        Ok("peer") => peer(),
        Ok("sluice") => child(sluice_side()),
        Ok("bare") => child(bare_side()),
        Ok("store") => child(store_side()),
        Ok("clients") => child(clients_side()),
        _ => orchestrate(),
    }
}

// ---------------------------------------------------------------------------------------------
// Process accounting from /proc.

/// User + system CPU seconds of a process (`self` or a pid).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may contain spaces; fields count from after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Open file descriptors of a process (sockets, mostly).
fn open_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

/// (busy, total) jiffies of the whole machine.
fn machine_jiffies() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<f64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: f64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0.0) + values.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// CPU of this process, the peer and the machine at one moment.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    own: f64,
    peer: f64,
    machine: (f64, f64),
}

impl Sample {
    fn now() -> Self {
        let peer = std::env::var(PEER_PID).map_or(0.0, |pid| cpu_seconds(&pid));
        Self { at: Instant::now(), own: cpu_seconds("self"), peer, machine: machine_jiffies() }
    }
}

/// What every measured window reports, whichever side ran it.
fn window_report(start: Sample, end: Sample, polls: u64) -> Value {
    let wall = end.at.duration_since(start.at).as_secs_f64();
    let per_poll = |seconds: f64| if polls == 0 { 0.0 } else { seconds * 1e6 / polls as f64 };
    let (busy, total) = (end.machine.0 - start.machine.0, end.machine.1 - start.machine.1);
    json!({
        "window_s": wall,
        "polls": polls,
        "polls_per_s": polls as f64 / wall,
        "cpu_us_per_poll": per_poll(end.own - start.own),
        "cpu_cores": (end.own - start.own) / wall,
        "peer_cpu_us_per_poll": per_poll(end.peer - start.peer),
        "machine_busy": if total > 0.0 { busy / total } else { 0.0 },
        // Other processes on this shared machine (builds, tests): a window where this is not
        // near zero was measured on a busy machine.
        "others_cores": (busy / TICKS_PER_SECOND - (end.own - start.own) - (end.peer - start.peer)).max(0.0) / wall,
    })
}

/// Runs one side in a fresh runtime and prints its result for the orchestrator.
fn child(side: impl Future<Output = Value>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let result = runtime.block_on(side);
    println!("RESULT {result}");
    std::io::stdout().flush().unwrap();
    // Exit without tearing down thousands of idle connections and sled's caches: not measured.
    std::process::exit(0);
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

// ---------------------------------------------------------------------------------------------
// The peer: source, STS and Kinesis in one small axum server.

#[derive(Default)]
struct PeerState {
    body: Bytes,
    gets: AtomicU64,
    puts: AtomicU64,
    records: AtomicU64,
    assumes: AtomicU64,
}

/// A ~1 KiB JSON array, like a small page of an API.
fn source_body() -> Bytes {
    let items: Vec<Value> = (0..8)
        .map(|i| json!({"id": format!("item-{i:04}"), "name": format!("widget {i}"), "price_cents": 1999 + i, "tags": ["a", "b", "c"], "updated_at": "2026-11-23T12:00:00Z", "note": "x".repeat(20)}))
        .collect();
    Bytes::from(serde_json::to_vec(&items).unwrap())
}

fn peer() {
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

async fn peer_items(State(peer): State<Arc<PeerState>>) -> Response {
    peer.gets.fetch_add(1, Ordering::Relaxed);
    ([(header::CONTENT_TYPE, "application/json")], peer.body.clone()).into_response()
}

async fn peer_stats(State(peer): State<Arc<PeerState>>) -> Response {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    axum::Json(json!({
        "gets": load(&peer.gets),
        "puts": load(&peer.puts),
        "records": load(&peer.records),
        "assumes": load(&peer.assumes),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct PutRecordsBody {
    #[serde(rename = "Records")]
    records: Vec<serde::de::IgnoredAny>,
}

async fn peer_aws(State(peer): State<Arc<PeerState>>, headers: HeaderMap, body: Bytes) -> Response {
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
            let expiration = Timestamp::from_second(Timestamp::now().as_second() + 3600).unwrap();
            let xml = format!(
                r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>ASIABENCHBENCHBENCH0</AccessKeyId><SecretAccessKey>benchsecretbenchsecretbenchsecretbench00</SecretAccessKey><SessionToken>benchsessiontoken</SessionToken><Expiration>{expiration}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROABENCH:bench</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/bench/bench</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></AssumeRoleResponse>"#
            );
            ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "unsupported operation").into_response(),
    }
}

async fn peer_counters() -> Value {
    let url = format!("http://{}/stats", std::env::var(PEER).unwrap());
    match reqwest::get(url).await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// The Sluice side: the real data plane, in this process.

/// A project as the API would create it: pending, its own external id.
fn project(tenant: &str, plugin_id: &str, source_url: &str, n: usize) -> Project {
    let now = now_rfc3339();
    Project {
        id: format!("prj_{}", random_hex(8)),
        tenant_id: tenant.into(),
        name: format!("project-{n}"),
        schedule: "rate(1 second)".into(),
        timezone: "UTC".into(),
        source: Source { url: source_url.into(), method: "GET".into(), headers: BTreeMap::new(), api_key: None },
        plugin_id: plugin_id.into(),
        plugin_settings: BTreeMap::new(),
        target: Target { stream_arn: STREAM_ARN.into(), role_arn: ROLE_ARN.into() },
        max_pages: 10,
        status: ProjectStatus::Pending,
        status_message: "waiting for the first successful AssumeRole".into(),
        consecutive_failures: 0,
        backoff_until: None,
        onboarding: Onboarding {
            platform_principal_arn: "arn:aws:iam::111111111111:role/sluice".into(),
            external_id: random_hex(16),
        },
        created_at: now.clone(),
        updated_at: now,
    }
}

/// Starts `perf record` on this process for `seconds`, if `SLUICE_BENCH_PERF` names a directory.
fn start_perf(name: &str, seconds: f64) -> Option<Child> {
    let dir = std::env::var_os("SLUICE_BENCH_PERF")?;
    let output = std::path::Path::new(&dir).join(format!("{name}.perf.data"));
    let child = Command::new("perf")
        .args(["record", "-F", "199", "--call-graph", "dwarf,32768", "-o"])
        .arg(&output)
        .args(["-p", &std::process::id().to_string(), "--", "sleep", &format!("{seconds:.0}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match child {
        Ok(child) => {
            eprintln!("  perf record -> {}", output.display());
            Some(child)
        }
        Err(e) => {
            eprintln!("  cannot start perf: {e}");
            None
        }
    }
}

async fn sluice_side() -> Value {
    let n: usize = env_or("SLUICE_BENCH_N", 1000);
    let concurrency: usize = env_or("SLUICE_BENCH_CONCURRENCY", 64);
    let per_tenant: usize = env_or("SLUICE_BENCH_PER_TENANT", concurrency);
    let warmup = Duration::from_secs(env_or("SLUICE_BENCH_WARMUP_S", 5));
    let window = Duration::from_secs(env_or("SLUICE_BENCH_WINDOW_S", 20));
    let source_url = format!("http://{}/items", std::env::var(PEER).unwrap());

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let (tenant, _key) = store.create_tenant("bench", Tier::Premium).await.unwrap();
    assert!(tenant.quotas().max_projects as usize >= n && tenant.quotas().min_interval_seconds <= 1);
    let runtime =
        Runtime::new(RuntimeConfig { cache_dir: Some(dir.path().join("compiled")), ..Default::default() }).unwrap();
    let wasm = std::fs::read(plugin_path("passthrough")).expect("build the plugins first: cargo xtask plugins");
    let plugin = runtime.load(&wasm).unwrap();
    let plugin_id = plugin.id().to_string();
    let meta = PluginMeta {
        id: plugin_id.clone(),
        name: "passthrough".into(),
        size_bytes: wasm.len() as u64,
        created_at: now_rfc3339(),
    };
    let created = store.create_plugin(&tenant.id, meta, &wasm, 10).await.unwrap();
    assert!(matches!(created, CreatePlugin::Created(_)));
    let plugins: LoadedPlugins = Arc::new(Mutex::new(HashMap::from([(plugin_id.clone(), plugin)])));
    let aws = Aws::from_env(AwsConfig::default()).await;
    let fetcher = Fetcher::new(SourceConfig { allow_private: true, ..SourceConfig::default() }).unwrap();
    let metrics = Arc::new(Metrics::default());
    let config = SchedulerConfig {
        max_concurrent_runs: concurrency,
        max_concurrent_runs_per_tenant: per_tenant,
        ..SchedulerConfig::default()
    };
    let scheduler = Scheduler::new(config.clone(), Clock::system());
    let rss_before = rss_bytes();

    // N projects, created the way the API does (one transaction and a flush each), 64 at a time.
    let created_at = Instant::now();
    let mut keys = Vec::with_capacity(n);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (store, project) = (store.clone(), project(&tenant.id, &plugin_id, &source_url, i));
        keys.push(ProjectKey::new(tenant.id.as_str(), project.id.as_str()));
        tasks.spawn(async move { store.create_project(project, u32::MAX).await.unwrap() });
        if tasks.len() >= 64 {
            assert!(matches!(tasks.join_next().await.unwrap().unwrap(), CreateProject::Created(_)));
        }
    }
    while let Some(result) = tasks.join_next().await {
        assert!(matches!(result.unwrap(), CreateProject::Created(_)));
    }
    eprintln!("  {n} projects created in {:.1} s", created_at.elapsed().as_secs_f64());

    let plane = DataPlane::new(Parts {
        store: store.clone(),
        runtime,
        plugins,
        aws: aws.clone(),
        fetcher,
        metrics,
        scheduler: scheduler.clone(),
        config: RunConfig::default(),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(plane.run(async move {
        let _ = stopped.await;
    }));

    // Every project's jitter offset, from its first pending firing (due minus nominal).
    let mut offsets: HashMap<String, i64> = HashMap::with_capacity(n);
    let registered = Instant::now();
    while offsets.len() < n && registered.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        for key in &keys {
            if !offsets.contains_key(&*key.project)
                && let Some(tick) = scheduler.next_tick(key)
            {
                let offset = tick.due_at.duration_since(tick.scheduled_at).as_millis() as i64;
                offsets.insert(key.project.to_string(), offset);
            }
        }
    }
    assert_eq!(offsets.len(), n, "every project is registered with the scheduler");

    tokio::time::sleep(warmup).await;
    let rss_after = rss_bytes();
    let peer_before = peer_counters().await;
    let calls_before = aws.counters();
    let perf = start_perf(&format!("sluice-{n}"), window.as_secs_f64());
    let start = Sample::now();
    let wall_start = Timestamp::now();
    tokio::time::sleep(window).await;
    let end = Sample::now();
    let wall_end = Timestamp::now();
    let calls_after = aws.counters();
    let peer_after = peer_counters().await;
    let rss_end = rss_bytes();
    let (own_fds, peer_fds) = (open_fds("self"), std::env::var(PEER_PID).map_or(0, |pid| open_fds(&pid)));
    if let Some(mut perf) = perf {
        let _ = perf.wait();
    }
    let _ = stop.send(());
    running.await.unwrap().unwrap();

    // Every run that started inside the window, from the projects' run history.
    let (mut lags, mut stages): (Vec<f64>, BTreeMap<String, f64>) = (Vec::new(), BTreeMap::new());
    let (mut succeeded, mut failed, mut skipped, mut catch_up, mut run_ms) = (0u64, 0u64, 0u64, 0u64, 0.0);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut timeline: Vec<(i64, i64)> = Vec::new();
    for key in &keys {
        for run in store.runs(&tenant.id, &key.project, sluice::store::RUNS_KEPT).unwrap() {
            let started: Timestamp = run.started_at.parse().unwrap();
            if started < wall_start || started >= wall_end {
                continue;
            }
            match run.outcome {
                RunOutcome::Skipped => {
                    skipped += 1;
                    continue;
                }
                RunOutcome::Failed => {
                    failed += 1;
                    let error = run.error.as_ref().map_or("?".into(), |e| format!("{}: {}", e.stage, e.message));
                    *errors.entry(error.chars().take(160).collect()).or_default() += 1;
                }
                RunOutcome::Succeeded => succeeded += 1,
            }
            catch_up += u64::from(run.trigger == RunTrigger::CatchUp);
            let scheduled: Timestamp = run.scheduled_at.parse().unwrap();
            let due_ms = scheduled.as_millisecond() + offsets[&run.project_id];
            lags.push((started.as_millisecond() - due_ms) as f64);
            timeline.push((started.as_millisecond() - wall_start.as_millisecond(), started.as_millisecond() - due_ms));
            let finished: Timestamp = run.finished_at.parse().unwrap();
            run_ms += (finished.as_millisecond() - started.as_millisecond()) as f64;
            for (stage, ms) in &run.stage_ms {
                *stages.entry(stage.clone()).or_default() += ms;
            }
        }
    }
    if let Some(path) = std::env::var_os("SLUICE_BENCH_LAGS") {
        // (ms into the window, lag ms) per run, for plotting lag over time.
        timeline.sort();
        let text: String = timeline.iter().map(|(at, lag)| format!("{at} {lag}\n")).collect();
        std::fs::write(format!("{}-{n}.txt", path.to_string_lossy()), text).unwrap();
    }
    let ran = (succeeded + failed).max(1) as f64;
    for ms in stages.values_mut() {
        *ms /= ran;
    }
    lags.sort_by(f64::total_cmp);
    let counter = |v: &Value, name: &str| v[name].as_u64().unwrap_or(0);
    let mut report = window_report(start, end, succeeded);
    let extra = json!({
        "side": "sluice",
        "n": n,
        "concurrency": concurrency,
        "per_tenant": per_tenant,
        "jitter_window_ms": config.jitter_window_ms,
        "offered_per_s": n as f64,
        "lag_p50_ms": percentile(&lags, 0.50),
        "lag_p99_ms": percentile(&lags, 0.99),
        "lag_max_ms": lags.last().copied().unwrap_or(f64::NAN),
        "succeeded": succeeded,
        "failed": failed,
        "skipped": skipped,
        "catch_up": catch_up,
        "errors": errors,
        "run_ms_mean": run_ms / ran,
        "stage_ms_mean": stages,
        "rss_before_mib": rss_before as f64 / 1048576.0,
        "rss_after_warmup_mib": rss_after as f64 / 1048576.0,
        "rss_end_mib": rss_end as f64 / 1048576.0,
        "rss_per_1000_mib": (rss_after.saturating_sub(rss_before)) as f64 / 1048576.0 / (n as f64 / 1000.0),
        "assume_role_calls": calls_after.assume_role_calls - calls_before.assume_role_calls,
        "put_records_calls": calls_after.put_records_calls - calls_before.put_records_calls,
        "peer_records": counter(&peer_after, "records") - counter(&peer_before, "records"),
        "peer_gets": counter(&peer_after, "gets") - counter(&peer_before, "gets"),
        "own_fds": own_fds,
        "peer_fds": peer_fds,
    });
    report.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    report
}

// ---------------------------------------------------------------------------------------------
// The bare loop: GET + PutRecords, nothing else.

async fn bare_side() -> Value {
    let concurrency: usize = env_or("SLUICE_BENCH_CONCURRENCY", 64);
    // 0: closed loop, as fast as it goes; otherwise polls per second, paced.
    let rate: u64 = env_or("SLUICE_BENCH_RATE", 0);
    let warmup = Duration::from_secs(env_or("SLUICE_BENCH_WARMUP_S", 3));
    let window = Duration::from_secs(env_or("SLUICE_BENCH_WINDOW_S", 10));
    let source_url = format!("http://{}/items", std::env::var(PEER).unwrap());

    let http = reqwest::Client::new();
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let polls = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tokens, receiver) = tokio::sync::mpsc::channel::<()>(concurrency * 4);
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (http, kinesis, url) = (http.clone(), kinesis.clone(), source_url.clone());
        let (polls, errors, stop, receiver) = (polls.clone(), errors.clone(), stop.clone(), receiver.clone());
        workers.spawn(async move {
            let partition_key = format!("bare-{worker}");
            while !stop.load(Ordering::Relaxed) {
                if rate > 0 && receiver.lock().await.recv().await.is_none() {
                    break;
                }
                let body = match http.get(&url).send().await {
                    Ok(response) => response.bytes().await,
                    Err(e) => Err(e),
                };
                let Ok(body) = body else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .data(aws_sdk_kinesis::primitives::Blob::new(body.to_vec()))
                    .partition_key(&partition_key)
                    .build()
                    .unwrap();
                let put = kinesis.put_records().stream_arn(STREAM_ARN).records(entry).send().await;
                match put {
                    Ok(output) if output.failed_record_count() == Some(0) => {
                        polls.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    let pacer = (rate > 0).then(|| {
        let stop = stop.clone();
        tokio::spawn(async move {
            // A token every 1/rate s, in 1 ms steps; tokens the workers cannot take are dropped.
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            let (started, mut sent) = (Instant::now(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
                while sent < due {
                    let _ = tokens.try_send(());
                    sent += 1;
                }
            }
        })
    });

    tokio::time::sleep(warmup).await;
    let (polls_before, errors_before) = (polls.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let perf = start_perf(&format!("bare-{rate}"), window.as_secs_f64());
    let start = Sample::now();
    tokio::time::sleep(window).await;
    let end = Sample::now();
    let (polls_after, errors_after) = (polls.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let rss = rss_bytes();
    if let Some(mut perf) = perf {
        let _ = perf.wait();
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(pacer) = pacer {
        pacer.abort();
    }
    workers.abort_all();

    let mut report = window_report(start, end, polls_after - polls_before);
    let extra = json!({
        "side": "bare",
        "concurrency": concurrency,
        "offered_per_s": rate,
        "errors": errors_after - errors_before,
        "rss_end_mib": rss as f64 / 1048576.0,
    });
    report.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    report
}

// ---------------------------------------------------------------------------------------------
// Probes for where the time and memory go.

/// The store's part of one successful run, call for call as `run/pipeline.rs` and
/// `run/deliver.rs` make them for a passthrough run with one record and no state: read the
/// project, count its outbox, read the next state, enqueue (flush), read the outbox and the
/// project again, complete the delivery (flush), record the run (flush), update the status
/// (flush).
async fn store_run(store: &Store, project: &Project, body: &[u8]) {
    let (tenant, id) = (&project.tenant_id, &project.id);
    let started = Timestamp::now();
    let project = store.project(tenant, id).unwrap().unwrap();
    let _backlog = store.outbox_len_of(tenant, id);
    let state = store.next_state(tenant, id).unwrap();
    let run_id = format!("run_{}", random_hex(8));
    let entry = sluice::store::OutboxEntry {
        tenant_id: tenant.clone(),
        project_id: id.clone(),
        run_id: run_id.clone(),
        scheduled_at_ms: started.as_millisecond(),
        state,
        records: vec![sluice::store::OutRecord {
            data: body.to_vec(),
            partition_key: id.clone(),
            explicit_hash_key: None,
        }],
    };
    store.enqueue(&entry).await.unwrap();
    let entries = store.outbox_of(tenant, id).unwrap();
    let _again = store.project(tenant, id).unwrap();
    for (key, _) in entries {
        store.complete_delivery(&key).await.unwrap();
    }
    let ms = |t: Timestamp| t.round(jiff::Unit::Millisecond).unwrap_or(t).to_string();
    let run = sluice::store::Run {
        id: run_id,
        project_id: id.clone(),
        trigger: RunTrigger::Schedule,
        scheduled_at: ms(started),
        started_at: ms(started),
        finished_at: ms(Timestamp::now()),
        outcome: RunOutcome::Succeeded,
        http_status: Some(200),
        pages: 1,
        records: 1,
        bytes_fetched: body.len() as u64,
        bytes_delivered: body.len() as u64,
        stage_ms: ["assume_role", "load_plugin", "prepare", "fetch", "transform", "outbox", "deliver"]
            .into_iter()
            .map(|stage| (stage.to_string(), 0.5))
            .collect(),
        error: None,
    };
    store.record_run(tenant, &run, 0.3).await.unwrap();
    let _ = store.update_project(tenant, id, |p| p.consecutive_failures = 0).await.unwrap();
    drop(project);
}

/// The store alone: C concurrent loops of `store_run` over N projects, closed loop.
async fn store_side() -> Value {
    let n: usize = env_or("SLUICE_BENCH_N", 1000);
    let concurrency: usize = env_or("SLUICE_BENCH_CONCURRENCY", 64);
    let warmup = Duration::from_secs(env_or("SLUICE_BENCH_WARMUP_S", 3));
    let window = Duration::from_secs(env_or("SLUICE_BENCH_WINDOW_S", 10));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let (tenant, _key) = store.create_tenant("bench", Tier::Premium).await.unwrap();
    let projects: Vec<Project> =
        (0..n).map(|i| project(&tenant.id, "sha256:00", "http://127.0.0.1:9/items", i)).collect();
    for chunk in projects.chunks(64) {
        let mut tasks = tokio::task::JoinSet::new();
        for p in chunk {
            let (store, p) = (store.clone(), p.clone());
            tasks.spawn(async move { store.create_project(p, u32::MAX).await.unwrap() });
        }
        while tasks.join_next().await.is_some() {}
    }
    let projects = Arc::new(projects);
    let body = source_body();
    let (runs, stop, next) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (store, projects, body) = (store.clone(), projects.clone(), body.clone());
        let (runs, stop, next) = (runs.clone(), stop.clone(), next.clone());
        workers.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Every project is in at most one worker's hands at a time, as with the scheduler.
                let i = next.fetch_add(1, Ordering::Relaxed) as usize % projects.len();
                store_run(&store, &projects[i], &body).await;
                runs.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(warmup).await;
    let before = runs.load(Ordering::Relaxed);
    let start = Sample::now();
    tokio::time::sleep(window).await;
    let end = Sample::now();
    let after = runs.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    while workers.join_next().await.is_some() {}
    let mut report = window_report(start, end, after - before);
    let extra = json!({"side": "store", "n": n, "concurrency": concurrency, "offered_per_s": 0});
    report.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    report
}

/// Memory of per-session Kinesis clients: N clients built the way `aws/credentials.rs` builds one
/// per assumed-role session (own credentials, no identity cache, no retries, its own default
/// HTTP client), then one `PutRecords` through each (one connection each), against one client
/// making the same N calls.
async fn clients_side() -> Value {
    let n: usize = env_or("SLUICE_BENCH_N", 1000);
    let concurrency: usize = env_or("SLUICE_BENCH_CONCURRENCY", 64);
    let base = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let put = |client: aws_sdk_kinesis::Client, i: usize| async move {
        let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
            .data(aws_sdk_kinesis::primitives::Blob::new(vec![b'x'; 1024]))
            .partition_key(format!("p-{i}"))
            .build()
            .unwrap();
        client.put_records().stream_arn(STREAM_ARN).records(entry).send().await.unwrap();
    };
    async fn in_waves<F: Future<Output = ()> + Send + 'static>(calls: Vec<F>, concurrency: usize) {
        let mut tasks = tokio::task::JoinSet::new();
        for call in calls {
            tasks.spawn(call);
            if tasks.len() >= concurrency {
                tasks.join_next().await.unwrap().unwrap();
            }
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    }
    let one = aws_sdk_kinesis::Client::new(&base);
    let rss_start = rss_bytes();
    in_waves((0..n).map(|i| put(one.clone(), i)).collect(), concurrency).await;
    let rss_one = rss_bytes();
    let clients: Vec<aws_sdk_kinesis::Client> = (0..n)
        .map(|i| {
            let credentials = aws_sdk_kinesis::config::Credentials::new(
                format!("ASIA{i:016}"),
                "secret",
                Some("token".into()),
                Some(std::time::SystemTime::now() + Duration::from_secs(3600)),
                "bench",
            );
            let config = aws_sdk_kinesis::config::Builder::from(&base)
                .credentials_provider(credentials)
                .region(aws_sdk_kinesis::config::Region::new("eu-central-1"))
                .identity_cache(aws_sdk_kinesis::config::IdentityCache::no_cache())
                .retry_config(aws_config::retry::RetryConfig::disabled())
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .operation_attempt_timeout(Duration::from_secs(30))
                        .build(),
                )
                .build();
            aws_sdk_kinesis::Client::from_conf(config)
        })
        .collect();
    let rss_built = rss_bytes();
    in_waves(clients.iter().enumerate().map(|(i, c)| put(c.clone(), i)).collect(), concurrency).await;
    let rss_used = rss_bytes();
    let fds = open_fds("self");
    let kib_each = |bytes: u64| bytes as f64 / 1024.0 / n as f64;
    json!({
        "side": "clients",
        "n": n,
        "one_client_kib_per_call": kib_each(rss_one.saturating_sub(rss_start)),
        "client_built_kib_each": kib_each(rss_built.saturating_sub(rss_one)),
        "client_connected_kib_each": kib_each(rss_used.saturating_sub(rss_built)),
        "fds": fds,
        "offered_per_s": 0,
    })
}

// ---------------------------------------------------------------------------------------------
// The orchestrator.

struct Scenario {
    label: String,
    env: Vec<(&'static str, String)>,
}

fn run_scenario(peer: &str, peer_pid: u32, scenario: &Scenario) -> Value {
    eprintln!("dataplane: {}", scenario.label);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(PEER, peer)
        .env(PEER_PID, peer_pid.to_string())
        .env("AWS_ENDPOINT_URL", format!("http://{peer}"))
        .env("AWS_REGION", "eu-central-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/sluice-bench")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/sluice-bench")
        .envs(scenario.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped());
    let output = cmd.output().expect("cannot run a benchmark child");
    assert!(output.status.success(), "{} failed: {}", scenario.label, output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).expect("the child printed no result");
    let result: Value = serde_json::from_str(line).unwrap();
    eprintln!("  {result}");
    result
}

fn orchestrate() {
    let sizes: Vec<usize> = std::env::var("SLUICE_BENCH_DATAPLANE_N")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let concurrency: usize = env_or("SLUICE_BENCH_CONCURRENCY", 64);
    let window: u64 = env_or("SLUICE_BENCH_WINDOW_S", 20);
    assert!(plugin_path("passthrough").is_file(), "build the plugins first: cargo xtask plugins");

    let mut peer = Command::new(std::env::current_exe().unwrap())
        .env(ROLE, "peer")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot start the peer");
    let mut line = String::new();
    BufReader::new(peer.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("LISTEN ").expect("the peer printed no address").to_string();
    eprintln!("dataplane: peer (source, STS, Kinesis) on {addr}, pid {}", peer.id());

    let c = concurrency.to_string();
    let bare = |rate: usize| Scenario {
        label: if rate == 0 {
            format!("bare loop, {concurrency} concurrent, closed loop")
        } else {
            format!("bare loop, {concurrency} concurrent, paced at {rate}/s")
        },
        env: vec![
            (ROLE, "bare".into()),
            ("SLUICE_BENCH_CONCURRENCY", c.clone()),
            ("SLUICE_BENCH_RATE", rate.to_string()),
        ],
    };
    let sluice = |n: usize, per_tenant: usize| Scenario {
        label: format!("sluice, {n} projects at rate(1 second), caps {concurrency} global / {per_tenant} per tenant"),
        env: vec![
            (ROLE, "sluice".into()),
            ("SLUICE_BENCH_N", n.to_string()),
            ("SLUICE_BENCH_CONCURRENCY", c.clone()),
            ("SLUICE_BENCH_PER_TENANT", per_tenant.to_string()),
            ("SLUICE_BENCH_WINDOW_S", window.to_string()),
            // Bigger fleets take longer to reach their steady state (one AssumeRole per project).
            ("SLUICE_BENCH_WARMUP_S", if n > 2000 { "10" } else { "5" }.into()),
        ],
    };
    let sides = std::env::var("SLUICE_BENCH_SIDES").unwrap_or_else(|_| "bare,sluice,shipped,store,clients".into());
    let mut scenarios = Vec::new();
    if sides.contains("bare") {
        scenarios.push(bare(0));
        let mut paced_rates: Vec<usize> = sizes.iter().copied().filter(|&n| n <= 4000).collect();
        paced_rates.dedup();
        scenarios.extend(paced_rates.iter().map(|&rate| bare(rate)));
    }
    if sides.contains("sluice") {
        scenarios.extend(sizes.iter().map(|&n| sluice(n, concurrency)));
    }
    let first = sizes.first().copied().unwrap_or(1000);
    if sides.contains("store") {
        scenarios.push(Scenario {
            label: format!("store alone, {concurrency} concurrent, closed loop over {first} projects"),
            env: vec![
                (ROLE, "store".into()),
                ("SLUICE_BENCH_N", first.to_string()),
                ("SLUICE_BENCH_CONCURRENCY", c.clone()),
            ],
        });
    }
    if sides.contains("clients") {
        scenarios.push(Scenario {
            label: format!("{first} per-session Kinesis clients against one"),
            env: vec![
                (ROLE, "clients".into()),
                ("SLUICE_BENCH_N", first.to_string()),
                ("SLUICE_BENCH_CONCURRENCY", c.clone()),
            ],
        });
    }
    // The shipped per-tenant cap, for the smallest fleet: one tenant cannot use the global cap.
    let default_per_tenant = SchedulerConfig::default().max_concurrent_runs_per_tenant;
    if sides.contains("shipped")
        && let Some(&n) = sizes.first()
        && default_per_tenant < concurrency
    {
        scenarios.push(sluice(n, default_per_tenant));
    }
    let results: Vec<Value> = scenarios.iter().map(|s| run_scenario(&addr, peer.id(), s)).collect();
    drop(peer.stdin.take());
    let _ = peer.kill();
    let _ = peer.wait();

    print_table(&scenarios, &results);
}

fn print_table(scenarios: &[Scenario], results: &[Value]) {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let bare_closed = results.iter().find(|r| r["side"] == "bare" && r["offered_per_s"] == 0);
    let bare_at = |rate: f64| results.iter().find(|r| r["side"] == "bare" && f(r, "offered_per_s") == rate);
    println!();
    println!("Data plane, 2 cores shared with the peer (source + STS + Kinesis in one other process)");
    println!(
        "| {:<44} | {:>8} | {:>9} | {:>8} | {:>8} | {:>9} | {:>9} | {:>9} | {:>10} | {:>5} |",
        "side", "offered", "polls/s", "lag p50", "lag p99", "CPU/poll", "× bare", "× bare", "RSS/1000", "busy"
    );
    println!(
        "| {:<44} | {:>8} | {:>9} | {:>8} | {:>8} | {:>9} | {:>9} | {:>9} | {:>10} | {:>5} |",
        "", "/s", "", "ms", "ms", "µs", "closed", "same rate", "projects", ""
    );
    let rows = || scenarios.iter().zip(results).filter(|(_, r)| r["side"] == "bare" || r["side"] == "sluice");
    for (scenario, r) in rows() {
        let cpu = f(r, "cpu_us_per_poll");
        let ratio = |b: Option<&Value>| b.map_or("-".into(), |b| format!("{:.2}", cpu / f(b, "cpu_us_per_poll")));
        let is_sluice = r["side"] == "sluice";
        let offered = f(r, "offered_per_s");
        let (lag50, lag99, rss) = if is_sluice {
            (
                format!("{:.0}", f(r, "lag_p50_ms")),
                format!("{:.0}", f(r, "lag_p99_ms")),
                format!("{:.1} MiB", f(r, "rss_per_1000_mib")),
            )
        } else {
            ("-".into(), "-".into(), "-".into())
        };
        println!(
            "| {:<44} | {:>8} | {:>9.0} | {:>8} | {:>8} | {:>9.0} | {:>9} | {:>9} | {:>10} | {:>4.0}% |",
            scenario.label.chars().take(44).collect::<String>(),
            if offered > 0.0 { format!("{offered:.0}") } else { "max".into() },
            f(r, "polls_per_s"),
            lag50,
            lag99,
            cpu,
            if is_sluice { ratio(bare_closed) } else { "-".into() },
            if is_sluice { ratio(bare_at(offered)) } else { "-".into() },
            rss,
            f(r, "machine_busy") * 100.0,
        );
    }
    println!();
    for (scenario, r) in rows() {
        println!("{}:", scenario.label);
        println!(
            "  peer CPU {:.0} µs/poll; this process {:.2} cores; machine {:.0}% busy; other processes {:.2} cores",
            f(r, "peer_cpu_us_per_poll"),
            f(r, "cpu_cores"),
            f(r, "machine_busy") * 100.0,
            f(r, "others_cores")
        );
        if r["side"] == "sluice" {
            println!(
                "  runs in window: {} succeeded, {} failed, {} skipped, {} catch-up; lag max {:.0} ms; run wall mean {:.1} ms",
                r["succeeded"],
                r["failed"],
                r["skipped"],
                r["catch_up"],
                f(r, "lag_max_ms"),
                f(r, "run_ms_mean")
            );
            println!("  stage wall ms per run: {}", r["stage_ms_mean"]);
            println!(
                "  RSS {:.0} MiB before projects, {:.0} after warm-up, {:.0} at the end; fds {} here, {} in the peer",
                f(r, "rss_before_mib"),
                f(r, "rss_after_warmup_mib"),
                f(r, "rss_end_mib"),
                r["own_fds"],
                r["peer_fds"]
            );
            println!(
                "  calls in window: {} AssumeRole, {} PutRecords; peer saw {} records, {} GETs",
                r["assume_role_calls"], r["put_records_calls"], r["peer_records"], r["peer_gets"]
            );
            if r["failed"].as_u64().unwrap_or(0) > 0 {
                println!("  errors: {}", r["errors"]);
            }
        } else {
            println!("  errors: {}; RSS {:.0} MiB", r["errors"], f(r, "rss_end_mib"));
        }
    }
    for (scenario, r) in scenarios.iter().zip(results) {
        if r["side"] == "store" {
            println!("{}:", scenario.label);
            println!(
                "  {:.0} runs/s, {:.0} µs CPU per run ({:.2} cores; machine {:.0}% busy; other processes {:.2} cores)",
                f(r, "polls_per_s"),
                f(r, "cpu_us_per_poll"),
                f(r, "cpu_cores"),
                f(r, "machine_busy") * 100.0,
                f(r, "others_cores")
            );
        } else if r["side"] == "clients" {
            println!("{}:", scenario.label);
            println!(
                "  one client: {:.1} KiB per call made; per-session clients: {:.1} KiB each built, {:.1} KiB more each once connected; {} fds",
                f(r, "one_client_kib_per_call"),
                f(r, "client_built_kib_each"),
                f(r, "client_connected_kib_each"),
                r["fds"]
            );
        }
    }
}
