//! [`Store`]: the one storage interface the API and the data plane use, over either backend: the
//! embedded sled store (`SledStore`, the default: one host, one directory) or the shared store on
//! DynamoDB and S3 (`DynamoStore`, for several hosts). Each method says what it promises; both
//! backends keep the promise, in their own way (one sled transaction, one `TransactWriteItems`).

use std::path::Path;

use super::dynamo::{DynamoSettings, DynamoStore, StoreMeter};
use super::import::import_into;
use super::{
    CommitOptions, CommitStats, CreatePlugin, CreateProject, DeletePlugin, DiskUsage, OutboxEntry, OutboxKey,
    ParkedAction, ParkedEntry, PluginMeta, Project, Result, Run, SledStore, Tenant, TenantKey, Tier, Usage,
    WaitingEntry,
};
use super::{PortError, PortSummary};

/// Where the daemon keeps its data (`[store]` in the configuration).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sled` (the default): the embedded store in `data_dir`, for one host, with no AWS
    /// account. `dynamodb`: the shared store on DynamoDB and S3, which several hosts serve
    /// together; region, credentials and endpoint come from the AWS SDK's standard settings.
    pub backend: BackendKind,
    /// The DynamoDB table (required with `backend = "dynamodb"`).
    pub table: Option<String>,
    /// The S3 bucket for plugin components and values too large for an item (required with
    /// `backend = "dynamodb"`).
    pub bucket: Option<String>,
    /// Create the table (with its index, TTL and point-in-time recovery) and the bucket at
    /// start-up if they are missing. Off by default: production tables are made by whoever owns
    /// the account, and a typo then stops the daemon instead of creating a second table.
    pub create_table: bool,
}

impl StoreConfig {
    /// The shared store's table and bucket (empty when unset: `Config::check` refuses that).
    pub fn dynamo_settings(&self) -> DynamoSettings {
        DynamoSettings {
            table: self.table.clone().unwrap_or_default(),
            bucket: self.bucket.clone().unwrap_or_default(),
        }
    }
}

/// The storage backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Sled,
    Dynamodb,
}

/// The daemon's store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(super) backend: Backend,
}

#[derive(Clone)]
pub(super) enum Backend {
    Sled(SledStore),
    Dynamo(DynamoStore),
}

/// Calls the same method on whichever backend the store has.
macro_rules! either {
    ($self:ident, $store:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sled($store) => $call,
            Backend::Dynamo($store) => $call,
        }
    };
}

impl From<SledStore> for Store {
    fn from(store: SledStore) -> Self {
        Self { backend: Backend::Sled(store) }
    }
}

impl From<DynamoStore> for Store {
    fn from(store: DynamoStore) -> Self {
        Self { backend: Backend::Dynamo(store) }
    }
}

impl Store {
    /// Opens (or creates) the embedded store in `dir` (see [`SledStore::open`]).
    pub fn open(dir: &Path) -> Result<Self> {
        SledStore::open(dir).map(Self::from)
    }

    /// Like [`Store::open`], with the committer batching as `options` say.
    pub fn open_with(dir: &Path, options: CommitOptions) -> Result<Self> {
        SledStore::open_with(dir, options).map(Self::from)
    }

    /// The shared store on `settings`' table and bucket, with the AWS SDK's standard settings
    /// (region, credentials, endpoint), created first if `create` says so, and checked: the table
    /// and bucket must exist and the host's credentials must reach them. An error names the
    /// setting or the permission at fault.
    pub async fn connect_dynamo(settings: &DynamoSettings, create: bool) -> Result<Self> {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
        let store = DynamoStore::new(&sdk, settings);
        if create {
            store.init().await?;
        }
        store.check().await?;
        Ok(store.into())
    }

    /// Writes everything the store holds as JSON lines (see `export.rs`). A consistent snapshot
    /// needs a store nobody writes to meanwhile: sled's lock ensures it for the embedded store;
    /// for the shared one, stop every host's daemon first.
    pub async fn export(&self, out: &mut impl std::io::Write) -> std::result::Result<PortSummary, PortError> {
        match &self.backend {
            Backend::Sled(store) => store.export(out).await,
            Backend::Dynamo(store) => store.export(out).await,
        }
    }

    /// Fills this empty store from an export, checking every item; until it returns `Ok`, the
    /// store is marked unfinished and refuses to open.
    pub async fn import(&self, input: impl std::io::BufRead) -> std::result::Result<PortSummary, PortError> {
        match &self.backend {
            Backend::Sled(store) => import_into(store, input).await,
            Backend::Dynamo(store) => import_into(store, input).await,
        }
    }

    /// Which backend this is, for logs and `/metrics`: `sled` or `dynamodb`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sled(_) => "sled",
            Backend::Dynamo(_) => "dynamodb",
        }
    }

    /// The sled committer's counters, for the metrics; the shared store has no committer.
    pub fn commit_stats(&self) -> Option<&CommitStats> {
        match &self.backend {
            Backend::Sled(store) => store.commit_stats(),
            Backend::Dynamo(_) => None,
        }
    }

    /// The shared store's requests and write units, for the metrics; the embedded store has none.
    pub fn meter(&self) -> Option<&StoreMeter> {
        match &self.backend {
            Backend::Sled(_) => None,
            Backend::Dynamo(store) => Some(store.meter()),
        }
    }

    /// Makes every write so far durable: sled's committer syncs; the shared store's lanes write
    /// what they still hold (DynamoDB has acknowledged the rest already).
    pub async fn flush(&self) -> Result<()> {
        match &self.backend {
            Backend::Sled(store) => store.flush().await,
            Backend::Dynamo(store) => store.drain().await,
        }
    }

    // Tenants and keys.

    /// Creates a tenant with a fresh API key, returned once here and stored only as its hash.
    pub async fn create_tenant(&self, name: &str, tier: Tier) -> Result<(Tenant, TenantKey)> {
        either!(self, s => s.create_tenant(name, tier).await)
    }

    /// One tenant by id.
    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>> {
        either!(self, s => s.tenant(id).await)
    }

    /// Every tenant, in id order.
    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        either!(self, s => s.tenants().await)
    }

    /// The tenant an API key belongs to, if the key is current.
    pub async fn tenant_for_key(&self, key: &str) -> Result<Option<Tenant>> {
        either!(self, s => s.tenant_for_key(key).await)
    }

    /// Applies `change` to a tenant and stores the result; `change` may run more than once.
    pub async fn update_tenant(&self, id: &str, change: impl Fn(&mut Tenant)) -> Result<Option<Tenant>> {
        either!(self, s => s.update_tenant(id, &change).await)
    }

    /// Issues a new API key for a tenant and revokes the old one at once.
    pub async fn rotate_key(&self, id: &str) -> Result<Option<TenantKey>> {
        either!(self, s => s.rotate_key(id).await)
    }

    /// Deletes a tenant with its projects and plugins, and revokes its key.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool> {
        either!(self, s => s.delete_tenant(id).await)
    }

    // Plugins.

    /// Stores a plugin for a tenant unless it already has it or is at `max_plugins`.
    pub async fn create_plugin(&self, tenant: &str, meta: PluginMeta, bytes: &[u8], max: u32) -> Result<CreatePlugin> {
        either!(self, s => s.create_plugin(tenant, meta, bytes, max).await)
    }

    /// One of a tenant's plugins.
    pub async fn plugin(&self, tenant: &str, id: &str) -> Result<Option<PluginMeta>> {
        either!(self, s => s.plugin(tenant, id).await)
    }

    /// A tenant's plugins, in id order.
    pub async fn plugins(&self, tenant: &str) -> Result<Vec<PluginMeta>> {
        either!(self, s => s.plugins(tenant).await)
    }

    /// A plugin's component bytes, if any tenant still holds it.
    pub async fn plugin_bytes(&self, id: &str) -> Result<Option<Vec<u8>>> {
        either!(self, s => s.plugin_bytes(id).await)
    }

    /// Removes one of a tenant's plugins unless a project of the tenant uses it.
    pub async fn delete_plugin(&self, tenant: &str, id: &str) -> Result<DeletePlugin> {
        either!(self, s => s.delete_plugin(tenant, id).await)
    }

    // Projects.

    /// Stores a new project unless the tenant is at `max_projects`.
    pub async fn create_project(&self, project: Project, max_projects: u32) -> Result<CreateProject> {
        either!(self, s => s.create_project(project, max_projects).await)
    }

    /// One of a tenant's projects.
    pub async fn project(&self, tenant: &str, id: &str) -> Result<Option<Project>> {
        either!(self, s => s.project(tenant, id).await)
    }

    /// A tenant's projects, in id order.
    pub async fn projects(&self, tenant: &str) -> Result<Vec<Project>> {
        either!(self, s => s.projects(tenant).await)
    }

    /// Changes a stored project and returns the result; `None` if it no longer exists.
    /// `change` may run more than once when updates race, so it must not have side effects.
    pub async fn update_project(
        &self,
        tenant: &str,
        id: &str,
        change: impl Fn(&mut Project),
    ) -> Result<Option<Project>> {
        either!(self, s => s.update_project(tenant, id, &change).await)
    }

    /// Removes a project with its run history, state and undelivered records.
    pub async fn delete_project(&self, tenant: &str, id: &str) -> Result<bool> {
        either!(self, s => s.delete_project(tenant, id).await)
    }

    /// The first of a tenant's projects that uses a plugin, if any.
    pub async fn project_using_plugin(&self, tenant: &str, plugin_id: &str) -> Result<Option<String>> {
        either!(self, s => s.project_using_plugin(tenant, plugin_id).await)
    }

    // The outbox and state.

    /// Writes a run's records and pending state durably; returns the entry's key.
    pub async fn enqueue(&self, entry: OutboxEntry) -> Result<OutboxKey> {
        match &self.backend {
            Backend::Sled(store) => store.enqueue(entry).await,
            Backend::Dynamo(store) => store.enqueue(&entry).await,
        }
    }

    /// What a project has waiting for Kinesis, oldest first, without the records themselves.
    pub async fn waiting_of(&self, tenant: &str, project: &str) -> Result<Vec<WaitingEntry>> {
        either!(self, s => s.waiting_of(tenant, project).await)
    }

    /// A project's undelivered entries, oldest first.
    pub async fn outbox_of(&self, tenant: &str, project: &str) -> Result<Vec<(OutboxKey, OutboxEntry)>> {
        either!(self, s => s.outbox_of(tenant, project).await)
    }

    /// The keys of a project's waiting entries, oldest first.
    pub async fn outbox_keys_of(&self, tenant: &str, project: &str) -> Result<Vec<OutboxKey>> {
        either!(self, s => s.outbox_keys_of(tenant, project).await)
    }

    /// The entry under `key`, if it is still waiting.
    pub async fn outbox_entry(&self, key: &OutboxKey) -> Result<Option<OutboxEntry>> {
        either!(self, s => s.outbox_entry(key).await)
    }

    /// How many entries a project has waiting.
    pub async fn outbox_len_of(&self, tenant: &str, project: &str) -> Result<usize> {
        match &self.backend {
            Backend::Sled(store) => Ok(store.outbox_len_of(tenant, project).await),
            Backend::Dynamo(store) => store.outbox_len_of(tenant, project).await,
        }
    }

    /// Every (tenant, project) with entries waiting, each once, in key order.
    pub async fn outbox_projects(&self) -> Result<Vec<(String, String)>> {
        either!(self, s => s.outbox_projects().await)
    }

    /// Entries waiting in the whole outbox.
    pub async fn outbox_depth(&self) -> Result<usize> {
        match &self.backend {
            Backend::Sled(store) => Ok(store.outbox_depth()),
            Backend::Dynamo(store) => store.outbox_depth().await,
        }
    }

    /// Removes a delivered entry and commits its state, atomically.
    pub async fn complete_delivery(&self, key: &OutboxKey, entry: &OutboxEntry) -> Result<()> {
        either!(self, s => s.complete_delivery(key, entry).await)
    }

    /// Moves an entry Kinesis refused for good to the parked entries and commits its state.
    pub async fn park(&self, key: &OutboxKey, entry: &OutboxEntry, error: &str, parked_at: &str) -> Result<()> {
        either!(self, s => s.park(key, entry, error, parked_at).await)
    }

    /// A project's parked entries, oldest first.
    pub async fn parked_of(&self, tenant: &str, project: &str) -> Result<Vec<ParkedEntry>> {
        either!(self, s => s.parked_of(tenant, project).await)
    }

    /// Puts a parked entry's records back in the outbox, after everything waiting.
    pub async fn retry_parked(&self, tenant: &str, project: &str, run_id: &str) -> Result<ParkedAction> {
        either!(self, s => s.retry_parked(tenant, project, run_id).await)
    }

    /// Deletes a parked entry and its records, at the tenant's request.
    pub async fn discard_parked(&self, tenant: &str, project: &str, run_id: &str) -> Result<ParkedAction> {
        either!(self, s => s.discard_parked(tenant, project, run_id).await)
    }

    /// The state a project's next run starts from.
    pub async fn next_state(&self, tenant: &str, project: &str) -> Result<Option<Vec<u8>>> {
        either!(self, s => s.next_state(tenant, project).await)
    }

    /// The state committed by the last fully delivered run.
    pub async fn committed_state(&self, tenant: &str, project: &str) -> Result<Option<Vec<u8>>> {
        either!(self, s => s.committed_state(tenant, project).await)
    }

    /// Commits a state directly, for runs that produced no records.
    pub async fn commit_state(&self, tenant: &str, project: &str, state: &[u8]) -> Result<()> {
        either!(self, s => s.commit_state(tenant, project, state).await)
    }

    /// Removes a project's state and its waiting and parked entries.
    pub(crate) async fn delete_state_of(&self, tenant: &str, project: &str) -> Result<()> {
        either!(self, s => s.delete_state_of(tenant, project).await)
    }

    // History, usage and stored bytes.

    /// Appends a run to its project's history and adds it to the tenant's usage.
    pub async fn record_run(&self, tenant: &str, run: &Run, plugin_ms: f64) -> Result<()> {
        either!(self, s => s.record_run(tenant, run, plugin_ms).await)
    }

    /// Like [`Store::record_run`], without waiting; a failure is logged.
    pub fn record_run_later(&self, tenant: &str, run: Run, plugin_ms: f64) {
        match &self.backend {
            Backend::Sled(store) => store.record_run_later(tenant, run, plugin_ms),
            Backend::Dynamo(store) => store.record_run_later(tenant, &run, plugin_ms),
        }
    }

    /// A project's runs, newest first, at most `limit`.
    pub async fn runs(&self, tenant: &str, project: &str, limit: usize) -> Result<Vec<Run>> {
        either!(self, s => s.runs(tenant, project, limit).await)
    }

    /// A tenant's usage counters and stored bytes.
    pub async fn usage(&self, tenant: &str) -> Result<Usage> {
        either!(self, s => s.usage(tenant).await)
    }

    /// The bytes a tenant keeps in the store, by kind.
    pub async fn disk_usage(&self, tenant: &str) -> Result<DiskUsage> {
        match &self.backend {
            Backend::Sled(store) => Ok(store.disk_usage(tenant)),
            Backend::Dynamo(store) => store.disk_usage(tenant).await,
        }
    }

    /// Every tenant's stored bytes, for the metrics. The shared store keeps them per tenant only
    /// (summing them would read every tenant's item on every scrape), so it gives none here.
    pub fn disk_usage_by_tenant(&self) -> Vec<(String, DiskUsage)> {
        match &self.backend {
            Backend::Sled(store) => store.disk_usage_by_tenant(),
            Backend::Dynamo(_) => Vec::new(),
        }
    }
}
