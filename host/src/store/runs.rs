//! Run history (bounded per project) and per-tenant usage counters. The data plane writes them;
//! the API reads them.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::commit::Commit;
use super::disk::{DiskKind, DiskUsage, size};
use super::{Result, SledStore, decode, decode_entry, encode};

/// Runs kept per project; older ones are dropped as new ones arrive.
pub const RUNS_KEPT: usize = 100;

/// What started a run (the scheduler's tick carries the same type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The project's schedule: its nominal time came.
    Schedule,
    /// `POST /v1/projects/{id}/run`.
    Manual,
    /// The one run for the latest firing missed while the daemon was down (or fell behind).
    CatchUp,
}

impl Trigger {
    /// The trigger's name as run history and metrics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::CatchUp => "catch_up",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every record was delivered and the state committed.
    Succeeded,
    /// A stage failed; `error` says which and why.
    Failed,
    /// The previous run was still going, so this tick did nothing.
    Skipped,
}

/// A stage of a run, in the order a run goes through them. Run history times the stages a run
/// reached (`stage_ms`) and names the one it failed in (`error.stage`); metrics label stage
/// durations with the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The tick found the previous run still going and was skipped.
    Schedule,
    /// Delivering records earlier runs left in the outbox, before this run fetches, and this
    /// run's own records after it.
    Deliver,
    /// Assuming the tenant's role with the project's external id.
    AssumeRole,
    /// Reading the source's API key from the tenant's secret.
    Secret,
    /// Compiling the plugin, or finding it compiled.
    LoadPlugin,
    /// The plugin's `prepare` call.
    Prepare,
    /// Fetching a page from the source.
    Fetch,
    /// The plugin's `transform` call, and the checks of what it returned.
    Transform,
    /// Writing the run's records and pending state to the durable outbox, when Kinesis did not
    /// take them at once or older records of the project wait there.
    Outbox,
    /// The host itself failed (its storage); nothing the tenant can fix.
    Host,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 10] = [
        Stage::Schedule,
        Stage::Deliver,
        Stage::AssumeRole,
        Stage::Secret,
        Stage::LoadPlugin,
        Stage::Prepare,
        Stage::Fetch,
        Stage::Transform,
        Stage::Outbox,
        Stage::Host,
    ];

    /// The stage's name as run history and metrics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Schedule => "schedule",
            Stage::Deliver => "deliver",
            Stage::AssumeRole => "assume_role",
            Stage::Secret => "secret",
            Stage::LoadPlugin => "load_plugin",
            Stage::Prepare => "prepare",
            Stage::Fetch => "fetch",
            Stage::Transform => "transform",
            Stage::Outbox => "outbox",
            Stage::Host => "host",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and why a run failed. The message never contains secret values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunError {
    pub stage: Stage,
    pub message: String,
}

/// Where a line of a run's log came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunLogSource {
    /// The plugin's `host.log` calls.
    Log,
    /// What the plugin printed to stdout.
    Stdout,
    /// What the plugin printed to stderr (a Rust panic message lands here).
    Stderr,
    /// The host, about the run: a page cap reached, an older run's records parked.
    Host,
}

/// One line of a run's log. Like every field of a run, it never contains secret values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunLogLine {
    pub source: RunLogSource,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    pub message: String,
}

/// One run of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// `run_` and 16 hex digits.
    pub id: String,
    pub project_id: String,
    pub trigger: Trigger,
    /// When the schedule wanted the run, RFC 3339.
    pub scheduled_at: String,
    /// When it actually started, RFC 3339.
    pub started_at: String,
    pub finished_at: String,
    pub outcome: RunOutcome,
    /// The plugin version the run used: with a project that follows a plugin name, runs before
    /// and after an upload show which version failed. Absent for runs that did not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_id: Option<String>,
    /// The last HTTP status the source answered, if it was reached.
    pub http_status: Option<u16>,
    pub pages: u32,
    pub records: u64,
    pub bytes_fetched: u64,
    pub bytes_delivered: u64,
    /// Milliseconds spent per stage, for the stages the run reached.
    pub stage_ms: BTreeMap<Stage, f64>,
    pub error: Option<RunError>,
    /// Whether the run stopped at the project's page cap (`max_pages`) while the plugin still
    /// asked for another page. The host does not keep that request: the next run starts again
    /// from the source URL, and `prepare` picks up where the committed state says.
    #[serde(default)]
    pub page_cap_reached: bool,
    /// The tail of the run's log: the plugin's `host.log` lines and what it printed, from every
    /// call of the run, and the host's notes, at most 50 lines and 4 KiB (lines of 1 KiB at most).
    #[serde(default)]
    pub logs: Vec<RunLogLine>,
    /// Log lines left out of `logs` to stay within its bounds, earliest first, plus those the
    /// plugin's own per-call log limits dropped.
    #[serde(default)]
    pub logs_dropped: u64,
}

/// A tenant's counters since it was created, and what it keeps in the store now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct Usage {
    pub runs: u64,
    pub runs_failed: u64,
    pub bytes_fetched: u64,
    pub records_delivered: u64,
    pub bytes_delivered: u64,
    /// Milliseconds of plugin time (prepare and transform calls).
    pub plugin_ms: f64,
    /// Bytes the tenant keeps in the store now, by kind; `outbox_bytes` and `parked_bytes`
    /// together count against its `max_outbox_bytes` quota.
    pub disk: DiskUsage,
    /// Plugin linear memory the tenant's calls hold now on the host that answers, against its
    /// `max_plugin_memory_bytes` quota (`GET /v1/me` shows the quotas).
    pub plugin_memory_bytes: u64,
}

/// The counters as stored; the disk figures are derived, so they are not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Counters {
    pub runs: u64,
    pub runs_failed: u64,
    pub bytes_fetched: u64,
    pub records_delivered: u64,
    pub bytes_delivered: u64,
    pub plugin_ms: f64,
}

fn prefix(tenant: &str, project: &str) -> String {
    format!("{tenant}/{project}/")
}

/// A run's key: keys sort by start time, then id, so the newest run of a project is last.
pub(super) fn run_key(tenant: &str, run: &Run) -> String {
    let started = run.started_at.parse::<jiff::Timestamp>().map_or(0, |t| t.as_millisecond().max(0));
    format!("{}{started:016x}-{}", prefix(tenant, &run.project_id), run.id)
}

impl Counters {
    /// What one run adds to its tenant's usage.
    pub(super) fn of_run(run: &Run, plugin_ms: f64) -> Self {
        Self {
            runs: 1,
            runs_failed: u64::from(run.outcome == RunOutcome::Failed),
            bytes_fetched: run.bytes_fetched,
            records_delivered: if run.outcome == RunOutcome::Succeeded { run.records } else { 0 },
            bytes_delivered: run.bytes_delivered,
            plugin_ms,
        }
    }

    /// Adds `other` to these counters.
    pub(super) fn add(&mut self, other: &Counters) {
        self.runs += other.runs;
        self.runs_failed += other.runs_failed;
        self.bytes_fetched += other.bytes_fetched;
        self.records_delivered += other.records_delivered;
        self.bytes_delivered += other.bytes_delivered;
        self.plugin_ms += other.plugin_ms;
    }

    /// The usage a tenant sees: these counters and what it keeps stored now.
    pub(super) fn with_disk(self, disk: DiskUsage) -> Usage {
        Usage {
            runs: self.runs,
            runs_failed: self.runs_failed,
            bytes_fetched: self.bytes_fetched,
            records_delivered: self.records_delivered,
            bytes_delivered: self.bytes_delivered,
            plugin_ms: self.plugin_ms,
            disk,
            // The runtime's, not the store's: the API fills it in.
            plugin_memory_bytes: 0,
        }
    }
}

impl SledStore {
    /// Appends a run to a project's history, dropping the oldest beyond [`RUNS_KEPT`], and adds
    /// it to the tenant's usage, through the committer: in the batch of the run's other writes.
    pub async fn record_run(&self, tenant: &str, run: &Run, plugin_ms: f64) -> Result<()> {
        let commit = Commit::Run { tenant: tenant.to_string(), run: Box::new(run.clone()), plugin_ms };
        self.commit(commit).await.map(drop)
    }

    /// Like [`SledStore::record_run`], without waiting: the run goes into the committer's next batch,
    /// and a failure to write it is logged there.
    pub fn record_run_later(&self, tenant: &str, run: Run, plugin_ms: f64) {
        self.commit_later(Commit::Run { tenant: tenant.to_string(), run: Box::new(run), plugin_ms });
    }

    pub(super) fn apply_run(&self, tenant: &str, run: &Run, plugin_ms: f64) -> Result<()> {
        let prefix = prefix(tenant, &run.project_id);
        let key = run_key(tenant, run);
        let value = encode(run)?;
        let replaced = self.runs.insert(key.as_bytes(), value.as_slice())?;
        let mut removed = replaced.as_ref().map_or(0, |old| size(key.as_bytes(), old));
        // The count of each project's records is kept in memory (counted once per project after
        // a start), so that a run removes the oldest record alone instead of listing them all.
        let mut counts = self.history_counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = match counts.get_mut(&prefix) {
            Some(count) => {
                *count += usize::from(replaced.is_none());
                count
            }
            None => counts.entry(prefix.clone()).or_insert(self.runs.scan_prefix(&prefix).keys().count()),
        };
        while *count > RUNS_KEPT {
            let Some(oldest) = self.runs.scan_prefix(&prefix).keys().next().transpose()? else { break };
            if let Some(value) = self.runs.remove(&oldest)? {
                removed += size(&oldest, &value);
            }
            *count -= 1;
        }
        drop(counts);
        self.disk.change(tenant, DiskKind::History, size(key.as_bytes(), &value), removed);
        self.usage.update_and_fetch(tenant, |old| {
            let mut usage: Counters = old.and_then(|raw| serde_json::from_slice(raw).ok()).unwrap_or_default();
            usage.add(&Counters::of_run(run, plugin_ms));
            serde_json::to_vec(&usage).ok()
        })?;
        Ok(())
    }

    /// A project's runs, newest first, at most `limit`.
    pub async fn runs(&self, tenant: &str, project: &str, limit: usize) -> Result<Vec<Run>> {
        self.runs.scan_prefix(prefix(tenant, project)).rev().take(limit).map(decode_entry).collect()
    }

    /// A tenant's usage counters (all zero before its first run) and disk figures.
    pub async fn usage(&self, tenant: &str) -> Result<Usage> {
        let counters: Counters =
            self.usage.get(tenant)?.map(|raw| decode(tenant, &raw)).transpose()?.unwrap_or_default();
        Ok(counters.with_disk(self.disk.of(tenant)))
    }

    /// Forgets a project's history (when the project is deleted).
    pub(crate) fn delete_runs_of(&self, tenant: &str, project: &str) -> Result<()> {
        self.history_counts.lock().unwrap_or_else(PoisonError::into_inner).remove(&prefix(tenant, project));
        for key in self.runs.scan_prefix(prefix(tenant, project)).keys() {
            let key = key?;
            if let Some(old) = self.runs.remove(&key)? {
                self.disk.change(tenant, DiskKind::History, 0, size(&key, &old));
            }
        }
        Ok(())
    }

    /// Forgets a tenant's usage (when the tenant is deleted).
    pub(crate) fn delete_usage_of(&self, tenant: &str) -> Result<()> {
        self.usage.remove(tenant)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(project: &str, n: u64, outcome: RunOutcome) -> Run {
        Run {
            id: format!("run_{n:016x}"),
            plugin_id: None,
            project_id: project.into(),
            trigger: Trigger::Schedule,
            scheduled_at: "2026-01-01T00:00:00Z".into(),
            started_at: jiff::Timestamp::from_second(1_767_225_600 + n as i64).unwrap().to_string(),
            finished_at: "2026-01-01T00:00:01Z".into(),
            outcome,
            http_status: Some(200),
            pages: 1,
            records: 3,
            bytes_fetched: 100,
            bytes_delivered: 90,
            stage_ms: BTreeMap::new(),
            error: None,
            page_cap_reached: false,
            logs: Vec::new(),
            logs_dropped: 0,
        }
    }

    #[tokio::test]
    async fn history_is_newest_first_bounded_and_counted_in_usage() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for n in 0..(RUNS_KEPT as u64 + 5) {
            let outcome = if n % 2 == 0 { RunOutcome::Succeeded } else { RunOutcome::Failed };
            store.record_run("ten_a", &run("prj_1", n, outcome), 1.5).await.unwrap();
        }
        store.record_run("ten_a", &run("prj_2", 0, RunOutcome::Succeeded), 0.0).await.unwrap();
        let runs = store.runs("ten_a", "prj_1", 1000).await.unwrap();
        assert_eq!(runs.len(), RUNS_KEPT);
        assert_eq!(runs[0].id, format!("run_{:016x}", RUNS_KEPT as u64 + 4), "newest first");
        assert_eq!(store.runs("ten_a", "prj_1", 2).await.unwrap().len(), 2);
        assert!(store.runs("ten_b", "prj_1", 10).await.unwrap().is_empty(), "keyed by tenant");
        let usage = store.usage("ten_a").await.unwrap();
        assert_eq!((usage.runs, usage.runs_failed), (106, 52));
        assert_eq!(usage.records_delivered, 54 * 3);
        let history = store.disk_usage("ten_a").history_bytes;
        let one = super::size(b"", &encode(&run("prj_2", 0, RunOutcome::Succeeded)).unwrap());
        assert!(history > one * (RUNS_KEPT as u64 + 1) && history < (one + 100) * (RUNS_KEPT as u64 + 1), "{history}");
        // After a restart the count is taken again, and the history stays at its bound.
        drop(store);
        let store = crate::store::reopen(dir.path());
        store.record_run("ten_a", &run("prj_1", RUNS_KEPT as u64 + 5, RunOutcome::Succeeded), 0.0).await.unwrap();
        let runs = store.runs("ten_a", "prj_1", 1000).await.unwrap();
        assert_eq!(runs.len(), RUNS_KEPT);
        assert_eq!(runs.last().unwrap().id, format!("run_{:016x}", 6), "the oldest went");
        store.delete_runs_of("ten_a", "prj_1").unwrap();
        assert!(store.runs("ten_a", "prj_1", 10).await.unwrap().is_empty());
        assert!(store.disk_usage("ten_a").history_bytes < one + 100, "only prj_2's run is left");
        assert_eq!(store.runs("ten_a", "prj_2", 10).await.unwrap().len(), 1);
    }
}
