//! Projects over HTTP: the contract's create body, validation of every field, onboarding values,
//! PATCH, pause/resume, delete, quotas, and isolation between tenants.

use serde_json::{Value, json};
use sluice_tests::{ADMIN_TOKEN, PLATFORM_PRINCIPAL, TestApi};

const STREAM: &str = "arn:aws:kinesis:eu-central-1:123456789012:stream/weather";
const ROLE: &str = "arn:aws:iam::123456789012:role/sluice-delivery";
const SECRET: &str = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:weather-key-AbCdEf";

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

/// The contract's example body, pointing at `plugin_id`.
fn project_body(plugin_id: &str) -> Value {
    json!({
        "name": "weather-berlin",
        "schedule": "rate(5 minutes)",
        "timezone": "UTC",
        "source": {
            "url": "https://api.example.com/v1/obs?city=berlin",
            "method": "GET",
            "headers": {"accept": "application/json"},
            "api_key": {"secret_arn": SECRET, "header": "x-api-key", "prefix": "", "json_field": null},
        },
        "plugin_id": plugin_id,
        "plugin_settings": {"partition_key_field": "id"},
        "target": {"stream_arn": STREAM, "role_arn": ROLE},
    })
}

/// A tenant with one plugin: (tenant id, key, plugin id).
async fn tenant_with_plugin(api: &TestApi, name: &str) -> (String, String, String) {
    tenant_with(api, name, "json-split").await
}

async fn tenant_with(api: &TestApi, name: &str, plugin: &str) -> (String, String, String) {
    let (id, key) = api.tenant(name).await;
    let (status, plugin) = api.upload(&key, plugin).await;
    assert_eq!(status, 201);
    (id, key, plugin["id"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn create_show_change_pause_resume_and_delete() {
    let api = TestApi::new();
    let (_, key, plugin) = tenant_with_plugin(&api, "acme").await;
    let (status, project) =
        api.call("POST", "/v1/projects", Some(&key), Some(&project_body(&plugin).to_string())).await;
    assert_eq!(status, 201, "{project}");
    let id = project["id"].as_str().unwrap();
    assert!(id.starts_with("prj_"));
    assert_eq!(project["status"], "pending");
    assert!(project["status_message"].as_str().unwrap().contains("onboarding.external_id"));
    assert_eq!(project["onboarding"]["platform_principal_arn"], PLATFORM_PRINCIPAL);
    let external_id = project["onboarding"]["external_id"].as_str().unwrap().to_string();
    assert_eq!(external_id.len(), 32);
    assert_eq!(project["max_pages"], 10);
    assert_eq!(project["source"]["api_key"]["header"], "x-api-key");

    let (status, list) = api.call("GET", "/v1/projects", Some(&key), None).await;
    assert_eq!((status, list["projects"].as_array().unwrap().len()), (200, 1));

    let patch = json!({"schedule": "cron(0/10 * * * ? *)", "timezone": "Europe/Berlin", "plugin_settings": {}});
    let (status, changed) =
        api.call("PATCH", &format!("/v1/projects/{id}"), Some(&key), Some(&patch.to_string())).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["timezone"], "Europe/Berlin");
    assert_eq!(changed["plugin_settings"], json!({}));
    assert_eq!(changed["onboarding"]["external_id"], external_id.as_str(), "the external id never changes");
    assert_eq!(changed["name"], "weather-berlin", "fields not in the patch stay");

    let (status, paused) = api.call("POST", &format!("/v1/projects/{id}/pause"), Some(&key), None).await;
    assert_eq!((status, paused["status"].as_str()), (200, Some("paused")));
    let (status, resumed) = api.call("POST", &format!("/v1/projects/{id}/resume"), Some(&key), None).await;
    assert_eq!((status, resumed["status"].as_str()), (200, Some("pending")));

    // A plugin in use cannot be deleted.
    let (status, body) = api.call("DELETE", &format!("/v1/plugins/{plugin}"), Some(&key), None).await;
    assert_eq!((status, code(&body)), (409, "conflict"));
    assert!(message(&body).contains(id), "{body}");

    let (status, _) = api.call("DELETE", &format!("/v1/projects/{id}"), Some(&key), None).await;
    assert_eq!(status, 204);
    let (status, body) = api.call("GET", &format!("/v1/projects/{id}"), Some(&key), None).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, _) = api.call("DELETE", &format!("/v1/plugins/{plugin}"), Some(&key), None).await;
    assert_eq!(status, 204, "unused now");
}

#[tokio::test]
async fn every_invalid_field_is_400_naming_it_and_changes_nothing() {
    let api = TestApi::new();
    let (_, key, plugin) = tenant_with_plugin(&api, "acme").await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/name", json!(""), "`name`"),
        ("/schedule", json!("every 5 minutes"), "`schedule`"),
        ("/schedule", json!("rate(5 minute)"), "`schedule`"),
        ("/schedule", json!("cron(0 12 1 * MON *)"), "`schedule`"),
        ("/timezone", json!("Mars/Olympus"), "`timezone`"),
        ("/source/url", json!("ftp://example.com/x"), "only http and https"),
        ("/source/url", json!("not a url"), "`source.url`"),
        ("/source/url", json!("https://user:pw@example.com/"), "credentials"),
        ("/source/method", json!("DELETE"), "GET or POST"),
        ("/source/headers", json!({"bad header": "x"}), "header name"),
        ("/source/headers", json!({"host": "x"}), "set by the host"),
        ("/source/headers", json!({"x-a": "line\nbreak"}), "line breaks"),
        ("/source/api_key/secret_arn", json!("arn:aws:kinesis:eu-central-1:123456789012:stream/x"), "secret_arn"),
        ("/source/api_key/query_param", json!("key"), "choose one"),
        ("/plugin_id", json!("sha256:00"), "upload it"),
        ("/target/stream_arn", json!(ROLE), "`target.stream_arn`"),
        ("/target/role_arn", json!(STREAM), "`target.role_arn`"),
        ("/target/role_arn", json!("arn:aws:iam::12345:role/x"), "12-digit"),
        ("/max_pages", json!(0), "`max_pages`"),
        ("/source/extra", json!(1), "unknown field `extra`"),
        ("/target/region", json!("eu-central-1"), "unknown field `region`"),
    ];
    for (pointer, value, expected) in cases {
        let mut body = project_body(&plugin);
        let (parent, field) = pointer.rsplit_once('/').unwrap();
        body.pointer_mut(if parent.is_empty() { "" } else { parent }).unwrap()[field] = value.clone();
        let (status, response) = api.call("POST", "/v1/projects", Some(&key), Some(&body.to_string())).await;
        assert_eq!((status, code(&response)), (400, "invalid_request"), "{pointer} = {value}: {response}");
        assert!(message(&response).contains(expected), "{pointer} = {value}: {}", message(&response));
    }
    let mut missing = project_body(&plugin);
    missing.as_object_mut().unwrap().remove("target");
    let (status, response) = api.call("POST", "/v1/projects", Some(&key), Some(&missing.to_string())).await;
    assert_eq!(status, 400);
    assert!(message(&response).contains("missing field `target`"), "{response}");

    let (_, list) = api.call("GET", "/v1/projects", Some(&key), None).await;
    assert_eq!(list["projects"], json!([]), "no bad request created anything");

    // A bad PATCH changes nothing either.
    let (_, project) = api.call("POST", "/v1/projects", Some(&key), Some(&project_body(&plugin).to_string())).await;
    let id = project["id"].as_str().unwrap();
    let (status, _) = api
        .call(
            "PATCH",
            &format!("/v1/projects/{id}"),
            Some(&key),
            Some(r#"{"name": "ok", "schedule": "rate(0 minutes)"}"#),
        )
        .await;
    assert_eq!(status, 400);
    let (_, shown) = api.call("GET", &format!("/v1/projects/{id}"), Some(&key), None).await;
    assert_eq!(shown, project);
}

#[tokio::test]
async fn quotas_limit_project_count_and_schedule_frequency() {
    let api = TestApi::new();
    let (tenant, key, plugin) = tenant_with_plugin(&api, "acme").await;
    // The free tier allows schedules of at most one run per 5 minutes.
    let mut body = project_body(&plugin);
    body["schedule"] = json!("rate(1 minute)");
    let (status, response) = api.call("POST", "/v1/projects", Some(&key), Some(&body.to_string())).await;
    assert_eq!((status, code(&response)), (403, "quota_exceeded"));
    assert!(message(&response).contains("min_interval_seconds"), "{response}");

    api.call("PATCH", &format!("/v1/tenants/{tenant}"), Some(ADMIN_TOKEN), Some(r#"{"quotas": {"max_projects": 1}}"#))
        .await;
    let body = project_body(&plugin).to_string();
    assert_eq!(api.call("POST", "/v1/projects", Some(&key), Some(&body)).await.0, 201);
    let (status, response) = api.call("POST", "/v1/projects", Some(&key), Some(&body)).await;
    assert_eq!((status, code(&response)), (403, "quota_exceeded"));
    assert!(message(&response).contains("max_projects"), "{response}");
}

#[tokio::test]
async fn changing_the_role_restarts_onboarding() {
    let api = TestApi::new();
    let (_, key, plugin) = tenant_with_plugin(&api, "acme").await;
    let (_, project) = api.call("POST", "/v1/projects", Some(&key), Some(&project_body(&plugin).to_string())).await;
    let id = project["id"].as_str().unwrap();
    let patch = json!({"target": {"stream_arn": STREAM, "role_arn": "arn:aws:iam::123456789012:role/other"}});
    let (status, changed) =
        api.call("PATCH", &format!("/v1/projects/{id}"), Some(&key), Some(&patch.to_string())).await;
    assert_eq!((status, changed["status"].as_str()), (200, Some("pending")));
}

#[tokio::test]
async fn another_tenants_project_is_indistinguishable_from_an_absent_one() {
    let api = TestApi::new();
    let (_, owner, plugin) = tenant_with_plugin(&api, "owner").await;
    let (_, other, _) = tenant_with(&api, "other", "passthrough").await;
    let (_, project) = api.call("POST", "/v1/projects", Some(&owner), Some(&project_body(&plugin).to_string())).await;
    let id = project["id"].as_str().unwrap();
    for target in [id, "prj_0000000000000000"] {
        for (method, suffix, body) in [
            ("GET", "", None),
            ("PATCH", "", Some(r#"{"name": "mine now"}"#)),
            ("DELETE", "", None),
            ("POST", "/pause", None),
            ("POST", "/resume", None),
            ("POST", "/run", None),
        ] {
            let (status, response) =
                api.call(method, &format!("/v1/projects/{target}{suffix}"), Some(&other), body).await;
            assert_eq!((status, code(&response)), (404, "not_found"), "{method} {target}{suffix}");
            assert!(message(&response).starts_with(&format!("no project with id {target};")));
        }
    }
    // Nor can a tenant point its project at another tenant's plugin.
    let (status, response) =
        api.call("POST", "/v1/projects", Some(&other), Some(&project_body(&plugin).to_string())).await;
    assert_eq!(status, 400, "{response}");
    assert!(message(&response).contains("`plugin_id`"), "{response}");
    let (_, list) = api.call("GET", "/v1/projects", Some(&other), None).await;
    assert_eq!(list["projects"], json!([]));
    let (_, shown) = api.call("GET", &format!("/v1/projects/{id}"), Some(&owner), None).await;
    assert_eq!(shown, project, "the owner's project is untouched");
}

fn run(project: &str, n: i64, outcome: sluice::store::RunOutcome) -> sluice::store::Run {
    let at = jiff::Timestamp::from_second(1_767_225_600 + n).unwrap().to_string();
    sluice::store::Run {
        id: format!("run_{n:016x}"),
        plugin_id: None,
        project_id: project.into(),
        trigger: sluice::store::Trigger::Schedule,
        scheduled_at: at.clone(),
        started_at: at.clone(),
        finished_at: at,
        outcome,
        http_status: Some(200),
        pages: 1,
        records: 2,
        bytes_fetched: 10,
        bytes_delivered: 8,
        stage_ms: Default::default(),
        error: None,
        page_cap_reached: false,
        logs: Vec::new(),
        logs_dropped: 0,
    }
}

#[tokio::test]
async fn runs_are_listed_newest_first_and_usage_adds_them_up() {
    use sluice::store::RunOutcome;
    let api = TestApi::new();
    let (tenant, key, plugin) = tenant_with_plugin(&api, "acme").await;
    let (_, project) = api.call("POST", "/v1/projects", Some(&key), Some(&project_body(&plugin).to_string())).await;
    let id = project["id"].as_str().unwrap();
    for n in 0..5 {
        let outcome = if n == 3 { RunOutcome::Failed } else { RunOutcome::Succeeded };
        api.store.record_run(&tenant, &run(id, n, outcome), 2.0).await.unwrap();
    }
    let (status, runs) = api.call("GET", &format!("/v1/projects/{id}/runs?limit=3"), Some(&key), None).await;
    assert_eq!(status, 200, "{runs}");
    let ids: Vec<&str> = runs["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["run_0000000000000004", "run_0000000000000003", "run_0000000000000002"]);
    assert_eq!(runs["runs"][1]["outcome"], "failed");

    let (status, usage) = api.call("GET", "/v1/usage", Some(&key), None).await;
    assert_eq!(status, 200);
    assert_eq!((usage["runs"].as_u64(), usage["runs_failed"].as_u64()), (Some(5), Some(1)));
    assert_eq!(usage["records_delivered"], 8);
    assert_eq!(usage["plugin_ms"], 10.0);

    let (status, body) = api.call("GET", &format!("/v1/projects/{id}/runs?limit=0"), Some(&key), None).await;
    assert_eq!((status, code(&body)), (400, "invalid_request"));
    let (_, other) = api.tenant("other").await;
    let (status, _) = api.call("GET", &format!("/v1/projects/{id}/runs"), Some(&other), None).await;
    assert_eq!(status, 404);
    let (_, other_usage) = api.call("GET", "/v1/usage", Some(&other), None).await;
    assert_eq!(other_usage["runs"], 0);

    api.call("DELETE", &format!("/v1/projects/{id}"), Some(&key), None).await;
    assert!(api.store.runs(&tenant, id, 100).await.unwrap().is_empty(), "deleting a project deletes its history");
}

#[tokio::test]
async fn run_now_hands_the_scheduler_a_manual_tick_with_its_own_time() {
    let api = TestApi::new();
    let (_, key, plugin) = tenant_with_plugin(&api, "acme").await;
    let (_, project) = api.call("POST", "/v1/projects", Some(&key), Some(&project_body(&plugin).to_string())).await;
    let id = project["id"].as_str().unwrap();
    let (status, started) = api.call("POST", &format!("/v1/projects/{id}/run"), Some(&key), None).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(started["runs_url"], format!("/v1/projects/{id}/runs"));
    let at: jiff::Timestamp = started["scheduled_at"].as_str().unwrap().parse().unwrap();
    let mut waited = 0;
    let tick = loop {
        if let Some(tick) = api.ticks.lock().unwrap().iter().find(|t| &*t.key.project == id).cloned() {
            break tick;
        }
        assert!(waited < 100, "the scheduler fired the manual run within 5 s");
        waited += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((tick.trigger, tick.scheduled_at), (sluice::scheduler::Trigger::Manual, at));
    assert_eq!(&*tick.key.tenant, project["tenant_id"].as_str().unwrap());
}
