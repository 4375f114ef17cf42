//! Noisy neighbours: a tenant whose plugins spin, exhaust memory and flood output every second
//! runs beside well-behaved tenants on the real daemon. The well-behaved projects must keep their
//! schedule, the daemon's memory must stay bounded, and the noisy projects must fail with the
//! limit they broke and back off.
//!
//! This is the suite's scaled-down version (the machine has two cores and moto is slow); the
//! full-size run (50 noisy beside 200 well-behaved) is a scenario of `cargo xtask bench`, reported
//! in BENCHMARKS.md.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};
use sluice_tests::ADMIN_TOKEN;
use sluice_tests::world::{Tenant, World, wait_for};

/// Well-behaved tenants, and projects per well-behaved tenant.
const GOOD_TENANTS: usize = 2;
const GOOD_PER_TENANT: usize = 8;
/// The noisy tenant's projects per hostile mode.
const NOISY_PER_MODE: usize = 2;
/// How long each measured window lasts.
const WINDOW: Duration = Duration::from_secs(12);

/// Each hostile mode, its settings, and what the run history must say about it. 100 MiB of output
/// cannot even be built inside the 64 MiB a call's memory may grow to, so that plugin meets the
/// memory limit first; 24 MiB fits in memory and meets the 16 MiB output limit.
const MODES: [(&str, &str, &str); 4] = [
    ("busy-loop", "{}", "plugin used its 2 s of CPU time"),
    ("memory-bomb", "{}", "plugin tried to grow memory past 64 MiB"),
    ("big-output", r#"{"output_mb": "100"}"#, "plugin tried to grow memory past 64 MiB"),
    ("big-output", r#"{"output_mb": "24"}"#, "plugin output exceeded 16 MiB"),
];

/// Whether a failure message names the limit `want`. Plugin calls run at the lowest CPU
/// priority and their deadline counts the CPU time they got, so a machine whose cores other
/// processes keep busy (a laptop, a shared runner) makes them slower, not failed; one busy enough
/// to give them less than a fifth of a core can still end a call at its 10 s wall-clock backstop
/// before the limit its mode meets. That is the sandbox working too, and which limit each mode
/// meets is checked apart, one call at a time, in `fixtures.rs`.
fn broke(message: &str, want: &str) -> bool {
    message.contains(want) || message.contains("plugin exceeded its wall-clock backstop of 10 s")
}

fn time(run: &Value, field: &str) -> Timestamp {
    run[field].as_str().unwrap().parse().unwrap()
}

/// The runs of `projects` that started inside `[from, to)`.
fn runs_between(world: &World, projects: &[(&Tenant, String)], from: Timestamp, to: Timestamp) -> Vec<Value> {
    let mut runs = Vec::new();
    for (tenant, id) in projects {
        runs.extend(world.runs(tenant, id).into_iter().filter(|run| (from..to).contains(&time(run, "started_at"))));
    }
    runs
}

/// Start lag per run, in milliseconds: `started_at - scheduled_at` minus the project's jitter
/// offset. The offset is fixed per project (a phase shift) but not shown by the API, so it is
/// estimated as the smallest delay the project's runs ever had.
fn lags(runs: &[Value], offsets: &BTreeMap<String, i64>) -> Vec<i64> {
    let mut lags: Vec<i64> = runs
        .iter()
        .filter(|run| run["outcome"] != "skipped" && run["trigger"] == "schedule")
        .map(|run| {
            let delay = time(run, "started_at").duration_since(time(run, "scheduled_at")).as_millis() as i64;
            delay - offsets[run["project_id"].as_str().unwrap()]
        })
        .collect();
    lags.sort_unstable();
    lags
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    assert!(!sorted.is_empty(), "no runs to take a percentile of");
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noisy_plugins_fail_and_back_off_while_the_others_keep_their_schedule() {
    let world = World::start();
    let mut good_tenants = Vec::new();
    for t in 0..GOOD_TENANTS {
        good_tenants.push(world.tenant(&format!("good-{t}"), &format!("11111111111{t}")).await);
    }
    let mut good = Vec::new();
    for tenant in &good_tenants {
        let arn = tenant.aws.stream("events").await;
        for _ in 0..GOOD_PER_TENANT {
            let project = world.project(tenant, "passthrough", "/plain", &arn, json!({"schedule": "rate(1 second)"}));
            good.push((tenant, project["id"].as_str().unwrap().to_string()));
        }
    }

    // Baseline: the well-behaved projects alone, once each has run.
    wait_for(Duration::from_secs(60), "every well-behaved project's first run", || {
        good.iter().all(|(tenant, id)| !world.runs(tenant, id).is_empty()).then_some(())
    });
    let baseline_from = Timestamp::now();
    std::thread::sleep(WINDOW);
    let baseline_to = Timestamp::now();

    // The noisy tenant: every hostile mode, every second.
    let noisy_tenant = world.tenant("noisy", "222222222222").await;
    let noisy_arn = noisy_tenant.aws.stream("events").await;
    let mut noisy = Vec::new();
    for (mode, settings, want) in MODES {
        let mut settings: Value = serde_json::from_str(settings).unwrap();
        settings["mode"] = mode.into();
        for _ in 0..NOISY_PER_MODE {
            let extra = json!({"schedule": "rate(1 second)", "plugin_settings": settings});
            let project = world.project(&noisy_tenant, "hostile", "/plain", &noisy_arn, extra);
            noisy.push((&noisy_tenant, project["id"].as_str().unwrap().to_string(), mode, want));
        }
    }
    let noisy_from = Timestamp::now();
    let started = Instant::now();
    std::thread::sleep(WINDOW);
    let noisy_to = Timestamp::now();
    let noisy_elapsed = started.elapsed();

    // Each project's jitter offset, estimated from every run it had.
    let all_good = runs_between(&world, &good, baseline_from, noisy_to);
    let mut offsets: BTreeMap<String, i64> = BTreeMap::new();
    for run in all_good.iter().filter(|run| run["trigger"] == "schedule") {
        let delay = time(run, "started_at").duration_since(time(run, "scheduled_at")).as_millis() as i64;
        let offset = offsets.entry(run["project_id"].as_str().unwrap().to_string()).or_insert(delay);
        *offset = (*offset).min(delay);
    }
    let baseline = runs_between(&world, &good, baseline_from, baseline_to);
    let beside_noise = runs_between(&world, &good, noisy_from, noisy_to);
    let (baseline_lags, noisy_lags) = (lags(&baseline, &offsets), lags(&beside_noise, &offsets));
    let (p99_base, p99_noisy) = (percentile(&baseline_lags, 0.99), percentile(&noisy_lags, 0.99));
    let peak = world.daemon().peak_rss_mib();
    eprintln!(
        "well-behaved lag p50/p99: alone {}/{p99_base} ms over {} runs, beside the noisy tenant {}/{p99_noisy} ms over \
         {} runs; daemon peak RSS {peak} MiB",
        percentile(&baseline_lags, 0.5),
        baseline_lags.len(),
        percentile(&noisy_lags, 0.5),
        noisy_lags.len()
    );

    // The well-behaved keep their schedule: every run succeeded, none was skipped, each project ran
    // about once a second, and the tail of the lag stayed close to what it was without the noise.
    // The floor of 100 ms keeps a two-core CI machine's scheduling noise on a p99 of a few
    // milliseconds from failing the test; the ratio at full size is the benchmark's to report.
    // Before plugins ran on their own low-priority threads, this p99 was 150 ms.
    for run in &beside_noise {
        assert_eq!(run["outcome"], "succeeded", "a well-behaved run beside the noisy tenant: {run}");
    }
    let expected = good.len() as f64 * noisy_elapsed.as_secs_f64();
    assert!(beside_noise.len() as f64 >= 0.85 * expected, "{} runs, {expected:.0} expected", beside_noise.len());
    assert!(
        p99_noisy <= (2 * p99_base).max(p99_base + 100),
        "p99 lag {p99_noisy} ms beside noise, {p99_base} ms alone"
    );

    // The daemon's memory stays bounded: each call's memory is capped at 64 MiB and the noisy
    // tenant holds at most 8 runs at once, so even a memory bomb in every run stays far below 1 GiB.
    assert!(peak < 1024, "daemon peak RSS {peak} MiB");

    // A spinning run ends once it has used its 2 s of CPU time, which a machine whose cores other
    // processes keep busy gives the plugin threads slowly (up to the 10 s wall-clock backstop), so
    // a busy-loop project may need longer than the window for the three failures in a row that
    // turn it `failing`. Bounded by three runs at the backstop, with room to spare.
    wait_for(Duration::from_secs(60), "every noisy project to turn failing", || {
        noisy.iter().all(|(tenant, id, ..)| world.show(tenant, id)["status"] == "failing").then_some(())
    });

    // The noisy projects failed in the transform with the limit they broke, turned `failing`, and
    // backed off: without backoff each would have run about once a second.
    for (tenant, id, mode, want) in &noisy {
        let runs = runs_between(&world, &[(*tenant, id.clone())], noisy_from, noisy_to);
        let ran: Vec<&Value> = runs.iter().filter(|run| run["outcome"] != "skipped").collect();
        assert!(!ran.is_empty(), "{mode}: no run");
        let messages: std::collections::BTreeSet<&str> =
            ran.iter().filter_map(|run| run["error"]["message"].as_str()).collect();
        eprintln!("{mode}: {} runs in the window, failing with {messages:?}", ran.len());
        for run in &ran {
            assert_eq!(run["outcome"], "failed", "{mode}: {run}");
            assert_eq!(run["error"]["stage"], "transform", "{mode}: {run}");
            assert!(broke(run["error"]["message"].as_str().unwrap(), want), "{mode}: {run}");
        }
        let project = world.show(tenant, id);
        assert_eq!(project["status"], "failing", "{mode}: {project}");
        assert!(broke(project["status_message"].as_str().unwrap(), want), "{mode}: {project}");
        assert!(project["backoff_until"].is_string(), "{mode}: the schedule does not back off: {project}");
        // A spinning run takes at least the 2 s of CPU time it may use, so it could not run every
        // second anyway; the modes that fail at once show the backoff in their count of runs.
        if *mode != "busy-loop" {
            let per_s = ran.len() as f64 / noisy_elapsed.as_secs_f64();
            assert!(per_s < 0.8, "{mode}: {} runs in {noisy_elapsed:?}, so it did not back off", ran.len());
        }
    }
}

/// A tenant whose plugin memory quota is below what its projects take at once: the run past its
/// share fails naming the share and the quota to raise, while another tenant's hog, at the same
/// moment on the same host, gets all the memory it asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_past_its_share_of_plugin_memory_fails_naming_it_and_others_run() {
    let world = World::start();
    let acme = world.tenant("acme", "111111111111").await;
    let quotas = json!({"quotas": {"max_plugin_memory_bytes": 48 << 20}});
    let (status, body) = world.call("PATCH", &format!("/v1/tenants/{}", acme.id), ADMIN_TOKEN, Some(quotas));
    assert_eq!((status, &body["quotas"]["max_plugin_memory_bytes"]), (200, &json!(48 << 20)), "{body}");
    let globex = world.tenant("globex", "222222222222").await;
    let hog = json!({"plugin_settings": {"mode": "memory-hog", "hog_mb": "40"}});
    let mut hogs = Vec::new();
    for (tenant, stream) in [(&acme, "first"), (&acme, "second"), (&globex, "events")] {
        let arn = tenant.aws.stream(stream).await;
        let project = world.project(tenant, "hostile", "/plain", &arn, hog.clone());
        hogs.push((tenant, project["id"].as_str().unwrap().to_string()));
    }
    // Each hog holds its 40 MiB until it has used its 2 s of CPU time. Acme's first starts alone
    // and takes its memory; the others start while it holds it. (Started together, acme's two
    // could each grow to half the share and both be refused.)
    let start = |(tenant, id): &(&Tenant, String)| {
        let (status, body) = world.call("POST", &format!("/v1/projects/{id}/run"), &tenant.key, None);
        assert_eq!(status, 202, "{body}");
        body["scheduled_at"].as_str().unwrap().to_string()
    };
    let mut started = vec![start(&hogs[0])];
    // While the hog holds its memory, the tenant's usage shows it, within its quota.
    let held = wait_for(Duration::from_secs(60), "acme's usage to show its hog's memory", || {
        let (_, usage) = world.call("GET", "/v1/usage", &acme.key, None);
        let held = usage["plugin_memory_bytes"].as_u64().unwrap();
        (held >= 40 << 20).then_some(held)
    });
    assert!(held <= 48 << 20, "acme holds {held} bytes, past its 48 MiB share");
    started.extend(hogs[1..].iter().map(start));
    let runs: Vec<Value> = hogs
        .iter()
        .zip(&started)
        .map(|((tenant, id), at)| {
            wait_for(Duration::from_secs(60), "the hog's run", || {
                world.runs(tenant, id).into_iter().find(|run| run["scheduled_at"] == at.as_str())
            })
        })
        .collect();
    let message = |run: &Value| run["error"]["message"].as_str().unwrap_or_default().to_string();
    let share = "the tenant's share of plugin memory, 48 MiB, was in use by its other calls";
    let deadline = "plugin used its 2 s of CPU time";
    let (first, second, globex_run) = (&runs[0], &runs[1], &runs[2]);
    assert!(message(second).contains(share), "acme's second hog is past its share: {second}");
    assert_eq!(second["error"]["stage"], "transform", "{second}");
    assert!(message(second).contains("max_plugin_memory_bytes"), "{second}");
    assert!(broke(&message(first), deadline), "acme's first hog held its memory: {first}");
    assert!(broke(&message(globex_run), deadline), "globex's hog got its memory beside acme's: {globex_run}");
}
