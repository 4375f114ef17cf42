//! What a tenant sends to create or change a project, and its validation. Every rule says what
//! was wrong and how to fix it; nothing is stored until all of them pass.

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::calendar::{Schedule, Timezone};
use crate::store::{ApiKeySource, Quotas, Source, Target, Trust};

/// The body of `POST /v1/projects`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectInput {
    /// A display name, 1 to 100 characters without control characters.
    #[schema(min_length = 1, max_length = 100, examples("weather-berlin"))]
    pub name: String,
    /// An EventBridge schedule expression: `rate(5 minutes)`, `cron(0 12 * * ? *)`.
    #[serde(deserialize_with = "schedule_field")]
    #[schema(value_type = String, examples("rate(5 minutes)"))]
    pub schedule: Schedule,
    /// The IANA timezone for `cron()` schedules (default `UTC`).
    #[serde(default = "Timezone::utc")]
    #[schema(value_type = String, default = "UTC", examples("Europe/Berlin"))]
    pub timezone: Timezone,
    pub source: Source,
    /// The id of one of the tenant's plugins: the project runs this version until it is changed.
    /// Give this or `plugin`.
    #[serde(default)]
    pub plugin_id: Option<String>,
    /// The name of one of the tenant's plugins: the project runs the newest version uploaded
    /// under it, and moves to each version uploaded under it later. Give this or `plugin_id`.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100, examples("json-split"))]
    pub plugin: Option<String>,
    /// Settings the plugin reads: at most 100, names up to 100 characters, values up to 4096 bytes.
    #[serde(default)]
    pub plugin_settings: BTreeMap<String, String>,
    pub target: Target,
    /// Most pages one run may fetch (default 10, at most 100).
    #[serde(default = "default_max_pages")]
    #[schema(default = 10, minimum = 1, maximum = 100)]
    pub max_pages: u32,
    /// Whose external id the role must trust: `tenant` (default; the tenant's, from `GET /v1/me`)
    /// or `project` (one of the project's own, to revoke it alone).
    #[serde(default)]
    pub trust: Trust,
}

/// A schedule, with the field named when it does not parse.
fn schedule_field<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Schedule, D::Error> {
    let expr = String::deserialize(deserializer)?;
    Schedule::parse(&expr).map_err(|e| serde::de::Error::custom(format!("`schedule`: {e}")))
}

fn optional_schedule_field<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Schedule>, D::Error> {
    let Some(expr) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
    Schedule::parse(&expr).map(Some).map_err(|e| serde::de::Error::custom(format!("`schedule`: {e}")))
}

fn default_max_pages() -> u32 {
    10
}

/// The body of `PATCH /v1/projects/{id}`: any subset of the fields of `ProjectInput`. An absent
/// or `null` field keeps its current value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "optional_schedule_field")]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Schedule>,
    #[schema(value_type = Option<String>)]
    pub timezone: Option<Timezone>,
    pub source: Option<Source>,
    /// Pins one version: the project stops following a name.
    pub plugin_id: Option<String>,
    /// Follows a name's newest version from now on, in place of a pinned id.
    #[schema(min_length = 1, max_length = 100)]
    pub plugin: Option<String>,
    pub plugin_settings: Option<BTreeMap<String, String>>,
    pub target: Option<Target>,
    #[schema(minimum = 1, maximum = 100)]
    pub max_pages: Option<u32>,
    /// Switching trust gives the project the other external id, and it is `pending` until the
    /// role trusts that one.
    pub trust: Option<Trust>,
}

impl ProjectPatch {
    /// The project's current input with this patch applied.
    pub fn apply(self, mut input: ProjectInput) -> ProjectInput {
        input.name = self.name.unwrap_or(input.name);
        input.schedule = self.schedule.unwrap_or(input.schedule);
        input.timezone = self.timezone.unwrap_or(input.timezone);
        input.source = self.source.unwrap_or(input.source);
        // One of the two replaces whatever the project had; both at once fail validation.
        if self.plugin_id.is_some() || self.plugin.is_some() {
            input.plugin_id = self.plugin_id;
            input.plugin = self.plugin;
        }
        input.plugin_settings = self.plugin_settings.unwrap_or(input.plugin_settings);
        input.target = self.target.unwrap_or(input.target);
        input.max_pages = self.max_pages.unwrap_or(input.max_pages);
        input.trust = self.trust.unwrap_or(input.trust);
        input
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message)
}

/// Header names the host sets itself, which a project must not override.
const RESERVED_HEADERS: [&str; 5] = ["host", "content-length", "transfer-encoding", "connection", "upgrade"];

impl ProjectInput {
    /// Checks what deserializing could not (quotas, plugins, settings, headers) and normalizes the
    /// method. The schedule, time zone, URL and ARNs were parsed as the body was read.
    /// The plugin is checked apart, against the store.
    pub fn validate(mut self, quotas: &Quotas) -> Result<Self, ApiError> {
        check_text("name", &self.name, 100)?;
        if let Some(interval) = self.schedule.min_interval()
            && interval.as_secs() < quotas.min_interval_seconds
        {
            return Err(ApiError::quota_exceeded(format!(
                "`schedule` fires every {} s at its most frequent, more often than this tenant's min_interval_seconds quota of {} s; choose a slower schedule or ask the operator",
                interval.as_secs(),
                quotas.min_interval_seconds
            )));
        }
        if self.schedule.next_after(jiff::Timestamp::now(), self.timezone.zone()).is_none() {
            return Err(invalid(format!(
                "`schedule` {} never fires again; choose one with future times",
                self.schedule
            )));
        }
        self.source = check_source(self.source)?;
        if self.plugin_settings.len() > 100 {
            return Err(invalid("`plugin_settings` has more than 100 entries; keep settings small"));
        }
        for (name, value) in &self.plugin_settings {
            check_text("plugin_settings name", name, 100)?;
            if value.len() > 4096 {
                return Err(invalid(format!("`plugin_settings.{name}` is longer than 4096 bytes")));
            }
        }
        if !(1..=100).contains(&self.max_pages) {
            return Err(invalid("`max_pages` must be between 1 and 100"));
        }
        Ok(self)
    }
}

fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.chars().count() > max_chars || value.chars().any(char::is_control) {
        return Err(invalid(format!("`{field}` must be 1 to {max_chars} characters without control characters")));
    }
    Ok(())
}

fn check_source(mut source: Source) -> Result<Source, ApiError> {
    source.method = source.method.to_ascii_uppercase();
    if !matches!(source.method.as_str(), "GET" | "POST") {
        return Err(invalid(format!("`source.method` is {}; use GET or POST", source.method)));
    }
    if source.headers.len() > 50 {
        return Err(invalid("`source.headers` has more than 50 entries"));
    }
    for (name, value) in &source.headers {
        check_header_name(&format!("source.headers name `{name}`"), name)?;
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(invalid(format!("`source.headers.{name}` is set by the host; remove it")));
        }
        if value.len() > 4096 || value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(invalid(format!(
                "`source.headers.{name}` must be at most 4096 bytes without line breaks or control characters"
            )));
        }
    }
    if let Some(key) = source.api_key.take() {
        source.api_key = Some(check_api_key(key)?);
    }
    Ok(source)
}

fn check_header_name(field: &str, name: &str) -> Result<(), ApiError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || name.len() > 256 || !name.chars().all(token) {
        return Err(invalid(format!("{field} is not a valid HTTP header name; use letters, digits and '-'")));
    }
    Ok(())
}

fn check_api_key(mut key: ApiKeySource) -> Result<ApiKeySource, ApiError> {
    match (&key.header, &key.query_param) {
        (Some(_), Some(_)) => {
            return Err(invalid("`source.api_key` sets both `header` and `query_param`; choose one"));
        }
        (None, None) => key.header = Some("x-api-key".into()),
        _ => {}
    }
    if let Some(header) = &key.header {
        check_header_name("`source.api_key.header`", header)?;
    }
    if let Some(param) = &key.query_param {
        check_text("source.api_key.query_param", param, 100)?;
    }
    if key.prefix.len() > 256 || key.prefix.chars().any(char::is_control) {
        return Err(invalid("`source.api_key.prefix` must be at most 256 bytes without control characters"));
    }
    if let Some(field) = &key.json_field {
        check_text("source.api_key.json_field", field, 256)?;
    }
    Ok(key)
}
