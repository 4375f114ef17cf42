//! The Python SDK and examples (`plugins/python/`, built by `cargo xtask plugins` as
//! `py_<name>.wasm`): through the real runtime they return exactly what the Rust examples return,
//! and they go the whole way a tenant's plugin goes: `sluice plugin test`, upload, a project
//! delivering to Kinesis on moto, and a cursor kept in state across runs.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::runtime::{CallError, Limits, Output, Plugin, Poll, Request};
use sluice_tests::world::World;
use sluice_tests::{load, plugin_path, poll, response, shared_runtime};

/// The plugin `name`, compiled once for the whole binary: a Python component takes seconds to
/// compile, and these tests call each one many times.
fn plugin(name: &str) -> Plugin {
    static LOADED: OnceLock<Mutex<HashMap<String, Plugin>>> = OnceLock::new();
    let mut loaded = LOADED.get_or_init(Default::default).lock().unwrap();
    loaded.entry(name.to_string()).or_insert_with(|| load(shared_runtime(), name)).clone()
}

async fn transform(name: &str, poll: &Poll, body: &str) -> Result<Output, CallError> {
    let runtime = shared_runtime();
    let plugin = plugin(name);
    runtime.transform(&plugin, &Limits::default(), poll, &response(body)).await.result
}

async fn prepare(name: &str, poll: &Poll, url: &str) -> Result<Request, CallError> {
    let runtime = shared_runtime();
    let plugin = plugin(name);
    let request = Request { method: "GET".into(), url: url.into(), headers: vec![], body: None };
    runtime.prepare(&plugin, &Limits::default(), poll, &request).await.result
}

/// Runs `transform` of the Rust plugin `name` and of its Python twin on the same input, and
/// returns both results.
async fn both(name: &str, poll: &Poll, body: &str) -> (Result<Output, CallError>, Result<Output, CallError>) {
    (transform(name, poll, body).await, transform(&format!("py-{name}"), poll, body).await)
}

/// Asserts that both results are the same output, and returns it.
fn same(name: &str, (rust, python): (Result<Output, CallError>, Result<Output, CallError>)) -> Output {
    let rust = rust.unwrap_or_else(|e| panic!("rust {name}: {e}"));
    assert_eq!(python, Ok(rust.clone()), "py-{name} differs from {name}");
    rust
}

/// Asserts that both results are rejections, and returns the two messages.
fn both_rejected((rust, python): (Result<Output, CallError>, Result<Output, CallError>)) -> (String, String) {
    match (rust, python) {
        (Err(CallError::Rejected(rust)), Err(CallError::Rejected(python))) => (rust, python),
        other => panic!("expected two rejections, got {other:?}"),
    }
}

#[tokio::test]
async fn passthrough_in_python_returns_what_the_rust_one_returns() {
    let output = same("passthrough", both("passthrough", &poll(&[]), r#"{"temperature": 21.5}"#).await);
    assert_eq!(output.records.len(), 1);
    assert_eq!(output.records[0].data, br#"{"temperature": 21.5}"#);
    assert_eq!(output.records[0].partition_key, "p-1");
    // A body over Kinesis' 1 MiB record limit is rejected by both, with the same advice.
    let big = "x".repeat(1024 * 1024 + 1);
    let (rust, python) = both_rejected(both("passthrough", &poll(&[]), &big).await);
    assert_eq!(python, rust);
}

#[tokio::test]
async fn json_split_in_python_returns_what_the_rust_one_returns() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("partition_key_field", "id")], r#"[{"id": "a", "v": 1}, {"v": 2, "id": 7, "b": [true, null]}]"#),
        (&[("array_path", "data.items"), ("partition_key_field", "id")], r#"{"data": {"items": [{"id": "x"}]}}"#),
        (&[("array_path", "pages.1")], r#"{"pages": [[1], [2.5, "é", {"z": 1, "a": 2}]]}"#),
        (&[], "[1, 2, 3]"),
        (&[], "[]"),
    ];
    for (settings, body) in cases {
        let output = same("json-split", both("json-split", &poll(settings), body).await);
        assert!(output.state.is_none() && output.next.is_none());
    }
    let output = same("json-split", both("json-split", &poll(&[("partition_key_field", "id")]), cases[0].1).await);
    let data: Vec<&[u8]> = output.records.iter().map(|r| r.data.as_slice()).collect();
    // Compact JSON with the keys in order, as serde_json writes it.
    assert_eq!(data, [&br#"{"id":"a","v":1}"#[..], br#"{"b":[true,null],"id":7,"v":2}"#]);

    // The same rejections, word for word, except where the JSON parsers word their position.
    let rejected: [(&[(&str, &str)], &str); 5] = [
        (&[("array_path", "data")], r#"{"data": 5}"#),
        (&[("array_path", "data.missing")], r#"{"data": {}}"#),
        (&[], r#"{"a": 1}"#),
        (&[("partition_key_field", "id")], r#"[{"id": 1}, {"x": 2}]"#),
        (&[("partition_key_field", "id")], r#"[{"id": false}]"#),
    ];
    for (settings, body) in rejected {
        let (rust, python) = both_rejected(both("json-split", &poll(settings), body).await);
        assert_eq!(python, rust, "{body}");
    }
    let (rust, python) = both_rejected(both("json-split", &poll(&[]), r#"[{"id": 1},"#).await);
    assert!(rust.starts_with("response body is not valid JSON: "), "{rust}");
    assert!(python.starts_with("response body is not valid JSON: ") && python.contains("line 1"), "{python}");
}

fn with_state(mut poll: Poll, state: Option<Vec<u8>>) -> Poll {
    poll.state = state;
    poll
}

/// The Rust `incremental` test's sequence, run through both: the same requests, records and
/// state bytes at every step, so a project can switch between them without a reset.
#[tokio::test]
async fn incremental_in_python_keeps_the_same_cursor_as_the_rust_one() {
    let first_run = poll(&[]);
    let url = "http://api.test/items?limit=2";
    assert_eq!(prepare("py-incremental", &first_run, url).await.unwrap().url, url);
    let page_one = json!({
        "items": [{"id": "a", "updated_at": "2026-01-01T00:00:00Z"}, {"id": 2, "updated_at": "2026-01-02T00:00:00Z"}],
        "next": "http://api.test/items?limit=2&page=2",
    });
    let output = same("incremental", both("incremental", &first_run, &page_one.to_string()).await);
    assert!(output.next.is_some());
    let page_two = json!({"items": [{"id": "c", "updated_at": "2026-01-03T00:00:00Z"}], "next": null});
    let second_page = with_state(first_run.clone(), output.state);
    let output = same("incremental", both("incremental", &second_page, &page_two.to_string()).await);
    assert_eq!(output.state.as_deref(), Some(&br#"{"cursor":"2026-01-03T00:00:00Z"}"#[..]));

    let next_run = with_state(first_run, output.state);
    let rust = prepare("incremental", &next_run, url).await.unwrap();
    assert_eq!(prepare("py-incremental", &next_run, url).await.unwrap(), rust);
    assert_eq!(rust.url, "http://api.test/items?limit=2&since=2026-01-03T00%3A00%3A00Z");
    let overlap = json!({
        "items": [{"id": "c", "updated_at": "2026-01-03T00:00:00Z"}, {"id": "d", "updated_at": "2026-01-04T00:00:00Z"}],
        "next": null,
    });
    let output = same("incremental", both("incremental", &next_run, &overlap.to_string()).await);
    assert_eq!(output.records.len(), 1);
    let nothing_new = json!({"items": [{"id": "c", "updated_at": "2026-01-03T00:00:00Z"}]});
    let output = same("incremental", both("incremental", &next_run, &nothing_new.to_string()).await);
    assert_eq!((output.records.len(), output.state), (0, None));
    let (rust, python) = both_rejected(both("incremental", &next_run, r#"{"items": [{"id": "e"}]}"#).await);
    assert_eq!(python, rust);
}

#[test]
fn plugin_test_runs_the_python_examples_with_state() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, r#"{"items": [{"id": "n", "updated_at": "2026-02-01"}], "next": null}"#).unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, r#"{"cursor": "2026-01-01"}"#).unwrap();
    let (code, stdout, stderr) = super::cli::plugin_test(&[
        &plugin_path("py_incremental"),
        "--response",
        body.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--url",
        "http://api.test/items",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["prepare"]["ok"]["url"], "http://api.test/items?since=2026-01-01", "{report}");
    let records = report["transform"]["ok"]["records"].as_array().unwrap();
    assert_eq!((records.len(), &records[0]["partition_key"]), (1, &json!("n")), "{report}");
    assert_eq!(report["transform"]["ok"]["state"]["text"], r#"{"cursor":"2026-02-01"}"#, "{report}");
    assert_eq!(report["checks"]["ok"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_plugins_deliver_to_kinesis_and_keep_a_cursor_across_runs() {
    let world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    world.source.add_items(0..250);
    world.source.set_page_size(100);
    let source = |path: &str| json!({"url": format!("{}{path}", world.source.base)});

    // The upload compiles the component before answering; an 18 MiB Python one takes seconds.
    let started = Instant::now();
    world.upload(&tenant, "py-incremental");
    eprintln!("py-incremental: uploaded and ready in {:.1} s", started.elapsed().as_secs_f64());

    let split_arn = tenant.aws.stream("py-split").await;
    let incr_arn = tenant.aws.stream("py-incremental").await;
    let settings = json!({"array_path": "items", "partition_key_field": "id"});
    let split = world.project(
        &tenant,
        "py-json-split",
        "/items",
        &split_arn,
        json!({"source": source("/items"), "plugin_settings": settings}),
    );
    let incr = world.project(&tenant, "py-incremental", "/items", &incr_arn, json!({"source": source("/items")}));
    let minute = Duration::from_secs(60);
    for project in [&split, &incr] {
        let run = world.run_now(&tenant, project["id"].as_str().unwrap(), minute);
        assert_eq!(run["outcome"], "succeeded", "{run}");
    }

    // json-split: one record per element of the first page, keyed by `id`.
    let records = tenant.aws.read(&split_arn).await;
    assert_eq!(records.len(), 100);
    assert!(records.iter().all(|(key, data)| data.contains(&format!("\"id\":\"{key}\""))), "{records:?}");
    // incremental: every page of the run, and the cursor committed after delivery.
    let incr_id = incr["id"].as_str().unwrap();
    assert_eq!(tenant.aws.read(&incr_arn).await.len(), 250);
    let runs = world.runs(&tenant, incr_id);
    assert_eq!((runs[0]["pages"].as_u64(), runs[0]["records"].as_u64()), (Some(3), Some(250)), "{}", runs[0]);

    // The next run asks only for what is newer than the committed cursor, and gets only that.
    world.source.add_items(250..260);
    let run = world.run_now(&tenant, incr_id, minute);
    assert_eq!((run["outcome"].as_str(), run["records"].as_u64()), (Some("succeeded"), Some(10)), "{run}");
    let last = world.source.seen().into_iter().rev().find(|s| s.path == "/items").unwrap();
    assert_eq!(last.query.get("since").map(String::as_str), Some("2026-01-01T00:00:00.249Z"));
    let records = tenant.aws.read(&incr_arn).await;
    let ids: std::collections::BTreeSet<String> = records
        .iter()
        .map(|(_, data)| serde_json::from_str::<Value>(data).unwrap()["id"].as_str().unwrap().into())
        .collect();
    assert_eq!((records.len(), ids.len()), (260, 260), "no duplicates without faults");
}
