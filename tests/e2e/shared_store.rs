//! `sluice serve` on the shared store (`[store] backend = "dynamodb"`) on moto's DynamoDB and S3,
//! as an operator runs it: two real daemons answering the API from the same data, bad settings
//! stopping the daemon with exit 64 and a message naming them, and a `kill -9` with records
//! waiting in DynamoDB that loses none of them.

use std::process::Command;

use serde_json::{Value, json};
use sluice_tests::fault_proxy::{Fault, FaultProxy};
use sluice_tests::world::{FAST, World};
use sluice_tests::{ADMIN_TOKEN, Daemon, Moto, sluice_bin};

/// The shared store's settings; `create_table` so that the first daemon makes the table.
fn shared(extra: &str) -> String {
    format!(
        "{FAST}\n[store]\nbackend = \"dynamodb\"\ntable = \"sluice\"\nbucket = \"sluice-store\"\ncreate_table = true\n{extra}"
    )
}

/// Starts a daemon on moto (through `proxy`) with `config`, in a data directory of its own.
fn daemon(proxy: &FaultProxy, config: &str) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", proxy.endpoint.clone()),
        ("SLUICE_PLATFORM_PRINCIPAL_ARN", sluice_tests::PLATFORM_PRINCIPAL.to_string()),
    ];
    (Daemon::start_configured(dir.path(), &env, config), dir)
}

fn call(daemon: &Daemon, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    daemon.call(method, path, Some(token), body.as_deref())
}

#[test]
fn two_daemons_on_one_shared_store_serve_the_same_tenants_and_projects() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    proxy.one_at_a_time();
    let (a, _a_dir) = daemon(&proxy, &shared(""));
    // The second host serves the API only, as the README says to run hosts until they share
    // projects by leases.
    let (b, _b_dir) = daemon(
        &proxy,
        &shared("[scheduler]\nenabled = false\n").replacen("[scheduler]\njitter_window_ms = 200\n", "", 1),
    );

    let (status, tenant) =
        call(&a, "POST", "/v1/tenants", ADMIN_TOKEN, Some(json!({"name": "acme", "tier": "standard"})));
    assert_eq!(status, 201, "{tenant}");
    let key = tenant["api_key"].as_str().unwrap().to_string();
    let (status, me) = call(&b, "GET", "/v1/me", &key, None);
    assert_eq!((status, me["name"].as_str()), (200, Some("acme")), "{me}");

    let wasm = std::fs::read(sluice_tests::plugins_dir().join("passthrough.wasm")).unwrap();
    let (status, plugin) = sluice_tests::http_call_raw(
        a.addr,
        "POST",
        "/v1/plugins?name=passthrough",
        Some(&key),
        "application/wasm",
        &wasm,
    );
    assert_eq!(status, 201, "{plugin}");
    let plugin_id = plugin["id"].as_str().unwrap().to_string();
    let (status, listed) = call(&b, "GET", "/v1/plugins", &key, None);
    assert_eq!((status, listed["plugins"][0]["id"].as_str()), (200, Some(plugin_id.as_str())), "{listed}");

    let body = json!({
        "name": "orders", "schedule": "rate(1 hour)", "timezone": "UTC",
        "source": {"url": "https://api.example.com/orders"}, "plugin_id": plugin_id,
        "target": {"stream_arn": "arn:aws:kinesis:eu-central-1:111111111111:stream/orders",
                   "role_arn": "arn:aws:iam::111111111111:role/sluice"},
    });
    let (status, project) = call(&b, "POST", "/v1/projects", &key, Some(body));
    assert_eq!(status, 201, "{project}");
    let path = format!("/v1/projects/{}", project["id"].as_str().unwrap());
    let (status, renamed) = call(&a, "PATCH", &path, &key, Some(json!({"name": "orders-eu"})));
    assert_eq!((status, renamed["name"].as_str()), (200, Some("orders-eu")), "{renamed}");
    let (status, seen) = call(&b, "GET", &path, &key, None);
    assert_eq!((status, seen["name"].as_str()), (200, Some("orders-eu")), "changed on A, read on B at once: {seen}");
    // B runs no scheduler, so it cannot start a run; A can.
    let (status, refused) = call(&b, "POST", &format!("{path}/run"), &key, None);
    assert_eq!(status, 503, "{refused}");
    let (status, _) = call(&b, "DELETE", &path, &key, None);
    assert_eq!(status, 204);
    let (status, _) = call(&a, "GET", &path, &key, None);
    assert_eq!(status, 404, "deleted on B, gone on A");

    // A quota reached through both hosts at once is never exceeded (free tier: 5 projects).
    let (_, small) = call(&a, "POST", "/v1/tenants", ADMIN_TOKEN, Some(json!({"name": "small", "tier": "free"})));
    let small_key = small["api_key"].as_str().unwrap().to_string();
    let (_, small_plugin) =
        sluice_tests::http_call_raw(b.addr, "POST", "/v1/plugins?name=p", Some(&small_key), "application/wasm", &wasm);
    let created: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let (addr, key, plugin) = (if i % 2 == 0 { a.addr } else { b.addr }, &small_key, &small_plugin);
                scope.spawn(move || {
                    let body = json!({
                        "name": format!("p{i}"), "schedule": "rate(1 hour)", "timezone": "UTC",
                        "source": {"url": "https://api.example.com/x"}, "plugin_id": plugin["id"],
                        "target": {"stream_arn": "arn:aws:kinesis:eu-central-1:111111111111:stream/s",
                                   "role_arn": "arn:aws:iam::111111111111:role/sluice"},
                    });
                    sluice_tests::http_call(addr, "POST", "/v1/projects", Some(key), Some(&body.to_string())).0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(created.iter().filter(|s| **s == 201).count(), 5, "{created:?}");
    assert!(created.iter().all(|s| *s == 201 || *s == 403 || *s == 429), "{created:?}");
    let (_, listed) = call(&b, "GET", "/v1/projects", &small_key, None);
    assert_eq!(listed["projects"].as_array().map(Vec::len), Some(5), "{listed}");
}

/// Runs `sluice serve` with `config` until it exits (it must: the settings are bad).
fn serve_fails(proxy: &FaultProxy, config: &str, region: &str) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(sluice_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SLUICE_DATA_DIR", dir.path())
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .env("SLUICE_PLATFORM_PRINCIPAL_ARN", sluice_tests::PLATFORM_PRINCIPAL)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("AWS_REGION", region)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), out.stdout.is_empty())
}

#[test]
fn bad_shared_store_settings_stop_the_daemon_with_64_naming_them() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.endpoint);
    proxy.one_at_a_time();
    let base = "[store]\nbackend = \"dynamodb\"\ntable = \"sluice\"\nbucket = \"sluice-store\"\n";

    let (code, stderr, unbound) =
        serve_fails(&proxy, "[store]\nbackend = \"dynamodb\"\nbucket = \"b\"\n", "eu-central-1");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("store.table") && stderr.contains("required"), "{stderr}");
    assert!(unbound, "nothing was bound");

    let (code, stderr, unbound) = serve_fails(&proxy, base, "eu-central-1");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("store.table") && stderr.contains("does not exist in region eu-central-1"), "{stderr}");
    assert!(unbound);

    // Created in one region, looked for in another.
    let (mut a, _dir) = daemon(&proxy, &shared(""));
    a.terminate();
    let (code, stderr, _) = serve_fails(&proxy, base, "us-west-2");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("does not exist in region us-west-2") && stderr.contains("AWS_REGION"), "{stderr}");

    // The table is there, but the host may not read it.
    proxy.inject("DynamoDB_20120810.DescribeTable", Fault::AccessDenied, 1);
    let (code, stderr, _) = serve_fails(&proxy, base, "eu-central-1");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("dynamodb:DescribeTable") && stderr.contains("AccessDenied"), "{stderr}");

    let (code, stderr, _) = serve_fails(&proxy, &base.replace("sluice-store", "no-such-bucket"), "eu-central-1");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("store.bucket") && stderr.contains("no-such-bucket does not exist"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_records_waiting_in_dynamodb_loses_none_of_them() {
    let config = shared("");
    let mut world = World::start_configured(true, &config, &[]);
    world.proxy.one_at_a_time();
    let tenant = world.tenant("acme", "111111111111").await;
    let (id, arn) = world.leave_records_waiting(&tenant).await;
    assert_eq!(world.metric("sluice_outbox_depth"), 1.0);
    world.kill();

    // A new host on a new machine: nothing of the old one but the shared store.
    world.proxy.set_down("Kinesis_20131202.", false);
    world.dir = tempfile::tempdir().unwrap();
    world.restart_with(&config, &[]);
    world.expect_waiting_records_delivered_once(&tenant, &id, &arn);
}

/// Runs `sluice store <args>` with `config` and moto's environment; returns the exit code and
/// stderr.
fn store_command(proxy: &FaultProxy, data_dir: &std::path::Path, config: &str, args: &[&str]) -> (i32, String) {
    let path = data_dir.join("store-command.toml");
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&path, config).unwrap();
    let out = Command::new(sluice_bin())
        .args(["store"])
        .args(args)
        .arg("--config")
        .arg(&path)
        .env("SLUICE_DATA_DIR", data_dir)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("AWS_REGION", "eu-central-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("SLUICE_ADMIN_TOKEN")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_host_moves_into_the_shared_store_with_its_waiting_records_and_state() {
    // A single host on sled, killed with records waiting for Kinesis.
    let mut world = World::start();
    world.proxy.one_at_a_time();
    let tenant = world.tenant("acme", "111111111111").await;
    let (id, arn) = world.leave_records_waiting(&tenant).await;
    world.kill();

    // Export from sled, import into the shared store (created by the import's settings).
    let file = world.dir.path().join("move.jsonl");
    let out = file.to_str().unwrap();
    let (code, stderr) = store_command(&world.proxy, world.dir.path(), FAST, &["export", "--out", out]);
    assert_eq!(code, 0, "{stderr}");
    let dynamo = shared("");
    let scratch = tempfile::tempdir().unwrap();
    let (code, stderr) = store_command(&world.proxy, scratch.path(), &dynamo, &["import", "--from", out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("imported into table sluice and bucket sluice-store") && stderr.contains("1 outbox entries"),
        "{stderr}"
    );
    let (code, stderr) = store_command(&world.proxy, scratch.path(), &dynamo, &["import", "--from", out]);
    assert_eq!(code, 64, "a second import into the filled table is refused: {stderr}");
    assert!(stderr.contains("already holds tenants"), "{stderr}");

    // A host on the shared store delivers what waited, once, and goes on from the moved state.
    world.proxy.set_down("Kinesis_20131202.", false);
    world.dir = tempfile::tempdir().unwrap();
    world.restart_with(&dynamo, &[]);
    world.expect_waiting_records_delivered_once(&tenant, &id, &arn);

    // And back out: the shared store exports as the embedded one does.
    world.kill();
    let back = world.dir.path().join("back.jsonl");
    let (code, stderr) =
        store_command(&world.proxy, scratch.path(), &dynamo, &["export", "--out", back.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("1 tenants") && stderr.contains("1 projects") && stderr.contains("1 components"),
        "{stderr}"
    );
    let fresh = tempfile::tempdir().unwrap();
    let (code, stderr) = store_command(&world.proxy, fresh.path(), FAST, &["import", "--from", back.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
}

/// What one run costs on the shared store, in DynamoDB write requests, when nothing else runs
/// beside it: counted at the proxy over ten manual runs, one after the other, that each deliver
/// records and commit a state. A lone run shares no batch, so this is the committer's worst case;
/// `dynamo_store::writes_handed_over_together_share_transactions_and_all_land` shows what runs
/// handed over together cost, and BENCHMARKS.md a fleet's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_the_shared_store_makes_a_bounded_number_of_write_requests() {
    let world = World::start_configured(true, &shared(""), &[]);
    world.proxy.one_at_a_time();
    let tenant = world.tenant("acme", "111111111111").await;
    let arn = tenant.aws.stream("events").await;
    let project = world.project(&tenant, "incremental", "/items", &arn, serde_json::json!({}));
    let id = project["id"].as_str().unwrap().to_string();
    world.wait_ready();
    world.source.add_items(0..2);
    world.run_now(&tenant, &id, std::time::Duration::from_secs(60));
    let before = world.proxy.counts_of("DynamoDB_20120810.");
    const RUNS: u32 = 10;
    for n in 0..RUNS {
        world.source.add_items(2 + 2 * n..4 + 2 * n);
        let run = world.run_now(&tenant, &id, std::time::Duration::from_secs(60));
        assert_eq!(run["outcome"], "succeeded", "{run}");
    }
    // The last run's history goes out without the run waiting for it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = world.proxy.counts_of("DynamoDB_20120810.");
    let per_run: Vec<(String, f64)> = after
        .iter()
        .map(|(op, n)| {
            (
                op.trim_start_matches("DynamoDB_20120810.").to_string(),
                (n - before.get(op).copied().unwrap_or(0)) as f64 / RUNS as f64,
            )
        })
        .filter(|(_, n)| *n > 0.0)
        .collect();
    eprintln!("DynamoDB requests per run (reads include the test's own polling of the run history): {per_run:?}");
    let writes: f64 = per_run
        .iter()
        .filter(|(op, _)| {
            ["TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"].contains(&op.as_str())
        })
        .map(|(_, n)| n)
        .sum();
    // A run Kinesis takes at once writes no outbox entry: its state (one transaction, with the
    // usage counters when they are due), its history (held up to a second, so sometimes with the
    // next run's) and its usage (carried by the next run's transaction, or one update).
    assert!(writes <= 3.0, "{writes} write requests per run: {per_run:?}");
}
