//! Per-tenant disk accounting: the bytes of committed state, of records waiting for Kinesis, of
//! parked entries and of run history each tenant keeps in the store.
//!
//! The figures are derived from what is stored, so they live in memory: [`SledStore::open`] adds up
//! every tree once, and each write adjusts them by what it added and removed. They feed the
//! tenant's `max_outbox_bytes` quota, `GET /v1/usage` and `/metrics`. Sizes count keys and values
//! as sled stores them; sled's own overhead (page headers, the log's free space) comes on top and
//! is bounded by its segment cleaner, not by tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use utoipa::ToSchema;

/// Bytes one tenant keeps in the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct DiskUsage {
    /// Committed project states.
    pub state_bytes: u64,
    /// Records and pending states waiting for Kinesis.
    pub outbox_bytes: u64,
    /// Parked entries: records Kinesis refused, waiting for the tenant to retry or discard them.
    pub parked_bytes: u64,
    /// Run history.
    pub history_bytes: u64,
}

impl DiskUsage {
    /// What counts against the tenant's `max_outbox_bytes` quota: waiting and parked entries.
    pub fn undelivered_bytes(&self) -> u64 {
        self.outbox_bytes + self.parked_bytes
    }
}

/// Which figure a write changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiskKind {
    State,
    Outbox,
    Parked,
    History,
}

/// The figures of every tenant with anything stored. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct DiskLedger {
    tenants: Arc<Mutex<HashMap<String, DiskUsage>>>,
}

impl DiskLedger {
    /// Adds `added` bytes and takes away `removed` bytes of one kind for a tenant.
    pub fn change(&self, tenant: &str, kind: DiskKind, added: u64, removed: u64) {
        if added == removed {
            return;
        }
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let usage = tenants.entry(tenant.to_string()).or_default();
        let figure = match kind {
            DiskKind::State => &mut usage.state_bytes,
            DiskKind::Outbox => &mut usage.outbox_bytes,
            DiskKind::Parked => &mut usage.parked_bytes,
            DiskKind::History => &mut usage.history_bytes,
        };
        *figure = figure.saturating_add(added).saturating_sub(removed);
        if *usage == DiskUsage::default() {
            tenants.remove(tenant);
        }
    }

    pub fn of(&self, tenant: &str) -> DiskUsage {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner()).get(tenant).copied().unwrap_or_default()
    }

    /// Every tenant's figures, by tenant id.
    pub fn all(&self) -> Vec<(String, DiskUsage)> {
        let tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<_> = tenants.iter().map(|(id, usage)| (id.clone(), *usage)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Adds up one tree whose keys start with `<tenant id>/`; `len` gives a stored value's
    /// length from its key and what the tree holds under it.
    pub fn count_tree(&self, tree: &sled::Tree, kind: DiskKind, len: fn(&[u8], &[u8]) -> u64) -> sled::Result<()> {
        for item in tree.iter() {
            let (key, value) = item?;
            let tenant = key.split(|b| *b == b'/').next().unwrap_or_default();
            self.change(&String::from_utf8_lossy(tenant), kind, key.len() as u64 + len(&key, &value), 0);
        }
        Ok(())
    }
}

/// The size a key and value take in the accounting.
pub(crate) fn size(key: &[u8], value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_move_by_what_was_added_and_removed_and_empty_tenants_go() {
        let ledger = DiskLedger::default();
        ledger.change("ten_a", DiskKind::Outbox, 100, 0);
        ledger.change("ten_a", DiskKind::Parked, 30, 0);
        ledger.change("ten_b", DiskKind::State, 7, 0);
        assert_eq!(ledger.of("ten_a").undelivered_bytes(), 130);
        ledger.change("ten_a", DiskKind::Outbox, 0, 100);
        ledger.change("ten_a", DiskKind::Parked, 0, 500);
        assert_eq!(ledger.of("ten_a"), DiskUsage::default(), "never below zero");
        assert_eq!(ledger.all(), vec![("ten_b".to_string(), DiskUsage { state_bytes: 7, ..DiskUsage::default() })]);
    }
}
