//! The HTTP API in process: every tenant route, its error codes and bodies, and who may call it.

use serde_json::{Value, json};
use sluice_tests::{ADMIN_TOKEN, TestApi};

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.is_empty() && !message.ends_with('.'), "messages end without a period: {message}");
    assert_eq!(message, message.trim());
}

#[tokio::test]
async fn operator_creates_lists_changes_and_deletes_tenants() {
    let api = TestApi::new();
    let (status, created) =
        api.call("POST", "/v1/tenants", Some(ADMIN_TOKEN), Some(r#"{"name": "acme", "tier": "standard"}"#)).await;
    assert_eq!(status, 201);
    assert_eq!(created["name"], "acme");
    assert_eq!(created["tier"], "standard");
    assert_eq!(created["status"], "active");
    assert_eq!(created["quotas"]["max_projects"], 100);
    let id = created["id"].as_str().unwrap();
    let key = created["api_key"].as_str().unwrap();
    assert!(id.starts_with("ten_") && key.starts_with("slk_") && key.len() == 68, "{created}");
    assert!(created.get("key_hash").is_none());

    let (status, list) = api.call("GET", "/v1/tenants", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["tenants"].as_array().unwrap().len(), 1);
    assert!(list["tenants"][0].get("api_key").is_none(), "keys are shown once");

    let patch = r#"{"tier": "premium", "quotas": {"max_projects": 7}}"#;
    let (status, changed) = api.call("PATCH", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), Some(patch)).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["quotas"]["max_projects"], 7);
    assert_eq!(changed["quotas"]["min_interval_seconds"], 1, "the rest comes from the premium tier");

    let (status, shown) = api.call("GET", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), None).await;
    assert_eq!((status, &shown["tier"]), (200, &json!("premium")));

    let (status, _) = api.call("DELETE", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 204);
    let (status, body) = api.call("GET", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), None).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = api.call("GET", "/v1/me", Some(key), None).await;
    assert_error(status, &body, 401, "unauthorized");
}

#[tokio::test]
async fn rotating_a_key_revokes_the_old_one() {
    let api = TestApi::new();
    let (id, old) = api.tenant("acme").await;
    let (status, rotated) = api.call("POST", &format!("/v1/tenants/{id}/keys"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 201);
    let new = rotated["api_key"].as_str().unwrap();
    assert_ne!(new, old);
    let (status, body) = api.call("GET", "/v1/me", Some(&old), None).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, me) = api.call("GET", "/v1/me", Some(new), None).await;
    assert_eq!((status, me["id"].as_str().unwrap()), (200, id.as_str()));
}

#[tokio::test]
async fn a_disabled_tenant_gets_403_until_enabled() {
    let api = TestApi::new();
    let (id, key) = api.tenant("acme").await;
    let path = format!("/v1/tenants/{id}");
    api.call("PATCH", &path, Some(ADMIN_TOKEN), Some(r#"{"status": "disabled"}"#)).await;
    let (status, body) = api.call("GET", "/v1/me", Some(&key), None).await;
    assert_error(status, &body, 403, "tenant_disabled");
    api.call("PATCH", &path, Some(ADMIN_TOKEN), Some(r#"{"status": "active"}"#)).await;
    let (status, _) = api.call("GET", "/v1/me", Some(&key), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn bad_input_is_400_with_the_error_body_and_changes_nothing() {
    let api = TestApi::new();
    let cases = [
        (r#"{"name": ""}"#, "`name` must be 1 to 100 characters"),
        (r#"{"name": "acme", "tier": "gold"}"#, "unknown variant `gold`"),
        (r#"{"name": "acme", "color": "red"}"#, "unknown field `color`"),
        (r#"{"name": "#, "not valid JSON"),
        (r#"["acme"]"#, "must be a JSON object"),
        (r#"{"name": 5}"#, "does not fit this route"),
    ];
    for (body, expected) in cases {
        let (status, response) = api.call("POST", "/v1/tenants", Some(ADMIN_TOKEN), Some(body)).await;
        assert_error(status, &response, 400, "invalid_request");
        let message = response["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let long_name = format!(r#"{{"name": "{}"}}"#, "x".repeat(101));
    let (status, response) = api.call("POST", "/v1/tenants", Some(ADMIN_TOKEN), Some(&long_name)).await;
    assert_error(status, &response, 400, "invalid_request");
    let (_, list) = api.call("GET", "/v1/tenants", Some(ADMIN_TOKEN), None).await;
    assert_eq!(list["tenants"], json!([]), "bad requests created nothing");

    let (id, _) = api.tenant("acme").await;
    let (status, response) =
        api.call("PATCH", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), Some(r#"{"status": "gone"}"#)).await;
    assert_error(status, &response, 400, "invalid_request");
    let (_, shown) = api.call("GET", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(shown["status"], "active");
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let api = TestApi::new();
    let body = format!(r#"{{"name": "{}"}}"#, "x".repeat(2 << 20));
    let (status, response) = api.call("POST", "/v1/tenants", Some(ADMIN_TOKEN), Some(&body)).await;
    assert_error(status, &response, 413, "too_large");
}

#[tokio::test]
async fn unknown_routes_and_ids_are_404_with_the_error_body() {
    let api = TestApi::new();
    let (status, body) = api.call("GET", "/v1/nothing-here", Some(ADMIN_TOKEN), None).await;
    assert_error(status, &body, 404, "not_found");
    for (method, path) in
        [("GET", "/v1/tenants/ten_0"), ("PATCH", "/v1/tenants/ten_0"), ("DELETE", "/v1/tenants/ten_0")]
    {
        let body = (method == "PATCH").then_some("{}");
        let (status, response) = api.call(method, path, Some(ADMIN_TOKEN), body).await;
        assert_error(status, &response, 404, "not_found");
    }
    let (status, response) = api.call("POST", "/v1/tenants/ten_0/keys", Some(ADMIN_TOKEN), None).await;
    assert_error(status, &response, 404, "not_found");
}

/// Every route × every kind of caller gives the documented code.
#[tokio::test]
async fn authorization_matrix() {
    let api = TestApi::new();
    let (id, key) = api.tenant("acme").await;
    let (disabled_id, disabled_key) = api.tenant("sleepy").await;
    api.call("PATCH", &format!("/v1/tenants/{disabled_id}"), Some(ADMIN_TOKEN), Some(r#"{"status": "disabled"}"#))
        .await;

    let operator_routes = [
        ("GET", "/v1/tenants".to_string(), None),
        ("GET", format!("/v1/tenants/{id}"), None),
        ("PATCH", format!("/v1/tenants/{id}"), Some("{}")),
    ];
    let callers: [(&str, Option<&str>, u16); 5] = [
        ("operator", Some(ADMIN_TOKEN), 200),
        ("tenant key", Some(&key), 403),
        ("disabled tenant key", Some(&disabled_key), 403),
        ("no key", None, 401),
        ("bad key", Some("slk_not-a-real-key"), 401),
    ];
    for (method, path, body) in &operator_routes {
        for (who, token, want) in callers {
            let (status, response) = api.call(method, path, token, *body).await;
            assert_eq!(status, want, "{method} {path} as {who}: {response}");
        }
    }
    let tenant_callers: [(&str, Option<&str>, u16); 5] = [
        ("own key", Some(&key), 200),
        ("operator", Some(ADMIN_TOKEN), 403),
        ("disabled tenant", Some(&disabled_key), 403),
        ("no key", None, 401),
        ("bad key", Some("slk_not-a-real-key"), 401),
    ];
    for (who, token, want) in tenant_callers {
        let (status, response) = api.call("GET", "/v1/me", token, None).await;
        assert_eq!(status, want, "GET /v1/me as {who}: {response}");
    }
    let (status, response) = api.call("GET", "/v1/me", Some(&key), None).await;
    assert_eq!((status, response["id"].as_str().unwrap()), (200, id.as_str()));
}

#[tokio::test]
async fn health_and_readiness() {
    let api = TestApi::new();
    let (status, body) = api.call("GET", "/healthz", None, None).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    // Let the scheduler's driver task, spawned by `TestApi::new`, start.
    tokio::task::yield_now().await;
    let (status, body) = api.call("GET", "/readyz", None, None).await;
    assert_eq!((status, body), (200, json!({"store": true, "accepting": true, "scheduler": true, "saturated": false})));
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_in_prometheus_format() {
    let api = TestApi::new();
    let (id, _) = api.tenant("acme").await;
    api.call("GET", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), None).await;
    api.call("GET", "/v1/tenants/ten_0", Some(ADMIN_TOKEN), None).await;
    let response = api.call_text("GET", "/metrics").await;
    assert!(
        response.contains(r#"sluice_http_requests_total{method="GET",route="/v1/tenants/{id}",status="200"} 1"#),
        "{response}"
    );
    assert!(response.contains(r#"sluice_http_requests_total{method="GET",route="/v1/tenants/{id}",status="404"} 1"#));
    assert!(response.contains(r#"sluice_http_requests_total{method="POST",route="/v1/tenants",status="201"} 1"#));
    assert!(response.contains("sluice_tenants 1"));
    // An idle host is not saturated, and says so; the sled store's committer has made writes
    // durable (the shared store has no committer, and says nothing of one).
    assert!(response.contains("sluice_saturated 0\n"), "{response}");
    assert!(response.contains("sluice_runs_waiting 0\n"), "{response}");
    let committer = response.contains("# TYPE sluice_store_commit_batches_total counter");
    assert_eq!(committer, sluice_tests::world::test_store().is_none(), "{response}");
    assert!(!response.contains(&id), "ids never become label values");
}

// Hostile input found by the schemathesis run (`e2e/schemathesis.rs`) or while probing around
// it. Each case here answered with something the OpenAPI document does not describe before it was
// fixed.

const STREAM: &str = "arn:aws:kinesis:eu-central-1:123456789012:stream/weather";
const ROLE: &str = "arn:aws:iam::123456789012:role/sluice-delivery";

/// serde builds a struct from an array of its fields too; the document promises objects only.
/// `{"quotas": [null, null]}` used to clear a tenant's overrides, and `"target": [stream, role]`
/// used to create a project.
#[tokio::test]
async fn an_array_is_never_taken_for_an_object() {
    let api = TestApi::new();
    let (id, key) = api.tenant("acme").await;
    let tenant = format!("/v1/tenants/{id}");
    let (status, _) = api.call("PATCH", &tenant, Some(ADMIN_TOKEN), Some(r#"{"quotas": {"max_projects": 7}}"#)).await;
    assert_eq!(status, 200);
    let (status, response) = api.call("PATCH", &tenant, Some(ADMIN_TOKEN), Some(r#"{"quotas": [null, null]}"#)).await;
    assert_error(status, &response, 400, "invalid_request");
    assert!(response["error"]["message"].as_str().unwrap().contains("invalid type: sequence"), "{response}");
    let (_, shown) = api.call("GET", &tenant, Some(ADMIN_TOKEN), None).await;
    assert_eq!(shown["quota_overrides"], json!({"max_projects": 7}), "the refused request changed nothing");

    let (_, plugin) = api.upload(&key, "json-split").await;
    let project = |target: Value| {
        json!({
            "name": "weather", "schedule": "rate(1 hour)", "source": {"url": "https://api.example.com/v1/obs"},
            "plugin_id": plugin["id"], "target": target,
        })
        .to_string()
    };
    let (status, response) = api.call("POST", "/v1/projects", Some(&key), Some(&project(json!([STREAM, ROLE])))).await;
    assert_error(status, &response, 400, "invalid_request");
    let (status, created) = api
        .call("POST", "/v1/projects", Some(&key), Some(&project(json!({"stream_arn": STREAM, "role_arn": ROLE}))))
        .await;
    assert_eq!(status, 201, "the object form still works: {created}");
}

/// Quota overrides are documented as `int32` (counts) and `int64` (seconds, bytes); the API took
/// any `u32` and `u64`, and answered 200 with numbers outside the formats it documents.
#[tokio::test]
async fn quota_overrides_stay_within_their_documented_integer_formats() {
    let api = TestApi::new();
    let (id, _) = api.tenant("acme").await;
    let tenant = format!("/v1/tenants/{id}");
    for quotas in [
        r#"{"min_interval_seconds": 9223372036854775808}"#,
        r#"{"max_plugin_bytes": 18446744073709551615}"#,
        r#"{"max_projects": 2147483648}"#,
        r#"{"max_plugins": 4294967295}"#,
    ] {
        let body = format!(r#"{{"quotas": {quotas}}}"#);
        let (status, response) = api.call("PATCH", &tenant, Some(ADMIN_TOKEN), Some(&body)).await;
        assert_error(status, &response, 400, "invalid_request");
        assert!(response["error"]["message"].as_str().unwrap().contains("must be at most"), "{quotas}: {response}");
    }
    let (_, shown) = api.call("GET", &tenant, Some(ADMIN_TOKEN), None).await;
    assert_eq!(shown["quota_overrides"], json!({}), "the refused requests changed nothing");
    let largest = r#"{"quotas": {"max_projects": 2147483647, "max_plugins": 2147483647,
        "min_interval_seconds": 9223372036854775807, "max_plugin_bytes": 9223372036854775807}}"#;
    let (status, changed) = api.call("PATCH", &tenant, Some(ADMIN_TOKEN), Some(largest)).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["quotas"]["min_interval_seconds"], i64::MAX);
}

/// A dry run's `response.status` is documented as an HTTP status, 100 to 999; the API took any
/// `u16`, and refused the larger integers the document allowed with a message about `u16`.
#[tokio::test]
async fn a_dry_run_takes_a_three_digit_status() {
    let api = TestApi::new();
    let (_, key) = api.tenant("acme").await;
    let (_, plugin) = api.upload(&key, "json-split").await;
    let path = format!("/v1/plugins/{}/test", plugin["id"].as_str().unwrap());
    let body = |status: u64| json!({"response": {"status": status, "body": {"text": "[]"}}}).to_string();
    for status in [0, 99, 1000, 65_535] {
        let (code, response) = api.call("POST", &path, Some(&key), Some(&body(status))).await;
        assert_error(code, &response, 400, "invalid_request");
        assert!(response["error"]["message"].as_str().unwrap().contains("response.status"), "{status}: {response}");
    }
    // Beyond `u16` the body does not fit at all; the document no longer offers such numbers.
    let (code, response) = api.call("POST", &path, Some(&key), Some(&body(2_147_483_646))).await;
    assert_error(code, &response, 400, "invalid_request");
    for status in [100, 599, 999] {
        let (code, report) = api.call("POST", &path, Some(&key), Some(&body(status))).await;
        assert_eq!(code, 200, "{status}: {report}");
    }
}

/// A percent-encoded id that is not UTF-8 named nothing but got axum's plain-text 400, which no
/// operation documents; it is a 404 with the error body, like any other unknown id.
#[tokio::test]
async fn an_id_that_is_not_utf8_is_404_with_the_error_body() {
    let api = TestApi::new();
    let (_, key) = api.tenant("acme").await;
    let cases = [
        ("GET", "/v1/tenants/%FF", ADMIN_TOKEN),
        ("POST", "/v1/tenants/%C3%28/keys", ADMIN_TOKEN),
        ("GET", "/v1/plugins/sha256%3A%FF", key.as_str()),
        ("DELETE", "/v1/projects/prj_%FE", key.as_str()),
        ("GET", "/v1/projects/%FF/runs", key.as_str()),
    ];
    for (method, path, token) in cases {
        let response = api.send(method, path, Some(token), None, vec![]).await;
        assert_eq!(response.content_type.as_deref(), Some("application/json"), "{method} {path}");
        assert_error(response.status, &response.json(), 404, "not_found");
    }
}

/// A method a path does not take got an empty 405; it gets the error body too, and axum's
/// `Allow` header still lists the methods the path takes.
#[tokio::test]
async fn a_method_the_path_does_not_take_is_405_with_the_error_body_and_allow() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let api = TestApi::new();
    for (method, path, allowed) in [
        ("PUT", "/v1/tenants", "POST,GET,HEAD"),
        ("DELETE", "/healthz", "GET,HEAD"),
        ("GET", "/v1/projects/p/run", "POST"),
    ] {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let response = api.app.clone().oneshot(request).await.unwrap();
        let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(allow.as_deref(), Some(allowed), "{method} {path}");
        assert_eq!(response.headers()["content-type"], "application/json", "{method} {path}");
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_error(status, &body, 405, "method_not_allowed");
        assert!(body["error"]["message"].as_str().unwrap().contains(path), "{body}");
    }
}
