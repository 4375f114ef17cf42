//! The OpenAPI document at `GET /openapi.json`: it is valid OpenAPI, it is complete (every
//! operation it lists is served, with the credentials and statuses it documents, and nothing else
//! is), and it is true (real requests and responses fit the schemas it gives).
//!
//! Validation runs in Python (`openapi-spec-validator`, `openapi-schema-validator`), which
//! `cargo xtask test` installs where missing.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{Value, json};
use sluice::store::{OutboxEntry, Run, RunError, RunLogLine, RunLogSource, RunOutcome, Stage, Trigger};
use sluice_tests::{ADMIN_TOKEN, RawResponse, TestApi, plugin_bytes};

/// The API's surface, pinned: adding or removing a route is a deliberate change to this list.
const OPERATIONS: [(&str, &str); 30] = [
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/v1/tenants"),
    ("get", "/v1/tenants"),
    ("get", "/v1/tenants/{id}"),
    ("get", "/v1/cluster"),
    ("patch", "/v1/tenants/{id}"),
    ("delete", "/v1/tenants/{id}"),
    ("post", "/v1/tenants/{id}/keys"),
    ("get", "/v1/me"),
    ("post", "/v1/plugins"),
    ("get", "/v1/plugins"),
    ("get", "/v1/plugins/{id}"),
    ("delete", "/v1/plugins/{id}"),
    ("post", "/v1/plugins/{id}/test"),
    ("post", "/v1/projects"),
    ("get", "/v1/projects"),
    ("get", "/v1/projects/{id}"),
    ("patch", "/v1/projects/{id}"),
    ("delete", "/v1/projects/{id}"),
    ("post", "/v1/projects/{id}/pause"),
    ("post", "/v1/projects/{id}/resume"),
    ("post", "/v1/projects/{id}/run"),
    ("get", "/v1/projects/{id}/runs"),
    ("get", "/v1/projects/{id}/outbox"),
    ("delete", "/v1/projects/{id}/outbox/{run_id}"),
    ("post", "/v1/projects/{id}/outbox/{run_id}/retry"),
    ("get", "/v1/usage"),
];

/// The methods a path could be asked for; HEAD and OPTIONS are left to axum.
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn spec(api: &TestApi) -> Value {
    let response = api.send("GET", "/openapi.json", None, None, vec![]).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.content_type.as_deref(), Some("application/json"));
    response.json()
}

/// Every (method, path template) the document lists.
fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("the document has paths") {
        for method in item.as_object().unwrap().keys().filter(|m| METHODS.contains(&m.as_str())) {
            operations.insert((method.clone(), path.clone()));
        }
    }
    operations
}

/// The statuses an operation documents.
fn statuses(operation: &Value) -> BTreeSet<u16> {
    operation["responses"].as_object().unwrap().keys().map(|s| s.parse().expect("numeric statuses")).collect()
}

/// The security scheme an operation requires, if any.
fn scheme(operation: &Value) -> Option<String> {
    let requirements = operation["security"].as_array()?;
    assert_eq!(requirements.len(), 1, "one way to authenticate per operation: {requirements:?}");
    let schemes: Vec<&String> = requirements[0].as_object().unwrap().keys().collect();
    assert_eq!(schemes.len(), 1, "one scheme per operation: {schemes:?}");
    Some(schemes[0].clone())
}

/// Writes JSON to a temporary file, for the Python validators.
fn temp_json(value: &Value) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    file.write_all(value.to_string().as_bytes()).unwrap();
    file.flush().unwrap();
    file
}

/// Runs `python3` and panics with its output unless it succeeds.
fn python(args: &[&str]) -> String {
    let output = std::process::Command::new("python3")
        .args(args)
        .output()
        .expect("python3 runs; install Python 3, and `cargo xtask test` installs openapi-spec-validator with pip");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python3 {} failed:\n{stdout}\n{stderr}", args[0]);
    stdout
}

fn is_fallback(response: &RawResponse) -> bool {
    response.status == 404
        && response.json()["error"]["message"].as_str().is_some_and(|m| m.starts_with("no such route"))
}

#[tokio::test]
async fn the_document_is_valid_openapi_with_a_summary_for_every_operation() {
    let api = TestApi::new();
    let spec = spec(&api).await;
    assert_eq!(spec["openapi"], "3.1.0");
    let file = temp_json(&spec);
    let out = python(&["-m", "openapi_spec_validator", file.path().to_str().unwrap()]);
    assert!(out.contains("OK"), "{out}");
    for (method, path) in operations(&spec) {
        let operation = &spec["paths"][&path][&method];
        for field in ["summary", "description", "operationId"] {
            let text = operation[field].as_str().unwrap_or("");
            assert!(!text.trim().is_empty(), "{method} {path} has no {field}: document its handler");
        }
        assert!(operation["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path} has no tag");
    }
    let schemes = &spec["components"]["securitySchemes"];
    for name in ["operator_token", "tenant_key"] {
        assert_eq!(schemes[name]["type"], "http");
        assert_eq!(schemes[name]["scheme"], "bearer");
        assert!(schemes[name]["description"].as_str().is_some_and(|d| d.len() > 40), "{name} is explained");
    }
}

/// The path with its parameters filled in (ids that exist nowhere) and the operation's required
/// query parameters set.
fn concrete(path: &str, operation: &Value) -> String {
    let mut url = path.replace("{id}", "unknown-id").replace("{run_id}", "run_0000000000000000");
    let required = operation["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "query");
    let query: Vec<String> = required
        .filter(|p| p["required"] == true)
        .map(|p| format!("{}={}", p["name"].as_str().unwrap(), p["example"].as_str().unwrap_or("x")))
        .collect();
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    url
}

/// The smallest body of the operation's first content type: `{}` for JSON, a few bytes otherwise.
fn minimal_body(operation: &Value) -> (Option<String>, Vec<u8>) {
    let Some(content) = operation["requestBody"]["content"].as_object() else { return (None, vec![]) };
    let content_type = content.keys().next().expect("a request body has a content type").clone();
    let body = if content_type == "application/json" { b"{}".to_vec() } else { b"\0asm-not-really".to_vec() };
    (Some(content_type), body)
}

#[tokio::test]
async fn every_documented_operation_is_served_with_its_credentials_and_nothing_else_is() {
    let api = TestApi::new();
    let (_, key) = api.tenant("acme").await;
    let spec = spec(&api).await;
    let documented = operations(&spec);
    let pinned: BTreeSet<(String, String)> = OPERATIONS.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, pinned, "the document lists exactly the API's operations");

    for (method, path) in &documented {
        let operation = &spec["paths"][path][method];
        let answers = statuses(operation);
        let url = concrete(path, operation);
        let (content_type, body) = minimal_body(operation);
        let label = format!("{} {url}", method.to_uppercase());
        let send = |token: Option<String>| {
            let (method, url, content_type, body) =
                (method.to_uppercase(), url.clone(), content_type.clone(), body.clone());
            let api = &api;
            async move { api.send(&method, &url, token.as_deref(), content_type.as_deref(), body).await }
        };
        let scheme = scheme(operation);
        let (right, wrong) = match scheme.as_deref() {
            Some("operator_token") => (Some(ADMIN_TOKEN.to_string()), Some(key.clone())),
            Some("tenant_key") => (Some(key.clone()), Some(ADMIN_TOKEN.to_string())),
            None => (None, None),
            Some(other) => panic!("{label}: unknown security scheme {other}"),
        };

        let response = send(right).await;
        assert_ne!(response.status, 405, "{label}: the router does not serve this method");
        assert!(!is_fallback(&response), "{label}: the router does not serve this path");
        assert!(
            answers.contains(&response.status),
            "{label} answered {}, which its operation does not document ({answers:?}): {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
        assert!(!matches!(response.status, 401 | 403), "{label} refused the credential it documents");
        if response.status >= 400 {
            let error = response.json();
            assert!(error["error"]["code"].is_string() && error["error"]["message"].is_string(), "{label}: {error}");
        }
        if scheme.is_some() {
            for (token, expected) in [(None, 401), (wrong, 403)] {
                let response = send(token).await;
                assert_eq!(response.status, expected, "{label}: {}", String::from_utf8_lossy(&response.body));
                assert!(answers.contains(&expected), "{label} answers {expected} but does not document it");
            }
        }
    }

    // Nothing else is served on these paths: every other method is refused.
    let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
    for path in paths {
        let url = path.replace("{id}", "unknown-id").replace("{run_id}", "run_0000000000000000");
        for method in METHODS.iter().filter(|m| !documented.contains(&(m.to_string(), path.clone()))) {
            let response = api.send(&method.to_uppercase(), &url, Some(&key), None, vec![]).await;
            assert_eq!(response.status, 405, "{method} {url} is served but not documented");
        }
    }
    // A path that is not documented reaches the fallback, which points at the document.
    let response = api.send("GET", "/v1/nothing-here", Some(&key), None, vec![]).await;
    assert!(is_fallback(&response));
    assert!(response.json()["error"]["message"].as_str().unwrap().contains("/openapi.json"));
}

/// Checks recorded requests and responses against the document's schemas. Object schemas are
/// made strict first (no properties beyond those declared), so that a response cannot carry a
/// field the document does not mention.
const CONFORMANCE: &str = r#"
import copy, json, sys
from openapi_schema_validator import OAS31Validator

def strict(node):
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for key, value in node.items():
            if key not in ("examples", "example", "default"):
                strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)

data = json.load(open(sys.argv[1]))
spec = data["spec"]
components = copy.deepcopy(spec["components"])
strict(components)
problems = []

def check(label, instance, schema):
    schema = copy.deepcopy(schema)
    strict(schema)
    schema["components"] = components
    for error in OAS31Validator(schema).iter_errors(instance):
        problems.append(f"{label}: {error.message} at {list(error.absolute_path)}")

for case in data["cases"]:
    label = f'{case["method"].upper()} {case["path"]} {case["kind"]}'
    operation = spec["paths"][case["path"]][case["method"]]
    if case["kind"] == "request":
        check(label, case["body"], operation["requestBody"]["content"]["application/json"]["schema"])
        continue
    label += f' {case["status"]}'
    response = operation["responses"].get(str(case["status"]))
    if response is None:
        problems.append(f"{label}: the status is not documented")
    elif case["body"] is None:
        if response.get("content"):
            problems.append(f"{label}: documented with a body, answered without one")
    elif "application/json" not in response.get("content", {}):
        problems.append(f"{label}: answered JSON, documented without it")
    else:
        check(label, case["body"], response["content"]["application/json"]["schema"])

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f'{len(data["cases"])} requests and responses fit the document')
"#;

/// Sends requests, checks each response's status and content type against the document, and
/// keeps the JSON of both sides for [`CONFORMANCE`].
struct Recorder<'a> {
    api: &'a TestApi,
    spec: &'a Value,
    cases: Vec<Value>,
}

impl Recorder<'_> {
    /// Sends `method url` (an instance of the `template` operation) and returns the JSON body. A
    /// request body the API accepted is checked against the document too.
    async fn call(
        &mut self,
        method: &str,
        template: &str,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let method = method.to_lowercase();
        let content_type = body.as_ref().map(|_| "application/json");
        let bytes = body.as_ref().map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let response = self.api.send(&method.to_uppercase(), url, token, content_type, bytes).await;
        if let Some(body) = body
            && response.status < 300
        {
            self.cases.push(json!({"kind": "request", "method": method, "path": template, "body": body}));
        }
        self.record(&method, template, response)
    }

    /// Uploads a built plugin and returns the JSON body.
    async fn upload(&mut self, key: &str, plugin: &str) -> Value {
        let url = format!("/v1/plugins?name={plugin}");
        let response = self.api.send("POST", &url, Some(key), Some("application/wasm"), plugin_bytes(plugin)).await;
        self.record("post", "/v1/plugins", response)
    }

    fn record(&mut self, method: &str, template: &str, response: RawResponse) -> Value {
        let label = format!("{} {template} {}", method.to_uppercase(), response.status);
        let documented = &self.spec["paths"][template][method]["responses"][response.status.to_string()];
        assert!(documented.is_object(), "{label} is not documented: {}", String::from_utf8_lossy(&response.body));
        match (&response.content_type, documented["content"].as_object()) {
            (Some(content_type), Some(content)) => {
                assert!(content.contains_key(content_type), "{label}: {content_type} is not documented")
            }
            (None, None) => assert!(response.body.is_empty()),
            (answered, documented) => panic!("{label}: answered {answered:?}, documented {documented:?}"),
        }
        let body = match response.content_type.as_deref() {
            Some("application/json") => response.json(),
            _ => Value::Null,
        };
        // JSON bodies and empty ones are checked against the document; `/metrics` is text.
        if body.is_object() || response.body.is_empty() {
            let case = json!({"kind": "response", "method": method, "path": template, "status": response.status, "body": body});
            self.cases.push(case);
        }
        body
    }
}

const STREAM: &str = "arn:aws:kinesis:eu-central-1:123456789012:stream/weather";
const ROLE: &str = "arn:aws:iam::123456789012:role/sluice-delivery";
const SECRET: &str = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:weather-key-AbCdEf";

#[tokio::test]
async fn real_requests_and_responses_fit_the_documented_schemas() {
    let api = TestApi::new();
    let spec = spec(&api).await;
    let mut r = Recorder { api: &api, spec: &spec, cases: vec![] };
    let admin = Some(ADMIN_TOKEN);

    // Tenants.
    let tenant =
        r.call("POST", "/v1/tenants", "/v1/tenants", admin, Some(json!({"name": "acme", "tier": "standard"}))).await;
    let (tenant_id, api_key) =
        (tenant["id"].as_str().unwrap().to_string(), tenant["api_key"].as_str().unwrap().to_string());
    let key = Some(api_key.as_str());
    let one = format!("/v1/tenants/{tenant_id}");
    r.call("GET", "/v1/tenants", "/v1/tenants", admin, None).await;
    r.call("GET", "/v1/cluster", "/v1/cluster", admin, None).await;
    r.call("GET", "/v1/tenants/{id}", &one, admin, None).await;
    let quotas = json!({"quotas": {"max_projects": 10}, "status": "active"});
    r.call("PATCH", "/v1/tenants/{id}", &one, admin, Some(quotas)).await;
    r.call("GET", "/v1/me", "/v1/me", key, None).await;

    // Plugins: an upload, the same bytes again, and dry runs that succeed and that fail with logs.
    let split = r.upload(&api_key, "json-split").await["id"].as_str().unwrap().to_string();
    r.upload(&api_key, "json-split").await;
    let hostile = r.upload(&api_key, "hostile").await["id"].as_str().unwrap().to_string();
    r.call("GET", "/v1/plugins", "/v1/plugins", key, None).await;
    r.call("GET", "/v1/plugins/{id}", &format!("/v1/plugins/{split}"), key, None).await;
    let ok = json!({
        "response": {"status": 200, "headers": {"Content-Type": "application/json"}, "body": {"text": r#"[{"id": "a"}]"#}},
        "settings": {"partition_key_field": "id"},
    });
    let report = r.call("POST", "/v1/plugins/{id}/test", &format!("/v1/plugins/{split}/test"), key, Some(ok)).await;
    assert_eq!(report["outcome"], "ok", "{report}");
    let panic =
        json!({"response": {"body": {"base64": "AAEC"}}, "state": {"text": "s"}, "settings": {"mode": "panic"}});
    let report =
        r.call("POST", "/v1/plugins/{id}/test", &format!("/v1/plugins/{hostile}/test"), key, Some(panic)).await;
    assert!(report["failure"].is_object() && !report["logs"].as_array().unwrap().is_empty(), "{report}");

    // Projects, with a failed run in the history.
    let input = json!({
        "name": "weather-berlin",
        "schedule": "rate(5 minutes)",
        "source": {
            "url": "https://api.example.com/v1/obs?city=berlin",
            "headers": {"accept": "application/json"},
            "api_key": {"secret_arn": SECRET, "prefix": "Token "},
        },
        "plugin_id": split,
        "target": {"stream_arn": STREAM, "role_arn": ROLE},
    });
    let project = r.call("POST", "/v1/projects", "/v1/projects", key, Some(input)).await;
    let project_id = project["id"].as_str().unwrap().to_string();
    let one = format!("/v1/projects/{project_id}");
    r.call("GET", "/v1/projects", "/v1/projects", key, None).await;
    r.call("GET", "/v1/projects/{id}", &one, key, None).await;
    let patch = json!({"schedule": "cron(0 12 * * ? *)", "timezone": "Europe/Berlin", "max_pages": 3});
    r.call("PATCH", "/v1/projects/{id}", &one, key, Some(patch)).await;
    r.call("POST", "/v1/projects/{id}/pause", &format!("{one}/pause"), key, None).await;
    r.call("POST", "/v1/projects/{id}/resume", &format!("{one}/resume"), key, None).await;
    r.call("POST", "/v1/projects/{id}/run", &format!("{one}/run"), key, None).await;
    let at = "2026-01-01T00:00:00Z".to_string();
    let run = Run {
        id: "run_0000000000000001".into(),
        plugin_id: None,
        project_id: project_id.clone(),
        trigger: Trigger::Schedule,
        scheduled_at: at.clone(),
        started_at: at.clone(),
        finished_at: at,
        outcome: RunOutcome::Failed,
        http_status: None,
        pages: 0,
        records: 0,
        bytes_fetched: 0,
        bytes_delivered: 0,
        stage_ms: [(Stage::AssumeRole, 12.5)].into(),
        error: Some(RunError { stage: Stage::AssumeRole, message: "access denied".into() }),
        page_cap_reached: true,
        logs: vec![RunLogLine { source: RunLogSource::Host, level: "info".into(), message: "page cap".into() }],
        logs_dropped: 2,
    };
    api.store.record_run(&tenant_id, &run, 0.0).await.unwrap();
    let runs = r.call("GET", "/v1/projects/{id}/runs", &format!("{one}/runs?limit=5"), key, None).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);

    // The outbox: an entry parked, retried (waiting again, which cannot be discarded), parked
    // again and discarded.
    let entry = OutboxEntry {
        tenant_id: tenant_id.clone(),
        project_id: project_id.clone(),
        run_id: "run_0000000000000002".into(),
        scheduled_at_ms: 1_767_225_600_000,
        state: Some(b"cursor".to_vec()),
        records: vec![sluice::records::Record {
            data: b"{}".to_vec(),
            partition_key: "k".into(),
            explicit_hash_key: None,
        }],
    };
    let outbox_key = api.store.enqueue(entry.clone()).await.unwrap();
    api.store.park(&outbox_key, &entry, "InvalidArgumentException: refused", "2026-01-01T00:00:01Z").await.unwrap();
    let outbox = r.call("GET", "/v1/projects/{id}/outbox", &format!("{one}/outbox"), key, None).await;
    assert_eq!(outbox["parked"][0]["run_id"], "run_0000000000000002", "{outbox}");
    let entry_path = format!("{one}/outbox/run_0000000000000002");
    let retried =
        r.call("POST", "/v1/projects/{id}/outbox/{run_id}/retry", &format!("{entry_path}/retry"), key, None).await;
    assert_eq!(retried["waiting"][0]["run_id"], "run_0000000000000002", "{retried}");
    let refused = r.call("DELETE", "/v1/projects/{id}/outbox/{run_id}", &entry_path, key, None).await;
    assert_eq!(refused["error"]["code"], "conflict", "{refused}");
    let (waiting_key, waiting) = api.store.outbox_of(&tenant_id, &project_id).await.unwrap().remove(0);
    api.store.park(&waiting_key, &waiting, "InvalidArgumentException: refused", "2026-01-01T00:00:02Z").await.unwrap();
    r.call("DELETE", "/v1/projects/{id}/outbox/{run_id}", &entry_path, key, None).await;
    r.call("GET", "/v1/usage", "/v1/usage", key, None).await;

    // Errors, each with the one error body.
    r.call("DELETE", "/v1/plugins/{id}", &format!("/v1/plugins/{split}"), key, None).await; // 409: in use
    r.call("POST", "/v1/projects", "/v1/projects", key, Some(json!({"name": "x"}))).await; // 400
    r.call("GET", "/v1/projects/{id}", "/v1/projects/prj_0000000000000000", key, None).await; // 404
    r.call("GET", "/v1/projects/{id}/runs", &format!("{one}/runs?limit=0"), key, None).await; // 400
    r.call("GET", "/v1/me", "/v1/me", None, None).await; // 401
    r.call("GET", "/v1/tenants", "/v1/tenants", key, None).await; // 403

    // Deletions and key rotation, which answer without a body or with a new key.
    r.call("DELETE", "/v1/projects/{id}", &one, key, None).await;
    r.call("DELETE", "/v1/plugins/{id}", &format!("/v1/plugins/{split}"), key, None).await;
    let rotated = r.call("POST", "/v1/tenants/{id}/keys", &format!("/v1/tenants/{tenant_id}/keys"), admin, None).await;
    assert!(rotated["api_key"].is_string());
    r.call("DELETE", "/v1/tenants/{id}", &format!("/v1/tenants/{tenant_id}"), admin, None).await;

    // Operations routes; `/metrics` is checked for its content type only.
    for path in ["/healthz", "/readyz", "/openapi.json", "/metrics"] {
        r.call("GET", path, path, None, None).await;
    }

    // Every operation was checked with a success, and every status the calls above expect.
    let succeeded: BTreeSet<(String, String)> = r
        .cases
        .iter()
        .filter(|c| c["kind"] == "response" && c["status"].as_u64().is_some_and(|s| s < 300))
        .map(|c| (c["method"].as_str().unwrap().to_string(), c["path"].as_str().unwrap().to_string()))
        .chain([("get".to_string(), "/metrics".to_string())])
        .collect();
    assert_eq!(succeeded, operations(&spec), "every operation is checked with a success");
    let answered: BTreeSet<u64> = r.cases.iter().filter_map(|c| c["status"].as_u64()).collect();
    assert_eq!(answered, BTreeSet::from([200, 201, 202, 204, 400, 401, 403, 404, 409]));

    let file = temp_json(&json!({"spec": spec, "cases": r.cases}));
    let script_out = python(&["-c", CONFORMANCE, file.path().to_str().unwrap()]);
    assert!(script_out.contains("fit the document"), "{script_out}");
}
