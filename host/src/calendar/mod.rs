//! Schedule expressions in EventBridge syntax: parse and validate them, and compute when they fire.
//!
//! A project's schedule is either a rate or a cron expression, written exactly as Amazon EventBridge
//! Scheduler accepts them, plus `second|seconds` as a rate unit:
//!
//! - `rate(N unit)`: every N units, with unit `second`, `minute`, `hour` or `day` (singular when N is
//!   1) or `seconds`, `minutes`, `hours` or `days` (plural when N is 2 or more). Days are 24 hours.
//! - `cron(minutes hours day-of-month month day-of-week year)`: six fields separated by single spaces.
//!   Day-of-week counts from 1 = SUN to 7 = SAT, and exactly one of day-of-month and day-of-week must
//!   be `?`. See [`Cron`] for every field's values and wildcards.
//!
//! Cron expressions are evaluated in an IANA time zone ([`parse_timezone`]), with daylight saving
//! time handled as EventBridge Scheduler documents it: a firing that falls on a wall-clock time that
//! does not exist (the hour skipped when clocks spring forward) is skipped, and a wall-clock time that
//! occurs twice (the hour repeated when clocks fall back) fires once, at its first occurrence.
//!
//! The module is pure logic: it reads no clock and does no I/O, so every answer depends only on its
//! arguments and on the time zone database bundled into the binary.

mod cron;
mod dates;
mod rate;
mod tz;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

pub use cron::Cron;
pub use rate::{Rate, RateUnit};
pub use tz::{Timezone, parse_timezone};

/// The longest schedule expression accepted, in bytes: EventBridge Scheduler's own limit.
pub const MAX_EXPRESSION_LEN: usize = 256;

/// The earliest year a cron expression can name, and the first year it can fire in.
pub const MIN_YEAR: i16 = 1970;

/// The latest year a cron expression can name; no cron expression fires after this year ends.
pub const MAX_YEAR: i16 = 2199;

/// A validated schedule expression: a [`Rate`] or a [`Cron`].
///
/// Parse one with [`Schedule::parse`] (or `str::parse`); its [`Display`](fmt::Display) form is the
/// normalized expression, which parses back to an equal schedule. It serializes as that string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `rate(N unit)`: fires every fixed interval.
    Rate(Rate),
    /// `cron(...)`: fires at wall-clock times in a time zone. Boxed because it is much larger than a
    /// rate.
    Cron(Box<Cron>),
}

/// Why a schedule expression or time zone name was rejected.
///
/// The message is meant for the person who wrote the input: it is lowercase, names the part at
/// fault, and says how to fix it, for example `cron day-of-week field "8" is out of range 1-7
/// (1 = SUN); use 1-7 or SUN-SAT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    message: String,
}

impl ScheduleError {
    /// Builds an error from a complete, user-facing message.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }

    /// The user-facing message, the same text as `Display`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Quotes user input for an error message, escaping quotes and control characters so that the
/// message stays on one line and its quoting stays unambiguous.
pub(crate) fn quote(input: &str) -> String {
    format!("\"{}\"", input.escape_debug())
}

/// An example of each expression kind, shown in error messages that do not know which one was meant.
const EXAMPLES: &str = "rate(5 minutes) or cron(0 12 * * ? *)";

impl Schedule {
    /// Parses and validates a schedule expression, rejecting everything EventBridge Scheduler rejects
    /// (and a few cron expressions it would accept but that can never fire, such as `30 FEB`).
    ///
    /// The expression must be exactly `rate(...)` or `cron(...)`: no surrounding spaces, lowercase
    /// keyword, at most [`MAX_EXPRESSION_LEN`] bytes. Month and day names in cron fields are
    /// case-insensitive.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        if expr.is_empty() {
            return Err(ScheduleError::new(format!("schedule is empty; use an expression such as {EXAMPLES}")));
        }
        if expr.len() > MAX_EXPRESSION_LEN {
            return Err(ScheduleError::new(format!(
                "schedule is {} bytes long; shorten it to at most {MAX_EXPRESSION_LEN} bytes",
                expr.len()
            )));
        }
        if expr.trim() != expr {
            return Err(ScheduleError::new(format!(
                "schedule {} has spaces around it; remove them, as in {}",
                quote(expr),
                expr.trim()
            )));
        }
        let (keyword, body) = match expr.split_once('(') {
            Some((keyword, rest)) => match rest.strip_suffix(')') {
                Some(body) => (keyword, body),
                None => {
                    return Err(ScheduleError::new(format!(
                        "schedule {} must end with a closing parenthesis, as in {EXAMPLES}",
                        quote(expr)
                    )));
                }
            },
            None => {
                return Err(ScheduleError::new(format!(
                    "schedule {} is not a rate() or cron() expression; use an expression such as {EXAMPLES}",
                    quote(expr)
                )));
            }
        };
        match keyword {
            "rate" => Rate::parse_body(body).map(Schedule::Rate),
            "cron" => Cron::parse_body(body).map(|cron| Schedule::Cron(Box::new(cron))),
            // EventBridge only knows the lowercase keywords, so say so rather than "unknown".
            _ if keyword.eq_ignore_ascii_case("rate") || keyword.eq_ignore_ascii_case("cron") => {
                Err(ScheduleError::new(format!(
                    "schedule keyword {} must be lowercase; write {}({body})",
                    quote(keyword),
                    keyword.to_ascii_lowercase()
                )))
            }
            // `at(...)` is EventBridge Scheduler's one-time schedule; a project needs a recurring one.
            "at" => Err(ScheduleError::new(format!(
                "one-time at() schedules are not supported; use a recurring expression such as {EXAMPLES}"
            ))),
            _ => Err(ScheduleError::new(format!(
                "schedule {} is not a rate() or cron() expression; use an expression such as {EXAMPLES}",
                quote(expr)
            ))),
        }
    }

    /// The shortest time between two consecutive firings, for the operator's "shortest interval
    /// allowed" quota, or `None` when the schedule fires at most once.
    ///
    /// For a rate it is the interval itself. For a cron expression it is the smallest gap, in wall-clock
    /// time, between consecutive firings over every date the expression can match (1970 to 2199), so it
    /// is exact rather than estimated from the minutes field alone: `cron(0 9,17 ? * MON-FRI *)` gives
    /// 8 hours and `cron(0 12 L * ? *)` gives 28 days. It is at least 60 seconds, cron's resolution.
    /// It is computed in wall-clock time because it cannot depend on a time zone; around a daylight
    /// saving transition one real gap can be shorter than the wall-clock one by the size of the shift
    /// (for example from 01:59 to 03:00 on a spring-forward night is one real minute).
    pub fn min_interval(&self) -> Option<Duration> {
        match self {
            Schedule::Rate(rate) => Some(rate.interval()),
            Schedule::Cron(cron) => cron.min_interval(),
        }
    }

    /// The first firing strictly after `after`, with rate schedules anchored at the Unix epoch; `None`
    /// when the schedule never fires again.
    ///
    /// Anchoring rates at the epoch makes firing times a pure function of the expression, stable across
    /// restarts without storing anything: `rate(5 minutes)` fires at :00, :05, :10, ... UTC and
    /// `rate(1 day)` at midnight UTC. Every schedule with the same rate then fires at the same instant;
    /// use [`Schedule::next_after_anchored`] with a per-project anchor to spread them out.
    ///
    /// `tz` is the zone a cron expression is evaluated in; rates ignore it.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        self.next_after_anchored(Timestamp::UNIX_EPOCH, after, tz)
    }

    /// The first firing strictly after `after`, with rate schedules anchored at `anchor`; `None` when
    /// the schedule never fires again.
    ///
    /// A rate fires at `anchor`, `anchor + interval`, `anchor + 2 * interval`, and so on, and never
    /// before `anchor`, like an EventBridge schedule's start date. Pass a time that is stored with the
    /// project (such as when it was created or when its schedule last changed) so that firing times
    /// survive restarts. Days are 24 hours, so a daily rate keeps its UTC time across daylight saving
    /// changes, as in EventBridge Scheduler.
    ///
    /// A cron expression ignores `anchor`: it fires at the wall-clock times it names in `tz`, skipping
    /// times that do not exist because clocks spring forward and firing once, at the first occurrence,
    /// for times that occur twice because clocks fall back. It returns `None` once its year field has
    /// no later year, and always after 2199.
    pub fn next_after_anchored(&self, anchor: Timestamp, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Schedule::Rate(rate) => rate.next_after_anchored(anchor, after),
            Schedule::Cron(cron) => cron.next_after(after, tz),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Rate(rate) => rate.fmt(f),
            Schedule::Cron(cron) => cron.fmt(f),
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(expr: &str) -> Result<Self, Self::Err> {
        Schedule::parse(expr)
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expr = String::deserialize(deserializer)?;
        Schedule::parse(&expr).map_err(serde::de::Error::custom)
    }
}
