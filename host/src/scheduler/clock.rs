//! Wall-clock time for the scheduler, and the tokio instants at which the driver wakes up.
//!
//! Schedules are defined in wall-clock time (a cron expression names a time of day in a zone), but the
//! driver sleeps on tokio's monotonic clock. [`Clock`] converts between the two. A clock made with
//! [`Clock::starting_at`] derives wall time from tokio's clock alone, so a test that pauses tokio's
//! time controls the scheduler's wall clock too and runs a day of schedule in milliseconds.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

/// The longest the driver sleeps on the system clock before it reads the wall clock again, so that a
/// stepped wall clock (a late NTP sync, a manual change) delays a firing by at most this much.
const SYSTEM_MAX_SLEEP: Duration = Duration::from_secs(1);

/// The longest the driver sleeps on a derived clock. It only keeps instants far below tokio's own
/// limit for timers; the driver simply wakes up and sleeps again.
const DERIVED_MAX_SLEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// Where the scheduler reads wall-clock time.
#[derive(Debug, Clone)]
pub struct Clock {
    source: Source,
}

#[derive(Debug, Clone, Copy)]
enum Source {
    /// The operating system's wall clock.
    System,
    /// `wall` at tokio instant `start`, advancing with tokio's clock from there.
    Derived { wall: Timestamp, start: Instant },
}

impl Clock {
    /// The operating system's wall clock, for the daemon.
    pub fn system() -> Self {
        Self { source: Source::System }
    }

    /// A clock that reads `wall` now and advances with tokio's clock: `now() = wall + elapsed`.
    ///
    /// Create it inside the runtime whose time it should follow; with tokio's time paused (as in
    /// `#[tokio::test(start_paused = true)]`) it moves only when tokio's time does.
    pub fn starting_at(wall: Timestamp) -> Self {
        Self { source: Source::Derived { wall, start: Instant::now() } }
    }

    /// The current wall-clock time.
    pub fn now(&self) -> Timestamp {
        match self.source {
            Source::System => Timestamp::now(),
            Source::Derived { wall, start } => wall.checked_add(start.elapsed()).unwrap_or(Timestamp::MAX),
        }
    }

    /// The tokio instant to sleep until so as to wake up when the wall clock reads `wall` (now when
    /// `wall` has passed), capped so that the driver re-reads the wall clock regularly.
    pub(crate) fn deadline(&self, wall: Timestamp) -> Instant {
        let now = Instant::now();
        let cap = match self.source {
            Source::System => SYSTEM_MAX_SLEEP,
            Source::Derived { .. } => DERIVED_MAX_SLEEP,
        };
        let wait = wall.duration_since(self.now());
        let wait = if wait.is_negative() { Duration::ZERO } else { Duration::try_from(wait).unwrap_or(cap) };
        now + wait.min(cap)
    }
}

/// `at` truncated to whole milliseconds, for times that people and run records show.
pub(crate) fn truncate_to_millis(at: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(at.as_millisecond()).unwrap_or(at)
}

/// `at + by`, or `None` beyond the range of timestamps.
pub(crate) fn add(at: Timestamp, by: SignedDuration) -> Option<Timestamp> {
    at.checked_add(by).ok()
}

/// `at - by`, saturating at the earliest timestamp.
pub(crate) fn sub(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.checked_sub(by).unwrap_or(Timestamp::MIN)
}
