//! The durable outbox and committed project state: what makes delivery at-least-once.
//!
//! A run writes its records and the state its plugin returned into one outbox entry before any
//! `PutRecords`. Once Kinesis has accepted every record of the entry, one transaction removes
//! the entry and commits its state. A crash at any moment therefore leaves either the entry (to
//! be delivered again) or the committed state, never a state without its records.
//!
//! Entries are keyed `<tenant>/<project>/<sequence>` with a sequence that only grows, so a scan
//! of one project yields its entries oldest first, which is the order they must be delivered
//! and their states committed in.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sled::Transactional;

use sled::transaction::ConflictableTransactionError;

use super::commit::{Applied, Commit};
use super::disk::{DiskKind, size};
use super::{Result, SledStore, StoreError, chunks};
use crate::records::Record;

/// One run's records and the state to commit once they are delivered. Delivery uses the
/// project's target at delivery time, so a tenant who fixes a wrong stream or role sees the
/// backlog go to the fixed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub tenant_id: String,
    pub project_id: String,
    pub run_id: String,
    /// The run's nominal time in ms since the epoch.
    pub scheduled_at_ms: i64,
    /// The state to commit once the records are accepted; `None` leaves the state unchanged.
    pub state: Option<Vec<u8>>,
    pub records: Vec<Record>,
}

impl OutboxEntry {
    /// Bytes of record data and partition keys, as Kinesis counts them.
    pub fn payload_bytes(&self) -> u64 {
        self.records.iter().map(|r| r.size() as u64).sum()
    }
}

/// The key of a stored outbox entry, handed back to [`SledStore::complete_delivery`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutboxKey(pub(super) Vec<u8>);

/// A summary of one entry waiting for Kinesis, as the tenant sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingEntry {
    /// The run that produced the records.
    pub run_id: String,
    /// The run's nominal time in ms since the epoch.
    pub scheduled_at_ms: i64,
    pub records: u64,
    /// Bytes of record data and partition keys.
    pub bytes: u64,
    /// Whether committing the entry will change the project's state.
    pub state_pending: bool,
}

impl WaitingEntry {
    /// The summary of `entry`.
    pub fn of(entry: &OutboxEntry) -> Self {
        Self {
            run_id: entry.run_id.clone(),
            scheduled_at_ms: entry.scheduled_at_ms,
            records: entry.records.len() as u64,
            bytes: entry.payload_bytes(),
            state_pending: entry.state.is_some(),
        }
    }
}

/// The JSON header of a stored entry; records follow it in a compact binary layout because
/// JSON would triple the size of binary record data.
#[derive(Serialize, Deserialize)]
struct Header {
    tenant_id: String,
    project_id: String,
    run_id: String,
    scheduled_at_ms: i64,
    /// The state, in entries written before it moved out of the header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_base64: Option<String>,
    /// Whether the state follows the header as a binary field.
    #[serde(default)]
    has_state: bool,
    records: usize,
}

pub(super) fn project_prefix(tenant: &str, project: &str) -> String {
    format!("{tenant}/{project}/")
}

pub(super) fn state_key(tenant: &str, project: &str) -> String {
    format!("{tenant}/{project}")
}

pub(super) fn encode_entry(entry: &OutboxEntry) -> Result<Vec<u8>> {
    let header = Header {
        tenant_id: entry.tenant_id.clone(),
        project_id: entry.project_id.clone(),
        run_id: entry.run_id.clone(),
        scheduled_at_ms: entry.scheduled_at_ms,
        state_base64: None,
        has_state: entry.state.is_some(),
        records: entry.records.len(),
    };
    let header = super::encode(&header)?;
    let state_len = entry.state.as_ref().map_or(0, Vec::len);
    let mut out =
        Vec::with_capacity(header.len() + state_len + entry.payload_bytes() as usize + entry.records.len() * 12 + 8);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    if let Some(state) = &entry.state {
        put_field(&mut out, state);
    }
    for record in &entry.records {
        put_field(&mut out, &record.data);
        put_field(&mut out, record.partition_key.as_bytes());
        match &record.explicit_hash_key {
            Some(key) => {
                out.push(1);
                put_field(&mut out, key.as_bytes());
            }
            None => out.push(0),
        }
    }
    Ok(out)
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads stored entries back; any inconsistency is reported as a corrupt record naming the key.
struct Reader<'a> {
    raw: &'a [u8],
    key: &'a str,
}

impl<'a> Reader<'a> {
    fn corrupt(&self) -> StoreError {
        StoreError::Corrupt { key: self.key.to_string(), message: "truncated outbox entry".into() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.raw.len() < n {
            return Err(self.corrupt());
        }
        let (head, rest) = self.raw.split_at(n);
        self.raw = rest;
        Ok(head)
    }

    fn field(&mut self) -> Result<&'a [u8]> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().map_err(|_| self.corrupt())?);
        self.take(len as usize)
    }

    fn string(&mut self) -> Result<String> {
        let bytes = self.field()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.corrupt())
    }
}

pub(super) fn decode_entry(key: &str, raw: &[u8]) -> Result<OutboxEntry> {
    let mut reader = Reader { raw, key };
    let header: Header = super::decode(key, reader.field()?)?;
    let state = match header.state_base64 {
        Some(text) => Some(
            BASE64
                .decode(text)
                .map_err(|e| StoreError::Corrupt { key: key.to_string(), message: format!("state: {e}") })?,
        ),
        None if header.has_state => Some(reader.field()?.to_vec()),
        None => None,
    };
    let mut records = Vec::with_capacity(header.records.min(100_000));
    for _ in 0..header.records {
        let data = reader.field()?.to_vec();
        let partition_key = reader.string()?;
        let explicit_hash_key = match reader.take(1)?[0] {
            0 => None,
            _ => Some(reader.string()?),
        };
        records.push(Record { data, partition_key, explicit_hash_key });
    }
    Ok(OutboxEntry {
        tenant_id: header.tenant_id,
        project_id: header.project_id,
        run_id: header.run_id,
        scheduled_at_ms: header.scheduled_at_ms,
        state,
        records,
    })
}

impl SledStore {
    /// Writes a run's records and pending state durably, through the committer (see
    /// `commit.rs`). Returns the entry's key.
    pub async fn enqueue(&self, entry: OutboxEntry) -> Result<OutboxKey> {
        match self.commit(Commit::Enqueue(entry)).await? {
            Applied::Enqueued(key) => Ok(key),
            Applied::Done => unreachable!("an enqueue answers with its key"),
        }
    }

    pub(super) fn apply_enqueue(&self, entry: &OutboxEntry) -> Result<OutboxKey> {
        let key = self.new_outbox_key(&entry.tenant_id, &entry.project_id)?;
        let value = encode_entry(entry)?;
        chunks::put_single(&self.outbox, &self.outbox_chunks, &key, &value)?;
        self.disk.change(&entry.tenant_id, DiskKind::Outbox, size(&key, &value), 0);
        Ok(OutboxKey(key))
    }

    /// A key after every entry the project has, waiting or parked.
    pub(super) fn new_outbox_key(&self, tenant: &str, project: &str) -> Result<Vec<u8>> {
        let sequence = self.db.generate_id()?;
        Ok(format!("{}{sequence:020}", project_prefix(tenant, project)).into_bytes())
    }

    /// What a project has waiting for Kinesis, oldest first, without the records themselves.
    pub async fn waiting_of(&self, tenant: &str, project: &str) -> Result<Vec<WaitingEntry>> {
        Ok(self.outbox_of(tenant, project).await?.into_iter().map(|(_, entry)| WaitingEntry::of(&entry)).collect())
    }

    /// A project's undelivered entries, oldest first.
    pub async fn outbox_of(&self, tenant: &str, project: &str) -> Result<Vec<(OutboxKey, OutboxEntry)>> {
        self.outbox
            .scan_prefix(project_prefix(tenant, project))
            .map(|item| {
                let (key, raw) = item?;
                let value = chunks::assemble(&self.outbox_chunks, &key, &raw)?;
                let entry = decode_entry(&String::from_utf8_lossy(&key), &value)?;
                Ok((OutboxKey(key.to_vec()), entry))
            })
            .collect()
    }

    /// The keys of a project's waiting entries, oldest first, without reading the entries: a
    /// delivery stops at the first entry Kinesis does not take, so it reads them one at a time.
    pub async fn outbox_keys_of(&self, tenant: &str, project: &str) -> Result<Vec<OutboxKey>> {
        self.outbox
            .scan_prefix(project_prefix(tenant, project))
            .keys()
            .map(|key| Ok(OutboxKey(key?.to_vec())))
            .collect()
    }

    /// The entry under `key`, if it is still waiting.
    pub async fn outbox_entry(&self, key: &OutboxKey) -> Result<Option<OutboxEntry>> {
        let Some(value) = chunks::get(&self.outbox, &self.outbox_chunks, &key.0)? else { return Ok(None) };
        decode_entry(&String::from_utf8_lossy(&key.0), &value).map(Some)
    }

    /// How many entries a project has waiting.
    pub async fn outbox_len_of(&self, tenant: &str, project: &str) -> usize {
        self.outbox.scan_prefix(project_prefix(tenant, project)).keys().count()
    }

    /// Every (tenant, project) with entries waiting, each once, in key order.
    pub async fn outbox_projects(&self) -> Result<Vec<(String, String)>> {
        let mut projects: Vec<(String, String)> = Vec::new();
        for key in self.outbox.iter().keys() {
            let key = key?;
            let text = String::from_utf8_lossy(&key);
            let mut parts = text.splitn(3, '/');
            if let (Some(tenant), Some(project)) = (parts.next(), parts.next())
                && projects.last().is_none_or(|(t, p)| t != tenant || p != project)
            {
                projects.push((tenant.to_string(), project.to_string()));
            }
        }
        Ok(projects)
    }

    /// Entries waiting in the whole outbox.
    pub fn outbox_depth(&self) -> usize {
        self.outbox.len()
    }

    /// Removes a delivered entry and commits its state, in one transaction, through the committer;
    /// `entry` is the entry stored under `key`, as the caller read it to deliver it. A crash
    /// before the committer answers delivers it again, which at-least-once allows.
    pub async fn complete_delivery(&self, key: &OutboxKey, entry: &OutboxEntry) -> Result<()> {
        let commit = Commit::Delivered {
            key: key.clone(),
            tenant: entry.tenant_id.clone(),
            project: entry.project_id.clone(),
            state: entry.state.clone(),
        };
        self.commit(commit).await.map(drop)
    }

    pub(super) fn apply_delivered(
        &self,
        key: &OutboxKey,
        tenant: &str,
        project: &str,
        state: Option<&[u8]>,
    ) -> Result<()> {
        let state_key = state_key(tenant, project);
        let trees = (&self.outbox, &self.outbox_chunks, &self.state, &self.state_chunks);
        let done = trees.transaction(|(outbox, outbox_pieces, state_tree, state_pieces)| {
            // Gone already (its project was deleted meanwhile): nothing to commit.
            let Some(removed) = chunks::remove(outbox, outbox_pieces, &key.0)? else { return Ok(None) };
            let replaced = match state {
                Some(new_state) => chunks::put(state_tree, state_pieces, state_key.as_bytes(), new_state)?,
                None => None,
            };
            Ok(Some((removed, replaced)))
        })?;
        let Some((removed, replaced)) = done else { return Ok(()) };
        self.disk.change(tenant, DiskKind::Outbox, 0, key.0.len() as u64 + removed);
        if let Some(new_state) = state {
            let old = replaced.map_or(0, |old| state_key.len() as u64 + old);
            self.disk.change(tenant, DiskKind::State, size(state_key.as_bytes(), new_state), old);
        }
        Ok(())
    }

    /// The state a project's next run starts from: the newest state still waiting in the outbox
    /// (it will be committed once its records are delivered, in order), else the committed one.
    ///
    /// Starting from the pending state keeps a run during a Kinesis outage from fetching the
    /// same data again; the outbox holds both the records and the state, so nothing is lost.
    pub async fn next_state(&self, tenant: &str, project: &str) -> Result<Option<Vec<u8>>> {
        for item in self.outbox.scan_prefix(project_prefix(tenant, project)).rev() {
            let (key, raw) = item?;
            let value = chunks::assemble(&self.outbox_chunks, &key, &raw)?;
            let entry = decode_entry(&String::from_utf8_lossy(&key), &value)?;
            if entry.state.is_some() {
                return Ok(entry.state);
            }
        }
        self.committed_state(tenant, project).await
    }

    /// The state committed by the last fully delivered run.
    pub async fn committed_state(&self, tenant: &str, project: &str) -> Result<Option<Vec<u8>>> {
        chunks::get(&self.state, &self.state_chunks, state_key(tenant, project).as_bytes())
    }

    /// Commits a state directly, for runs that produced no records, through the committer.
    pub async fn commit_state(&self, tenant: &str, project: &str, state: &[u8]) -> Result<()> {
        let commit = Commit::State { tenant: tenant.to_string(), project: project.to_string(), state: state.to_vec() };
        self.commit(commit).await.map(drop)
    }

    pub(super) fn apply_state(&self, tenant: &str, project: &str, state: &[u8]) -> Result<()> {
        let key = state_key(tenant, project);
        let old = chunks::put_single(&self.state, &self.state_chunks, key.as_bytes(), state)?;
        let removed = old.map_or(0, |old| key.len() as u64 + old);
        self.disk.change(tenant, DiskKind::State, size(key.as_bytes(), state), removed);
        Ok(())
    }

    /// Removes a project's state and its waiting and parked entries (when the project is
    /// deleted).
    pub(crate) async fn delete_state_of(&self, tenant: &str, project: &str) -> Result<()> {
        let key = state_key(tenant, project);
        let mut keys = vec![(key.into_bytes(), DiskKind::State)];
        for (tree, kind) in [(&self.outbox, DiskKind::Outbox), (&self.parked, DiskKind::Parked)] {
            for found in tree.scan_prefix(project_prefix(tenant, project)).keys() {
                keys.push((found?.to_vec(), kind));
            }
        }
        let pairs = [
            (DiskKind::State, &self.state, &self.state_chunks),
            (DiskKind::Outbox, &self.outbox, &self.outbox_chunks),
            (DiskKind::Parked, &self.parked, &self.parked_chunks),
        ];
        for (key, kind) in keys {
            let (_, main, pieces) = pairs.iter().find(|(k, _, _)| *k == kind).expect("every kind has its trees");
            let removed = (*main, *pieces).transaction(|(main, pieces)| {
                Ok::<_, ConflictableTransactionError<StoreError>>(chunks::remove(main, pieces, &key)?)
            })?;
            if let Some(len) = removed {
                self.disk.change(tenant, kind, 0, key.len() as u64 + len);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(project: &str, state: Option<&[u8]>, records: usize) -> OutboxEntry {
        OutboxEntry {
            tenant_id: "ten_a".into(),
            project_id: project.into(),
            run_id: "run_1".into(),
            scheduled_at_ms: 1_700_000_000_000,
            state: state.map(<[u8]>::to_vec),
            records: (0..records)
                .map(|i| Record {
                    data: vec![i as u8; i],
                    partition_key: format!("pk-{i}"),
                    explicit_hash_key: (i % 2 == 1).then(|| i.to_string()),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn entries_round_trip_in_order_and_commit_state_on_completion() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let first = entry("prj_1", Some(b"cursor=1"), 3);
        let second = entry("prj_1", Some(b"cursor=2"), 0);
        let k1 = store.enqueue(first.clone()).await.unwrap();
        let k2 = store.enqueue(second.clone()).await.unwrap();
        store.enqueue(entry("prj_2", None, 1)).await.unwrap();

        let waiting = store.outbox_of("ten_a", "prj_1").await.unwrap();
        assert_eq!(waiting, vec![(k1.clone(), first.clone()), (k2.clone(), second.clone())]);
        assert_eq!(store.outbox_depth(), 3);
        assert_eq!(
            store.outbox_projects().await.unwrap(),
            vec![("ten_a".into(), "prj_1".into()), ("ten_a".into(), "prj_2".into())]
        );
        assert_eq!(store.next_state("ten_a", "prj_1").await.unwrap().as_deref(), Some(&b"cursor=2"[..]));
        assert_eq!(store.committed_state("ten_a", "prj_1").await.unwrap(), None, "nothing committed before delivery");

        store.complete_delivery(&k1, &first).await.unwrap();
        assert_eq!(store.committed_state("ten_a", "prj_1").await.unwrap().as_deref(), Some(&b"cursor=1"[..]));
        assert_eq!(store.outbox_len_of("ten_a", "prj_1").await, 1);
        drop(store);

        // Reopening finds the undelivered entry and the committed state.
        let store = crate::store::reopen(dir.path());
        assert_eq!(store.outbox_of("ten_a", "prj_1").await.unwrap().len(), 1);
        assert_eq!(store.committed_state("ten_a", "prj_1").await.unwrap().as_deref(), Some(&b"cursor=1"[..]));
        store.complete_delivery(&k2, &second).await.unwrap();
        assert_eq!(store.committed_state("ten_a", "prj_1").await.unwrap().as_deref(), Some(&b"cursor=2"[..]));
        assert_eq!(store.next_state("ten_a", "prj_2").await.unwrap(), None);
        store.delete_state_of("ten_a", "prj_2").await.unwrap();
        assert_eq!(store.outbox_depth(), 0);
    }

    #[test]
    fn a_truncated_entry_is_reported_not_misread() {
        let raw = encode_entry(&entry("prj_1", None, 2)).unwrap();
        let error = decode_entry("k", &raw[..raw.len() - 1]).unwrap_err();
        assert!(error.to_string().contains("truncated"), "{error}");
    }
}
