//! The Sluice side: N projects through the real scheduler and data plane.

use super::*;

/// A project as the API would create it: pending, its own external id.
pub fn project(tenant: &str, plugin_id: &str, source_url: &str, n: usize) -> Project {
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
pub fn start_perf(name: &str, seconds: f64) -> Option<Child> {
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

pub async fn sluice_side() -> Value {
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

    // The warm-up lasts until every project has run once (one AssumeRole each: every project has
    // its own external id, so its own session; at most 3 minutes), then `warmup` more to settle.
    let warming = Instant::now();
    while aws.counters().assume_role_calls < n as u64 && warming.elapsed() < Duration::from_secs(180) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(warmup).await;
    let warmup_s = warming.elapsed().as_secs_f64();
    let sessions = aws.counters().assume_role_calls;
    eprintln!("  warm-up {warmup_s:.1} s, {sessions} sessions");
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
        std::fs::write(format!("{}-{n}-{per_tenant}.txt", path.to_string_lossy()), text).unwrap();
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
        "warmup_s": warmup_s,
        "sessions_after_warmup": sessions,
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
