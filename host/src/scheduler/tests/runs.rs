//! What happens around runs: overlap, catch-up, the caps, backoff, manual runs and shutdown.

use std::time::Duration;

use jiff::SignedDuration;

use super::*;
use crate::scheduler::{RunNowError, SchedulerStats};

#[tokio::test(start_paused = true)]
async fn a_run_longer_than_the_interval_skips_ticks_and_never_overlaps() {
    let clock = Clock::starting_at(at(1));
    let scheduler = Scheduler::new(no_jitter(64, 8), clock.clone());
    // Each run takes two and a half intervals.
    let runner = Recorder::new(&clock, Duration::from_secs(150));
    scheduler.upsert(key("acme", "slow"), entry("rate(1 minute)", "UTC", ts(T0)));
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(6 * 60 + 30)).await;

    // 60 runs until 210, 240 until 390; the ticks in between find it running.
    assert_eq!(runner.scheduled(), [at(60), at(240)]);
    assert_eq!(runner.skipped(), [at(120), at(180), at(300), at(360)]);
    // Each run's streak counts from 1 again.
    assert_eq!(runner.streaks(), [1, 2, 1, 2]);
    assert_eq!(runner.runs()[1].started, at(240));
    runner.assert_no_overlap();
    assert_eq!(runner.max_current(), 1);
    driver.stop().await;
}

#[tokio::test(start_paused = true)]
async fn after_an_hour_of_downtime_one_catch_up_runs_for_the_latest_missed_minute() {
    let clock = Clock::starting_at(at(2 * 3600 + 30));
    let scheduler = Scheduler::new(SchedulerConfig::default(), clock.clone());
    let runner = Recorder::new(&clock, Duration::ZERO);
    let project = key("acme", "weather");
    let mut restored = entry("rate(1 minute)", "UTC", ts(T0));
    // The last run was an hour before the restart: sixty firings were missed.
    restored.last_scheduled_at = Some(at(3600));
    scheduler.upsert(project.clone(), restored);
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(2 * 3600 + 2 * 60 + 30)).await;
    driver.stop().await;

    let jitter = offset(&project, 10_000, "rate(1 minute)");
    assert_eq!(runner.scheduled(), [at(2 * 3600), at(2 * 3600 + 60), at(2 * 3600 + 120)]);
    assert_eq!(runner.triggers(), [Trigger::CatchUp, Trigger::Schedule, Trigger::Schedule]);
    let catch_up = &runner.runs()[0];
    assert_eq!(catch_up.tick.due_at, at(2 * 3600 + 30) + jitter, "spread by the project's jitter");
    assert_eq!(catch_up.started, catch_up.tick.due_at);
    assert_eq!(runner.runs()[1].started, at(2 * 3600 + 60) + jitter);
}

#[tokio::test(start_paused = true)]
async fn catch_up_finds_the_latest_missed_firing_without_walking_every_one() {
    let clock = Clock::starting_at(ts("2025-03-01T10:20:30.250Z"));
    let scheduler = Scheduler::new(no_jitter(64, 8), clock.clone());
    let cases = [
        // A month of `rate(1 second)` is 2.6 million missed firings.
        ("rate(1 second)", "UTC", "2025-01-30T00:00:00Z", "2025-03-01T10:20:30Z"),
        ("cron(* * * * ? *)", "UTC", "2024-03-01T00:00:00Z", "2025-03-01T10:20:00Z"),
        ("cron(15 9 ? * MON-FRI *)", "America/New_York", "2025-01-01T00:00:00Z", "2025-02-28T14:15:00Z"),
    ];
    for (i, (expr, timezone, last, latest)) in cases.into_iter().enumerate() {
        let project = key("acme", &i.to_string());
        let mut restored = entry(expr, timezone, ts("2025-01-01T00:00:00Z"));
        restored.last_scheduled_at = Some(ts(last));
        scheduler.upsert(project.clone(), restored);
        let tick = scheduler.next_tick(&project).unwrap();
        assert_eq!((tick.scheduled_at, tick.trigger), (ts(latest), Trigger::CatchUp), "{expr}");
    }
    // Nothing missed since the last run: no catch-up, the next firing after now.
    let project = key("acme", "up-to-date");
    let mut restored = entry("rate(1 hour)", "UTC", ts("2025-01-01T00:00:00Z"));
    restored.last_scheduled_at = Some(ts("2025-03-01T10:00:00Z"));
    scheduler.upsert(project.clone(), restored);
    let tick = scheduler.next_tick(&project).unwrap();
    assert_eq!((tick.scheduled_at, tick.trigger), (ts("2025-03-01T11:00:00Z"), Trigger::Schedule));
}

#[tokio::test(start_paused = true)]
async fn the_global_cap_bounds_runs_in_progress() {
    let clock = Clock::starting_at(at(30));
    let scheduler = Scheduler::new(no_jitter(3, 8), clock.clone());
    let runner = Recorder::new(&clock, Duration::from_secs(1));
    for tenant in 0..4 {
        for project in 0..10 {
            scheduler.upsert(key(&tenant.to_string(), &project.to_string()), entry("rate(1 hour)", "UTC", ts(T0)));
        }
    }
    let driver = Driver::start(&scheduler, &runner);
    // 40 runs of 1 s, 3 at a time: the last starts 13 s after they were due.
    sleep_until(&clock, at(3600 + 13) + SignedDuration::from_millis(500)).await;
    assert_eq!(runner.runs().len(), 40);
    assert_eq!(runner.max_current(), 3);
    assert_eq!(runner.runs().iter().map(|run| run.started).max(), Some(at(3600 + 13)));
    driver.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_tenant_with_a_backlog_delays_another_tenant_by_at_most_one_run() {
    let clock = Clock::starting_at(at(30));
    // The global cap equals tenant A's, so A alone could fill every slot.
    let scheduler = Scheduler::new(no_jitter(2, 2), clock.clone());
    let runner = Recorder::new(&clock, Duration::from_secs(1));
    for project in 0..100 {
        scheduler.upsert(key("a", &project.to_string()), entry("rate(1 minute)", "UTC", ts(T0)));
    }
    // Registered last, so its firing is queued behind all of A's.
    scheduler.upsert(key("b", "only"), entry("rate(1 minute)", "UTC", ts(T0)));
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(60 + 5)).await;

    let runs = runner.runs();
    let b = runs.iter().find(|run| &*run.tick.key.tenant == "b").expect("b ran");
    assert_eq!(b.tick.due_at, at(60));
    assert_eq!(b.started, at(61), "b waits for one of a's runs, not for a's backlog");
    assert_eq!(runner.max_current(), 2);
    driver.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_run_asking_for_backoff_moves_the_next_firing() {
    let clock = Clock::starting_at(at(30));
    let scheduler = Scheduler::new(no_jitter(64, 8), clock.clone());
    let runner = Recorder::new(&clock, Duration::from_secs(2));
    // The first run is told to retry after 3.5 minutes; later runs succeed.
    runner.set_outcome(|tick| Outcome {
        not_before: (tick.scheduled_at == at(60)).then(|| at(60) + SignedDuration::from_secs(210)),
    });
    let project = key("acme", "failing");
    scheduler.upsert(project.clone(), entry("rate(1 minute)", "UTC", ts(T0)));
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(6 * 60 + 30)).await;
    // The first firing at or after 04:30 is 05:00; the ones in between neither run nor count as skipped.
    assert_eq!(runner.scheduled(), [at(60), at(300), at(360)]);
    assert!(runner.skipped().is_empty());
    driver.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_entry_carries_backoff_across_a_restart() {
    let clock = Clock::starting_at(at(30));
    let scheduler = Scheduler::new(no_jitter(64, 8), clock.clone());
    let project = key("acme", "failing");
    let mut restored = entry("rate(1 minute)", "UTC", ts(T0));
    restored.last_scheduled_at = Some(ts(T0) - SignedDuration::from_secs(3600));
    restored.not_before = Some(at(600));
    scheduler.upsert(project.clone(), restored);
    // Backed off: no catch-up, and the first firing is the one at 10:00 exactly ("at or after").
    let tick = scheduler.next_tick(&project).unwrap();
    assert_eq!((tick.scheduled_at, tick.trigger), (at(600), Trigger::Schedule));
}

#[tokio::test(start_paused = true)]
async fn run_now_starts_a_manual_run_even_when_paused_and_refuses_a_second() {
    let clock = Clock::starting_at(at(30) + SignedDuration::from_micros(1_500));
    let scheduler = Scheduler::new(no_jitter(64, 8), clock.clone());
    let runner = Recorder::new(&clock, Duration::from_secs(10));
    let project = key("acme", "weather");
    assert_eq!(scheduler.run_now(&project), Err(RunNowError::Unknown));
    let mut paused = entry("rate(1 hour)", "UTC", ts(T0));
    paused.paused = true;
    scheduler.upsert(project.clone(), paused);
    let driver = Driver::start(&scheduler, &runner);

    // Now in whole milliseconds.
    let first = scheduler.run_now(&project).unwrap();
    assert_eq!(first, at(30) + SignedDuration::from_millis(1));
    assert_eq!(scheduler.run_now(&project), Err(RunNowError::AlreadyRunning));
    runner.finished.notified().await;
    assert_eq!(runner.runs().len(), 1);
    let run = &runner.runs()[0];
    assert_eq!(
        (run.tick.scheduled_at, run.tick.trigger, run.tick.due_at),
        (first, Trigger::Manual, clock.now() - SignedDuration::from_secs(10))
    );

    // Two manual runs in the same millisecond still get different times.
    runner.set_duration(Duration::ZERO);
    let second = scheduler.run_now(&project).unwrap();
    runner.finished.notified().await;
    let third = scheduler.run_now(&project).unwrap();
    runner.finished.notified().await;
    assert_eq!(second, at(40) + SignedDuration::from_millis(1));
    assert_eq!(third, second + SignedDuration::from_millis(1));
    assert_eq!(runner.scheduled(), [first, second, third]);
    assert_eq!(scheduler.stats().running, 0);
    driver.stop().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_runs_in_progress_and_drops_those_waiting() {
    let clock = Clock::starting_at(at(30));
    let scheduler = Scheduler::new(no_jitter(1, 8), clock.clone());
    let runner = Recorder::new(&clock, Duration::from_secs(30));
    scheduler.upsert(key("acme", "one"), entry("rate(1 minute)", "UTC", ts(T0)));
    scheduler.upsert(key("acme", "two"), entry("rate(1 minute)", "UTC", ts(T0)));
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(65)).await;
    assert_eq!(scheduler.stats(), SchedulerStats { scheduled: 2, paused: 0, running: 2, driver_alive: true });

    driver.stop().await;
    assert_eq!(clock.now(), at(90), "returned when the run in progress finished");
    assert_eq!(runner.runs().len(), 1, "the run waiting for a permit never started");
    assert_eq!(scheduler.stats(), SchedulerStats { scheduled: 2, paused: 0, running: 0, driver_alive: false });
    assert_eq!(scheduler.run_now(&key("acme", "one")), Err(RunNowError::ShuttingDown));
}

/// Offered more than the caps let it do, the scheduler starts runs late, and says it is
/// saturated; once the load is gone, it says so too.
#[tokio::test(start_paused = true)]
async fn runs_that_start_late_make_the_scheduler_saturated_until_the_load_goes() {
    let clock = Clock::starting_at(at(1));
    // One run at a time, each taking a second: twenty projects every 10 s need twice that.
    let scheduler = Scheduler::new(no_jitter(1, 1), clock.clone());
    let runner = Recorder::new(&clock, Duration::from_secs(1));
    let keys: Vec<_> = (0..20).map(|i| key("acme", &format!("p{i}"))).collect();
    for project in &keys {
        scheduler.upsert(project.clone(), entry("rate(10 seconds)", "UTC", ts(T0)));
    }
    let driver = Driver::start(&scheduler, &runner);
    assert!(!scheduler.load().saturated, "nothing started yet");
    sleep_until(&clock, at(60)).await;
    let load = scheduler.load();
    assert!(load.saturated && load.recent_lag > Duration::from_secs(1), "{load:?}");
    assert!(load.waiting > 0, "runs wait for the one permit: {load:?}");

    for project in &keys {
        scheduler.remove(project);
    }
    sleep_until(&clock, at(120)).await;
    let load = scheduler.load();
    assert_eq!((load.saturated, load.waiting), (false, 0), "{load:?}");
    driver.stop().await;
}
