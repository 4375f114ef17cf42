//! The shared store's side of `sluice store export` and `import` (the format and the checks are
//! in `export.rs`): an export reads through the store's own access paths, tenant by tenant; an
//! import writes each item as the store's operations would, with quota counts and component
//! holders rebuilt at the end. A half-done import leaves a mark that stops every host from
//! opening the store (`DynamoStore::check`).

use std::collections::BTreeSet;
use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::super::export::{Entry, Item, write_end, write_header, write_item};
use super::super::import::{Derived, ImportTarget};
use super::super::model::{PluginMeta, Project, Tenant};
use super::super::outbox::OutboxEntry;
use super::super::parked::ParkedEntry;
use super::super::runs::{Counters, RUNS_KEPT, Run};
use super::super::{PortError, PortSummary, StoreError};
use super::runs::counters_of;
use super::{DynamoStore, counts_key, doc, holders_key, key, n, plugin_key, remote, s, string_of, usage_key};

/// The item whose presence marks an import that did not finish.
pub(super) fn unfinished_key() -> super::Item {
    key("meta", "import-unfinished")
}

impl DynamoStore {
    /// Writes everything the store holds to `out` as JSON lines.
    pub async fn export(&self, out: &mut impl Write) -> Result<PortSummary, PortError> {
        let mut summary = PortSummary::default();
        write_header(out, &mut summary)?;
        let tenants = self.tenants().await?;
        for tenant in &tenants {
            write_item(out, &Item::Tenant { tenant: tenant.clone() }, &mut summary)?;
        }
        let mut components = BTreeSet::new();
        for tenant in &tenants {
            for plugin in self.plugins(&tenant.id).await? {
                components.insert(plugin.id.clone());
                write_item(out, &Item::Plugin { tenant_id: tenant.id.clone(), plugin }, &mut summary)?;
            }
        }
        for id in components {
            if let Some(bytes) = self.plugin_bytes(&id).await? {
                write_item(out, &Item::Blob { id, bytes_base64: BASE64.encode(bytes) }, &mut summary)?;
            }
        }
        let mut projects = Vec::new();
        for tenant in &tenants {
            for project in self.projects(&tenant.id).await? {
                projects.push((tenant.id.clone(), project.id.clone()));
                write_item(out, &Item::Project { project: Box::new(project) }, &mut summary)?;
            }
        }
        for (tenant, project) in &projects {
            if let Some(state) = self.committed_state(tenant, project).await? {
                let item = Item::State {
                    tenant_id: tenant.clone(),
                    project_id: project.clone(),
                    state_base64: BASE64.encode(state),
                };
                write_item(out, &item, &mut summary)?;
            }
        }
        for (tenant, project) in &projects {
            for (_, entry) in self.outbox_of(tenant, project).await? {
                write_item(out, &Item::Outbox { entry: Entry::from_entry(&entry) }, &mut summary)?;
            }
        }
        for (tenant, project) in &projects {
            for parked in self.parked_of(tenant, project).await? {
                let item = Item::Parked {
                    entry: Entry::from_entry(&parked.entry),
                    error: parked.error,
                    parked_at: parked.parked_at,
                };
                write_item(out, &item, &mut summary)?;
            }
        }
        for (tenant, project) in &projects {
            // Oldest first, as the sled store's export lists them.
            for run in self.runs(tenant, project, RUNS_KEPT).await?.into_iter().rev() {
                write_item(out, &Item::Run { tenant_id: tenant.clone(), run: Box::new(run) }, &mut summary)?;
            }
        }
        for tenant in &tenants {
            let Some(item) = self.get(usage_key(&tenant.id)).await? else { continue };
            let counters = counters_of(&item)?;
            write_item(out, &Item::Usage { tenant_id: tenant.id.clone(), counters }, &mut summary)?;
        }
        write_end(out, &mut summary)?;
        Ok(summary)
    }

    async fn put(&self, item: super::Item, condition: Option<&str>) -> Result<bool, StoreError> {
        let written = self
            .db
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_string))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(remote("PutItem", e)),
        }
    }
}

impl ImportTarget for DynamoStore {
    async fn first_data(&self) -> Result<Option<String>, StoreError> {
        if self.get(unfinished_key()).await?.is_some() {
            return Ok(Some("an import that did not finish".into()));
        }
        Ok((!self.query("tenants", "").await?.is_empty()).then(|| "tenants".to_string()))
    }

    async fn set_unfinished(&self, unfinished: bool) -> Result<(), StoreError> {
        if unfinished {
            self.put(unfinished_key(), None).await.map(drop)
        } else {
            self.delete_item(unfinished_key()).await
        }
    }

    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        self.put(self.tenant_put(tenant, 1)?.item, None).await?;
        let key = self.key_put(&tenant.key_hash, &tenant.id)?;
        self.put(key.item, key.condition_expression.as_deref()).await.map(drop)
    }

    async fn put_plugin(&self, tenant: &str, plugin: &PluginMeta) -> Result<bool, StoreError> {
        let mut item = plugin_key(tenant, &plugin.id);
        item.insert("doc".into(), doc(plugin)?);
        self.put(item, Some("attribute_not_exists(pk)")).await
    }

    async fn put_component(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        // A generation of its own, named by a holders item that `finish` gives its count.
        let generation = super::super::keys::random_hex(8);
        self.put_component_object(id, &generation, bytes).await?;
        let mut item = holders_key(id);
        item.insert("holders".into(), n(0));
        item.insert("generation".into(), s(generation));
        self.put(item, None).await.map(drop)
    }

    async fn put_project(&self, project: &Project) -> Result<(), StoreError> {
        self.put(self.project_put(project, 1)?.item, None).await.map(drop)
    }

    async fn put_state(&self, tenant: &str, project: &str, state: &[u8]) -> Result<(), StoreError> {
        self.commit_state(tenant, project, state).await
    }

    async fn put_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.enqueue(entry).await.map(drop)
    }

    async fn put_parked(&self, parked: ParkedEntry) -> Result<(), StoreError> {
        self.import_parked(&parked).await
    }

    async fn put_run(&self, tenant: &str, run: &Run) -> Result<(), StoreError> {
        self.put(self.run_item(tenant, run)?, None).await.map(drop)
    }

    async fn put_usage(&self, tenant: &str, counters: &Counters) -> Result<(), StoreError> {
        self.add_usage(tenant, counters).await
    }

    async fn finish(&self, derived: &Derived) -> Result<(), StoreError> {
        for (tenant, (projects, plugins)) in &derived.counts {
            let mut item = counts_key(tenant);
            item.insert("projects".into(), n(projects));
            item.insert("plugins".into(), n(plugins));
            self.put(item, None).await?;
        }
        for (id, holders) in &derived.holders {
            self.db
                .update_item()
                .table_name(&self.table)
                .set_key(Some(holders_key(id)))
                .update_expression("SET holders = :holders")
                .expression_attribute_values(":holders", n(holders))
                .send()
                .await
                .map_err(|e| remote("UpdateItem", e))?;
        }
        for id in &derived.unheld {
            let Some(item) = self.get(holders_key(id)).await? else { continue };
            let generation = string_of(&item, "generation")?.to_string();
            self.delete_item(holders_key(id)).await?;
            self.delete_component_object(id, &generation).await?;
        }
        Ok(())
    }

    async fn sync(&self) -> Result<(), StoreError> {
        // Every write above was acknowledged by DynamoDB or S3 before it returned.
        Ok(())
    }
}
