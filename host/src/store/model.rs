//! The records the store keeps, in the shape the API shows them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::arn::{RoleArn, SecretArn, StreamArn};
use crate::calendar::{Schedule, Timezone};
use crate::source::SourceUrl;

/// A tenant's service tier, which sets its default quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Free,
    Standard,
    Premium,
}

impl Tier {
    /// The quotas a tenant of this tier has unless the operator overrides them.
    pub fn quotas(self) -> Quotas {
        const KIB: u64 = 1 << 10;
        const MIB: u64 = 1 << 20;
        match self {
            Tier::Free => Quotas {
                max_projects: 5,
                max_plugins: 5,
                min_interval_seconds: 300,
                max_plugin_bytes: 32 * MIB,
                max_state_bytes: 64 * KIB,
                max_outbox_bytes: 64 * MIB,
                max_plugin_memory_bytes: 128 * MIB,
            },
            Tier::Standard => Quotas {
                max_projects: 100,
                max_plugins: 50,
                min_interval_seconds: 60,
                max_plugin_bytes: 32 * MIB,
                max_state_bytes: 256 * KIB,
                max_outbox_bytes: 1024 * MIB,
                max_plugin_memory_bytes: 256 * MIB,
            },
            Tier::Premium => Quotas {
                max_projects: 10_000,
                max_plugins: 500,
                min_interval_seconds: 1,
                max_plugin_bytes: 64 * MIB,
                max_state_bytes: MIB,
                max_outbox_bytes: 8192 * MIB,
                max_plugin_memory_bytes: 512 * MIB,
            },
        }
    }
}

/// Whether a tenant may use the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    #[default]
    Active,
    /// Keys answer 403 and projects do not run.
    Disabled,
}

/// Limits on what a tenant may create and how often its projects may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Projects the tenant may have.
    pub max_projects: u32,
    /// Plugins the tenant may have.
    pub max_plugins: u32,
    /// The shortest schedule interval allowed, in seconds.
    pub min_interval_seconds: u64,
    /// The largest plugin upload, in bytes.
    pub max_plugin_bytes: u64,
    /// The largest state a plugin may return, in bytes (64 KiB, 256 KiB and 1 MiB by tier). A run
    /// whose plugin returns more fails in stage `transform`, and its state does not advance.
    pub max_state_bytes: u64,
    /// The most bytes of records and pending states all of the tenant's projects together may
    /// have waiting for Kinesis (64 MiB, 1 GiB and 8 GiB by tier). While the outbox holds more, new
    /// runs do not fetch; parked entries count too.
    pub max_outbox_bytes: u64,
    /// The most plugin linear memory the tenant's calls (runs and dry runs) may hold at once, in
    /// bytes (128 MiB, 256 MiB and 512 MiB by tier), out of the host's
    /// `runtime.memory_budget_bytes`, which bounds it. A call that would take the tenant past it
    /// fails naming this quota; other tenants' calls are unaffected.
    pub max_plugin_memory_bytes: u64,
}

/// Per-tenant overrides of the tier's quotas; an absent field keeps the tier's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 2147483647)]
    pub max_projects: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 2147483647)]
    pub max_plugins: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9223372036854775807_i64)]
    pub min_interval_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9223372036854775807_i64)]
    pub max_plugin_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9223372036854775807_i64)]
    pub max_state_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9223372036854775807_i64)]
    pub max_outbox_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9223372036854775807_i64)]
    pub max_plugin_memory_bytes: Option<u64>,
}

impl QuotaOverrides {
    /// The tier's quotas with these overrides applied.
    pub fn apply(&self, tier: Tier) -> Quotas {
        let base = tier.quotas();
        Quotas {
            max_projects: self.max_projects.unwrap_or(base.max_projects),
            max_plugins: self.max_plugins.unwrap_or(base.max_plugins),
            min_interval_seconds: self.min_interval_seconds.unwrap_or(base.min_interval_seconds),
            max_plugin_bytes: self.max_plugin_bytes.unwrap_or(base.max_plugin_bytes),
            max_state_bytes: self.max_state_bytes.unwrap_or(base.max_state_bytes),
            max_outbox_bytes: self.max_outbox_bytes.unwrap_or(base.max_outbox_bytes),
            max_plugin_memory_bytes: self.max_plugin_memory_bytes.unwrap_or(base.max_plugin_memory_bytes),
        }
    }
}

/// A customer of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// `ten_` and 16 hex digits.
    pub id: String,
    pub name: String,
    pub tier: Tier,
    pub status: TenantStatus,
    /// The operator's overrides of the tier's quotas.
    pub quota_overrides: QuotaOverrides,
    /// When the tenant was created, RFC 3339.
    pub created_at: String,
    /// SHA-256 (hex) of the tenant's current API key. Stored, never shown by the API.
    pub key_hash: String,
    /// The `sts:ExternalId` the tenant's roles require of the platform principal for projects
    /// with tenant trust: one per tenant, as AWS recommends per customer, so one stack's role
    /// serves all of them. Tenants stored before it existed get one when the store opens.
    #[serde(default)]
    pub external_id: String,
}

impl Tenant {
    /// The quotas in force: the tier's, with the operator's overrides.
    pub fn quotas(&self) -> Quotas {
        self.quota_overrides.apply(self.tier)
    }
}

/// An uploaded plugin, as its owner sees it. The same bytes uploaded by two tenants are stored
/// once, but each tenant has its own record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PluginMeta {
    /// `sha256:` and the hex digest of the component's bytes.
    pub id: String,
    /// The name given at upload.
    pub name: String,
    /// The component's size in bytes.
    pub size_bytes: u64,
    /// When this tenant uploaded it, RFC 3339.
    pub created_at: String,
}

/// Where a project's status stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProjectStatus {
    /// Waiting for the first successful AssumeRole: the tenant stack does not trust the platform
    /// principal with this project's external id yet.
    #[default]
    Pending,
    /// Running on schedule.
    Active,
    /// Several runs in a row failed; the schedule is backing off.
    Failing,
    /// Paused by the tenant.
    Paused,
}

/// How the host adds the tenant's API key, read from Secrets Manager, to each request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySource {
    /// The secret holding the key: a plain string, or JSON with the key at `json_field`.
    #[schema(value_type = String)]
    pub secret_arn: SecretArn,
    /// The request header to put the key in (default `x-api-key`); `null` when `query_param` is
    /// used instead.
    #[serde(default)]
    pub header: Option<String>,
    /// The query parameter to put the key in, instead of a header.
    #[serde(default)]
    pub query_param: Option<String>,
    /// Text before the key, such as `Bearer `.
    #[serde(default)]
    pub prefix: String,
    /// When the secret is JSON, the top-level field that holds the key.
    #[serde(default)]
    pub json_field: Option<String>,
}

/// The external API a project polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// An absolute http or https URL, at most 2048 characters, without credentials.
    #[schema(value_type = String)]
    pub url: SourceUrl,
    /// `GET` (default) or `POST`.
    #[serde(default = "default_method")]
    #[schema(default = "GET")]
    pub method: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Where the API key comes from, if the source needs one.
    #[serde(default)]
    pub api_key: Option<ApiKeySource>,
}

fn default_method() -> String {
    "GET".into()
}

/// Where a project's records go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The tenant's Kinesis stream.
    #[schema(value_type = String)]
    pub stream_arn: StreamArn,
    /// The tenant's role that Sluice assumes to read the secret and write to the stream.
    #[schema(value_type = String)]
    pub role_arn: RoleArn,
}

/// Whose external id a project's role must trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// The tenant's external id (`GET /v1/me`), shared by the tenant's projects with this trust:
    /// one stack update serves them all, and projects on the same role share one assumed-role
    /// session. The default.
    #[default]
    Tenant,
    /// An external id of the project's own, so that the tenant can revoke this project alone by
    /// removing its id from the role's trust policy; every such project needs a stack update.
    Project,
}

impl Trust {
    /// The trust of a project stored before trust was a choice: its own external id.
    fn stored_default() -> Self {
        Trust::Project
    }
}

/// What the tenant puts into its stack so that the role trusts this project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Onboarding {
    /// The AWS principal Sluice runs as; the role's trust policy must allow it.
    pub platform_principal_arn: String,
    /// The `sts:ExternalId` the trust policy must require (the confused-deputy guard).
    pub external_id: String,
}

/// One polled resource of a tenant. Its schedule, time zone, source URL and ARNs are parsed
/// where they enter and kept parsed: a project that loads is a valid one, and nothing parses them
/// again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    /// `prj_` and 16 hex digits.
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    /// An EventBridge schedule expression, normalized.
    #[schema(value_type = String)]
    pub schedule: Schedule,
    /// The IANA timezone `cron()` schedules are evaluated in.
    #[schema(value_type = String)]
    pub timezone: Timezone,
    pub source: Source,
    /// The plugin version runs use.
    pub plugin_id: String,
    /// The plugin name the project follows: each version uploaded under it becomes the project's
    /// `plugin_id`. Absent when the project pins `plugin_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    pub plugin_settings: std::collections::BTreeMap<String, String>,
    pub target: Target,
    /// Most pages one run may fetch.
    pub max_pages: u32,
    /// Whose external id the role must trust: the tenant's (the default) or the project's own.
    #[serde(default = "Trust::stored_default")]
    pub trust: Trust,
    pub status: ProjectStatus,
    /// Why the project has its status, and what the tenant should do about it.
    pub status_message: String,
    /// Runs that failed in a row since the last success; `failing` starts at the operator's
    /// threshold (3 by default).
    #[serde(default)]
    pub consecutive_failures: u32,
    /// While `failing`, the project is not run again before this time (RFC 3339): its schedule
    /// backs off exponentially, up to the operator's maximum.
    #[serde(default)]
    pub backoff_until: Option<String>,
    pub onboarding: Onboarding,
    pub created_at: String,
    pub updated_at: String,
}
