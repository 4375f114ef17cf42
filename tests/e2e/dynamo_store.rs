//! The shared store's control plane on moto's DynamoDB and S3, as two hosts would use it: two
//! `DynamoStore`s on one table, each change made through one seen at once through the other,
//! quotas held under concurrent creates from both, and a component's object leaving S3 only with
//! its last holder.

use std::sync::Arc;

use aws_sdk_kinesis::config::Credentials;
use sluice::records::Record;
use sluice::store::dynamo::{DynamoSettings, DynamoStore};
use sluice::store::{
    CreatePlugin, CreateProject, DeletePlugin, OutboxEntry, ParkedAction, PluginMeta, Project, Run, Tier,
};
use sluice_tests::Moto;
use sluice_tests::fault_proxy::FaultProxy;
use sluice_tests::tenant_account::sdk_config;

struct Shared {
    _moto: Moto,
    proxy: FaultProxy,
    sdk: aws_config::SdkConfig,
    settings: DynamoSettings,
}

impl Shared {
    /// moto behind a proxy that hands it one request at a time: DynamoDB applies each request
    /// atomically, and moto needs the help (see `FaultProxy::one_at_a_time`).
    async fn start() -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::start(&moto.endpoint);
        proxy.one_at_a_time();
        let sdk = sdk_config(&proxy.endpoint, Credentials::new("testing", "testing", None, None, "test")).await;
        let settings = DynamoSettings { table: "sluice".into(), bucket: "sluice-components".into() };
        DynamoStore::new(&sdk, &settings).init().await.unwrap();
        Self { _moto: moto, proxy, sdk, settings }
    }

    /// A store as one more host would open it.
    fn host(&self) -> DynamoStore {
        DynamoStore::new(&self.sdk, &self.settings)
    }

    /// The component objects in the bucket.
    async fn objects(&self) -> Vec<String> {
        self.objects_under("components/").await
    }

    /// The objects in the bucket under `prefix`.
    async fn objects_under(&self, prefix: &str) -> Vec<String> {
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&self.sdk).force_path_style(true).build());
        let listed = s3.list_objects_v2().bucket(&self.settings.bucket).prefix(prefix).send().await.unwrap();
        listed.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
    }
}

fn project(tenant: &str, id: &str, plugin: &str) -> Project {
    serde_json::from_value(serde_json::json!({
        "id": id, "tenant_id": tenant, "name": "p", "schedule": "rate(1 hour)", "timezone": "UTC",
        "source": {"url": "https://api.example.com/"}, "plugin_id": plugin, "plugin_settings": {},
        "target": {"stream_arn": "arn:aws:kinesis:eu-central-1:111111111111:stream/s",
                   "role_arn": "arn:aws:iam::111111111111:role/r"},
        "max_pages": 10, "status": "pending", "status_message": "",
        "onboarding": {"platform_principal_arn": "arn:aws:iam::1:role/x", "external_id": "e"},
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap()
}

/// A plugin record for `bytes`; the store takes the id as given (the API computes the digest),
/// so a hash of the bytes does as an id here.
fn plugin(bytes: &[u8]) -> PluginMeta {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    PluginMeta {
        id: format!("sha256:{:016x}", hasher.finish()),
        name: "p".into(),
        size_bytes: bytes.len() as u64,
        created_at: "2026-12-07T10:00:00Z".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_on_one_host_is_seen_on_the_other_at_once() {
    let shared = Shared::start().await;
    // `init` again is harmless, as a second host starting with `create_table` would run it.
    shared.host().init().await.unwrap();
    let (a, b) = (shared.host(), shared.host());

    let (tenant, key) = a.create_tenant("acme", Tier::Standard).await.unwrap();
    assert_eq!(b.tenant_for_key(key.expose()).await.unwrap().as_ref(), Some(&tenant));
    let changed = b.update_tenant(&tenant.id, |t| t.tier = Tier::Premium).await.unwrap().unwrap();
    assert_eq!(a.tenant(&tenant.id).await.unwrap().unwrap().tier, Tier::Premium);
    assert_eq!(a.tenants().await.unwrap(), vec![changed]);
    let new_key = a.rotate_key(&tenant.id).await.unwrap().unwrap();
    assert!(b.tenant_for_key(key.expose()).await.unwrap().is_none(), "the old key is revoked everywhere");
    assert_eq!(b.tenant_for_key(new_key.expose()).await.unwrap().unwrap().id, tenant.id);

    let bytes = b"\0asm component".to_vec();
    let meta = plugin(&bytes);
    assert!(matches!(a.create_plugin(&tenant.id, meta.clone(), &bytes, 5).await.unwrap(), CreatePlugin::Created(_)));
    assert!(matches!(b.create_plugin(&tenant.id, meta.clone(), &bytes, 5).await.unwrap(), CreatePlugin::Exists(_)));
    assert_eq!(b.plugin_bytes(&meta.id).await.unwrap(), Some(bytes.clone()));
    assert_eq!(b.plugins(&tenant.id).await.unwrap(), vec![meta.clone()]);

    let created = a.create_project(project(&tenant.id, "prj_1", &meta.id), 10).await.unwrap();
    assert!(matches!(created, CreateProject::Created(_)));
    let paused = b.update_project(&tenant.id, "prj_1", |p| p.name = "renamed".into()).await.unwrap().unwrap();
    assert_eq!(a.project(&tenant.id, "prj_1").await.unwrap(), Some(paused));
    assert_eq!(b.delete_plugin(&tenant.id, &meta.id).await.unwrap(), DeletePlugin::InUse("prj_1".into()));
    assert!(a.delete_project(&tenant.id, "prj_1").await.unwrap());
    assert!(!b.delete_project(&tenant.id, "prj_1").await.unwrap(), "gone on every host");
    assert!(b.project(&tenant.id, "prj_1").await.unwrap().is_none());
    assert!(b.update_project(&tenant.id, "prj_1", |_| {}).await.unwrap().is_none());

    assert!(b.delete_tenant(&tenant.id).await.unwrap());
    assert!(a.tenant_for_key(new_key.expose()).await.unwrap().is_none());
    assert!(a.tenants().await.unwrap().is_empty());
    assert!(shared.objects().await.is_empty(), "the tenant's component left with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_on_two_hosts_at_a_quota_edge_never_exceed_it() {
    let shared = Shared::start().await;
    let hosts = [Arc::new(shared.host()), Arc::new(shared.host())];
    let (tenant, _) = hosts[0].create_tenant("acme", Tier::Free).await.unwrap();
    let mut creates = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (host, tenant) = (hosts[i % 2].clone(), tenant.id.clone());
        creates.spawn(async move {
            let project = host.create_project(project(&tenant, &format!("prj_{i:02}"), "sha256:00"), 5).await.unwrap();
            let bytes = format!("component {i}").into_bytes();
            let plugin = host.create_plugin(&tenant, plugin(&bytes), &bytes, 3).await.unwrap();
            (matches!(project, CreateProject::Created(_)), matches!(plugin, CreatePlugin::Created(_)))
        });
    }
    let (mut projects, mut plugins) = (0, 0);
    while let Some(done) = creates.join_next().await {
        let (project, plugin) = done.unwrap();
        projects += usize::from(project);
        plugins += usize::from(plugin);
    }
    assert_eq!((projects, plugins), (5, 3), "exactly the quota was created");
    assert_eq!(hosts[1].projects(&tenant.id).await.unwrap().len(), 5);
    assert_eq!(hosts[1].plugins(&tenant.id).await.unwrap().len(), 3);
    assert_eq!(shared.objects().await.len(), 3, "refused uploads left no object behind");

    // A place freed on one host is free on the other.
    let first = hosts[0].projects(&tenant.id).await.unwrap()[0].id.clone();
    assert!(hosts[0].delete_project(&tenant.id, &first).await.unwrap());
    let again = hosts[1].create_project(project(&tenant.id, "prj_new", "sha256:00"), 5).await.unwrap();
    assert!(matches!(again, CreateProject::Created(_)));
    let over = hosts[0].create_project(project(&tenant.id, "prj_over", "sha256:00"), 5).await.unwrap();
    assert!(matches!(over, CreateProject::QuotaExceeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_leaves_s3_only_when_no_tenant_holds_it() {
    let shared = Shared::start().await;
    let (a, b) = (Arc::new(shared.host()), Arc::new(shared.host()));
    let (acme, _) = a.create_tenant("acme", Tier::Standard).await.unwrap();
    let (globex, _) = b.create_tenant("globex", Tier::Standard).await.unwrap();
    let bytes = vec![7u8; 300_000];
    let meta = plugin(&bytes);
    a.create_plugin(&acme.id, meta.clone(), &bytes, 5).await.unwrap();
    b.create_plugin(&globex.id, meta.clone(), &bytes, 5).await.unwrap();
    assert_eq!(shared.objects().await.len(), 1, "stored once for both tenants");

    assert_eq!(a.delete_plugin(&acme.id, &meta.id).await.unwrap(), DeletePlugin::Deleted);
    assert_eq!(a.delete_plugin(&acme.id, &meta.id).await.unwrap(), DeletePlugin::Absent);
    assert_eq!(b.plugin_bytes(&meta.id).await.unwrap().map(|b| b.len()), Some(300_000), "globex still holds it");
    assert_eq!(b.delete_plugin(&globex.id, &meta.id).await.unwrap(), DeletePlugin::Deleted);
    assert!(shared.objects().await.is_empty(), "gone with its last holder");
    assert_eq!(a.plugin_bytes(&meta.id).await.unwrap(), None);

    // Both tenants upload and delete the same component over and over, each on its own host, so
    // that one's first upload keeps meeting the other's last delete: whoever holds the component
    // can read it, every time.
    let churn = |store: Arc<DynamoStore>, tenant: String| {
        let (meta, bytes) = (meta.clone(), bytes.clone());
        tokio::spawn(async move {
            for round in 0..20 {
                store.create_plugin(&tenant, meta.clone(), &bytes, 5).await.unwrap();
                let read = store.plugin_bytes(&meta.id).await.unwrap();
                assert!(
                    read.as_ref() == Some(&bytes),
                    "round {round}: a holder read {:?} bytes",
                    read.map(|b| b.len())
                );
                store.delete_plugin(&tenant, &meta.id).await.unwrap();
            }
        })
    };
    let (one, two) = (churn(a.clone(), acme.id.clone()), churn(b.clone(), globex.id.clone()));
    one.await.unwrap();
    two.await.unwrap();
    assert!(shared.objects().await.is_empty(), "nothing left once nobody holds it: {:?}", shared.objects().await);
    b.create_plugin(&globex.id, meta.clone(), &bytes, 5).await.unwrap();
    assert_eq!(a.plugin_bytes(&meta.id).await.unwrap().map(|b| b.len()), Some(300_000));
}

fn entry(tenant: &str, project: &str, run: &str, state: &[u8], sizes: &[usize]) -> OutboxEntry {
    OutboxEntry {
        tenant_id: tenant.into(),
        project_id: project.into(),
        run_id: run.into(),
        scheduled_at_ms: 1_700_000_000_000,
        state: Some(state.to_vec()),
        records: sizes
            .iter()
            .enumerate()
            .map(|(i, size)| Record {
                data: vec![i as u8; *size],
                partition_key: format!("pk-{i}"),
                explicit_hash_key: None,
            })
            .collect(),
    }
}

/// DynamoDB write requests through the proxy so far, by operation.
fn write_requests(shared: &Shared) -> std::collections::BTreeMap<String, u64> {
    let writes = ["TransactWriteItems", "BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem"];
    let counts = shared.proxy.counts_of("DynamoDB_20120810.");
    counts
        .into_iter()
        .map(|(op, n)| (op.trim_start_matches("DynamoDB_20120810.").to_string(), n))
        .filter(|(op, _)| writes.contains(&op.as_str()))
        .collect()
}

fn sum_since(before: &std::collections::BTreeMap<String, u64>, after: &std::collections::BTreeMap<String, u64>) -> u64 {
    after.iter().map(|(op, n)| n - before.get(op).copied().unwrap_or(0)).sum()
}

/// The shared store's committer: 60 runs' writes handed over at once share a few transactions
/// instead of taking three requests each, and every one of them lands (entries, states, byte
/// counts, history, usage). A delivery whose project was deleted meanwhile is answered alone, and
/// the rest of its batch still lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_handed_over_together_share_transactions_and_all_land() {
    const PROJECTS: usize = 60;
    let shared = Shared::start().await;
    let host = Arc::new(shared.host());
    let (tenant, _) = host.create_tenant("acme", Tier::Premium).await.unwrap();
    let t = tenant.id.clone();
    for i in 0..PROJECTS {
        host.create_project(project(&t, &format!("prj_{i:02}"), "sha256:00"), 1000).await.unwrap();
    }

    let before = write_requests(&shared);
    let mut enqueues = tokio::task::JoinSet::new();
    for i in 0..PROJECTS {
        let (host, entry) =
            (host.clone(), entry(&t, &format!("prj_{i:02}"), "run_1", format!("cursor={i}").as_bytes(), &[100]));
        enqueues.spawn(async move { (host.enqueue(&entry).await.unwrap(), entry) });
    }
    let mut waiting = Vec::new();
    while let Some(done) = enqueues.join_next().await {
        waiting.push(done.unwrap());
    }
    let enqueued = write_requests(&shared);
    let enqueue_requests = sum_since(&before, &enqueued);
    assert!(enqueue_requests <= 10, "{enqueue_requests} write requests for {PROJECTS} entries: {enqueued:?}");

    // prj_00 is deleted before its entry is delivered: its delivery settles nothing.
    host.delete_state_of(&t, "prj_00").await.unwrap();
    let settling = write_requests(&shared);
    let mut settles = tokio::task::JoinSet::new();
    for (key, entry) in waiting {
        let host = host.clone();
        settles.spawn(async move { host.complete_delivery(&key, &entry).await.unwrap() });
    }
    while let Some(done) = settles.join_next().await {
        done.unwrap();
    }
    for i in 0..PROJECTS {
        host.record_run_later(&t, &run(&format!("prj_{i:02}"), 1), 1.0);
    }
    host.drain().await.unwrap();
    let after = write_requests(&shared);
    let rest = sum_since(&settling, &after);
    assert!(rest <= 12, "{rest} write requests for {PROJECTS} deliveries and runs: {after:?}");
    let per_run = (enqueue_requests + rest) as f64 / PROJECTS as f64;
    assert!(per_run < 0.5, "{per_run} write requests per run");

    let mut state_bytes = 0;
    for i in 0..PROJECTS {
        let id = format!("prj_{i:02}");
        assert_eq!(host.outbox_len_of(&t, &id).await.unwrap(), 0, "{id}");
        let state = host.committed_state(&t, &id).await.unwrap();
        if i == 0 {
            assert_eq!(state, None, "a deleted project's delivery committed its state");
        } else {
            assert_eq!(state, Some(format!("cursor={i}").into_bytes()), "{id}");
            state_bytes += format!("cursor={i}").len() as u64;
        }
        assert_eq!(host.runs(&t, &id, 10).await.unwrap().len(), 1, "{id}");
    }
    let usage = host.usage(&t).await.unwrap();
    assert_eq!((usage.runs, usage.disk.outbox_bytes, usage.disk.state_bytes), (PROJECTS as u64, 0, state_bytes));
    // The store counts its own requests exactly as the proxy saw them.
    let counted: u64 =
        host.meter().requests().iter().filter(|(_, op, _)| op == "TransactWriteItems").map(|(_, _, n)| n).sum();
    assert_eq!(counted, after.get("TransactWriteItems").copied().unwrap_or(0));
    assert!(host.meter().write_units() >= 3 * PROJECTS as u64, "{} write units", host.meter().write_units());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_keeps_its_order_and_commits_each_state_with_its_delivery_on_any_host() {
    let shared = Shared::start().await;
    let (a, b) = (shared.host(), shared.host());
    let (tenant, _) = a.create_tenant("acme", Tier::Standard).await.unwrap();
    let t = tenant.id.as_str();
    a.create_project(project(t, "prj_1", "sha256:00"), 10).await.unwrap();
    a.commit_state(t, "prj_1", b"cursor=0").await.unwrap();

    // Written on host A; the second entry is larger than an item may be, so it goes to S3.
    let first = entry(t, "prj_1", "run_1", b"cursor=1", &[10, 20]);
    let large = entry(t, "prj_1", "run_2", b"cursor=2", &[300_000, 300_000]);
    let third = entry(t, "prj_1", "run_3", b"cursor=3", &[5]);
    let k1 = a.enqueue(&first).await.unwrap();
    let k2 = a.enqueue(&large).await.unwrap();
    let k3 = a.enqueue(&third).await.unwrap();
    assert_eq!(shared.objects_under("outbox/").await.len(), 1, "the large entry spilled to S3");

    // Read on host B, oldest first, with every byte.
    let waiting = b.outbox_of(t, "prj_1").await.unwrap();
    let expected = vec![(k1.clone(), first.clone()), (k2.clone(), large.clone()), (k3.clone(), third.clone())];
    assert!(
        waiting == expected,
        "{:?}",
        waiting.iter().map(|(k, e)| (k, &e.run_id, e.payload_bytes())).collect::<Vec<_>>()
    );
    assert_eq!(b.outbox_keys_of(t, "prj_1").await.unwrap(), vec![k1.clone(), k2.clone(), k3.clone()]);
    assert_eq!(b.outbox_len_of(t, "prj_1").await.unwrap(), 3);
    assert_eq!(b.next_state(t, "prj_1").await.unwrap().as_deref(), Some(&b"cursor=3"[..]));
    assert_eq!(b.committed_state(t, "prj_1").await.unwrap().as_deref(), Some(&b"cursor=0"[..]));
    assert_eq!(b.outbox_projects().await.unwrap(), vec![(t.to_string(), "prj_1".to_string())]);
    let usage = b.disk_usage(t).await.unwrap();
    assert!(usage.outbox_bytes > 600_000 && usage.state_bytes == 8, "{usage:?}");

    // Delivered on B, parked on A: each commits its state with the entry's removal.
    b.complete_delivery(&k1, &first).await.unwrap();
    a.complete_delivery(&k1, &first).await.unwrap();
    assert_eq!(a.committed_state(t, "prj_1").await.unwrap().as_deref(), Some(&b"cursor=1"[..]));
    a.park(&k2, &large, "kinesis refused them", "2026-12-07T10:00:00Z").await.unwrap();
    assert_eq!(b.committed_state(t, "prj_1").await.unwrap().as_deref(), Some(&b"cursor=2"[..]));
    let parked = b.parked_of(t, "prj_1").await.unwrap();
    assert_eq!((parked.len(), parked[0].error.as_str()), (1, "kinesis refused them"));
    assert!(parked[0].entry == large, "the parked entry came back changed");
    assert_eq!(b.outbox_of(t, "prj_1").await.unwrap(), vec![(k3.clone(), third.clone())]);

    // Retried, the parked records go after what waits, without a state; then discarded again.
    assert_eq!(b.retry_parked(t, "prj_1", "run_3").await.unwrap(), ParkedAction::Waiting);
    assert_eq!(b.retry_parked(t, "prj_1", "run_2").await.unwrap(), ParkedAction::Done);
    let waiting = a.outbox_of(t, "prj_1").await.unwrap();
    assert_eq!(waiting.iter().map(|(_, e)| e.run_id.as_str()).collect::<Vec<_>>(), ["run_3", "run_2"]);
    assert_eq!(waiting[1].1.state, None);
    assert_eq!(b.discard_parked(t, "prj_1", "run_2").await.unwrap(), ParkedAction::Waiting);
    assert_eq!(b.discard_parked(t, "prj_1", "run_9").await.unwrap(), ParkedAction::NotFound);
    for (key, entry) in &waiting {
        a.complete_delivery(key, entry).await.unwrap();
    }
    assert_eq!(a.committed_state(t, "prj_1").await.unwrap().as_deref(), Some(&b"cursor=3"[..]));
    let usage = b.disk_usage(t).await.unwrap();
    assert_eq!((usage.outbox_bytes, usage.parked_bytes, usage.state_bytes), (0, 0, 8), "{usage:?}");
    assert!(shared.objects_under("outbox/").await.is_empty() && shared.objects_under("parked/").await.is_empty());

    // Deleting the project takes its state, waiting records and history along.
    a.enqueue(&third).await.unwrap();
    b.record_run(t, &run("prj_1", 1), 1.0).await.unwrap();
    assert!(b.delete_project(t, "prj_1").await.unwrap());
    assert_eq!(a.outbox_len_of(t, "prj_1").await.unwrap(), 0);
    assert_eq!(a.committed_state(t, "prj_1").await.unwrap(), None);
    assert!(a.runs(t, "prj_1", 10).await.unwrap().is_empty());
    assert_eq!(a.disk_usage(t).await.unwrap(), sluice::store::DiskUsage::default());
}

fn run(project: &str, n: u64) -> Run {
    serde_json::from_value(serde_json::json!({
        "id": format!("run_{n:016x}"), "project_id": project, "trigger": "schedule",
        "scheduled_at": format!("2026-12-07T10:00:{n:02}Z"), "started_at": format!("2026-12-07T10:00:{n:02}Z"),
        "finished_at": format!("2026-12-07T10:00:{n:02}Z"), "outcome": if n % 3 == 2 { "failed" } else { "succeeded" },
        "http_status": 200, "pages": 1, "records": 2, "bytes_fetched": 10, "bytes_delivered": 5,
        "stage_ms": {"fetch": 1.5}, "error": null
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_history_and_usage_add_up_across_hosts() {
    let shared = Shared::start().await;
    let hosts = [shared.host(), shared.host()];
    let (tenant, _) = hosts[0].create_tenant("acme", Tier::Standard).await.unwrap();
    for n in 0..6 {
        hosts[n as usize % 2].record_run(&tenant.id, &run("prj_1", n), 1.25).await.unwrap();
    }
    let runs = hosts[1].runs(&tenant.id, "prj_1", 4).await.unwrap();
    let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, (2..6).rev().map(|n| format!("run_{n:016x}")).collect::<Vec<_>>(), "newest first");
    let usage = hosts[0].usage(&tenant.id).await.unwrap();
    assert_eq!((usage.runs, usage.runs_failed, usage.records_delivered, usage.bytes_fetched), (6, 2, 8, 60));
    assert!((usage.plugin_ms - 7.5).abs() < 1e-9, "{}", usage.plugin_ms);
}

/// Fencing: a host's writes under a lease another host has taken since are refused, whichever
/// way they reach the table (an entry, a delivery with its state, a state alone, a parking), and
/// the new owner's go in; the old owner cannot renew the lease either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_under_a_lease_another_host_took_are_refused() {
    use sluice::store::{Fence, StoreError, fenced};
    let shared = Shared::start().await;
    let (a, b) = (shared.host(), shared.host());
    let (tenant, _) = a.create_tenant("acme", Tier::Standard).await.unwrap();
    let t = tenant.id.as_str();
    a.create_project(project(t, "prj_1", "sha256:00"), 10).await.unwrap();
    let partition = sluice::cluster::partition_of(t, "prj_1", 4);
    let leases = a.leases(4).await.unwrap();
    assert!(leases.iter().all(|l| l.owner.is_empty() && l.epoch == 0), "{leases:?}");
    let free = leases.iter().find(|l| l.partition == partition).unwrap();
    let held = a.take_lease(free, "host-a").await.unwrap().expect("a free lease is taken");
    assert!(b.take_lease(free, "host-b").await.unwrap().is_none(), "a lease changed since it was read is not taken");
    let fence_a = Some(Fence { partition, owner: "host-a".into(), epoch: held.epoch });

    // Under its lease, host A writes as usual.
    let first = entry(t, "prj_1", "run_1", b"cursor=1", &[10]);
    let key = fenced(fence_a.clone(), a.enqueue(&first)).await.unwrap();
    fenced(fence_a.clone(), a.commit_state(t, "prj_1", b"cursor=0")).await.unwrap();
    assert!(a.renew_lease(&held).await.unwrap());

    // Host B takes the lease (as it would once it saw it stand still): A's writes are refused.
    let seen = b.leases(4).await.unwrap().into_iter().find(|l| l.partition == partition).unwrap();
    let taken = b.take_lease(&seen, "host-b").await.unwrap().expect("the lease as seen is taken");
    assert_eq!(taken.epoch, held.epoch + 1);
    let fenced_off =
        |result: Result<(), StoreError>| matches!(result, Err(StoreError::Fenced { partition: p }) if p == partition);
    let second = entry(t, "prj_1", "run_2", b"cursor=2", &[10]);
    assert!(matches!(fenced(fence_a.clone(), a.enqueue(&second)).await, Err(StoreError::Fenced { .. })));
    assert!(fenced_off(fenced(fence_a.clone(), a.commit_state(t, "prj_1", b"cursor=9")).await));
    assert!(fenced_off(fenced(fence_a.clone(), a.complete_delivery(&key, &first)).await));
    assert!(fenced_off(fenced(fence_a.clone(), a.park(&key, &first, "refused", "2026-01-01T00:00:00Z")).await));
    assert!(!a.renew_lease(&held).await.unwrap(), "the old owner cannot renew");
    assert_eq!(a.committed_state(t, "prj_1").await.unwrap().as_deref(), Some(&b"cursor=0"[..]));
    assert_eq!(b.outbox_keys_of(t, "prj_1").await.unwrap(), vec![key.clone()], "only the entry written in time");

    // The new owner settles the entry A left, under its own lease.
    let fence_b = Some(Fence { partition, owner: "host-b".into(), epoch: taken.epoch });
    fenced(fence_b, b.complete_delivery(&key, &first)).await.unwrap();
    assert_eq!(b.committed_state(t, "prj_1").await.unwrap().as_deref(), Some(&b"cursor=1"[..]));
    assert!(b.outbox_keys_of(t, "prj_1").await.unwrap().is_empty());
}
