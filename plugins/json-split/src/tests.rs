//! Native unit tests: run with `cargo test --target x86_64-unknown-linux-gnu -p json-split`.

use super::*;

fn poll(settings: &[(&str, &str)]) -> Poll {
    Poll {
        project_id: "proj".into(),
        tenant_id: "tenant".into(),
        scheduled_at_ms: 0,
        state: None,
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn run(settings: &[(&str, &str)], body: &str) -> Result<Output, Error> {
    let response = Response { status: 200, headers: vec![], body: body.as_bytes().to_vec() };
    JsonSplit::transform(&poll(settings), response)
}

fn rejected(settings: &[(&str, &str)], body: &str) -> String {
    match run(settings, body) {
        Err(Error::Rejected(message)) => message,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn splits_top_level_array_keyed_by_project() {
    let output = run(&[], r#"[{"a": 1}, {"b": [true, null]}]"#).unwrap();
    let data: Vec<_> = output.records.iter().map(|r| r.data.as_slice()).collect();
    assert_eq!(data, [&br#"{"a":1}"#[..], br#"{"b":[true,null]}"#]);
    assert!(output.records.iter().all(|r| r.partition_key == "proj"));
    assert_eq!((output.state, output.next), (None, None));
}

#[test]
fn follows_array_path_and_keys_by_field() {
    let body = r#"{"data": {"items": [{"id": "x"}, {"id": 42}], "other": 1}}"#;
    let settings = [("array_path", "data.items"), ("partition_key_field", "id")];
    let keys: Vec<_> = run(&settings, body).unwrap().records.into_iter().map(|r| r.partition_key).collect();
    assert_eq!(keys, ["x", "42"]);
}

#[test]
fn numeric_segments_index_arrays() {
    let output = run(&[("array_path", "pages.1")], r#"{"pages": [[1], [2, 3]]}"#).unwrap();
    assert_eq!(output.records.len(), 2);
}

#[test]
fn rejects_malformed_json_with_position() {
    let message = rejected(&[], "[1, 2");
    assert!(message.starts_with("response body is not valid JSON: "), "{message}");
    assert!(message.contains("line 1 column 5"), "{message}");
}

#[test]
fn rejects_paths_that_do_not_lead_to_arrays() {
    let body = r#"{"data": {"items": {"not": "array"}}}"#;
    let message = rejected(&[("array_path", "data.items")], body);
    assert!(message.contains("\"data.items\" does not lead to an array but to an object"));
    let message = rejected(&[("array_path", "data.missing")], body);
    assert!(message.contains("data (an object) has no \"missing\""), "{message}");
    let message = rejected(&[], body);
    assert!(message.starts_with("response body is an object, not an array"), "{message}");
}

#[test]
fn rejects_elements_without_key_field_by_index() {
    let settings = [("partition_key_field", "id")];
    let message = rejected(&settings, r#"[{"id": 1}, {"name": "no id"}]"#);
    assert!(message.starts_with("element 1 has no `id` field"), "{message}");
    let message = rejected(&settings, r#"[{"id": {"nested": 1}}]"#);
    assert!(message.starts_with("element 0: `id` is an object, not a string or number"), "{message}");
    let message = rejected(&settings, r#"[{"id": ""}]"#);
    assert!(message.starts_with("element 0: `id` has 0 characters"), "{message}");
}
