//! Native unit tests: run with `cargo test --target x86_64-unknown-linux-gnu -p incremental`.

use super::*;
use sluice_plugin::serde_json::{self, json};

const RUN: u64 = 1_700_000_000_000;

fn poll(state: Option<Value>, settings: &[(&str, &str)]) -> Poll {
    Poll {
        project_id: "proj".into(),
        tenant_id: "tenant".into(),
        scheduled_at_ms: RUN,
        state: state.map(|s| serde_json::to_vec(&s).unwrap()),
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn transform(poll: &Poll, body: Value) -> Result<Output, Error> {
    let body = serde_json::to_vec(&body).unwrap();
    Incremental::transform(poll, Response { status: 200, headers: vec![], body })
}

fn state_of(output: &Output) -> Option<Value> {
    output.state.as_ref().map(|s| serde_json::from_slice(s).unwrap())
}

fn ids(output: &Output) -> Vec<&str> {
    output.records.iter().map(|r| r.partition_key.as_str()).collect()
}

#[test]
fn prepare_adds_since_only_with_a_cursor_on_the_first_page() {
    let request = Request::get("https://api.example.com/items?limit=10");
    let fresh = Incremental::prepare(&poll(None, &[]), request.clone()).unwrap();
    assert_eq!(fresh.url, request.url);

    let stored = poll(Some(json!({"cursor": "2024-01-01T00:00:00Z"})), &[]);
    let first = Incremental::prepare(&stored, request.clone()).unwrap();
    assert_eq!(first.url, "https://api.example.com/items?limit=10&since=2024-01-01T00%3A00%3A00Z");

    let renamed = poll(Some(json!({"cursor": "c"})), &[("since_param", "after")]);
    assert_eq!(Incremental::prepare(&renamed, request.clone()).unwrap().query("after").unwrap(), "c");

    let later = poll(Some(json!({"cursor": "d", "run": {"scheduled_at_ms": RUN, "since": "c"}})), &[]);
    assert_eq!(Incremental::prepare(&later, request.clone()).unwrap().url, request.url);
}

#[test]
fn first_run_delivers_everything_and_stores_newest_cursor() {
    let body = json!({"items": [
        {"id": 1, "updated_at": "2024-01-02"},
        {"id": "b", "updated_at": "2024-01-03"},
        {"id": 3, "updated_at": "2024-01-01"},
    ], "next": null});
    let output = transform(&poll(None, &[]), body).unwrap();
    assert_eq!(ids(&output), ["1", "b", "3"]);
    assert_eq!(output.records[0].data, br#"{"id":1,"updated_at":"2024-01-02"}"#);
    assert_eq!(state_of(&output), Some(json!({"cursor": "2024-01-03"})));
    assert_eq!(output.next, None);
}

#[test]
fn later_run_delivers_only_newer_items() {
    let body = json!({"items": [
        {"id": 1, "updated_at": "2024-01-02"},
        {"id": 2, "updated_at": "2024-01-04"},
    ]});
    let output = transform(&poll(Some(json!({"cursor": "2024-01-02"})), &[]), body).unwrap();
    assert_eq!(ids(&output), ["2"]);
    assert_eq!(state_of(&output), Some(json!({"cursor": "2024-01-04"})));
}

#[test]
fn nothing_newer_keeps_the_state() {
    let body = json!({"items": [{"id": 1, "updated_at": "2024-01-02"}]});
    let output = transform(&poll(Some(json!({"cursor": "2024-01-02"})), &[]), body).unwrap();
    assert!(output.records.is_empty());
    assert_eq!(output.state, None);
}

#[test]
fn pages_compare_against_the_cursor_the_run_started_from() {
    // A newest-first source: page 1 moves the cursor past everything on page 2.
    let first = poll(Some(json!({"cursor": "2024-01-01"})), &[("cursor_field", "modified")]);
    let page1 = json!({"items": [{"id": 9, "modified": "2024-01-09"}],
                       "next": "https://api.example.com/items?page=2"});
    let output = transform(&first, page1).unwrap();
    assert_eq!(output.next.as_ref().unwrap().url, "https://api.example.com/items?page=2");
    assert_eq!(output.next.as_ref().unwrap().method, "GET");
    let state = state_of(&output).unwrap();
    assert_eq!(state, json!({"cursor": "2024-01-09", "run": {"scheduled_at_ms": RUN, "since": "2024-01-01"}}));

    let second = poll(Some(state), &[("cursor_field", "modified")]);
    let page2 = json!({"items": [{"id": 5, "modified": "2024-01-05"}, {"id": 0, "modified": "2023-12-31"}]});
    let output = transform(&second, page2).unwrap();
    assert_eq!(ids(&output), ["5"]);
    // Nothing newer than page 1's cursor, but the last page still clears the run mark.
    assert_eq!(state_of(&output), Some(json!({"cursor": "2024-01-09"})));
}

#[test]
fn rejects_bad_items_and_relative_next_links() {
    let reject = |body: Value| match transform(&poll(None, &[]), body) {
        Err(Error::Rejected(message)) => message,
        other => panic!("expected a rejection, got {other:?}"),
    };
    let message = reject(json!({"items": [{"id": 1, "updated_at": 5}]}));
    assert!(message.starts_with("item 0 has no string `updated_at`"), "{message}");
    let message = reject(json!({"items": [{"updated_at": "x"}]}));
    assert!(message.starts_with("item 0 has no usable `id`"), "{message}");
    let message = reject(json!({"items": [], "next": "/items?page=2"}));
    assert!(message.contains("not an absolute URL"), "{message}");
    let message = reject(json!({"data": []}));
    assert!(message.contains("missing field `items`"), "{message}");
}
