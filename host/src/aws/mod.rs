//! AWS access through the official SDK: the only module that imports it.
//!
//! Credentials, region and endpoint come from the SDK's standard chain and variables
//! (`AWS_REGION`, `AWS_ENDPOINT_URL`, profiles, instance roles, …), so pointing Sluice at a local
//! emulator needs no Sluice-specific setting.
//!
//! The pieces:
//! - [`Aws`] is the handle the run pipeline holds: the base SDK configuration, one STS client and
//!   the shared caches. It is cheap to clone.
//! - `principal.rs` resolves the platform principal (STS GetCallerIdentity).
//! - `credentials.rs` assumes tenants' roles with their external ids, caches the credentials per
//!   (role, external id), refreshes them before they expire and keeps one Kinesis and one Secrets
//!   Manager client per region inside each [`Session`].
//! - `secrets.rs` reads API keys from Secrets Manager (plain or a JSON field) with a TTL cache.
//! - `kinesis.rs` delivers records with PutRecords: batching within Kinesis' limits, retrying only
//!   the entries that failed; `coalesce.rs` lets deliveries to one stream with one session at
//!   the same time share their calls.
//! - `error.rs` is the one [`AwsError`] and the classification of SDK errors.
//!
//! `aws` knows nothing of HTTP routes, storage or wasm.

mod coalesce;
mod credentials;
mod error;
mod kinesis;
mod principal;
mod secrets;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::hyper_014::HyperClientBuilder;

use crate::arn::{SecretArn, StreamArn};
use crate::records::Record;

pub use credentials::{RoleRef, Session, session_name, tenant_session_name};
pub use error::{AwsError, AwsErrorKind};
pub use kinesis::{Delivered, MAX_CALL_BYTES, MAX_CALL_RECORDS};
pub use principal::{platform_principal, principal_from_caller_arn};

/// Settings for AWS access (`[aws]` in the daemon's configuration).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// How long a secret read from Secrets Manager is reused before it is read again, in ms.
    pub secret_ttl_ms: u64,
    /// Assumed-role credentials are renewed this long before they expire, in ms.
    pub credentials_refresh_before_ms: u64,
    /// The DurationSeconds asked of AssumeRole (900 to the role's maximum session duration).
    pub session_duration_seconds: u32,
    /// PutRecords attempts per batch, the first one included, before delivery fails as transient.
    pub put_max_attempts: u32,
    /// The first retry waits up to this long (full jitter); each further retry doubles the bound.
    pub put_backoff_base_ms: u64,
    /// The bound on one retry's wait, in ms.
    pub put_backoff_max_ms: u64,
    /// The limit on one attempt of an STS, Secrets Manager or Kinesis call, in ms; an attempt
    /// that takes longer fails as transient.
    pub call_timeout_ms: u64,
    /// Whether deliveries to one stream with one session at the same time share PutRecords
    /// calls (see [`Aws::put_records_shared`]). Off, every delivery makes its own calls.
    pub put_coalesce: bool,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            secret_ttl_ms: 300_000,
            credentials_refresh_before_ms: 300_000,
            session_duration_seconds: 3600,
            put_max_attempts: 5,
            put_backoff_base_ms: 100,
            put_backoff_max_ms: 2000,
            call_timeout_ms: 30_000,
            put_coalesce: true,
        }
    }
}

/// The number of calls made to AWS (cache hits are not calls), for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AwsCounters {
    pub assume_role_calls: u64,
    pub get_secret_value_calls: u64,
    pub put_records_calls: u64,
}

/// AWS for the run pipeline: assume tenants' roles, read their secrets, deliver to their streams.
#[derive(Clone)]
pub struct Aws {
    inner: Arc<Inner>,
}

/// What every clone of an [`Aws`] shares.
struct Inner {
    base: SdkConfig,
    sts: aws_sdk_sts::Client,
    config: AwsConfig,
    sessions: credentials::SessionCache,
    secrets: secrets::SecretCache,
    lanes: coalesce::Lanes,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    assume_role: AtomicU64,
    get_secret_value: AtomicU64,
    put_records: AtomicU64,
}

impl Aws {
    /// Loads the SDK's standard chain (`aws_config::defaults(BehaviorVersion::latest())`):
    /// `AWS_REGION`, `AWS_ENDPOINT_URL`, credentials, profiles, …
    pub async fn from_env(config: AwsConfig) -> Self {
        Self::from_sdk_config(aws_config::defaults(BehaviorVersion::latest()).load().await, config)
    }

    /// Uses an already loaded SDK configuration: its credentials are the platform principal's,
    /// and its endpoint, HTTP client, timeouts and so on apply to every client built from it.
    pub fn from_sdk_config(base: SdkConfig, config: AwsConfig) -> Self {
        // Without an HTTP client in the base configuration, every SDK client built from it (one
        // per assumed-role session and region) would build its own HTTP client, TLS
        // configuration and connection pool: about 180 KiB and a connection per project that has
        // its own external id. One shared client keeps one pool for all of them.
        let base = match base.http_client() {
            Some(_) => base,
            None => base.into_builder().http_client(HyperClientBuilder::new().build_https()).build(),
        };
        let timeout = Duration::from_millis(config.call_timeout_ms.max(1));
        let mut sts = aws_sdk_sts::config::Builder::from(&base)
            .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(timeout).build());
        // STS needs some region; without one configured, the global endpoint's region serves.
        if base.region().is_none() {
            sts = sts.region(Region::new("us-east-1"));
        }
        let sts = aws_sdk_sts::Client::from_conf(sts.build());
        let inner = Inner {
            base,
            sts,
            config,
            sessions: credentials::SessionCache::default(),
            secrets: secrets::SecretCache::default(),
            lanes: coalesce::Lanes::default(),
            counters: Counters::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// AssumeRole with the external id, cached per (role_arn, external_id), refreshed before
    /// expiry, single-flight per key: concurrent callers for one key wait for one STS call.
    /// The session name is the one of the call that made the AssumeRole.
    pub async fn assume(&self, role: RoleRef<'_>) -> Result<Session, AwsError> {
        credentials::assume(&self.inner, role).await
    }

    /// GetSecretValue with the session's credentials, in the secret ARN's region; cached per
    /// (role, external id, secret arn) for `secret_ttl_ms`.
    ///
    /// A plain string secret is the key; with `json_field` the secret must be a JSON object and
    /// the field a string. Surrounding whitespace is trimmed, since it cannot be part of a header.
    pub async fn secret(
        &self,
        session: &Session,
        secret_arn: &SecretArn,
        json_field: Option<&str>,
    ) -> Result<String, AwsError> {
        secrets::secret(&self.inner, session, secret_arn, json_field).await
    }

    /// Drops a cached secret so that the next [`Aws::secret`] call reads it again (the pipeline
    /// calls this when the source answers 401 or 403, which usually means the key was rotated).
    pub fn forget_secret(&self, session: &Session, secret_arn: &SecretArn) {
        self.inner.secrets.forget(session, secret_arn);
    }

    /// PutRecords to the stream (by its ARN, with a client in the ARN's region) with the
    /// session's credentials. See [`Record`] for the limits and [`Delivered`] for the result.
    ///
    /// Delivery is at-least-once: entries that Kinesis reports as failed are sent again (only
    /// those), so a failure after a partial success, or a timeout, can duplicate records. Order
    /// within a partition key is best effort: a retried entry lands after the entries of its
    /// batch that succeeded the first time.
    pub async fn put_records(
        &self,
        session: &Session,
        stream_arn: &StreamArn,
        records: &[Record],
    ) -> Result<Delivered, AwsError> {
        kinesis::put_records(&self.inner, session, stream_arn, records).await
    }

    /// Like [`Aws::put_records`], but records that fit in one call (500 records, 5 MiB) share it
    /// with other deliveries to the same stream with the same session under way at the same
    /// time; each caller's records are accepted, retried or refused as if it had called alone,
    /// and are given back with the result.
    pub async fn put_records_shared(
        &self,
        session: &Session,
        stream_arn: &StreamArn,
        records: Vec<Record>,
    ) -> (Vec<Record>, Result<Delivered, AwsError>) {
        kinesis::put_records_coalesced(&self.inner, session, stream_arn, records).await
    }

    /// Calls made so far: AssumeRole (not cache hits), GetSecretValue and PutRecords.
    pub fn counters(&self) -> AwsCounters {
        let counters = &self.inner.counters;
        AwsCounters {
            assume_role_calls: counters.assume_role.load(Ordering::Relaxed),
            get_secret_value_calls: counters.get_secret_value.load(Ordering::Relaxed),
            put_records_calls: counters.put_records.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.config.call_timeout_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_has_documented_defaults_and_rejects_unknown_settings() {
        let config: AwsConfig = toml::from_str("put_max_attempts = 3").unwrap();
        assert_eq!(
            (config.put_max_attempts, config.secret_ttl_ms, config.session_duration_seconds),
            (3, 300_000, 3600)
        );
        assert!(toml::from_str::<AwsConfig>("put_max_attempt = 3").is_err());
    }
}
