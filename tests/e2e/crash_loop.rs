//! `kill -9` at random moments, 20 times, under load: after each restart the daemon serves the
//! same tenants, plugins and projects, and over the whole run no record is lost.
//!
//! Twenty projects (four tenants, five each) poll every second, with the `incremental`
//! plugin, a source that keeps an append-only log of numbered events per project while a load
//! thread keeps appending to them. The source serves the events after the cursor a request
//! carries, in pages of five, and records every sequence number it served. A record whose run
//! was killed before its outbox entry was durable is served again by the next run, because the
//! cursor only moves with a delivered entry.
//!
//! The daemon is killed after a random 0.3–3 s (a seeded generator; the seed is printed, and
//! `SLUICE_CRASH_SEED` replays it), so kills land during start-up delivery, fetches, transforms,
//! outbox writes, `PutRecords` (some throttled or partly failed by the fault proxy, so retries
//! are killed too) and state commits. At the end the load stops and every project
//! catches up: its latest request asks for events after the last one and the outbox is empty.
//! A project's cursor then stands at its last event, and a cursor moves only in the transaction
//! that removes a delivered entry whose records carried every event up to it, so every event
//! (every one served, and none skipped) must be in the project's stream. Duplicates are allowed
//! (delivery is at-least-once) and counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_tests::ADMIN_TOKEN;
use sluice_tests::fault_proxy::Fault;
use sluice_tests::source::TestSource;
use sluice_tests::world::{Tenant, World, wait_for};

const TENANTS: usize = 4;
const PROJECTS_PER_TENANT: usize = 5;
const KILLS: usize = 20;
/// Events per page: small, so that a run after downtime pages through its backlog.
const PAGE_SIZE: usize = 5;
const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
const KINESIS: &str = "Kinesis_20131202.";

/// splitmix64: small, seedable, and good enough to spread kill times.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `range`.
    fn between(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next() % (range.end - range.start)
    }
}

/// A project under test: its tenant (by index), id, event log and stream.
struct Subject {
    tenant: usize,
    id: String,
    log: String,
    stream: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_under_load_loses_no_record() {
    let started = Instant::now();
    let seed = std::env::var("SLUICE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    eprintln!("crash loop seed {seed} (SLUICE_CRASH_SEED={seed} replays the kill times)");
    let mut rng = Rng(seed);

    let mut world = World::start();
    world.source.set_page_size(PAGE_SIZE);
    let mut tenants: Vec<Tenant> = Vec::new();
    let mut subjects: Vec<Subject> = Vec::new();
    for t in 0..TENANTS {
        let account = format!("{}", 111_111_111_111u64 * (t as u64 + 1));
        let tenant = world.tenant(&format!("crash-{t}"), &account).await;
        for p in 0..PROJECTS_PER_TENANT {
            let log = format!("t{t}-p{p}");
            // Two shards, so that reading back covers more than one.
            let stream = tenant.aws.stream_with_shards(&log, 2).await;
            let extra =
                json!({"name": log, "schedule": "rate(1 second)", "plugin_settings": {"cursor_field": "cursor"}});
            let project = world.project(&tenant, "incremental", &format!("/events/{log}"), &stream, extra);
            subjects.push(Subject { tenant: t, id: project["id"].as_str().unwrap().into(), log, stream });
        }
        tenants.push(tenant);
    }
    let snapshot = Snapshot::take(&world, &tenants);
    let logs: Vec<String> = subjects.iter().map(|s| s.log.clone()).collect();
    let load = Load::start(world.source.clone(), logs, seed);

    let mut waiting_at_kill = Vec::new();
    for kill in 1..=KILLS {
        // Some cycles trouble Kinesis: a throttled or partly failed PutRecords (retried), or an
        // outage until the kill, so that kills also find deliveries failing and the outbox full.
        let mut outage = false;
        match rng.between(0..4) {
            0 => world.proxy.inject(PUT_RECORDS, Fault::Throttle, 1),
            1 => world.proxy.inject(PUT_RECORDS, Fault::PartialFailure, 1),
            2 => outage = true,
            _ => {}
        }
        world.proxy.set_down(KINESIS, outage);
        std::thread::sleep(Duration::from_millis(rng.between(300..3000)));
        waiting_at_kill.push(world.metric_or("sluice_outbox_depth", Some(0.0)) as u64);
        world.kill();
        world.proxy.set_down(KINESIS, false);
        world.restart();
        snapshot.check(&world, &tenants, kill);
        if kill % 5 == 0 {
            // The daemon gets ready, every project is polled again, and none is stuck.
            world.wait_ready();
            let polled: Vec<u64> = subjects.iter().map(|s| world.source.event_log(&s.log).requests).collect();
            wait_for(Duration::from_secs(15), &format!("every project polled after restart {kill}"), || {
                let now = subjects.iter().map(|s| world.source.event_log(&s.log).requests);
                now.zip(&polled).all(|(now, before)| now > *before).then_some(())
            });
        }
    }
    let appended = load.stop();
    let killed_at = started.elapsed();

    // Every project catches up: it asks for events after its last one, the outbox is empty, its
    // latest run succeeded and it is active.
    wait_for(Duration::from_secs(60), "every project to catch up and the outbox to drain", || {
        let caught_up = subjects.iter().all(|s| {
            let log = world.source.event_log(&s.log);
            log.last_since == appended[&s.log] && log.last_served == 0
        });
        (caught_up && world.metric_or("sluice_outbox_depth", Some(0.0)) == 0.0).then_some(())
    });
    for subject in &subjects {
        let tenant = &tenants[subject.tenant];
        let runs = world.runs(tenant, &subject.id);
        let last = runs.iter().find(|r| r["outcome"] != "skipped").expect("the project ran");
        assert_eq!(last["outcome"], "succeeded", "{}: {last}", subject.log);
        let project = world.show(tenant, &subject.id);
        assert_eq!(project["status"], "active", "{}: {project}", subject.log);
    }

    // Every event is in its project's stream: none served and then lost, none skipped.
    let (mut records, mut served_total, mut lost) = (0usize, 0usize, Vec::new());
    let mut duplicates = 0usize;
    for subject in &subjects {
        let log = world.source.event_log(&subject.log);
        let mut copies: BTreeMap<u64, usize> = BTreeMap::new();
        for (key, data) in tenants[subject.tenant].aws.read(&subject.stream).await {
            let event: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(event["log"], subject.log.as_str(), "only this project's events in its stream");
            assert_eq!(key, format!("{}-{}", subject.log, event["seq"]), "partition key is the event id");
            *copies.entry(event["seq"].as_u64().unwrap()).or_default() += 1;
        }
        records += copies.values().sum::<usize>();
        duplicates += copies.values().map(|n| n - 1).sum::<usize>();
        served_total += log.served.len();
        let delivered: BTreeSet<u64> = copies.keys().copied().collect();
        let missing: Vec<u64> = (1..=log.appended).filter(|n| !delivered.contains(n)).collect();
        let served_missing = missing.iter().filter(|n| log.served.contains(n)).count();
        if !missing.is_empty() {
            lost.push(format!(
                "{}: {} events missing ({served_missing} of them served): {missing:?}",
                subject.log,
                missing.len()
            ));
        }
        assert!(delivered.iter().all(|n| (1..=log.appended).contains(n)), "{}: only appended events", subject.log);
    }
    let total: u64 = appended.values().sum();
    eprintln!(
        "crash loop: {KILLS} kills in {killed_at:?} (outbox entries waiting at each kill: {waiting_at_kill:?}), \
         {total} events appended, {served_total} served, {records} records in Kinesis, {duplicates} duplicates, \
         {:?} in all",
        started.elapsed()
    );
    assert!(lost.is_empty(), "records lost (seed {seed}):\n{}", lost.join("\n"));
    assert!(total >= 1000 && served_total as u64 == total, "the load ran and every event was served: {total}");
}

/// What must survive every restart unchanged: tenants, their plugins, and their projects'
/// configuration (status and failure counts follow runs, so they may change).
struct Snapshot {
    tenants: Value,
    per_tenant: Vec<(Value, Value)>,
}

impl Snapshot {
    fn take(world: &World, tenants: &[Tenant]) -> Self {
        let per_tenant = tenants.iter().map(|t| (Self::plugins(world, t), Self::projects(world, t))).collect();
        Self { tenants: Self::tenants(world), per_tenant }
    }

    fn tenants(world: &World) -> Value {
        let (status, body) = world.call("GET", "/v1/tenants", ADMIN_TOKEN, None);
        assert_eq!(status, 200, "{body}");
        body
    }

    fn plugins(world: &World, tenant: &Tenant) -> Value {
        let (status, body) = world.call("GET", "/v1/plugins", &tenant.key, None);
        assert_eq!(status, 200, "{body}");
        body
    }

    fn projects(world: &World, tenant: &Tenant) -> Value {
        let (status, mut body) = world.call("GET", "/v1/projects", &tenant.key, None);
        assert_eq!(status, 200, "{body}");
        for project in body["projects"].as_array_mut().expect("a list of projects") {
            let project = project.as_object_mut().unwrap();
            for volatile in ["status", "status_message", "consecutive_failures", "backoff_until", "updated_at"] {
                project.remove(volatile);
            }
        }
        body
    }

    /// Checks what the API serves at once after a restart (readiness waits for start-up delivery,
    /// and kills must land during that too).
    fn check(&self, world: &World, tenants: &[Tenant], kill: usize) {
        assert_eq!(Self::tenants(world), self.tenants, "tenants after restart {kill}");
        for (tenant, (plugins, projects)) in tenants.iter().zip(&self.per_tenant) {
            assert_eq!(&Self::plugins(world, tenant), plugins, "plugins of {} after restart {kill}", tenant.id);
            assert_eq!(&Self::projects(world, tenant), projects, "projects of {} after restart {kill}", tenant.id);
        }
    }
}

/// A thread that keeps appending events: every 40 ms, one to three to a random log.
struct Load {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<BTreeMap<String, u64>>,
}

impl Load {
    fn start(source: TestSource, logs: Vec<String>, seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0x5eed);
            let mut appended: BTreeMap<String, u64> = logs.iter().map(|log| (log.clone(), 0)).collect();
            // Every log starts with a few events, so that none is empty at the end.
            for log in &logs {
                appended.insert(log.clone(), source.append_events(log, 3));
            }
            while !stopping.load(Ordering::SeqCst) {
                let log = &logs[rng.between(0..logs.len() as u64) as usize];
                appended.insert(log.clone(), source.append_events(log, rng.between(1..4)));
                std::thread::sleep(Duration::from_millis(40));
            }
            appended
        });
        Self { stop, thread }
    }

    /// Stops appending; returns the last sequence number of every log.
    fn stop(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the load thread ran")
    }
}
