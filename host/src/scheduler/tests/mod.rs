//! The scheduler's tests, in paused tokio time: the clock is derived from tokio's, so hours of
//! schedule pass in milliseconds and every firing happens at an exact, predictable instant.
//!
//! - `firing.rs`: when projects fire (rates, cron in a time zone, jitter).
//! - `runs.rs`: what happens around runs (overlap, catch-up, caps, backoff, manual runs, shutdown).
//! - `control.rs`: changes while running (schedule changes, pause, removal) and scale.

mod control;
mod firing;
mod runs;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::{Clock, Entry, Outcome, ProjectKey, Runner, Scheduler, SchedulerConfig, Tick, Trigger};
use crate::calendar::{Schedule, parse_timezone};

/// A Monday at midnight UTC, where most tests start their schedules.
const T0: &str = "2025-01-06T00:00:00Z";

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// `T0` plus `seconds`.
fn at(seconds: i64) -> Timestamp {
    ts(T0) + SignedDuration::from_secs(seconds)
}

fn key(tenant: &str, project: &str) -> ProjectKey {
    ProjectKey::new(tenant, project)
}

fn entry(expr: &str, timezone: &str, anchor: Timestamp) -> Entry {
    Entry::new(Schedule::parse(expr).unwrap(), parse_timezone(timezone).unwrap(), anchor)
}

/// A configuration without jitter, so that firings land on their nominal times.
fn no_jitter(max_concurrent_runs: usize, max_concurrent_runs_per_tenant: usize) -> SchedulerConfig {
    SchedulerConfig {
        jitter_window_ms: 0,
        max_concurrent_runs,
        max_concurrent_runs_per_tenant,
        ..SchedulerConfig::default()
    }
}

/// The jitter the scheduler gives `key` on `expr` with a window of `window_ms`.
fn offset(key: &ProjectKey, window_ms: u64, expr: &str) -> SignedDuration {
    super::jitter::offset(key, window_ms, &Schedule::parse(expr).unwrap())
}

/// Sleeps (in tokio's paused time) until the scheduler's clock reads `wall`.
async fn sleep_until(clock: &Clock, wall: Timestamp) {
    while clock.now() < wall {
        tokio::time::sleep_until(clock.deadline(wall)).await;
    }
}

/// One run as the runner saw it.
#[derive(Debug, Clone)]
struct Run {
    tick: Tick,
    started: Timestamp,
}

/// What a run returns, given its tick.
type OutcomeFn = Box<dyn Fn(&Tick) -> Outcome + Send + Sync>;

/// A runner that records every run and skip, takes a set time per run, and checks that no project
/// ever has two runs at once.
struct Recorder {
    clock: Clock,
    duration: Mutex<Duration>,
    outcome: Mutex<Option<OutcomeFn>>,
    runs: Mutex<Vec<Run>>,
    skipped: Mutex<Vec<(Tick, u32)>>,
    /// Projects with a run in progress, and whether one ever started while already there.
    in_progress: Mutex<HashSet<ProjectKey>>,
    overlapped: AtomicUsize,
    current: AtomicUsize,
    max_current: AtomicUsize,
    /// The most tasks alive in the runtime seen at the start of a run.
    max_alive_tasks: AtomicUsize,
    finished: Notify,
}

impl Recorder {
    fn new(clock: &Clock, duration: Duration) -> Arc<Self> {
        Arc::new(Self {
            clock: clock.clone(),
            duration: Mutex::new(duration),
            outcome: Mutex::new(None),
            runs: Mutex::new(Vec::new()),
            skipped: Mutex::new(Vec::new()),
            in_progress: Mutex::new(HashSet::new()),
            overlapped: AtomicUsize::new(0),
            current: AtomicUsize::new(0),
            max_current: AtomicUsize::new(0),
            max_alive_tasks: AtomicUsize::new(0),
            finished: Notify::new(),
        })
    }

    fn set_duration(&self, duration: Duration) {
        *self.duration.lock().unwrap() = duration;
    }

    fn set_outcome(&self, outcome: impl Fn(&Tick) -> Outcome + Send + Sync + 'static) {
        *self.outcome.lock().unwrap() = Some(Box::new(outcome));
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    /// The `scheduled_at` of every run, in the order they started.
    fn scheduled(&self) -> Vec<Timestamp> {
        self.runs().iter().map(|run| run.tick.scheduled_at).collect()
    }

    fn triggers(&self) -> Vec<Trigger> {
        self.runs().iter().map(|run| run.tick.trigger).collect()
    }

    fn skipped(&self) -> Vec<Timestamp> {
        self.skipped.lock().unwrap().iter().map(|(tick, _)| tick.scheduled_at).collect()
    }

    /// The streak count of every skipped firing, in order.
    fn streaks(&self) -> Vec<u32> {
        self.skipped.lock().unwrap().iter().map(|(_, streak)| *streak).collect()
    }

    fn max_current(&self) -> usize {
        self.max_current.load(Ordering::SeqCst)
    }

    fn assert_no_overlap(&self) {
        assert_eq!(self.overlapped.load(Ordering::SeqCst), 0, "a project had two runs at once");
    }
}

impl Runner for Recorder {
    async fn run(&self, tick: Tick) -> Outcome {
        let alive = tokio::runtime::Handle::current().metrics().num_alive_tasks();
        self.max_alive_tasks.fetch_max(alive, Ordering::SeqCst);
        if !self.in_progress.lock().unwrap().insert(tick.key.clone()) {
            self.overlapped.fetch_add(1, Ordering::SeqCst);
        }
        let current = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_current.fetch_max(current, Ordering::SeqCst);
        self.runs.lock().unwrap().push(Run { tick: tick.clone(), started: self.clock.now() });
        let duration = *self.duration.lock().unwrap();
        if !duration.is_zero() {
            tokio::time::sleep(duration).await;
        }
        let outcome = self.outcome.lock().unwrap().as_ref().map(|outcome| outcome(&tick)).unwrap_or_default();
        self.current.fetch_sub(1, Ordering::SeqCst);
        self.in_progress.lock().unwrap().remove(&tick.key);
        self.finished.notify_one();
        outcome
    }

    fn skipped(&self, tick: Tick, streak: u32) {
        self.skipped.lock().unwrap().push((tick, streak));
    }
}

/// A driver running in its own task, with the means to stop it.
struct Driver {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Driver {
    fn start<R: Runner>(scheduler: &Scheduler, runner: &Arc<R>) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let scheduler = scheduler.clone();
        let runner = runner.clone();
        let task = tokio::spawn(async move {
            scheduler
                .run(runner, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self { stop, task }
    }

    /// Asks the driver to stop and waits until it has returned.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap();
    }
}
