//! The shared store's control plane on moto's DynamoDB and S3, as two hosts would use it: two
//! `DynamoStore`s on one table, each change made through one seen at once through the other,
//! quotas held under concurrent creates from both, and a component's object leaving S3 only with
//! its last holder. (The daemon cannot select this backend yet: see `store/dynamo/mod.rs`.)

use std::sync::Arc;

use aws_sdk_kinesis::config::Credentials;
use sluice::store::dynamo::{DynamoSettings, DynamoStore};
use sluice::store::{CreatePlugin, CreateProject, DeletePlugin, PluginMeta, Project, Tier};
use sluice_tests::Moto;
use sluice_tests::tenant_account::sdk_config;

struct Shared {
    _moto: Moto,
    sdk: aws_config::SdkConfig,
    settings: DynamoSettings,
}

impl Shared {
    async fn start() -> Self {
        let moto = Moto::start();
        let sdk = sdk_config(&moto.endpoint, Credentials::new("testing", "testing", None, None, "test")).await;
        let settings = DynamoSettings { table: "sluice".into(), bucket: "sluice-components".into() };
        DynamoStore::new(&sdk, &settings).init().await.unwrap();
        Self { _moto: moto, sdk, settings }
    }

    /// A store as one more host would open it.
    fn host(&self) -> DynamoStore {
        DynamoStore::new(&self.sdk, &self.settings)
    }

    /// The component objects in the bucket.
    async fn objects(&self) -> Vec<String> {
        let s3 =
            aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&self.sdk).force_path_style(true).build());
        let listed = s3.list_objects_v2().bucket(&self.settings.bucket).prefix("components/").send().await.unwrap();
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

    // One tenant uploads and deletes over and over on one host while the other uploads once on
    // the other host: whenever the racing deletes stop, the holder's bytes are there.
    let churn = {
        let (a, acme, meta, bytes) = (a.clone(), acme.id.clone(), meta.clone(), bytes.clone());
        tokio::spawn(async move {
            for _ in 0..15 {
                a.create_plugin(&acme, meta.clone(), &bytes, 5).await.unwrap();
                a.delete_plugin(&acme, &meta.id).await.unwrap();
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    b.create_plugin(&globex.id, meta.clone(), &bytes, 5).await.unwrap();
    churn.await.unwrap();
    assert_eq!(b.plugin_bytes(&meta.id).await.unwrap(), Some(bytes), "the holder's component survived the churn");
    assert_eq!(shared.objects().await.len(), 1, "one generation left: {:?}", shared.objects().await);
}
