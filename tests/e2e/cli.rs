//! `sluice plugin test`, run as a plugin author would run it.

use std::process::Command;

use serde_json::Value;
use sluice_tests::{plugin_path, sluice_bin};

/// Runs `sluice plugin test` with `args`: its exit code, stdout and stderr.
pub(crate) fn plugin_test(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(sluice_bin()).args(["plugin", "test"]).args(args).output().expect("sluice runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn prints_records_state_and_logs_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, r#"[{"id": "a"}, {"id": "b"}]"#).unwrap();
    let (code, stdout, stderr) = plugin_test(&[
        &plugin_path("json_split"),
        "--response",
        body.to_str().unwrap(),
        "--setting",
        "partition_key_field=id",
        "--json",
    ]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let records = report["transform"]["ok"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["partition_key"], "a");
    assert_eq!(records[0]["data"]["text"], r#"{"id":"a"}"#);
    assert!(report["plugin"]["id"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn runs_prepare_with_state_and_prints_text() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, r#"{"items": [{"id": "n", "updated_at": "2026-02-01"}], "next": null}"#).unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(&state, r#"{"cursor": "2026-01-01"}"#).unwrap();
    let (code, stdout, stderr) = plugin_test(&[
        &plugin_path("incremental"),
        "--response",
        body.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--url",
        "http://api.test/items",
    ]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("request  GET http://api.test/items?since=2026-01-01"), "{stdout}");
    assert!(stdout.contains("records  1"), "{stdout}");
    assert!(stdout.contains(r#"state    {"cursor":"2026-02-01"}"#), "{stdout}");
}

#[test]
fn a_failing_plugin_exits_1_with_the_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, "").unwrap();
    let (code, stdout, _) = plugin_test(&[
        &plugin_path("hostile"),
        "--response",
        body.to_str().unwrap(),
        "--setting",
        "mode=busy-loop",
        "--deadline-ms",
        "300",
        // Far enough that a loaded machine cannot end the busy loop on the wall clock instead.
        "--wall-deadline-ms",
        "60000",
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("plugin used its 300 ms of CPU time"), "{stdout}");
}

#[test]
fn an_invalid_component_exits_65_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, "").unwrap();
    let (code, _, stderr) = plugin_test(&[&plugin_path("foreign_import"), "--response", body.to_str().unwrap()]);
    assert_eq!(code, 65, "{stderr}");
    assert!(stderr.contains("fixture:evil/exfil"), "{stderr}");
    let (code, _, stderr) = plugin_test(&["/nonexistent.wasm", "--response", body.to_str().unwrap()]);
    assert_eq!(code, 65);
    assert!(stderr.contains("cannot read the component /nonexistent.wasm"), "{stderr}");
}

/// The checks a run applies before storing anything: records Kinesis would refuse and a state
/// over the tenant's limit make the dry run fail, listing each problem.
#[test]
fn output_a_run_could_not_store_fails_with_each_problem_listed() {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, "{}").unwrap();
    let path = body.to_str().unwrap();
    let bad = ["--setting", "record=long-key", "--setting", "state_bytes=70000", "--max-state-bytes", "65536"];
    let (code, stdout, stderr) =
        plugin_test(&[&[plugin_path("raw_output").as_str(), "--response", path][..], &bad].concat());
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("checks     failed: a run would store nothing of this output"), "{stdout}");
    assert!(stdout.contains("record 0 has a partition key of 257 characters"), "{stdout}");
    assert!(stdout.contains("a state of 70000 bytes, over the tenant's limit of 65536 bytes"), "{stdout}");

    let (code, stdout, _) = plugin_test(&[&plugin_path("raw_output"), "--response", path, "--json"]);
    assert_eq!(code, 0, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["checks"], serde_json::json!({"ok": true, "problems": []}));
}
