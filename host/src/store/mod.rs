//! Persistence in sled: the only module that imports it.
//!
//! Trees: `meta` (schema version), `tenants` (id → JSON), `keys` (SHA-256 of an API key →
//! tenant id). Writes that touch several trees run in one sled transaction, and every write is
//! flushed to disk before the call returns, so that a response the API has sent survives a
//! `kill -9`.
//!
//! `store` knows nothing of HTTP: it takes and returns the records in [`model`].

pub mod model;
mod secrets;

use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

pub use model::{QuotaOverrides, Quotas, Tenant, TenantStatus, Tier};
pub use secrets::{ApiKey, constant_time_eq, hash_key};

/// The layout version this build reads and writes.
const SCHEMA_VERSION: u32 = 1;

/// A storage failure. These are the host's problems, never the caller's input.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    #[error("stored record {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
    #[error("the data directory holds schema version {found}, but this build reads version {SCHEMA_VERSION}")]
    Schema { found: u32 },
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Db(e),
        }
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The daemon's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tenants: sled::Tree,
    keys: sled::Tree,
}

impl Store {
    /// Opens (or creates) the database in `dir`, refusing one written by another schema version.
    pub fn open(dir: &Path) -> Result<Self> {
        let db = sled::Config::new().path(dir).open()?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            Some(raw) => {
                let found = raw.as_ref().try_into().map(u32::from_be_bytes).unwrap_or(0);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema { found });
                }
            }
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
                db.flush()?;
            }
        }
        Ok(Self { tenants: db.open_tree("tenants")?, keys: db.open_tree("keys")?, db })
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Creates a tenant with a fresh API key, returned once here and stored only as its hash.
    pub async fn create_tenant(&self, name: &str, tier: Tier) -> Result<(Tenant, ApiKey)> {
        let key = ApiKey::generate();
        let tenant = Tenant {
            id: format!("ten_{}", secrets::random_hex(8)),
            name: name.to_string(),
            tier,
            status: TenantStatus::Active,
            quota_overrides: QuotaOverrides::default(),
            created_at: now_rfc3339(),
            key_hash: key.hash(),
        };
        let value = encode(&tenant)?;
        (&self.tenants, &self.keys).transaction(|(tenants, keys)| {
            tenants.insert(tenant.id.as_bytes(), value.as_slice())?;
            keys.insert(tenant.key_hash.as_bytes(), tenant.id.as_bytes())?;
            Ok::<_, ConflictableTransactionError<StoreError>>(())
        })?;
        self.flush().await?;
        Ok((tenant, key))
    }

    /// One tenant by id.
    pub fn tenant(&self, id: &str) -> Result<Option<Tenant>> {
        self.tenants.get(id)?.map(|raw| decode(id, &raw)).transpose()
    }

    /// Every tenant, in id order.
    pub fn tenants(&self) -> Result<Vec<Tenant>> {
        self.tenants
            .iter()
            .map(|entry| {
                let (key, raw) = entry?;
                decode(&String::from_utf8_lossy(&key), &raw)
            })
            .collect()
    }

    /// The tenant an API key belongs to, if the key is current.
    pub fn tenant_for_key(&self, key: &str) -> Result<Option<Tenant>> {
        let hash = hash_key(key);
        let Some(id) = self.keys.get(hash.as_bytes())? else { return Ok(None) };
        let tenant = self.tenant(&String::from_utf8_lossy(&id))?;
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
    pub async fn rotate_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let key = ApiKey::generate();
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

    /// Deletes a tenant and revokes its key. Returns whether it existed.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool> {
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

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt { key: "(new record)".into(), message: e.to_string() })
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt { key: key.to_string(), message: e.to_string() })
}

/// The current time as RFC 3339 in UTC, to the second.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tenants_keys_and_rotation_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (tenant, key) = store.create_tenant("acme", Tier::Standard).await.unwrap();
        assert_eq!(store.tenant_for_key(key.expose()).unwrap().unwrap().id, tenant.id);
        let new_key = store.rotate_key(&tenant.id).await.unwrap().unwrap();
        assert!(store.tenant_for_key(key.expose()).unwrap().is_none(), "the old key is revoked");
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.tenant_for_key(new_key.expose()).unwrap().unwrap().name, "acme");
        assert!(store.delete_tenant(&tenant.id).await.unwrap());
        assert!(store.tenant_for_key(new_key.expose()).unwrap().is_none());
        assert!(store.tenants().unwrap().is_empty());
    }
}
