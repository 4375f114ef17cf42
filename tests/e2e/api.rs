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
    assert_eq!((status, body), (200, json!({"store": true, "accepting": true, "scheduler": true})));
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
    assert!(!response.contains(&id), "ids never become label values");
}
