//! The outbox, parked entries and committed state in DynamoDB: the same at-least-once contract as
//! the sled store (`store/outbox.rs`), kept by transactions.
//!
//! A project's items share the partition `project#<tenant>/<project>`: its entries under
//! `outbox#<sequence>` (oldest first), its parked entries under `parked#<sequence>`, its committed
//! state under `state`. An entry's value is the sled store's encoding (`outbox::encode_entry`);
//! one over [`INLINE_BYTES`] goes to S3 under `outbox/<tenant>/<project>/<sequence>`, written
//! before the item that names it and deleted after the item is gone. Removing a delivered entry
//! and committing its state is one `TransactWriteItems`, as it is one sled transaction.
//!
//! The bytes each tenant keeps waiting, parked and in states are counted on its `usage` item in
//! the same transactions (`ADD`), so the `max_outbox_bytes` quota holds across hosts. Entries also
//! carry `shard` and `waiting` attributes for the sparse index `waiting`, through which a drainer
//! finds the projects that have entries without reading every project.

use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, Select, TransactWriteItem, Update};

use super::super::StoreError;
use super::super::disk::DiskUsage;
use super::super::outbox::{OutboxEntry, OutboxKey, WaitingEntry, decode_entry, encode_entry};
use super::super::parked::{ParkedAction, ParkedEntry};
use super::super::runs::Counters;
use super::batch::Write;
use super::runs::usage_add;
use super::{DynamoStore, Item, key, local, n, number_of, project_pk, remote, s, string_of, usage_key};

/// The largest value kept in the item itself; DynamoDB's items stop at 400 KB.
pub(super) const INLINE_BYTES: usize = 350_000;

/// Shards of the `waiting` index, so that no index partition takes every entry's writes.
pub(super) const WAITING_SHARDS: u64 = 16;

/// The last sequence this process handed out (see [`next_sequence`]).
static LAST_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A sequence above every earlier one of this process and at least the current time in
/// microseconds, so that a project's entries sort in the order they were written, also after a
/// restart or on another host whose clock is within the time between two of its runs.
pub(super) fn next_sequence() -> u64 {
    let now = jiff::Timestamp::now().as_microsecond().max(0) as u64;
    let mut last = LAST_SEQUENCE.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST_SEQUENCE.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

fn shard_of(tenant: &str, project: &str) -> String {
    format!("waiting#{}", super::fnv1a(&format!("{tenant}/{project}")) % WAITING_SHARDS)
}

/// The item key behind an [`OutboxKey`], which reads `<tenant>/<project>/<sequence>` as the sled
/// store's keys do.
fn parse_key(key: &OutboxKey) -> Result<(String, String, String), StoreError> {
    let text = String::from_utf8_lossy(&key.0);
    let mut parts = text.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(tenant), Some(project), Some(sequence)) => Ok((tenant.into(), project.into(), sequence.into())),
        _ => Err(StoreError::Corrupt { key: text.into_owned(), message: "not an outbox key".into() }),
    }
}

fn outbox_key(tenant: &str, project: &str, sequence: &str) -> OutboxKey {
    OutboxKey(format!("{tenant}/{project}/{sequence}").into_bytes())
}

pub(super) fn spill_key(tenant: &str, project: &str, sequence: &str) -> String {
    format!("outbox/{tenant}/{project}/{sequence}")
}

impl DynamoStore {
    /// One `ADD` to a tenant's usage item, for a transaction: of `counters` if given, and of
    /// the byte `figures` (see [`usage_add`]).
    pub(super) fn usage_update(
        &self,
        tenant: &str,
        counters: Option<&Counters>,
        figures: &[(&str, i64)],
    ) -> Result<TransactWriteItem, StoreError> {
        let (expression, values) = usage_add(counters, figures);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(usage_key(tenant)))
            .update_expression(expression)
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| local("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Puts `item` and adds `changes` to the tenant's byte counts, in one transaction.
    async fn put_counted(&self, item: Item, tenant: &str, changes: &[(&str, i64)]) -> Result<(), StoreError> {
        let put = Put::builder().table_name(&self.table).set_item(Some(item)).build();
        self.db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put.map_err(|e| local("TransactWriteItems", e))?).build())
            .transact_items(self.usage_update(tenant, None, changes)?)
            .send()
            .await
            .map_err(|e| remote("TransactWriteItems", e))?;
        Ok(())
    }

    /// Deletes the stored `item` and takes its `bytes` from the tenant's `figure`, in one
    /// transaction, then its spilled object; an item gone already (another host removed it)
    /// changes nothing.
    async fn delete_counted(&self, item: &Item, tenant: &str, figure: &str) -> Result<(), StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(string_of(item, "pk")?, string_of(item, "sk")?)))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| local("TransactWriteItems", e))?;
        let written = self
            .db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(self.usage_update(tenant, None, &[(figure, -number_of(item, "bytes")?)])?)
            .send()
            .await;
        match written {
            Ok(_) => self.forget_spilled(item).await,
            Err(e) if super::cancelled_conditions(&e).is_some_and(|failed| failed.first() == Some(&true)) => Ok(()),
            Err(e) => Err(remote("TransactWriteItems", e)),
        }
    }

    /// The removal of a project's outbox entry, for a transaction, on condition that it is
    /// still there (a second delivery of the same entry settles nothing).
    pub(super) fn entry_removal(&self, pk: &str, sequence: &str) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, format!("outbox#{sequence}"))))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| local("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// The value of an item written by [`DynamoStore::value_attributes`]: inline or from S3.
    async fn value_of(&self, item: &Item) -> Result<Vec<u8>, StoreError> {
        match (item.get("value"), item.get("spilled")) {
            (Some(AttributeValue::B(blob)), _) => Ok(blob.as_ref().to_vec()),
            (_, Some(AttributeValue::S(object))) => {
                let output = self
                    .s3
                    .get_object()
                    .bucket(&self.bucket)
                    .key(object)
                    .send()
                    .await
                    .map_err(|e| remote("GetObject", e))?;
                let bytes = output.body.collect().await.map_err(|e| local("GetObject", e))?;
                Ok(bytes.into_bytes().to_vec())
            }
            _ => Err(super::corrupt(item, "neither `value` nor `spilled`")),
        }
    }

    /// Puts a large `value` in S3 under `object` and names it in `item`, or keeps it inline.
    pub(super) async fn value_attributes(
        &self,
        item: &mut Item,
        object: String,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        item.insert("bytes".into(), n(value.len()));
        if value.len() <= INLINE_BYTES {
            item.insert("value".into(), AttributeValue::B(value.into()));
            return Ok(());
        }
        let body = aws_sdk_s3::primitives::ByteStream::from(value);
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&object)
            .body(body)
            .send()
            .await
            .map_err(|e| remote("PutObject", e))?;
        item.insert("spilled".into(), s(object));
        Ok(())
    }

    async fn forget_spilled(&self, item: &Item) -> Result<(), StoreError> {
        if let Some(AttributeValue::S(object)) = item.get("spilled") {
            self.s3
                .delete_object()
                .bucket(&self.bucket)
                .key(object)
                .send()
                .await
                .map_err(|e| remote("DeleteObject", e))?;
        }
        Ok(())
    }

    /// Writes a run's records and pending state durably, in its lane's next batch
    /// (`batch.rs`). Returns the entry's key.
    pub async fn enqueue(&self, entry: &OutboxEntry) -> Result<OutboxKey, StoreError> {
        let (tenant, project) = (&entry.tenant_id, &entry.project_id);
        let sequence = format!("{:020}", next_sequence());
        let mut item = key(project_pk(tenant, project), format!("outbox#{sequence}"));
        item.insert("shard".into(), s(shard_of(tenant, project)));
        item.insert("waiting".into(), s(format!("{tenant}/{project}")));
        let value = encode_entry(entry)?;
        let bytes = value.len() as i64;
        self.value_attributes(&mut item, spill_key(tenant, project, &sequence), value).await?;
        self.write(Write::Enqueue { tenant: tenant.clone(), item, bytes }).await?;
        Ok(outbox_key(tenant, project, &sequence))
    }

    /// The items of a project's partition under `prefix`, oldest first, or only their keys.
    async fn project_items(&self, tenant: &str, project: &str, prefix: &str) -> Result<Vec<Item>, StoreError> {
        self.query(&project_pk(tenant, project), prefix).await
    }

    /// The keys of a project's waiting entries, oldest first.
    pub async fn outbox_keys_of(&self, tenant: &str, project: &str) -> Result<Vec<OutboxKey>, StoreError> {
        let items = self.project_items(tenant, project, "outbox#").await?;
        items
            .iter()
            .map(|item| {
                let sk = string_of(item, "sk")?;
                Ok(outbox_key(tenant, project, sk.trim_start_matches("outbox#")))
            })
            .collect()
    }

    /// A project's undelivered entries, oldest first.
    pub async fn outbox_of(&self, tenant: &str, project: &str) -> Result<Vec<(OutboxKey, OutboxEntry)>, StoreError> {
        let mut entries = Vec::new();
        for item in self.project_items(tenant, project, "outbox#").await? {
            let sk = string_of(&item, "sk")?.trim_start_matches("outbox#").to_string();
            let key = outbox_key(tenant, project, &sk);
            let entry = decode_entry(&String::from_utf8_lossy(&key.0), &self.value_of(&item).await?)?;
            entries.push((key, entry));
        }
        Ok(entries)
    }

    /// What a project has waiting for Kinesis, oldest first, without the records themselves.
    pub async fn waiting_of(&self, tenant: &str, project: &str) -> Result<Vec<WaitingEntry>, StoreError> {
        Ok(self.outbox_of(tenant, project).await?.into_iter().map(|(_, entry)| WaitingEntry::of(&entry)).collect())
    }

    /// The entry under `key`, if it is still waiting.
    pub async fn outbox_entry(&self, key: &OutboxKey) -> Result<Option<OutboxEntry>, StoreError> {
        let (tenant, project, sequence) = parse_key(key)?;
        let Some(item) = self.get(super::key(project_pk(&tenant, &project), format!("outbox#{sequence}"))).await?
        else {
            return Ok(None);
        };
        decode_entry(&String::from_utf8_lossy(&key.0), &self.value_of(&item).await?).map(Some)
    }

    /// How many entries a project has waiting.
    pub async fn outbox_len_of(&self, tenant: &str, project: &str) -> Result<usize, StoreError> {
        let mut pages = self
            .db
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(project_pk(tenant, project)))
            .expression_attribute_values(":prefix", s("outbox#"))
            .select(Select::Count)
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut count = 0;
        while let Some(page) = pages.next().await {
            count += page.map_err(|e| remote("Query", e))?.count() as usize;
        }
        Ok(count)
    }

    /// A query of one shard of the `waiting` index.
    fn waiting_shard(&self, shard: u64) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.db
            .query()
            .table_name(&self.table)
            .index_name("waiting")
            .key_condition_expression("shard = :shard")
            .expression_attribute_values(":shard", s(format!("waiting#{shard}")))
    }

    /// Every (tenant, project) with entries waiting, each once, in key order, from the sparse
    /// `waiting` index (eventually consistent, as indexes are: the drainer looks again soon).
    pub async fn outbox_projects(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut projects = std::collections::BTreeSet::new();
        for shard in 0..WAITING_SHARDS {
            let mut pages = self.waiting_shard(shard).into_paginator().items().send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(|e| remote("Query", e))?;
                if let Some((tenant, project)) = string_of(&item, "waiting")?.split_once('/') {
                    projects.insert((tenant.to_string(), project.to_string()));
                }
            }
        }
        Ok(projects.into_iter().collect())
    }

    /// Entries waiting across every project, counted from the `waiting` index.
    pub async fn outbox_depth(&self) -> Result<usize, StoreError> {
        let mut count = 0;
        for shard in 0..WAITING_SHARDS {
            let mut pages = self.waiting_shard(shard).select(Select::Count).into_paginator().send();
            while let Some(page) = pages.next().await {
                count += page.map_err(|e| remote("Query", e))?.count() as usize;
            }
        }
        Ok(count)
    }

    /// Removes a delivered entry and commits its state, in one transaction (its lane's next
    /// batch). An entry that is gone already (its project was deleted) commits nothing.
    pub async fn complete_delivery(&self, key: &OutboxKey, entry: &OutboxEntry) -> Result<(), StoreError> {
        let (tenant, project, sequence) = parse_key(key)?;
        // The entry's stored size is its encoding's, so it need not be read again.
        let bytes = encode_entry(entry)?.len() as i64;
        self.write(Write::Settle { tenant, project, sequence, bytes, state: entry.state.clone() }).await
    }

    /// Moves an entry Kinesis refused for good to the parked entries and commits its state, in
    /// one transaction of its own: parking is rare, and it reads what it replaces.
    pub async fn park(
        &self,
        key: &OutboxKey,
        entry: &OutboxEntry,
        error: &str,
        parked_at: &str,
    ) -> Result<(), StoreError> {
        let (tenant, project, sequence) = parse_key(key)?;
        // Everything handed to the lanes before goes in first, as it would have in one batch.
        self.drain().await?;
        let parked = self.park_now(&tenant, &project, &sequence, entry, error, parked_at).await;
        self.states.forget(&project_pk(&tenant, &project));
        parked
    }

    async fn park_now(
        &self,
        tenant: &str,
        project: &str,
        sequence: &str,
        entry: &OutboxEntry,
        error: &str,
        parked_at: &str,
    ) -> Result<(), StoreError> {
        let pk = project_pk(tenant, project);
        let Some(stored) = self.get(key(pk.clone(), format!("outbox#{sequence}"))).await? else { return Ok(()) };
        let removed = number_of(&stored, "bytes")?;
        let mut items = vec![self.entry_removal(&pk, sequence)?];
        let mut changes = vec![("outbox_bytes", -removed)];
        let mut replaced = None;
        if let Some(state) = &entry.state {
            let old = self.get(key(pk.clone(), "state")).await?;
            let mut item = key(pk.clone(), "state");
            // A `seq` of its own, as the lanes' state writes have (`batch.rs`).
            let seq = format!("{:020}", next_sequence());
            item.insert("seq".into(), s(&seq));
            self.value_attributes(&mut item, format!("state/{tenant}/{project}/{seq}"), state.clone()).await?;
            changes.push(("state_bytes", state.len() as i64 - old.as_ref().map_or(Ok(0), |o| number_of(o, "bytes"))?));
            replaced = old;
            let put = Put::builder().table_name(&self.table).set_item(Some(item)).build();
            items.push(TransactWriteItem::builder().put(put.map_err(|e| local("TransactWriteItems", e))?).build());
        }
        let mut item = key(pk.clone(), format!("parked#{sequence}"));
        item.insert("error".into(), s(error));
        item.insert("parked_at".into(), s(parked_at));
        let value = encode_entry(entry)?;
        changes.push(("parked_bytes", value.len() as i64));
        self.value_attributes(&mut item, format!("parked/{tenant}/{project}/{sequence}"), value).await?;
        let put = Put::builder().table_name(&self.table).set_item(Some(item)).build();
        items.push(TransactWriteItem::builder().put(put.map_err(|e| local("TransactWriteItems", e))?).build());
        items.push(self.usage_update(tenant, None, &changes)?);
        let fence = super::super::fence::current();
        if let Some(fence) = &fence {
            items.push(self.fence_check(fence)?);
        }
        let written = self.db.transact_write_items().set_transact_items(Some(items)).send().await;
        match written {
            Ok(_) => {
                self.forget_spilled(&stored).await?;
                match replaced {
                    Some(old) => self.forget_spilled(&old).await,
                    None => Ok(()),
                }
            }
            // Gone meanwhile: another delivery of the same entry settled it first.
            Err(e) if super::cancelled_conditions(&e).is_some_and(|failed| failed.first() == Some(&true)) => Ok(()),
            Err(e)
                if fence.is_some()
                    && super::cancelled_conditions(&e).is_some_and(|failed| failed.last() == Some(&true)) =>
            {
                Err(StoreError::Fenced { partition: fence.map_or(0, |f| f.partition) })
            }
            Err(e) => Err(remote("TransactWriteItems", e)),
        }
    }

    /// The state a project's next run starts from: the newest state still waiting in the outbox,
    /// else the committed one.
    pub async fn next_state(&self, tenant: &str, project: &str) -> Result<Option<Vec<u8>>, StoreError> {
        for (_, entry) in self.outbox_of(tenant, project).await?.into_iter().rev() {
            if entry.state.is_some() {
                return Ok(entry.state);
            }
        }
        self.committed_state(tenant, project).await
    }

    /// The state committed by the last fully delivered run.
    pub async fn committed_state(&self, tenant: &str, project: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.get(key(project_pk(tenant, project), "state")).await? {
            Some(item) => self.value_of(&item).await.map(Some),
            None => Ok(None),
        }
    }

    /// Commits a state directly, for runs that produced no records, in its lane's next batch.
    pub async fn commit_state(&self, tenant: &str, project: &str, state: &[u8]) -> Result<(), StoreError> {
        self.write(Write::State { tenant: tenant.into(), project: project.into(), state: state.to_vec() }).await
    }

    /// A project's parked entries, oldest first.
    pub async fn parked_of(&self, tenant: &str, project: &str) -> Result<Vec<ParkedEntry>, StoreError> {
        let mut parked = Vec::new();
        for item in self.project_items(tenant, project, "parked#").await? {
            parked.push(self.parked_entry(&item).await?);
        }
        Ok(parked)
    }

    async fn parked_entry(&self, item: &Item) -> Result<ParkedEntry, StoreError> {
        let entry = decode_entry(string_of(item, "sk")?, &self.value_of(item).await?)?;
        Ok(ParkedEntry {
            entry,
            error: string_of(item, "error")?.to_string(),
            parked_at: string_of(item, "parked_at")?.to_string(),
        })
    }

    /// Stores a parked entry as it was (for imports), after the project's other entries.
    pub(super) async fn import_parked(&self, parked: &ParkedEntry) -> Result<(), StoreError> {
        let (tenant, project) = (&parked.entry.tenant_id, &parked.entry.project_id);
        let sequence = format!("{:020}", next_sequence());
        let mut item = key(project_pk(tenant, project), format!("parked#{sequence}"));
        item.insert("error".into(), s(&parked.error));
        item.insert("parked_at".into(), s(&parked.parked_at));
        let value = encode_entry(&parked.entry)?;
        let bytes = value.len() as i64;
        self.value_attributes(&mut item, format!("parked/{tenant}/{project}/{sequence}"), value).await?;
        self.put_counted(item, tenant, &[("parked_bytes", bytes)]).await
    }

    /// Puts a parked entry's records back in the outbox, after everything waiting, without its
    /// state (that was committed when it was parked).
    pub async fn retry_parked(&self, tenant: &str, project: &str, run_id: &str) -> Result<ParkedAction, StoreError> {
        let Some((item, mut parked)) = self.find_parked(tenant, project, run_id).await? else {
            return self.absent(tenant, project, run_id).await;
        };
        parked.entry.state = None;
        // The entry goes back first: a failure between the two steps leaves it twice (delivered
        // twice, as at-least-once allows), never lost.
        self.enqueue(&parked.entry).await?;
        self.delete_counted(&item, tenant, "parked_bytes").await?;
        Ok(ParkedAction::Done)
    }

    /// Deletes a parked entry and its records, at the tenant's request.
    pub async fn discard_parked(&self, tenant: &str, project: &str, run_id: &str) -> Result<ParkedAction, StoreError> {
        let Some((item, _)) = self.find_parked(tenant, project, run_id).await? else {
            return self.absent(tenant, project, run_id).await;
        };
        self.delete_counted(&item, tenant, "parked_bytes").await?;
        Ok(ParkedAction::Done)
    }

    async fn find_parked(
        &self,
        tenant: &str,
        project: &str,
        run_id: &str,
    ) -> Result<Option<(Item, ParkedEntry)>, StoreError> {
        for item in self.project_items(tenant, project, "parked#").await? {
            let parked = self.parked_entry(&item).await?;
            if parked.entry.run_id == run_id {
                return Ok(Some((item, parked)));
            }
        }
        Ok(None)
    }

    async fn absent(&self, tenant: &str, project: &str, run_id: &str) -> Result<ParkedAction, StoreError> {
        let waiting = self.outbox_of(tenant, project).await?.iter().any(|(_, entry)| entry.run_id == run_id);
        Ok(if waiting { ParkedAction::Waiting } else { ParkedAction::NotFound })
    }

    /// The bytes a tenant keeps waiting, parked and in states, as its usage item counts them on
    /// every host.
    pub async fn disk_usage(&self, tenant: &str) -> Result<DiskUsage, StoreError> {
        match self.get(usage_key(tenant)).await? {
            Some(item) => disk_of(&item),
            None => Ok(DiskUsage::default()),
        }
    }

    /// Removes a project's state and its waiting and parked entries (when the project is
    /// deleted), with their bytes.
    pub async fn delete_state_of(&self, tenant: &str, project: &str) -> Result<(), StoreError> {
        // What the project's lane still holds goes in first, so that nothing lands after this.
        self.drain().await?;
        self.states.forget(&project_pk(tenant, project));
        for prefix in ["outbox#", "parked#", "state"] {
            for item in self.project_items(tenant, project, prefix).await? {
                let figure = match prefix {
                    "outbox#" => "outbox_bytes",
                    "parked#" => "parked_bytes",
                    _ => "state_bytes",
                };
                self.delete_counted(&item, tenant, figure).await?;
            }
        }
        Ok(())
    }
}

/// The byte counts on a tenant's usage item.
pub(super) fn disk_of(item: &Item) -> Result<DiskUsage, StoreError> {
    let figure = |name| number_of(item, name).map(|v| v.max(0) as u64);
    Ok(DiskUsage {
        state_bytes: figure("state_bytes")?,
        outbox_bytes: figure("outbox_bytes")?,
        parked_bytes: figure("parked_bytes")?,
        history_bytes: figure("history_bytes")?,
    })
}
