//! `sluice serve` configuration: a TOML file (`--config`) overlaid with `SLUICE_*` environment
//! variables. Every field is documented here because this file is the configuration reference.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::aws::AwsConfig;
use crate::run::RunConfig;
use crate::runtime::RuntimeConfig;
use crate::scheduler::SchedulerConfig;
use crate::source::SourceConfig;
use crate::store::{BackendKind, StoreConfig};

/// The daemon's settings. Unknown keys are errors, so that a typo never silently falls back to a
/// default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP API listens on (`SLUICE_LISTEN`).
    pub listen: SocketAddr,
    /// Directory for the database and the compiled-plugin cache (`SLUICE_DATA_DIR`).
    pub data_dir: PathBuf,
    /// The operator's bearer token (`SLUICE_ADMIN_TOKEN`), at least 16 characters. Required.
    pub admin_token: Option<String>,
    /// Allow sources on loopback, private, link-local and metadata addresses
    /// (`SLUICE_ALLOW_PRIVATE_SOURCES`). Off by default; tests and the demo turn it on.
    pub allow_private_sources: bool,
    /// The AWS principal tenants' roles must trust (`SLUICE_PLATFORM_PRINCIPAL_ARN`). When unset,
    /// the daemon asks STS GetCallerIdentity at start-up.
    pub platform_principal_arn: Option<String>,
    /// Largest JSON request body accepted, in bytes.
    pub max_json_bytes: u64,
    /// Largest plugin upload accepted from any tenant, in bytes; tiers may allow less. The
    /// default fits a Python plugin built with componentize-py (about 18 MB).
    pub max_plugin_bytes: u64,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace_ms: u64,
    /// The component runtime: concurrency, memory ceiling, per-call limits.
    pub runtime: RuntimeConfig,
    /// The scheduler: jitter window and concurrency caps.
    pub scheduler: SchedulerConfig,
    /// Fetching sources: timeouts, body cap, redirects. `allow_private_sources` above also
    /// sets `source.allow_private`.
    pub source: SourceConfig,
    /// AWS: secret cache lifetime, credential refresh, PutRecords retries.
    pub aws: AwsConfig,
    /// Runs: when a project turns `failing`, its backoff, outbox retries.
    pub run: RunConfig,
    /// Where the data lives: the embedded store in `data_dir` (default) or the shared store on
    /// DynamoDB and S3.
    pub store: StoreConfig,
    /// Hosts of a shared store sharing its projects by leases.
    pub cluster: crate::cluster::ClusterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./sluice-data"),
            admin_token: None,
            allow_private_sources: false,
            platform_principal_arn: None,
            max_json_bytes: 1 << 20,
            max_plugin_bytes: 32 << 20,
            shutdown_grace_ms: 10_000,
            runtime: RuntimeConfig::default(),
            scheduler: SchedulerConfig::default(),
            source: SourceConfig::default(),
            aws: AwsConfig::default(),
            run: RunConfig::default(),
            store: StoreConfig::default(),
            cluster: crate::cluster::ClusterConfig::default(),
        }
    }
}

/// A setting that cannot be used, named so that the operator can fix it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    /// The file key or environment variable at fault.
    pub setting: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

fn error(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { setting: setting.to_string(), message: message.into() }
}

/// Shortest operator token accepted: shorter ones are guessable.
const MIN_ADMIN_TOKEN_CHARS: usize = 16;

impl Config {
    /// Reads the file (if any), applies the environment, and checks the result.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let config = Self::read(file, env)?;
        config.check()?;
        Ok(config)
    }

    /// Where the store lives inside `data_dir` (beside the compiled plugin cache).
    pub fn database_dir(&self) -> PathBuf {
        self.data_dir.join("db")
    }

    /// Like [`Config::load`], without requiring what only `sluice serve` needs (the admin token,
    /// the platform principal): for commands that work on the store alone.
    pub fn read(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let setting = path.display().to_string();
                let text =
                    std::fs::read_to_string(path).map_err(|e| error(&setting, format!("cannot read it: {e}")))?;
                toml::from_str(&text).map_err(|e| error(&setting, e.message().to_string()))?
            }
            None => Config::default(),
        };
        if let Some(value) = env("SLUICE_LISTEN") {
            config.listen = value.parse().map_err(|_| {
                error("SLUICE_LISTEN", format!("`{value}` is not an address; use host:port such as 127.0.0.1:8080"))
            })?;
        }
        if let Some(value) = env("SLUICE_DATA_DIR") {
            config.data_dir = PathBuf::from(value);
        }
        if let Some(value) = env("SLUICE_ADMIN_TOKEN") {
            config.admin_token = Some(value);
        }
        if let Some(value) = env("SLUICE_PLATFORM_PRINCIPAL_ARN") {
            config.platform_principal_arn = Some(value);
        }
        if let Some(value) = env("SLUICE_ALLOW_PRIVATE_SOURCES") {
            config.allow_private_sources = match value.as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                _ => {
                    return Err(error(
                        "SLUICE_ALLOW_PRIVATE_SOURCES",
                        format!("`{value}` is not a boolean; use true or false"),
                    ));
                }
            };
        }
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        match &self.admin_token {
            None => {
                return Err(error(
                    "SLUICE_ADMIN_TOKEN",
                    "not set; set it to a random secret of at least 16 characters",
                ));
            }
            Some(token) if token.chars().count() < MIN_ADMIN_TOKEN_CHARS => {
                return Err(error("SLUICE_ADMIN_TOKEN", "shorter than 16 characters; use a longer random secret"));
            }
            Some(_) => {}
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(error("SLUICE_DATA_DIR", "empty; set it to a directory for the database"));
        }
        if let Some(arn) = &self.platform_principal_arn
            && !(arn.starts_with("arn:") && arn.contains(":iam::"))
        {
            return Err(error(
                "SLUICE_PLATFORM_PRINCIPAL_ARN",
                format!("`{arn}` is not an IAM role or user ARN; use one like arn:aws:iam::123456789012:role/sluice"),
            ));
        }
        if self.max_json_bytes == 0 {
            return Err(error("max_json_bytes", "must be at least 1"));
        }
        let limits = &self.runtime.limits;
        if limits.deadline_ms == 0 {
            return Err(error("runtime.limits.deadline_ms", "must be at least 1"));
        }
        if limits.wall_deadline_ms.is_some_and(|wall| wall < limits.deadline_ms) {
            return Err(error(
                "runtime.limits.wall_deadline_ms",
                "is less than runtime.limits.deadline_ms, so no call could use its CPU time; raise this or lower that",
            ));
        }
        if limits.memory_bytes > self.runtime.max_memory_bytes {
            return Err(error(
                "runtime.limits.memory_bytes",
                "exceeds runtime.max_memory_bytes; raise that or lower this",
            ));
        }
        if self.runtime.memory_budget_bytes < self.runtime.max_memory_bytes {
            return Err(error(
                "runtime.memory_budget_bytes",
                "is less than runtime.max_memory_bytes, so a call could wait forever; raise this or lower that",
            ));
        }
        if self.runtime.max_concurrent_calls == 0 {
            return Err(error("runtime.max_concurrent_calls", "must be at least 1"));
        }
        let cluster = &self.cluster;
        if cluster.enabled && self.store.backend != BackendKind::Dynamodb {
            return Err(error(
                "cluster.enabled",
                "hosts share projects through the shared store; set [store] backend = \"dynamodb\" or turn the cluster off",
            ));
        }
        if !(1..=10_000).contains(&cluster.partitions) {
            return Err(error("cluster.partitions", "must be between 1 and 10000"));
        }
        if cluster.lease_ms < 300 {
            return Err(error("cluster.lease_ms", "must be at least 300; hosts renew every third of it"));
        }
        if self.store.backend == BackendKind::Dynamodb {
            for (setting, value, what) in [
                ("store.table", &self.store.table, "the DynamoDB table"),
                ("store.bucket", &self.store.bucket, "the S3 bucket for plugin components"),
            ] {
                if value.as_deref().is_none_or(str::is_empty) {
                    return Err(error(setting, format!("required with store.backend = \"dynamodb\"; name {what}")));
                }
            }
        }
        Ok(())
    }

    /// The grace period for in-flight requests at shutdown.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    const TOKEN: (&str, &str) = ("SLUICE_ADMIN_TOKEN", "0123456789abcdef");

    #[test]
    fn environment_overrides_defaults() {
        let config = Config::load(
            None,
            env(&[TOKEN, ("SLUICE_LISTEN", "127.0.0.1:0"), ("SLUICE_ALLOW_PRIVATE_SOURCES", "true")]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 0);
        assert!(config.allow_private_sources);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = Config::load(None, env(&[])).unwrap_err();
        assert_eq!(e.setting, "SLUICE_ADMIN_TOKEN");
        let e = Config::load(None, env(&[TOKEN, ("SLUICE_LISTEN", "nowhere")])).unwrap_err();
        assert_eq!(e.to_string(), "SLUICE_LISTEN: `nowhere` is not an address; use host:port such as 127.0.0.1:8080");
        let e = Config::load(None, env(&[("SLUICE_ADMIN_TOKEN", "short")])).unwrap_err();
        assert!(e.message.contains("16 characters"));
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nlisten_port = 1\n").unwrap();
        let e = Config::load(Some(&path), env(&[TOKEN])).unwrap_err();
        assert!(e.message.contains("listen_port"), "{e}");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\n[runtime.limits]\ndeadline_ms = 500\n").unwrap();
        let config = Config::load(Some(&path), env(&[TOKEN])).unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.runtime.limits.deadline_ms, 500);
        assert_eq!(config.runtime.limits.wall_deadline(), Duration::from_millis(2_500));
    }

    #[test]
    fn a_wall_clock_backstop_below_the_cpu_deadline_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, "[runtime.limits]\ndeadline_ms = 2000\nwall_deadline_ms = 1000\n").unwrap();
        let e = Config::load(Some(&path), env(&[TOKEN])).unwrap_err();
        assert_eq!(e.setting, "runtime.limits.wall_deadline_ms");
        std::fs::write(&path, "[runtime.limits]\ndeadline_ms = 2000\nwall_deadline_ms = 30000\n").unwrap();
        let config = Config::load(Some(&path), env(&[TOKEN])).unwrap();
        assert_eq!(config.runtime.limits.wall_deadline(), Duration::from_secs(30));
    }
}
