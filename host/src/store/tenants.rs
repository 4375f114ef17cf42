//! Tenants and their API keys.

use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use super::keys::{self, TenantKey, constant_time_eq, hash_key};
use super::model::{Tenant, Tier};
use super::{Result, SledStore, StoreError, decode, decode_entry, encode};

impl SledStore {
    /// Creates a tenant with a fresh API key, returned once here and stored only as its hash.
    pub async fn create_tenant(&self, name: &str, tier: Tier) -> Result<(Tenant, TenantKey)> {
        let (tenant, key) = keys::new_tenant(name, tier);
        let value = encode(&tenant)?;
        (&self.tenants, &self.keys).transaction(|(tenants, keys)| {
            tenants.insert(tenant.id.as_bytes(), value.as_slice())?;
            keys.insert(tenant.key_hash.as_bytes(), tenant.id.as_bytes())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        self.flush().await?;
        Ok((tenant, key))
    }

    /// Gives every tenant stored before tenants had an external id one of its own.
    pub(super) fn give_tenants_external_ids(&self) -> Result<()> {
        let mut changed = false;
        for item in self.tenants.iter() {
            let tenant: Tenant = decode_entry(item)?;
            if tenant.external_id.is_empty() {
                let tenant = Tenant { external_id: keys::random_hex(16), ..tenant };
                self.tenants.insert(tenant.id.as_bytes(), encode(&tenant)?)?;
                changed = true;
            }
        }
        if changed {
            self.db.flush()?;
        }
        Ok(())
    }

    /// One tenant by id.
    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>> {
        self.tenants.get(id)?.map(|raw| decode(id, &raw)).transpose()
    }

    /// Every tenant, in id order.
    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.tenants.iter().map(decode_entry).collect()
    }

    /// The tenant an API key belongs to, if the key is current.
    pub async fn tenant_for_key(&self, key: &str) -> Result<Option<Tenant>> {
        let hash = hash_key(key);
        let Some(id) = self.keys.get(hash.as_bytes())? else { return Ok(None) };
        let tenant = self.tenant(&String::from_utf8_lossy(&id)).await?;
        // The lookup was by hash; comparing the stored hash again in constant time keeps the
        // decision itself free of timing differences.
        Ok(tenant.filter(|t| constant_time_eq(t.key_hash.as_bytes(), hash.as_bytes())))
    }

    /// Applies `change` to a tenant and stores the result.
    pub async fn update_tenant(&self, id: &str, change: impl Fn(&mut Tenant)) -> Result<Option<Tenant>> {
        let updated = self.tenants.transaction(|tenants| {
            let Some(raw) = tenants.get(id)? else { return Ok(None) };
            let mut tenant: Tenant = decode(id, &raw).map_err(ConflictableTransactionError::Abort)?;
            change(&mut tenant);
            tenants.insert(id.as_bytes(), encode(&tenant).map_err(ConflictableTransactionError::Abort)?)?;
            Ok(Some(tenant))
        })?;
        self.flush().await?;
        Ok(updated)
    }

    /// Issues a new API key for a tenant and revokes the old one at once.
    pub async fn rotate_key(&self, id: &str) -> Result<Option<TenantKey>> {
        let key = TenantKey::generate();
        let new_hash = key.hash();
        let rotated = (&self.tenants, &self.keys).transaction(|(tenants, keys)| {
            let Some(raw) = tenants.get(id)? else { return Ok(false) };
            let mut tenant: Tenant = decode(id, &raw).map_err(ConflictableTransactionError::Abort)?;
            keys.remove(tenant.key_hash.as_bytes())?;
            tenant.key_hash = new_hash.clone();
            keys.insert(new_hash.as_bytes(), id.as_bytes())?;
            tenants.insert(id.as_bytes(), encode(&tenant).map_err(ConflictableTransactionError::Abort)?)?;
            Ok(true)
        })?;
        self.flush().await?;
        Ok(rotated.then_some(key))
    }

    /// Deletes a tenant with its projects and plugins, and revokes its key. Returns whether it existed.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool> {
        self.delete_projects_of(id).await?;
        self.delete_plugins_of(id).await?;
        self.delete_usage_of(id)?;
        let deleted = (&self.tenants, &self.keys).transaction(|(tenants, keys)| {
            let Some(raw) = tenants.remove(id)? else { return Ok(false) };
            let tenant: Tenant = decode(id, &raw).map_err(ConflictableTransactionError::Abort)?;
            keys.remove(tenant.key_hash.as_bytes())?;
            Ok(true)
        })?;
        self.flush().await?;
        Ok(deleted)
    }
}
