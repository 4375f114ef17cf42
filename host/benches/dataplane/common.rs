//! What the `dataplane` and `hostile` bench binaries share at their root: the names their modules
//! take with `use super::*`, the fake AWS resources' names, and where the plugins are.

pub use std::collections::{BTreeMap, HashMap};
pub use std::io::{BufRead, BufReader, Write};
pub use std::path::PathBuf;
pub use std::process::{Command, Stdio};
pub use std::sync::Arc;
pub use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
pub use std::time::{Duration, Instant};

pub use axum::body::Bytes;
pub use axum::extract::State;
pub use axum::http::{HeaderMap, StatusCode, header};
pub use axum::response::{IntoResponse, Response};
pub use axum::routing::{get, post};
pub use jiff::Timestamp;
pub use serde::{Deserialize, Serialize};
pub use serde_json::{Value, json};
pub use sluice::aws::{Aws, AwsConfig};
pub use sluice::metrics::Metrics;
pub use sluice::run::{DataPlane, RunConfig};
pub use sluice::runtime::{Runtime, RuntimeConfig};
pub use sluice::scheduler::{Clock, ProjectKey, Scheduler, SchedulerConfig};
pub use sluice::source::{Fetcher, SourceConfig};
pub use sluice::store::{
    CreatePlugin, CreateProject, Onboarding, PluginMeta, Project, ProjectStatus, RunOutcome, Source, Stage, Store,
    Target, Tier, Trigger, Trust, now_rfc3339, random_hex,
};

pub const STREAM_ARN: &str = "arn:aws:kinesis:eu-central-1:123456789012:stream/bench";
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/bench";
/// Linux reports process CPU time in ticks of 1/100 s (`USER_HZ`) on every architecture we run on.
pub const TICKS_PER_SECOND: f64 = 100.0;

pub fn plugin_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("SLUICE_PLUGINS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-wasip2/release")
    });
    dir.join(format!("{name}.wasm"))
}
