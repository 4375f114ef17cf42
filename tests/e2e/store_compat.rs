//! A data directory written by an earlier release opens in this one with everything in it: the
//! fixture `tests/fixtures/store-v1.tar.gz` was written by the store as it was before large values
//! were split into pieces (schema version 1), with a 200 KB record that sled kept in a blob file
//! of its own and a state larger than one piece.

use sluice::store::{Stage, Store, Trigger, Trust};

const TENANT: &str = "ten_7f6e888aad404bb0";
const KEY: &str = "slk_191d594b35be6bdd124760603181181f06ea80f2f3b9a04a7b10d6a4a36cc24e";
const PROJECT: &str = "prj_00000000000f1x7e";

fn unpack() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = sluice_tests::root().join("tests/fixtures/store-v1.tar.gz");
    let status = std::process::Command::new("tar").arg("xzf").arg(&fixture).arg("-C").arg(dir.path()).status();
    assert!(status.is_ok_and(|s| s.success()), "tar could not unpack {}", fixture.display());
    dir
}

/// Opens the store again once the dropped one has let go of its file lock, which sled's
/// background flusher holds until its next wake-up.
fn reopen(path: &std::path::Path) -> Store {
    let started = std::time::Instant::now();
    loop {
        match Store::open(path) {
            Ok(store) => return store,
            Err(e) if e.to_string().contains("could not acquire lock") && started.elapsed().as_secs() < 10 => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("cannot reopen the store: {e}"),
        }
    }
}

async fn check(store: &Store) {
    let tenant = store.tenant_for_key(KEY).await.unwrap().expect("the key still authenticates");
    assert_eq!((tenant.id.as_str(), tenant.name.as_str()), (TENANT, "fixture"));
    let plugins = store.plugins(TENANT).await.unwrap();
    assert_eq!(plugins.len(), 1);
    assert_eq!(store.plugin_bytes(&plugins[0].id).await.unwrap().as_deref(), Some(&b"\0asm fixture plugin bytes"[..]));
    let project = store.project(TENANT, PROJECT).await.unwrap().expect("the project");
    assert_eq!((project.schedule.to_string(), project.timezone.name()), ("rate(1 hour)".into(), "Europe/Berlin"));
    assert_eq!(project.target.stream_arn.region(), "eu-central-1", "ARNs come back parsed");
    assert_eq!(project.source.url.url().host_str(), Some("api.example.com"));
    assert_eq!(project.onboarding.external_id, "ext-fixture");
    assert_eq!(project.trust, Trust::Project, "a project from before keeps its own external id");
    assert_eq!(tenant.external_id.len(), 32, "a tenant from before gets an external id of its own");

    let runs = store.runs(TENANT, PROJECT, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger, Trigger::Schedule);
    assert_eq!(runs[0].error.as_ref().map(|e| e.stage), Some(Stage::Deliver));
    assert_eq!(runs[0].stage_ms.get(&Stage::AssumeRole), Some(&12.5));
    assert!(runs[0].logs.is_empty() && !runs[0].page_cap_reached, "fields added since default");
    assert_eq!(store.usage(TENANT).await.unwrap().runs, 1);
}

#[tokio::test]
async fn a_store_written_before_values_were_split_opens_with_everything_in_it() {
    let dir = unpack();
    let path = dir.path().join("fixture-v1");
    let store = Store::open(&path).unwrap();
    check(&store).await;
    assert_eq!(store.committed_state(TENANT, PROJECT).await.unwrap().as_deref(), Some(&b"cursor=1"[..]));
    let waiting = store.outbox_of(TENANT, PROJECT).await.unwrap();
    let runs: Vec<&str> = waiting.iter().map(|(_, e)| e.run_id.as_str()).collect();
    assert_eq!(runs, ["run_000000000000000a", "run_000000000000000b"], "oldest first");
    let first = &waiting[0].1;
    assert_eq!(first.state.as_deref(), Some(&[b's'; 10_000][..]));
    assert_eq!(first.records[1].explicit_hash_key.as_deref(), Some("12345"));
    assert_eq!(first.records[2].data, [0, 159, 146, 150]);
    assert_eq!(waiting[1].1.records[0].data.len(), 200_000);
    assert_eq!(store.next_state(TENANT, PROJECT).await.unwrap().as_deref(), Some(&[b's'; 10_000][..]));
    let disk = store.disk_usage(TENANT).await.unwrap();
    assert!(disk.outbox_bytes > 210_000 && disk.state_bytes > 8 && disk.history_bytes > 100, "{disk:?}");
    let external_id = store.tenant(TENANT).await.unwrap().unwrap().external_id;
    drop(store);

    // Migrated once: it opens again as it is, and delivering commits the states in order.
    let store = reopen(&path);
    check(&store).await;
    assert_eq!(store.tenant(TENANT).await.unwrap().unwrap().external_id, external_id, "the same id after reopening");
    let waiting = store.outbox_of(TENANT, PROJECT).await.unwrap();
    assert_eq!(waiting.len(), 2);
    for (key, entry) in &waiting {
        store.complete_delivery(key, entry).await.unwrap();
    }
    assert_eq!(store.committed_state(TENANT, PROJECT).await.unwrap().as_deref(), Some(&[b's'; 10_000][..]));
    assert_eq!(store.disk_usage(TENANT).await.unwrap().outbox_bytes, 0);
}
