//! The driver: one task that sleeps until the earliest due firing, fires what is due, and starts one
//! task per run, which takes its tenant's permit, then a global one, then calls the runner.

use std::future::{Future, pending};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinError, JoinSet};

use super::queue::{Fire, RunId};
use super::{Outcome, ProjectKey, Runner, Shared, Trigger};

/// The most firings taken from the queue under one lock, so that a burst of due firings (every project
/// after a long pause of the process) does not hold the lock against the API for long.
const BATCH: usize = 1024;

pub(super) async fn run<R: Runner>(shared: &Arc<Shared>, runner: Arc<R>, shutdown: impl Future<Output = ()> + Send) {
    if shared.driver_alive.swap(true, Ordering::SeqCst) {
        tracing::error!("a scheduler driver is already running; this one returns at once");
        return;
    }
    let _alive = Alive(&shared.driver_alive);
    shared.queue().stopping = false;
    // Tells runs still waiting for a permit that the driver is shutting down.
    let (stop, stopped) = watch::channel(false);
    let mut runs = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        while let Some(result) = runs.try_join_next() {
            report(result);
        }
        let now = shared.clock.now();
        let due = shared.queue().take_due(now, BATCH);
        for (tick, streak) in due.skipped {
            runner.skipped(tick, streak);
        }
        for fire in due.fire {
            runs.spawn(run_one(shared.clone(), runner.clone(), fire, stopped.clone()));
        }
        if due.more {
            tokio::task::yield_now().await;
            continue;
        }
        let deadline = due.next.map(|next| shared.clock.deadline(next));
        let sleep = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => pending().await,
            }
        };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = shared.changed.notified() => {}
            Some(result) = runs.join_next(), if !runs.is_empty() => report(result),
            () = sleep => {}
        }
    }
    {
        let mut queue = shared.queue();
        queue.stopping = true;
        queue.drop_manual(shared.clock.now());
    }
    stop.send_replace(true);
    while let Some(result) = runs.join_next().await {
        report(result);
    }
}

/// One run: permits, a last check that the project still wants it, the runner.
async fn run_one<R: Runner>(shared: Arc<Shared>, runner: Arc<R>, fire: Fire, mut stopped: watch::Receiver<bool>) {
    let Fire { tick, run, tenant_permits } = fire;
    // Declared first so that it is dropped last, after the permits: finishing the run is what frees the
    // project for its next firing.
    let mut finished = Finished { shared: shared.clone(), key: tick.key.clone(), run, outcome: None };
    let permits = tokio::select! {
        biased;
        _ = stopped.wait_for(|stopped| *stopped) => None,
        permits = acquire(tenant_permits, shared.global.clone()) => permits,
    };
    let Some(permits) = permits else { return };
    if !shared.queue().still_wanted(&tick.key, run, tick.trigger) {
        return;
    }
    if tick.trigger != Trigger::Manual {
        let now = shared.clock.now();
        shared.lag.observe(now.duration_since(tick.due_at).try_into().unwrap_or_default(), now);
    }
    let outcome = runner.run(tick).await;
    drop(permits);
    finished.outcome = Some(outcome);
}

/// The tenant's permit, then a global one: in this order, so that a tenant's backlog waits in its own
/// queue and has at most its cap of runs in the global one.
async fn acquire(
    tenant: Arc<Semaphore>,
    global: Arc<Semaphore>,
) -> Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
    let tenant = tenant.acquire_owned().await.ok()?;
    let global = global.acquire_owned().await.ok()?;
    Some((tenant, global))
}

/// Logs a run task that panicked; its [`Finished`] guard has already freed the project.
fn report(result: Result<(), JoinError>) {
    if let Err(error) = result
        && error.is_panic()
    {
        tracing::error!(%error, "a scheduled run panicked");
    }
}

/// Marks a run finished when dropped, so that a run that panics, or never gets its permits, does not
/// leave its project marked running and never firing again.
struct Finished {
    shared: Arc<Shared>,
    key: ProjectKey,
    run: RunId,
    outcome: Option<Outcome>,
}

impl Drop for Finished {
    fn drop(&mut self) {
        let now = self.shared.clock.now();
        if self.shared.queue().finish(&self.key, self.run, self.outcome.take(), now) {
            self.shared.changed.notify_one();
        }
    }
}

/// Clears `driver_alive` when the driver returns or is dropped.
struct Alive<'a>(&'a AtomicBool);

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
