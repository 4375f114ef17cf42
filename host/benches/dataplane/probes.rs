//! Probes of where the time and memory go.

use super::*;

/// The store's part of one successful run of a healthy project, call for call as
/// `run/pipeline.rs` and `run/deliver.rs` make them for a passthrough run with one record and no
/// state: read the project, count its outbox, read the next state, enqueue (the one flush), read
/// the outbox and the project again, complete the delivery, record the run.
pub async fn store_run(store: &Store, project: &Project, body: &[u8]) {
    let (tenant, id) = (&project.tenant_id, &project.id);
    let started = Timestamp::now();
    let project = store.project(tenant, id).await.unwrap().unwrap();
    let _backlog = store.outbox_len_of(tenant, id);
    let state = store.next_state(tenant, id).await.unwrap();
    let run_id = format!("run_{}", random_hex(8));
    let entry = sluice::store::OutboxEntry {
        tenant_id: tenant.clone(),
        project_id: id.clone(),
        run_id: run_id.clone(),
        scheduled_at_ms: started.as_millisecond(),
        state,
        records: vec![sluice::records::Record {
            data: body.to_vec(),
            partition_key: id.clone(),
            explicit_hash_key: None,
        }],
    };
    store.enqueue(entry.clone()).await.unwrap();
    let entries = store.outbox_of(tenant, id).await.unwrap();
    let _again = store.project(tenant, id).await.unwrap();
    for (key, entry) in entries {
        store.complete_delivery(&key, &entry).await.unwrap();
    }
    let ms = |t: Timestamp| t.round(jiff::Unit::Millisecond).unwrap_or(t).to_string();
    let run = sluice::store::Run {
        id: run_id,
        plugin_id: None,
        project_id: id.clone(),
        trigger: Trigger::Schedule,
        scheduled_at: ms(started),
        started_at: ms(started),
        finished_at: ms(Timestamp::now()),
        outcome: RunOutcome::Succeeded,
        http_status: Some(200),
        pages: 1,
        records: 1,
        bytes_fetched: body.len() as u64,
        bytes_delivered: body.len() as u64,
        stage_ms: [
            Stage::AssumeRole,
            Stage::LoadPlugin,
            Stage::Prepare,
            Stage::Fetch,
            Stage::Transform,
            Stage::Outbox,
            Stage::Deliver,
        ]
        .into_iter()
        .map(|stage| (stage, 0.5))
        .collect(),
        error: None,
        page_cap_reached: false,
        logs: Vec::new(),
        logs_dropped: 0,
    };
    store.record_run(tenant, &run, 0.3).await.unwrap();
    // A run that succeeds for a healthy project leaves the project record alone (`status.rs`).
    drop(project);
}

/// The store alone: C concurrent loops of `store_run` over N projects, closed loop.
pub async fn store_side(settings: ProbeSettings) -> Value {
    let ProbeSettings { n, concurrency, warmup, window } = settings;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let (tenant, _key) = store.create_tenant("bench", Tier::Premium).await.unwrap();
    let projects: Vec<Project> =
        (0..n).map(|i| project(&tenant, "sha256:00", "http://127.0.0.1:9/items", i, Trust::Project)).collect();
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
/// per assumed-role session (own credentials, no identity cache, no retries), then one
/// `PutRecords` through each. Twice: with the SDK's default of an HTTP client per SDK client (what
/// Sluice did before), and with one HTTP client shared by all of them (what `Aws` sets up now).
pub async fn clients_side(settings: ProbeSettings) -> Value {
    let ProbeSettings { n, concurrency, .. } = settings;
    let own = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let shared = own
        .clone()
        .into_builder()
        .http_client(aws_smithy_http_client::hyper_014::HyperClientBuilder::new().build_https())
        .build();
    let mut report = json!({"side": "clients", "n": n, "offered_per_s": 0});
    for (label, base) in [("own_http_client", own), ("shared_http_client", shared)] {
        let rss_start = rss_bytes();
        let fds_start = open_fds("self");
        let clients: Vec<aws_sdk_kinesis::Client> = (0..n).map(|i| session_client(&base, i)).collect();
        let rss_built = rss_bytes();
        in_waves(clients.iter().enumerate().map(|(i, c)| put(c.clone(), i)).collect(), concurrency).await;
        let rss_used = rss_bytes();
        let kib_each = |bytes: u64| bytes as f64 / 1024.0 / n as f64;
        report[label] = json!({
            "built_kib_each": kib_each(rss_built.saturating_sub(rss_start)),
            "connected_kib_each": kib_each(rss_used.saturating_sub(rss_built)),
            "fds": open_fds("self").saturating_sub(fds_start),
        });
        // Keep the clients (and their connections) alive until both are measured, so the second
        // measurement does not reuse the first one's freed memory.
        std::mem::forget(clients);
    }
    report
}

/// One Kinesis client as an assumed-role session builds it, with the `i`-th credentials.
fn session_client(base: &aws_config::SdkConfig, i: usize) -> aws_sdk_kinesis::Client {
    let credentials = aws_sdk_kinesis::config::Credentials::new(
        format!("ASIA{i:016}"),
        "secret",
        Some("token".into()),
        Some(std::time::SystemTime::now() + Duration::from_secs(3600)),
        "bench",
    );
    let config = aws_sdk_kinesis::config::Builder::from(base)
        .credentials_provider(credentials)
        .region(aws_sdk_kinesis::config::Region::new("eu-central-1"))
        .identity_cache(aws_sdk_kinesis::config::IdentityCache::no_cache())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder().operation_attempt_timeout(Duration::from_secs(30)).build(),
        )
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

async fn put(client: aws_sdk_kinesis::Client, i: usize) {
    let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
        .data(aws_sdk_kinesis::primitives::Blob::new(vec![b'x'; 1024]))
        .partition_key(format!("p-{i}"))
        .build()
        .unwrap();
    client.put_records().stream_arn(STREAM_ARN).records(entry).send().await.unwrap();
}

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
