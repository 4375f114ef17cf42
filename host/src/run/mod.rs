//! The run pipeline: the one place where `scheduler`, `source`, `runtime`, `aws` and `store` meet.
//!
//! For every tick the scheduler fires, a run goes: assume the tenant's role → read the API key
//! from the tenant's secret → `prepare` → fetch → `transform` → next page (up to the project's
//! page cap) → `PutRecords` → on full acceptance, commit the state. Records Kinesis does not take
//! at once, or that must wait behind older ones, go into the durable outbox with the pending state
//! instead; the drainer delivers them, and one transaction clears an entry and commits its state. The run is
//! then recorded in the project's history, the tenant's usage and the metrics, and the project's
//! status follows from it (`status.rs`).
//!
//! - `pipeline.rs`: one run, stage by stage.
//! - `deliver.rs`: delivering a project's outbox entries in order, parking entries Kinesis refuses
//!   for good, and the drainer that retries what a run could not deliver.
//! - `failure.rs`: why a run failed: its stage, a message for the tenant, and who can fix it.
//! - `status.rs`: `pending` → `active` → `failing` and back, with exponential backoff.
//! - `control.rs`: what the API calls when projects and tenants change.
//! - `membership.rs`: in a cluster, the rounds that keep this host's leases, the hand-over of
//!   partitions it gains or loses, and the change feed from the other hosts' APIs.
//! - `redact.rs`: keeps the source's API key out of failure messages that quote the source.
//! - `log.rs`: the bounded tail of a run's plugin log lines and the host's notes, for its history.
//!
//! The pipeline holds no state of its own that matters across a crash: the outbox, the committed
//! state and the run history are all in the store.

mod control;
mod deliver;
mod failure;
mod log;
mod membership;
mod pipeline;
mod redact;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

pub use control::Control;

use crate::aws::Aws;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::scheduler::{Outcome, Scheduler, Tick};
use crate::source::Fetcher;
use crate::store::Store;

/// How runs behave when things fail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Consecutive failed runs after which a project turns `failing` and its schedule backs off.
    pub failing_after_failures: u32,
    /// The longest a failing project's schedule backs off, in milliseconds.
    pub max_backoff_ms: u64,
    /// How often undelivered records are retried when no run of their project is due.
    pub outbox_retry_ms: u64,
    /// Runs of one project whose records may wait for Kinesis before new runs stop fetching.
    pub max_outbox_entries_per_project: usize,
    /// How long start-up may spend delivering the outbox before the scheduler starts anyway.
    pub startup_delivery_ms: u64,
    /// The most records one run may deliver, all pages together; a run whose plugin returns
    /// more fails in stage `transform` and stores nothing.
    pub max_run_records: u64,
    /// The most bytes of records (data plus partition keys) one run may deliver, all pages
    /// together; a run whose plugin returns more fails in stage `transform` and stores nothing.
    pub max_run_bytes: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            failing_after_failures: 3,
            max_backoff_ms: 3_600_000,
            outbox_retry_ms: 5_000,
            max_outbox_entries_per_project: 100,
            startup_delivery_ms: 60_000,
            max_run_records: 100_000,
            max_run_bytes: 64 << 20,
        }
    }
}

/// Everything the data plane is built from.
pub struct Parts {
    /// This host's membership of a cluster, if hosts share the store's projects by leases.
    pub cluster: Option<crate::cluster::Cluster>,
    pub store: Store,
    pub runtime: Runtime,
    pub aws: Aws,
    pub fetcher: Fetcher,
    pub metrics: Arc<Metrics>,
    pub scheduler: Scheduler,
    pub config: RunConfig,
}

/// The data plane: runs projects when the scheduler fires them. Cheap to clone.
#[derive(Clone)]
pub struct DataPlane {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Option<crate::cluster::Cluster>,
    /// Runs started, for the cluster's report of this host's polls per second.
    started_runs: std::sync::atomic::AtomicU64,
    store: Store,
    runtime: Runtime,
    aws: Aws,
    fetcher: Fetcher,
    metrics: Arc<Metrics>,
    scheduler: Scheduler,
    config: RunConfig,
    /// One lock per project with undelivered records (see `deliver.rs`).
    delivery_locks: deliver::DeliveryLocks,
    /// The kind of failure the drainer last logged per project it could not deliver, and when (see
    /// `deliver.rs`), so that a long outage is logged once a minute per project, not at every
    /// retry.
    drain_logged: Mutex<HashMap<(String, String), (String, std::time::Instant)>>,
}

impl DataPlane {
    pub fn new(parts: Parts) -> Self {
        Self {
            inner: Arc::new(Inner {
                cluster: parts.cluster,
                started_runs: Default::default(),
                store: parts.store,
                runtime: parts.runtime,
                aws: parts.aws,
                fetcher: parts.fetcher,
                metrics: parts.metrics,
                scheduler: parts.scheduler,
                config: parts.config,
                delivery_locks: Default::default(),
                drain_logged: Mutex::default(),
            }),
        }
    }

    /// The handle the API uses to tell the scheduler about changes.
    pub fn control(&self) -> Control {
        Control::clustered(self.inner.scheduler.clone(), self.inner.store.clone(), self.inner.cluster.clone())
    }

    /// Delivers what the outbox holds from before the start, registers every project with the
    /// scheduler, and runs projects until `shutdown` resolves; runs in progress then finish.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<()> {
        let inner = self.inner.clone();
        if let Some(cluster) = inner.cluster.clone() {
            return inner.run_clustered(cluster, self.control(), shutdown).await;
        }
        let startup = Duration::from_millis(inner.config.startup_delivery_ms);
        if tokio::time::timeout(startup, inner.drain_outbox()).await.is_err() {
            tracing::warn!("the outbox was not delivered within {startup:?}; starting the scheduler anyway");
        }
        self.control().load_all(|_| true).await.context("cannot register the stored projects with the scheduler")?;
        let drainer = tokio::spawn(inner.clone().drain_forever());
        inner.scheduler.run(inner.clone(), shutdown).await;
        drainer.abort();
        Ok(())
    }
}

impl crate::scheduler::Runner for Inner {
    async fn run(&self, tick: Tick) -> Outcome {
        self.run_tick(tick).await
    }

    fn skipped(&self, tick: Tick, streak: u32) {
        self.record_skipped(tick, streak);
    }
}
