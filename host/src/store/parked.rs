//! Parked outbox entries: a run's records that Kinesis refused for a reason no retry can fix
//! (InvalidArgument and the like), set aside so that they no longer block the project's later
//! entries, and kept until the tenant retries or discards them.
//!
//! Parking is not dropping: the entry keeps every record, the error Kinesis gave and when it was
//! parked, and counts against the tenant's `max_outbox_bytes` quota until the tenant decides. It
//! settles the run's place in the project's sequence: its state is committed in the same
//! transaction that parks it, as a delivery would, so later runs go on from where it left off
//! instead of fetching its data again. Retrying puts its records back in the outbox as a new
//! entry, after everything waiting, without a state (a newer one has been committed since).

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::disk::{DiskKind, size};
use super::outbox::{OutboxEntry, OutboxKey, decode_entry, encode_entry, project_prefix, state_key};
use super::{Result, SledStore, StoreError, chunks};

/// A parked entry, as the tenant sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEntry {
    pub entry: OutboxEntry,
    /// What Kinesis said, as the run's failure message put it.
    pub error: String,
    /// When it was parked, RFC 3339.
    pub parked_at: String,
}

/// What is stored ahead of the entry itself.
#[derive(Serialize, Deserialize)]
struct Parking {
    error: String,
    parked_at: String,
}

pub(super) fn encode_parked(parked: &ParkedEntry) -> Result<Vec<u8>> {
    let parking = super::encode(&Parking { error: parked.error.clone(), parked_at: parked.parked_at.clone() })?;
    let entry = encode_entry(&parked.entry)?;
    let mut out = Vec::with_capacity(4 + parking.len() + entry.len());
    out.extend_from_slice(&(parking.len() as u32).to_be_bytes());
    out.extend_from_slice(&parking);
    out.extend_from_slice(&entry);
    Ok(out)
}

pub(super) fn decode_parked(key: &[u8], raw: &[u8]) -> Result<ParkedEntry> {
    let key = String::from_utf8_lossy(key);
    let corrupt = || StoreError::Corrupt { key: key.to_string(), message: "truncated parked entry".into() };
    let len = raw.get(..4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes).ok_or_else(corrupt)? as usize;
    let parking: Parking = super::decode(&key, raw.get(4..4 + len).ok_or_else(corrupt)?)?;
    let entry = decode_entry(&key, &raw[4 + len..])?;
    Ok(ParkedEntry { entry, error: parking.error, parked_at: parking.parked_at })
}

/// What [`SledStore::retry_parked`] and [`SledStore::discard_parked`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkedAction {
    /// Done.
    Done,
    /// The run's entry is waiting for delivery, not parked.
    Waiting,
    /// The project has no entry of that run.
    NotFound,
}

impl SledStore {
    /// Moves an entry Kinesis refused for good from the outbox to the parked entries and commits
    /// its state, in one transaction, flushed before it returns; `entry` is the entry stored under
    /// `key`, as the caller read it to deliver it.
    pub async fn park(&self, key: &OutboxKey, entry: &OutboxEntry, error: &str, parked_at: &str) -> Result<()> {
        let state_key = state_key(&entry.tenant_id, &entry.project_id);
        let parked = encode_parked(&ParkedEntry {
            entry: entry.clone(),
            error: error.to_string(),
            parked_at: parked_at.into(),
        })?;
        let trees =
            (&self.outbox, &self.outbox_chunks, &self.parked, &self.parked_chunks, &self.state, &self.state_chunks);
        let done = trees.transaction(|(outbox, outbox_pieces, parked_tree, parked_pieces, state, state_pieces)| {
            // Gone already (its project was deleted meanwhile): nothing to park.
            let Some(removed) = chunks::remove(outbox, outbox_pieces, &key.0)? else { return Ok(None) };
            chunks::put(parked_tree, parked_pieces, &key.0, &parked)?;
            let replaced = match &entry.state {
                Some(new_state) => chunks::put(state, state_pieces, state_key.as_bytes(), new_state)?,
                None => None,
            };
            Ok(Some((removed, replaced)))
        })?;
        let Some((removed, replaced)) = done else { return Ok(()) };
        let tenant = &entry.tenant_id;
        self.disk.change(tenant, DiskKind::Outbox, 0, key.0.len() as u64 + removed);
        self.disk.change(tenant, DiskKind::Parked, size(&key.0, &parked), 0);
        if let Some(new_state) = &entry.state {
            let old = replaced.map_or(0, |old| state_key.len() as u64 + old);
            self.disk.change(tenant, DiskKind::State, size(state_key.as_bytes(), new_state), old);
        }
        self.flush().await
    }

    /// A project's parked entries, oldest first.
    pub async fn parked_of(&self, tenant: &str, project: &str) -> Result<Vec<ParkedEntry>> {
        self.parked
            .scan_prefix(project_prefix(tenant, project))
            .map(|item| {
                let (key, raw) = item?;
                decode_parked(&key, &chunks::assemble(&self.parked_chunks, &key, &raw)?)
            })
            .collect()
    }

    /// Puts a parked entry's records back in the outbox, after everything waiting, without its
    /// state (the state was committed when it was parked).
    pub async fn retry_parked(&self, tenant: &str, project: &str, run_id: &str) -> Result<ParkedAction> {
        let Some((key, raw, mut parked)) = self.find_parked(tenant, project, run_id)? else {
            return self.absent(tenant, project, run_id).await;
        };
        parked.entry.state = None;
        let new_key = self.new_outbox_key(tenant, project)?;
        let value = encode_entry(&parked.entry)?;
        let trees = (&self.outbox, &self.outbox_chunks, &self.parked, &self.parked_chunks);
        trees.transaction(|(outbox, outbox_pieces, parked_tree, parked_pieces)| {
            chunks::remove(parked_tree, parked_pieces, &key)?;
            chunks::put(outbox, outbox_pieces, &new_key, &value)?;
            Ok(())
        })?;
        self.disk.change(tenant, DiskKind::Parked, 0, size(&key, &raw));
        self.disk.change(tenant, DiskKind::Outbox, size(&new_key, &value), 0);
        self.flush().await?;
        Ok(ParkedAction::Done)
    }

    /// Deletes a parked entry and its records, at the tenant's request.
    pub async fn discard_parked(&self, tenant: &str, project: &str, run_id: &str) -> Result<ParkedAction> {
        let Some((key, raw, _)) = self.find_parked(tenant, project, run_id)? else {
            return self.absent(tenant, project, run_id).await;
        };
        let removed = (&self.parked, &self.parked_chunks).transaction(|(parked_tree, parked_pieces)| {
            Ok::<_, sled::transaction::ConflictableTransactionError<StoreError>>(chunks::remove(
                parked_tree,
                parked_pieces,
                &key,
            )?)
        })?;
        if removed.is_some() {
            self.disk.change(tenant, DiskKind::Parked, 0, size(&key, &raw));
        }
        self.flush().await?;
        Ok(ParkedAction::Done)
    }

    fn find_parked(
        &self,
        tenant: &str,
        project: &str,
        run_id: &str,
    ) -> Result<Option<(sled::IVec, Vec<u8>, ParkedEntry)>> {
        for item in self.parked.scan_prefix(project_prefix(tenant, project)) {
            let (key, header) = item?;
            let raw = chunks::assemble(&self.parked_chunks, &key, &header)?;
            let parked = decode_parked(&key, &raw)?;
            if parked.entry.run_id == run_id {
                return Ok(Some((key, raw, parked)));
            }
        }
        Ok(None)
    }

    /// Why a run's entry is not among the parked ones.
    async fn absent(&self, tenant: &str, project: &str, run_id: &str) -> Result<ParkedAction> {
        let waiting = self.outbox_of(tenant, project).await?.iter().any(|(_, entry)| entry.run_id == run_id);
        Ok(if waiting { ParkedAction::Waiting } else { ParkedAction::NotFound })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Record;

    fn entry(run: &str, state: &[u8]) -> OutboxEntry {
        OutboxEntry {
            tenant_id: "ten_a".into(),
            project_id: "prj_1".into(),
            run_id: run.into(),
            scheduled_at_ms: 1_700_000_000_000,
            state: Some(state.to_vec()),
            records: vec![Record { data: b"x".to_vec(), partition_key: String::new(), explicit_hash_key: None }],
        }
    }

    #[tokio::test]
    async fn parking_commits_the_state_keeps_the_records_and_lets_the_tenant_decide() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let first = store.enqueue(entry("run_1", b"s1")).await.unwrap();
        store.enqueue(entry("run_2", b"s2")).await.unwrap();
        let before = store.disk_usage("ten_a");

        store.park(&first, &entry("run_1", b"s1"), "kinesis refused it", "2026-12-07T10:00:00Z").await.unwrap();
        assert_eq!(store.committed_state("ten_a", "prj_1").await.unwrap().as_deref(), Some(&b"s1"[..]));
        assert_eq!(store.outbox_len_of("ten_a", "prj_1").await, 1, "the later entry still waits");
        let parked = store.parked_of("ten_a", "prj_1").await.unwrap();
        assert_eq!((parked.len(), parked[0].error.as_str()), (1, "kinesis refused it"));
        assert_eq!(parked[0].entry, entry("run_1", b"s1"));
        let after = store.disk_usage("ten_a");
        assert!(after.parked_bytes > 0 && after.outbox_bytes < before.outbox_bytes, "{after:?}");
        assert_eq!(after.undelivered_bytes() - after.parked_bytes, after.outbox_bytes);

        assert_eq!(store.retry_parked("ten_a", "prj_1", "run_2").await.unwrap(), ParkedAction::Waiting);
        assert_eq!(store.discard_parked("ten_a", "prj_1", "run_9").await.unwrap(), ParkedAction::NotFound);
        assert_eq!(store.retry_parked("ten_a", "prj_1", "run_1").await.unwrap(), ParkedAction::Done);
        let waiting = store.outbox_of("ten_a", "prj_1").await.unwrap();
        assert_eq!(waiting.iter().map(|(_, e)| e.run_id.as_str()).collect::<Vec<_>>(), ["run_2", "run_1"]);
        assert_eq!(waiting[1].1.state, None, "a retried entry commits no state");
        assert_eq!(store.disk_usage("ten_a").parked_bytes, 0);

        // Parked again, then discarded: nothing of it is left, also after reopening.
        store.park(&waiting[1].0, &waiting[1].1, "refused again", "2026-12-07T10:01:00Z").await.unwrap();
        assert_eq!(store.discard_parked("ten_a", "prj_1", "run_1").await.unwrap(), ParkedAction::Done);
        assert!(store.parked_of("ten_a", "prj_1").await.unwrap().is_empty());
        let usage = store.disk_usage("ten_a");
        drop(store);
        let store = crate::store::reopen(dir.path());
        assert_eq!(store.disk_usage("ten_a"), usage, "the accounting is rebuilt the same from disk");
    }
}
