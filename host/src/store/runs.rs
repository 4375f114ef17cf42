//! Run history (bounded per project) and per-tenant usage counters. The data plane writes them;
//! the API reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Result, Store, decode, decode_entry, encode};

/// Runs kept per project; older ones are dropped as new ones arrive.
pub const RUNS_KEPT: usize = 100;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunTrigger {
    /// The project's schedule.
    Schedule,
    /// `POST /v1/projects/{id}/run`.
    Manual,
    /// The one catch-up run after the daemon was down.
    CatchUp,
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

/// Where and why a run failed. The message never contains secret values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunError {
    /// `assume_role`, `read_secret`, `prepare`, `fetch`, `transform`, `deliver` or `commit`.
    pub stage: String,
    pub message: String,
}

/// One run of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Run {
    /// `run_` and 16 hex digits.
    pub id: String,
    pub project_id: String,
    pub trigger: RunTrigger,
    /// When the schedule wanted the run, RFC 3339.
    pub scheduled_at: String,
    /// When it actually started, RFC 3339.
    pub started_at: String,
    pub finished_at: String,
    pub outcome: RunOutcome,
    /// The last HTTP status the source answered, if it was reached.
    pub http_status: Option<u16>,
    pub pages: u32,
    pub records: u64,
    pub bytes_fetched: u64,
    pub bytes_delivered: u64,
    /// Milliseconds spent per stage.
    pub stage_ms: BTreeMap<String, f64>,
    pub error: Option<RunError>,
}

/// A tenant's counters since it was created.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub runs: u64,
    pub runs_failed: u64,
    pub bytes_fetched: u64,
    pub records_delivered: u64,
    pub bytes_delivered: u64,
    /// Milliseconds of plugin time (prepare and transform calls).
    pub plugin_ms: f64,
}

fn prefix(tenant: &str, project: &str) -> String {
    format!("{tenant}/{project}/")
}

impl Store {
    /// Appends a run to a project's history, dropping the oldest beyond [`RUNS_KEPT`], and adds
    /// it to the tenant's usage.
    pub async fn record_run(&self, tenant: &str, run: &Run, plugin_ms: f64) -> Result<()> {
        let prefix = prefix(tenant, &run.project_id);
        // Keys sort by start time, then id, so the newest run is last.
        let started = run.started_at.parse::<jiff::Timestamp>().map_or(0, |t| t.as_millisecond().max(0));
        self.runs.insert(format!("{prefix}{started:016x}-{}", run.id), encode(run)?)?;
        let keys: Vec<sled::IVec> = self.runs.scan_prefix(&prefix).keys().collect::<Result<_, _>>()?;
        for old in keys.iter().take(keys.len().saturating_sub(RUNS_KEPT)) {
            self.runs.remove(old)?;
        }
        self.usage.update_and_fetch(tenant, |old| {
            let mut usage: Usage = old.and_then(|raw| serde_json::from_slice(raw).ok()).unwrap_or_default();
            usage.runs += 1;
            usage.runs_failed += u64::from(run.outcome == RunOutcome::Failed);
            usage.bytes_fetched += run.bytes_fetched;
            usage.records_delivered += if run.outcome == RunOutcome::Succeeded { run.records } else { 0 };
            usage.bytes_delivered += run.bytes_delivered;
            usage.plugin_ms += plugin_ms;
            serde_json::to_vec(&usage).ok()
        })?;
        // History is not worth a disk sync per run: sled flushes it within 500 ms.
        Ok(())
    }

    /// A project's runs, newest first, at most `limit`.
    pub fn runs(&self, tenant: &str, project: &str, limit: usize) -> Result<Vec<Run>> {
        self.runs.scan_prefix(prefix(tenant, project)).rev().take(limit).map(decode_entry).collect()
    }

    /// A tenant's usage counters (all zero before its first run).
    pub fn usage(&self, tenant: &str) -> Result<Usage> {
        Ok(self.usage.get(tenant)?.map(|raw| decode(tenant, &raw)).transpose()?.unwrap_or_default())
    }

    /// Forgets a project's history (when the project is deleted).
    pub(crate) fn delete_runs_of(&self, tenant: &str, project: &str) -> Result<()> {
        for key in self.runs.scan_prefix(prefix(tenant, project)).keys() {
            self.runs.remove(key?)?;
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
            project_id: project.into(),
            trigger: RunTrigger::Schedule,
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
        }
    }

    #[tokio::test]
    async fn history_is_newest_first_bounded_and_counted_in_usage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for n in 0..(RUNS_KEPT as u64 + 5) {
            let outcome = if n % 2 == 0 { RunOutcome::Succeeded } else { RunOutcome::Failed };
            store.record_run("ten_a", &run("prj_1", n, outcome), 1.5).await.unwrap();
        }
        store.record_run("ten_a", &run("prj_2", 0, RunOutcome::Succeeded), 0.0).await.unwrap();
        let runs = store.runs("ten_a", "prj_1", 1000).unwrap();
        assert_eq!(runs.len(), RUNS_KEPT);
        assert_eq!(runs[0].id, format!("run_{:016x}", RUNS_KEPT as u64 + 4), "newest first");
        assert_eq!(store.runs("ten_a", "prj_1", 2).unwrap().len(), 2);
        assert!(store.runs("ten_b", "prj_1", 10).unwrap().is_empty(), "keyed by tenant");
        let usage = store.usage("ten_a").unwrap();
        assert_eq!((usage.runs, usage.runs_failed), (106, 52));
        assert_eq!(usage.records_delivered, 54 * 3);
        store.delete_runs_of("ten_a", "prj_1").unwrap();
        assert!(store.runs("ten_a", "prj_1", 10).unwrap().is_empty());
        assert_eq!(store.runs("ten_a", "prj_2", 10).unwrap().len(), 1);
    }
}
