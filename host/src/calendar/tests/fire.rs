//! When schedules fire: rates and their anchor, cron fields and wildcards, time zones, daylight
//! saving transitions, year bounds, and the shortest interval.

use std::time::Duration;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::{schedule, ts, zone};
use crate::calendar::Schedule;
use crate::calendar::cron::{Cron, DayOfMonth, DayOfWeek, Days};

#[test]
fn rates_fire_on_multiples_of_the_interval_from_the_epoch() {
    let cases = [
        ("rate(5 minutes)", "2026-01-01T00:02:30Z", "2026-01-01T00:05:00Z"),
        // Strictly after: a firing exactly at `after` is not the next one.
        ("rate(5 minutes)", "2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z"),
        ("rate(5 minutes)", "2026-01-01T00:04:59.999999999Z", "2026-01-01T00:05:00Z"),
        ("rate(1 second)", "2026-01-01T00:00:00.5Z", "2026-01-01T00:00:01Z"),
        ("rate(30 seconds)", "2026-01-01T00:00:31Z", "2026-01-01T00:01:00Z"),
        ("rate(1 hour)", "2026-06-15T10:59:00Z", "2026-06-15T11:00:00Z"),
        ("rate(1 day)", "2026-06-15T10:00:00Z", "2026-06-16T00:00:00Z"),
        // 7 days from the epoch, a Thursday, lands on Thursdays.
        ("rate(7 days)", "2026-01-01T00:00:00Z", "2026-01-08T00:00:00Z"),
        ("rate(90 minutes)", "1970-01-01T00:00:00Z", "1970-01-01T01:30:00Z"),
        // Before the epoch the first firing is the epoch itself.
        ("rate(1 minute)", "1969-12-31T23:00:00Z", "1970-01-01T00:00:00Z"),
    ];
    for (expr, after, expected) in cases {
        let next = schedule(expr).next_after(ts(after), &TimeZone::UTC);
        assert_eq!(next, Some(ts(expected)), "{expr} after {after}");
    }
}

#[test]
fn rates_fire_from_their_anchor_and_never_before_it() {
    let anchor = ts("2026-03-01T09:17:23Z");
    let cases = [
        ("rate(1 hour)", "2026-03-01T09:17:23Z", "2026-03-01T10:17:23Z"),
        ("rate(1 hour)", "2026-03-02T00:00:00Z", "2026-03-02T00:17:23Z"),
        ("rate(15 minutes)", "2026-03-01T09:30:00Z", "2026-03-01T09:32:23Z"),
        // Before the anchor, the anchor is the first firing, as with an EventBridge start date.
        ("rate(1 day)", "2020-01-01T00:00:00Z", "2026-03-01T09:17:23Z"),
        ("rate(1 day)", "2026-03-01T09:17:22Z", "2026-03-01T09:17:23Z"),
    ];
    for (expr, after, expected) in cases {
        let next = schedule(expr).next_after_anchored(anchor, ts(after), &TimeZone::UTC);
        assert_eq!(next, Some(ts(expected)), "{expr} after {after}");
    }
}

#[test]
fn rates_ignore_the_time_zone_and_daylight_saving_time() {
    // A day is 24 hours: across New York's spring-forward night the wall-clock time moves by an hour.
    let daily = schedule("rate(1 day)");
    let new_york = zone("America/New_York");
    let anchor = ts("2026-03-07T14:00:00Z");
    let next = daily.next_after_anchored(anchor, ts("2026-03-07T14:00:00Z"), &new_york).unwrap();
    assert_eq!(next, ts("2026-03-08T14:00:00Z"));
    assert_eq!(next.to_zoned(new_york.clone()).hour(), 10, "09:00 EST becomes 10:00 EDT");
    assert_eq!(daily.next_after_anchored(anchor, ts("2026-03-07T14:00:00Z"), &TimeZone::UTC), Some(next));
}

#[test]
fn rates_beyond_the_representable_range_never_fire() {
    let huge = schedule("rate(4294967295 days)");
    assert_eq!(huge.next_after(ts("2026-01-01T00:00:00Z"), &TimeZone::UTC), None);
    let last = Timestamp::MAX;
    assert_eq!(schedule("rate(1 second)").next_after(last, &TimeZone::UTC), None);
}

/// `(expression, zone, after, expected next firing)`, with `None` for "never again".
type Case = (&'static str, &'static str, &'static str, Option<&'static str>);

const CRON_CASES: &[Case] = &[
    // Plain times, strictly after.
    ("cron(0 12 * * ? *)", "UTC", "2026-01-01T11:59:59Z", Some("2026-01-01T12:00:00Z")),
    ("cron(0 12 * * ? *)", "UTC", "2026-01-01T12:00:00Z", Some("2026-01-02T12:00:00Z")),
    ("cron(0 12 * * ? *)", "UTC", "2026-01-01T12:00:00.000000001Z", Some("2026-01-02T12:00:00Z")),
    ("cron(* * * * ? *)", "UTC", "2026-01-01T12:00:30Z", Some("2026-01-01T12:01:00Z")),
    ("cron(59 23 31 12 ? *)", "UTC", "2026-06-01T00:00:00Z", Some("2026-12-31T23:59:00Z")),
    // Steps from *, from a value and from a range.
    ("cron(0/15 * * * ? *)", "UTC", "2026-01-01T10:07:00Z", Some("2026-01-01T10:15:00Z")),
    ("cron(*/20 * * * ? *)", "UTC", "2026-01-01T10:41:00Z", Some("2026-01-01T11:00:00Z")),
    ("cron(5/20 * * * ? *)", "UTC", "2026-01-01T10:46:00Z", Some("2026-01-01T11:05:00Z")),
    ("cron(10-50/15 * * * ? *)", "UTC", "2026-01-01T10:41:00Z", Some("2026-01-01T11:10:00Z")),
    ("cron(0 8-17/4 * * ? *)", "UTC", "2026-01-01T12:00:00Z", Some("2026-01-01T16:00:00Z")),
    ("cron(0 8-17/4 * * ? *)", "UTC", "2026-01-01T16:00:00Z", Some("2026-01-02T08:00:00Z")),
    ("cron(0 0 1/10 * ? *)", "UTC", "2026-01-21T00:00:00Z", Some("2026-01-31T00:00:00Z")),
    ("cron(0 0 1 1/5 ? *)", "UTC", "2026-02-01T00:00:00Z", Some("2026-06-01T00:00:00Z")),
    ("cron(0 0 1 1 ? 2030/10)", "UTC", "2026-01-01T00:00:00Z", Some("2030-01-01T00:00:00Z")),
    ("cron(0 0 1 1 ? 2030/10)", "UTC", "2030-01-01T00:00:00Z", Some("2040-01-01T00:00:00Z")),
    // Lists and names.
    ("cron(0 9 ? * MON-FRI *)", "UTC", "2026-01-02T10:00:00Z", Some("2026-01-05T09:00:00Z")),
    ("cron(0 9 ? * SAT,SUN *)", "UTC", "2026-01-05T10:00:00Z", Some("2026-01-10T09:00:00Z")),
    ("cron(0 9 ? * 1 *)", "UTC", "2026-01-05T10:00:00Z", Some("2026-01-11T09:00:00Z")),
    ("cron(0 12 * JAN,JUL ? *)", "UTC", "2026-02-01T00:00:00Z", Some("2026-07-01T12:00:00Z")),
    ("cron(0 12 15 * ? *)", "UTC", "2026-01-15T12:00:00Z", Some("2026-02-15T12:00:00Z")),
    ("cron(0 12 31 * ? *)", "UTC", "2026-03-31T12:00:00Z", Some("2026-05-31T12:00:00Z")),
    ("cron(0 12 29 2 ? *)", "UTC", "2026-01-01T00:00:00Z", Some("2028-02-29T12:00:00Z")),
    ("cron(0 12 29 2 ? *)", "UTC", "2096-03-01T00:00:00Z", Some("2104-02-29T12:00:00Z")),
    // L and W in day-of-month.
    ("cron(0 12 L * ? *)", "UTC", "2026-02-01T00:00:00Z", Some("2026-02-28T12:00:00Z")),
    ("cron(0 12 L * ? *)", "UTC", "2028-02-01T00:00:00Z", Some("2028-02-29T12:00:00Z")),
    ("cron(0 12 L * ? *)", "UTC", "2026-04-30T12:00:00Z", Some("2026-05-31T12:00:00Z")),
    // May 2026 ends on a Sunday, January 2026 on a Saturday: both move back to Friday.
    ("cron(0 12 LW * ? *)", "UTC", "2026-05-01T00:00:00Z", Some("2026-05-29T12:00:00Z")),
    ("cron(0 12 LW * ? *)", "UTC", "2026-01-01T00:00:00Z", Some("2026-01-30T12:00:00Z")),
    ("cron(0 12 LW * ? *)", "UTC", "2026-06-01T00:00:00Z", Some("2026-06-30T12:00:00Z")),
    // 15 August 2026 is a Saturday (Friday the 14th is nearest), 15 March a Sunday (Monday the 16th).
    ("cron(0 12 15W * ? *)", "UTC", "2026-08-01T00:00:00Z", Some("2026-08-14T12:00:00Z")),
    ("cron(0 12 15W * ? *)", "UTC", "2026-03-01T00:00:00Z", Some("2026-03-16T12:00:00Z")),
    ("cron(0 12 15W * ? *)", "UTC", "2026-04-01T00:00:00Z", Some("2026-04-15T12:00:00Z")),
    // 1 August 2026 is a Saturday: the nearest weekday in the month is Monday the 3rd, not July 31.
    ("cron(0 12 1W * ? *)", "UTC", "2026-07-31T00:00:00Z", Some("2026-08-03T12:00:00Z")),
    ("cron(0 12 1W * ? *)", "UTC", "2026-01-31T00:00:00Z", Some("2026-02-02T12:00:00Z")),
    // 31W: no firing in 30-day months; 31 May 2026 is a Sunday, so Friday the 29th.
    ("cron(0 12 31W * ? *)", "UTC", "2026-04-01T00:00:00Z", Some("2026-05-29T12:00:00Z")),
    ("cron(0 12 30W * ? *)", "UTC", "2026-02-01T00:00:00Z", Some("2026-03-30T12:00:00Z")),
    // L and # in day-of-week.
    ("cron(0 12 ? * L *)", "UTC", "2026-01-01T00:00:00Z", Some("2026-01-03T12:00:00Z")),
    ("cron(0 12 ? * 6L *)", "UTC", "2026-01-01T00:00:00Z", Some("2026-01-30T12:00:00Z")),
    ("cron(0 12 ? * FRIL *)", "UTC", "2026-01-30T12:00:00Z", Some("2026-02-27T12:00:00Z")),
    ("cron(0 12 ? * 3#2 *)", "UTC", "2026-01-01T00:00:00Z", Some("2026-01-13T12:00:00Z")),
    ("cron(0 12 ? * TUE#2 *)", "UTC", "2026-01-13T12:00:00Z", Some("2026-02-10T12:00:00Z")),
    ("cron(0 12 ? * 5#1 *)", "UTC", "2026-01-01T12:00:00Z", Some("2026-02-05T12:00:00Z")),
    // The fifth Monday: the next month that has one after February 2026 is March (2, 9, ..., 30).
    ("cron(0 12 ? * 2#5 *)", "UTC", "2026-02-01T00:00:00Z", Some("2026-03-30T12:00:00Z")),
    // Years bound the search.
    ("cron(0 0 1 1 ? 2020)", "UTC", "2026-01-01T00:00:00Z", None),
    ("cron(0 0 1 1 ? 2020)", "UTC", "2019-06-01T00:00:00Z", Some("2020-01-01T00:00:00Z")),
    ("cron(0 0 1 1 ? 2030)", "UTC", "2026-01-01T00:00:00Z", Some("2030-01-01T00:00:00Z")),
    ("cron(15 10 ? * 6L 2002-2005)", "UTC", "2026-01-01T00:00:00Z", None),
    ("cron(59 23 31 12 ? *)", "UTC", "2199-12-31T23:58:00Z", Some("2199-12-31T23:59:00Z")),
    ("cron(59 23 31 12 ? *)", "UTC", "2199-12-31T23:59:00Z", None),
    ("cron(* * * * ? *)", "UTC", "2300-01-01T00:00:00Z", None),
    ("cron(0 0 1 1 ? *)", "UTC", "1960-06-01T00:00:00Z", Some("1970-01-01T00:00:00Z")),
    // Time zones: the wall-clock time is the zone's, whatever its offset that day.
    ("cron(0 9 * * ? *)", "Europe/Berlin", "2026-01-15T00:00:00Z", Some("2026-01-15T08:00:00Z")),
    ("cron(0 9 * * ? *)", "Europe/Berlin", "2026-07-15T00:00:00Z", Some("2026-07-15T07:00:00Z")),
    ("cron(0 9 * * ? *)", "Asia/Kolkata", "2026-01-15T00:00:00Z", Some("2026-01-15T03:30:00Z")),
    ("cron(0 9 * * ? *)", "Asia/Kolkata", "2026-01-15T03:30:00Z", Some("2026-01-16T03:30:00Z")),
    ("cron(0 9 * * ? *)", "Asia/Kathmandu", "2026-01-15T00:00:00Z", Some("2026-01-15T03:15:00Z")),
    ("cron(0 1 * * ? *)", "America/Los_Angeles", "2026-01-15T10:00:00Z", Some("2026-01-16T09:00:00Z")),
    // Day fields are the zone's days: Monday 00:30 in Tokyo is Sunday 15:30 UTC.
    ("cron(30 0 ? * MON *)", "Asia/Tokyo", "2026-01-01T00:00:00Z", Some("2026-01-04T15:30:00Z")),
    ("cron(0 0 1 1 ? 2027)", "Pacific/Kiritimati", "2026-06-01T00:00:00Z", Some("2026-12-31T10:00:00Z")),
    // Spring forward in New York, 2026-03-08: 02:00 EST jumps to 03:00 EDT. A daily 02:30 does not
    // exist that day, so it is skipped (EventBridge Scheduler skips it too).
    ("cron(30 2 * * ? *)", "America/New_York", "2026-03-07T07:30:00Z", Some("2026-03-09T06:30:00Z")),
    ("cron(30 2 * * ? *)", "America/New_York", "2026-03-07T07:29:00Z", Some("2026-03-07T07:30:00Z")),
    ("cron(0 * * * ? *)", "America/New_York", "2026-03-08T06:00:00Z", Some("2026-03-08T07:00:00Z")),
    ("cron(0/15 * * * ? *)", "America/New_York", "2026-03-08T06:45:00Z", Some("2026-03-08T07:00:00Z")),
    ("cron(0 3 * * ? *)", "America/New_York", "2026-03-08T06:59:00Z", Some("2026-03-08T07:00:00Z")),
    ("cron(59 1 * * ? *)", "America/New_York", "2026-03-08T06:00:00Z", Some("2026-03-08T06:59:00Z")),
    // Fall back in New York, 2026-11-01: 02:00 EDT returns to 01:00 EST. A daily 01:30 fires once,
    // at the first 01:30 (EDT), and not again at the second (EST).
    ("cron(30 1 * * ? *)", "America/New_York", "2026-11-01T04:00:00Z", Some("2026-11-01T05:30:00Z")),
    ("cron(30 1 * * ? *)", "America/New_York", "2026-11-01T05:30:00Z", Some("2026-11-02T06:30:00Z")),
    ("cron(30 1 * * ? *)", "America/New_York", "2026-11-01T06:10:00Z", Some("2026-11-02T06:30:00Z")),
    ("cron(30 1 * * ? *)", "America/New_York", "2026-11-01T06:29:00Z", Some("2026-11-02T06:30:00Z")),
    ("cron(0 2 * * ? *)", "America/New_York", "2026-11-01T05:59:00Z", Some("2026-11-01T07:00:00Z")),
    // Berlin springs forward at 02:00 on 2026-03-29 and falls back at 03:00 on 2026-10-25.
    ("cron(30 2 * * ? *)", "Europe/Berlin", "2026-03-28T02:00:00Z", Some("2026-03-30T00:30:00Z")),
    ("cron(30 2 * * ? *)", "Europe/Berlin", "2026-10-25T00:00:00Z", Some("2026-10-25T00:30:00Z")),
    ("cron(30 2 * * ? *)", "Europe/Berlin", "2026-10-25T00:30:00Z", Some("2026-10-26T01:30:00Z")),
    // Sydney falls back at 03:00 on 2026-04-05: 02:30 fires once, at +11:00.
    ("cron(30 2 * * ? *)", "Australia/Sydney", "2026-04-04T12:00:00Z", Some("2026-04-04T15:30:00Z")),
    ("cron(30 2 * * ? *)", "Australia/Sydney", "2026-04-04T15:30:00Z", Some("2026-04-05T16:30:00Z")),
];

#[test]
fn cron_expressions_fire_at_the_next_matching_wall_clock_minute() {
    for &(expr, tz, after, expected) in CRON_CASES {
        let next = schedule(expr).next_after(ts(after), &zone(tz));
        assert_eq!(next, expected.map(ts), "{expr} in {tz} after {after}");
        // The anchor only matters to rates.
        let anchored = schedule(expr).next_after_anchored(ts("2025-05-05T05:05:05Z"), ts(after), &zone(tz));
        assert_eq!(anchored, next, "{expr} anchored");
    }
}

/// Walks the firings of `expr` in `tz` from `start` while they are before `end`.
fn firings(expr: &str, tz: &str, start: &str, end: &str) -> Vec<Timestamp> {
    let (schedule, tz, end) = (schedule(expr), zone(tz), ts(end));
    let mut fired = Vec::new();
    let mut after = ts(start);
    while let Some(next) = schedule.next_after(after, &tz).filter(|next| *next < end) {
        assert!(next > after, "{next} is not after {after}");
        fired.push(next);
        after = next;
    }
    fired
}

#[test]
fn every_fifteen_minutes_through_both_new_york_transitions() {
    let spring = firings("cron(0/15 * * * ? *)", "America/New_York", "2026-03-08T06:30:00Z", "2026-03-08T07:31:00Z");
    let spring_local: Vec<String> =
        spring.iter().map(|t| t.to_zoned(zone("America/New_York")).strftime("%H:%M %Z").to_string()).collect();
    assert_eq!(spring_local, ["01:45 EST", "03:00 EDT", "03:15 EDT", "03:30 EDT"]);

    // The repeated hour fires once: 01:00 to 01:45 EDT, then straight to 02:00 EST an hour later.
    let fall = firings("cron(0/15 * * * ? *)", "America/New_York", "2026-11-01T04:50:00Z", "2026-11-01T07:20:00Z");
    let fall_local: Vec<String> =
        fall.iter().map(|t| t.to_zoned(zone("America/New_York")).strftime("%H:%M %Z").to_string()).collect();
    assert_eq!(fall_local, ["01:00 EDT", "01:15 EDT", "01:30 EDT", "01:45 EDT", "02:00 EST", "02:15 EST"]);
}

#[test]
fn a_year_of_firings_has_the_expected_count() {
    let cases = [
        ("cron(0 12 * * ? *)", "UTC", 365),
        ("cron(0 12 * * ? *)", "America/New_York", 365),
        // 02:30 New York time is skipped once, on the spring-forward day.
        ("cron(30 2 * * ? *)", "America/New_York", 364),
        // 01:30 New York time happens twice on the fall-back day but fires once.
        ("cron(30 1 * * ? *)", "America/New_York", 365),
        // Hourly: 24 a day, less the skipped 02:00, with no extra for the repeated 01:00.
        ("cron(0 * * * ? *)", "America/New_York", 365 * 24 - 1),
        ("cron(0 9 ? * MON-FRI *)", "Europe/Berlin", 261),
        ("cron(0 0 L * ? *)", "UTC", 12),
        ("cron(0 0 ? * 2#1 *)", "UTC", 12),
        ("cron(0 8,20 ? * 6L *)", "UTC", 24),
    ];
    for (expr, tz, count) in cases {
        let fired = firings(expr, tz, "2026-01-01T00:00:00+14:00", "2027-01-01T00:00:00-14:00");
        let zone = zone(tz);
        let in_2026 = fired.iter().filter(|t| zone.to_datetime(**t).year() == 2026).count();
        assert_eq!(in_2026, count, "{expr} in {tz}");
    }
}

/// Whether `date` is a day the cron's day fields select, computed independently of the
/// implementation with jiff's own calendar helpers.
fn naive_day_match(cron: &Cron, date: Date) -> bool {
    let weekday = date.weekday().to_sunday_one_offset() as u16;
    let weekday_of = |number: u16| Weekday::from_sunday_one_offset(number as i8).unwrap();
    let is_weekday = |date: Date| !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday);
    match &cron.days {
        Days::Month(DayOfMonth::List(list)) => list.values.contains(date.day() as u16 - 1),
        Days::Month(DayOfMonth::Last) => date == date.last_of_month(),
        Days::Month(DayOfMonth::LastWeekday) => {
            let mut last = date.last_of_month();
            while !is_weekday(last) {
                last = last.yesterday().unwrap();
            }
            date == last
        }
        Days::Month(DayOfMonth::NearestWeekday(target)) => {
            let Ok(target) = date.with().day(*target as i8).build() else { return false };
            // The closest weekday in the same month, preferring the earlier one on a tie (there are
            // no ties: a weekend day is next to exactly one weekday in each direction, and Saturday
            // is closer to Friday, Sunday to Monday).
            let candidates = (-2i64..=2).filter_map(|offset| target.checked_add(offset.days()).ok());
            let best = candidates
                .filter(|d| d.month() == target.month() && is_weekday(*d))
                .min_by_key(|d| (d.since(target).unwrap().get_days().abs(), *d))
                .unwrap();
            date == best
        }
        Days::Week(DayOfWeek::List(list)) => list.values.contains(weekday - 1),
        Days::Week(DayOfWeek::Last) => weekday == 7,
        Days::Week(DayOfWeek::LastOf(day)) => date.nth_weekday_of_month(-1, weekday_of(day.number)).unwrap() == date,
        Days::Week(DayOfWeek::Nth(day, nth)) => {
            date.nth_weekday_of_month(*nth as i8, weekday_of(day.number)).is_ok_and(|nth| nth == date)
        }
    }
}

#[test]
fn day_fields_agree_with_a_naive_calendar_over_four_years() {
    let expressions = [
        "cron(0 0 L * ? *)",
        "cron(0 0 LW * ? *)",
        "cron(0 0 1W * ? *)",
        "cron(0 0 15W * ? *)",
        "cron(0 0 30W * ? *)",
        "cron(0 0 31W * ? *)",
        "cron(0 0 1,15,31 * ? *)",
        "cron(0 0 5/9 * ? *)",
        "cron(0 0 ? * L *)",
        "cron(0 0 ? * 2L *)",
        "cron(0 0 ? * 1L *)",
        "cron(0 0 ? * 3#1 *)",
        "cron(0 0 ? * 7#5 *)",
        "cron(0 0 ? * MON,WED-FRI *)",
    ];
    for expr in expressions {
        let Schedule::Cron(cron) = schedule(expr) else { panic!("a cron") };
        let mut expected = Vec::new();
        let mut date = jiff::civil::date(2026, 1, 1);
        while date.year() < 2030 {
            if naive_day_match(&cron, date) {
                expected.push(date.to_zoned(TimeZone::UTC).unwrap().timestamp());
            }
            date = date.tomorrow().unwrap();
        }
        let fired = firings(expr, "UTC", "2025-12-31T23:59:00Z", "2030-01-01T00:00:00Z");
        assert_eq!(fired, expected, "{expr}");
    }
}

#[test]
fn min_interval_is_the_shortest_gap_between_firings() {
    let minutes = |m: u64| Some(Duration::from_secs(m * 60));
    let days = |d: u64| minutes(d * 24 * 60);
    let cases = [
        ("rate(1 second)", Some(Duration::from_secs(1))),
        ("rate(45 seconds)", Some(Duration::from_secs(45))),
        ("rate(5 minutes)", minutes(5)),
        ("rate(2 hours)", minutes(120)),
        ("rate(2 days)", days(2)),
        ("cron(* * * * ? *)", minutes(1)),
        ("cron(0/15 * * * ? *)", minutes(15)),
        ("cron(0 * * * ? *)", minutes(60)),
        // From :50 to the next hour's :00.
        ("cron(0,50 * * * ? *)", minutes(10)),
        ("cron(0/25 * * * ? *)", minutes(10)),
        // From 23:59 to 00:00 the next day.
        ("cron(0,59 0,23 * * ? *)", minutes(1)),
        ("cron(0 9,17 ? * MON-FRI *)", minutes(8 * 60)),
        ("cron(0 17,9 ? * MON-FRI *)", minutes(8 * 60)),
        ("cron(0 22 ? * MON *)", days(7)),
        ("cron(0 12 * * ? *)", days(1)),
        ("cron(0 12 ? * MON,WED *)", days(2)),
        ("cron(0 12 ? * L *)", days(7)),
        // 31 January to 28 February.
        ("cron(0 12 L * ? *)", days(28)),
        ("cron(0 12 1 * ? *)", days(28)),
        ("cron(0 12 ? * 2#1 *)", days(28)),
        ("cron(0 0 1 1 ? *)", days(365)),
        ("cron(0 0 1 1 ? 2030,2031)", days(365)),
        ("cron(0 0 29 2 ? *)", days(4 * 365 + 1)),
        // One firing ever: no gap at all.
        ("cron(0 12 1 1 ? 2030)", None),
        ("cron(0 12 1 1 ? 2020)", None),
        ("cron(0 0,12 1 1 ? 2030)", minutes(12 * 60)),
    ];
    for (expr, expected) in cases {
        assert_eq!(schedule(expr).min_interval(), expected, "{expr}");
    }
}

#[test]
fn sparse_expressions_are_searched_quickly() {
    // Each of these walks most of the 1970-2199 calendar; together they should take milliseconds.
    let started = std::time::Instant::now();
    for expr in ["cron(0 0 29 2 ? *)", "cron(0 0 ? 2 2#5 *)", "cron(59 23 31 12 ? 2199)", "cron(0 0 31W 2-12/2 ? *)"] {
        let parsed = schedule(expr);
        assert!(parsed.next_after(ts("1970-01-01T00:00:00Z"), &zone("America/New_York")).is_some(), "{expr}");
        assert!(parsed.next_after(ts("2199-12-31T23:59:00Z"), &zone("Pacific/Kiritimati")).is_none(), "{expr}");
    }
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}
