//! What hosts sharing a store by leases keep in it (`cluster` decides with it): a lease per
//! partition, a record per host, and the change feed through which a change made on any host
//! reaches the host that runs the project. Only the shared store keeps them; the embedded store
//! serves one host and answers [`StoreError::NeedsSharedStore`].

use super::facade::Backend;
use super::{Result, Store, StoreError};

/// A partition's lease, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub partition: u32,
    /// The host holding it; empty when nobody does.
    pub owner: String,
    /// Changes only when ownership changes, so that a write fenced by an older epoch fails.
    pub epoch: u64,
    /// Counts its owner's renewals; another host takes the lease once it has seen the count
    /// unchanged for a whole lease period (no clocks compared between hosts).
    pub heartbeat: u64,
}

/// A host of the cluster, as it last described itself.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HostRecord {
    pub id: String,
    /// Where its API answers.
    pub api_url: String,
    /// Counts the host's rounds; the others see it alive while it changes.
    pub heartbeat: u64,
    /// Projects it schedules.
    pub projects: u64,
    /// Runs it started per second, over its last round.
    pub polls_per_s: f64,
    /// Leases it holds.
    pub leases: u64,
}

/// A change made through the API, for the host that runs the project to apply.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// Unique per change: a host applies each once.
    pub id: String,
    /// When it was published, in ms since the epoch (by the publishing host's clock).
    pub at_ms: i64,
    pub tenant: String,
    /// `None`: the tenant itself changed (disabled, enabled, deleted).
    pub project: Option<String>,
    /// The nominal time of a manual run asked for, if that is the change.
    pub run_now_at_ms: Option<i64>,
}

impl Store {
    fn shared(&self, what: &'static str) -> Result<&super::dynamo::DynamoStore> {
        match &self.backend {
            Backend::Dynamo(store) => Ok(store),
            Backend::Sled(_) => Err(StoreError::NeedsSharedStore(what)),
        }
    }

    /// Every partition's lease, creating those missing (free, epoch 0).
    pub async fn leases(&self, partitions: u32) -> Result<Vec<Lease>> {
        self.shared("leases")?.leases(partitions).await
    }

    /// Renews a lease this host holds at `epoch`; `false` if it does not any more.
    pub async fn renew_lease(&self, lease: &Lease) -> Result<bool> {
        self.shared("leases")?.renew_lease(lease).await
    }

    /// Takes `seen` for `host` if it is still exactly as seen; the taken lease, or `None` if
    /// someone renewed or took it meanwhile.
    pub async fn take_lease(&self, seen: &Lease, host: &str) -> Result<Option<Lease>> {
        self.shared("leases")?.take_lease(seen, host).await
    }

    /// Gives up a lease this host holds, so that others take it without waiting for it to expire.
    pub async fn release_lease(&self, lease: &Lease) -> Result<bool> {
        self.shared("leases")?.release_lease(lease).await
    }

    /// Writes this host's record.
    pub async fn put_host(&self, host: &HostRecord) -> Result<()> {
        self.shared("the host registry")?.put_host(host).await
    }

    /// Every host's record.
    pub async fn hosts(&self) -> Result<Vec<HostRecord>> {
        self.shared("the host registry")?.hosts().await
    }

    /// Removes a host's record (when it shuts down).
    pub async fn remove_host(&self, id: &str) -> Result<()> {
        self.shared("the host registry")?.remove_host(id).await
    }

    /// Publishes a change for the host that runs the project.
    pub async fn publish_change(&self, change: &Change) -> Result<()> {
        self.shared("the change feed")?.publish_change(change).await
    }

    /// Changes published at or after `since_ms`, oldest first.
    pub async fn changes_since(&self, since_ms: i64) -> Result<Vec<Change>> {
        self.shared("the change feed")?.changes_since(since_ms).await
    }
}
