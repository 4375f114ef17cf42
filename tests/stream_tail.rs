//! Reading the tenant's stream as the tenant would: one shard iterator per shard from the start
//! of the stream (GetShardIterator, TRIM_HORIZON), then GetRecords on each, following
//! `NextShardIterator`.

use anyhow::{Context, Result};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::ShardIteratorType;

/// One record read back from the stream.
pub struct Arrived {
    pub partition_key: String,
    pub data: String,
    /// When Kinesis accepted it (ApproximateArrivalTimestamp), in milliseconds since the epoch.
    pub arrived_at_ms: Option<i64>,
}

/// A reader positioned after the records it has returned.
pub struct Tail {
    client: Client,
    stream_arn: String,
    /// (shard id, the iterator to read it from next; `None` once the shard is closed)
    shards: Vec<(String, Option<String>)>,
}

impl Tail {
    /// Opens an iterator on every shard at the start of the stream.
    pub async fn open(client: Client, stream_arn: &str) -> Result<Self> {
        let listed = client
            .list_shards()
            .stream_arn(stream_arn)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("ListShards failed: {}", DisplayErrorContext(&e)))?;
        let mut shards = Vec::new();
        for shard in listed.shards() {
            let iterator = client
                .get_shard_iterator()
                .stream_arn(stream_arn)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("GetShardIterator failed: {}", DisplayErrorContext(&e)))?;
            shards.push((shard.shard_id().to_string(), iterator.shard_iterator().map(str::to_string)));
        }
        anyhow::ensure!(!shards.is_empty(), "stream {stream_arn} has no shards");
        Ok(Self { client, stream_arn: stream_arn.to_string(), shards })
    }

    /// The records that arrived since the last call, from every shard.
    pub async fn poll(&mut self) -> Result<Vec<Arrived>> {
        let mut arrived = Vec::new();
        for (shard_id, iterator) in &mut self.shards {
            let Some(current) = iterator.take() else { continue };
            let page = self
                .client
                .get_records()
                .stream_arn(&self.stream_arn)
                .shard_iterator(current)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("GetRecords on {shard_id} failed: {}", DisplayErrorContext(&e)))?;
            for record in page.records() {
                let data = String::from_utf8(record.data().as_ref().to_vec())
                    .with_context(|| format!("a record in {shard_id} is not UTF-8"))?;
                arrived.push(Arrived {
                    partition_key: record.partition_key().unwrap_or_default().to_string(),
                    data,
                    arrived_at_ms: record.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()),
                });
            }
            *iterator = page.next_shard_iterator().map(str::to_string);
        }
        Ok(arrived)
    }
}
