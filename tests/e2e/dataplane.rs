//! The data plane end to end: the real `sluice` binary runs projects against a source on
//! loopback and delivers to Kinesis on moto, with credentials from the tenant's role.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::wire_log_lines;
use sluice_tests::world::{World, wait_for};

const SECRET_KEY: &str = "k-1";

/// The partition keys and data of a stream, read as the tenant.
async fn stream(tenant: &sluice_tests::world::Tenant, arn: &str) -> Vec<(String, String)> {
    tenant.aws.read(arn).await
}

fn ids(records: &[(String, String)]) -> BTreeSet<String> {
    records
        .iter()
        .map(|(_, data)| serde_json::from_str::<Value>(data).unwrap()["id"].as_str().unwrap().into())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugins_deliver_to_their_streams_with_their_partition_keys() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let secret = tenant.aws.secret("source-key", SECRET_KEY).await;
    world.source.require_key("x-api-key", SECRET_KEY);
    world.source.add_items(0..250);
    world.source.set_page_size(100);
    let api_key = json!({"secret_arn": secret, "header": "x-api-key"});
    let source = |path: &str| json!({"url": format!("{}{path}", world.source.base), "api_key": api_key});

    let plain_arn = tenant.aws.stream("plain").await;
    let split_arn = tenant.aws.stream("split").await;
    let incr_arn = tenant.aws.stream("incremental").await;
    let plain = world.project(&tenant, "passthrough", "/plain", &plain_arn, json!({"source": source("/plain")}));
    let split = world.project(
        &tenant,
        "json-split",
        "/items",
        &split_arn,
        json!({"source": source("/items"), "plugin_settings": {"array_path": "items", "partition_key_field": "id"}}),
    );
    let incr = world.project(&tenant, "incremental", "/items", &incr_arn, json!({"source": source("/items")}));
    assert_eq!(incr["status"], "pending");

    let minute = Duration::from_secs(60);
    for project in [&plain, &split, &incr] {
        let run = world.run_now(&tenant, project["id"].as_str().unwrap(), minute);
        assert_eq!(run["outcome"], "succeeded", "{run}");
        assert_eq!(run["trigger"], "manual", "{run}");
        assert_eq!(world.show(&tenant, project["id"].as_str().unwrap())["status"], "active");
    }

    // passthrough: the body as one record keyed by the project id.
    let records = stream(&tenant, &plain_arn).await;
    assert_eq!(records, vec![(plain["id"].as_str().unwrap().to_string(), r#"{"temperature": 21.5}"#.to_string())]);
    // json-split: one record per element of the first page, keyed by `id`.
    let records = stream(&tenant, &split_arn).await;
    assert_eq!(records.len(), 100);
    assert!(records.iter().all(|(key, data)| data.contains(&format!("\"id\":\"{key}\""))), "{records:?}");
    // incremental: every page of the run, 250 items, keyed by `id`.
    let records = stream(&tenant, &incr_arn).await;
    assert_eq!(records.len(), 250);
    assert_eq!(ids(&records).len(), 250);
    let runs = world.runs(&tenant, incr["id"].as_str().unwrap());
    assert_eq!((runs[0]["pages"].as_u64(), runs[0]["records"].as_u64()), (Some(3), Some(250)), "{}", runs[0]);
    assert_eq!(runs[0]["http_status"], 200);

    // The key reached the source on every request and was never needed in the URL.
    let seen = world.source.seen();
    assert!(seen.iter().all(|s| s.headers.get("x-api-key").map(String::as_str) == Some(SECRET_KEY)));

    // New items: the next run asks only for what is newer than the committed cursor.
    world.source.add_items(250..260);
    let run = world.run_now(&tenant, incr["id"].as_str().unwrap(), minute);
    assert_eq!((run["outcome"].as_str(), run["records"].as_u64()), (Some("succeeded"), Some(10)), "{run}");
    let last = world.source.seen().into_iter().rev().find(|s| s.path == "/items").unwrap();
    assert_eq!(last.query.get("since").map(String::as_str), Some("2026-01-01T00:00:00.249Z"));
    let records = stream(&tenant, &incr_arn).await;
    assert_eq!((records.len(), ids(&records).len()), (260, 260), "no duplicates without faults");

    // At the test's `info,sluice=debug` the SDK and HTTP crates stay at info: the daemon's cap on
    // them only ever lowers their level, it never raises it to debug.
    let log = world.daemon().log();
    let chatty = wire_log_lines(&log, "DEBUG");
    assert!(chatty.is_empty(), "{} debug lines from the SDK or HTTP crates, first: {:?}", chatty.len(), chatty.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_read_again_when_the_source_refuses_the_old_key() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let secret = tenant.aws.secret("source-key", r#"{"token": "old"}"#).await;
    world.source.require_key("?token", "Bearer old");
    world.source.add_items(0..3);
    let arn = tenant.aws.stream("events").await;
    let api_key = json!({"secret_arn": secret, "query_param": "token", "prefix": "Bearer ", "json_field": "token"});
    let source = json!({"url": format!("{}/items", world.source.base), "api_key": api_key});
    let project = world.project(&tenant, "incremental", "/items", &arn, json!({"source": source}));
    let id = project["id"].as_str().unwrap();
    let minute = Duration::from_secs(60);
    assert_eq!(world.run_now(&tenant, id, minute)["outcome"], "succeeded");
    let reads = world.proxy.count("secretsmanager.GetSecretValue");

    // The tenant rotates the key at the source and in the secret.
    tenant.aws.secrets.put_secret_value().secret_id(&secret).secret_string(r#"{"token": "new"}"#).send().await.unwrap();
    world.source.require_key("?token", "Bearer new");
    world.source.add_items(3..5);
    let run = world.run_now(&tenant, id, minute);
    assert_eq!((run["outcome"].as_str(), run["records"].as_u64()), (Some("succeeded"), Some(2)), "{run}");
    assert_eq!(world.proxy.count("secretsmanager.GetSecretValue"), reads + 1, "read again once, after the 401");
    let tokens: Vec<String> =
        world.source.seen().iter().rev().take(2).map(|s| s.query.get("token").cloned().unwrap_or_default()).collect();
    assert_eq!(tokens, ["Bearer new", "Bearer old"], "the refused request, then the retry with the new key");
    assert_eq!(ids(&stream(&tenant, &arn).await).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenants_records_land_only_in_its_own_stream() {
    let world = World::start();
    let a = world.tenant("tenant-a", "111111111111").await;
    let b = world.tenant("tenant-b", "222222222222").await;
    // The same stream name in both accounts: only the role's account decides where records go.
    let a_arn = a.aws.stream("events").await;
    let b_arn = b.aws.stream("events").await;
    let schedule = json!({"schedule": "rate(1 second)"});
    let pa = world.project(&a, "passthrough", "/plain", &a_arn, schedule.clone());
    let pb = world.project(&b, "passthrough", "/plain", &b_arn, schedule);
    let (ida, idb) = (pa["id"].as_str().unwrap().to_string(), pb["id"].as_str().unwrap().to_string());

    // Both run on their schedule, several times.
    let wait = Duration::from_secs(30);
    wait_for(wait, "three scheduled runs of each project", || {
        let done = |t, id: &str| {
            world.runs(t, id).iter().filter(|r| r["outcome"] == "succeeded" && r["trigger"] != "manual").count() >= 3
        };
        (done(&a, &ida) && done(&b, &idb)).then_some(())
    });
    let in_a = stream(&a, &a_arn).await;
    let in_b = stream(&b, &b_arn).await;
    assert!(in_a.len() >= 3 && in_b.len() >= 3, "{} {}", in_a.len(), in_b.len());
    assert!(in_a.iter().all(|(key, _)| *key == ida), "only tenant A's project in A's stream: {in_a:?}");
    assert!(in_b.iter().all(|(key, _)| *key == idb), "only tenant B's project in B's stream: {in_b:?}");

    // Scheduled runs of one project are about a second apart and never overlap.
    let runs = world.runs(&a, &ida);
    let scheduled: BTreeSet<&str> = runs.iter().filter_map(|r| r["scheduled_at"].as_str()).collect();
    assert_eq!(scheduled.len(), runs.len(), "every run has its own scheduled time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_a_project_or_disabling_its_tenant_stops_its_runs_at_once() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let arn = tenant.aws.stream("events").await;
    let project = world.project(&tenant, "passthrough", "/plain", &arn, json!({"schedule": "rate(1 second)"}));
    let id = project["id"].as_str().unwrap();
    // The scheduler runs once the daemon has delivered what waited and registered every project.
    world.wait_ready();
    // Counted from the metrics, which stay readable while the tenant's key is disabled.
    let series = r#"sluice_runs_total{trigger="schedule",outcome="succeeded"}"#;
    let scheduled = || world.metric_or(series, Some(0.0)) as u64;
    let quiet = |what: &str| {
        // A run already past its permits may still finish; after that, nothing for 2.5 s.
        std::thread::sleep(Duration::from_millis(1500));
        let before = scheduled();
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(scheduled(), before, "no scheduled run while {what}");
    };
    let resumed = |what: &str| {
        let before = scheduled();
        wait_for(Duration::from_secs(15), what, || (scheduled() >= before + 2).then_some(()));
    };
    resumed("the first scheduled runs");

    let (status, _) = world.call("POST", &format!("/v1/projects/{id}/pause"), &tenant.key, None);
    assert_eq!(status, 200);
    quiet("paused");
    // A manual run still works on a paused project, and leaves it paused.
    assert_eq!(world.run_now(&tenant, id, Duration::from_secs(30))["outcome"], "succeeded");
    assert_eq!(world.show(&tenant, id)["status"], "paused");
    let (status, _) = world.call("POST", &format!("/v1/projects/{id}/resume"), &tenant.key, None);
    assert_eq!(status, 200);
    resumed("runs after resume");

    let tenant_path = format!("/v1/tenants/{}", tenant.id);
    let disable = json!({"status": "disabled"});
    assert_eq!(world.call("PATCH", &tenant_path, sluice_tests::ADMIN_TOKEN, Some(disable)).0, 200);
    quiet("the tenant is disabled");
    let enable = json!({"status": "active"});
    assert_eq!(world.call("PATCH", &tenant_path, sluice_tests::ADMIN_TOKEN, Some(enable)).0, 200);
    resumed("runs after the tenant is enabled again");

    // Deleting the project stops it and removes its history.
    let (status, _) = world.call("DELETE", &format!("/v1/projects/{id}"), &tenant.key, None);
    assert_eq!(status, 204);
    let (status, _) = world.call("POST", &format!("/v1/projects/{id}/run"), &tenant.key, None);
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_operators_consent_a_loopback_source_is_refused() {
    let world = World::start_with(false);
    let tenant = world.tenant("acme", "111111111111").await;
    let arn = tenant.aws.stream("events").await;
    let project = world.project(&tenant, "passthrough", "/plain", &arn, json!({}));
    let run = world.run_now(&tenant, project["id"].as_str().unwrap(), Duration::from_secs(30));
    assert_eq!((run["outcome"].as_str(), run["error"]["stage"].as_str()), (Some("failed"), Some("fetch")), "{run}");
    let message = run["error"]["message"].as_str().unwrap();
    assert!(message.contains("127.0.0.1") && message.contains("SLUICE_ALLOW_PRIVATE_SOURCES"), "{message}");
    assert!(world.source.seen().is_empty(), "the source never saw a request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sources_retry_after_holds_back_the_next_run() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let arn = tenant.aws.stream("events").await;
    let project = world.project(&tenant, "passthrough", "/plain", &arn, json!({"schedule": "rate(1 second)"}));
    let id = project["id"].as_str().unwrap();
    let succeeded = |runs: &[Value]| runs.iter().filter(|r| r["outcome"] == "succeeded").count();
    wait_for(Duration::from_secs(20), "the first scheduled runs", || {
        (succeeded(&world.runs(&tenant, id)) >= 2).then_some(())
    });

    // One 429 asking for 4 s: on a 1 s schedule, the next run must wait for it.
    world.source.fail_next_with(429, 1, 4);
    let time = |run: &Value, field: &str| run[field].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let (refused, next) = wait_for(Duration::from_secs(30), "a run after the 429", || {
        let mut runs = world.runs(&tenant, id);
        runs.retain(|r| r["outcome"] != "skipped");
        runs.sort_by_key(|r| time(r, "started_at"));
        let at = runs.iter().position(|r| r["http_status"] == 429)?;
        let next = runs.get(at + 1)?;
        Some((runs[at].clone(), next.clone()))
    });
    assert_eq!((refused["outcome"].as_str(), refused["error"]["stage"].as_str()), (Some("failed"), Some("fetch")));
    let waited = time(&next, "started_at").duration_since(time(&refused, "finished_at"));
    assert!(waited >= jiff::SignedDuration::from_millis(3900), "the next run came {waited:?} after the 429: {next}");
    assert_eq!(next["outcome"], "succeeded", "{next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_longer_than_its_interval_records_its_streak_of_skipped_ticks_once() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let arn = tenant.aws.stream("events").await;
    // The source takes 3 s to answer, so each run of a 1 s schedule makes two or three ticks skip.
    let project = world.project(&tenant, "passthrough", "/leak/slow", &arn, json!({"schedule": "rate(1 second)"}));
    let id = project["id"].as_str().unwrap();
    let runs = wait_for(Duration::from_secs(40), "three slow runs", || {
        let runs = world.runs(&tenant, id);
        (runs.iter().filter(|r| r["outcome"] == "succeeded").count() >= 3).then_some(runs)
    });
    let ticks = world.metric("sluice_runs_total{trigger=\"schedule\",outcome=\"skipped\"}");
    let time = |run: &Value, field: &str| run[field].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let skipped: Vec<&Value> = runs.iter().filter(|r| r["outcome"] == "skipped").collect();
    let succeeded: Vec<&Value> = runs.iter().filter(|r| r["outcome"] == "succeeded").collect();
    for run in &succeeded {
        let during = skipped
            .iter()
            .filter(|s| (time(run, "started_at")..=time(run, "finished_at")).contains(&time(s, "started_at")))
            .count();
        assert!(during <= 1, "{during} history entries for the ticks skipped during one run: {runs:#?}");
    }
    assert!(!skipped.is_empty(), "no skipped tick was recorded: {runs:#?}");
    assert!(
        ticks >= 2.0 * (succeeded.len() - 1) as f64,
        "the metric counts every skipped tick: {ticks} for {} runs",
        succeeded.len()
    );
    let message = skipped[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("ticks after it until that run ends"), "{message}");
}

/// A project that names a plugin follows its newest version: an upload under the name moves it,
/// its runs record the version they used, a PATCH of `plugin_id` pins one version (switching
/// back), and a PATCH of `plugin` follows the name again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_follows_the_newest_version_of_a_plugin_name_until_pinned() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    world.source.add_items(0..3);
    let arn = tenant.aws.stream("events").await;
    let minute = Duration::from_secs(60);
    let v1 = world.upload_as(&tenant, "passthrough", "shaper");
    let settings = json!({"array_path": "items", "partition_key_field": "id"});
    let extra = json!({"plugin_id": null, "plugin": "shaper", "plugin_settings": settings});
    let project = world.project(&tenant, "passthrough", "/items", &arn, extra);
    let id = project["id"].as_str().unwrap();
    assert_eq!((&project["plugin"], &project["plugin_id"]), (&json!("shaper"), &json!(v1)), "{project}");
    let first = world.run_now(&tenant, id, minute);
    assert_eq!((first["records"].as_u64(), &first["plugin_id"]), (Some(1), &json!(v1)), "passthrough: {first}");

    // A new version under the name: the project moves to it, and its next run splits.
    let v2 = world.upload_as(&tenant, "json-split", "shaper");
    assert_eq!(world.show(&tenant, id)["plugin_id"], v2.as_str());
    let second = world.run_now(&tenant, id, minute);
    assert_eq!((second["records"].as_u64(), &second["plugin_id"]), (Some(3), &json!(v2)), "json-split: {second}");
    assert_eq!(stream(&tenant, &arn).await.len(), 4);
    let runs = world.runs(&tenant, id);
    let used: Vec<&str> = runs.iter().map(|run| run["plugin_id"].as_str().unwrap()).collect();
    assert_eq!(used, [v2.as_str(), v1.as_str()], "each run names its version, newest first");
    let (status, versions) = world.call("GET", "/v1/plugins?name=shaper", &tenant.key, None);
    let listed: Vec<&str> = versions["plugins"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!((status, listed), (200, vec![v2.as_str(), v1.as_str()]), "{versions}");

    // Switching back is one PATCH, which pins: a later upload under the name leaves it alone.
    let (status, pinned) =
        world.call("PATCH", &format!("/v1/projects/{id}"), &tenant.key, Some(json!({"plugin_id": v1})));
    assert_eq!((status, &pinned["plugin_id"], pinned.get("plugin")), (200, &json!(v1), None), "{pinned}");
    let v3 = world.upload_as(&tenant, "incremental", "shaper");
    assert_eq!(world.show(&tenant, id)["plugin_id"], v1.as_str(), "a pinned project stays on its version");
    let (status, following) =
        world.call("PATCH", &format!("/v1/projects/{id}"), &tenant.key, Some(json!({"plugin": "shaper"})));
    assert_eq!((status, &following["plugin_id"]), (200, &json!(v3)), "{following}");

    // Both at once, or a name with no version, say what to send instead.
    let both = json!({"plugin": "shaper", "plugin_id": v1});
    let (status, body) = world.call("PATCH", &format!("/v1/projects/{id}"), &tenant.key, Some(both));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not both"), "{body}");
    let (status, body) =
        world.call("PATCH", &format!("/v1/projects/{id}"), &tenant.key, Some(json!({"plugin": "nothing-here"})));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no plugin named \"nothing-here\""), "{body}");
    // Another tenant's upload under the same name moves nothing of acme's.
    let other = world.tenant("other", "222222222222").await;
    world.upload_as(&other, "raw-output", "shaper");
    assert_eq!(world.show(&tenant, id)["plugin_id"], v3.as_str());
}
