//! The example plugins do what their docs say, through the real runtime.

use serde_json::{Value, json};
use sluice::runtime::{CallError, Limits, Output, Poll, Request};
use sluice_tests::{load, poll, response, shared_runtime};

async fn transform(name: &str, poll: &Poll, body: &str) -> Result<Output, CallError> {
    let runtime = shared_runtime();
    let plugin = load(runtime, name);
    runtime.transform(&plugin, &Limits::default(), poll, &response(body)).await.result
}

fn data(output: &Output) -> Vec<Value> {
    output.records.iter().map(|r| serde_json::from_slice(&r.data).expect("records are JSON")).collect()
}

fn keys(output: &Output) -> Vec<&str> {
    output.records.iter().map(|r| r.partition_key.as_str()).collect()
}

#[tokio::test]
async fn passthrough_sends_the_whole_body_keyed_by_project() {
    let body = r#"{"temperature": 21.5}"#;
    let output = transform("passthrough", &poll(&[]), body).await.unwrap();
    assert_eq!(output.records.len(), 1);
    assert_eq!(output.records[0].data, body.as_bytes());
    assert_eq!(output.records[0].partition_key, "p-1");
    assert_eq!(output.state, None);
    assert!(output.next.is_none());
}

#[tokio::test]
async fn json_split_makes_one_record_per_element_keyed_by_a_field() {
    let body = r#"[{"id": "a", "v": 1}, {"id": 7, "v": 2}]"#;
    let output = transform("json-split", &poll(&[("partition_key_field", "id")]), body).await.unwrap();
    assert_eq!(data(&output), vec![json!({"id": "a", "v": 1}), json!({"id": 7, "v": 2})]);
    assert_eq!(keys(&output), vec!["a", "7"]);
}

#[tokio::test]
async fn json_split_follows_the_array_path() {
    let body = r#"{"data": {"items": [{"id": "x"}, {"id": "y"}]}}"#;
    let settings = [("array_path", "data.items"), ("partition_key_field", "id")];
    let output = transform("json-split", &poll(&settings), body).await.unwrap();
    assert_eq!(keys(&output), vec!["x", "y"]);
}

#[tokio::test]
async fn json_split_without_a_key_field_keys_by_project() {
    let output = transform("json-split", &poll(&[]), "[1, 2, 3]").await.unwrap();
    assert_eq!(keys(&output), vec!["p-1", "p-1", "p-1"]);
}

#[tokio::test]
async fn json_split_rejects_bad_input_naming_the_problem() {
    let malformed = transform("json-split", &poll(&[]), r#"[{"id": 1},"#).await.unwrap_err();
    match malformed {
        CallError::Rejected(message) => assert!(message.contains("line 1"), "{message}"),
        other => panic!("expected rejected, got {other:?}"),
    }
    let not_array = transform("json-split", &poll(&[("array_path", "data")]), r#"{"data": 5}"#).await.unwrap_err();
    match not_array {
        CallError::Rejected(message) => assert!(message.contains("data"), "{message}"),
        other => panic!("expected rejected, got {other:?}"),
    }
    let missing =
        transform("json-split", &poll(&[("partition_key_field", "id")]), r#"[{"id": 1}, {"x": 2}]"#).await.unwrap_err();
    match missing {
        CallError::Rejected(message) => assert!(message.contains('1') && message.contains("id"), "{message}"),
        other => panic!("expected rejected, got {other:?}"),
    }
}

async fn prepare(poll: &Poll, url: &str) -> Request {
    let runtime = shared_runtime();
    let plugin = load(runtime, "incremental");
    let request = Request { method: "GET".into(), url: url.into(), headers: vec![], body: None };
    runtime.prepare(&plugin, &Limits::default(), poll, &request).await.result.unwrap()
}

fn with_state(mut poll: Poll, state: Option<Vec<u8>>) -> Poll {
    poll.state = state;
    poll
}

#[tokio::test]
async fn incremental_keeps_a_cursor_and_follows_pages() {
    let first_run = poll(&[]);
    // Without a cursor the request goes out as configured.
    let request = prepare(&first_run, "http://api.test/items?limit=2").await;
    assert_eq!(request.url, "http://api.test/items?limit=2");

    // Page one: both items are new; the cursor moves to the newest; a next page is requested.
    let page_one = json!({
        "items": [{"id": "a", "updated_at": "2026-01-01T00:00:00Z"}, {"id": "b", "updated_at": "2026-01-02T00:00:00Z"}],
        "next": "http://api.test/items?limit=2&page=2",
    });
    let output = transform("incremental", &first_run, &page_one.to_string()).await.unwrap();
    assert_eq!(keys(&output), vec!["a", "b"]);
    let state = output.state.clone().expect("a new cursor");
    // Mid-run state also remembers where the run started (see the plugin's docs); the cursor is
    // what matters here.
    assert_eq!(serde_json::from_slice::<Value>(&state).unwrap()["cursor"], "2026-01-02T00:00:00Z");
    let next = output.next.expect("a next page");
    assert_eq!(next.url, "http://api.test/items?limit=2&page=2");

    // Page two sees page one's state; its last page has no next link.
    let page_two = json!({"items": [{"id": "c", "updated_at": "2026-01-03T00:00:00Z"}], "next": null});
    let second_page = with_state(first_run.clone(), Some(state));
    let output = transform("incremental", &second_page, &page_two.to_string()).await.unwrap();
    assert_eq!(keys(&output), vec!["c"]);
    assert!(output.next.is_none());
    let state = output.state.expect("the cursor moved again");

    // The next run asks only for what is newer, and drops items it has already seen.
    let next_run = with_state(first_run, Some(state));
    let request = prepare(&next_run, "http://api.test/items?limit=2").await;
    assert_eq!(request.url, "http://api.test/items?limit=2&since=2026-01-03T00%3A00%3A00Z");
    let overlap = json!({
        "items": [{"id": "c", "updated_at": "2026-01-03T00:00:00Z"}, {"id": "d", "updated_at": "2026-01-04T00:00:00Z"}],
        "next": null,
    });
    let output = transform("incremental", &next_run, &overlap.to_string()).await.unwrap();
    assert_eq!(keys(&output), vec!["d"]);

    // Nothing newer: no records, and the state is left as it is.
    let nothing_new = json!({"items": [{"id": "c", "updated_at": "2026-01-03T00:00:00Z"}], "next": null});
    let output = transform("incremental", &next_run, &nothing_new.to_string()).await.unwrap();
    assert!(output.records.is_empty());
    assert_eq!(output.state, None);
}
