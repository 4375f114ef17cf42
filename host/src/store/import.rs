//! Importing an export (the format is in `export.rs`): every line checked (the format version,
//! each item's tenant and project before it, each component's digest, the count on the last
//! line) before the backend writes it through [`ImportTarget`]. An import fills an empty store and
//! marks it unfinished until the last item is durable: a store whose import failed half-way
//! refuses to open, instead of running with part of its tenants' data.

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;

use sha2::{Digest, Sha256};

use super::StoreError;
use super::export::{EXPORT_FORMAT, Item, unbase64};
use super::model::{PluginMeta, Project, Tenant};
use super::outbox::OutboxEntry;
use super::parked::ParkedEntry;
use super::runs::{Counters, Run};
use super::{PortError, PortSummary};

/// Where an import writes: each backend stores the items its own way (`export_sled.rs`,
/// `dynamo/port.rs`), behind the same checks.
pub(super) trait ImportTarget {
    /// What makes the target not empty, if anything: an import never mixes two stores.
    async fn first_data(&self) -> Result<Option<String>, StoreError>;
    /// Marks the target unfinished (so that it refuses to open), or finished again.
    async fn set_unfinished(&self, unfinished: bool) -> Result<(), StoreError>;
    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    /// Returns whether the plugin was new for the tenant.
    async fn put_plugin(&self, tenant: &str, plugin: &PluginMeta) -> Result<bool, StoreError>;
    async fn put_component(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError>;
    async fn put_project(&self, project: &Project) -> Result<(), StoreError>;
    async fn put_state(&self, tenant: &str, project: &str, state: &[u8]) -> Result<(), StoreError>;
    /// Appends an entry after the project's others: a project's entries keep the export's order.
    async fn put_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError>;
    async fn put_parked(&self, parked: ParkedEntry) -> Result<(), StoreError>;
    async fn put_run(&self, tenant: &str, run: &Run) -> Result<(), StoreError>;
    async fn put_usage(&self, tenant: &str, counters: &Counters) -> Result<(), StoreError>;
    /// Writes the derived data: each tenant's quota counts (projects, plugins), how many tenants
    /// hold each component, and drops components nobody holds.
    async fn finish(&self, derived: &Derived) -> Result<(), StoreError>;
    /// Makes everything written durable.
    async fn sync(&self) -> Result<(), StoreError>;
}

/// What an import rebuilds rather than copies.
#[derive(Default)]
pub(super) struct Derived {
    /// Tenant → (projects, plugins).
    pub counts: HashMap<String, (u64, u64)>,
    /// Component id → how many tenants hold it.
    pub holders: HashMap<String, u64>,
    /// Components in the export that no tenant holds.
    pub unheld: Vec<String>,
}

/// Fills the empty `target` from an export, checking every item, and makes it durable. Until it
/// returns `Ok`, the target is marked unfinished and refuses to open.
pub(super) async fn import_into(target: &impl ImportTarget, input: impl BufRead) -> Result<PortSummary, PortError> {
    if let Some(what) = target.first_data().await? {
        return Err(PortError::NotEmpty(what));
    }
    target.set_unfinished(true).await?;
    target.sync().await?;
    let mut importer = Importer::default();
    for (index, line) in input.lines().enumerate() {
        let line_no = index as u64 + 1;
        let line = line.map_err(PortError::Read)?;
        let data = |message: String| PortError::Data { line: line_no, message };
        if importer.ended {
            if line.trim().is_empty() {
                continue;
            }
            return Err(data("there is more after the `end` line; is this two exports in one file?".into()));
        }
        let item: Item = serde_json::from_str(&line).map_err(|e| data(format!("not an export item: {e}")))?;
        importer.take(target, item).await.map_err(|e| match e {
            Refused::Data(message) => data(message),
            Refused::Store(e) => PortError::Store(e),
        })?;
    }
    if !importer.ended {
        return Err(PortError::Incomplete("it ends without its `end` line, so it was cut off; export again".into()));
    }
    if let Some(id) = importer.plugin_ids.keys().find(|id| !importer.blobs.contains(*id)) {
        return Err(PortError::Incomplete(format!("plugin {id} has no component in it")));
    }
    let derived = Derived {
        counts: importer.counts.clone(),
        holders: importer.plugin_ids.clone(),
        unheld: importer.blobs.iter().filter(|id| !importer.plugin_ids.contains_key(*id)).cloned().collect(),
    };
    target.finish(&derived).await?;
    target.sync().await?;
    target.set_unfinished(false).await?;
    target.sync().await?;
    Ok(importer.summary)
}

/// Why an item was not imported.
enum Refused {
    Data(String),
    Store(StoreError),
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Refused::Store(e)
    }
}

/// An import under way: what it has seen, to check references and rebuild the derived data.
#[derive(Default)]
struct Importer {
    started: bool,
    ended: bool,
    summary: PortSummary,
    tenants: BTreeSet<String>,
    /// `(tenant, project)` of every project imported.
    projects: BTreeSet<(String, String)>,
    /// Plugin id → how many tenants hold it.
    plugin_ids: HashMap<String, u64>,
    blobs: BTreeSet<String>,
    /// Tenant → (projects, plugins), for the quota counts.
    counts: HashMap<String, (u64, u64)>,
}

impl Importer {
    async fn take(&mut self, target: &impl ImportTarget, item: Item) -> Result<(), Refused> {
        let data = |message: String| Err(Refused::Data(message));
        if !self.started {
            return match item {
                Item::Header { format: EXPORT_FORMAT, .. } => {
                    self.started = true;
                    Ok(())
                }
                Item::Header { format, .. } => data(format!(
                    "the export is in format {format}, and this build reads format {EXPORT_FORMAT}; import it with \
                     the Sluice version that wrote it"
                )),
                _ => data("the first line must be the export's header; is this a Sluice export?".into()),
            };
        }
        self.summary.add(&item);
        match item {
            Item::Header { .. } => return data("a second header; is this two exports in one file?".into()),
            Item::End { items } => {
                let seen = self.summary.items();
                if items != seen {
                    return data(format!("the `end` line counts {items} items, and the export has {seen}"));
                }
                self.ended = true;
            }
            Item::Tenant { tenant } => {
                if tenant.id.is_empty() || tenant.key_hash.is_empty() || tenant.id.contains('/') {
                    return data(format!("tenant {:?} has no usable id or key hash", tenant.id));
                }
                if !self.tenants.insert(tenant.id.clone()) {
                    return data(format!("tenant {} appears twice", tenant.id));
                }
                target.put_tenant(&tenant).await?;
            }
            Item::Plugin { tenant_id, plugin } => {
                self.tenant(&tenant_id)?;
                if !target.put_plugin(&tenant_id, &plugin).await? {
                    return data(format!("plugin {} of tenant {tenant_id} appears twice", plugin.id));
                }
                *self.plugin_ids.entry(plugin.id).or_default() += 1;
                self.counts.entry(tenant_id).or_default().1 += 1;
            }
            Item::Blob { id, bytes_base64 } => {
                let bytes = unbase64(&bytes_base64, "bytes_base64").map_err(Refused::Data)?;
                let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
                if digest != id {
                    return data(format!("component {id} does not match its bytes, whose digest is {digest}"));
                }
                target.put_component(&id, &bytes).await?;
                self.blobs.insert(id);
            }
            Item::Project { project } => {
                self.tenant(&project.tenant_id)?;
                let key = (project.tenant_id.clone(), project.id.clone());
                if !self.projects.insert(key) {
                    return data(format!("project {} appears twice", project.id));
                }
                target.put_project(&project).await?;
                self.counts.entry(project.tenant_id.clone()).or_default().0 += 1;
            }
            Item::State { tenant_id, project_id, state_base64 } => {
                self.project(&tenant_id, &project_id)?;
                let state = unbase64(&state_base64, "state_base64").map_err(Refused::Data)?;
                target.put_state(&tenant_id, &project_id, &state).await?;
            }
            Item::Outbox { entry } => {
                let entry = entry.into_entry().map_err(Refused::Data)?;
                self.project(&entry.tenant_id, &entry.project_id)?;
                target.put_outbox(&entry).await?;
            }
            Item::Parked { entry, error, parked_at } => {
                let entry = entry.into_entry().map_err(Refused::Data)?;
                self.project(&entry.tenant_id, &entry.project_id)?;
                target.put_parked(ParkedEntry { entry, error, parked_at }).await?;
            }
            Item::Run { tenant_id, run } => {
                self.project(&tenant_id, &run.project_id)?;
                target.put_run(&tenant_id, &run).await?;
            }
            Item::Usage { tenant_id, counters } => {
                self.tenant(&tenant_id)?;
                target.put_usage(&tenant_id, &counters).await?;
            }
        }
        Ok(())
    }

    fn tenant(&self, id: &str) -> Result<(), Refused> {
        if self.tenants.contains(id) {
            return Ok(());
        }
        Err(Refused::Data(format!("tenant {id} is not in the export before the items that belong to it")))
    }

    fn project(&self, tenant: &str, project: &str) -> Result<(), Refused> {
        if self.projects.contains(&(tenant.to_string(), project.to_string())) {
            return Ok(());
        }
        Err(Refused::Data(format!(
            "project {project} of tenant {tenant} is not in the export before the items that belong to it"
        )))
    }
}
