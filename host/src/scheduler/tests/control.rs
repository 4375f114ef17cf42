//! Changes while the driver runs (schedule changes, pause and resume, removal), and scale.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::scheduler::{RunNowError, SchedulerStats};

#[tokio::test(start_paused = true)]
async fn a_schedule_change_takes_effect_at_once() {
    let clock = Clock::starting_at(at(30));
    let scheduler = Scheduler::new(no_jitter(64, 8), clock.clone());
    let runner = Recorder::new(&clock, Duration::ZERO);
    let project = key("acme", "weather");
    scheduler.upsert(project.clone(), entry("rate(1 hour)", "UTC", ts(T0)));
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(10 * 60)).await;
    assert!(runner.runs().is_empty());

    // The driver is asleep until 01:00; the new schedule, anchored now, fires a minute from now.
    scheduler.upsert(project.clone(), entry("rate(1 minute)", "UTC", at(10 * 60)));
    sleep_until(&clock, at(12 * 60 + 30)).await;
    assert_eq!(runner.scheduled(), [at(11 * 60), at(12 * 60)]);
    assert_eq!(runner.runs()[0].started, at(11 * 60));
    assert_eq!(scheduler.next_tick(&project).unwrap().scheduled_at, at(13 * 60));
    driver.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_schedule_change_during_a_run_applies_to_the_next_firing_without_overlap() {
    let clock = Clock::starting_at(at(30));
    let scheduler = Scheduler::new(no_jitter(64, 8), clock.clone());
    let runner = Recorder::new(&clock, Duration::from_secs(90));
    let project = key("acme", "weather");
    scheduler.upsert(project.clone(), entry("rate(1 minute)", "UTC", ts(T0)));
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(70)).await;
    assert_eq!(scheduler.stats().running, 1);

    scheduler.upsert(project.clone(), entry("rate(30 seconds)", "UTC", at(70)));
    sleep_until(&clock, at(170)).await;
    // The run from 01:00 lasts until 02:30: the new schedule's 01:40 and 02:10 find it running.
    assert_eq!(runner.skipped(), [at(100), at(130)]);
    assert_eq!(runner.scheduled(), [at(60), at(160)]);
    runner.assert_no_overlap();
    driver.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_upsert_that_changes_no_timing_keeps_the_pending_firing() {
    let clock = Clock::starting_at(at(65));
    let scheduler = Scheduler::new(SchedulerConfig::default(), clock.clone());
    let project = key("acme", "weather");
    let mut registered = entry("rate(1 minute)", "UTC", ts(T0));
    registered.last_scheduled_at = Some(at(60));
    scheduler.upsert(project.clone(), registered.clone());
    let before = scheduler.next_tick(&project).unwrap();
    // The project's URL changed, say: the same timing, and history that lags behind the scheduler.
    registered.last_scheduled_at = Some(at(0));
    scheduler.upsert(project.clone(), registered);
    let after = scheduler.next_tick(&project).unwrap();
    assert_eq!((after.scheduled_at, after.due_at, after.trigger), (before.scheduled_at, before.due_at, before.trigger));
    assert_eq!(after.scheduled_at, at(120));
}

#[tokio::test(start_paused = true)]
async fn pause_and_resume_take_effect_at_once_without_catching_up() {
    let clock = Clock::starting_at(at(30));
    let scheduler = Scheduler::new(no_jitter(64, 8), clock.clone());
    let runner = Recorder::new(&clock, Duration::ZERO);
    let project = key("acme", "weather");
    scheduler.upsert(project.clone(), entry("rate(1 minute)", "UTC", ts(T0)));
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(150)).await;
    assert_eq!(runner.scheduled(), [at(60), at(120)]);

    let mut paused = entry("rate(1 minute)", "UTC", ts(T0));
    paused.paused = true;
    paused.last_scheduled_at = Some(at(120));
    scheduler.upsert(project.clone(), paused.clone());
    assert_eq!(scheduler.stats(), SchedulerStats { scheduled: 0, paused: 1, running: 0, driver_alive: true });
    assert!(scheduler.next_tick(&project).is_none());
    sleep_until(&clock, at(10 * 60 + 30)).await;
    assert_eq!(runner.runs().len(), 2, "nothing fires while paused");

    let mut resumed = paused;
    resumed.paused = false;
    scheduler.upsert(project.clone(), resumed);
    sleep_until(&clock, at(11 * 60 + 30)).await;
    assert_eq!(runner.scheduled(), [at(60), at(120), at(11 * 60)]);
    assert_eq!(runner.triggers(), [Trigger::Schedule; 3], "no catch-up for the paused time");
    driver.stop().await;
}

#[tokio::test(start_paused = true)]
async fn remove_and_remove_tenant_stop_firing() {
    let clock = Clock::starting_at(at(30));
    let scheduler = Scheduler::new(no_jitter(64, 8), clock.clone());
    let runner = Recorder::new(&clock, Duration::ZERO);
    let projects = [key("a", "1"), key("a", "2"), key("b", "1")];
    for project in &projects {
        scheduler.upsert(project.clone(), entry("rate(1 minute)", "UTC", ts(T0)));
    }
    let driver = Driver::start(&scheduler, &runner);
    let ran = |since: Timestamp| -> Vec<ProjectKey> {
        let mut keys: Vec<ProjectKey> =
            runner.runs().into_iter().filter(|run| run.tick.scheduled_at >= since).map(|run| run.tick.key).collect();
        keys.sort();
        keys
    };
    sleep_until(&clock, at(90)).await;
    assert_eq!(ran(at(60)), projects);

    scheduler.remove(&projects[0]);
    sleep_until(&clock, at(150)).await;
    assert_eq!(ran(at(120)), [projects[1].clone(), projects[2].clone()]);

    scheduler.remove_tenant("a");
    sleep_until(&clock, at(210)).await;
    assert_eq!(ran(at(180)), [projects[2].clone()]);
    assert_eq!(scheduler.stats().scheduled, 1);
    assert_eq!(scheduler.run_now(&projects[1]), Err(RunNowError::Unknown));
    driver.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_schedule_that_never_fires_again_stays_registered_and_idle() {
    let clock = Clock::starting_at(at(30));
    let scheduler = Scheduler::new(SchedulerConfig::default(), clock.clone());
    let project = key("acme", "2020-only");
    let mut restored = entry("cron(0 12 * * ? 2020)", "UTC", ts(T0));
    restored.last_scheduled_at = Some(ts("2020-12-30T12:00:00Z"));
    scheduler.upsert(project.clone(), restored);
    // Its catch-up is the last firing it ever had; after that, nothing.
    let catch_up = scheduler.next_tick(&project).unwrap();
    assert_eq!((catch_up.scheduled_at, catch_up.trigger), (ts("2020-12-31T12:00:00Z"), Trigger::CatchUp));

    let runner = Recorder::new(&clock, Duration::ZERO);
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(60)).await;
    assert_eq!(runner.scheduled(), [ts("2020-12-31T12:00:00Z")]);
    assert!(scheduler.next_tick(&project).is_none());
    assert_eq!(scheduler.stats().scheduled, 1);
    driver.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_hundred_thousand_projects_need_no_task_each() {
    let clock = Clock::starting_at(at(30 * 60));
    let scheduler = Scheduler::new(SchedulerConfig::default(), clock.clone());
    let runner = Recorder::new(&clock, Duration::ZERO);
    for tenant in 0..100 {
        let tenant = format!("tenant-{tenant}");
        for project in 0..1_000 {
            scheduler.upsert(key(&tenant, &format!("project-{project}")), entry("rate(1 hour)", "UTC", ts(T0)));
        }
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(45 * 60)).await;
    assert_eq!(scheduler.stats().scheduled, 100_000);
    assert_eq!(metrics.num_alive_tasks(), before + 1, "one driver, no task per project");

    // Every project fires once at 01:00, spread over the 10 s jitter window.
    sleep_until(&clock, at(3600 + 11)).await;
    assert_eq!(runner.runs().len(), 100_000);
    let alive = runner.max_alive_tasks.load(Ordering::SeqCst);
    assert!(alive < 100, "{alive} tasks alive during the firings");
    assert_eq!(metrics.num_alive_tasks(), before + 1);
    driver.stop().await;
}
