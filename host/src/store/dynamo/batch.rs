//! The shared store's committer: the data plane's writes, gathered into one `TransactWriteItems`
//! per batch, as the sled store's committer gathers them into one sync (`store/commit.rs`).
//!
//! A run writes its outbox entry, settles it once Kinesis took its records (removes it and commits
//! its state) or commits a state alone, and records its history and usage. Sent one by one, that
//! is three transactions per run. Here each of them is a [`Write`] handed to a lane, and the lane
//! writes together everything that arrived while its previous batch was in flight (and within
//! [`LINGER`] of the first):
//!
//! - one `TransactWriteItems` with the new entries, the removal of the settled ones, each
//!   project's newest state (once, however many of its writes the batch holds), and one `ADD` per
//!   tenant of everything the batch changes in its usage and byte counts;
//! - the runs' history records and usage counters a little later: a lane holds them for up to
//!   [`HOLD`] and writes them 25 to a `BatchWriteItem`, and the counters ride along in the next
//!   transaction that touches the tenant's usage item anyway (else one `UpdateItem` per tenant).
//!   A crash may lose that last second of history and usage, as the sled store may lose its last
//!   half second of them; never a record or a state.
//!
//! A tenant's writes all go to one lane (by hash of the tenant), so no two batches in flight touch
//! the same item, and a project's writes apply in the order they were handed over.
//!
//! A condition that fails cancels the whole transaction, so the lane finds whose it was, answers
//! that write alone and sends the rest again: a settled entry that is gone (its project was
//! deleted, or another host settled it) settles nothing, as before. A state's put is conditioned
//! on the state it replaces (its `seq`), which the store remembers from its own last write, so the
//! byte counts stay exact without a read per run; a state someone else wrote meanwhile is read
//! again.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use tokio::sync::{mpsc, oneshot};

use super::super::runs::Counters;
use super::super::{Fence, StoreError};
use super::meter::{item_bytes, write_units};
use super::runs::usage_add;
use super::{DynamoStore, Item, local, remote, usage_key};

/// Lanes per host: batches of different tenants in flight at once.
const LANES: usize = 4;

/// How long a lane waits for more writes after the first of a batch. A write costs a round trip
/// to DynamoDB whatever it carries, so a few ms of waiting saves requests and write capacity
/// for the transaction's fixed part, at a latency the round trip dwarfs.
const LINGER: Duration = Duration::from_millis(5);

/// How long a lane holds runs' history and usage before writing them (see the module's doc).
const HOLD: Duration = Duration::from_secs(1);

/// The most history records a lane holds: one `BatchWriteItem`'s worth.
const HELD_RUNS: usize = 25;

/// DynamoDB's limit of actions in one transaction.
const MAX_ACTIONS: usize = 100;

/// A batch stops growing past this many bytes; a transaction may carry 4 MB, and one write adds
/// at most two inline values of [`INLINE_BYTES`].
const MAX_BATCH_BYTES: u64 = 3_000_000;

/// One write of the data plane.
#[derive(Debug)]
pub(super) enum Write {
    /// A new outbox entry, its value already inline or in S3.
    Enqueue { tenant: String, item: Item, bytes: i64 },
    /// A delivered entry leaves the outbox; its state, if any, is committed with it.
    Settle { tenant: String, project: String, sequence: String, bytes: i64, state: Option<Vec<u8>> },
    /// The state of a run that produced no records.
    State { tenant: String, project: String, state: Vec<u8> },
    /// A run's history record and what it adds to its tenant's usage.
    Run { tenant: String, item: Item, counters: Counters },
    /// Nothing: answered once everything handed to the lane before it is written.
    Barrier,
}

impl Write {
    /// The most transaction actions the write can add to a batch, and the bytes it adds.
    fn cost(&self) -> (usize, u64) {
        match self {
            Write::Enqueue { item, .. } => (2, item_bytes(item)),
            Write::Settle { state, .. } => (3, state.as_ref().map_or(0, |s| s.len() as u64)),
            Write::State { state, .. } => (2, state.len() as u64),
            // Held, not part of the transaction (see [`Held`]).
            Write::Run { .. } | Write::Barrier => (0, 0),
        }
    }

    fn tenant(&self) -> Option<&str> {
        match self {
            Write::Enqueue { tenant, .. }
            | Write::Settle { tenant, .. }
            | Write::State { tenant, .. }
            | Write::Run { tenant, .. } => Some(tenant),
            Write::Barrier => None,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Write::Enqueue { .. } => "an outbox entry",
            Write::Settle { .. } => "a delivery",
            Write::State { .. } => "a state",
            Write::Run { .. } => "a run's history",
            Write::Barrier => "a barrier",
        }
    }
}

struct Job {
    write: Write,
    /// The lease the work that handed the write over runs under (see `store/fence.rs`).
    fence: Option<Fence>,
    /// `None` for a write nobody waits for; its failure is logged instead.
    reply: Option<Reply>,
}

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// The lanes' senders, started by the first write (inside the runtime that makes it).
#[derive(Default)]
pub(super) struct Lanes(OnceLock<Vec<mpsc::UnboundedSender<Job>>>);

impl DynamoStore {
    /// Hands `write` to its lane and waits until DynamoDB has acknowledged it.
    pub(super) async fn write(&self, write: Write) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let fence = super::super::fence::current();
        self.lane_of(&write).send(Job { write, fence, reply: Some(reply) }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Hands `write` to its lane without waiting; a failure is logged.
    pub(super) fn write_later(&self, write: Write) {
        let what = write.what();
        let fence = super::super::fence::current();
        if self.lane_of(&write).send(Job { write, fence, reply: None }).is_err() {
            tracing::error!("cannot write {what}: {}", stopped());
        }
    }

    /// Waits until every write handed over so far is written.
    pub async fn drain(&self) -> Result<(), StoreError> {
        let mut answers = Vec::new();
        for lane in self.lanes() {
            let (reply, answer) = oneshot::channel();
            lane.send(Job { write: Write::Barrier, fence: None, reply: Some(reply) }).map_err(|_| stopped())?;
            answers.push(answer);
        }
        for answer in answers {
            answer.await.map_err(|_| stopped())??;
        }
        Ok(())
    }

    fn lanes(&self) -> &[mpsc::UnboundedSender<Job>] {
        self.lanes.0.get_or_init(|| {
            (0..LANES)
                .map(|_| {
                    let (sender, receiver) = mpsc::unbounded_channel();
                    // The lane's own copy has no lanes, so that it stops with the last store that
                    // can hand it writes.
                    let store = Self { lanes: Default::default(), ..self.clone() };
                    tokio::spawn(lane(store, receiver));
                    sender
                })
                .collect()
        })
    }

    fn lane_of(&self, write: &Write) -> &mpsc::UnboundedSender<Job> {
        let lanes = self.lanes();
        let hash = super::fnv1a(write.tenant().unwrap_or_default());
        &lanes[(hash % lanes.len() as u64) as usize]
    }
}

fn stopped() -> StoreError {
    StoreError::Remote {
        operation: "TransactWriteItems".into(),
        message: "the shared store's committer stopped".into(),
    }
}

fn answer(job: Job, result: Result<(), StoreError>) {
    match job.reply {
        // A caller that stopped waiting (its run was cancelled) needs no answer.
        Some(reply) => drop(reply.send(result)),
        None => {
            if let Err(e) = result {
                tracing::error!("cannot write {}: {e}", job.write.what());
            }
        }
    }
}

pub(super) fn failed(operation: &str, message: String) -> StoreError {
    StoreError::Remote { operation: operation.into(), message }
}

/// What a lane holds back to write later (see the module's doc).
#[derive(Default)]
struct Held {
    /// History records, each with whoever waits for it.
    history: Vec<(Item, Option<Reply>)>,
    /// Usage counters by tenant.
    counters: BTreeMap<String, Counters>,
    /// When the oldest of them arrived.
    since: Option<tokio::time::Instant>,
}

impl Held {
    fn due(&self) -> Option<tokio::time::Instant> {
        self.since.map(|since| since + HOLD)
    }
}

/// A lane's loop: a batch is what arrived while the last one was written, plus what arrives
/// within [`LINGER`] of its first write, up to the limits of one transaction.
async fn lane(store: DynamoStore, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut held = Held::default();
    loop {
        let next = match held.due() {
            Some(due) => match tokio::time::timeout_at(due, jobs.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    store.write_held(&mut held).await;
                    continue;
                }
            },
            None => jobs.recv().await,
        };
        let Some(first) = next else { break };
        let (mut actions, mut bytes) = first.write.cost();
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + LINGER;
        while actions + 3 <= MAX_ACTIONS && bytes < MAX_BATCH_BYTES {
            match tokio::time::timeout_at(until, jobs.recv()).await {
                Ok(Some(job)) => {
                    let (more, more_bytes) = job.write.cost();
                    (actions, bytes) = (actions + more, bytes + more_bytes);
                    batch.push(job);
                }
                _ => break,
            }
        }
        store.apply(batch, &mut held).await;
    }
    store.write_held(&mut held).await;
}

impl DynamoStore {
    /// Writes a batch and answers each of its writes; runs' history and usage join what the
    /// lane holds, written now only if someone waits for them or their time has come.
    async fn apply(&self, batch: Vec<Job>, held: &mut Held) {
        let mut now = false;
        let mut transactional = Vec::new();
        let mut barriers = Vec::new();
        for job in batch {
            match job.write {
                Write::Run { tenant, item, counters } => {
                    now |= job.reply.is_some();
                    held.counters.entry(tenant).or_default().add(&counters);
                    held.history.push((item, job.reply));
                    held.since.get_or_insert_with(tokio::time::Instant::now);
                }
                Write::Barrier => {
                    now = true;
                    barriers.push(job);
                }
                _ => transactional.push(job),
            }
        }
        if !transactional.is_empty() {
            let writes: Vec<(&Write, Option<&Fence>)> =
                transactional.iter().map(|job| (&job.write, job.fence.as_ref())).collect();
            let results = self.commit(&writes, &mut held.counters).await;
            for (job, result) in transactional.into_iter().zip(results) {
                answer(job, result);
            }
        }
        let due = held.due().is_some_and(|due| due <= tokio::time::Instant::now());
        if now || due || held.history.len() >= HELD_RUNS {
            self.write_held(held).await;
        }
        for barrier in barriers {
            answer(barrier, Ok(()));
        }
    }

    /// Writes what the lane holds: history records in `BatchWriteItem`s, usage counters by
    /// `UpdateItem` (those a transaction did not carry already).
    async fn write_held(&self, held: &mut Held) {
        let Held { history, counters, .. } = std::mem::take(held);
        let (items, replies): (Vec<Item>, Vec<_>) = history.into_iter().unzip();
        let written = self.put_history(items).await;
        for (tenant, counters) in counters.into_iter().filter(|(_, counters)| counters.runs > 0) {
            if let Err(e) = self.add_usage(&tenant, &counters).await {
                tracing::error!(%tenant, "cannot add runs to the tenant's usage: {e}");
            }
        }
        for reply in replies.into_iter().flatten() {
            drop(reply.send(written.as_ref().map(drop).map_err(|e| failed("BatchWriteItem", e.to_string()))));
        }
        if let Err(e) = written {
            tracing::error!("cannot write runs' history: {e}");
        }
    }

    /// Adds `counters` to a tenant's usage item, outside any transaction.
    pub(super) async fn add_usage(&self, tenant: &str, counters: &Counters) -> Result<(), StoreError> {
        let (expression, values) = usage_add(Some(counters), &[]);
        self.meter.add_write_units(write_units(1, false));
        self.db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(usage_key(tenant)))
            .update_expression(expression)
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| remote("UpdateItem", e))?;
        Ok(())
    }

    /// Writes runs' history records, 25 to a request.
    async fn put_history(&self, items: Vec<Item>) -> Result<(), StoreError> {
        for chunk in items.chunks(25) {
            let mut requests = Vec::with_capacity(chunk.len());
            for item in chunk {
                self.meter.add_write_units(write_units(item_bytes(item), false));
                let put = PutRequest::builder()
                    .set_item(Some(item.clone()))
                    .build()
                    .map_err(|e| local("BatchWriteItem", e))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            self.batch_write(requests).await?;
        }
        Ok(())
    }
}
