//! What a plugin written straight against `wit/` can hand back that Kinesis would refuse, or that
//! would fill the host's disk, and what the host does with it: records are checked when
//! `transform` returns, entries Kinesis refuses for good are parked for the tenant to decide on,
//! and run history keeps the plugin's log lines and says when the page cap cut a run short.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::fault_proxy::Fault;
use sluice_tests::world::{Tenant, World, block_on, wait_for};

const PUT_RECORDS: &str = "Kinesis_20131202.PutRecords";
const MINUTE: Duration = Duration::from_secs(60);

fn patch(world: &World, tenant: &Tenant, id: &str, body: Value) {
    let (status, project) = world.call("PATCH", &format!("/v1/projects/{id}"), &tenant.key, Some(body));
    assert_eq!(status, 200, "{project}");
}

fn outbox(world: &World, tenant: &Tenant, id: &str) -> Value {
    let (status, outbox) = world.call("GET", &format!("/v1/projects/{id}/outbox"), &tenant.key, None);
    assert_eq!(status, 200, "{outbox}");
    outbox
}

fn usage(world: &World, tenant: &Tenant) -> Value {
    let (status, usage) = world.call("GET", "/v1/usage", &tenant.key, None);
    assert_eq!(status, 200, "{usage}");
    usage
}

/// Each kind of record Kinesis refuses, and a state over the tier's limit, fails its run in stage
/// `transform` naming the record and the rule; nothing reaches the outbox or the stream, and the
/// state does not advance. PATCHed to a good plugin, the next run delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_kinesis_would_refuse_fails_the_run_at_transform_and_stores_nothing() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let arn = tenant.aws.stream("events").await;
    let project = world.project(&tenant, "raw-output", "/plain", &arn, json!({"plugin_settings": {}}));
    let id = project["id"].as_str().unwrap();
    let good = world.run_now(&tenant, id, MINUTE);
    assert_eq!(good["outcome"], "succeeded", "{good}");
    let state_before = good["scheduled_at"].clone();

    let cases = [
        (json!({"record": "empty-key"}), "record 0 has a partition key of 0 characters; Kinesis needs 1 to 256"),
        (json!({"record": "long-key"}), "record 0 has a partition key of 257 characters"),
        (json!({"record": "bad-hash", "records": "2"}), "record 0 has the explicit hash key `abc`"),
        (json!({"record": "huge-hash"}), "not a decimal number from 0 to 2^128-1"),
        (json!({"record": "big-data"}), "record 0 is 1048579 bytes (data plus partition key), over Kinesis' limit"),
        (json!({"state_bytes": "1048577"}), "a state of 1048577 bytes, over the tenant's limit of 1048576 bytes"),
    ];
    for (settings, expected) in cases {
        patch(&world, &tenant, id, json!({"plugin_settings": settings}));
        let run = world.run_now(&tenant, id, MINUTE);
        assert_eq!(
            (run["outcome"].as_str(), run["error"]["stage"].as_str()),
            (Some("failed"), Some("transform")),
            "{run}"
        );
        let message = run["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{settings}: {message}");
        assert!(message.contains("nothing of this run was stored"), "{message}");
        let outbox = outbox(&world, &tenant, id);
        assert_eq!((&outbox["waiting"], &outbox["parked"]), (&json!([]), &json!([])), "{settings}");
        assert_eq!(world.metric("sluice_outbox_depth"), 0.0);
    }
    assert_eq!(tenant.aws.read(&arn).await.len(), 1, "only the first good run's record arrived");

    // The fixed plugin: the project's next run delivers, from the state the last good run left.
    let passthrough = world.upload(&tenant, "passthrough");
    patch(&world, &tenant, id, json!({"plugin_id": passthrough, "plugin_settings": {}}));
    let run = world.run_now(&tenant, id, MINUTE);
    assert_eq!((run["outcome"].as_str(), run["records"].as_u64()), (Some("succeeded"), Some(1)), "{run}");
    assert_eq!(tenant.aws.read(&arn).await.len(), 2);
    assert_ne!(run["scheduled_at"], state_before);
    assert_eq!(world.show(&tenant, id)["status"], "active");
}

/// Kinesis answering InvalidArgument (from the fault proxy) parks the entry instead of retrying
/// it forever: the run says so, later runs deliver, and the tenant retries or discards it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_kinesis_refuses_for_good_is_parked_and_the_tenant_decides() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let arn = tenant.aws.stream("events").await;
    let project = world.project(&tenant, "raw-output", "/plain", &arn, json!({}));
    let id = project["id"].as_str().unwrap();

    world.proxy.inject(PUT_RECORDS, Fault::InvalidArgument, 1);
    let refused = world.run_now(&tenant, id, MINUTE);
    assert_eq!((refused["outcome"].as_str(), refused["error"]["stage"].as_str()), (Some("failed"), Some("deliver")));
    let message = refused["error"]["message"].as_str().unwrap();
    let run_id = refused["id"].as_str().unwrap();
    assert!(message.contains("parked") && message.contains("InvalidArgumentException"), "{message}");
    assert!(message.contains(&format!("/v1/projects/{id}/outbox/{run_id}/retry")), "{message}");
    let parked = outbox(&world, &tenant, id)["parked"].clone();
    assert_eq!(parked.as_array().map(Vec::len), Some(1), "{parked}");
    assert_eq!((parked[0]["run_id"].as_str(), parked[0]["records"].as_u64()), (Some(run_id), Some(1)));
    assert!(parked[0]["error"].as_str().unwrap().contains("InvalidArgumentException"), "{parked}");
    assert!(usage(&world, &tenant)["disk"]["parked_bytes"].as_u64().unwrap() > 0);
    assert_eq!(world.metric("sluice_outbox_parked_total"), 1.0);

    // The parked entry does not block the project.
    let later = world.run_now(&tenant, id, MINUTE);
    assert_eq!(later["outcome"], "succeeded", "{later}");
    assert_eq!(tenant.aws.read(&arn).await.len(), 1);

    // Waiting entries are not the tenant's to retry or discard: only parked ones are.
    world.proxy.set_down("Kinesis_20131202.", true);
    let stuck = world.run_now(&tenant, id, MINUTE);
    assert_eq!(stuck["outcome"], "failed", "{stuck}");
    let stuck_id = stuck["id"].as_str().unwrap();
    let waiting = outbox(&world, &tenant, id)["waiting"].clone();
    assert_eq!(waiting[0]["run_id"].as_str(), Some(stuck_id), "{waiting}");
    let retry = |run: &str| world.call("POST", &format!("/v1/projects/{id}/outbox/{run}/retry"), &tenant.key, None);
    let discard = |run: &str| world.call("DELETE", &format!("/v1/projects/{id}/outbox/{run}"), &tenant.key, None);
    assert_eq!(retry(stuck_id).0, 409);
    assert_eq!(discard(stuck_id).0, 409);
    assert_eq!(retry("run_0000000000000000").0, 404);
    // A failure caused by an older run's records names that run.
    let next = world.run_now(&tenant, id, MINUTE);
    let message = next["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("records of run {stuck_id} from")), "{next}");
    world.proxy.set_down("Kinesis_20131202.", false);
    wait_for(MINUTE, "the waiting entries to be delivered", || {
        outbox(&world, &tenant, id)["waiting"].as_array().unwrap().is_empty().then_some(())
    });

    // Retried, the parked records go out; refused again, they are parked again, then discarded.
    let (status, after) = retry(run_id);
    assert_eq!(status, 202, "{after}");
    assert_eq!(after["parked"], json!([]));
    // Every run's record has data of its own: the later, stuck and next runs' three, then the
    // retried one.
    wait_for(MINUTE, "the retried records to arrive", || {
        let arrived = block_on(tenant.aws.read(&arn));
        let distinct: std::collections::BTreeSet<String> = arrived.into_iter().map(|(_, data)| data).collect();
        (distinct.len() == 4).then_some(())
    });
    world.proxy.inject(PUT_RECORDS, Fault::InvalidArgument, 1);
    let refused_again = world.run_now(&tenant, id, MINUTE);
    let again_id = refused_again["id"].as_str().unwrap();
    assert_eq!(outbox(&world, &tenant, id)["parked"][0]["run_id"].as_str(), Some(again_id));
    assert_eq!(discard(again_id).0, 204);
    assert_eq!(discard(again_id).0, 404);
    let disk = usage(&world, &tenant)["disk"].clone();
    assert_eq!((disk["parked_bytes"].as_u64(), disk["outbox_bytes"].as_u64()), (Some(0), Some(0)), "{disk}");
    let other = world.tenant("other", "222222222222").await;
    let (status, _) = world.call("GET", &format!("/v1/projects/{id}/outbox"), &other.key, None);
    assert_eq!(status, 404, "another tenant's project is not found");
}

/// Run history keeps a bounded tail of the plugin's log lines (and what it printed to stderr),
/// and says when the page cap cut the run short; the dry run lists the same output problems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_history_shows_the_plugins_log_lines_and_the_page_cap() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let arn = tenant.aws.stream("events").await;
    let next_url = format!("{}/plain", world.source.base);
    let settings = json!({"log_lines": "3", "next_url": next_url});
    let project =
        world.project(&tenant, "raw-output", "/plain", &arn, json!({"plugin_settings": settings, "max_pages": 2}));
    let id = project["id"].as_str().unwrap();
    let run = world.run_now(&tenant, id, MINUTE);
    assert_eq!((run["outcome"].as_str(), run["pages"].as_u64()), (Some("succeeded"), Some(2)), "{run}");
    assert_eq!(run["page_cap_reached"], true, "{run}");
    let logs = run["logs"].as_array().unwrap();
    let plugin_lines: Vec<&str> =
        logs.iter().filter(|l| l["source"] == "log").map(|l| l["message"].as_str().unwrap()).collect();
    assert_eq!(plugin_lines, ["line 1", "line 2", "line 3", "line 1", "line 2", "line 3"], "both pages: {run}");
    assert!(logs.iter().any(|l| l["source"] == "stderr" && l["message"] == "raw-output wrote 3 log lines"), "{run}");
    let note = logs.iter().find(|l| l["source"] == "host").expect("a host note");
    assert!(note["message"].as_str().unwrap().contains("page cap of 2 pages was reached"), "{note}");

    // A chatty plugin: only the tail is kept, and the dropped lines are counted.
    patch(&world, &tenant, id, json!({"plugin_settings": {"log_lines": "500"}}));
    let run = world.run_now(&tenant, id, MINUTE);
    let logs = run["logs"].as_array().unwrap();
    assert_eq!(run["page_cap_reached"], false, "{run}");
    assert!(logs.len() <= 50 && logs.iter().any(|l| l["message"] == "line 500"), "{run}");
    assert!(run["logs_dropped"].as_u64().unwrap() >= 450, "{run}");

    // The dry run applies the same checks as a run and lists what it found.
    let plugin = project["plugin_id"].as_str().unwrap();
    let body =
        json!({"response": {"body": {"text": "{}"}}, "settings": {"record": "empty-key", "state_bytes": "2000000"}});
    let (status, report) = world.call("POST", &format!("/v1/plugins/{plugin}/test"), &tenant.key, Some(body));
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["outcome"].as_str(), report["failure"]["kind"].as_str()),
        (Some("failed"), Some("invalid_output"))
    );
    let problems: Vec<&str> = report["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(problems.len(), 2, "{report}");
    assert!(problems[0].contains("partition key of 0 characters") && problems[1].contains("state of 2000000 bytes"));
}
