//! The shared store on DynamoDB and S3 (issue 18), for several hosts serving one fleet. It covers
//! what the sled store keeps (tenants and their keys, plugins and their components, projects,
//! quota counts, the outbox, parked entries, committed state, run history and usage), and it is
//! selected by `[store] backend = "dynamodb"` behind [`super::Store`].
//!
//! One table, typed items under a partition key `pk` and a sort key `sk` (both strings), each
//! record's JSON in `doc`, so that the records are the same documents the sled store keeps:
//!
//! | item | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | tenant | `tenants` | tenant id | `doc`, `v` (version, for conditional updates) |
//! | API key | `key#<sha-256 of the key>` | `key` | `tenant` |
//! | quota counts | `tenant#<id>` | `counts` | `projects`, `plugins` (numbers) |
//! | plugin | `tenant#<id>` | `plugin#<plugin id>` | `doc` |
//! | project | `tenant#<id>` | `project#<project id>` | `doc`, `v` |
//! | component holders | `component#<plugin id>` | `refs` | `holders`, `generation` |
//! | usage and stored bytes | `tenant#<id>` | `usage` | counters, `outbox_bytes`, `parked_bytes`, `state_bytes` |
//! | outbox entry | `project#<tenant>/<project>` | `outbox#<sequence>` | `value` or `spilled`, `bytes`, `shard`, `waiting` |
//! | parked entry | `project#<tenant>/<project>` | `parked#<sequence>` | `value` or `spilled`, `bytes`, `error`, `parked_at` |
//! | committed state | `project#<tenant>/<project>` | `state` | `value` or `spilled`, `bytes` |
//! | run | `project#<tenant>/<project>` | `run#<start>-<run id>` | `doc`, `expires_at` (TTL) |
//!
//! The index `waiting` (partition `shard`, sort `waiting`, keys only) holds outbox entries alone,
//! spread over 16 shards: the drainer's way to the projects with records waiting (`outbox.rs`).
//!
//! Access paths: a tenant by id (GetItem), every tenant (Query on `tenants`: operators have
//! thousands at most), a key to its tenant (GetItem), a tenant's projects or plugins (Query with
//! `begins_with(sk)`), one project or plugin (GetItem). Every read is strongly consistent, so a
//! change acknowledged on one host is seen by the next read on any other.
//!
//! Uniqueness and quotas are conditional writes inside one `TransactWriteItems`: a record is put
//! only if absent, and the tenant's count is raised only while below the quota, so two hosts
//! creating at once can never pass a quota together. Component bytes live in S3 under
//! `components/<hex digest>/<generation>`; the holders item names the generation, which a
//! component gets when its first holder uploads it and keeps until its last holder deletes it.
//! Writing the object before the item that names it, and deleting the item before the object,
//! means no reader ever finds a holder without its object, and a new upload racing the last
//! delete gets a generation of its own instead of an object the delete is about to remove.

mod batch;
mod catalog;
mod cluster;
mod meter;
mod outbox;
mod plan;
mod port;
mod runs;
mod tenants;

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;

use super::StoreError;

pub use meter::StoreMeter;

/// Where the shared store lives (`[store] table` and `bucket` in the configuration).
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    /// The DynamoDB table.
    pub table: String,
    /// The S3 bucket for plugin components.
    pub bucket: String,
}

/// The control plane's records in DynamoDB and S3. Cheap to clone.
#[derive(Clone)]
pub struct DynamoStore {
    db: aws_sdk_dynamodb::Client,
    s3: aws_sdk_s3::Client,
    table: String,
    bucket: String,
    meter: Arc<StoreMeter>,
    states: Arc<plan::StateCache>,
    lanes: Arc<batch::Lanes>,
}

type Item = HashMap<String, AttributeValue>;

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// FNV-1a of `text`: stable across builds and hosts, unlike std's hasher, for choices every host
/// and every start must make alike (an entry's index shard, a tenant's lane).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The primary key of an item.
fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
}

// The items' keys, in one place: the table above, as code.

fn tenant_key(id: &str) -> Item {
    key("tenants", id)
}

fn api_key(hash: &str) -> Item {
    key(format!("key#{hash}"), "key")
}

fn tenant_pk(tenant: &str) -> String {
    format!("tenant#{tenant}")
}

fn counts_key(tenant: &str) -> Item {
    key(tenant_pk(tenant), "counts")
}

fn usage_key(tenant: &str) -> Item {
    key(tenant_pk(tenant), "usage")
}

fn plugin_key(tenant: &str, id: &str) -> Item {
    key(tenant_pk(tenant), format!("plugin#{id}"))
}

fn project_key(tenant: &str, id: &str) -> Item {
    key(tenant_pk(tenant), format!("project#{id}"))
}

fn holders_key(id: &str) -> Item {
    key(format!("component#{id}"), "refs")
}

/// The partition of a project's outbox, parked entries, state and history.
fn project_pk(tenant: &str, project: &str) -> String {
    format!("project#{tenant}/{project}")
}

/// A string attribute of an item, or a corrupt-record error naming the item.
fn string_of<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(corrupt(item, &format!("no string attribute `{name}`"))),
    }
}

/// A number attribute of an item; absent counts as zero.
fn number_of(item: &Item, name: &str) -> Result<i64, StoreError> {
    match item.get(name) {
        None => Ok(0),
        Some(AttributeValue::N(value)) => {
            value.parse().map_err(|_| corrupt(item, &format!("`{name}` is not a number")))
        }
        Some(_) => Err(corrupt(item, &format!("`{name}` is not a number"))),
    }
}

fn corrupt(item: &Item, message: &str) -> StoreError {
    let name = |a: &str| match item.get(a) {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => String::new(),
    };
    StoreError::Corrupt { key: format!("{}/{}", name("pk"), name("sk")), message: message.to_string() }
}

/// The record kept as JSON in an item's `doc`.
fn doc_of<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    let raw = string_of(item, "doc")?;
    serde_json::from_str(raw).map_err(|e| corrupt(item, &e.to_string()))
}

fn doc(value: &impl serde::Serialize) -> Result<AttributeValue, StoreError> {
    Ok(s(String::from_utf8(super::encode(value)?).expect("serde_json writes UTF-8")))
}

/// A failed call to DynamoDB or S3, as the store reports it: which operation, and what AWS said
/// (its error code and message, without the request's plumbing).
fn remote<E>(operation: &str, error: E) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error,
{
    let message = match (error.code(), error.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        // Not an answer from AWS (a timeout, a refused connection): the error's own chain says it.
        _ => aws_sdk_dynamodb::error::DisplayErrorContext(&error).to_string(),
    };
    StoreError::Remote { operation: operation.to_string(), message }
}

/// A failure that is not an AWS answer: a request that could not be built, a body cut short.
fn local(operation: &str, error: impl std::error::Error) -> StoreError {
    let message = aws_sdk_dynamodb::error::DisplayErrorContext(&error).to_string();
    StoreError::Remote { operation: operation.to_string(), message }
}

type TransactError<R> =
    aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>;

/// Why each item of a cancelled transaction failed (by position: `ConditionalCheckFailed`,
/// `TransactionConflict`, `None` for items that did not), or `None` if it was not cancelled.
fn cancellation_reasons<R>(error: &TransactError<R>) -> Option<Vec<String>> {
    let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(e) =
        error.as_service_error()?
    else {
        return None;
    };
    Some(e.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None").to_string()).collect())
}

/// Whether a transaction was cancelled because one of its conditions failed, and which items'
/// conditions did (by position).
fn cancelled_conditions<R>(error: &TransactError<R>) -> Option<Vec<bool>> {
    Some(cancellation_reasons(error)?.iter().map(|code| code == "ConditionalCheckFailed").collect())
}

impl DynamoStore {
    /// What this store has asked of DynamoDB and S3 so far.
    pub fn meter(&self) -> &StoreMeter {
        &self.meter
    }

    /// The store on `settings`' table and bucket, with the SDK configuration `sdk` (region,
    /// credentials, endpoint). Nothing is called until the first operation; see
    /// [`DynamoStore::init`] to create the table and bucket.
    pub fn new(sdk: &aws_config::SdkConfig, settings: &DynamoSettings) -> Self {
        // Path-style addressing works with every endpoint, S3-compatible emulators included,
        // where a bucket-named host may not resolve.
        let meter = Arc::new(StoreMeter::default());
        let s3 = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .interceptor(meter::CountRequests(Arc::clone(&meter)))
            .build();
        let db =
            aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(meter::CountRequests(Arc::clone(&meter))).build();
        Self {
            db: aws_sdk_dynamodb::Client::from_conf(db),
            s3: aws_sdk_s3::Client::from_conf(s3),
            table: settings.table.clone(),
            bucket: settings.bucket.clone(),
            meter,
            states: Default::default(),
            lanes: Default::default(),
        }
    }

    /// Creates the table (on-demand capacity, TTL on `expires_at`, point-in-time recovery) and
    /// the bucket, unless they exist. Safe to run again.
    pub async fn init(&self) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
            PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
        };
        let exists = match self.db.describe_table().table_name(&self.table).send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => false,
            Err(e) => return Err(remote("DescribeTable", e)),
        };
        if !exists {
            let attribute = |name: &str| {
                AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
            };
            let schema = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
            let built = (|| {
                // The sparse index of projects with entries waiting (see `outbox.rs`).
                let waiting = GlobalSecondaryIndex::builder()
                    .index_name("waiting")
                    .key_schema(schema("shard", KeyType::Hash)?)
                    .key_schema(schema("waiting", KeyType::Range)?)
                    .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                    .build()?;
                Ok::<_, aws_sdk_dynamodb::error::BuildError>((
                    vec![attribute("pk")?, attribute("sk")?, attribute("shard")?, attribute("waiting")?],
                    vec![schema("pk", KeyType::Hash)?, schema("sk", KeyType::Range)?],
                    waiting,
                ))
            })();
            let (attributes, schema, waiting) = built.map_err(|e| local("CreateTable", e))?;
            self.db
                .create_table()
                .table_name(&self.table)
                .billing_mode(BillingMode::PayPerRequest)
                .set_attribute_definitions(Some(attributes))
                .set_key_schema(Some(schema))
                .global_secondary_indexes(waiting)
                .send()
                .await
                .map_err(|e| remote("CreateTable", e))?;
            let ttl = TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .map_err(|e| local("UpdateTimeToLive", e))?;
            self.db
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(ttl)
                .send()
                .await
                .map_err(|e| remote("UpdateTimeToLive", e))?;
            let recovery = PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .map_err(|e| local("UpdateContinuousBackups", e))?;
            self.db
                .update_continuous_backups()
                .table_name(&self.table)
                .point_in_time_recovery_specification(recovery)
                .send()
                .await
                .map_err(|e| remote("UpdateContinuousBackups", e))?;
        }
        if self.s3.head_bucket().bucket(&self.bucket).send().await.is_err() {
            let mut create = self.s3.create_bucket().bucket(&self.bucket);
            // Outside us-east-1, S3 wants the region named again in the request.
            let region = self.s3.config().region().map(|r| r.as_ref().to_string()).unwrap_or_default();
            if !region.is_empty() && region != "us-east-1" {
                use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
                let location = CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build();
                create = create.create_bucket_configuration(location);
            }
            create.send().await.map_err(|e| remote("CreateBucket", e))?;
        }
        Ok(())
    }

    /// Applies `change` to the versioned record (`doc` and `v`) under `key` and writes it back,
    /// unless another writer changed it meanwhile, in which case it reads the record again and
    /// retries; `None` if there is no record. `change` may run more than once, so it must not
    /// have side effects.
    async fn update_versioned<T>(
        &self,
        key: Item,
        what: &str,
        id: &str,
        change: impl Fn(&mut T),
    ) -> Result<Option<T>, StoreError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        for _ in 0..tenants::UPDATE_ATTEMPTS {
            let Some(item) = self.get(key.clone()).await? else { return Ok(None) };
            let version = number_of(&item, "v")?;
            let mut record: T = doc_of(&item)?;
            change(&mut record);
            let mut updated = key.clone();
            updated.insert("doc".into(), doc(&record)?);
            updated.insert("v".into(), n(version + 1));
            let written = self
                .db
                .put_item()
                .table_name(&self.table)
                .set_item(Some(updated))
                .condition_expression("v = :v")
                .expression_attribute_values(":v", n(version))
                .send()
                .await;
            match written {
                Ok(_) => return Ok(Some(record)),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => continue,
                Err(e) => return Err(remote("PutItem", e)),
            }
        }
        Err(tenants::contended(what, id))
    }

    /// Checks that the table and bucket exist and that the host may use them, naming the setting
    /// or the permission at fault.
    pub async fn check(&self) -> Result<(), StoreError> {
        let region = self.db.config().region().map_or_else(|| "(no region set)".to_string(), |r| r.to_string());
        let setting = |setting: &str, message: String| StoreError::Setting { setting: setting.into(), message };
        let denied =
            |code: Option<&str>| code.is_some_and(|c| c.contains("AccessDenied") || c.contains("UnrecognizedClient"));
        let table = &self.table;
        if let Err(e) = self.db.describe_table().table_name(table).send().await {
            use aws_sdk_dynamodb::error::ProvideErrorMetadata;
            return Err(match e.as_service_error() {
                Some(s) if s.is_resource_not_found_exception() => setting(
                    "store.table",
                    format!(
                        "table {table} does not exist in region {region}; create it (`sluice serve` does with \
                         store.create_table = true) or set AWS_REGION to the table's region"
                    ),
                ),
                _ if denied(e.code()) => setting(
                    "store.table",
                    format!(
                        "the host's credentials may not call dynamodb:DescribeTable on table {table}: {}; grant the host the policy in the README",
                        remote("DescribeTable", e)
                    ),
                ),
                _ => setting(
                    "store.table",
                    format!(
                        "cannot reach DynamoDB in region {region}: {}; check AWS_REGION and AWS_ENDPOINT_URL",
                        remote("DescribeTable", e)
                    ),
                ),
            });
        }
        match self.get(port::unfinished_key()).await {
            Err(e) => {
                return Err(setting(
                    "store.table",
                    format!(
                        "the host's credentials may not read table {table} (dynamodb:GetItem): {e}; grant the host the \
                         policy in the README"
                    ),
                ));
            }
            Ok(Some(_)) => {
                return Err(setting(
                    "store.table",
                    format!(
                        "table {table} holds an import that did not finish; empty the table and run `sluice store \
                         import` again"
                    ),
                ));
            }
            Ok(None) => {}
        }
        let bucket = &self.bucket;
        if let Err(e) = self.s3.head_bucket().bucket(bucket).send().await {
            let status = e.raw_response().map(|r| r.status().as_u16());
            return Err(match status {
                Some(404) => setting(
                    "store.bucket",
                    format!(
                        "bucket {bucket} does not exist; create it (store.create_table = true does) or name an existing one"
                    ),
                ),
                Some(403) => setting(
                    "store.bucket",
                    format!(
                        "the host's credentials may not use bucket {bucket} (s3:ListBucket); grant the host the policy in the README"
                    ),
                ),
                _ => {
                    setting("store.bucket", format!("cannot reach S3 for bucket {bucket}: {}", remote("HeadBucket", e)))
                }
            });
        }
        Ok(())
    }

    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let output = self
            .db
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| remote("GetItem", e))?;
        Ok(output.item)
    }

    /// Every item of partition `pk` whose sort key starts with `prefix` (all of them when it is
    /// empty), in sort-key order.
    async fn query(&self, pk: &str, prefix: &str) -> Result<Vec<Item>, StoreError> {
        let mut query = self.db.query().table_name(&self.table).expression_attribute_values(":pk", s(pk));
        query = if prefix.is_empty() {
            query.key_condition_expression("pk = :pk")
        } else {
            query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix))
        };
        let mut pages = query.consistent_read(true).into_paginator().items().send();
        let mut items = Vec::new();
        while let Some(item) = pages.next().await {
            items.push(item.map_err(|e| remote("Query", e))?);
        }
        Ok(items)
    }
}
