//! How a lane's batch becomes one `TransactWriteItems` (`batch.rs` gathers it): the plan of its
//! actions, each traced back to the write that asked for it, so that a cancellation answers that
//! write alone; each project's newest state conditioned on the one it replaces; and what the
//! store remembers of the states it wrote, so that it need not read them per run.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem};

use super::super::runs::Counters;
use super::super::{Fence, StoreError};
use super::batch::{Write, failed};
use super::meter::{item_bytes, write_units};
use super::outbox::{INLINE_BYTES, next_sequence, spill_key};
use super::{DynamoStore, Item, key, local, number_of, project_pk, remote, s};

/// Sends of one batch before its writes are answered with an error: conflicts with other
/// writers, and writes answered alone, each take one.
const ATTEMPTS: u32 = 8;

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

/// Who asked for an action of the transaction, so that a cancellation can be traced to it.
enum Owner {
    Write(usize),
    State(String),
    Usage,
    /// The check that a lease still names the host at the epoch its writes ran under.
    Fence(u32),
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
    /// Writes the transactional part of a batch, sending it again without the writes answered
    /// alone, and returns each write's result. Held usage counters of tenants the transaction
    /// touches anyway ride along from `carry`.
    pub(super) async fn commit(
        &self,
        writes: &[(&Write, Option<&Fence>)],
        carry: &mut BTreeMap<String, Counters>,
    ) -> Vec<Result<(), StoreError>> {
        let mut results: Vec<Option<Result<(), StoreError>>> = writes.iter().map(|_| None).collect();
        // A write fenced by an older epoch of a partition than another write of the batch ran
        // under a lease this host has lost since: refused without asking.
        for (i, (_, fence)) in writes.iter().enumerate() {
            if let Some(fence) = fence
                && writes.iter().any(|(_, other)| {
                    other.is_some_and(|other| other.partition == fence.partition && other.epoch > fence.epoch)
                })
            {
                results[i] = Some(Err(StoreError::Fenced { partition: fence.partition }));
            }
        }
        let writes_only: Vec<&Write> = writes.iter().map(|(write, _)| *write).collect();
        'attempts: for attempt in 0..ATTEMPTS {
            let open: Vec<usize> = (0..writes.len()).filter(|&i| results[i].is_none()).collect();
            let answer_open = |results: &mut Vec<Option<Result<(), StoreError>>>,
                               with: &dyn Fn() -> Result<(), StoreError>| {
                for &i in &open {
                    results[i] = Some(with());
                }
            };
            let plan = self
                .plan(&writes_only, &open, carry)
                .await
                .and_then(|mut plan| self.fence_checks(writes, &open, &mut plan).map(|()| plan));
            let plan = match plan {
                Ok(plan) => plan,
                Err(e) => {
                    let message = e.to_string();
                    answer_open(&mut results, &|| Err(failed("TransactWriteItems", message.clone())));
                    break 'attempts;
                }
            };
            if plan.actions.is_empty() {
                answer_open(&mut results, &|| Ok(()));
                break 'attempts;
            }
            let sent = self.db.transact_write_items().set_transact_items(Some(plan.actions.clone())).send().await;
            let error = match sent {
                Ok(_) => {
                    for tenant in &plan.carried {
                        carry.remove(tenant);
                    }
                    self.finish(plan).await;
                    answer_open(&mut results, &|| Ok(()));
                    break 'attempts;
                }
                Err(e) => e,
            };
            self.forget_objects(&plan.written).await;
            let Some(reasons) = super::cancellation_reasons(&error) else {
                let message = remote("TransactWriteItems", error).to_string();
                answer_open(&mut results, &|| Err(failed("TransactWriteItems", message.clone())));
                break 'attempts;
            };
            let mut contended = false;
            for (owner, code) in plan.owners.iter().zip(&reasons) {
                match (code.as_str(), owner) {
                    ("ConditionalCheckFailed", Owner::Write(i)) => results[*i] = Some(Ok(())),
                    ("ConditionalCheckFailed", Owner::State(pk)) => self.states.forget(pk),
                    ("ConditionalCheckFailed", Owner::Fence(partition)) => {
                        for &i in &open {
                            if writes[i].1.is_some_and(|fence| fence.partition == *partition) {
                                results[i] = Some(Err(StoreError::Fenced { partition: *partition }));
                            }
                        }
                    }
                    ("None" | "", _) => {}
                    ("TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded", _) => {
                        contended = true
                    }
                    (code, _) => {
                        let message = format!("{code}: the transaction was refused");
                        answer_open(&mut results, &|| Err(failed("TransactWriteItems", message.clone())));
                        break 'attempts;
                    }
                }
            }
            if contended {
                tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
            }
        }
        // A write still unanswered was sent every time and refused every time.
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(failed(
                        "TransactWriteItems",
                        format!(
                            "the batch was refused {ATTEMPTS} times for conflicting writes; the next run tries again"
                        ),
                    ))
                })
            })
            .collect()
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
                    plan.push(self.entry_removal(&pk, sequence)?, Owner::Write(i));
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
            if let Some(update) = self.batch_usage_update(&tenant, &change)? {
                // The usage item stays well under 1 KB.
                plan.units += write_units(1, true);
                plan.push(update, Owner::Usage);
            }
        }
        Ok(plan)
    }

    /// One `ConditionCheck` per lease the open writes ran under: the transaction goes in only while
    /// each lease still names its writer at that epoch.
    fn fence_checks(
        &self,
        writes: &[(&Write, Option<&Fence>)],
        open: &[usize],
        plan: &mut Plan,
    ) -> Result<(), StoreError> {
        let mut fences: BTreeMap<u32, &Fence> = BTreeMap::new();
        for &i in open {
            if let Some(fence) = writes[i].1 {
                fences.insert(fence.partition, fence);
            }
        }
        for (partition, fence) in fences {
            // A condition check reads the item: one read unit, no write units.
            plan.push(self.fence_check(fence)?, Owner::Fence(partition));
        }
        Ok(())
    }

    /// One `ADD` of a batch's changes to a tenant's usage item; `None` if it changes nothing.
    fn batch_usage_update(&self, tenant: &str, change: &UsageChange) -> Result<Option<TransactWriteItem>, StoreError> {
        let counters = (change.counters.runs > 0).then_some(&change.counters);
        let figures: Vec<(&str, i64)> = [("outbox_bytes", change.outbox_bytes), ("state_bytes", change.state_bytes)]
            .into_iter()
            .filter(|(_, delta)| *delta != 0)
            .collect();
        if counters.is_none() && figures.is_empty() {
            return Ok(None);
        }
        self.usage_update(tenant, counters, &figures).map(Some)
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
}

impl Plan {
    fn push(&mut self, action: TransactWriteItem, owner: Owner) {
        self.actions.push(action);
        self.owners.push(owner);
    }
}
