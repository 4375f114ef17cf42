//! The committer: one thread that applies the data plane's writes and makes them durable in
//! batches, with one flush and one real sync per batch.
//!
//! A run's writes (its outbox entry, the removal of a delivered entry with its state, a state
//! commit, its history and usage) are [`Commit`]s. Callers hand them over; the committer applies
//! each as it arrives, in its own sled transaction (a commit that fails, such as a delivery whose
//! entry is gone, answers alone and undoes nothing else). A commit that must be durable before
//! its caller goes on (an outbox entry, or a sync the API asks for) waits with the others that
//! arrive within `linger` of the first; then sled is flushed once and its files `fdatasync`ed
//! once, and they are all answered. The number of syncs falls as the load rises: group commit,
//! as in LevelDB and RocksDB. The rest are answered once applied.
//!
//! Why a real sync: sled 0.34's `flush` ends in `sync_file_range`, which survives a `kill -9`
//! but does not reach the disk's write cache (sled issue #1452); only `fsync`/`fdatasync` does.
//! Other writes (the API's) ask for a [`Commit::Sync`] after writing, so they share the same
//! syncs.
//!
//! The batch of [`Commit`]s is the seam a second storage backend plugs into: it names what to
//! write, not how sled writes it.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use super::{OutboxEntry, OutboxKey, Result, Run, SledStore, StoreError};

/// One write of the data plane.
#[derive(Debug)]
pub enum Commit {
    /// A run's records and pending state, which must be durable before delivery starts.
    Enqueue(OutboxEntry),
    /// A delivered entry leaves the outbox and its `state`, if any, is committed, in one
    /// transaction.
    Delivered { key: OutboxKey, tenant: String, project: String, state: Option<Vec<u8>> },
    /// The state of a run that produced no records.
    State { tenant: String, project: String, state: Vec<u8> },
    /// A finished run's history record and its usage.
    Run { tenant: String, run: Box<Run>, plugin_ms: f64 },
    /// Nothing to apply: the caller wrote directly and wants it durable.
    Sync,
}

/// What an applied [`Commit`] gives back.
#[derive(Debug)]
pub enum Applied {
    Enqueued(OutboxKey),
    Done,
}

/// Counters of the committer's work, for the metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Syncs made (one flush and one `fdatasync` each), one per batch with a commit that waited
    /// for one.
    pub batches: AtomicU64,
    /// Commits applied, in all batches.
    pub commits: AtomicU64,
    /// Time spent flushing and syncing, in microseconds.
    pub sync_us: AtomicU64,
}

struct Job {
    commit: Commit,
    /// `None` for a commit nobody waits for; its failure is logged instead.
    reply: Option<tokio::sync::oneshot::Sender<Result<Applied>>>,
}

impl Commit {
    /// Whether the caller is answered only once the commit is durable. An outbox entry must be
    /// before any of its records is sent, and so must whatever the API acknowledges. Losing the
    /// others to a crash in the 500 ms before sled's own flush only repeats a delivery (which
    /// at-least-once allows), a run without records, or the newest history records.
    pub(super) fn needs_sync(&self) -> bool {
        matches!(self, Commit::Enqueue(_) | Commit::Sync)
    }

    /// What the commit writes, for messages.
    pub(super) fn what(&self) -> &'static str {
        match self {
            Commit::Enqueue(_) => "an outbox entry",
            Commit::Delivered { .. } => "a delivery",
            Commit::State { .. } => "a state",
            Commit::Run { .. } => "a run's history",
            Commit::Sync => "a sync",
        }
    }
}

/// The callers' side of the committer. The thread stops once every [`SledStore`] that holds this
/// is gone, and lets go of the database then.
#[derive(Clone)]
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
    pub(super) stats: Arc<CommitStats>,
}

/// How the committer batches. The defaults are what the daemon uses; the other values exist so
/// that benchmarks can measure what group commit gains and what a slow disk costs.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    /// At most this many commits go into one batch, so that one batch's callers do not wait for
    /// an unbounded one; 1 syncs every commit on its own.
    pub max_batch: usize,
    /// How long the committer waits for more commits after the first of a batch arrives. A
    /// sync costs a flush that wakes every thread of sled's pool plus an `fdatasync`, whatever
    /// it carries, so gathering a few ms of commits into it saves far more CPU than the wait
    /// costs in latency.
    pub linger: std::time::Duration,
    /// A pause before every sync, standing in for a disk that stalls.
    pub stall_before_sync: std::time::Duration,
}

impl Default for CommitOptions {
    fn default() -> Self {
        Self {
            max_batch: 512,
            linger: std::time::Duration::from_millis(2),
            stall_before_sync: std::time::Duration::ZERO,
        }
    }
}

impl Committer {
    /// Starts the committer thread for `store`, a copy without a committer of its own (so that
    /// the thread does not keep itself alive), whose database lives in `dir`.
    pub(super) fn start(store: SledStore, dir: &Path, options: CommitOptions) -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let stats = Arc::new(CommitStats::default());
        let mut syncer = Syncer::new(dir)?;
        let thread_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("sluice-commit".into())
            .spawn(move || run(&store, &queue, &mut syncer, &thread_stats, &options))
            .map_err(|e| StoreError::Db(sled::Error::Io(e)))?;
        Ok(Self { jobs, stats })
    }

    /// Hands `commit` to the committer and waits until it is applied, and durable if it must be
    /// (see [`Commit::needs_sync`]).
    pub(super) async fn submit(&self, commit: Commit) -> Result<Applied> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs.send(Job { commit, reply: Some(reply) }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Hands `commit` to the committer without waiting; a failure is logged.
    pub(super) fn submit_detached(&self, commit: Commit) {
        let what = commit.what();
        if self.jobs.send(Job { commit, reply: None }).is_err() {
            tracing::error!("cannot write {what}: the store's committer thread stopped");
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Db(sled::Error::ReportableBug("the store's committer thread stopped".into()))
}

/// The committer's loop. Each commit is applied as soon as it arrives, in arrival order. One
/// that must be durable ([`Commit::needs_sync`]) waits for the batch's sync, which comes once
/// `linger` has passed since the first of them (or the batch is full); the others are answered
/// once applied, and become durable with the next sync (or sled's own flush, within 500 ms).
fn run(
    store: &SledStore,
    queue: &mpsc::Receiver<Job>,
    syncer: &mut Syncer,
    stats: &CommitStats,
    options: &CommitOptions,
) {
    while let Ok(first) = queue.recv() {
        let mut waiting: Vec<(Job, Result<Applied>)> = Vec::new();
        let mut until = None;
        let mut next = Some(first);
        let mut applied = 0;
        while let Some(job) = next.take() {
            let result = apply(store, &job.commit);
            applied += 1;
            if job.commit.needs_sync() {
                until.get_or_insert_with(|| std::time::Instant::now() + options.linger);
                waiting.push((job, result));
            } else {
                answer(job, result);
            }
            if applied >= options.max_batch {
                break;
            }
            // Nothing waits for a sync: take only what has already arrived.
            next = match until {
                Some(until) => queue.recv_timeout(until.saturating_duration_since(std::time::Instant::now())).ok(),
                None => queue.try_recv().ok(),
            };
        }
        stats.commits.fetch_add(applied as u64, Ordering::Relaxed);
        if !waiting.is_empty() {
            sync_and_answer(store, syncer, stats, waiting, options.stall_before_sync);
        }
    }
}

/// Makes everything applied so far durable with one flush and one sync, then answers the jobs
/// that waited for it: the sync's error if it failed, else their own result.
fn sync_and_answer(
    store: &SledStore,
    syncer: &mut Syncer,
    stats: &CommitStats,
    waiting: Vec<(Job, Result<Applied>)>,
    stall: std::time::Duration,
) {
    let started = std::time::Instant::now();
    if !stall.is_zero() {
        std::thread::sleep(stall);
    }
    let synced = store.db.flush().map_err(StoreError::from).and_then(|_| syncer.sync());
    stats.sync_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    for (job, result) in waiting {
        let result = match (&synced, result) {
            (Err(e), _) => Err(StoreError::Db(sled::Error::Io(std::io::Error::other(e.to_string())))),
            (Ok(()), result) => result,
        };
        answer(job, result);
    }
}

fn answer(job: Job, result: Result<Applied>) {
    match job.reply {
        // A caller that stopped waiting (its run was cancelled) needs no answer.
        Some(reply) => drop(reply.send(result)),
        None => {
            if let Err(e) = result {
                tracing::error!("cannot write {}: {e}", job.commit.what());
            }
        }
    }
}

pub(super) fn apply(store: &SledStore, commit: &Commit) -> Result<Applied> {
    match commit {
        Commit::Enqueue(entry) => store.apply_enqueue(entry).map(Applied::Enqueued),
        Commit::Delivered { key, tenant, project, state } => {
            store.apply_delivered(key, tenant, project, state.as_deref()).map(|()| Applied::Done)
        }
        Commit::State { tenant, project, state } => store.apply_state(tenant, project, state).map(|()| Applied::Done),
        Commit::Run { tenant, run, plugin_ms } => store.apply_run(tenant, run, *plugin_ms).map(|()| Applied::Done),
        Commit::Sync => Ok(Applied::Done),
    }
}

/// The real sync after sled's flush: `fdatasync` of sled's log file, and of every value file
/// sled wrote under `blobs/` since the last sync (with the directory, so that the new names
/// last too).
struct Syncer {
    log: File,
    blobs: PathBuf,
    synced_blobs: HashSet<std::ffi::OsString>,
}

impl Syncer {
    fn new(dir: &Path) -> Result<Self> {
        let log = File::open(dir.join("db")).map_err(|e| StoreError::Db(sled::Error::Io(e)))?;
        Ok(Self { log, blobs: dir.join("blobs"), synced_blobs: HashSet::new() })
    }

    fn sync(&mut self) -> Result<()> {
        let io = |e: std::io::Error| StoreError::Db(sled::Error::Io(e));
        self.log.sync_data().map_err(io)?;
        // Values too large for sled's log go to files of their own. The store keeps its values in
        // 4 KiB pieces (see `chunks.rs`), so this directory stays empty in practice, and reading
        // an empty directory costs two system calls.
        let Ok(entries) = std::fs::read_dir(&self.blobs) else { return Ok(()) };
        let mut present = HashSet::new();
        let mut new = false;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !self.synced_blobs.contains(&name) {
                match File::open(entry.path()).and_then(|f| f.sync_data()) {
                    // sled removed it meanwhile: nothing of it to keep.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    other => other.map_err(io)?,
                }
                new = true;
            }
            present.insert(name);
        }
        if new {
            File::open(&self.blobs).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.synced_blobs = present;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::Record;

    fn entry(project: &str, n: u8) -> OutboxEntry {
        OutboxEntry {
            tenant_id: "ten_a".into(),
            project_id: project.into(),
            run_id: format!("run_{n}"),
            scheduled_at_ms: 1_700_000_000_000,
            state: Some(vec![n]),
            records: vec![Record { data: vec![n; 100], partition_key: format!("pk-{n}"), explicit_hash_key: None }],
        }
    }

    /// Deliveries and history are applied and answered without a sync; an outbox entry waits
    /// for one, and every commit before it is durable with it.
    #[tokio::test]
    async fn only_commits_that_must_be_durable_wait_for_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let stats = store.commit_stats().unwrap();
        let first = store.enqueue(entry("prj_a", 1)).await.unwrap();
        assert_eq!(stats.batches.load(Ordering::Relaxed), 1);
        let delivered = store.outbox_entry(&first).await.unwrap().unwrap();
        store.complete_delivery(&first, &delivered).await.unwrap();
        store.commit_state("ten_a", "prj_b", b"cursor").await.unwrap();
        assert_eq!(store.committed_state("ten_a", "prj_a").await.unwrap(), Some(vec![1]), "applied when answered");
        assert_eq!(stats.batches.load(Ordering::Relaxed), 1, "no sync for a delivery or a state");
        store.enqueue(entry("prj_a", 2)).await.unwrap();
        assert_eq!((stats.batches.load(Ordering::Relaxed), stats.commits.load(Ordering::Relaxed)), (2, 4));
        drop(store);
        let store = crate::store::reopen(dir.path());
        assert_eq!(store.committed_state("ten_a", "prj_b").await.unwrap(), Some(b"cursor".to_vec()));
        assert_eq!(store.outbox_len_of("ten_a", "prj_a").await, 1);
    }

    /// Commits that arrive within the linger of a batch's first one share its sync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_arriving_within_the_linger_share_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let options = CommitOptions { linger: std::time::Duration::from_millis(500), ..CommitOptions::default() };
        let store = SledStore::open_with(dir.path(), options).unwrap();
        let mut writers = Vec::new();
        for n in 0..5u8 {
            let store = store.clone();
            writers.push(tokio::spawn(async move { store.enqueue(entry(&format!("prj_{n}"), n)).await.unwrap() }));
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        for writer in writers {
            writer.await.unwrap();
        }
        let stats = store.commit_stats().unwrap();
        assert_eq!((stats.batches.load(Ordering::Relaxed), stats.commits.load(Ordering::Relaxed)), (1, 5));
    }

    /// Writers that hand over commits at once all get them applied and answered, and what was
    /// answered is there after the store is reopened.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_commits_are_all_answered_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let writers: Vec<_> = (0..32u8)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let project = format!("prj_{n}");
                    let key = store.enqueue(entry(&project, n)).await.unwrap();
                    let delivered = store.outbox_entry(&key).await.unwrap().unwrap();
                    store.complete_delivery(&key, &delivered).await.unwrap();
                    store.enqueue(entry(&project, n.wrapping_add(100))).await.unwrap()
                })
            })
            .collect();
        let mut waiting = Vec::new();
        for writer in writers {
            waiting.push(writer.await.unwrap());
        }
        let stats = store.commit_stats().unwrap();
        assert_eq!(stats.commits.load(Ordering::Relaxed), 3 * 32);
        assert!(stats.batches.load(Ordering::Relaxed) <= 3 * 32);
        drop(store);

        let store = crate::store::reopen(dir.path());
        for (n, key) in waiting.iter().enumerate() {
            let project = format!("prj_{n}");
            assert_eq!(store.committed_state("ten_a", &project).await.unwrap(), Some(vec![n as u8]), "{project}");
            assert_eq!(store.outbox_entry(key).await.unwrap().unwrap().state, Some(vec![(n as u8).wrapping_add(100)]));
        }
        assert_eq!(store.outbox_depth(), 32);
    }
}
