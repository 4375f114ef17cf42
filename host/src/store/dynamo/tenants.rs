//! Tenants and their API keys in DynamoDB.

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::super::StoreError;
use super::super::keys::{self, TenantKey, constant_time_eq, hash_key};
use super::super::model::{Tenant, Tier};
use super::{
    DynamoStore, Item, api_key, cancelled_conditions, counts_key, doc, doc_of, local, n, number_of, remote, s,
    string_of, tenant_key, usage_key,
};

/// How often a conditional update of one record is tried when other writers keep changing it.
pub(super) const UPDATE_ATTEMPTS: usize = 20;

impl DynamoStore {
    pub(super) fn tenant_put(&self, tenant: &Tenant, version: i64) -> Result<Put, StoreError> {
        let mut item = tenant_key(&tenant.id);
        item.insert("doc".into(), doc(tenant)?);
        item.insert("v".into(), n(version));
        Put::builder().table_name(&self.table).set_item(Some(item)).build().map_err(|e| local("TransactWriteItems", e))
    }

    pub(super) fn key_put(&self, hash: &str, tenant: &str) -> Result<Put, StoreError> {
        let mut item = api_key(hash);
        item.insert("tenant".into(), s(tenant));
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| local("TransactWriteItems", e))
    }

    /// Creates a tenant with a fresh API key, returned once here and stored only as its hash.
    pub async fn create_tenant(&self, name: &str, tier: Tier) -> Result<(Tenant, TenantKey), StoreError> {
        let (tenant, key) = keys::new_tenant(name, tier);
        let mut put = self.tenant_put(&tenant, 1)?;
        put.condition_expression = Some("attribute_not_exists(pk)".into());
        self.db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().put(self.key_put(&tenant.key_hash, &tenant.id)?).build())
            .send()
            .await
            .map_err(|e| remote("TransactWriteItems", e))?;
        Ok((tenant, key))
    }

    /// One tenant by id.
    pub async fn tenant(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        self.get(tenant_key(id)).await?.map(|item| doc_of(&item)).transpose()
    }

    /// Every tenant, in id order.
    pub async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.query("tenants", "").await?.iter().map(doc_of).collect()
    }

    /// The tenant an API key belongs to, if the key is current.
    pub async fn tenant_for_key(&self, key: &str) -> Result<Option<Tenant>, StoreError> {
        let hash = hash_key(key);
        let Some(item) = self.get(api_key(&hash)).await? else { return Ok(None) };
        let tenant = self.tenant(string_of(&item, "tenant")?).await?;
        // As in the sled store: the decision compares the stored hash in constant time.
        Ok(tenant.filter(|t| constant_time_eq(t.key_hash.as_bytes(), hash.as_bytes())))
    }

    /// Applies `change` to a tenant and stores the result, unless another writer changed the
    /// tenant meanwhile, in which case it reads the tenant again and retries. `change` may run
    /// more than once, so it must not have side effects.
    pub async fn update_tenant(&self, id: &str, change: impl Fn(&mut Tenant)) -> Result<Option<Tenant>, StoreError> {
        self.update_versioned(tenant_key(id), "tenant", id, change).await
    }

    /// Issues a new API key for a tenant and revokes the old one, in one transaction.
    pub async fn rotate_key(&self, id: &str) -> Result<Option<TenantKey>, StoreError> {
        let key = TenantKey::generate();
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(item) = self.get(tenant_key(id)).await? else { return Ok(None) };
            let version = number_of(&item, "v")?;
            let mut tenant: Tenant = doc_of(&item)?;
            let old_hash = std::mem::replace(&mut tenant.key_hash, key.hash());
            let mut put = self.tenant_put(&tenant, version + 1)?;
            put.condition_expression = Some("v = :v".into());
            put.expression_attribute_values = Some([(":v".to_string(), n(version))].into());
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(api_key(&old_hash)))
                .build()
                .map_err(|e| local("TransactWriteItems", e))?;
            let written = self
                .db
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .transact_items(TransactWriteItem::builder().delete(delete).build())
                .transact_items(TransactWriteItem::builder().put(self.key_put(&tenant.key_hash, id)?).build())
                .send()
                .await;
            match written {
                Ok(_) => return Ok(Some(key)),
                Err(e) if cancelled_conditions(&e).is_some_and(|failed| failed.first() == Some(&true)) => continue,
                Err(e) => return Err(remote("TransactWriteItems", e)),
            }
        }
        Err(contended("tenant", id))
    }

    /// Deletes a tenant with its projects and plugins, and revokes its key. Returns whether it
    /// existed.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool, StoreError> {
        let Some(tenant) = self.tenant(id).await? else { return Ok(false) };
        // The key first: from here on the tenant cannot call the API to add anything.
        self.delete_item(api_key(&tenant.key_hash)).await?;
        for project in self.projects(id).await? {
            self.delete_project(id, &project.id).await?;
        }
        for plugin in self.plugins(id).await? {
            self.remove_plugin(id, &plugin.id).await?;
        }
        self.delete_item(counts_key(id)).await?;
        self.delete_item(usage_key(id)).await?;
        self.delete_item(tenant_key(id)).await?;
        Ok(true)
    }

    pub(super) async fn delete_item(&self, key: Item) -> Result<(), StoreError> {
        self.db
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(|e| remote("DeleteItem", e))?;
        Ok(())
    }
}

/// A record other writers kept changing through every attempt.
pub(super) fn contended(what: &str, id: &str) -> StoreError {
    StoreError::Remote {
        operation: "PutItem".into(),
        message: format!("{what} {id} changed under {UPDATE_ATTEMPTS} attempts in a row to update it; try again"),
    }
}
