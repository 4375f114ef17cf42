//! Run history and usage counters in DynamoDB.
//!
//! A run is an item `run#<start>-<id>` in its project's partition, newest last, with a TTL
//! (`expires_at`): DynamoDB removes old history itself, so a run writes one item and removes
//! none, where the sled store trims each project to [`RUNS_KEPT`] records. Reads return the
//! newest [`RUNS_KEPT`] at most, as the sled store does. Usage counters are `ADD`s on the tenant's
//! `usage` item, atomic across hosts.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};

use super::super::StoreError;
use super::super::runs::{Counters, RUNS_KEPT, Run, Usage};
use super::batch::Write;
use super::outbox::disk_of;
use super::{DynamoStore, Item, doc, doc_of, key, local, n, number_of, project_pk, remote, usage_key};

/// How long a run's history record is kept before DynamoDB's TTL removes it.
pub const RUN_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// The `ADD` to a tenant's usage item of `counters`, if given, and of the byte `figures`
/// (`outbox_bytes`, `state_bytes`, …, each named once): its update expression and values, for an
/// `UpdateItem` or an update inside a transaction alike.
pub(super) fn usage_add(
    counters: Option<&Counters>,
    figures: &[(&str, i64)],
) -> (String, HashMap<String, AttributeValue>) {
    let mut added: Vec<(&str, AttributeValue)> = Vec::new();
    if let Some(counters) = counters {
        added.extend([
            ("runs", n(counters.runs)),
            ("runs_failed", n(counters.runs_failed)),
            ("bytes_fetched", n(counters.bytes_fetched)),
            ("records_delivered", n(counters.records_delivered)),
            ("bytes_delivered", n(counters.bytes_delivered)),
            // Microseconds, as an integer: repeated ADDs of decimals would drift.
            ("plugin_us", n((counters.plugin_ms * 1000.0).round() as i64)),
        ]);
    }
    added.extend(figures.iter().map(|(figure, delta)| (*figure, n(delta))));
    let parts: Vec<String> = added.iter().map(|(name, _)| format!("{name} :{name}")).collect();
    let values = added.into_iter().map(|(name, value)| (format!(":{name}"), value)).collect();
    (format!("ADD {}", parts.join(", ")), values)
}

/// The counters on a tenant's usage item (`plugin_us` back in milliseconds).
pub(super) fn counters_of(item: &Item) -> Result<Counters, StoreError> {
    let count = |name| number_of(item, name).map(|v| v.max(0) as u64);
    Ok(Counters {
        runs: count("runs")?,
        runs_failed: count("runs_failed")?,
        bytes_fetched: count("bytes_fetched")?,
        records_delivered: count("records_delivered")?,
        bytes_delivered: count("bytes_delivered")?,
        plugin_ms: count("plugin_us")? as f64 / 1000.0,
    })
}

impl DynamoStore {
    /// Appends a run to its project's history and adds it to the tenant's usage, in its lane's
    /// next batch (`batch.rs`).
    pub async fn record_run(&self, tenant: &str, run: &Run, plugin_ms: f64) -> Result<(), StoreError> {
        self.write(self.run_write(tenant, run, plugin_ms)?).await
    }

    /// Like [`DynamoStore::record_run`], without waiting; a failure is logged.
    pub fn record_run_later(&self, tenant: &str, run: &Run, plugin_ms: f64) {
        match self.run_write(tenant, run, plugin_ms) {
            Ok(write) => self.write_later(write),
            Err(e) => tracing::error!(project = %run.project_id, "cannot write the run's history: {e}"),
        }
    }

    fn run_write(&self, tenant: &str, run: &Run, plugin_ms: f64) -> Result<Write, StoreError> {
        let item = self.run_item(tenant, run)?;
        Ok(Write::Run { tenant: tenant.to_string(), item, counters: Counters::of_run(run, plugin_ms) })
    }

    /// A run's history item, which DynamoDB removes [`RUN_TTL_SECONDS`] after it is written.
    pub(super) fn run_item(&self, tenant: &str, run: &Run) -> Result<Item, StoreError> {
        let started = run.started_at.parse::<jiff::Timestamp>().map_or(0, |t| t.as_millisecond().max(0));
        let mut item = key(project_pk(tenant, &run.project_id), format!("run#{started:016x}-{}", run.id));
        item.insert("doc".into(), doc(run)?);
        item.insert("expires_at".into(), n(jiff::Timestamp::now().as_second() + RUN_TTL_SECONDS));
        Ok(item)
    }

    /// Forgets a project's history (when the project is deleted).
    pub(super) async fn delete_runs_of(&self, tenant: &str, project: &str) -> Result<(), StoreError> {
        let items = self.query(&project_pk(tenant, project), "run#").await?;
        for chunk in items.chunks(25) {
            let mut requests = Vec::with_capacity(chunk.len());
            for item in chunk {
                let key = key(super::string_of(item, "pk")?, super::string_of(item, "sk")?);
                let delete =
                    DeleteRequest::builder().set_key(Some(key)).build().map_err(|e| local("BatchWriteItem", e))?;
                requests.push(WriteRequest::builder().delete_request(delete).build());
            }
            self.batch_write(requests).await?;
        }
        Ok(())
    }

    /// A project's runs, newest first, at most `limit` (and at most [`RUNS_KEPT`]).
    pub async fn runs(&self, tenant: &str, project: &str, limit: usize) -> Result<Vec<Run>, StoreError> {
        let limit = limit.min(RUNS_KEPT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let output = self
            .db
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(project_pk(tenant, project)))
            .expression_attribute_values(":prefix", AttributeValue::S("run#".into()))
            .scan_index_forward(false)
            .limit(limit as i32)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| remote("Query", e))?;
        output.items().iter().map(doc_of).collect()
    }

    /// Sends `requests` (25 at most) in one `BatchWriteItem`, and again those it leaves undone.
    pub(super) async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut pending = HashMap::from([(self.table.clone(), requests)]);
        // BatchWriteItem may leave some requests undone under load: send those again.
        for _ in 0..10 {
            let output = self
                .db
                .batch_write_item()
                .set_request_items(Some(pending))
                .send()
                .await
                .map_err(|e| remote("BatchWriteItem", e))?;
            pending = output.unprocessed_items.unwrap_or_default();
            if pending.values().all(Vec::is_empty) {
                return Ok(());
            }
        }
        Err(StoreError::Remote {
            operation: "BatchWriteItem".into(),
            message: "DynamoDB left writes undone ten times; the table is overloaded".into(),
        })
    }

    /// A tenant's usage counters (all zero before its first run) and stored bytes.
    pub async fn usage(&self, tenant: &str) -> Result<Usage, StoreError> {
        // One item holds both the counters and the stored bytes: one read.
        let Some(item) = self.get(usage_key(tenant)).await? else { return Ok(Usage::default()) };
        Ok(counters_of(&item)?.with_disk(disk_of(&item)?))
    }
}
