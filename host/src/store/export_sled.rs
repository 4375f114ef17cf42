//! The sled store's side of `sluice store export` and `import` (the format and the checks are in
//! `export.rs`): an export reads its trees in order; an import writes them directly, with new
//! outbox keys in the export's order (a fresh database numbers from zero).

use std::io::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::disk::{DiskKind, size};
use super::export::{Entry, IMPORT_UNFINISHED, Item, write_end, write_header, write_item};
use super::import::{Derived, ImportTarget};
use super::model::{PluginMeta, Project, Tenant};
use super::outbox::{OutboxEntry, decode_entry};
use super::parked::{ParkedEntry, decode_parked, encode_parked};
use super::runs::{Counters, Run, run_key};
use super::{PortError, PortSummary, SledStore, StoreError, chunks, decode, decode_entry as decode_json};

impl SledStore {
    /// Writes everything the store holds to `out` as JSON lines (see the module's doc).
    pub async fn export(&self, out: &mut impl Write) -> Result<PortSummary, PortError> {
        let mut summary = PortSummary::default();
        write_header(out, &mut summary)?;
        for tenant in self.tenants().await? {
            write_item(out, &Item::Tenant { tenant }, &mut summary)?;
        }
        for item in self.plugins.iter() {
            let (key, raw) = item.map_err(StoreError::from)?;
            let key = String::from_utf8_lossy(&key);
            let plugin: PluginMeta = decode(&key, &raw)?;
            let tenant_id = key.split('/').next().unwrap_or_default().to_string();
            write_item(out, &Item::Plugin { tenant_id, plugin }, &mut summary)?;
        }
        for item in self.blobs.iter() {
            let (key, raw) = item.map_err(StoreError::from)?;
            let bytes = chunks::assemble(&self.blob_chunks, &key, &raw)?;
            let id = String::from_utf8_lossy(&key).into_owned();
            write_item(out, &Item::Blob { id, bytes_base64: BASE64.encode(bytes) }, &mut summary)?;
        }
        for item in self.projects.iter() {
            let project: Project = decode_json(item)?;
            write_item(out, &Item::Project { project: Box::new(project) }, &mut summary)?;
        }
        for item in self.state.iter() {
            let (key, raw) = item.map_err(StoreError::from)?;
            let state = chunks::assemble(&self.state_chunks, &key, &raw)?;
            let text = String::from_utf8_lossy(&key);
            let (tenant_id, project_id) = text.split_once('/').unwrap_or((&text, ""));
            let item = Item::State {
                tenant_id: tenant_id.to_string(),
                project_id: project_id.to_string(),
                state_base64: BASE64.encode(state),
            };
            write_item(out, &item, &mut summary)?;
        }
        for item in self.outbox.iter() {
            let (key, raw) = item.map_err(StoreError::from)?;
            let value = chunks::assemble(&self.outbox_chunks, &key, &raw)?;
            let entry = decode_entry(&String::from_utf8_lossy(&key), &value)?;
            write_item(out, &Item::Outbox { entry: Entry::from_entry(&entry) }, &mut summary)?;
        }
        for item in self.parked.iter() {
            let (key, raw) = item.map_err(StoreError::from)?;
            let parked = decode_parked(&key, &chunks::assemble(&self.parked_chunks, &key, &raw)?)?;
            let item = Item::Parked {
                entry: Entry::from_entry(&parked.entry),
                error: parked.error,
                parked_at: parked.parked_at,
            };
            write_item(out, &item, &mut summary)?;
        }
        for item in self.runs.iter() {
            let (key, raw) = item.map_err(StoreError::from)?;
            let key = String::from_utf8_lossy(&key);
            let run: Run = decode(&key, &raw)?;
            let tenant_id = key.split('/').next().unwrap_or_default().to_string();
            write_item(out, &Item::Run { tenant_id, run: Box::new(run) }, &mut summary)?;
        }
        for item in self.usage.iter() {
            let (key, raw) = item.map_err(StoreError::from)?;
            let tenant_id = String::from_utf8_lossy(&key).into_owned();
            let counters: Counters = decode(&tenant_id, &raw)?;
            write_item(out, &Item::Usage { tenant_id, counters }, &mut summary)?;
        }
        write_end(out, &mut summary)?;
        Ok(summary)
    }
}

impl ImportTarget for SledStore {
    async fn first_data(&self) -> Result<Option<String>, StoreError> {
        let trees = [
            (&self.tenants, "tenants"),
            (&self.plugins, "plugins"),
            (&self.projects, "projects"),
            (&self.outbox, "outbox entries"),
            (&self.parked, "parked entries"),
            (&self.runs, "run history"),
        ];
        Ok(trees.into_iter().find(|(tree, _)| !tree.is_empty()).map(|(_, what)| what.to_string()))
    }

    async fn set_unfinished(&self, unfinished: bool) -> Result<(), StoreError> {
        if unfinished {
            self.meta.insert(IMPORT_UNFINISHED, &[1])?;
        } else {
            self.meta.remove(IMPORT_UNFINISHED)?;
        }
        Ok(())
    }

    async fn put_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        self.tenants.insert(tenant.id.as_bytes(), super::encode(tenant)?)?;
        self.keys.insert(tenant.key_hash.as_bytes(), tenant.id.as_bytes())?;
        Ok(())
    }

    async fn put_plugin(&self, tenant: &str, plugin: &PluginMeta) -> Result<bool, StoreError> {
        let key = format!("{tenant}/{}", plugin.id);
        Ok(self.plugins.insert(key.as_bytes(), super::encode(plugin)?)?.is_none())
    }

    async fn put_component(&self, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        chunks::put_single(&self.blobs, &self.blob_chunks, id.as_bytes(), bytes)?;
        Ok(())
    }

    async fn put_project(&self, project: &Project) -> Result<(), StoreError> {
        let record = format!("{}/{}", project.tenant_id, project.id);
        self.projects.insert(record.as_bytes(), super::encode(project)?)?;
        Ok(())
    }

    async fn put_state(&self, tenant: &str, project: &str, state: &[u8]) -> Result<(), StoreError> {
        let key = super::outbox::state_key(tenant, project);
        chunks::put_single(&self.state, &self.state_chunks, key.as_bytes(), state)?;
        self.disk.change(tenant, DiskKind::State, size(key.as_bytes(), state), 0);
        Ok(())
    }

    async fn put_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.apply_enqueue(entry).map(drop)
    }

    async fn put_parked(&self, parked: ParkedEntry) -> Result<(), StoreError> {
        let key = self.new_outbox_key(&parked.entry.tenant_id, &parked.entry.project_id)?;
        let tenant = parked.entry.tenant_id.clone();
        let value = encode_parked(&parked)?;
        chunks::put_single(&self.parked, &self.parked_chunks, &key, &value)?;
        self.disk.change(&tenant, DiskKind::Parked, size(&key, &value), 0);
        Ok(())
    }

    async fn put_run(&self, tenant: &str, run: &Run) -> Result<(), StoreError> {
        let key = run_key(tenant, run);
        let value = super::encode(run)?;
        self.runs.insert(key.as_bytes(), value.as_slice())?;
        self.disk.change(tenant, DiskKind::History, size(key.as_bytes(), &value), 0);
        Ok(())
    }

    async fn put_usage(&self, tenant: &str, counters: &Counters) -> Result<(), StoreError> {
        self.usage.insert(tenant.as_bytes(), super::encode(counters)?)?;
        Ok(())
    }

    async fn finish(&self, derived: &Derived) -> Result<(), StoreError> {
        for (tenant, (projects, plugins)) in &derived.counts {
            self.counts.insert(format!("{tenant}/projects"), &projects.to_be_bytes())?;
            self.counts.insert(format!("{tenant}/plugins"), &plugins.to_be_bytes())?;
        }
        for (id, holders) in &derived.holders {
            self.blob_refs.insert(id.as_bytes(), &holders.to_be_bytes())?;
        }
        // A component no tenant holds would never be deleted: leave it out.
        for id in &derived.unheld {
            let (blobs, pieces) = (&self.blobs, &self.blob_chunks);
            sled::Transactional::transaction(&(blobs, pieces), |(blobs, pieces)| {
                chunks::remove(blobs, pieces, id.as_bytes())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<StoreError>>(())
            })?;
        }
        Ok(())
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.flush().await
    }
}
