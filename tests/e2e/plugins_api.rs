//! Plugins over HTTP: upload with checks, list, show, delete, dry runs, quotas, and isolation
//! between tenants.

use serde_json::{Value, json};
use sluice_tests::{ADMIN_TOKEN, TestApi, plugin_bytes};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn upload_list_show_test_and_delete() {
    let api = TestApi::new();
    let (_, key) = api.tenant("acme").await;
    let (status, plugin) = api.upload(&key, "json-split").await;
    assert_eq!(status, 201, "{plugin}");
    let id = plugin["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 7 + 64);
    assert_eq!(plugin["name"], "json-split");
    assert_eq!(plugin["size_bytes"], plugin_bytes("json-split").len());

    // The same bytes again change nothing.
    let (status, again) = api.upload(&key, "json-split").await;
    assert_eq!((status, &again["id"]), (200, &json!(id)));

    let (status, list) = api.call("GET", "/v1/plugins", Some(&key), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["plugins"].as_array().unwrap().len(), 1);
    let (status, shown) = api.call("GET", &format!("/v1/plugins/{id}"), Some(&key), None).await;
    assert_eq!((status, &shown["name"]), (200, &json!("json-split")));

    let test = json!({
        "response": {"body": {"text": r#"[{"id": "a"}, {"id": "b"}]"#}},
        "settings": {"partition_key_field": "id"},
    });
    let (status, report) =
        api.call("POST", &format!("/v1/plugins/{id}/test"), Some(&key), Some(&test.to_string())).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["records"][1], json!({"partition_key": "b", "data": {"text": r#"{"id":"b"}"#}}));
    assert!(report["duration_ms"].as_f64().unwrap() > 0.0);

    let bad = json!({"response": {"body": {"text": "[{"}}});
    let (status, report) =
        api.call("POST", &format!("/v1/plugins/{id}/test"), Some(&key), Some(&bad.to_string())).await;
    assert_eq!((status, report["outcome"].as_str()), (200, Some("failed")));
    assert_eq!(report["failure"]["kind"], "rejected");

    let (status, _) = api.call("DELETE", &format!("/v1/plugins/{id}"), Some(&key), None).await;
    assert_eq!(status, 204);
    let (status, body) = api.call("GET", &format!("/v1/plugins/{id}"), Some(&key), None).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
}

#[tokio::test]
async fn a_dry_run_reports_the_plugin_failure_with_its_logs() {
    let api = TestApi::new();
    let (_, key) = api.tenant("acme").await;
    let (_, plugin) = api.upload(&key, "hostile").await;
    let id = plugin["id"].as_str().unwrap();
    let test = json!({"response": {"body": {"base64": "AAEC"}}, "settings": {"mode": "panic"}});
    let (status, report) =
        api.call("POST", &format!("/v1/plugins/{id}/test"), Some(&key), Some(&test.to_string())).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["failure"]["kind"], "trap");
    assert!(report["failure"]["message"].as_str().unwrap().contains("fixture panicked on purpose"));
    assert_eq!(report["logs"][0]["source"], "stderr");
}

#[tokio::test]
async fn invalid_uploads_are_400_invalid_plugin_naming_the_problem() {
    let api = TestApi::new();
    let (_, key) = api.tenant("acme").await;
    let (status, body) = api.upload(&key, "foreign-import").await;
    assert_eq!((status, code(&body)), (400, "invalid_plugin"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("fixture:evil/exfil"));
    let (status, body) = api.upload(&key, "wrong-world").await;
    assert_eq!((status, code(&body)), (400, "invalid_plugin"), "{body}");
    let (status, body) =
        api.call_raw("POST", "/v1/plugins?name=junk", Some(&key), Some("application/wasm"), b"junk".to_vec()).await;
    assert_eq!((status, code(&body)), (400, "invalid_plugin"));
    let (status, body) =
        api.call_raw("POST", "/v1/plugins", Some(&key), Some("application/wasm"), plugin_bytes("passthrough")).await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "a name is required");
    let (status, body) =
        api.call_raw("POST", "/v1/plugins?name=p", Some(&key), Some("text/plain"), plugin_bytes("passthrough")).await;
    assert_eq!((status, code(&body)), (400, "invalid_request"));
    let (status, body) = api
        .call_raw(
            "POST",
            "/v1/plugins?name=p&version=2",
            Some(&key),
            Some("application/wasm"),
            plugin_bytes("passthrough"),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_request"), "unknown query parameters are refused");
    let (_, list) = api.call("GET", "/v1/plugins", Some(&key), None).await;
    assert_eq!(list["plugins"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn plugin_quotas_are_403_naming_the_limit() {
    let api = TestApi::new();
    let (id, key) = api.tenant("acme").await;
    let quotas = r#"{"quotas": {"max_plugins": 1, "max_plugin_bytes": 100000}}"#;
    api.call("PATCH", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), Some(quotas)).await;
    assert_eq!(api.upload(&key, "passthrough").await.0, 201);
    let (status, body) = api.upload(&key, "json-split").await;
    assert_eq!((status, code(&body)), (403, "quota_exceeded"));
    assert!(body["error"]["message"].as_str().unwrap().contains("max_plugins"));
    let (status, body) = api.upload(&key, "hostile").await;
    assert_eq!((status, code(&body)), (403, "quota_exceeded"), "hostile.wasm is over 100 kB");
    assert!(body["error"]["message"].as_str().unwrap().contains("max_plugin_bytes"));
}

#[tokio::test]
async fn uploads_past_the_route_limit_are_413() {
    let api = TestApi::new();
    let (_, key) = api.tenant("acme").await;
    let (status, body) =
        api.call_raw("POST", "/v1/plugins?name=big", Some(&key), Some("application/wasm"), vec![0; 33 << 20]).await;
    assert_eq!((status, code(&body)), (413, "too_large"), "{body}");
}

#[tokio::test]
async fn another_tenants_plugin_is_indistinguishable_from_an_absent_one() {
    let api = TestApi::new();
    let (_, owner) = api.tenant("owner").await;
    let (_, other) = api.tenant("other").await;
    let (_, plugin) = api.upload(&owner, "passthrough").await;
    let id = plugin["id"].as_str().unwrap();
    let absent = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let test = r#"{"response": {"body": {"text": "x"}}}"#;
    for target in [id, absent] {
        let (status, foreign) = api.call("GET", &format!("/v1/plugins/{target}"), Some(&other), None).await;
        assert_eq!(status, 404);
        let (status, _) = api.call("POST", &format!("/v1/plugins/{target}/test"), Some(&other), Some(test)).await;
        assert_eq!(status, 404);
        let (status, _) = api.call("DELETE", &format!("/v1/plugins/{target}"), Some(&other), None).await;
        assert_eq!(status, 404);
        // The message names only the id the caller sent, so it reveals nothing else.
        assert_eq!(
            foreign["error"]["message"],
            format!("no plugin with id {target}; list your plugins with GET /v1/plugins")
        );
    }
    let (_, list) = api.call("GET", "/v1/plugins", Some(&other), None).await;
    assert_eq!(list["plugins"], json!([]));
    let (status, _) = api.call("GET", &format!("/v1/plugins/{id}"), Some(&owner), None).await;
    assert_eq!(status, 200, "the owner still has it");
}
