//! What the shared store asks of DynamoDB and S3, counted: every request the SDK sends, by service
//! and operation (retries included, as AWS counts them), and the write units its committer's
//! writes take by DynamoDB's published rules. `/metrics` shows both, and the benchmarks divide
//! them by the runs of a window (BENCHMARKS.md).
//!
//! Requests are counted by an SDK interceptor on both clients, so no call site can forget to
//! count. Write units are estimated where the items are known (`batch.rs`), because moto, which
//! the tests and benchmarks run on, does not report the capacity a transaction consumed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use super::Item;

/// The shared store's request and write-unit counts since the process started.
#[derive(Debug, Default)]
pub struct StoreMeter {
    requests: Mutex<BTreeMap<(String, String), u64>>,
    write_units: AtomicU64,
}

impl StoreMeter {
    /// Requests sent so far, as (service, operation, count), in name order.
    pub fn requests(&self) -> Vec<(String, String, u64)> {
        let requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        requests.iter().map(|((service, operation), count)| (service.clone(), operation.clone(), *count)).collect()
    }

    /// DynamoDB write units the committer's writes took so far (see [`write_units`]).
    pub fn write_units(&self) -> u64 {
        self.write_units.load(Ordering::Relaxed)
    }

    pub(super) fn add_write_units(&self, units: u64) {
        self.write_units.fetch_add(units, Ordering::Relaxed);
    }

    fn count(&self, service: &str, operation: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        *requests.entry((service.to_string(), operation.to_string())).or_default() += 1;
    }
}

/// The interceptor that counts each request as it is sent.
#[derive(Debug)]
pub(super) struct CountRequests(pub Arc<StoreMeter>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "sluice-count-requests"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            self.0.count(metadata.service(), metadata.name());
        }
        Ok(())
    }
}

/// An item's size as DynamoDB counts it for capacity: each attribute's name plus its value
/// (strings and binaries by length, numbers by about one byte per two digits plus one).
pub(super) fn item_bytes(item: &Item) -> u64 {
    item.iter().map(|(name, value)| name.len() as u64 + value_bytes(value)).sum()
}

fn value_bytes(value: &AttributeValue) -> u64 {
    match value {
        AttributeValue::S(text) => text.len() as u64,
        AttributeValue::B(blob) => blob.as_ref().len() as u64,
        AttributeValue::N(number) => (number.trim_start_matches('-').len() as u64).div_ceil(2) + 1,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        // The store writes no lists, maps or sets; count them as their text would be.
        other => format!("{other:?}").len() as u64,
    }
}

/// The write units of writing (or deleting) an item of `bytes`: one per KB started, twice that
/// inside a transaction.
pub(super) fn write_units(bytes: u64, transactional: bool) -> u64 {
    bytes.div_ceil(1024).max(1) * if transactional { 2 } else { 1 }
}
