//! Tests for schedule expressions, table-driven: parsing and messages (`parse`), firing times and
//! intervals (`fire`), and time zone names (`timezone`).

mod fire;
mod parse;
mod timezone;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::{Schedule, parse_timezone};

/// Parses an expression the test expects to be valid.
fn schedule(expr: &str) -> Schedule {
    Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr} should parse: {e}"))
}

/// Parses an RFC 3339 timestamp, such as `2026-03-08T07:30:00Z` or `2026-03-08T02:30:00-05:00`.
fn ts(text: &str) -> Timestamp {
    text.parse().unwrap_or_else(|e| panic!("{text} is not a timestamp: {e}"))
}

/// Looks up a zone the test expects to exist.
fn zone(name: &str) -> TimeZone {
    parse_timezone(name).unwrap_or_else(|e| panic!("{name} should be a zone: {e}"))
}
