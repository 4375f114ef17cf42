//! `rate(N unit)` expressions: a fixed interval.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use super::{ScheduleError, quote};

/// A `rate(N unit)` expression: fires every `N` units, measured from an anchor.
///
/// `N` is a positive whole number without sign or leading zeros, at most `u32::MAX`, separated from
/// the unit by exactly one space. The unit is singular when `N` is 1 (`rate(1 hour)`) and plural
/// otherwise (`rate(2 hours)`), as EventBridge requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    value: u32,
    unit: RateUnit,
}

/// The unit of a [`Rate`]. Every unit is a fixed number of seconds: a day is 24 hours, whatever
/// daylight saving time does to the calendar, as in EventBridge Scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateUnit {
    /// `second` or `seconds`, an extension of EventBridge's syntax.
    Second,
    /// `minute` or `minutes`.
    Minute,
    /// `hour` or `hours`.
    Hour,
    /// `day` or `days`, 24 hours each.
    Day,
}

impl RateUnit {
    const ALL: [RateUnit; 4] = [RateUnit::Second, RateUnit::Minute, RateUnit::Hour, RateUnit::Day];

    /// The unit's length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            RateUnit::Second => 1,
            RateUnit::Minute => 60,
            RateUnit::Hour => 60 * 60,
            RateUnit::Day => 24 * 60 * 60,
        }
    }

    /// The unit's name as written after 1.
    pub fn singular(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        }
    }

    /// The unit's name as written after 2 or more.
    pub fn plural(self) -> &'static str {
        match self {
            RateUnit::Second => "seconds",
            RateUnit::Minute => "minutes",
            RateUnit::Hour => "hours",
            RateUnit::Day => "days",
        }
    }

    /// The unit and whether it was written in the plural, for a name written exactly.
    fn from_name(name: &str) -> Option<(RateUnit, bool)> {
        RateUnit::ALL.into_iter().find_map(|unit| {
            if name == unit.singular() {
                Some((unit, false))
            } else if name == unit.plural() {
                Some((unit, true))
            } else {
                None
            }
        })
    }
}

impl Rate {
    /// How many units make one interval.
    pub fn value(&self) -> u32 {
        self.value
    }

    /// The unit of the interval.
    pub fn unit(&self) -> RateUnit {
        self.unit
    }

    /// The time between two firings.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.value) * self.unit.seconds())
    }

    /// The first of `anchor`, `anchor + interval`, `anchor + 2 * interval`, ... that is strictly after
    /// `after`, or `None` when it lies beyond the latest time jiff can represent (the end of year
    /// 9999).
    pub fn next_after_anchored(&self, anchor: Timestamp, after: Timestamp) -> Option<Timestamp> {
        if after < anchor {
            return Some(anchor);
        }
        // Nanoseconds as i128 hold any difference between two timestamps and any multiple of an
        // interval that could matter, so none of this arithmetic can overflow.
        let interval = i128::from(u64::from(self.value) * self.unit.seconds()) * 1_000_000_000;
        let elapsed = after.as_nanosecond() - anchor.as_nanosecond();
        let intervals = elapsed / interval + 1;
        Timestamp::from_nanosecond(anchor.as_nanosecond() + intervals * interval).ok()
    }

    /// Parses what is between the parentheses of `rate(...)`.
    pub(crate) fn parse_body(body: &str) -> Result<Rate, ScheduleError> {
        let expr = format!("rate({body})");
        let parts: Vec<&str> = body.split(' ').collect();
        let [value, unit] = parts[..] else {
            return Err(ScheduleError::new(format!(
                "{} must be a number and a unit separated by one space, as in rate(5 minutes)",
                quote(&expr)
            )));
        };
        if value.is_empty() || unit.is_empty() {
            return Err(ScheduleError::new(format!(
                "{} must be a number and a unit separated by one space, as in rate(5 minutes)",
                quote(&expr)
            )));
        }
        if !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ScheduleError::new(format!(
                "rate value {} is not a whole number; use a positive whole number without a sign, as in rate(90 minutes)",
                quote(value)
            )));
        }
        let trimmed = value.trim_start_matches('0');
        if trimmed.is_empty() {
            return Err(ScheduleError::new(format!(
                "rate value {} must be positive; use 1 or more, as in rate(1 minute)",
                quote(value)
            )));
        }
        if trimmed.len() != value.len() {
            return Err(ScheduleError::new(format!(
                "rate value {} has a leading zero; write it as {trimmed}, as in rate({trimmed} {unit})",
                quote(value)
            )));
        }
        let value: u32 = value.parse().map_err(|_| {
            ScheduleError::new(format!(
                "rate value {} is too large; use at most {}, or a larger unit",
                quote(value),
                u32::MAX
            ))
        })?;
        let Some((unit, plural)) = RateUnit::from_name(unit) else {
            return Err(unknown_unit(value, unit));
        };
        if value == 1 && plural {
            return Err(ScheduleError::new(format!(
                "{} needs the singular unit with 1; write rate(1 {})",
                quote(&expr),
                unit.singular()
            )));
        }
        if value > 1 && !plural {
            return Err(ScheduleError::new(format!(
                "{} needs the plural unit with {value}; write rate({value} {})",
                quote(&expr),
                unit.plural()
            )));
        }
        Ok(Rate { value, unit })
    }
}

/// The error for a unit that is not one of the eight names, suggesting the closest spelling that is.
fn unknown_unit(value: u32, unit: &str) -> ScheduleError {
    let lower = unit.to_ascii_lowercase();
    let right = |unit: RateUnit| if value == 1 { unit.singular() } else { unit.plural() };
    if let Some((known, _)) = RateUnit::from_name(&lower) {
        return ScheduleError::new(format!(
            "rate unit {} must be lowercase; write rate({value} {})",
            quote(unit),
            right(known)
        ));
    }
    // Weeks are the one unit people reach for that EventBridge lacks; seven days say the same.
    if (lower == "week" || lower == "weeks")
        && let Some(days) = value.checked_mul(7)
    {
        return ScheduleError::new(format!(
            "rate unit {} is not supported; use days instead, as in rate({days} days)",
            quote(unit)
        ));
    }
    ScheduleError::new(format!(
        "rate unit {} is not supported; use seconds, minutes, hours or days (singular after 1), as in rate({value} {})",
        quote(unit),
        right(RateUnit::Minute)
    ))
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.value == 1 { self.unit.singular() } else { self.unit.plural() };
        write!(f, "rate({} {unit})", self.value)
    }
}
