//! Leases, host records and the change feed in the shared table (see `store/cluster.rs`):
//!
//! | item | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | lease | `leases` | partition, 5 digits | `owner` (empty when free), `epoch`, `heartbeat` |
//! | host | `hosts` | host id | `doc`, `expires_at` (TTL: a day after its last round) |
//! | change | `changes` | `<ms, 13 digits>#<id>` | `doc`, `expires_at` (TTL: an hour) |
//!
//! Every lease write is conditional on what the writer saw: a renewal on owner and epoch, a take
//! on epoch and heartbeat, so two hosts can never both believe they took a lease. A host reads
//! all leases in one query per round; the change feed is one query per second from each host.

use super::super::Fence;
use super::super::StoreError;
use super::super::cluster::{Change, HostRecord, Lease};
use super::{DynamoStore, Item, doc, doc_of, key, n, number_of, remote, s, string_of};

/// How long a published change stays in the feed.
const CHANGE_TTL_SECONDS: i64 = 3600;

/// How long a host's record outlives its last round.
const HOST_TTL_SECONDS: i64 = 86_400;

pub(super) fn lease_key(partition: u32) -> Item {
    key("leases", format!("{partition:05}"))
}

fn lease_of(item: &Item) -> Result<Lease, StoreError> {
    let partition = string_of(item, "sk")?.parse().map_err(|_| super::corrupt(item, "a lease's sort key"))?;
    Ok(Lease {
        partition,
        owner: string_of(item, "owner")?.to_string(),
        epoch: number_of(item, "epoch")? as u64,
        heartbeat: number_of(item, "heartbeat")? as u64,
    })
}

impl DynamoStore {
    /// The transaction action that holds it to `fence`: the lease must still name the fence's
    /// host at the fence's epoch.
    pub(super) fn fence_check(&self, fence: &Fence) -> Result<aws_sdk_dynamodb::types::TransactWriteItem, StoreError> {
        let check = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(lease_key(fence.partition)))
            .condition_expression("#owner = :owner AND #epoch = :epoch")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#epoch", "epoch")
            .expression_attribute_values(":owner", s(&fence.owner))
            .expression_attribute_values(":epoch", n(fence.epoch))
            .build()
            .map_err(|e| super::local("TransactWriteItems", e))?;
        Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder().condition_check(check).build())
    }
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(error: &E) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    pub async fn leases(&self, partitions: u32) -> Result<Vec<Lease>, StoreError> {
        let mut leases: Vec<Lease> = Vec::with_capacity(partitions as usize);
        for item in self.query("leases", "").await? {
            let lease = lease_of(&item)?;
            if lease.partition < partitions {
                leases.push(lease);
            }
        }
        if leases.len() < partitions as usize {
            let have: std::collections::BTreeSet<u32> = leases.iter().map(|l| l.partition).collect();
            for partition in (0..partitions).filter(|p| !have.contains(p)) {
                let mut item = lease_key(partition);
                item.insert("owner".into(), s(""));
                item.insert("epoch".into(), n(0));
                item.insert("heartbeat".into(), n(0));
                let put = self
                    .db
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await;
                match put {
                    Ok(_) => leases.push(Lease { partition, owner: String::new(), epoch: 0, heartbeat: 0 }),
                    // Another host made it first: read it next round.
                    Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {}
                    Err(e) => return Err(remote("PutItem", e)),
                }
            }
            leases.sort_by_key(|l| l.partition);
        }
        Ok(leases)
    }

    /// Sets `update` on a lease if `condition` holds; `false` if it does not.
    async fn update_lease(
        &self,
        partition: u32,
        update: &str,
        condition: &str,
        values: Vec<(&str, aws_sdk_dynamodb::types::AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let mut request = self
            .db
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(partition)))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#epoch", "epoch")
            .expression_attribute_names("#heartbeat", "heartbeat");
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(false),
            Err(e) => Err(remote("UpdateItem", e)),
        }
    }

    pub async fn renew_lease(&self, lease: &Lease) -> Result<bool, StoreError> {
        self.update_lease(
            lease.partition,
            "SET #heartbeat = #heartbeat + :one",
            "#owner = :owner AND #epoch = :epoch",
            vec![(":one", n(1)), (":owner", s(&lease.owner)), (":epoch", n(lease.epoch))],
        )
        .await
    }

    pub async fn take_lease(&self, seen: &Lease, host: &str) -> Result<Option<Lease>, StoreError> {
        let taken = self
            .update_lease(
                seen.partition,
                "SET #owner = :host, #epoch = :next, #heartbeat = :zero",
                "#epoch = :epoch AND #heartbeat = :heartbeat",
                vec![
                    (":host", s(host)),
                    (":next", n(seen.epoch + 1)),
                    (":zero", n(0)),
                    (":epoch", n(seen.epoch)),
                    (":heartbeat", n(seen.heartbeat)),
                ],
            )
            .await?;
        Ok(taken.then(|| Lease {
            partition: seen.partition,
            owner: host.to_string(),
            epoch: seen.epoch + 1,
            heartbeat: 0,
        }))
    }

    pub async fn release_lease(&self, lease: &Lease) -> Result<bool, StoreError> {
        // A new epoch: whatever the releasing host still had in flight is fenced off too.
        self.update_lease(
            lease.partition,
            "SET #owner = :free, #epoch = #epoch + :one, #heartbeat = :zero",
            "#owner = :owner AND #epoch = :epoch",
            vec![
                (":free", s("")),
                (":one", n(1)),
                (":zero", n(0)),
                (":owner", s(&lease.owner)),
                (":epoch", n(lease.epoch)),
            ],
        )
        .await
    }

    pub async fn put_host(&self, host: &HostRecord) -> Result<(), StoreError> {
        self.put_expiring(key("hosts", &host.id), host, HOST_TTL_SECONDS).await
    }

    /// Puts `record` as the `doc` of the item under `item`'s key, for DynamoDB to remove
    /// `ttl_seconds` from now.
    async fn put_expiring(
        &self,
        mut item: Item,
        record: &impl serde::Serialize,
        ttl_seconds: i64,
    ) -> Result<(), StoreError> {
        item.insert("doc".into(), doc(record)?);
        item.insert("expires_at".into(), n(jiff::Timestamp::now().as_second() + ttl_seconds));
        self.db
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| remote("PutItem", e))?;
        Ok(())
    }

    pub async fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.query("hosts", "").await?.iter().map(doc_of).collect()
    }

    pub async fn remove_host(&self, id: &str) -> Result<(), StoreError> {
        self.db
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key("hosts", id)))
            .send()
            .await
            .map_err(|e| remote("DeleteItem", e))?;
        Ok(())
    }

    pub async fn publish_change(&self, change: &Change) -> Result<(), StoreError> {
        let item = key("changes", format!("{:013}#{}", change.at_ms.max(0), change.id));
        self.put_expiring(item, change, CHANGE_TTL_SECONDS).await
    }

    pub async fn changes_since(&self, since_ms: i64) -> Result<Vec<Change>, StoreError> {
        let mut pages = self
            .db
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk >= :since")
            .expression_attribute_values(":pk", s("changes"))
            .expression_attribute_values(":since", s(format!("{:013}", since_ms.max(0))))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut changes = Vec::new();
        while let Some(item) = pages.next().await {
            changes.push(doc_of(&item.map_err(|e| remote("Query", e))?)?);
        }
        Ok(changes)
    }
}
