//! When projects fire: rates from their anchor, cron in a time zone across daylight saving changes,
//! and the per-project jitter.

use std::collections::HashSet;
use std::time::Duration;

use jiff::SignedDuration;

use super::*;

#[tokio::test(start_paused = true)]
async fn a_rate_fires_at_anchor_plus_intervals_plus_the_project_offset() {
    let clock = Clock::starting_at(at(90));
    let scheduler = Scheduler::new(SchedulerConfig::default(), clock.clone());
    let runner = Recorder::new(&clock, Duration::ZERO);
    let project = key("acme", "weather");
    // Anchored 7 s after T0, so the firings are not on round minutes either.
    scheduler.upsert(project.clone(), entry("rate(5 minutes)", "UTC", at(7)));
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, at(16 * 60)).await;
    driver.stop().await;

    let jitter = offset(&project, 10_000, "rate(5 minutes)");
    assert!(jitter < SignedDuration::from_secs(10), "{jitter:?}");
    let nominal = [at(7 + 300), at(7 + 600), at(7 + 900)];
    assert_eq!(runner.scheduled(), nominal);
    assert_eq!(runner.triggers(), [Trigger::Schedule; 3]);
    for (run, nominal) in runner.runs().iter().zip(nominal) {
        assert_eq!(run.tick.key, project);
        assert_eq!(run.tick.due_at, nominal + jitter);
        assert_eq!(run.started, nominal + jitter, "started on time");
    }
    assert!(runner.skipped().is_empty());
}

/// Runs `cron(30 2 * * ? *)` in Europe/Berlin from `from` to `until` and returns its `scheduled_at`s.
async fn berlin_half_past_two(from: &str, until: &str) -> Vec<jiff::Timestamp> {
    let clock = Clock::starting_at(ts(from));
    let scheduler = Scheduler::new(SchedulerConfig::default(), clock.clone());
    let runner = Recorder::new(&clock, Duration::ZERO);
    let project = key("acme", "nightly");
    scheduler.upsert(project.clone(), entry("cron(30 2 * * ? *)", "Europe/Berlin", ts(from)));
    let driver = Driver::start(&scheduler, &runner);
    sleep_until(&clock, ts(until)).await;
    driver.stop().await;
    let jitter = offset(&project, 10_000, "cron(30 2 * * ? *)");
    for run in runner.runs() {
        assert_eq!(run.started, run.tick.scheduled_at + jitter);
    }
    runner.scheduled()
}

#[tokio::test(start_paused = true)]
async fn cron_in_a_time_zone_skips_the_spring_forward_gap() {
    // Clocks in Berlin jump from 02:00 to 03:00 on 2025-03-30, so 02:30 does not exist that night.
    let fired = berlin_half_past_two("2025-03-28T12:00:00Z", "2025-04-01T00:00:00Z").await;
    assert_eq!(fired, [ts("2025-03-29T01:30:00Z"), ts("2025-03-31T00:30:00Z")]);
}

#[tokio::test(start_paused = true)]
async fn cron_in_a_time_zone_fires_once_when_clocks_fall_back() {
    // Clocks in Berlin go from 03:00 back to 02:00 on 2025-10-26, so 02:30 happens twice that night
    // (00:30 and 01:30 UTC): it fires at the first.
    let fired = berlin_half_past_two("2025-10-24T12:00:00Z", "2025-10-28T00:00:00Z").await;
    assert_eq!(fired, [ts("2025-10-25T00:30:00Z"), ts("2025-10-26T00:30:00Z"), ts("2025-10-27T01:30:00Z")]);
}

#[tokio::test(start_paused = true)]
async fn jitter_is_the_same_in_every_scheduler_and_spreads_projects_over_the_window() {
    let clock = Clock::starting_at(at(30));
    let first = Scheduler::new(SchedulerConfig::default(), clock.clone());
    let second = Scheduler::new(SchedulerConfig::default(), clock.clone());
    let mut offsets = HashSet::new();
    for i in 0..1_000 {
        let project = key(&format!("tenant-{}", i % 7), &format!("project-{i}"));
        first.upsert(project.clone(), entry("rate(1 minute)", "UTC", ts(T0)));
        second.upsert(project.clone(), entry("rate(1 minute)", "UTC", ts(T0)));
        let tick = first.next_tick(&project).unwrap();
        let again = second.next_tick(&project).unwrap();
        assert_eq!(tick.scheduled_at, at(60));
        assert_eq!(tick.due_at, again.due_at, "{project}");
        let jitter = tick.due_at.duration_since(tick.scheduled_at);
        assert!(jitter >= SignedDuration::ZERO && jitter < SignedDuration::from_secs(10), "{jitter:?}");
        offsets.insert(jitter);
    }
    // 1,000 projects over 10,000 possible milliseconds: nearly all distinct, none bunched.
    assert!(offsets.len() > 900, "only {} distinct offsets", offsets.len());
    assert!(offsets.iter().any(|jitter| *jitter < SignedDuration::from_secs(1)));
    assert!(offsets.iter().any(|jitter| *jitter > SignedDuration::from_secs(9)));
}

/// The offset of `acme/weather` in a 10 s window.
const PINNED_MS: i64 = 6_946;

#[test]
fn the_offset_is_fixed_and_below_both_the_window_and_the_interval() {
    let project = key("acme", "weather");
    // Pinned: a change to the hash would shift every project's phase on upgrade.
    assert_eq!(offset(&project, 10_000, "rate(1 minute)"), SignedDuration::from_millis(PINNED_MS));
    assert_eq!(offset(&project, 10_000, "rate(1 second)"), SignedDuration::from_millis(PINNED_MS % 1_000));
    assert_eq!(offset(&project, 0, "rate(1 minute)"), SignedDuration::ZERO);
    // A cron that fires once has no interval: the whole window applies.
    assert_eq!(offset(&project, 10_000, "cron(0 12 1 1 ? 2030)"), SignedDuration::from_millis(PINNED_MS));
    // Tenant and project are hashed apart: moving a character between them changes the offset.
    assert_ne!(
        offset(&key("ab", "c"), 1 << 40, "rate(1000 days)"),
        offset(&key("a", "bc"), 1 << 40, "rate(1000 days)")
    );
}
