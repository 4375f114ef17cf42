//! When a cron expression fires: the days it selects in a month, its next firing in a time zone, and
//! the shortest gap between two of its firings.
//!
//! Everything walks the calendar month by month between 1970 and 2199 (the cron year range), so each
//! answer takes at most 2,760 months of work, however sparse the expression is.

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::cron::{Cron, DayOfMonth, DayOfWeek, Days, FieldKind};
use super::{MAX_YEAR, MIN_YEAR};

/// Minutes in a day, for gaps between firings on different days.
const MINUTES_PER_DAY: i64 = 24 * 60;

/// A civil minute, ordered the way time runs: year, month, day, minute of the day.
type Minute = (i16, i8, i8, i32);

impl Cron {
    /// The wall-clock times of day the expression fires at, in minutes after midnight, ascending.
    fn times_of_day(&self) -> Vec<i32> {
        let hours = self.hours.values.iter();
        hours
            .flat_map(|hour| self.minutes.values.iter().map(move |minute| i32::from(hour) * 60 + i32::from(minute)))
            .collect()
    }

    /// The years the expression can fire in, ascending.
    fn years(&self) -> impl Iterator<Item = i16> + '_ {
        self.years.values.iter().map(|offset| FieldKind::Year.min() as i16 + offset as i16)
    }

    /// The months the expression can fire in, ascending, from 1 = January.
    fn months(&self) -> impl Iterator<Item = i8> + '_ {
        self.months.values.iter().map(|offset| offset as i8 + 1)
    }

    /// The days of `year`-`month` that the day fields select, ascending; the month and year fields
    /// are the caller's business.
    fn days_in(&self, year: i16, month: i8) -> impl Iterator<Item = i8> + use<'_> {
        // Years and months come from the parsed fields, so the first of the month always exists.
        let first = Date::new(year, month, 1).expect("cron years and months are valid dates");
        let length = first.days_in_month();
        let first_weekday = first.weekday().to_sunday_one_offset();
        // Day-of-week numbering is EventBridge's: 1 = SUN to 7 = SAT.
        let weekday = move |day: i8| (first_weekday - 1 + day - 1) % 7 + 1;
        let last_weekday = match weekday(length) {
            7 => length - 1,
            1 => length - 2,
            _ => length,
        };
        (1..=length).filter(move |&day| match &self.days {
            Days::Month(DayOfMonth::List(list)) => list.values.contains(day as u16 - 1),
            Days::Month(DayOfMonth::Last) => day == length,
            Days::Month(DayOfMonth::LastWeekday) => day == last_weekday,
            Days::Month(DayOfMonth::NearestWeekday(target)) => {
                let target = *target as i8;
                // A month without the target day (15W always has one, 31W not) has no firing.
                if target > length {
                    return false;
                }
                // The nearest weekday never leaves the month: a Saturday the 1st moves to Monday the
                // 3rd, and a Sunday on the last day moves back to Friday.
                let nearest = match weekday(target) {
                    7 if target == 1 => 3,
                    7 => target - 1,
                    1 if target == length => target - 2,
                    1 => target + 1,
                    _ => target,
                };
                day == nearest
            }
            Days::Week(DayOfWeek::List(list)) => list.values.contains(weekday(day) as u16 - 1),
            Days::Week(DayOfWeek::Last) => weekday(day) == 7,
            Days::Week(DayOfWeek::LastOf(target)) => weekday(day) as u16 == target.number && day + 7 > length,
            Days::Week(DayOfWeek::Nth(target, nth)) => {
                weekday(day) as u16 == target.number && (day - 1) / 7 + 1 == *nth as i8
            }
        })
    }

    /// Walks every date the expression selects from 1970 to 2199: `None` if there is none (it never
    /// fires), otherwise the shortest wall-clock gap between consecutive firings in minutes, which is
    /// itself `None` when there is only one firing.
    pub(super) fn scan(&self) -> Option<Option<u64>> {
        let times = self.times_of_day();
        let within_day = times.windows(2).map(|pair| i64::from(pair[1] - pair[0])).min();
        let mut previous: Option<i64> = None;
        let mut fewest_days: Option<i64> = None;
        'walk: for year in self.years() {
            for month in self.months() {
                for day in self.days_in(year, month) {
                    let number = day_number(year, month, day);
                    if let Some(previous) = previous {
                        let days = number - previous;
                        fewest_days = Some(fewest_days.map_or(days, |fewest| fewest.min(days)));
                        // No two dates are closer than consecutive days, so the walk can stop here.
                        if days == 1 {
                            break 'walk;
                        }
                    }
                    previous = Some(number);
                }
            }
        }
        previous?;
        // The shortest gap across days runs from the last time on one date to the first on the next.
        let (first, last) = (i64::from(times[0]), i64::from(times[times.len() - 1]));
        let across_days = fewest_days.map(|days| days * MINUTES_PER_DAY - last + first);
        let gap = match (within_day, across_days) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Some(gap.map(|minutes| minutes as u64))
    }

    /// The shortest wall-clock time between two consecutive firings, or `None` if the expression
    /// fires at most once. See [`Schedule::min_interval`](super::Schedule::min_interval).
    pub fn min_interval(&self) -> Option<Duration> {
        self.min_gap_minutes.map(|minutes| Duration::from_secs(minutes * 60))
    }

    /// The first firing strictly after `after`, with the expression evaluated in `tz`, or `None` if
    /// there is none before the end of 2199.
    ///
    /// A wall-clock time skipped by a daylight saving transition is skipped (no firing), and one that
    /// occurs twice fires once, at its first occurrence, as EventBridge Scheduler documents.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = tz.to_datetime(after);
        if local.year() > MAX_YEAR {
            return None;
        }
        // Candidates must be later than the wall-clock minute containing `after`: a firing at that
        // minute is at or before `after`, even when the minute occurs twice.
        let floor: Minute = if local.year() < MIN_YEAR {
            (MIN_YEAR, 1, 1, -1)
        } else {
            (local.year(), local.month(), local.day(), i32::from(local.hour()) * 60 + i32::from(local.minute()))
        };
        let times = self.times_of_day();
        for year in self.years().filter(|&year| year >= floor.0) {
            for month in self.months().filter(|&month| (year, month) >= (floor.0, floor.1)) {
                for day in self.days_in(year, month).filter(|&day| (year, month, day) >= (floor.0, floor.1, floor.2)) {
                    for &time in times.iter().filter(|&&time| (year, month, day, time) > floor) {
                        let dt = DateTime::new(year, month, day, (time / 60) as i8, (time % 60) as i8, 0, 0).ok()?;
                        if let Some(fire) = resolve(tz, dt)
                            && fire > after
                        {
                            return Some(fire);
                        }
                    }
                }
            }
        }
        None
    }
}

/// The instant a wall-clock firing happens at in `tz`: `None` in a gap (the time does not exist that
/// day, so the firing is skipped), the earlier instant in a fold (the time occurs twice, and fires
/// only the first time).
fn resolve(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    let offset = match tz.to_ambiguous_timestamp(dt).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        AmbiguousOffset::Gap { .. } => return None,
        // Before a fall-back transition the offset is the larger one, so it gives the earlier instant.
        AmbiguousOffset::Fold { before, .. } => before,
    };
    offset.to_timestamp(dt).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`), so that
/// gaps between dates are a subtraction.
fn day_number(year: i16, month: i8, day: i8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}
