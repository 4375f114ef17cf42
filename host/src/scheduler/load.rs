//! How far behind the scheduler runs, for saturation: a host that starts scheduled runs late is
//! offered more than it can do, and says so in `/metrics` and `/readyz`.
//!
//! The lag of a run is when it starts minus when it was due. The recent lag is a moving average
//! over the last few dozen scheduled runs, so one slow start does not flip the signal, and it is
//! forgotten once no scheduled run has started for [`STALE_MS`]: a host that runs nothing is not
//! behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;

/// An average older than this says nothing about now.
const STALE_MS: i64 = 10_000;

/// Each run moves the average by 1/16 of its difference: about the last 30 runs count.
const WEIGHT: f64 = 1.0 / 16.0;

#[derive(Default)]
pub(super) struct Lag {
    /// The moving average, in microseconds, as `f64` bits.
    average_us: AtomicU64,
    /// When the last scheduled run started, in ms since the epoch.
    last_ms: AtomicU64,
}

impl Lag {
    /// Counts a scheduled run that started `lag` after it was due, at `now`. Concurrent updates
    /// may lose one another's contribution, which an average of this kind does not miss.
    pub(super) fn observe(&self, lag: Duration, now: Timestamp) {
        let old = f64::from_bits(self.average_us.load(Ordering::Relaxed));
        let new = old + (lag.as_secs_f64() * 1e6 - old) * WEIGHT;
        self.average_us.store(new.to_bits(), Ordering::Relaxed);
        self.last_ms.store(now.as_millisecond().max(0) as u64, Ordering::Relaxed);
    }

    /// The recent lag at `now`: zero when no scheduled run started lately.
    pub(super) fn recent(&self, now: Timestamp) -> Duration {
        let last = self.last_ms.load(Ordering::Relaxed) as i64;
        if now.as_millisecond() - last > STALE_MS {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(f64::from_bits(self.average_us.load(Ordering::Relaxed)).max(0.0) / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recent_lag_follows_runs_and_is_forgotten_when_none_start() {
        let lag = Lag::default();
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        assert_eq!(lag.recent(t0), Duration::ZERO);
        for _ in 0..100 {
            lag.observe(Duration::from_secs(2), t0);
        }
        let recent = lag.recent(t0);
        assert!(recent > Duration::from_millis(1900) && recent <= Duration::from_secs(2), "{recent:?}");
        // One quick start does not undo a backlog.
        lag.observe(Duration::ZERO, t0);
        assert!(lag.recent(t0) > Duration::from_millis(1800));
        let later = t0 + jiff::SignedDuration::from_millis(STALE_MS + 1);
        assert_eq!(lag.recent(later), Duration::ZERO, "nothing started for a while: not behind");
    }
}
