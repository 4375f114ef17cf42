//! The timer queue: each project's state, and its next firing in one map ordered by due time.
//!
//! Everything here runs under the scheduler's one lock and takes the current time as an argument: it
//! never waits and never reads a clock. The driver (`driver.rs`) does the waiting and the runs.

use std::collections::{BTreeMap, HashMap};
use std::mem;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::Semaphore;

use super::clock::{add, sub, truncate_to_millis};
use super::{Entry, Outcome, ProjectKey, RunNowError, SchedulerStats, Tick, Trigger};

/// Identifies one run, so that a run finishing after its project was removed and added again leaves
/// the new state alone.
pub(super) type RunId = u64;

/// Two firings of one schedule are always further apart than this (rates by a second, cron by a
/// minute), so a binary search over time that narrows down to it has found the one firing it wants.
const SEARCH_RESOLUTION_NS: i128 = 1_000_000;

/// A run the driver must start; the project is already marked running.
pub(super) struct Fire {
    pub(super) tick: Tick,
    pub(super) run: RunId,
    pub(super) tenant_permits: Arc<Semaphore>,
}

/// What [`Queue::take_due`] found.
#[derive(Default)]
pub(super) struct Due {
    /// Runs to start.
    pub(super) fire: Vec<Fire>,
    /// Firings of projects whose previous run is still going, each with its place in the streak of
    /// firings that run has made skip so far (1 for the first).
    pub(super) skipped: Vec<(Tick, u32)>,
    /// Whether more firings are already due (the batch was full).
    pub(super) more: bool,
    /// The earliest due time still queued.
    pub(super) next: Option<Timestamp>,
}

pub(super) struct Queue {
    states: HashMap<ProjectKey, State>,
    timeline: Timeline,
    /// Manual runs waiting for the driver to start them.
    manual: Vec<Fire>,
    runs: Runs,
    registered: usize,
    paused: usize,
    /// Set while the driver shuts down, so that no manual run is queued that would never start.
    pub(super) stopping: bool,
}

#[derive(Default)]
struct State {
    /// `None` once the project was removed while a run was in progress: the state stays until that run
    /// finishes, so that adding the project again cannot start a second run next to it.
    entry: Option<Entry>,
    /// The jitter, from `jitter::offset`.
    offset: SignedDuration,
    /// The next firing, which is also in the timeline; `None` when paused or never firing again.
    pending: Option<Pending>,
    /// The latest `scheduled_at` handed out (run or skipped), so that none is handed out twice.
    last_nominal: Option<Timestamp>,
    /// The next scheduled firing is at or after this.
    backoff: Option<Timestamp>,
    running: Option<RunId>,
    /// Firings skipped since the current run started.
    skipped_during_run: u32,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    scheduled_at: Timestamp,
    due_at: Timestamp,
    trigger: Trigger,
    seq: u64,
}

/// Pending firings by due time, then by a sequence number that keeps equal due times apart and in the
/// order they were queued.
#[derive(Default)]
struct Timeline {
    slots: BTreeMap<(Timestamp, u64), ProjectKey>,
    seq: u64,
}

impl Timeline {
    fn insert(&mut self, key: &ProjectKey, scheduled_at: Timestamp, due_at: Timestamp, trigger: Trigger) -> Pending {
        self.seq += 1;
        self.slots.insert((due_at, self.seq), key.clone());
        Pending { scheduled_at, due_at, trigger, seq: self.seq }
    }

    fn remove(&mut self, pending: Pending) {
        self.slots.remove(&(pending.due_at, pending.seq));
    }
}

impl Queue {
    pub(super) fn new(per_tenant: usize) -> Self {
        Self {
            states: HashMap::new(),
            timeline: Timeline::default(),
            manual: Vec::new(),
            runs: Runs { tenants: HashMap::new(), per_tenant, last: 0, count: 0 },
            registered: 0,
            paused: 0,
            stopping: false,
        }
    }

    /// See [`super::Scheduler::upsert`].
    pub(super) fn upsert(&mut self, key: ProjectKey, entry: Entry, offset: SignedDuration, now: Timestamp) {
        let state = self.states.entry(key.clone()).or_default();
        if let Some(old) = &state.entry
            && same_timing(old, &entry)
        {
            // Nothing that decides when the project fires has changed (its URL did, say), so the firing
            // already queued stands, even one inside its jitter window.
            state.entry = Some(entry);
            return;
        }
        // A project this scheduler did not know (or had removed) is what a restart looks like, so it
        // may be owed a catch-up run; a known one has not missed anything while it was known.
        let fresh = match &state.entry {
            Some(old) => {
                self.registered -= 1;
                self.paused -= usize::from(old.paused);
                false
            }
            None => true,
        };
        self.registered += 1;
        self.paused += usize::from(entry.paused);
        if let Some(pending) = state.pending.take() {
            self.timeline.remove(pending);
        }
        state.last_nominal = state.last_nominal.max(entry.last_scheduled_at);
        state.backoff = entry.not_before;
        state.offset = offset;
        let backed_off = entry.not_before.is_some_and(|not_before| not_before > now);
        let paused = entry.paused;
        let entry = state.entry.insert(entry);
        if paused {
            return;
        }
        if fresh
            && !backed_off
            && let Some(last) = state.last_nominal
            && let Some(missed) = latest_firing(entry, last, now)
        {
            // Catch-up runs are spread by the same jitter as scheduled ones, so that a restart with
            // thousands of projects behind does not start them all in the same millisecond.
            let due_at = add(now, state.offset).unwrap_or(now);
            state.pending = Some(self.timeline.insert(&key, missed, due_at, Trigger::CatchUp));
            return;
        }
        schedule_next(state, &mut self.timeline, &key, now);
    }

    /// See [`super::Scheduler::remove`].
    pub(super) fn remove(&mut self, key: &ProjectKey) {
        let Some(state) = self.states.get_mut(key) else { return };
        let Some(entry) = state.entry.take() else { return };
        self.registered -= 1;
        self.paused -= usize::from(entry.paused);
        if let Some(pending) = state.pending.take() {
            self.timeline.remove(pending);
        }
        if state.running.is_none() {
            self.states.remove(key);
        }
    }

    /// See [`super::Scheduler::remove_tenant`]. It scans every project, which is fine for something
    /// that happens when an operator disables a tenant.
    pub(super) fn remove_tenant(&mut self, tenant: &str) {
        let keys: Vec<ProjectKey> = self.states.keys().filter(|key| &*key.tenant == tenant).cloned().collect();
        for key in &keys {
            self.remove(key);
        }
        self.runs.release_tenant(tenant);
    }

    /// See [`super::Scheduler::retain`]. It scans every project: leases change hands seldom.
    pub(super) fn retain(&mut self, keep: impl Fn(&ProjectKey) -> bool) {
        let keys: Vec<ProjectKey> = self.states.keys().filter(|key| !keep(key)).cloned().collect();
        for key in &keys {
            self.remove(key);
        }
    }

    /// See [`super::Scheduler::run_now`].
    pub(super) fn run_now(&mut self, key: &ProjectKey, now: Timestamp) -> Result<Timestamp, RunNowError> {
        if self.stopping {
            return Err(RunNowError::ShuttingDown);
        }
        let state = self.states.get_mut(key).filter(|state| state.entry.is_some()).ok_or(RunNowError::Unknown)?;
        if state.running.is_some() {
            return Err(RunNowError::AlreadyRunning);
        }
        let mut scheduled_at = truncate_to_millis(now);
        if let Some(last) = state.last_nominal
            && scheduled_at <= last
        {
            scheduled_at = add(truncate_to_millis(last), SignedDuration::from_millis(1)).unwrap_or(last);
        }
        state.last_nominal = Some(scheduled_at);
        let tick = Tick { key: key.clone(), scheduled_at, due_at: now, trigger: Trigger::Manual };
        self.manual.push(self.runs.start(state, tick));
        Ok(scheduled_at)
    }

    /// Takes up to `limit` firings due at `now` (and every queued manual run), marks the projects that
    /// will run as running, and queues each project's next firing.
    pub(super) fn take_due(&mut self, now: Timestamp, limit: usize) -> Due {
        let mut due = Due { fire: mem::take(&mut self.manual), ..Due::default() };
        while due.fire.len() + due.skipped.len() < limit {
            let Some(slot) = self.timeline.slots.first_entry() else { break };
            if slot.key().0 > now {
                break;
            }
            let key = slot.remove();
            let Some(state) = self.states.get_mut(&key) else { continue };
            let (Some(pending), Some(entry)) = (state.pending.take(), &state.entry) else { continue };
            // Firings whose nominal time is at or before `cutoff` are due by now.
            let cutoff = sub(now, state.offset);
            let mut tick =
                Tick { key, scheduled_at: pending.scheduled_at, due_at: pending.due_at, trigger: pending.trigger };
            if let Some(latest) = latest_firing(entry, pending.scheduled_at, cutoff) {
                // The driver fell behind by more than an interval (the process was stopped, or starved):
                // run the latest due firing once, as after downtime, not one tick per firing missed.
                tick.scheduled_at = latest;
                tick.due_at = add(latest, state.offset).unwrap_or(now);
                tick.trigger = Trigger::CatchUp;
            }
            let after = tick.scheduled_at.max(cutoff);
            let key = tick.key.clone();
            if state.last_nominal.is_some_and(|last| tick.scheduled_at <= last) {
                // A manual run started inside this firing's jitter window and took its time: the
                // firing has been served, and handing out its time again would make it ambiguous.
            } else if state.running.is_some() {
                state.last_nominal = Some(tick.scheduled_at);
                state.skipped_during_run = state.skipped_during_run.saturating_add(1);
                due.skipped.push((tick, state.skipped_during_run));
            } else {
                state.last_nominal = Some(tick.scheduled_at);
                due.fire.push(self.runs.start(state, tick));
            }
            schedule_next(state, &mut self.timeline, &key, after);
        }
        due.next = self.timeline.slots.first_key_value().map(|((due_at, _), _)| *due_at);
        due.more = due.next.is_some_and(|next| next <= now);
        due
    }

    /// Whether a run that just got its permits should still start: its project was not removed, and
    /// was not paused unless the run is manual.
    pub(super) fn still_wanted(&self, key: &ProjectKey, run: RunId, trigger: Trigger) -> bool {
        self.states.get(key).is_some_and(|state| {
            state.running == Some(run)
                && state.entry.as_ref().is_some_and(|entry| trigger == Trigger::Manual || !entry.paused)
        })
    }

    /// Records the end of a run (`outcome` is `None` when it never started), applying any backoff it
    /// asked for. Returns whether the earliest due time may have moved, so the driver must look again.
    pub(super) fn finish(&mut self, key: &ProjectKey, run: RunId, outcome: Option<Outcome>, now: Timestamp) -> bool {
        self.runs.release_tenant(&key.tenant);
        let Some(state) = self.states.get_mut(key) else { return false };
        if state.running != Some(run) {
            return false;
        }
        state.running = None;
        self.runs.count -= 1;
        if state.entry.is_none() {
            self.states.remove(key);
            return false;
        }
        let Some(outcome) = outcome else { return false };
        state.backoff = outcome.not_before;
        let (Some(not_before), Some(pending)) = (outcome.not_before, state.pending) else { return false };
        if pending.scheduled_at >= not_before {
            return false;
        }
        self.timeline.remove(pending);
        state.pending = None;
        let cutoff = sub(now, state.offset);
        schedule_next(state, &mut self.timeline, key, cutoff);
        true
    }

    /// Marks every manual run that the driver has not started as finished without running, for a
    /// driver that is shutting down.
    pub(super) fn drop_manual(&mut self, now: Timestamp) {
        for fire in mem::take(&mut self.manual) {
            drop(fire.tenant_permits);
            self.finish(&fire.tick.key, fire.run, None, now);
        }
    }

    pub(super) fn next_tick(&self, key: &ProjectKey) -> Option<Tick> {
        let pending = self.states.get(key)?.pending?;
        Some(Tick {
            key: key.clone(),
            scheduled_at: pending.scheduled_at,
            due_at: pending.due_at,
            trigger: pending.trigger,
        })
    }

    pub(super) fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            scheduled: self.registered - self.paused,
            paused: self.paused,
            running: self.runs.count,
            driver_alive: false,
        }
    }
}

/// Runs in progress or waiting for permits, and the semaphores of their tenants.
struct Runs {
    /// One semaphore per tenant with a run in progress or waiting, created on demand.
    tenants: HashMap<Arc<str>, Arc<Semaphore>>,
    per_tenant: usize,
    /// The id of the latest run started.
    last: RunId,
    count: usize,
}

impl Runs {
    /// Marks a project running and builds the run for the driver to start.
    fn start(&mut self, state: &mut State, tick: Tick) -> Fire {
        self.last += 1;
        self.count += 1;
        state.running = Some(self.last);
        state.skipped_during_run = 0;
        let per_tenant = self.per_tenant;
        let tenant_permits =
            self.tenants.entry(tick.key.tenant.clone()).or_insert_with(|| Arc::new(Semaphore::new(per_tenant))).clone();
        Fire { tick, run: self.last, tenant_permits }
    }

    /// Forgets a tenant's semaphore once no run holds or waits for it, so that the map does not keep
    /// every tenant that ever ran.
    fn release_tenant(&mut self, tenant: &str) {
        if self.tenants.get(tenant).is_some_and(|permits| Arc::strong_count(permits) == 1) {
            self.tenants.remove(tenant);
        }
    }
}

/// Whether two entries fire at the same times (their history aside: the scheduler knows better).
fn same_timing(old: &Entry, new: &Entry) -> bool {
    old.schedule == new.schedule
        && old.timezone == new.timezone
        && old.anchor == new.anchor
        && old.paused == new.paused
        && old.not_before == new.not_before
}

/// Queues the project's first nominal firing strictly after `after`, after its last `scheduled_at`, and
/// at or after its backoff; or nothing, if its schedule never fires again.
fn schedule_next(state: &mut State, timeline: &mut Timeline, key: &ProjectKey, after: Timestamp) {
    let Some(entry) = &state.entry else { return };
    let mut after = after.max(state.last_nominal.unwrap_or(Timestamp::MIN));
    if let Some(backoff) = state.backoff {
        after = after.max(sub(backoff, SignedDuration::from_nanos(1)));
    }
    let Some(nominal) = next_firing(entry, after) else { return };
    let Some(due_at) = add(nominal, state.offset) else { return };
    state.pending = Some(timeline.insert(key, nominal, due_at, Trigger::Schedule));
}

/// The entry's first nominal firing strictly after `after`.
fn next_firing(entry: &Entry, after: Timestamp) -> Option<Timestamp> {
    entry.schedule.next_after_anchored(entry.anchor, after, &entry.timezone)
}

/// The entry's latest nominal firing in `(after, upto]`, if any.
///
/// A binary search over time rather than a walk from `after`: `rate(1 second)` after a month of
/// downtime has millions of firings in between, and this takes about 40 steps whatever the gap. It
/// relies on the first firing after `t` never moving backwards as `t` grows.
fn latest_firing(entry: &Entry, after: Timestamp, upto: Timestamp) -> Option<Timestamp> {
    if next_firing(entry, after)? > upto {
        return None;
    }
    // Invariant: the first firing after `low` is at or before `upto`; the first after `high` is not.
    let (mut low, mut high) = (after.as_nanosecond(), upto.as_nanosecond());
    while high - low > SEARCH_RESOLUTION_NS {
        let middle = low + (high - low) / 2;
        let first = Timestamp::from_nanosecond(middle).ok().and_then(|middle| next_firing(entry, middle));
        if first.is_some_and(|first| first <= upto) {
            low = middle;
        } else {
            high = middle;
        }
    }
    next_firing(entry, Timestamp::from_nanosecond(low).ok()?)
}
