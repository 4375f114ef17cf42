//! Hostile API input: schemathesis generates requests from `GET /openapi.json` and sends them to
//! the real daemon, once with a tenant key (every route but `/v1/tenants`) and once with the
//! operator token (`/v1/tenants`). Its phases, all four run in order: `examples` (the document's
//! own examples), `coverage` (boundary values and schema-violating variants of every parameter
//! and body), `fuzzing` (random requests, valid and not) and `stateful` (sequences that feed
//! one response's ids into the next request, such as create, read, change, delete).
//!
//! A run fails on a 5xx; a status, content type, header or body the document does not describe
//! for that operation; a schema-violating request the API accepts; a route that serves a
//! request without credentials or with bad ones; a method the path does not take answered with
//! anything but 405 and `Allow`; and a deleted resource that is still found, or a created one
//! that is not. `positive_data_acceptance` is left out: the document cannot say that an ARN must
//! name a stream, that a plugin must compile or that a `plugin_id` must exist, so the API
//! rightly refuses many requests that fit the schema.
//!
//! The run is bounded and deterministic: a fixed seed, a fixed number of examples per
//! operation, one worker, no example database, a timeout per request and a deadline per run. A
//! dictionary of real ids and valid values (the configuration file below) lets part of the
//! generated requests get past validation into the handlers' logic.
//!
//! schemathesis comes from PyPI; `cargo xtask test` installs the pinned release.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_tests::{ADMIN_TOKEN, Daemon, http_call, http_call_raw, http_text, plugin_bytes};

/// The checks every response goes through, as schemathesis names them.
const CHECKS: [&str; 12] = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "ignored_auth",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
];

/// The phases, in the order they run.
const PHASES: [&str; 4] = ["examples", "coverage", "fuzzing", "stateful"];

/// Test cases per operation and phase: enough to reach every branch of the validation, small
/// enough that both runs take about half a minute on two cores.
const MAX_EXAMPLES: u32 = 50;

const SEED: u32 = 6;

/// Longest a run may take before the test stops it and fails.
const DEADLINE: Duration = Duration::from_secs(90);

/// The installed schemathesis's version, or a panic that says how to install it.
fn version() -> String {
    let output = Command::new("schemathesis").arg("--version").output().unwrap_or_else(|e| {
        panic!(
            "cannot run schemathesis ({e}); `cargo xtask test` installs it, or run \
             `python3 -m pip install schemathesis==4.32.5`"
        )
    });
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.trim().rsplit(' ').next().unwrap_or_default().to_string();
    assert!(
        version.starts_with("4."),
        "this test needs schemathesis 4 (its command line and report), found {text:?}; run \
         `python3 -m pip install schemathesis==4.32.5`"
    );
    version
}

/// The data the runs start from: a tenant with a plugin and a project that uses it.
struct Arranged {
    tenant_id: String,
    key: String,
    plugin_id: String,
    project_id: String,
}

fn arrange(daemon: &Daemon) -> Arranged {
    let admin = Some(ADMIN_TOKEN);
    let (status, tenant) = daemon.call("POST", "/v1/tenants", admin, Some(r#"{"name": "fuzzed"}"#));
    assert_eq!(status, 201, "{tenant}");
    let tenant_id = tenant["id"].as_str().unwrap().to_string();
    let key = tenant["api_key"].as_str().unwrap().to_string();
    // The standard tier takes the hourly and daily schedules of the dictionary below, and enough
    // projects for the ones the runs create.
    let (status, body) =
        daemon.call("PATCH", &format!("/v1/tenants/{tenant_id}"), admin, Some(r#"{"tier": "standard"}"#));
    assert_eq!(status, 200, "{body}");
    let wasm = plugin_bytes("json-split");
    let (status, plugin) =
        http_call_raw(daemon.addr, "POST", "/v1/plugins?name=json-split", Some(&key), "application/wasm", &wasm);
    assert_eq!(status, 201, "{plugin}");
    let plugin_id = plugin["id"].as_str().unwrap().to_string();
    let project = serde_json::json!({
        "name": "fuzzed-project",
        "schedule": "rate(1 hour)",
        "source": {"url": "https://api.example.com/v1/obs"},
        "plugin_id": plugin_id,
        "target": {"stream_arn": STREAM, "role_arn": ROLE},
    });
    let (status, project) = daemon.call("POST", "/v1/projects", Some(&key), Some(&project.to_string()));
    assert_eq!(status, 201, "{project}");
    let project_id = project["id"].as_str().unwrap().to_string();
    Arranged { tenant_id, key, plugin_id, project_id }
}

const STREAM: &str = "arn:aws:kinesis:eu-central-1:222222222222:stream/fuzzed";
const ROLE: &str = "arn:aws:iam::222222222222:role/sluice-delivery";
const SECRET: &str = "arn:aws:secretsmanager:eu-central-1:222222222222:secret:fuzzed-AbCdEf";

/// schemathesis's configuration: dictionaries of real ids and valid values that a share of the
/// generated parameters and fields take instead of random ones. Projects run against AWS at a
/// closed loopback port (see `Daemon`), so the projects the runs create fail at `assume_role`
/// and never fetch their sources.
fn config(data: &Arranged) -> String {
    let Arranged { tenant_id, plugin_id, project_id, .. } = data;
    format!(
        r#"[dictionaries.ids]
values = ["{tenant_id}", "{plugin_id}", "{project_id}"]

[dictionaries.plugins]
values = ["{plugin_id}"]

[dictionaries.streams]
values = ["{STREAM}"]

[dictionaries.roles]
values = ["{ROLE}", "arn:aws:iam::222222222222:role/another"]

[dictionaries.secrets]
values = ["{SECRET}"]

[dictionaries.schedules]
values = ["rate(1 hour)", "rate(2 days)", "cron(0 12 * * ? *)", "cron(15 10 ? * MON-FRI *)", "cron(0 0 L * ? *)"]

[dictionaries.timezones]
values = ["UTC", "Europe/Berlin", "America/New_York"]

[dictionaries.urls]
values = ["https://api.example.com/v1/obs?city=berlin", "http://api.example.com/"]

# DELETE takes random ids, and real ones only from the responses of the stateful phase: were
# the arranged plugin or project deleted in an early phase, later ones would find nothing to
# create projects with or to change.
[[operations]]
exclude-method = "DELETE"
parameters = {{ "path.id" = {{ dictionary = "ids", probability = 0.5 }} }}

[[operations]]
include-method = "DELETE"
phases.examples.extra-data-sources.responses = false
phases.coverage.extra-data-sources.responses = false
phases.fuzzing.extra-data-sources.responses = false

[parameters]
"body.plugin_id" = {{ dictionary = "plugins", probability = 0.7 }}
"body.target.stream_arn" = {{ dictionary = "streams", probability = 0.7 }}
"body.target.role_arn" = {{ dictionary = "roles", probability = 0.7 }}
"body.source.api_key.secret_arn" = {{ dictionary = "secrets", probability = 0.7 }}
"body.source.url" = {{ dictionary = "urls", probability = 0.7 }}
"body.schedule" = {{ dictionary = "schedules", probability = 0.7 }}
"body.timezone" = {{ dictionary = "timezones", probability = 0.5 }}
"#
    )
}

/// One bounded run with `token` over the operations `filter` selects; panics with
/// schemathesis's own output, which names and reproduces every failure, unless it passes.
/// Returns the JSON run report.
fn run(dir: &Path, label: &str, url: &str, token: &str, filter: [&str; 2]) -> Value {
    let output_path = dir.join(format!("{label}.txt"));
    let report_path = dir.join(format!("{label}.json"));
    let output = std::fs::File::create(&output_path).unwrap();
    let mut command = Command::new("schemathesis");
    command
        .current_dir(dir)
        .arg("--config-file")
        .arg(dir.join("schemathesis.toml"))
        .args(["run", url, "--header", &format!("Authorization: Bearer {token}")])
        .args(filter)
        .args(["--phases", &PHASES.join(","), "--checks", &CHECKS.join(",")])
        .args(["--max-examples", &MAX_EXAMPLES.to_string(), "--seed", &SEED.to_string()])
        .args(["--workers", "1", "--generation-database", "none", "--request-timeout", "10"])
        // Hypothesis's health check times data generation, which a busy machine slows down.
        .args(["--suppress-health-check", "too_slow", "--no-color", "--report", "json", "--report-json-path"])
        .arg(&report_path)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output);
    let started = Instant::now();
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start schemathesis: {e}"));
    let read = || std::fs::read_to_string(&output_path).unwrap_or_default();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schemathesis ({label}) ran past {DEADLINE:?}; its output so far:\n{}", read());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "schemathesis ({label}) found problems ({status}):\n{}", read());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap())
        .unwrap_or_else(|e| panic!("schemathesis ({label}) wrote no JSON report ({e}):\n{}", read()));
    eprintln!(
        "schemathesis ({label}): {} operations, {} test cases in {:.1} s",
        report["operations"]["tested"],
        report["test_cases"]["generated"],
        started.elapsed().as_secs_f64()
    );
    report
}

/// A passing exit code says nothing if nothing was tested: every selected operation was, in
/// every phase, and none errored.
fn assert_complete(label: &str, report: &Value, operations: u64) {
    let ops = &report["operations"];
    assert_eq!(ops["selected"], operations, "{label}: the filter selects the expected operations: {ops}");
    assert_eq!(ops["tested"], operations, "{label}: every selected operation was tested: {ops}");
    assert_eq!(ops["errored"], 0, "{label}: {ops}");
    for phase in PHASES {
        assert_eq!(report["phases"][phase]["status"], "success", "{label}: phase {phase}: {}", report["phases"]);
    }
    let cases = &report["test_cases"];
    assert!(cases["generated"].as_u64().unwrap() >= operations * 20, "{label}: too few test cases: {cases}");
    assert_eq!(cases["with_failures"], 0, "{label}: {cases}");
}

#[test]
fn generated_requests_get_documented_answers_and_never_a_5xx() {
    let version = version();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("data"));
    let data = arrange(&daemon);
    std::fs::write(dir.path().join("schemathesis.toml"), config(&data)).unwrap();
    let url = format!("http://{}/openapi.json", daemon.addr);
    eprintln!("schemathesis {version} against {url}");

    // The tenant first: the operator's run may disable or delete the tenant.
    let operator_paths = "^/v1/(tenants|cluster)";
    let tenant = run(dir.path(), "tenant", &url, &data.key, ["--exclude-path-regex", operator_paths]);
    assert_complete("tenant", &tenant, 22);
    let operator = run(dir.path(), "operator", &url, ADMIN_TOKEN, ["--include-path-regex", operator_paths]);
    assert_complete("operator", &operator, 7);

    // Whatever it was sent, the daemon is still up and ready.
    assert_eq!(http_text(daemon.addr, "/readyz").0, 200);
    let (status, tenants) = http_call(daemon.addr, "GET", "/v1/tenants", Some(ADMIN_TOKEN), None);
    assert_eq!(status, 200, "{tenants}");
}
