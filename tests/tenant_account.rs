//! A tenant's side of AWS, on moto: a role in the tenant's account, and that account's streams
//! and secrets, set up and read back straight from moto with the role's credentials.
//!
//! moto's STS accepts AssumeRole for any role ARN and serves requests signed with the
//! credentials it issued from the role's account, so a role in account 111111111111 sees only
//! that account's streams.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::config::Credentials;

/// SDK settings for moto (or a proxy in front of it) in `eu-central-1`, with a bound on every
/// call so that a stuck emulator fails a test or the demo instead of stalling it.
pub async fn sdk_config(endpoint: &str, credentials: Credentials) -> SdkConfig {
    let timeouts =
        aws_config::timeout::TimeoutConfig::builder().operation_timeout(std::time::Duration::from_secs(30)).build();
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("eu-central-1"))
        .credentials_provider(credentials)
        .timeout_config(timeouts)
        .load()
        .await
}

/// SDK settings acting as `role_arn` on moto: moto issues credentials from the role's account,
/// so whatever they create or read lives in that account.
pub async fn role_config(endpoint: &str, role_arn: &str, session_name: &str) -> SdkConfig {
    let base = sdk_config(endpoint, Credentials::new("testing", "testing", None, None, "setup")).await;
    let assumed = aws_sdk_sts::Client::new(&base)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session_name)
        .send()
        .await
        .unwrap();
    let c = assumed.credentials().unwrap();
    let credentials =
        Credentials::new(c.access_key_id(), c.secret_access_key(), Some(c.session_token().into()), None, "role");
    sdk_config(endpoint, credentials).await
}

/// Clients acting as the tenant's role `sluice-delivery` in one account.
pub struct TenantAccount {
    pub account: String,
    pub role_arn: String,
    /// `role_arn`, typed as a project holds it.
    pub role: sluice::arn::RoleArn,
    pub kinesis: aws_sdk_kinesis::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl TenantAccount {
    /// Assumes `arn:aws:iam::<account>:role/sluice-delivery` on moto at `endpoint`.
    pub async fn assume(endpoint: &str, account: &str) -> Self {
        let role_arn = format!("arn:aws:iam::{account}:role/sluice-delivery");
        let tenant = role_config(endpoint, &role_arn, "tenant-setup").await;
        Self {
            account: account.to_string(),
            role: sluice::arn::RoleArn::parse(&role_arn).expect("a valid role ARN"),
            role_arn,
            kinesis: aws_sdk_kinesis::Client::new(&tenant),
            secrets: aws_sdk_secretsmanager::Client::new(&tenant),
        }
    }

    /// Creates a one-shard stream and returns its ARN.
    pub async fn stream(&self, name: &str) -> String {
        self.stream_with_shards(name, 1).await
    }

    /// Creates a stream with `shards` shards and returns its ARN.
    pub async fn stream_with_shards(&self, name: &str, shards: i32) -> String {
        self.kinesis.create_stream().stream_name(name).shard_count(shards).send().await.unwrap();
        format!("arn:aws:kinesis:eu-central-1:{}:stream/{name}", self.account)
    }

    /// Creates a secret and returns its ARN. The value is registered as a secret that the
    /// daemon must never repeat (see [`crate::register_secret`]).
    pub async fn secret(&self, name: &str, value: &str) -> String {
        crate::register_secret(value);
        let created = self.secrets.create_secret().name(name).secret_string(value).send().await.unwrap();
        created.arn().unwrap().to_string()
    }

    /// Every record in the stream, oldest first: (partition key, data as text).
    pub async fn read(&self, stream_arn: &str) -> Vec<(String, String)> {
        let mut tail = crate::stream_tail::Tail::open(self.kinesis.clone(), stream_arn).await.unwrap();
        let mut records = Vec::new();
        loop {
            let arrived = tail.poll().await.unwrap();
            if arrived.is_empty() {
                return records;
            }
            records.extend(arrived.into_iter().map(|r| (r.partition_key, r.data)));
        }
    }
}
