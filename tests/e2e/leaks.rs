//! Issued API keys and secret values never appear in logs, run history, metrics, error messages
//! or the console's public page. Runs here fail in the ways most likely to repeat a key: a source
//! that refuses it and echoes it, in an error body, a `WWW-Authenticate` header, a redirect or a
//! next-page link, with the key in a header or in the query; secrets that cannot be used; a
//! plugin's error; AWS denying the role, the secret or the stream. Then everything the daemon
//! says is scanned.
//!
//! The rest of the suite is scanned too: every `Daemon` checks its log and `/metrics` when
//! dropped, and every API response the helpers read is checked, for every registered secret
//! (see `sluice_tests::register_secret`).

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::fault_proxy::Fault;
use sluice_tests::world::{FAST, Tenant, World};
use sluice_tests::{ADMIN_TOKEN, canary, http_text, leaked_secrets, wire_log_lines};

/// One way to fail: the project's source path (or URL), where the key goes, and the stage the
/// run must fail in, so that a scenario that stopped doing what it says is noticed.
struct Case {
    name: &'static str,
    path: String,
    api_key: Value,
    plugin: &'static str,
    stage: &'static str,
}

fn case(name: &'static str, path: &str, api_key: Value, stage: &'static str) -> Case {
    Case { name, path: path.to_string(), api_key, plugin: "incremental", stage }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_secret_values_never_reach_logs_history_metrics_or_errors() {
    // Every crate at trace: the most the operator can ask the daemon to say. The AWS SDK and the
    // HTTP clients print whole requests and responses at trace, secrets included, unless the
    // daemon holds them at debug as it does.
    let config = format!("{FAST}\n[source]\ntimeout_ms = 1500\nmax_redirects = 3\n");
    let world = World::start_configured(true, &config, &[("SLUICE_LOG", "trace".to_string())]);
    let tenant = world.tenant("leaky", "111111111111").await;
    assert!(!leaked_secrets(&tenant.key).is_empty(), "the tenant's API key was registered when issued");
    let secrets = Secrets::create(&tenant).await;
    let stream = tenant.aws.stream("leaks").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let base = world.source.base.clone();

    let header = |name: &str, prefix: &str| json!({"secret_arn": secrets.plain, "header": name, "prefix": prefix});
    let query = |arn: &str| json!({"secret_arn": arn, "query_param": "token", "prefix": "Bearer "});
    let field = |arn: &str| json!({"secret_arn": arn, "query_param": "token", "json_field": "api_key"});
    let cases = [
        case("refused-401", "/leak/refuse-401", header("x-api-key", ""), "fetch"),
        case("refused-403", "/leak/refuse-403", query(&secrets.plain), "fetch"),
        case("error-body", "/leak/bad-request", header("authorization", "Bearer "), "transform"),
        case("next-link", "/leak/next-link", field(&secrets.json), "transform"),
        case("redirect", "/leak/redirect", query(&secrets.plain), "fetch"),
        case("redirect-away", "/leak/redirect-away", query(&secrets.plain), "fetch"),
        case("redirect-loop", "/leak/redirect-loop", query(&secrets.plain), "fetch"),
        case("timeout", "/leak/slow", query(&secrets.plain), "fetch"),
        case("unreachable", &format!("http://{closed}/items"), query(&secrets.plain), "fetch"),
        case("missing-field", "/items", field(&secrets.missing_field), "secret"),
        case("not-json", "/items", field(&secrets.plain), "secret"),
        case("bad-header", "/items", json!({"secret_arn": secrets.two_lines}), "fetch"),
        case("secret-denied", "/items", query(&secrets.denied), "secret"),
        case("role-denied", "/items", query(&secrets.plain), "assume_role"),
        Case { plugin: "passthrough", ..case("kinesis-denied", "/plain", header("x-api-key", ""), "deliver") },
    ];
    world.source.require_key("x-api-key", &secrets.plain_value);
    let mut projects = Vec::new();
    for case in &cases {
        let url = if case.path.starts_with('/') { format!("{base}{}", case.path) } else { case.path.clone() };
        let mut extra = json!({"name": case.name, "source": {"url": url, "api_key": case.api_key}});
        // Tenant-trust projects on one role share one session, so the denied AssumeRole must be
        // a project's own: it has an external id, and so a session, of its own.
        if case.name == "role-denied" {
            extra["trust"] = json!("project");
        }
        let project = world.project(&tenant, case.plugin, &case.path, &stream, extra);
        projects.push(project["id"].as_str().unwrap().to_string());
    }

    for (case, id) in cases.iter().zip(&projects) {
        match case.name {
            "secret-denied" => world.proxy.inject("secretsmanager.GetSecretValue", Fault::AccessDenied, 1),
            "role-denied" => world.proxy.inject("AssumeRole", Fault::AccessDenied, 1),
            // Enough denials for the run and the drainer's retries until the test ends.
            "kinesis-denied" => world.proxy.inject("Kinesis_20131202.PutRecords", Fault::AccessDenied, 10_000),
            _ => {}
        }
        let run = world.run_now(&tenant, id, Duration::from_secs(60));
        eprintln!("{}: {}", case.name, run["error"]);
        let stage = run["error"]["stage"].as_str();
        assert_eq!((run["outcome"].as_str(), stage), (Some("failed"), Some(case.stage)), "{}: {run}", case.name);
    }
    // The key did reach the leaking sources, in the header and in the query, so they had it to
    // echo; and the trace log did get the AWS errors' full context.
    let seen = world.source.seen();
    let carried = |path: &str, value: &str| {
        seen.iter().any(|s| s.path == path && (s.headers.values().chain(s.query.values()).any(|v| v.contains(value))))
    };
    assert!(carried("/leak/refuse-401", &secrets.plain_value), "the key went to the refusing source");
    assert!(carried("/leak/redirect-loop", &secrets.plain_value), "the key went along the redirects");
    assert!(carried("/leak/next-link", &secrets.json_value), "the JSON secret's field was the key");
    let log = world.daemon().log();
    assert!(log.contains("TRACE") && log.contains("aws call failed"), "the daemon logs at trace:\n{log}");
    // The AWS SDK and HTTP client crates said what they say at debug, and nothing at trace.
    assert!(!wire_log_lines(&log, "DEBUG").is_empty(), "the SDK logs at debug:\n{log}");
    let traced = wire_log_lines(&log, "TRACE");
    assert!(traced.is_empty(), "{} trace lines from the SDK or HTTP crates, first: {:?}", traced.len(), traced.first());

    // Everything the daemon says about this tenant, as the tenant, the operator and a scraper.
    let mut said: Vec<(String, String)> = Vec::new();
    let mut get = |path: String, token: &str| {
        let (status, body) = world.call("GET", &path, token, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        said.push((format!("GET {path}"), body.to_string()));
    };
    for id in &projects {
        get(format!("/v1/projects/{id}/runs?limit=100"), &tenant.key);
        get(format!("/v1/projects/{id}"), &tenant.key);
    }
    for path in ["/v1/projects", "/v1/usage", "/v1/me", "/v1/plugins"] {
        get(path.to_string(), &tenant.key);
    }
    get("/v1/tenants".to_string(), ADMIN_TOKEN);
    get(format!("/v1/tenants/{}", tenant.id), ADMIN_TOKEN);
    // Error answers that could quote what they were given: a key as a bad token or as an id.
    for token in [secrets.plain_value.clone(), format!("{}x", tenant.key)] {
        let path = "/v1/projects";
        let (status, body) = world.call("GET", path, &token, None);
        assert_eq!(status, 401, "{body}");
        said.push((format!("GET {path} with a bad token"), body.to_string()));
    }
    // A key in a path comes back in the 404 to whoever sent it, but must reach neither the log
    // nor the metrics (which label requests by route template).
    let (status, body) = world.call("GET", &format!("/v1/projects/{}", tenant.key), &tenant.key, None);
    assert_eq!(status, 404, "{body}");
    // The console is public: its page and scripts must hold nothing of any tenant.
    for path in ["/console", "/console/api.js", "/console/tenant.js", "/console/operator.js", "/console/app.js"] {
        let (status, text) = http_text(world.daemon().addr, path);
        assert_eq!(status, 200, "GET {path}");
        said.push((format!("GET {path}"), text));
    }
    let (status, metrics) = http_text(world.daemon().addr, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains(r#"outcome="failed""#), "the failed runs are in the metrics:\n{metrics}");
    said.push(("GET /metrics".into(), metrics));
    said.push(("the daemon's log".into(), world.daemon().log()));

    let leaks: Vec<String> = said
        .iter()
        .filter_map(|(channel, text)| {
            let leaked = leaked_secrets(text);
            (!leaked.is_empty()).then(|| format!("{channel}: {leaked:?} in\n{text}"))
        })
        .collect();
    assert!(leaks.is_empty(), "secret values leaked:\n{}", leaks.join("\n\n"));
    // Where the plugin quoted what the source echoed, the key was there to leak and was redacted;
    // the message still says what failed.
    for (case, id) in cases.iter().zip(&projects).filter(|(c, _)| c.stage == "transform") {
        let runs = world.runs(&tenant, id);
        let message = runs[0]["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("the plugin rejected the response") && message.contains("[redacted]"),
            "{}: {message}",
            case.name
        );
    }
}

/// The tenant's secrets, with distinctive values: a plain key, a JSON object with the key in
/// `api_key`, a JSON object without it, a key with a line break (not a valid header value), and
/// one the role will be denied.
struct Secrets {
    plain: String,
    plain_value: String,
    json: String,
    json_value: String,
    missing_field: String,
    two_lines: String,
    denied: String,
}

impl Secrets {
    async fn create(tenant: &Tenant) -> Self {
        let plain_value = canary("plain");
        let json_value = canary("json-field");
        let json = json!({"api_key": json_value, "note": canary("json-other-field")}).to_string();
        let missing = json!({"key": canary("missing-field"), "n": 1}).to_string();
        let two_lines = format!("{}\n{}", canary("first-line"), canary("second-line"));
        Self {
            plain: tenant.aws.secret("plain", &plain_value).await,
            json: tenant.aws.secret("json", &json).await,
            missing_field: tenant.aws.secret("missing-field", &missing).await,
            two_lines: tenant.aws.secret("two-lines", &two_lines).await,
            denied: tenant.aws.secret("denied", &canary("denied")).await,
            plain_value,
            json_value,
        }
    }
}
