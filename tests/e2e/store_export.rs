//! `sluice store export` and `import` as an operator moving a host would run them: the daemon is
//! killed with records waiting for Kinesis, its store is exported with the real binary, imported
//! into a new data directory, and a daemon on the new directory delivers the waiting records
//! once, keeps the committed state, and accepts the tenant's old key.

use std::path::Path;
use std::process::Command;

use sluice_tests::sluice_bin;
use sluice_tests::world::World;

/// Runs `sluice store <args>` on `data_dir`; returns the exit code and stderr.
fn store_command(data_dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(sluice_bin())
        .arg("store")
        .args(args)
        .env("SLUICE_DATA_DIR", data_dir)
        .env_remove("SLUICE_ADMIN_TOKEN")
        .output()
        .expect("sluice runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moved_by_export_and_import_delivers_its_waiting_records_once() {
    let mut world = World::start();
    let tenant = world.tenant("acme", "111111111111").await;
    let (id, arn) = world.leave_records_waiting(&tenant).await;

    // A running daemon holds its store: the export says to stop it.
    let file = world.dir.path().join("acme.jsonl");
    let out = file.to_str().unwrap();
    let (code, stderr) = store_command(world.dir.path(), &["export", "--out", out]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("in use by another process") && stderr.contains("stop the `sluice serve`"), "{stderr}");

    world.kill();
    let (code, stderr) = store_command(world.dir.path(), &["export", "--out", out]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("1 tenants") && stderr.contains("1 outbox entries"), "{stderr}");
    assert!(stderr.contains("(20 records waiting for Kinesis)"), "{stderr}");
    let export = std::fs::read_to_string(&file).unwrap();
    assert!(!export.contains(&tenant.key), "the export holds the key's hash, never the key");

    let moved = tempfile::tempdir().unwrap();
    let (code, stderr) = store_command(moved.path(), &["import", "--from", out]);
    assert_eq!(code, 0, "{stderr}");
    // Importing again into the filled directory is refused, naming the setting.
    let (code, stderr) = store_command(moved.path(), &["import", "--from", out]);
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("data_dir") && stderr.contains("already holds tenants"), "{stderr}");

    // The daemon starts on the new directory, with Kinesis back.
    world.proxy.set_down("Kinesis_20131202.", false);
    world.dir = moved;
    world.restart();
    world.expect_waiting_records_delivered_once(&tenant, &id, &arn);

    // The tenant's key works, its history came along, and the next run starts after item 29.
    let (status, runs) = world.call("GET", &format!("/v1/projects/{id}/runs"), &tenant.key, None);
    assert_eq!(status, 200, "{runs}");
    // The first run's history, at least: the failed run's record is durable with the next sync
    // or within sled's 500 ms, and the daemon was killed right after it.
    assert!(runs["runs"].as_array().is_some_and(|r| r.iter().any(|run| run["records"] == 10)), "{runs}");
}
