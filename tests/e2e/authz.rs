//! The authorization matrix: every tenant-scoped route × every kind of caller gives the
//! documented code, and another tenant's id answers exactly like an absent one.

use serde_json::{Value, json};
use sluice_tests::{ADMIN_TOKEN, TestApi, plugin_bytes};

const ABSENT_PLUGIN: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const ABSENT_PROJECT: &str = "prj_1111111111111111";

struct Route {
    method: &'static str,
    path: String,
    body: Option<String>,
    /// The owner's status.
    own: u16,
    /// Whether the path names one of the owner's resources (so another tenant gets 404).
    names_resource: bool,
    /// Another tenant's status on a route that names no resource (its own view).
    stranger: u16,
}

fn route(method: &'static str, path: String, body: Option<String>, own: u16, names_resource: bool) -> Route {
    Route { method, path, body, own, names_resource, stranger: own }
}

/// The body of a project for `plugin`.
fn project(plugin: &str) -> String {
    json!({
        "name": "p",
        "schedule": "rate(10 minutes)",
        "source": {"url": "https://api.example.com/"},
        "plugin_id": plugin,
        "target": {
            "stream_arn": "arn:aws:kinesis:eu-central-1:123456789012:stream/s",
            "role_arn": "arn:aws:iam::123456789012:role/r",
        },
    })
    .to_string()
}

async fn call(api: &TestApi, route: &Route, token: Option<&str>) -> (u16, Value) {
    if route.method == "POST" && route.path.starts_with("/v1/plugins?") {
        return api.call_raw("POST", &route.path, token, Some("application/wasm"), plugin_bytes("passthrough")).await;
    }
    api.call(route.method, &route.path, token, route.body.as_deref()).await
}

#[tokio::test]
async fn every_tenant_route_answers_every_kind_of_caller_as_documented() {
    let api = TestApi::new();
    let (_, owner) = api.tenant("owner").await;
    let (_, stranger) = api.tenant("stranger").await;
    let (disabled_id, disabled) = api.tenant("disabled").await;
    let (_, plugin) = api.upload(&owner, "json-split").await;
    let plugin = plugin["id"].as_str().unwrap().to_string();
    let (_, created) = api.call("POST", "/v1/projects", Some(&owner), Some(&project(&plugin))).await;
    let project_id = created["id"].as_str().unwrap().to_string();
    api.call("PATCH", &format!("/v1/tenants/{disabled_id}"), Some(ADMIN_TOKEN), Some(r#"{"status": "disabled"}"#))
        .await;

    let test_body = Some(r#"{"response": {"body": {"text": "[1]"}}}"#.to_string());
    // Destructive routes come last, so that every earlier route still finds its resource.
    let routes = vec![
        route("GET", "/v1/me".into(), None, 200, false),
        route("GET", "/v1/usage".into(), None, 200, false),
        route("GET", "/v1/plugins".into(), None, 200, false),
        route("POST", "/v1/plugins?name=p".into(), None, 201, false),
        route("GET", format!("/v1/plugins/{plugin}"), None, 200, true),
        route("POST", format!("/v1/plugins/{plugin}/test"), test_body, 200, true),
        route("GET", "/v1/projects".into(), None, 200, false),
        // Another tenant cannot build a project on the owner's plugin: to it, the id is unknown.
        Route { stranger: 400, ..route("POST", "/v1/projects".into(), Some(project(&plugin)), 201, false) },
        route("GET", format!("/v1/projects/{project_id}"), None, 200, true),
        route("PATCH", format!("/v1/projects/{project_id}"), Some(r#"{"name": "renamed"}"#.into()), 200, true),
        route("POST", format!("/v1/projects/{project_id}/pause"), None, 200, true),
        route("POST", format!("/v1/projects/{project_id}/resume"), None, 200, true),
        route("POST", format!("/v1/projects/{project_id}/run"), None, 202, true),
        route("GET", format!("/v1/projects/{project_id}/runs"), None, 200, true),
        route("DELETE", format!("/v1/plugins/{plugin}"), None, 409, true),
        route("DELETE", format!("/v1/projects/{project_id}"), None, 204, true),
    ];

    for route in &routes {
        let label = format!("{} {}", route.method, route.path);
        for (who, token, want) in [
            ("no key", None, 401),
            ("a bad key", Some("slk_not-a-real-key"), 401),
            ("the operator token", Some(ADMIN_TOKEN), 403),
            ("a disabled tenant's key", Some(disabled.as_str()), 403),
        ] {
            let (status, body) = call(&api, route, token).await;
            assert_eq!(status, want, "{label} with {who}: {body}");
            assert!(body["error"]["code"].is_string(), "{label} with {who}: {body}");
        }
        if route.names_resource {
            // Another tenant sees the owner's id exactly as it sees an absent one.
            let absent = route.path.replace(&plugin, ABSENT_PLUGIN).replace(&project_id, ABSENT_PROJECT);
            let (status, foreign) = call(&api, route, Some(&stranger)).await;
            let absent_route = Route { path: absent.clone(), body: route.body.clone(), ..*route };
            let (absent_status, missing) = call(&api, &absent_route, Some(&stranger)).await;
            assert_eq!((status, absent_status), (404, 404), "{label} as another tenant: {foreign}");
            let normalize =
                |v: &Value| v["error"]["message"].as_str().unwrap().replace(&plugin, "ID").replace(&project_id, "ID");
            let absent_message = missing["error"]["message"].as_str().unwrap().replace(ABSENT_PLUGIN, "ID");
            assert_eq!(normalize(&foreign), absent_message.replace(ABSENT_PROJECT, "ID"), "{label}");
        } else {
            let (status, body) = call(&api, route, Some(&stranger)).await;
            assert_eq!(status, route.stranger, "{label} as another tenant (its own view): {body}");
        }
        let (status, body) = call(&api, route, Some(&owner)).await;
        assert_eq!(status, route.own, "{label} as the owner: {body}");
    }
    // The stranger's own view never showed the owner's things.
    let (_, projects) = api.call("GET", "/v1/projects", Some(&stranger), None).await;
    assert_eq!(projects["projects"], json!([]));
}

/// Every file of the console, and the paths the page is opened at.
const CONSOLE: [&str; 9] = [
    "/console",
    "/console/",
    "/console/index.html",
    "/console/console.css",
    "/console/api.js",
    "/console/chart.js",
    "/console/tenant.js",
    "/console/operator.js",
    "/console/app.js",
];

/// The console is public static content: every kind of caller gets the same bytes, under a
/// policy that runs only this origin's scripts, and nothing in it names a tenant or a key. It
/// takes no other method, and a file it does not have is an ordinary 404.
#[tokio::test]
async fn the_console_is_the_same_static_content_for_every_caller() {
    let api = TestApi::new();
    let (tenant_id, key) = api.tenant("console-owner").await;
    let (disabled_id, disabled) = api.tenant("console-disabled").await;
    api.call("PATCH", &format!("/v1/tenants/{disabled_id}"), Some(ADMIN_TOKEN), Some(r#"{"status": "disabled"}"#))
        .await;
    for path in CONSOLE {
        let anonymous = api.send("GET", path, None, None, vec![]).await;
        assert_eq!(anonymous.status, 200, "GET {path}");
        let policy = anonymous.headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'self'") && policy.contains("script-src 'self';"), "{path}: {policy}");
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"), "{path}: {policy}");
        assert_eq!(anonymous.headers["x-content-type-options"], "nosniff", "{path}");
        let kind = anonymous.content_type.as_deref().unwrap();
        let expected = match path.rsplit('.').next() {
            Some("css") => "text/css",
            Some("js") => "text/javascript",
            _ => "text/html",
        };
        assert!(kind.starts_with(expected), "{path} is served as {kind}");
        let text = String::from_utf8(anonymous.body.clone()).unwrap();
        for secret in [key.as_str(), disabled.as_str(), ADMIN_TOKEN, tenant_id.as_str()] {
            assert!(!text.contains(secret), "{path} holds {secret}");
        }
        for (who, token) in [
            ("a bad key", "slk_not-a-real-key"),
            ("the operator", ADMIN_TOKEN),
            ("a tenant", key.as_str()),
            ("a disabled tenant", disabled.as_str()),
        ] {
            let answer = api.send("GET", path, Some(token), None, vec![]).await;
            assert_eq!((answer.status, &answer.body), (200, &anonymous.body), "GET {path} as {who}");
        }
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let refused = api.send(method, path, Some(&key), None, vec![]).await;
            assert_eq!(refused.status, 405, "{method} {path}");
        }
    }
    let missing = api.send("GET", "/console/secrets.json", Some(ADMIN_TOKEN), None, vec![]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "not_found");
}
