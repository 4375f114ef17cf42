//! The measured window read back from the projects' run history: outcomes, errors, schedule lag,
//! and how they move over the window.

use super::*;

use sluice::store::Run;

/// Every run read from the history so far, by run id. The store keeps a project's last
/// `RUNS_KEPT` runs only, so a window longer than that many seconds is read in several passes.
#[derive(Default)]
pub struct History {
    runs: HashMap<String, Run>,
}

impl History {
    /// Reads the history of `keys` on a blocking thread, so that a pass in the middle of the
    /// window does not hold up one of the runtime's workers (and the runs queued behind it).
    pub async fn harvest(&mut self, store: &Store, keys: &[ProjectKey]) {
        let (store, keys) = (store.clone(), keys.to_vec());
        let runtime = tokio::runtime::Handle::current();
        let runs = tokio::task::spawn_blocking(move || {
            keys.iter()
                .flat_map(|key| {
                    runtime.block_on(store.runs(&key.tenant, &key.project, sluice::store::RUNS_KEPT)).unwrap()
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        self.runs.extend(runs.into_iter().map(|run| (run.id.clone(), run)));
    }

    /// The runs of `projects` that started in `[from, to)`.
    pub fn tally(
        &self,
        projects: &HashMap<String, usize>,
        offsets: &HashMap<String, i64>,
        from: Timestamp,
        to: Timestamp,
    ) -> Tally {
        let mut tally = Tally { from_ms: from.as_millisecond(), ..Tally::default() };
        for run in self.runs.values() {
            if !projects.contains_key(&run.project_id) {
                continue;
            }
            let started: Timestamp = run.started_at.parse().unwrap();
            if started >= from && started < to {
                tally.add(run, started, offsets.get(&run.project_id).copied());
            }
        }
        tally.points.sort_by_key(|p| p.at_ms);
        tally.lags.sort_by(f64::total_cmp);
        tally
    }
}

/// One run that was not skipped, placed in the window.
pub struct Point {
    /// Milliseconds into the window.
    pub at_ms: i64,
    /// Its schedule lag, if the project's jitter offset is known.
    pub lag_ms: Option<f64>,
    pub failed: bool,
    /// Wall time in `transform`: for a busy-looping plugin, about the CPU it burnt.
    pub transform_ms: f64,
    /// Wall time in `outbox`: writing the records and flushing them to disk.
    pub outbox_ms: f64,
}

#[derive(Default)]
pub struct Tally {
    from_ms: i64,
    pub succeeded: u64,
    pub failed: u64,
    /// Skips recorded in the history (the first of each streak, or each skipped tick on builds
    /// that record them all).
    pub skipped: u64,
    pub catch_up: u64,
    pub lags: Vec<f64>,
    /// "stage: message" of failed runs, cut to 160 characters.
    pub errors: BTreeMap<String, u64>,
    pub run_ms: f64,
    pub stages: BTreeMap<String, f64>,
    pub points: Vec<Point>,
    /// Runs that were not skipped, per project.
    pub per_project: HashMap<String, u64>,
}

impl Tally {
    fn add(&mut self, run: &Run, started: Timestamp, offset: Option<i64>) {
        match run.outcome {
            RunOutcome::Skipped => {
                self.skipped += 1;
                return;
            }
            RunOutcome::Failed => {
                self.failed += 1;
                let error = run.error.as_ref().map_or("?".into(), |e| format!("{}: {}", e.stage, e.message));
                *self.errors.entry(error.chars().take(160).collect()).or_default() += 1;
            }
            RunOutcome::Succeeded => self.succeeded += 1,
        }
        *self.per_project.entry(run.project_id.clone()).or_default() += 1;
        self.catch_up += u64::from(run.trigger == Trigger::CatchUp);
        let lag_ms = offset.map(|offset| {
            let scheduled: Timestamp = run.scheduled_at.parse().unwrap();
            (started.as_millisecond() - scheduled.as_millisecond() - offset) as f64
        });
        self.lags.extend(lag_ms);
        let finished: Timestamp = run.finished_at.parse().unwrap();
        self.run_ms += (finished.as_millisecond() - started.as_millisecond()) as f64;
        for (stage, ms) in &run.stage_ms {
            *self.stages.entry(stage.as_str().to_string()).or_default() += ms;
        }
        self.points.push(Point {
            at_ms: started.as_millisecond() - self.from_ms,
            lag_ms,
            failed: run.outcome == RunOutcome::Failed,
            transform_ms: run.stage_ms.get(&Stage::Transform).copied().unwrap_or(0.0),
            outbox_ms: run.stage_ms.get(&Stage::Outbox).copied().unwrap_or(0.0),
        });
    }

    /// The median over the window's slices of each slice's lag p99: what a typical stretch of the
    /// window looks like, where the p99 over the whole window is set by its worst moment.
    pub fn median_slice_p99(&self, window_ms: i64, slice_ms: i64) -> f64 {
        let mut p99s: Vec<f64> =
            self.slices(window_ms, slice_ms).iter().filter_map(|s| s["lag_p99_ms"].as_f64()).collect();
        p99s.sort_by(f64::total_cmp);
        percentile(&p99s, 0.5)
    }

    /// Runs that were not skipped.
    pub fn ran(&self) -> u64 {
        self.succeeded + self.failed
    }

    /// Mean wall time per stage over the runs that were not skipped.
    pub fn stage_means(&self) -> BTreeMap<String, f64> {
        let ran = self.ran().max(1) as f64;
        self.stages.iter().map(|(stage, ms)| (stage.clone(), ms / ran)).collect()
    }

    /// The window cut into slices of `slice_ms`: runs, failures, lag p50/p99/max and transform
    /// time per slice, to see a burst and what follows it.
    pub fn slices(&self, window_ms: i64, slice_ms: i64) -> Vec<Value> {
        let count = slice_count(window_ms, slice_ms);
        (0..count)
            .map(|i| {
                let (from, to) = (i * slice_ms, if i + 1 == count { window_ms } else { (i + 1) * slice_ms });
                let points: Vec<&Point> =
                    self.points.iter().filter(|p| slice_of(p.at_ms, window_ms, slice_ms) == i).collect();
                let mut lags: Vec<f64> = points.iter().filter_map(|p| p.lag_ms).collect();
                lags.sort_by(f64::total_cmp);
                json!({
                    "from_s": from as f64 / 1000.0,
                    "to_s": to as f64 / 1000.0,
                    "runs": points.len(),
                    "failed": points.iter().filter(|p| p.failed).count(),
                    "lag_p50_ms": percentile(&lags, 0.50),
                    "lag_p99_ms": percentile(&lags, 0.99),
                    "lag_max_ms": lags.last().copied().unwrap_or(f64::NAN),
                    "transform_s": transform_s(points.iter().copied()),
                    // A disk flush that stalls holds its run's permits, and the runs queued behind
                    // them start late: this tells a stall apart from a CPU shortage.
                    "outbox_max_ms": points.iter().map(|p| p.outbox_ms).fold(0.0, f64::max),
                })
            })
            .collect()
    }

    /// (min, median, max) runs per project, counting projects that did not run as 0.
    pub fn runs_per_project<'a>(&self, projects: impl Iterator<Item = &'a String>) -> (u64, u64, u64) {
        let mut counts: Vec<u64> = projects.map(|p| self.per_project.get(p).copied().unwrap_or(0)).collect();
        counts.sort_unstable();
        match (counts.first(), counts.last()) {
            (Some(&min), Some(&max)) => (min, counts[counts.len() / 2], max),
            _ => (0, 0, 0),
        }
    }
}

/// How many slices of `slice_ms` a window is cut into: the window's few milliseconds over a
/// whole number of slices go to the last one rather than make a slice of their own.
pub fn slice_count(window_ms: i64, slice_ms: i64) -> i64 {
    ((window_ms + slice_ms / 2) / slice_ms).max(1)
}

/// The slice a moment of the window (ms into it) falls in.
pub fn slice_of(at_ms: i64, window_ms: i64, slice_ms: i64) -> i64 {
    (at_ms / slice_ms).min(slice_count(window_ms, slice_ms) - 1)
}

/// Seconds spent in `transform` by these runs.
pub fn transform_s<'a>(points: impl Iterator<Item = &'a Point>) -> f64 {
    // Adding 0.0 turns the -0.0 that an empty float sum gives into 0.
    points.map(|p| p.transform_ms).sum::<f64>() / 1000.0 + 0.0
}

/// Runs counted by the metrics, by outcome (every skipped tick is counted there, whatever the
/// history keeps).
pub fn runs_by_outcome(metrics: &Metrics) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in metrics.render(&[]).lines() {
        let Some(rest) = line.strip_prefix("sluice_runs_total{") else { continue };
        let outcome = rest.split("outcome=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("?");
        let count = rest.rsplit(' ').next().and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
        *counts.entry(outcome.to_string()).or_default() += count;
    }
    counts
}
