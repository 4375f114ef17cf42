//! The timer queue that fires every active project at its scheduled times.
//!
//! A [`Scheduler`] holds one [`Entry`] per project (its schedule, time zone, rate anchor and state)
//! and one driver task ([`Scheduler::run`]) fires them, handing each firing to a [`Runner`] as a
//! [`Tick`]. The module knows nothing of HTTP, AWS, storage or wasm: when a project fires is decided
//! here, what a run does is the runner's business, and firing times come from [`crate::calendar`]
//! (EventBridge expressions, time zones and daylight saving time).
//!
//! - **One timer queue.** Every project's next firing sits in one ordered map keyed by due time. The
//!   driver sleeps until the earliest one, fires everything due, and goes back to sleep; a change to any
//!   entry wakes it at once. Nothing sleeps per project, so 100,000 idle projects cost memory and no
//!   tasks. A task exists only per run that is running or waiting for a permit.
//! - **Jitter.** Each project fires a fixed offset after each nominal time, derived from a stable hash
//!   of its key and smaller than both the configured window and the schedule's shortest interval, so
//!   projects on the same schedule spread over the window while each keeps its exact interval. A
//!   [`Tick`] carries the nominal time (`scheduled_at`, what the run is "for") and the jittered one
//!   (`due_at`, what lag is measured from).
//! - **No overlap.** A project has at most one run at a time. A firing that finds the previous run still
//!   going, or still waiting for a permit, is not queued behind it but reported to
//!   [`Runner::skipped`], and the schedule carries on.
//! - **Catch-up, not backfill.** A project registered with the nominal time of its last run gets at
//!   most one catch-up run, for the latest firing it missed, and then continues on schedule: a daemon
//!   that was down for a day runs each project once, not once per missed interval. The same holds
//!   when the driver itself falls behind.
//! - **Caps.** A run first takes a permit from its tenant's semaphore and then one from the global
//!   one. Tokio's semaphores are fair (first come, first served), so a tenant with thousands of due
//!   projects has at most its cap of them waiting in the global queue, and another tenant's project
//!   waits for at most the runs ahead of it there, never for the whole backlog.
//! - **Backoff.** A run returns an [`Outcome`] whose `not_before` pushes the project's next firing
//!   out (a failing project, a `Retry-After`); an entry carries the same across restarts.

mod clock;
mod driver;
mod jitter;
mod load;
mod queue;

#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::{Notify, Semaphore};

pub use clock::Clock;

use crate::calendar::Schedule;
use queue::Queue;

/// How the scheduler spreads and bounds runs; the `[scheduler]` settings of `sluice serve`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// The window over which projects on the same schedule are spread, in milliseconds. A project's
    /// offset is also kept below its schedule's shortest interval. 0 turns jitter off.
    pub jitter_window_ms: u64,
    /// The most runs in progress at once across all tenants. 0 is treated as 1.
    pub max_concurrent_runs: usize,
    /// The most runs in progress at once for one tenant. 0 is treated as 1.
    pub max_concurrent_runs_per_tenant: usize,
    /// The host counts as saturated while scheduled runs start this late on average, in ms:
    /// it is offered more than it can do (`/readyz` and `/metrics` say so).
    pub saturated_lag_ms: u64,
    /// Whether this process runs projects. Off, it serves the API only (manual runs answer 503).
    /// Several hosts on one shared store must have it on in exactly one of them until hosts
    /// share projects by leases.
    pub enabled: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            jitter_window_ms: 10_000,
            max_concurrent_runs: 64,
            max_concurrent_runs_per_tenant: 8,
            saturated_lag_ms: 1_000,
            enabled: true,
        }
    }
}

/// A project, by tenant and project id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectKey {
    /// The tenant that owns the project.
    pub tenant: Arc<str>,
    /// The project's id, unique within the tenant.
    pub project: Arc<str>,
}

impl ProjectKey {
    /// A key from a tenant id and a project id.
    pub fn new(tenant: impl Into<Arc<str>>, project: impl Into<Arc<str>>) -> Self {
        Self { tenant: tenant.into(), project: project.into() }
    }
}

impl fmt::Display for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.project)
    }
}

/// When a project fires, as [`Scheduler::upsert`] receives it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The schedule expression.
    pub schedule: Schedule,
    /// The zone a cron expression is evaluated in; rates ignore it.
    pub timezone: TimeZone,
    /// Where a rate's firings are counted from: when the project was created or its schedule last
    /// changed. Cron expressions ignore it.
    pub anchor: Timestamp,
    /// The nominal time (`scheduled_at`) of the project's last run, from run history. A project new
    /// to this scheduler gets one catch-up run if it has missed a firing since then.
    pub last_scheduled_at: Option<Timestamp>,
    /// A paused project never fires by schedule; [`Scheduler::run_now`] still runs it.
    pub paused: bool,
    /// Backoff carried across restarts: the next firing is the first one at or after this.
    pub not_before: Option<Timestamp>,
}

impl Entry {
    /// An active entry with no run history and no backoff.
    pub fn new(schedule: Schedule, timezone: TimeZone, anchor: Timestamp) -> Self {
        Self { schedule, timezone, anchor, last_scheduled_at: None, paused: false, not_before: None }
    }
}

/// Why a tick fired: the run record's own type, so that a run is recorded with the trigger the
/// scheduler gave it, with nothing to map.
pub use crate::store::Trigger;

/// One firing of one project, handed to the [`Runner`].
#[derive(Debug, Clone)]
pub struct Tick {
    /// The project.
    pub key: ProjectKey,
    /// The nominal firing time, without jitter: what the run is for. Different for every run of a
    /// project; every page of a run uses the same one.
    pub scheduled_at: Timestamp,
    /// When the tick was due: the nominal time plus the project's jitter for a scheduled tick, the time
    /// it was queued plus jitter for a catch-up, the request time for a manual one. Lag is measured
    /// from here.
    pub due_at: Timestamp,
    /// Why it fired.
    pub trigger: Trigger,
}

/// What a run tells the scheduler when it finishes.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Backoff: the project's next scheduled firing is the first one at or after this time. `None`
    /// ends any backoff.
    pub not_before: Option<Timestamp>,
}

/// What the scheduler calls when a project fires.
pub trait Runner: Send + Sync + 'static {
    /// Runs the project once. Called with the tenant's and the global permit held, so the number of
    /// these futures in progress is bounded by the configured caps.
    fn run(&self, tick: Tick) -> impl Future<Output = Outcome> + Send;

    /// Records a firing that was skipped because the project's previous run was still in progress
    /// (or waiting for a permit). `streak` counts the firings that run has made skip so far, 1 for
    /// the first, so that an overloaded daemon can record a streak once instead of paying for a
    /// history entry per firing. Called on the driver task, so it must return quickly: anything
    /// slow belongs in a task of its own.
    fn skipped(&self, tick: Tick, streak: u32);
}

/// Why [`Scheduler::run_now`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunNowError {
    /// The project is not registered with the scheduler.
    #[error("the project is not scheduled")]
    Unknown,
    /// The project has a run in progress or waiting for a permit.
    #[error("the project already has a run in progress")]
    AlreadyRunning,
    /// The driver is shutting down and starts no more runs.
    #[error("the scheduler is shutting down")]
    ShuttingDown,
}

/// A snapshot of the scheduler, for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulerStats {
    /// Registered projects that are not paused (including any whose schedule never fires again).
    pub scheduled: usize,
    /// Registered projects that are paused.
    pub paused: usize,
    /// Runs in progress or waiting for a permit.
    pub running: usize,
    /// Whether the driver ([`Scheduler::run`]) is running.
    pub driver_alive: bool,
}

/// How far behind the scheduler is, for metrics and readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulerLoad {
    /// Runs fired but waiting for a permit.
    pub waiting: usize,
    /// How late scheduled runs started lately, on average (zero when none started lately).
    pub recent_lag: Duration,
    /// Whether that lag is over `saturated_lag_ms`.
    pub saturated: bool,
}

/// The scheduler: cheap to clone, every clone is the same scheduler.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

/// What the API, the driver and the run tasks share.
struct Shared {
    config: SchedulerConfig,
    clock: Clock,
    queue: Mutex<Queue>,
    /// Wakes the driver when the earliest due time may have moved or a manual run was queued.
    changed: Notify,
    /// The global cap on runs in progress.
    global: Arc<Semaphore>,
    driver_alive: AtomicBool,
    lag: load::Lag,
}

impl Shared {
    /// The queue, even if a panic poisoned its lock: every update to it leaves it consistent before
    /// anything can panic, and a scheduler that stops firing every project is worse than one that
    /// keeps going.
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps a semaphore's permit count within what tokio accepts, and at least 1.
fn permits(configured: usize) -> usize {
    configured.clamp(1, Semaphore::MAX_PERMITS)
}

impl Scheduler {
    /// A scheduler with no projects. Nothing fires until [`Scheduler::run`] drives it.
    pub fn new(config: SchedulerConfig, clock: Clock) -> Self {
        let queue = Queue::new(permits(config.max_concurrent_runs_per_tenant));
        let global = Arc::new(Semaphore::new(permits(config.max_concurrent_runs)));
        let shared = Shared {
            config,
            clock,
            queue: Mutex::new(queue),
            changed: Notify::new(),
            global,
            driver_alive: false.into(),
            lag: load::Lag::default(),
        };
        Self { shared: Arc::new(shared) }
    }

    /// The clock the scheduler reads.
    pub fn clock(&self) -> &Clock {
        &self.shared.clock
    }

    /// Adds a project or replaces its entry; the change takes effect at once.
    ///
    /// A project new to the scheduler with a `last_scheduled_at` that has missed a firing since gets one
    /// catch-up tick (unless paused or backed off), spread by its jitter; then, like every other
    /// project, it fires at the first nominal time after now (and at or after `not_before`). Replacing an
    /// entry without changing its schedule, time zone, anchor, pause or `not_before` keeps its pending
    /// firing. Changing any of them reschedules from now with no catch-up, so resuming a paused project
    /// does not run it for the time it was paused. A run in progress is unaffected and still counts
    /// for overlap.
    ///
    /// A removed project added again counts as new: pass `last_scheduled_at: None` when it should not
    /// catch up (a tenant enabled again after a while). When the timing changes, the entry's
    /// `not_before` replaces any backoff from an earlier [`Outcome`], so pass the one you persisted.
    pub fn upsert(&self, key: ProjectKey, entry: Entry) {
        let offset = jitter::offset(&key, self.shared.config.jitter_window_ms, &entry.schedule);
        let now = self.shared.clock.now();
        self.shared.queue().upsert(key, entry, offset, now);
        self.shared.changed.notify_one();
    }

    /// Stops scheduling a project. A run in progress finishes; one waiting for a permit does not start.
    pub fn remove(&self, key: &ProjectKey) {
        self.shared.queue().remove(key);
    }

    /// Stops scheduling every project of a tenant (disabled or deleted), as [`Scheduler::remove`] does.
    pub fn remove_tenant(&self, tenant: &str) {
        self.shared.queue().remove_tenant(tenant);
    }

    /// Starts a manual run now, even for a paused project, and returns its `scheduled_at`: now in whole
    /// milliseconds, moved 1 ms past the project's previous `scheduled_at` if it would not be later.
    ///
    /// Refused when the project is unknown, already has a run in progress or waiting, or the driver is
    /// shutting down. Queued until the driver starts if it has not yet.
    pub fn run_now(&self, key: &ProjectKey) -> Result<Timestamp, RunNowError> {
        self.run_now_at(key, self.shared.clock.now())
    }

    /// Like [`Scheduler::run_now`], for a run asked for at `at` (through another host's API).
    pub fn run_now_at(&self, key: &ProjectKey, at: Timestamp) -> Result<Timestamp, RunNowError> {
        let scheduled_at = self.shared.queue().run_now(key, at)?;
        self.shared.changed.notify_one();
        Ok(scheduled_at)
    }

    /// Removes every project `keep` refuses (those of partitions this host no longer holds).
    pub fn retain(&self, keep: impl Fn(&ProjectKey) -> bool) {
        self.shared.queue().retain(keep);
        self.shared.changed.notify_one();
    }

    /// The tick a project fires next if nothing changes, or `None` when it is unknown, paused or its
    /// schedule never fires again.
    pub fn next_tick(&self, key: &ProjectKey) -> Option<Tick> {
        self.shared.queue().next_tick(key)
    }

    /// How many projects are scheduled, paused and running, and whether the driver is alive.
    pub fn stats(&self) -> SchedulerStats {
        let mut stats = self.shared.queue().stats();
        stats.driver_alive = self.shared.driver_alive.load(Ordering::SeqCst);
        stats
    }

    /// Runs waiting for a permit, and how late scheduled runs start.
    pub fn load(&self) -> SchedulerLoad {
        let running = self.shared.queue().stats().running;
        let in_use = permits(self.shared.config.max_concurrent_runs) - self.shared.global.available_permits();
        let recent_lag = self.shared.lag.recent(self.shared.clock.now());
        SchedulerLoad {
            waiting: running.saturating_sub(in_use),
            recent_lag,
            saturated: recent_lag > Duration::from_millis(self.shared.config.saturated_lag_ms),
        }
    }

    /// The driver: fires projects and starts their runs until `shutdown` resolves, then starts nothing
    /// more, drops runs still waiting for a permit (a restart catches them up), waits for the runs in
    /// progress and returns.
    ///
    /// Run one driver per scheduler; a second one running at the same time returns at once.
    pub async fn run<R: Runner>(&self, runner: Arc<R>, shutdown: impl Future<Output = ()> + Send) {
        driver::run(&self.shared, runner, shutdown).await;
    }
}
