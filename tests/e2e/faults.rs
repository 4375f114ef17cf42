//! The data plane under faults moto cannot make, injected by the proxy in front of it, and a
//! `kill -9` while records wait for delivery: nothing is lost, duplicates are only of entries
//! that were retried, and project status says what the tenant must fix.

use std::time::Duration;

use serde_json::json;
use sluice_tests::fault_proxy::Fault;
use sluice_tests::world::{FAST, Tenant, World, block_on, copies, wait_for};

const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";

async fn incremental(world: &World, tenant: &Tenant, schedule: &str) -> (String, String) {
    let arn = tenant.aws.stream("events").await;
    let project = world.project(tenant, "incremental", "/items", &arn, json!({"schedule": schedule}));
    (project["id"].as_str().unwrap().to_string(), arn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failures_and_throttling_are_retried_and_lose_nothing() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let (id, arn) = incremental(&world, &tenant, "rate(1 hour)").await;
    world.source.add_items(0..40);
    world.proxy.inject(PUT_RECORDS, Fault::PartialFailure, 1);
    world.proxy.inject(PUT_RECORDS, Fault::Throttle, 1);
    let run = world.run_now(&tenant, &id, Duration::from_secs(60));
    assert_eq!(run["outcome"], "succeeded", "{run}");
    let counts = copies(&tenant, &arn).await;
    assert_eq!(counts.len(), 40, "every record arrived");
    // The proxy marks every other entry of a batch failed after moto stored it, so those 20 are
    // sent again: they, and only they, may be there twice.
    let twice = counts.values().filter(|n| **n == 2).count();
    assert!(counts.values().all(|n| *n <= 2) && twice <= 20, "{counts:?}");
    assert_eq!(world.proxy.count(PUT_RECORDS), 3, "one call, then one retry per fault");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_role_keeps_the_project_pending_until_the_stack_trusts_it() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    world.proxy.inject("AssumeRole", Fault::AccessDenied, 2);
    world.source.add_items(0..5);
    let (id, arn) = incremental(&world, &tenant, "rate(1 hour)").await;
    let minute = Duration::from_secs(60);

    let run = world.run_now(&tenant, &id, minute);
    assert_eq!((run["outcome"].as_str(), run["error"]["stage"].as_str()), (Some("failed"), Some("assume_role")));
    let project = world.show(&tenant, &id);
    assert_eq!(project["status"], "pending");
    let message = project["status_message"].as_str().unwrap();
    let external_id = project["onboarding"]["external_id"].as_str().unwrap();
    assert!(message.contains(external_id) && message.contains("tenant stack"), "{message}");
    assert_eq!(world.run_now(&tenant, &id, minute)["outcome"], "failed");
    assert_eq!(world.show(&tenant, &id)["status"], "pending", "still pending, not failing, after 2 denials");

    // The proxy lets AssumeRole through: the next run succeeds and the project is active.
    let run = world.run_now(&tenant, &id, minute);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    let project = world.show(&tenant, &id);
    assert_eq!((project["status"].as_str(), project["status_message"].as_str()), (Some("active"), Some("")));
    assert_eq!(copies(&tenant, &arn).await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_unreachable_for_30_seconds_fills_the_outbox_which_then_drains() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let (id, arn) = incremental(&world, &tenant, "rate(1 second)").await;
    world.source.add_items(0..10);
    wait_for(Duration::from_secs(20), "the first delivery", || {
        (world.metric("sluice_records_delivered_total") >= 10.0).then_some(())
    });

    world.proxy.set_down("Kinesis_20131202.", true);
    let outage = std::time::Instant::now();
    let mut n = 10;
    let mut deepest = 0.0f64;
    let mut failing = false;
    while outage.elapsed() < Duration::from_secs(30) {
        world.source.add_items(n..n + 5);
        n += 5;
        std::thread::sleep(Duration::from_secs(1));
        deepest = deepest.max(world.metric("sluice_outbox_depth"));
        failing |= world.show(&tenant, &id)["status"] == "failing";
    }
    assert!(failing, "after 3 failed runs in a row the project is failing");
    assert!(deepest >= 2.0, "runs kept fetching into the outbox during the outage (depth {deepest})");
    let runs = world.runs(&tenant, &id);
    assert!(
        runs.iter().any(|r| r["outcome"] == "failed" && r["error"]["stage"] == "deliver"),
        "runs failed in stage deliver"
    );

    world.proxy.set_down("Kinesis_20131202.", false);
    wait_for(Duration::from_secs(30), "the outbox to drain", || {
        (world.metric("sluice_outbox_depth") == 0.0).then_some(())
    });
    let total = n;
    let counts = wait_for(Duration::from_secs(30), "every item in the stream", || {
        let counts = block_on(copies(&tenant, &arn));
        (counts.len() == total as usize).then_some(counts)
    });
    assert!(counts.values().all(|n| *n == 1), "no duplicates without partial failures: {counts:?}");
    let project = wait_for(Duration::from_secs(20), "the project to be active again", || {
        Some(world.show(&tenant, &id)).filter(|p| p["status"] == "active")
    });
    assert_eq!(project["consecutive_failures"], 0);
}

/// A run whose records Kinesis takes at once stores none of them (its history has no `outbox`
/// stage, and the outbox stays empty); a run whose records Kinesis does not take leaves them in
/// the outbox before it ends, and the next run starts from the state they carry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_stored_only_when_kinesis_does_not_take_them_at_once() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let (id, arn) = incremental(&world, &tenant, "rate(1 hour)").await;
    world.source.add_items(0..3);
    let run = world.run_now(&tenant, &id, Duration::from_secs(60));
    assert_eq!((run["outcome"].as_str(), run["records"].as_u64()), (Some("succeeded"), Some(3)), "{run}");
    assert!(run["stage_ms"]["deliver"].is_number() && run["stage_ms"]["outbox"].is_null(), "{run}");
    assert_eq!(copies(&tenant, &arn).await.len(), 3);

    world.proxy.set_down("Kinesis_20131202.", true);
    world.source.add_items(3..5);
    let stuck = world.run_now(&tenant, &id, Duration::from_secs(60));
    assert_eq!(stuck["error"]["stage"], "deliver", "{stuck}");
    assert!(stuck["stage_ms"]["outbox"].is_number(), "{stuck}");
    let (status, outbox) = world.call("GET", &format!("/v1/projects/{id}/outbox"), &tenant.key, None);
    assert_eq!((status, &outbox["waiting"][0]["run_id"]), (200, &stuck["id"]), "{outbox}");

    // The next run starts after the waiting records, not from the committed state, and waits
    // behind them.
    world.source.add_items(5..6);
    let next = world.run_now(&tenant, &id, Duration::from_secs(60));
    assert_eq!(next["error"]["stage"], "deliver", "{next}");
    let last = world.source.seen().into_iter().rev().find(|s| s.path == "/items").unwrap();
    assert_eq!(last.query.get("since").map(String::as_str), Some("2026-01-01T00:00:00.004Z"));
    world.proxy.set_down("Kinesis_20131202.", false);
    // At least once: an attempt the outage's end cuts short is sent again.
    wait_for(Duration::from_secs(30), "the waiting records delivered", || {
        (block_on(copies(&tenant, &arn)).len() == 6).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_records_wait_for_delivery_loses_none_of_them() {
    let mut world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let (id, arn) = incremental(&world, &tenant, "rate(1 hour)").await;
    world.source.add_items(0..30);
    world.proxy.set_down("Kinesis_20131202.", true);
    let run = world.run_now(&tenant, &id, Duration::from_secs(60));
    assert_eq!((run["outcome"].as_str(), run["error"]["stage"].as_str()), (Some("failed"), Some("deliver")), "{run}");
    assert_eq!(world.metric("sluice_outbox_depth"), 1.0);
    world.kill();

    // Kinesis is back before the restart; the daemon delivers the outbox first.
    world.proxy.set_down("Kinesis_20131202.", false);
    world.restart();
    let counts = wait_for(Duration::from_secs(30), "the outbox delivered after the restart", || {
        let counts = block_on(copies(&tenant, &arn));
        (counts.len() == 30).then_some(counts)
    });
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    // The records are readable in the stream before the daemon has seen PutRecords answer and
    // dropped the outbox entry, so the depth gets a moment to follow.
    wait_for(Duration::from_secs(10), "the outbox to drain after delivery", || {
        (world.metric("sluice_outbox_depth") == 0.0).then_some(())
    });

    // The state of the delivered run was committed with it: the next run starts after item 29.
    world.source.add_items(30..32);
    let run = world.run_now(&tenant, &id, Duration::from_secs(60));
    assert_eq!((run["outcome"].as_str(), run["records"].as_u64()), (Some("succeeded"), Some(2)), "{run}");
    let last = world.source.seen().into_iter().rev().find(|s| s.path == "/items").unwrap();
    assert_eq!(last.query.get("since").map(String::as_str), Some("2026-01-01T00:00:00.029Z"));
}

/// A `kill -9` in the middle of busy commits: ten projects run every second while Kinesis is
/// down, so every run hands an entry to the committer and fails in `deliver`. Every run the
/// history shows was told its entry was durable before delivery began; the daemon is killed
/// right after the history is read, with commits still in flight, and after the restart every
/// one of those entries is still waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_busy_commits_keeps_every_acknowledged_entry() {
    let mut world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let arn = tenant.aws.stream("busy").await;
    world.source.add_items(0..3);
    world.proxy.set_down("Kinesis_20131202.", true);
    let ids: Vec<String> = (0..10)
        .map(|_| {
            let project = world.project(&tenant, "passthrough", "/items", &arn, json!({"schedule": "rate(1 second)"}));
            project["id"].as_str().unwrap().to_string()
        })
        .collect();
    let acknowledged = |world: &World| -> Vec<(String, String)> {
        let mut runs = Vec::new();
        for id in &ids {
            for run in world.runs(&tenant, id) {
                if run["error"]["stage"] == "deliver" {
                    runs.push((id.clone(), run["id"].as_str().unwrap().to_string()));
                }
            }
        }
        runs
    };
    // A bound, not a pace: on the shared store every request to moto waits its turn.
    wait_for(Duration::from_secs(120), "twenty runs with their entries in the outbox", || {
        (acknowledged(&world).len() >= 20).then_some(())
    });
    let acknowledged = acknowledged(&world);
    world.kill();

    world.restart();
    world.wait_ready();
    for (id, run_id) in &acknowledged {
        let (status, outbox) = world.call("GET", &format!("/v1/projects/{id}/outbox"), &tenant.key, None);
        assert_eq!(status, 200, "{outbox}");
        let waiting: Vec<&str> =
            outbox["waiting"].as_array().unwrap().iter().filter_map(|e| e["run_id"].as_str()).collect();
        assert!(waiting.contains(&run_id.as_str()), "run {run_id} of {id} was acknowledged but is gone: {outbox}");
    }
    world.proxy.set_down("Kinesis_20131202.", false);
    wait_for(Duration::from_secs(60), "the outbox to drain", || {
        (world.metric("sluice_outbox_depth") == 0.0).then_some(())
    });
    assert!(tenant.aws.read(&arn).await.len() >= acknowledged.len(), "every acknowledged entry was delivered");
}

/// A backlog goes out in full calls: five runs' entries that waited out an outage share
/// PutRecords calls when Kinesis is back, and each is committed in its turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_entries_is_delivered_in_shared_calls_after_an_outage() {
    // The drainer tries every 2 s here, so that the outage can end between two of its attempts:
    // an attempt the end cuts in two retries each entry's call on its own, as it should, and
    // that is not what this test measures.
    let config = FAST.replace("outbox_retry_ms = 300", "outbox_retry_ms = 2000");
    assert_ne!(config, FAST, "FAST sets outbox_retry_ms no more");
    let world = World::start_configured(true, &config, &[]);
    let tenant = world.tenant("acme", "111111111111").await;
    let (id, arn) = incremental(&world, &tenant, "rate(1 hour)").await;
    world.proxy.set_down("Kinesis_20131202.", true);
    for batch in 0..5 {
        world.source.add_items(batch * 4..batch * 4 + 4);
        let run = world.run_now(&tenant, &id, Duration::from_secs(60));
        assert_eq!(run["error"]["stage"], "deliver", "{run}");
    }
    let (_, outbox) = world.call("GET", &format!("/v1/projects/{id}/outbox"), &tenant.key, None);
    assert_eq!(outbox["waiting"].as_array().unwrap().len(), 5, "{outbox}");

    // A quiet moment: no call for 400 ms, so no attempt is under way and the next is over a
    // second away.
    wait_for(Duration::from_secs(20), "a moment without delivery attempts", || {
        let calls = world.proxy.count(PUT_RECORDS);
        std::thread::sleep(Duration::from_millis(400));
        (world.proxy.count(PUT_RECORDS) == calls).then_some(())
    });
    // The first call back is slow, so that whatever the drainer sends after it queues up.
    world.proxy.inject(PUT_RECORDS, Fault::Slow(Duration::from_millis(300)), 1);
    // Calls the outage refused count nowhere, even those still arriving as it ends.
    let before = world.proxy.let_through(PUT_RECORDS);
    world.proxy.set_down("Kinesis_20131202.", false);
    wait_for(Duration::from_secs(30), "the backlog delivered", || {
        (world.metric("sluice_outbox_depth") == 0.0).then_some(())
    });
    let calls = world.proxy.let_through(PUT_RECORDS) - before;
    assert!(calls <= 2, "five entries of 4 records went out in {calls} calls");
    let counts = copies(&tenant, &arn).await;
    assert_eq!(counts.len(), 20, "{counts:?}");
    // Every state was committed in order: the next run starts after the last item.
    world.source.add_items(20..21);
    let run = world.run_now(&tenant, &id, Duration::from_secs(60));
    assert_eq!((run["outcome"].as_str(), run["records"].as_u64()), (Some("succeeded"), Some(1)), "{run}");
}
