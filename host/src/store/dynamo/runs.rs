//! Run history and usage counters in DynamoDB.
//!
//! A run is an item `run#<start>-<id>` in its project's partition, newest last, with a TTL
//! (`expires_at`): DynamoDB removes old history itself, so a run writes one item and removes
//! none, where the sled store trims each project to [`RUNS_KEPT`] records. Reads return the
//! newest [`RUNS_KEPT`] at most, as the sled store does. Usage counters are `ADD`s on the tenant's
//! `usage` item, atomic across hosts.

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, TransactWriteItem, Update, WriteRequest};

use super::super::StoreError;
use super::super::runs::{RUNS_KEPT, Run, RunOutcome, Usage};
use super::outbox::project_pk;
use super::{DynamoStore, doc, doc_of, key, local, n, number_of, remote};

/// How long a run's history record is kept before DynamoDB's TTL removes it.
pub const RUN_TTL_SECONDS: i64 = 30 * 24 * 3600;

impl DynamoStore {
    /// Appends a run to its project's history and adds it to the tenant's usage, in one
    /// transaction.
    pub async fn record_run(&self, tenant: &str, run: &Run, plugin_ms: f64) -> Result<(), StoreError> {
        let item = self.run_item(tenant, run)?;
        let put = aws_sdk_dynamodb::types::Put::builder().table_name(&self.table).set_item(Some(item)).build();
        let failed = u64::from(run.outcome == RunOutcome::Failed);
        let records = if run.outcome == RunOutcome::Succeeded { run.records } else { 0 };
        let usage = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(format!("tenant#{tenant}"), "usage")))
            .update_expression(
                "ADD runs :one, runs_failed :failed, bytes_fetched :fetched, records_delivered :records, \
                 bytes_delivered :delivered, plugin_us :plugin",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":failed", n(failed))
            .expression_attribute_values(":fetched", n(run.bytes_fetched))
            .expression_attribute_values(":records", n(records))
            .expression_attribute_values(":delivered", n(run.bytes_delivered))
            // Microseconds, as an integer: repeated ADDs of decimals would drift.
            .expression_attribute_values(":plugin", n((plugin_ms * 1000.0).round() as i64))
            .build();
        self.db
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put.map_err(|e| local("TransactWriteItems", e))?).build())
            .transact_items(
                TransactWriteItem::builder().update(usage.map_err(|e| local("TransactWriteItems", e))?).build(),
            )
            .send()
            .await
            .map_err(|e| remote("TransactWriteItems", e))?;
        Ok(())
    }

    /// A run's history item, which DynamoDB removes [`RUN_TTL_SECONDS`] after it is written.
    pub(super) fn run_item(&self, tenant: &str, run: &Run) -> Result<super::Item, StoreError> {
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
            let mut pending = std::collections::HashMap::from([(self.table.clone(), requests)]);
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
                    break;
                }
            }
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

    /// A tenant's usage counters (all zero before its first run) and stored bytes.
    pub async fn usage(&self, tenant: &str) -> Result<Usage, StoreError> {
        let disk = self.disk_usage(tenant).await?;
        let Some(item) = self.get(key(format!("tenant#{tenant}"), "usage")).await? else {
            return Ok(Usage { disk, ..Usage::default() });
        };
        let count = |name| number_of(&item, name).map(|v| v.max(0) as u64);
        Ok(Usage {
            runs: count("runs")?,
            runs_failed: count("runs_failed")?,
            bytes_fetched: count("bytes_fetched")?,
            records_delivered: count("records_delivered")?,
            bytes_delivered: count("bytes_delivered")?,
            plugin_ms: count("plugin_us")? as f64 / 1000.0,
            disk,
        })
    }
}
