//! Persistence: [`Store`] over the embedded sled store (this file and its siblings) or the shared
//! store on DynamoDB and S3 (`dynamo/`). The only module that imports sled or those SDKs.
//!
//! Trees: `meta` (schema version), `tenants` (id → JSON), `keys` (SHA-256 of an API key →
//! tenant id), `plugins` (`<tenant id>/<plugin id>` → JSON), `blobs` (plugin id → component
//! bytes, stored once however many tenants upload them), `blob_refs` (plugin id → how many
//! tenants hold it), `projects` (`<tenant id>/<project id>` → JSON), `runs` (`<tenant id>/<project
//! id>/<start>-<run id>` → JSON, the newest last), `usage` (tenant id → counters) and `counts`
//! (per-tenant record counts for quotas), `outbox` (`<tenant id>/<project id>/<sequence>` → a run's
//! undelivered records and pending state), `parked` (the same keys: entries Kinesis refused for
//! good, until the tenant decides; see `parked.rs`) and `state` (`<tenant id>/<project id>` → the state
//! committed by the last delivered run; see `outbox.rs`). Writes that touch several trees run in
//! one sled transaction.
//!
//! Durability: the data plane's writes (outbox entries, deliveries with their state commits,
//! states, run history and usage) go through one committer thread (`commit.rs`), which applies
//! them in batches and ends each batch with sled's flush and a real `fdatasync` before it
//! answers. Every write the API acknowledges is followed by the same sync (`SledStore::flush`). So
//! an acknowledged change or outbox entry survives a `kill -9` and a power cut alike; sled
//! recovers a consistent prefix, so a state commit is never seen without its entry's removal.
//!
//! `store` knows nothing of HTTP: it takes and returns the records in [`model`].

mod chunks;
mod cluster;
mod commit;
mod disk;
pub mod dynamo;
mod export;
mod export_sled;
mod facade;
mod fence;
mod import;
mod keys;
pub mod model;
mod outbox;
mod parked;
mod plugins;
mod projects;
mod runs;
mod tenants;

use std::path::Path;
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

pub use cluster::{Change, HostRecord, Lease};
pub use commit::{CommitOptions, CommitStats};
pub use disk::DiskUsage;
pub use export::{EXPORT_FORMAT, PortError, PortSummary};
pub use facade::{BackendKind, Store, StoreConfig};
pub(crate) use fence::current as current_fence;
pub use fence::{Fence, fenced};
pub use keys::{TenantKey, constant_time_eq, hash_key, random_hex};
pub use model::{
    ApiKeySource, Onboarding, PluginMeta, Project, ProjectStatus, QuotaOverrides, Quotas, Source, Target, Tenant,
    TenantStatus, Tier, Trust,
};
pub use outbox::{OutboxEntry, OutboxKey, WaitingEntry};
pub use parked::{ParkedAction, ParkedEntry};
pub use plugins::{CreatePlugin, DeletePlugin};
pub use projects::CreateProject;
pub use runs::{RUNS_KEPT, Run, RunError, RunLogLine, RunLogSource, RunOutcome, Stage, Trigger, Usage};

/// The layout version this build reads and writes. Version 2 split large values of `outbox`,
/// `state` and `blobs` into pieces (see `chunks.rs`); a version 1 directory is migrated when it
/// is opened.
const SCHEMA_VERSION: u32 = 2;

/// A storage failure. These are the host's problems, never the caller's input.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    #[error("stored record {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
    #[error("the data directory holds schema version {found}, but this build reads version {SCHEMA_VERSION}")]
    Schema { found: u32 },
    #[error(
        "the data directory holds an import that did not finish; delete the directory and run `sluice store \
         import` again"
    )]
    ImportUnfinished,
    /// The shared store's settings do not work: the table or bucket is missing, in another
    /// region, or out of the host's permissions. `setting` names what to fix.
    #[error("{setting}: {message}")]
    Setting { setting: String, message: String },
    /// A call to DynamoDB or S3 failed.
    #[error("{operation} failed: {message}")]
    Remote { operation: String, message: String },
    /// A write of work fenced by a lease (see `fence.rs`) was refused: the lease no longer names
    /// this host at the epoch the work began under, so another host may run the project now.
    #[error(
        "this host no longer holds the lease of partition {partition} it ran under, so the write was refused; \
         the partition's new owner runs the project"
    )]
    Fenced { partition: u32 },
    /// An operation that needs the shared store was asked of the embedded one.
    #[error("{0} needs the shared store: set [store] backend = \"dynamodb\"")]
    NeedsSharedStore(&'static str),
}

impl StoreError {
    /// Whether the directory is held by another process (a running daemon): sled takes an
    /// exclusive lock on its files.
    pub fn is_in_use(&self) -> bool {
        matches!(self, StoreError::Db(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock"))
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Db(e),
        }
    }
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The embedded store in one directory (the default backend; see [`Store`]). Cheap to clone.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    /// The schema version, and the mark of an import under way (see `export.rs`).
    meta: sled::Tree,
    tenants: sled::Tree,
    keys: sled::Tree,
    plugins: sled::Tree,
    blobs: sled::Tree,
    blob_refs: sled::Tree,
    projects: sled::Tree,
    runs: sled::Tree,
    usage: sled::Tree,
    /// `<tenant id>/projects` and `<tenant id>/plugins` → how many the tenant has, kept in the
    /// same transactions as the records so that quota checks need no scan.
    counts: sled::Tree,
    outbox: sled::Tree,
    /// `<tenant id>/<project id>/<sequence>` → an outbox entry Kinesis refused for good, with
    /// why, until the tenant retries or discards it (see `parked.rs`).
    parked: sled::Tree,
    state: sled::Tree,
    /// The pieces of large values of `outbox`, `parked`, `state` and `blobs` (see `chunks.rs`).
    outbox_chunks: sled::Tree,
    parked_chunks: sled::Tree,
    state_chunks: sled::Tree,
    blob_chunks: sled::Tree,
    disk: disk::DiskLedger,
    /// How many history records each project (`<tenant id>/<project id>/`) has, for trimming;
    /// counted on a project's first run after the store opens (see `runs.rs`).
    history_counts: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Where the data plane's writes go (see `commit.rs`); `None` in the committer's own copy,
    /// which applies them.
    committer: Option<commit::Committer>,
    /// Serializes creates that check a count quota (see `create_plugin`).
    quota_lock: Arc<tokio::sync::Mutex<()>>,
}

impl SledStore {
    /// Opens (or creates) the database in `dir`, refusing one written by another schema version.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, CommitOptions::default())
    }

    /// Like [`SledStore::open`], with the committer batching as `options` say.
    pub fn open_with(dir: &Path, options: CommitOptions) -> Result<Self> {
        let db = sled::Config::new().path(dir).open()?;
        let meta = db.open_tree("meta")?;
        let found = meta.get("schema_version")?.map(|raw| raw.as_ref().try_into().map(u32::from_be_bytes).unwrap_or(0));
        if found.is_some_and(|v| v != SCHEMA_VERSION && v != 1) {
            return Err(StoreError::Schema { found: found.unwrap_or(0) });
        }
        if meta.contains_key(export::IMPORT_UNFINISHED)? {
            return Err(StoreError::ImportUnfinished);
        }
        let store = Self {
            tenants: db.open_tree("tenants")?,
            keys: db.open_tree("keys")?,
            plugins: db.open_tree("plugins")?,
            blobs: db.open_tree("blobs")?,
            blob_refs: db.open_tree("blob_refs")?,
            projects: db.open_tree("projects")?,
            runs: db.open_tree("runs")?,
            usage: db.open_tree("usage")?,
            counts: db.open_tree("counts")?,
            outbox: db.open_tree("outbox")?,
            parked: db.open_tree("parked")?,
            state: db.open_tree("state")?,
            outbox_chunks: db.open_tree("outbox_chunks")?,
            parked_chunks: db.open_tree("parked_chunks")?,
            state_chunks: db.open_tree("state_chunks")?,
            blob_chunks: db.open_tree("blob_chunks")?,
            disk: disk::DiskLedger::default(),
            history_counts: Arc::default(),
            committer: None,
            quota_lock: Default::default(),
            meta,
            db,
        };
        if found != Some(SCHEMA_VERSION) {
            // A new directory has nothing to rewrite; one of version 1 stored values whole.
            chunks::rewrite_tree(&store.outbox, &store.outbox_chunks)?;
            chunks::rewrite_tree(&store.state, &store.state_chunks)?;
            chunks::rewrite_tree(&store.blobs, &store.blob_chunks)?;
            store.meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            store.db.flush()?;
        }
        store.give_tenants_external_ids()?;
        store.disk.count_tree(&store.state, disk::DiskKind::State, chunks::stored_len)?;
        store.disk.count_tree(&store.outbox, disk::DiskKind::Outbox, chunks::stored_len)?;
        store.disk.count_tree(&store.parked, disk::DiskKind::Parked, chunks::stored_len)?;
        store.disk.count_tree(&store.runs, disk::DiskKind::History, |_, raw| raw.len() as u64)?;
        let committer = commit::Committer::start(store.clone(), dir, options)?;
        Ok(Self { committer: Some(committer), ..store })
    }

    /// The committer's counters, for the metrics.
    pub fn commit_stats(&self) -> Option<&CommitStats> {
        self.committer.as_ref().map(|c| &*c.stats)
    }

    /// Hands `commit` to the committer without waiting for it. The committer's own copy of the
    /// store applies it at once.
    fn commit_later(&self, commit: commit::Commit) {
        match &self.committer {
            Some(committer) => committer.submit_detached(commit),
            None => {
                if let Err(e) = commit::apply(self, &commit) {
                    tracing::error!("cannot write {}: {e}", commit.what());
                }
            }
        }
    }

    /// Applies `commit` in the committer's next batch and waits until the batch is durable. The
    /// committer's own copy of the store applies it at once.
    async fn commit(&self, commit: commit::Commit) -> Result<commit::Applied> {
        match &self.committer {
            Some(committer) => committer.submit(commit).await,
            None => {
                let applied = commit::apply(self, &commit)?;
                self.db.flush()?;
                Ok(applied)
            }
        }
    }

    /// The bytes a tenant keeps in the store, by kind (see `disk.rs`).
    pub fn disk_usage(&self, tenant: &str) -> DiskUsage {
        self.disk.of(tenant)
    }

    /// Every tenant's [`DiskUsage`], by tenant id, for the metrics.
    pub fn disk_usage_by_tenant(&self) -> Vec<(String, DiskUsage)> {
        self.disk.all()
    }

    /// Makes every write so far durable, in the committer's next batch.
    ///
    /// Only the committer flushes: sled 0.34 can deadlock when several flushes run at once (seen
    /// under 32 concurrent creates), and one flush and sync per batch is shared by every writer
    /// that asked while the previous one ran.
    pub async fn flush(&self) -> Result<()> {
        self.commit(commit::Commit::Sync).await.map(drop)
    }
}

/// Adds `delta` to a count inside a transaction.
pub(crate) fn add_count(
    counts: &TransactionalTree,
    key: &str,
    delta: i64,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let current = decode_count(counts.get(key)?);
    counts.insert(key, &current.saturating_add_signed(delta).to_be_bytes())?;
    Ok(())
}

impl SledStore {
    /// A count kept by [`add_count`].
    pub(crate) fn count(&self, key: &str) -> Result<u64> {
        Ok(decode_count(self.counts.get(key)?))
    }
}

/// A stored big-endian counter; absent (or unreadable) counts as zero.
pub(crate) fn decode_count(raw: Option<sled::IVec>) -> u64 {
    raw.and_then(|raw| raw.as_ref().try_into().ok().map(u64::from_be_bytes)).unwrap_or(0)
}

/// Decodes one entry of a scan, naming its key if the record is unreadable.
pub(crate) fn decode_entry<T: serde::de::DeserializeOwned>(entry: sled::Result<(sled::IVec, sled::IVec)>) -> Result<T> {
    let (key, raw) = entry?;
    decode(&String::from_utf8_lossy(&key), &raw)
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt { key: "(new record)".into(), message: e.to_string() })
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(key: &str, raw: &[u8]) -> Result<T> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt { key: key.to_string(), message: e.to_string() })
}

/// RFC 3339 to the millisecond: run keys sort by start time, runs a second apart must differ,
/// and plugin versions uploaded within a second of each other must sort by upload.
pub fn rfc3339_ms(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Millisecond).unwrap_or(t).to_string()
}

/// The current time as RFC 3339 in UTC, truncated to the second.
///
/// Truncated, never rounded up: a project's `created_at` anchors its rate schedule, and an anchor
/// in the future would make the project fire the moment it is created.
pub fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    let second = jiff::TimestampRound::new().smallest(jiff::Unit::Second).mode(jiff::RoundMode::Trunc);
    now.round(second).unwrap_or(now).to_string()
}

/// Opens a store again in the same process once the dropped one has let go of its file lock,
/// which sled's background flusher holds until its next wake-up: reopening at once can fail with
/// "could not acquire lock".
#[cfg(test)]
pub(crate) fn reopen(dir: &Path) -> SledStore {
    reopen_result(dir).unwrap_or_else(|e| panic!("cannot reopen the store: {e}"))
}

/// Like [`reopen`], returning the error of a store that does not open for another reason.
#[cfg(test)]
pub(crate) fn reopen_result(dir: &Path) -> Result<SledStore> {
    let started = std::time::Instant::now();
    loop {
        match SledStore::open(dir) {
            Err(e) if e.to_string().contains("could not acquire lock") && started.elapsed().as_secs() < 10 => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many writers flushing at once once deadlocked sled; they must all finish. The workload
    /// runs on its own thread because a sled deadlock blocks executor threads, which would keep
    /// a tokio timeout from ever firing.
    #[test]
    fn concurrent_writers_all_get_their_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer_store = store.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).build().unwrap();
            runtime.block_on(async move {
                let writers: Vec<_> = (0..64)
                    .map(|i| {
                        let store = writer_store.clone();
                        tokio::spawn(async move {
                            for j in 0..20 {
                                store.create_tenant(&format!("t{i}-{j}"), Tier::Free).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for writer in writers {
                    writer.await.unwrap();
                }
            });
            let _ = done_tx.send(());
        });
        done_rx.recv_timeout(std::time::Duration::from_secs(120)).expect("every writer finished within 120 s");
        let tenants = tokio::runtime::Runtime::new().unwrap().block_on(store.tenants()).unwrap();
        assert_eq!(tenants.len(), 64 * 20);
    }

    #[tokio::test]
    async fn tenants_keys_and_rotation_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let (tenant, key) = store.create_tenant("acme", Tier::Standard).await.unwrap();
        assert_eq!(store.tenant_for_key(key.expose()).await.unwrap().unwrap().id, tenant.id);
        let new_key = store.rotate_key(&tenant.id).await.unwrap().unwrap();
        assert!(store.tenant_for_key(key.expose()).await.unwrap().is_none(), "the old key is revoked");
        drop(store);

        let store = crate::store::reopen(dir.path());
        assert_eq!(store.tenant_for_key(new_key.expose()).await.unwrap().unwrap().name, "acme");
        assert!(store.delete_tenant(&tenant.id).await.unwrap());
        assert!(store.tenant_for_key(new_key.expose()).await.unwrap().is_none());
        assert!(store.tenants().await.unwrap().is_empty());
    }
}
