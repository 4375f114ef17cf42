//! The real `sluice serve` binary: configuration errors, durability across `kill -9`, and
//! graceful shutdown.

use std::process::Command;
use std::time::{Duration, Instant};

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
    daemon.kill();

    let daemon = Daemon::start(dir.path());
    let (status, shown) = daemon.call("GET", &format!("/v1/tenants/{id}"), Some(ADMIN_TOKEN), None);
    assert_eq!(status, 200);
    assert_eq!((shown["name"].as_str(), shown["tier"].as_str()), (Some("durable"), Some("premium")));
    let (status, me) = daemon.call("GET", "/v1/me", Some(&key), None);
    assert_eq!((status, me["id"].as_str()), (200, Some(id.as_str())));
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let (status, _) = daemon.call("GET", "/healthz", None, None);
    assert_eq!(status, 200);
    let pid = daemon.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let code = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(started.elapsed() < Duration::from_secs(15), "sluice did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
}
