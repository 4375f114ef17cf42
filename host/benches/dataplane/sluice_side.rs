//! The Sluice side: N well-behaved projects of one or more tenants, with the tenant's trust or
//! their own, through the real scheduler and data plane, with the shipped committer and delivery
//! or group commit, coalescing or the disk's speed changed; optionally a noisy tenant's hostile
//! projects arriving when the window starts, the API on loopback under load from a separate
//! process or under a light read load from a thread of this one, or one disk stall in the window.

use super::*;

use std::io::Lines;
use std::process::ChildStdout;

use fleet::{Fleet, noisy_mode};
use history::{History, Tally, runs_by_outcome, slice_count, slice_of, transform_s};

/// Starts `perf record` on this process for `seconds`, writing `<dir>/<name>.perf.data`, if a
/// directory is given.
pub fn start_perf(dir: Option<&std::path::Path>, name: &str, seconds: f64) -> Option<std::process::Child> {
    let output = dir?.join(format!("{name}.perf.data"));
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

/// Seconds of the read load before the window, to open its connections.
const READS_WARMUP: Duration = Duration::from_secs(1);

/// The name of the store's committer thread (`store/commit.rs`), which a one-off stall stops.
const COMMITTER_THREAD: &str = "sluice-commit";

/// (batches, commits, µs syncing) of the store's committer so far.
fn commit_counts(store: &Store) -> (u64, u64, u64) {
    store.commit_stats().map_or((0, 0, 0), |stats| {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (load(&stats.batches), load(&stats.commits), load(&stats.sync_us))
    })
}

/// The shared store's requests by `service.operation` and its write units so far (none for sled).
fn store_counts(store: &Store) -> (BTreeMap<String, u64>, u64) {
    store.meter().map_or_else(Default::default, |meter| {
        let requests = meter.requests().into_iter().map(|(service, op, n)| (format!("{service}.{op}"), n)).collect();
        (requests, meter.write_units())
    })
}

/// Slices the window is cut into for the timelines.
const SLICE_MS: i64 = 10_000;
/// How often the history is read during a long window: the store keeps only the last 100 runs
/// (skips included) of each project.
const HARVEST_EVERY: Duration = Duration::from_secs(30);

/// What the Sluice side hands the load generator, as JSON in a file named in its [`Role::Apiload`].
#[derive(Serialize, Deserialize)]
pub struct Plan {
    /// `http://127.0.0.1:port`.
    pub base: String,
    pub operator_token: String,
    pub tenants: Vec<PlanTenant>,
    /// Requests per second.
    pub rate: f64,
    /// Seconds of load before the measured window, to open connections and settle.
    pub warmup_s: f64,
    pub window_s: f64,
}

#[derive(Serialize, Deserialize)]
pub struct PlanTenant {
    pub id: String,
    pub token: String,
    pub plugin_id: String,
    /// The tenant's polling projects, which reads and patches pick from.
    pub projects: Vec<String>,
}

/// The API load generator, a child process of this side.
struct Load {
    child: std::process::Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Load {
    /// Writes the plan, starts the generator and returns once its measured window begins. The
    /// blocking reads run off the runtime's workers, which are busy with runs meanwhile.
    async fn start(fleet: &Fleet, dir: &std::path::Path, rate: f64, window: Duration) -> Self {
        let plan = Plan {
            base: format!("http://{}", fleet.api.expect("the API is served")),
            operator_token: fleet::ADMIN_TOKEN.into(),
            tenants: fleet
                .members
                .iter()
                .map(|m| PlanTenant {
                    id: m.tenant.id.clone(),
                    token: m.token.clone(),
                    plugin_id: m.plugin_id.clone(),
                    projects: m.projects.iter().map(|k| k.project.to_string()).collect(),
                })
                .collect(),
            rate,
            warmup_s: 3.0,
            window_s: window.as_secs_f64(),
        };
        let path = dir.join("api-plan.json");
        std::fs::write(&path, serde_json::to_vec(&plan).unwrap()).unwrap();
        tokio::task::spawn_blocking(move || {
            let mut child = Child { peer: None, role: Role::Apiload { plan: path } }
                .command()
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("cannot start the API load generator");
            HELPER_PID.store(child.id(), Ordering::Relaxed);
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let window = lines.by_ref().map_while(Result::ok).find(|l| l == "WINDOW");
            assert!(window.is_some(), "the load generator stopped before its window");
            Load { child, lines }
        })
        .await
        .unwrap()
    }

    /// Waits for the generator's result.
    async fn finish(self) -> Value {
        tokio::task::spawn_blocking(move || {
            let Load { mut child, mut lines } = self;
            let line = lines.by_ref().map_while(Result::ok).find_map(|l| l.strip_prefix("RESULT ").map(String::from));
            let _ = child.wait();
            serde_json::from_str(&line.expect("the load generator printed no result")).unwrap()
        })
        .await
        .unwrap()
    }
}

/// VmRSS and CPU every half second until `stop` is set, as (ms since `from`, bytes, CPU).
fn sample_rss(from: Instant, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<(i64, u64, Sample)>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            samples.push((from.elapsed().as_millis() as i64, rss_bytes(), Sample::now()));
        }
        samples
    })
}

/// Per slice of the window: the largest VmRSS sampled, and this process's and other processes'
/// CPU (cores), so that a slice disturbed by the rest of the machine can be told apart.
fn machine_slices(samples: &[(i64, u64, Sample)], window_ms: i64) -> Vec<Value> {
    let mut previous = samples.first().map(|(_, _, sample)| *sample);
    (0..slice_count(window_ms, SLICE_MS))
        .map(|i| {
            let in_slice: Vec<&(i64, u64, Sample)> =
                samples.iter().filter(|(at, _, _)| slice_of(*at, window_ms, SLICE_MS) == i).collect();
            let rss = in_slice.iter().map(|(_, rss, _)| *rss).max().unwrap_or(0);
            let ((own, others), iowait) = match (previous, in_slice.last()) {
                (Some(earlier), Some((_, _, last))) => (last.cores_since(&earlier), last.iowait_since(&earlier)),
                _ => ((f64::NAN, f64::NAN), f64::NAN),
            };
            previous = in_slice.last().map(|(_, _, sample)| *sample).or(previous);
            json!({"rss_max_mib": mib(rss), "own_cores": own, "others_cores": others, "iowait_cores": iowait})
        })
        .collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// The projects of `keys` that have not yet had a successful run, read from the run history on a
/// blocking thread.
async fn not_yet_run(store: &Store, keys: Vec<ProjectKey>) -> Vec<ProjectKey> {
    let store = store.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        keys.into_iter()
            .filter(|key| {
                let runs = runtime.block_on(store.runs(&key.tenant, &key.project, sluice::store::RUNS_KEPT)).unwrap();
                !runs.iter().any(|run| run.outcome == RunOutcome::Succeeded)
            })
            .collect()
    })
    .await
    .unwrap()
}

pub async fn sluice_side(settings: SluiceSettings) -> Value {
    let (window, warmup) = (settings.window, settings.warmup);
    // The peer serves every child in turn: its counts are read as differences.
    let peer_start = peer_counters().await;
    let rss_before = rss_bytes();
    let mut fleet = Fleet::build(&settings).await;
    let keys = fleet.well_keys();
    let n = keys.len();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(fleet.plane.clone().run(async move {
        let _ = stopped.await;
    }));

    // Every project's jitter offset, from its first pending firing (due minus nominal).
    let mut offsets: HashMap<String, i64> = HashMap::with_capacity(n);
    let registered = Instant::now();
    // Registering reads every project from the store: from moto's DynamoDB, that takes a while.
    let registering = Duration::from_secs(if settings.shared_store.is_some() { 180 } else { 30 });
    while offsets.len() < n && registered.elapsed() < registering {
        tokio::time::sleep(Duration::from_millis(20)).await;
        for key in &keys {
            if !offsets.contains_key(&*key.project)
                && let Some(tick) = fleet.scheduler.next_tick(key)
            {
                let offset = tick.due_at.duration_since(tick.scheduled_at).as_millis() as i64;
                offsets.insert(key.project.to_string(), offset);
            }
        }
    }
    assert_eq!(offsets.len(), n, "every project is registered with the scheduler");

    // The warm-up lasts until every project has run successfully once (at most 3 minutes), then
    // `warmup` more to settle. By then every session exists: one per project with trust of its
    // own, one per tenant (and role) with the tenant's.
    let warming = Instant::now();
    let mut waiting = keys.clone();
    // Each check reads every project's history, which would load moto's DynamoDB more than the
    // runs do: the shared side takes its warm-up (`warmup`) alone, and its line below counts no
    // projects as run.
    let checking = if settings.shared_store.is_some() { Duration::ZERO } else { Duration::from_secs(180) };
    while !waiting.is_empty() && warming.elapsed() < checking {
        tokio::time::sleep(Duration::from_millis(250)).await;
        waiting = not_yet_run(&fleet.store, waiting).await;
    }
    tokio::time::sleep(warmup).await;
    let warmup_s = warming.elapsed().as_secs_f64();
    let sessions = fleet.aws.counters().assume_role_calls;
    eprintln!("  warm-up {warmup_s:.1} s, {} of {n} projects ran, {sessions} sessions", n - waiting.len());
    let rss_after = rss_bytes();
    let load = if settings.api_rate > 0.0 {
        Some(Load::start(&fleet, fleet.dir.path(), settings.api_rate, window).await)
    } else {
        None
    };
    let reads = (settings.api_read_rate > 0.0).then(|| {
        let targets = fleet
            .members
            .iter()
            .flat_map(|m| m.projects.iter().map(|k| (m.token.clone(), k.project.to_string())))
            .collect();
        let base = format!("http://{}", fleet.api.expect("the API is served"));
        fleet::tenant_client::start_reads(base, targets, settings.api_read_rate, READS_WARMUP, window)
    });
    if reads.is_some() {
        tokio::time::sleep(READS_WARMUP).await;
    }

    let peer_before = peer_counters().await;
    let calls_before = fleet.aws.counters();
    let commits_before = commit_counts(&fleet.store);
    let store_before = store_counts(&fleet.store);
    let outcomes_before = runs_by_outcome(&fleet.metrics);
    let peak_reset = reset_peak_rss();
    let name =
        if settings.variant.is_empty() { format!("sluice-{n}") } else { format!("sluice-{}-{n}", settings.variant) };
    let perf = start_perf(settings.perf.as_deref(), &name, window.as_secs_f64());
    let start = Sample::now();
    let (wall_start, started) = (Timestamp::now(), Instant::now());
    let sampling = Arc::new(AtomicBool::new(false));
    let rss_samples = sample_rss(started, sampling.clone());
    let stall = (settings.stall_once_ms > 0).then(|| {
        let (ms, after) = (settings.stall_once_ms, window / 3);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let stalled = stall_thread(COMMITTER_THREAD, ms);
            assert!(stalled, "cannot stall the committer thread");
            eprintln!("  committer stopped for {ms} ms, {:.1} s into the window", after.as_secs_f64());
            after.as_millis() as u64
        })
    });
    // The noisy tenant's projects arrive now, so the window sees their burst and their backoff.
    let noisy_keys = fleet.add_noisy(&settings).await;
    let all_keys: Vec<ProjectKey> = keys.iter().chain(&noisy_keys).cloned().collect();
    let mut history = History::default();
    loop {
        let left = window.saturating_sub(started.elapsed());
        if left <= HARVEST_EVERY + Duration::from_secs(5) {
            tokio::time::sleep(left).await;
            break;
        }
        tokio::time::sleep(HARVEST_EVERY).await;
        history.harvest(&fleet.store, &all_keys).await;
    }
    let end = Sample::now();
    let wall_end = Timestamp::now();
    sampling.store(true, Ordering::Relaxed);
    let calls_after = fleet.aws.counters();
    let commits_after = commit_counts(&fleet.store);
    let store_after = store_counts(&fleet.store);
    let outcomes_after = runs_by_outcome(&fleet.metrics);
    let peer_after = peer_counters().await;
    let (rss_end, rss_peak) = (rss_bytes(), peak_rss_bytes());
    let (own_fds, peer_fds) = (open_fds("self"), peer_pid().map_or(0, |pid| open_fds(&pid.to_string())));
    let api = match load {
        Some(load) => load.finish().await,
        None => Value::Null,
    };
    let reads = match reads {
        Some(reads) => tokio::task::spawn_blocking(move || reads.join().unwrap()).await.unwrap(),
        None => Value::Null,
    };
    let stalled_at_ms = match stall {
        Some(stall) => json!(stall.await.unwrap()),
        None => Value::Null,
    };
    if let Some(mut perf) = perf {
        let _ = perf.wait();
    }
    let mut statuses: Vec<Project> = Vec::new();
    for k in &noisy_keys {
        statuses.extend(fleet.store.project(&k.tenant, &k.project).await.unwrap());
    }
    let _ = stop.send(());
    running.await.unwrap().unwrap();
    history.harvest(&fleet.store, &all_keys).await;
    let rss_samples = rss_samples.await.unwrap();

    let well_ids: HashMap<String, usize> = keys.iter().enumerate().map(|(i, k)| (k.project.to_string(), i)).collect();
    let well = history.tally(&well_ids, &offsets, wall_start, wall_end);
    if let Some(path) = &settings.lags {
        // (ms into the window, lag ms) per run, for plotting lag over time.
        let text: String = well.points.iter().filter_map(|p| Some(format!("{} {}\n", p.at_ms, p.lag_ms?))).collect();
        let suffix = if settings.noisy > 0 { format!("-noisy{}", settings.noisy) } else { String::new() };
        let api_suffix = if settings.api_rate > 0.0 { format!("-api{}", settings.api_rate) } else { String::new() };
        let variant = if settings.variant.is_empty() { String::new() } else { format!("-{}", settings.variant) };
        let name = format!("{path}-{n}-{}{suffix}{api_suffix}{variant}.txt", settings.per_tenant);
        std::fs::write(name, text).unwrap();
    }
    let window_ms = wall_end.as_millisecond() - wall_start.as_millisecond();
    let counter = |v: &Value, name: &str| v[name].as_u64().unwrap_or(0);
    let outcome_delta =
        |name: &str| outcomes_after.get(name).copied().unwrap_or(0) - outcomes_before.get(name).copied().unwrap_or(0);
    let rss_values: Vec<u64> = rss_samples.iter().map(|(_, rss, _)| *rss).collect();
    let mut report = window_report(start, end, well.succeeded);
    let extra = json!({
        "side": "sluice",
        "kind": settings.kind,
        "n": n,
        "tenants": settings.tenants,
        "concurrency": settings.concurrency,
        "per_tenant": settings.per_tenant,
        "jitter_window_ms": fleet.config.jitter_window_ms,
        "warmup_s": warmup_s,
        "sessions_after_warmup": sessions,
        "offered_per_s": n as f64,
        "lag_p50_ms": percentile(&well.lags, 0.50),
        "lag_p99_ms": percentile(&well.lags, 0.99),
        "lag_max_ms": well.lags.last().copied().unwrap_or(f64::NAN),
        "succeeded": well.succeeded,
        "failed": well.failed,
        "skipped": well.skipped,
        "catch_up": well.catch_up,
        "errors": well.errors,
        "run_ms_mean": well.run_ms / well.ran().max(1) as f64,
        "stage_ms_mean": well.stage_means(),
        "slices": well.slices(window_ms, SLICE_MS),
        "lag_p99_median_slice_ms": well.median_slice_p99(window_ms, SLICE_MS),
        // Every skipped tick of every project, from the metrics (the history may keep only the
        // first of a streak).
        "skipped_ticks": outcome_delta("skipped"),
        "rss_before_mib": mib(rss_before),
        "rss_after_warmup_mib": mib(rss_after),
        "rss_end_mib": mib(rss_end),
        "rss_window_min_mib": mib(rss_values.iter().copied().min().unwrap_or(0)),
        "rss_window_max_mib": mib(rss_values.iter().copied().max().unwrap_or(0)),
        "machine_slices": machine_slices(&rss_samples, window_ms),
        // The kernel updates VmHWM lazily (when RSS is about to shrink), so a sample taken in
        // between can exceed it: the peak is the larger of the two.
        "rss_peak_mib": mib(rss_peak.max(rss_values.iter().copied().max().unwrap_or(0))),
        "rss_peak_is_window": peak_reset,
        "rss_per_1000_mib": mib(rss_after.saturating_sub(rss_before)) / (n as f64 / 1000.0),
        "assume_role_calls": calls_after.assume_role_calls - calls_before.assume_role_calls,
        "put_records_calls": calls_after.put_records_calls - calls_before.put_records_calls,
        "peer_records": counter(&peer_after, "records") - counter(&peer_before, "records"),
        "peer_gets": counter(&peer_after, "gets") - counter(&peer_before, "gets"),
        "own_fds": own_fds,
        "peer_fds": peer_fds,
        "noisy": noisy_report(&history, &noisy_keys, &settings.noisy_modes, &statuses, wall_start, wall_end),
        "api": api,
    });
    // Kept apart from `extra`, whose size is at `json!`'s recursion limit.
    let memory = json!({
        "noisy_tenants": if settings.noisy > 0 { settings.noisy_tenants } else { 0 },
        "memory_budget_mib": mib(fleet.runtime.memory_budget_bytes()),
        "plugin_memory_peak_mib": mib(fleet.runtime.memory_peak_bytes()),
    });
    // The peer's own counts of AssumeRole calls and of the distinct (external id, session name)
    // pairs they named, from before the fleet was built to the start of the window, and in it.
    let trust = json!({
        "trust": settings.trust,
        "projects_not_run_in_warmup": waiting.len(),
        "peer_assumes_warmup": counter(&peer_before, "assumes") - counter(&peer_start, "assumes"),
        "peer_sessions_warmup": counter(&peer_before, "sessions") - counter(&peer_start, "sessions"),
        "peer_assumes_window": counter(&peer_after, "assumes") - counter(&peer_before, "assumes"),
        "peer_sessions_window": counter(&peer_after, "sessions") - counter(&peer_before, "sessions"),
    });
    // The committer's batches and commits, and the PutRecords calls the peer answered, in the
    // window; how the fleet was made.
    let (batches, commits) = (commits_after.0 - commits_before.0, commits_after.1 - commits_before.1);
    let sync_ms = (commits_after.2 - commits_before.2) as f64 / 1000.0;
    let peer_puts = counter(&peer_after, "puts") - counter(&peer_before, "puts");
    let per_poll = |count: u64| if well.succeeded == 0 { f64::NAN } else { count as f64 / well.succeeded as f64 };
    let throughput = json!({
        "variant": settings.variant,
        "commit_max_batch": settings.commit_max_batch,
        "stall_before_sync_ms": settings.stall_before_sync_ms,
        "stall_once_ms": settings.stall_once_ms,
        "stalled_at_ms": stalled_at_ms,
        "put_coalesce": settings.put_coalesce,
        "streams_per_tenant": settings.streams_per_tenant,
        "created_via_api": fleet.created_via_api,
        "created_s": fleet.created_s,
        "commit_batches": batches,
        "commits": commits,
        "syncs_per_poll": per_poll(batches),
        "commits_per_batch": commits as f64 / batches.max(1) as f64,
        "sync_ms_per_batch": sync_ms / batches.max(1) as f64,
        "peer_puts": peer_puts,
        "peer_puts_per_poll": per_poll(peer_puts),
        "reads": reads,
    });
    // What the shared store asked of DynamoDB and S3 in the window (nothing for sled).
    let requests: BTreeMap<String, u64> = store_after
        .0
        .iter()
        .map(|(op, n)| (op.clone(), n - store_before.0.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let shared = json!({
        "shared_store": settings.shared_store.is_some(),
        "schedule": settings.schedule,
        "store_requests": requests,
        "store_write_units": store_after.1 - store_before.1,
    });
    for part in [extra, memory, trust, throughput, shared] {
        report.as_object_mut().unwrap().extend(part.as_object().unwrap().clone());
    }
    report
}

/// What happened to the noisy tenant's projects: their runs and errors by mode, how many runs each
/// got (backoff at work), and their status at the end of the window.
fn noisy_report(
    history: &History,
    keys: &[ProjectKey],
    modes: &[String],
    statuses: &[Project],
    from: Timestamp,
    to: Timestamp,
) -> Value {
    if keys.is_empty() {
        return Value::Null;
    }
    let ids = |mode: Option<&str>| -> HashMap<String, usize> {
        keys.iter()
            .enumerate()
            .filter(|(i, _)| mode.is_none_or(|m| noisy_mode(modes, *i) == m))
            .map(|(i, k)| (k.project.to_string(), i))
            .collect()
    };
    let window_ms = to.as_millisecond() - from.as_millisecond();
    let none = HashMap::new();
    let summary = |tally: &Tally, projects: &HashMap<String, usize>| {
        let (min, median, max) = tally.runs_per_project(projects.keys());
        json!({
            "projects": projects.len(),
            "ran": tally.ran(),
            "succeeded": tally.succeeded,
            "failed": tally.failed,
            "skipped_recorded": tally.skipped,
            "runs_per_project": [min, median, max],
            "errors": tally.errors,
            "transform_s": transform_s(tally.points.iter()),
        })
    };
    // Each mode once, however often the list repeats it to weight the cycle.
    let distinct: std::collections::BTreeSet<&str> = modes.iter().map(String::as_str).collect();
    let by_mode: serde_json::Map<String, Value> = distinct
        .into_iter()
        .map(|mode| {
            let projects = ids(Some(mode));
            (mode.to_string(), summary(&history.tally(&projects, &none, from, to), &projects))
        })
        .collect();
    let all = ids(None);
    let tally = history.tally(&all, &none, from, to);
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for project in statuses {
        *by_status.entry(format!("{:?}", project.status).to_lowercase()).or_default() += 1;
    }
    let failures: Vec<u32> = statuses.iter().map(|p| p.consecutive_failures).collect();
    let backoff_s: Vec<f64> = statuses
        .iter()
        .filter_map(|p| p.backoff_until.as_deref()?.parse::<Timestamp>().ok())
        .map(|until| (until.as_millisecond() - to.as_millisecond()) as f64 / 1000.0)
        .collect();
    let range =
        |v: &[f64]| json!([v.iter().copied().fold(f64::NAN, f64::min), v.iter().copied().fold(f64::NAN, f64::max)]);
    json!({
        "all": summary(&tally, &all),
        "modes": by_mode,
        "slices": tally.slices(window_ms, SLICE_MS),
        "status_at_end": by_status,
        "consecutive_failures_at_end": [failures.iter().min(), failures.iter().max()],
        "backed_off_at_end": backoff_s.len(),
        "backoff_left_s_at_end": range(&backoff_s),
        "status_message_example": statuses.first().map(|p| p.status_message.clone()),
    })
}
