//! Plugins: per-tenant records over content-addressed blobs.

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::model::PluginMeta;
use super::{Result, SledStore, StoreError, add_count, chunks, decode, decode_count, decode_entry, encode};

/// What [`SledStore::delete_plugin`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum DeletePlugin {
    Deleted,
    Absent,
    /// A project of the tenant still uses the plugin; it names one.
    InUse(String),
}

/// What [`SledStore::create_plugin`] did.
#[derive(Debug)]
pub enum CreatePlugin {
    /// The plugin is new for this tenant.
    Created(PluginMeta),
    /// The tenant already has these bytes; nothing changed.
    Exists(PluginMeta),
    /// The tenant already has its maximum number of plugins.
    QuotaExceeded,
}

fn record_key(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}")
}

fn count_key(tenant: &str) -> String {
    format!("{tenant}/plugins")
}

/// Changes a blob's reference count inside a transaction, storing or removing the blob itself
/// (in pieces, see `chunks.rs`: a component is megabytes) when the count leaves or reaches zero.
fn adjust_refs(
    blobs: &TransactionalTree,
    pieces: &TransactionalTree,
    refs: &TransactionalTree,
    id: &str,
    delta: i64,
    bytes: Option<&[u8]>,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let current = decode_count(refs.get(id)?);
    let next = current.saturating_add_signed(delta);
    if next == 0 {
        refs.remove(id)?;
        chunks::remove(blobs, pieces, id.as_bytes())?;
    } else {
        refs.insert(id, &next.to_be_bytes())?;
        if current == 0
            && let Some(bytes) = bytes
        {
            chunks::put(blobs, pieces, id.as_bytes(), bytes)?;
        }
    }
    Ok(())
}

impl SledStore {
    /// Stores a plugin for a tenant unless it already has it or is at `max_plugins`.
    pub async fn create_plugin(
        &self,
        tenant: &str,
        meta: PluginMeta,
        bytes: &[u8],
        max_plugins: u32,
    ) -> Result<CreatePlugin> {
        // Counting needs a scan, which sled transactions cannot do; serializing quota-checked
        // creates keeps two concurrent uploads from both passing the check.
        let guard = self.quota_lock.lock().await;
        if let Some(existing) = self.plugin(tenant, &meta.id).await? {
            return Ok(CreatePlugin::Exists(existing));
        }
        if self.count(&count_key(tenant))? >= u64::from(max_plugins) {
            return Ok(CreatePlugin::QuotaExceeded);
        }
        let key = record_key(tenant, &meta.id);
        let value = encode(&meta)?;
        let counter = count_key(tenant);
        let trees = (&self.plugins, &self.blobs, &self.blob_chunks, &self.blob_refs, &self.counts);
        trees.transaction(|(plugins, blobs, pieces, refs, counts)| {
            plugins.insert(key.as_bytes(), value.as_slice())?;
            add_count(counts, &counter, 1)?;
            adjust_refs(blobs, pieces, refs, &meta.id, 1, Some(bytes))
        })?;
        // As in `create_project`: the count is settled, so the disk sync need not hold the lock.
        drop(guard);
        self.flush().await?;
        Ok(CreatePlugin::Created(meta))
    }

    /// One of a tenant's plugins.
    pub async fn plugin(&self, tenant: &str, id: &str) -> Result<Option<PluginMeta>> {
        let key = record_key(tenant, id);
        self.plugins.get(&key)?.map(|raw| decode(&key, &raw)).transpose()
    }

    /// A tenant's plugins, in id order.
    pub async fn plugins(&self, tenant: &str) -> Result<Vec<PluginMeta>> {
        self.plugins.scan_prefix(format!("{tenant}/")).map(decode_entry).collect()
    }

    /// A plugin's component bytes, if any tenant still holds it.
    pub async fn plugin_bytes(&self, id: &str) -> Result<Option<Vec<u8>>> {
        chunks::get(&self.blobs, &self.blob_chunks, id.as_bytes())
    }

    /// Removes one of a tenant's plugins unless a project of the tenant uses it.
    pub async fn delete_plugin(&self, tenant: &str, id: &str) -> Result<DeletePlugin> {
        // Holding the lock that project creation also takes keeps a new project from picking the
        // plugin up between the check and the delete.
        let _guard = self.quota_lock.lock().await;
        if let Some(project) = self.project_using_plugin(tenant, id).await? {
            return Ok(DeletePlugin::InUse(project));
        }
        self.remove_plugin(tenant, id).await
    }

    async fn remove_plugin(&self, tenant: &str, id: &str) -> Result<DeletePlugin> {
        let key = record_key(tenant, id);
        let counter = count_key(tenant);
        let trees = (&self.plugins, &self.blobs, &self.blob_chunks, &self.blob_refs, &self.counts);
        let deleted = trees.transaction(|(plugins, blobs, pieces, refs, counts)| {
            if plugins.remove(key.as_bytes())?.is_none() {
                return Ok(false);
            }
            add_count(counts, &counter, -1)?;
            adjust_refs(blobs, pieces, refs, id, -1, None)?;
            Ok(true)
        })?;
        self.flush().await?;
        Ok(if deleted { DeletePlugin::Deleted } else { DeletePlugin::Absent })
    }

    /// Removes all of a tenant's plugins (when the tenant is deleted, after its projects).
    pub(crate) async fn delete_plugins_of(&self, tenant: &str) -> Result<()> {
        for plugin in self.plugins(tenant).await? {
            self.remove_plugin(tenant, &plugin.id).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::Tier;

    fn meta(id: &str) -> PluginMeta {
        PluginMeta { id: id.into(), name: "p".into(), size_bytes: 3, created_at: "now".into() }
    }

    #[tokio::test]
    async fn blobs_are_shared_and_freed_with_their_last_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (a, _) = store.create_tenant("a", Tier::Free).await.unwrap();
        let (b, _) = store.create_tenant("b", Tier::Free).await.unwrap();
        assert!(matches!(
            store.create_plugin(&a.id, meta("sha256:x"), b"abc", 5).await.unwrap(),
            CreatePlugin::Created(_)
        ));
        assert!(matches!(
            store.create_plugin(&a.id, meta("sha256:x"), b"abc", 5).await.unwrap(),
            CreatePlugin::Exists(_)
        ));
        assert!(matches!(
            store.create_plugin(&b.id, meta("sha256:x"), b"abc", 5).await.unwrap(),
            CreatePlugin::Created(_)
        ));
        assert!(matches!(
            store.create_plugin(&b.id, meta("sha256:y"), b"def", 1).await.unwrap(),
            CreatePlugin::QuotaExceeded
        ));
        assert!(store.plugin(&b.id, "sha256:y").await.unwrap().is_none());

        assert_eq!(store.delete_plugin(&a.id, "sha256:x").await.unwrap(), DeletePlugin::Deleted);
        assert_eq!(store.plugin_bytes("sha256:x").await.unwrap().as_deref(), Some(&b"abc"[..]), "b still holds it");
        assert!(store.plugin(&a.id, "sha256:x").await.unwrap().is_none());
        store.delete_tenant(&b.id).await.unwrap();
        assert!(store.plugin_bytes("sha256:x").await.unwrap().is_none(), "freed with its last holder");

        // A component is stored in pieces, and its pieces go with it.
        let big: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
        let (c, _) = store.create_tenant("c", Tier::Free).await.unwrap();
        store.create_plugin(&c.id, meta("sha256:big"), &big, 5).await.unwrap();
        assert_eq!(store.plugin_bytes("sha256:big").await.unwrap(), Some(big));
        assert!(store.blob_chunks.len() > 20);
        store.delete_plugin(&c.id, "sha256:big").await.unwrap();
        assert!(store.blob_chunks.is_empty() && store.blobs.is_empty());
    }
}
