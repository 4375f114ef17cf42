//! The real `sluice serve` binary: configuration errors, durability across `kill -9`, and
//! graceful shutdown.

use std::process::Command;
use std::time::Duration;

use sluice_tests::{ADMIN_TOKEN, Daemon, sluice_bin};

#[test]
fn a_bad_setting_exits_64_naming_it_before_binding() {
    let out = Command::new(sluice_bin())
        .arg("serve")
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("SLUICE_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("SLUICE_LISTEN"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing was bound");

    let out = Command::new(sluice_bin()).arg("serve").env_remove("SLUICE_ADMIN_TOKEN").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLUICE_ADMIN_TOKEN"));

    // A memory budget smaller than one call's largest memory would let that call wait forever.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, "[runtime]\nmax_memory_bytes = 268435456\nmemory_budget_bytes = 67108864\n").unwrap();
    let out = Command::new(sluice_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("runtime.memory_budget_bytes") && stderr.contains("raise this"), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing was bound");
}

#[test]
fn what_was_acknowledged_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let (status, tenant) = daemon.call("POST", "/v1/tenants", Some(ADMIN_TOKEN), Some(r#"{"name": "durable"}"#));
    assert_eq!(status, 201, "{tenant}");
    let id = tenant["id"].as_str().unwrap().to_string();
    let key = tenant["api_key"].as_str().unwrap().to_string();
    let (status, _) =
        daemon.call("PATCH", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), Some(r#"{"tier": "premium"}"#));
    assert_eq!(status, 200);
    let wasm = sluice_tests::plugin_bytes("json-split");
    let (status, plugin) = sluice_tests::http_call_raw(
        daemon.addr,
        "POST",
        "/v1/plugins?name=split",
        Some(&key),
        "application/wasm",
        &wasm,
    );
    assert_eq!(status, 201, "{plugin}");
    let body = serde_json::json!({
        "name": "durable-project",
        "schedule": "cron(0 12 * * ? *)",
        "timezone": "Europe/Berlin",
        "source": {"url": "https://api.example.com/items"},
        "plugin_id": plugin["id"],
        "target": {
            "stream_arn": "arn:aws:kinesis:eu-central-1:123456789012:stream/s",
            "role_arn": "arn:aws:iam::123456789012:role/r",
        },
    });
    let (status, project) = daemon.call("POST", "/v1/projects", Some(&key), Some(&body.to_string()));
    assert_eq!(status, 201, "{project}");
    let project_id = project["id"].as_str().unwrap().to_string();
    // No pause between the last 201 and the kill: the write must already be on disk.
    daemon.kill();

    let daemon = Daemon::start(dir.path());
    let (status, shown) = daemon.call("GET", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!((shown["name"].as_str(), shown["tier"].as_str()), (Some("durable"), Some("premium")));
    let (status, me) = daemon.call("GET", "/v1/me", Some(&key), None);
    assert_eq!((status, me["id"].as_str()), (200, Some(id.as_str())));
    let (status, stored_plugin) =
        daemon.call("GET", &format!("/v1/plugins/{}", plugin["id"].as_str().unwrap()), Some(&key), None);
    assert_eq!((status, &stored_plugin), (200, &plugin));
    let (status, stored_project) = daemon.call("GET", &format!("/v1/projects/{project_id}"), Some(&key), None);
    assert_eq!((status, &stored_project), (200, &project));
    // The plugin still runs after the restart (compiled again or read from the cache).
    let test = r#"{"response": {"body": {"text": "[1, 2]"}}}"#;
    let (status, report) =
        daemon.call("POST", &format!("/v1/plugins/{}/test", plugin["id"].as_str().unwrap()), Some(&key), Some(test));
    assert_eq!((status, report["records"].as_array().map(Vec::len)), (200, Some(2)), "{report}");
}

/// Orchestrators send SIGTERM at any moment after start. Each round sends it the instant the
/// daemon prints its address (or, every other round, the instant `/healthz` first answers), while
/// two threads keep the cores busy so that the daemon's own tasks are slow to be polled: a
/// handler installed lazily, by a task that has not run yet, would let the signal's default
/// action kill the process (exit status without a code).
#[test]
fn sigterm_shuts_down_cleanly() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let rounds = 16;
    let mut failures = Vec::new();
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Daemon::start(dir.path());
        if round % 2 == 1 {
            let (status, _) = daemon.call("GET", "/healthz", None, None);
            assert_eq!(status, 200);
        }
        let code = daemon.terminate();
        if code != Some(0) || !daemon.log().contains("shutting down") {
            failures.push(format!("round {round}: exit code {code:?}, log:\n{}", daemon.log()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    assert!(
        failures.is_empty(),
        "{} of {rounds} SIGTERMs did not shut down gracefully:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_platform_principal_comes_from_sts_when_not_configured() {
    let moto = sluice_tests::Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), &moto.env());
    let (_, tenant) = daemon.call("POST", "/v1/tenants", Some(ADMIN_TOKEN), Some(r#"{"name": "acme"}"#));
    let key = tenant["api_key"].as_str().unwrap();
    let wasm = sluice_tests::plugin_bytes("passthrough");
    let (status, plugin) =
        sluice_tests::http_call_raw(daemon.addr, "POST", "/v1/plugins?name=p", Some(key), "application/wasm", &wasm);
    assert_eq!(status, 201, "{plugin}");
    let body = serde_json::json!({
        "name": "p",
        "schedule": "rate(5 minutes)",
        "source": {"url": "https://api.example.com/"},
        "plugin_id": plugin["id"],
        "target": {
            "stream_arn": "arn:aws:kinesis:eu-central-1:123456789012:stream/s",
            "role_arn": "arn:aws:iam::123456789012:role/r",
        },
    });
    let (status, project) = daemon.call("POST", "/v1/projects", Some(key), Some(&body.to_string()));
    assert_eq!(status, 201, "{project}");
    // moto answers GetCallerIdentity for its default account.
    let principal = project["onboarding"]["platform_principal_arn"].as_str().unwrap();
    assert!(principal.starts_with("arn:aws:") && principal.contains(":123456789012:"), "{principal}");
}

#[test]
fn without_aws_credentials_or_a_configured_principal_serve_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sluice_bin())
        .arg("serve")
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .env("SLUICE_DATA_DIR", dir.path())
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env_remove("SLUICE_PLATFORM_PRINCIPAL_ARN")
        // An endpoint where nothing listens: STS cannot answer.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "eu-central-1")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("platform principal") && stderr.contains("SLUICE_PLATFORM_PRINCIPAL_ARN"), "{stderr}");
}

#[test]
fn a_request_in_flight_at_sigterm_still_gets_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let (_, tenant) = daemon.call("POST", "/v1/tenants", Some(ADMIN_TOKEN), Some(r#"{"name": "acme"}"#));
    let key = tenant["api_key"].as_str().unwrap().to_string();
    let addr = daemon.addr;
    // An upload compiles the component before answering, which takes a while: long enough for
    // the signal to arrive while the request is being handled.
    let upload = std::thread::spawn(move || {
        let wasm = sluice_tests::plugin_bytes("hostile");
        sluice_tests::http_call_raw(addr, "POST", "/v1/plugins?name=slow", Some(&key), "application/wasm", &wasm)
    });
    std::thread::sleep(Duration::from_millis(50));
    let code = daemon.terminate();
    let (status, plugin) = upload.join().unwrap();
    assert_eq!(status, 201, "{plugin}");
    assert_eq!(code, Some(0));
}
