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

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use tokio::sync::{mpsc, oneshot};

use super::super::StoreError;
use super::super::runs::Counters;
use super::meter::{item_bytes, write_units};
use super::outbox::{INLINE_BYTES, next_sequence, spill_key};
use super::runs::usage_add;
use super::{DynamoStore, Item, key, local, n, number_of, project_pk, remote, s, usage_key};

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

/// Sends of one batch before its writes are answered with an error: conflicts with other
/// writers, and writes answered alone, each take one.
const ATTEMPTS: u32 = 8;

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
    /// `None` for a write nobody waits for; its failure is logged instead.
    reply: Option<Reply>,
}

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// The lanes' senders, started by the first write (inside the runtime that makes it).
#[derive(Default)]
pub(super) struct Lanes(OnceLock<Vec<mpsc::UnboundedSender<Job>>>);

/// A project's committed state as the store last saw it: what its next put must replace.
#[derive(Debug, Clone)]
pub(super) struct StateMeta {
    seq: Option<String>,
    bytes: i64,
    spilled: Option<String>,
}

impl StateMeta {
    pub(super) fn of(item: &Item) -> Result<Self, StoreError> {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(value)) => Some(value.clone()),
            _ => None,
        };
        Ok(Self { seq: text("seq"), bytes: number_of(item, "bytes")?, spilled: text("spilled") })
    }
}

/// Each project's state as the store last wrote or read it (`None`: it has none), keyed by the
/// project's partition. Shared by every clone of a store; forgotten when another path writes it.
#[derive(Default)]
pub(super) struct StateCache(Mutex<HashMap<String, Option<StateMeta>>>);

impl StateCache {
    pub(super) fn forget(&self, pk: &str) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(pk);
    }

    fn get(&self, pk: &str) -> Option<Option<StateMeta>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(pk).cloned()
    }

    fn set(&self, pk: String, meta: Option<StateMeta>) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(pk, meta);
    }
}

impl DynamoStore {
    /// Hands `write` to its lane and waits until DynamoDB has acknowledged it.
    pub(super) async fn write(&self, write: Write) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.lane_of(&write).send(Job { write, reply: Some(reply) }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Hands `write` to its lane without waiting; a failure is logged.
    pub(super) fn write_later(&self, write: Write) {
        let what = write.what();
        if self.lane_of(&write).send(Job { write, reply: None }).is_err() {
            tracing::error!("cannot write {what}: {}", stopped());
        }
    }

    /// Waits until every write handed over so far is written.
    pub async fn drain(&self) -> Result<(), StoreError> {
        let mut answers = Vec::new();
        for lane in self.lanes() {
            let (reply, answer) = oneshot::channel();
            lane.send(Job { write: Write::Barrier, reply: Some(reply) }).map_err(|_| stopped())?;
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
        let tenant = write.tenant().unwrap_or_default();
        // FNV-1a: the same lane for a tenant all along.
        let hash =
            tenant.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
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

fn failed(operation: &str, message: String) -> StoreError {
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

/// Who asked for an action of the transaction, so that a cancellation can be traced to it.
enum Owner {
    Write(usize),
    State(String),
    Usage,
}

/// One send of a batch's transaction.
#[derive(Default)]
struct Plan {
    actions: Vec<TransactWriteItem>,
    owners: Vec<Owner>,
    /// Write units the transaction takes (see `meter.rs`).
    units: u64,
    /// S3 objects to remove once the transaction is in: values it replaced or removed.
    replaced: Vec<String>,
    /// S3 objects written for this send, to remove if it fails.
    written: Vec<String>,
    /// Each project's state as the transaction leaves it.
    states: Vec<(String, StateMeta)>,
    /// Tenants whose held usage counters the transaction carries.
    carried: Vec<String>,
}

/// What a batch changes in one tenant's usage item.
#[derive(Default)]
struct UsageChange {
    counters: Counters,
    outbox_bytes: i64,
    state_bytes: i64,
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
            let writes: Vec<&Write> = transactional.iter().map(|job| &job.write).collect();
            let results = self.commit(&writes, &mut held.counters).await;
            for (job, result) in transactional.into_iter().zip(results) {
                answer(job, result.unwrap_or_else(|| Err(failed("TransactWriteItems", "not written".into()))));
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
        for (tenant, counters) in counters {
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
    async fn add_usage(&self, tenant: &str, counters: &Counters) -> Result<(), StoreError> {
        if counters.runs == 0 {
            return Ok(());
        }
        let (expression, values) = usage_add(counters);
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

    /// Writes the transactional part of a batch, sending it again without the writes answered
    /// alone, and returns each write's result.
    /// Held usage counters of tenants the transaction touches anyway ride along in `carry`.
    async fn commit(
        &self,
        writes: &[&Write],
        carry: &mut BTreeMap<String, Counters>,
    ) -> Vec<Option<Result<(), StoreError>>> {
        let mut results: Vec<Option<Result<(), StoreError>>> = writes.iter().map(|_| None).collect();
        for attempt in 0..ATTEMPTS {
            let open: Vec<usize> = (0..writes.len()).filter(|&i| results[i].is_none()).collect();
            let answer_open = |results: &mut Vec<Option<Result<(), StoreError>>>,
                               with: &dyn Fn() -> Result<(), StoreError>| {
                for &i in &open {
                    results[i] = Some(with());
                }
            };
            let plan = match self.plan(writes, &open, carry).await {
                Ok(plan) => plan,
                Err(e) => {
                    let message = e.to_string();
                    answer_open(&mut results, &|| Err(failed("TransactWriteItems", message.clone())));
                    return results;
                }
            };
            if plan.actions.is_empty() {
                answer_open(&mut results, &|| Ok(()));
                return results;
            }
            let sent = self.db.transact_write_items().set_transact_items(Some(plan.actions.clone())).send().await;
            let error = match sent {
                Ok(_) => {
                    for tenant in &plan.carried {
                        carry.remove(tenant);
                    }
                    self.finish(plan).await;
                    answer_open(&mut results, &|| Ok(()));
                    return results;
                }
                Err(e) => e,
            };
            self.forget_objects(&plan.written).await;
            let Some(reasons) = super::cancellation_reasons(&error) else {
                let message = remote("TransactWriteItems", error).to_string();
                answer_open(&mut results, &|| Err(failed("TransactWriteItems", message.clone())));
                return results;
            };
            let mut contended = false;
            for (owner, code) in plan.owners.iter().zip(&reasons) {
                match (code.as_str(), owner) {
                    ("ConditionalCheckFailed", Owner::Write(i)) => results[*i] = Some(Ok(())),
                    ("ConditionalCheckFailed", Owner::State(pk)) => self.states.forget(pk),
                    ("None" | "", _) => {}
                    ("TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded", _) => {
                        contended = true
                    }
                    (code, _) => {
                        let message = format!("{code}: the transaction was refused");
                        answer_open(&mut results, &|| Err(failed("TransactWriteItems", message.clone())));
                        return results;
                    }
                }
            }
            if contended {
                tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
            }
        }
        for result in results.iter_mut().filter(|r| r.is_none()) {
            *result = Some(Err(failed(
                "TransactWriteItems",
                format!("the batch was refused {ATTEMPTS} times for conflicting writes; the next run tries again"),
            )));
        }
        results
    }

    /// The transaction for the writes `open` of `writes`.
    async fn plan(
        &self,
        writes: &[&Write],
        open: &[usize],
        carry: &BTreeMap<String, Counters>,
    ) -> Result<Plan, StoreError> {
        let mut plan = Plan::default();
        let mut usage: BTreeMap<String, UsageChange> = BTreeMap::new();
        // Each project's newest state in the batch: the one handed over last wins, as it would
        // have, written one after the other.
        let mut states: BTreeMap<String, (String, String, Vec<u8>)> = BTreeMap::new();
        for &i in open {
            match writes[i] {
                Write::Enqueue { tenant, item, bytes } => {
                    // The sparse `waiting` index takes one more unit for the entry's keys.
                    plan.units += write_units(item_bytes(item), true) + 1;
                    let put = Put::builder().table_name(&self.table).set_item(Some(item.clone())).build();
                    plan.push(
                        TransactWriteItem::builder().put(put.map_err(|e| local("TransactWriteItems", e))?).build(),
                        Owner::Write(i),
                    );
                    usage.entry(tenant.clone()).or_default().outbox_bytes += bytes;
                }
                Write::Settle { tenant, project, sequence, bytes, state } => {
                    let pk = project_pk(tenant, project);
                    let delete = Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(pk.clone(), format!("outbox#{sequence}"))))
                        .condition_expression("attribute_exists(pk)")
                        .build()
                        .map_err(|e| local("TransactWriteItems", e))?;
                    plan.push(TransactWriteItem::builder().delete(delete).build(), Owner::Write(i));
                    let inline = *bytes as usize <= INLINE_BYTES;
                    // A delete takes the units of the item it removes: about its value when it
                    // was inline, else a few attributes naming the object.
                    plan.units += write_units(if inline { *bytes as u64 + 128 } else { 256 }, true) + 1;
                    if !inline {
                        plan.replaced.push(spill_key(tenant, project, sequence));
                    }
                    usage.entry(tenant.clone()).or_default().outbox_bytes -= bytes;
                    if let Some(state) = state {
                        states.insert(pk, (tenant.clone(), project.clone(), state.clone()));
                    }
                }
                Write::State { tenant, project, state } => {
                    states.insert(project_pk(tenant, project), (tenant.clone(), project.clone(), state.clone()));
                }
                Write::Run { .. } | Write::Barrier => {}
            }
        }
        let replacing = self.states_before(states.keys()).await?;
        for (pk, (tenant, project, value)) in states {
            let old = replacing.get(&pk).cloned().flatten();
            let seq = format!("{:020}", next_sequence());
            let mut item = key(pk.clone(), "state");
            item.insert("seq".into(), s(&seq));
            let object = format!("state/{tenant}/{project}/{seq}");
            let spilled = value.len() > INLINE_BYTES;
            let bytes = value.len() as i64;
            self.value_attributes(&mut item, object.clone(), value).await?;
            if spilled {
                plan.written.push(object.clone());
            }
            let mut put = Put::builder().table_name(&self.table).set_item(Some(item.clone()));
            put = match &old {
                None => put.condition_expression("attribute_not_exists(pk)"),
                Some(StateMeta { seq: Some(seq), .. }) => put
                    .condition_expression("#seq = :seq")
                    .expression_attribute_names("#seq", "seq")
                    .expression_attribute_values(":seq", s(seq)),
                Some(StateMeta { seq: None, .. }) => put
                    .condition_expression("attribute_exists(pk) AND attribute_not_exists(#seq)")
                    .expression_attribute_names("#seq", "seq"),
            };
            plan.units += write_units(item_bytes(&item), true);
            usage.entry(tenant).or_default().state_bytes += bytes - old.as_ref().map_or(0, |o| o.bytes);
            plan.replaced.extend(old.and_then(|o| o.spilled));
            plan.states.push((pk.clone(), StateMeta { seq: Some(seq), bytes, spilled: spilled.then_some(object) }));
            let put = put.build().map_err(|e| local("TransactWriteItems", e))?;
            plan.push(TransactWriteItem::builder().put(put).build(), Owner::State(pk));
        }
        for (tenant, change) in &mut usage {
            if let Some(counters) = carry.get(tenant) {
                change.counters.add(counters);
                plan.carried.push(tenant.clone());
            }
        }
        for (tenant, change) in usage {
            if let Some(update) = self.usage_update(&tenant, &change)? {
                // The usage item stays well under 1 KB.
                plan.units += write_units(1, true);
                plan.push(update, Owner::Usage);
            }
        }
        Ok(plan)
    }

    /// One `ADD` of a batch's changes to a tenant's usage item; `None` if it changes nothing.
    fn usage_update(&self, tenant: &str, change: &UsageChange) -> Result<Option<TransactWriteItem>, StoreError> {
        let (mut parts, mut values) = if change.counters.runs > 0 {
            let (expression, values) = usage_add(&change.counters);
            (vec![expression.trim_start_matches("ADD ").to_string()], values)
        } else {
            (Vec::new(), HashMap::new())
        };
        for (figure, delta) in [("outbox_bytes", change.outbox_bytes), ("state_bytes", change.state_bytes)] {
            if delta != 0 {
                parts.push(format!("{figure} :{figure}"));
                values.insert(format!(":{figure}"), n(delta));
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(usage_key(tenant)))
            .update_expression(format!("ADD {}", parts.join(", ")))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| local("TransactWriteItems", e))?;
        Ok(Some(TransactWriteItem::builder().update(update).build()))
    }

    /// The state each of `pks` holds now: as this store last wrote it, else read (in one
    /// `BatchGetItem` for all it does not know).
    async fn states_before<'a>(
        &self,
        pks: impl Iterator<Item = &'a String>,
    ) -> Result<HashMap<String, Option<StateMeta>>, StoreError> {
        let mut known = HashMap::new();
        let mut unknown = Vec::new();
        for pk in pks {
            match self.states.get(pk) {
                Some(meta) => drop(known.insert(pk.clone(), meta)),
                None => unknown.push(pk.clone()),
            }
        }
        for chunk in unknown.chunks(100) {
            for pk in chunk {
                known.insert(pk.clone(), None);
            }
            let keys = chunk.iter().map(|pk| key(pk.clone(), "state")).collect();
            let mut wanted = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| local("BatchGetItem", e))?;
            // BatchGetItem may leave keys unread under load: ask for those again.
            for _ in 0..10 {
                let output = self
                    .db
                    .batch_get_item()
                    .request_items(&self.table, wanted)
                    .send()
                    .await
                    .map_err(|e| remote("BatchGetItem", e))?;
                for item in output.responses.unwrap_or_default().remove(&self.table).unwrap_or_default() {
                    let pk = super::string_of(&item, "pk")?.to_string();
                    known.insert(pk, Some(StateMeta::of(&item)?));
                }
                match output.unprocessed_keys.unwrap_or_default().remove(&self.table) {
                    Some(rest) if !rest.keys.is_empty() => wanted = rest,
                    _ => break,
                }
            }
        }
        Ok(known)
    }

    /// After a transaction went in: counts its units, remembers its states and removes the S3
    /// objects it made unreachable.
    async fn finish(&self, plan: Plan) {
        self.meter.add_write_units(plan.units);
        for (pk, meta) in plan.states {
            self.states.set(pk, Some(meta));
        }
        self.forget_objects(&plan.replaced).await;
    }

    async fn forget_objects(&self, objects: &[String]) {
        for object in objects {
            if let Err(e) = self.s3.delete_object().bucket(&self.bucket).key(object).send().await {
                tracing::warn!(%object, "cannot remove a value nothing names any more: {}", remote("DeleteObject", e));
            }
        }
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

impl Plan {
    fn push(&mut self, action: TransactWriteItem, owner: Owner) {
        self.actions.push(action);
        self.owners.push(owner);
    }
}
