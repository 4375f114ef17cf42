//! The per-call budget every plugin call runs under.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits applied to every plugin call. The defaults suit a typical JSON transform; operators
/// raise or lower them per host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// CPU time one call (instantiation included) may use before it is interrupted: the time
    /// its thread spent running it, not the time that passed. Plugins run at the lowest CPU
    /// priority, so on a host whose cores other processes keep busy a call gets the CPU late and
    /// in slices; counted in wall-clock time, it would fail having done little work, while
    /// counted in CPU time it is only slower.
    pub deadline_ms: u64,
    /// Wall-clock time one call may take, waiting included, before it is cut off; unset, five
    /// times `deadline_ms` (10 s by default). The backstop for what CPU time does not see: a
    /// guest waiting inside a WASI call (a sleep) uses none, and a call waiting for the host's
    /// plugin memory budget waits this long at most. At least `deadline_ms`, or no call could use
    /// its CPU time.
    pub wall_deadline_ms: Option<u64>,
    /// The most linear memory a plugin may grow to, in bytes.
    pub memory_bytes: u64,
    /// The most bytes of records (data plus keys), state and next request one call may return.
    pub output_bytes: u64,
    /// The most records one call may return.
    pub output_records: u32,
    /// Lines kept from `host.log` per call; further lines are counted and dropped.
    pub log_lines: u32,
    /// Bytes kept from `host.log` per call; further lines are counted and dropped.
    pub log_bytes: u64,
    /// Bytes kept from each of stdout and stderr per call; the rest is discarded.
    pub stdio_bytes: u64,
}

/// The wall-clock backstop, unless set, in multiples of the CPU deadline: a call that gets at
/// least a fifth of a core over its run can use all of its CPU time, and a guest sleeping inside
/// WASI holds its instance slot and memory for seconds, not minutes.
pub const WALL_DEADLINE_FACTOR: u64 = 5;

impl Limits {
    /// The CPU-time deadline as a [`Duration`].
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }

    /// The wall-clock backstop as a [`Duration`]: `wall_deadline_ms`, or
    /// [`WALL_DEADLINE_FACTOR`] times the CPU deadline.
    pub fn wall_deadline(&self) -> Duration {
        Duration::from_millis(self.wall_deadline_ms.unwrap_or(self.deadline_ms.saturating_mul(WALL_DEADLINE_FACTOR)))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline_ms: 2_000,
            wall_deadline_ms: None,
            memory_bytes: 64 << 20,
            output_bytes: 16 << 20,
            output_records: 10_000,
            log_lines: 1_000,
            log_bytes: 64 << 10,
            stdio_bytes: 64 << 10,
        }
    }
}

/// Longest single log line kept, in bytes; longer lines are cut at a character boundary.
pub const LOG_LINE_BYTES: usize = 4 << 10;

/// Renders a byte count the way people read limits: "64 MiB", "16 KiB", "100 bytes".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    for (size, unit) in UNITS {
        if bytes >= size {
            return format!("{:.1} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} bytes")
}

/// Renders a duration the way limits are usually stated: "2 s", "150 ms".
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) { format!("{} s", ms / 1000) } else { format!("{ms} ms") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_limits_for_people() {
        assert_eq!(human_bytes(64 << 20), "64 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(100), "100 bytes");
        assert_eq!(human_duration(Duration::from_secs(2)), "2 s");
        assert_eq!(human_duration(Duration::from_millis(150)), "150 ms");
    }

    #[test]
    fn the_wall_clock_backstop_is_five_times_the_cpu_deadline_unless_set() {
        assert_eq!(Limits::default().wall_deadline(), Duration::from_secs(10));
        let raised = Limits { deadline_ms: 3_000, ..Limits::default() };
        assert_eq!(raised.wall_deadline(), Duration::from_secs(15));
        let set = Limits { wall_deadline_ms: Some(4_000), ..Limits::default() };
        assert_eq!(set.wall_deadline(), Duration::from_secs(4));
    }
}
