//! A run's log: the tail of what its plugin calls logged and printed, and the host's notes about
//! the run, bounded so that run history stays small whatever a plugin writes.

use std::collections::VecDeque;

use crate::runtime::{LogSource, Logs};
use crate::store::{RunLogLine, RunLogSource};

/// Lines kept per run.
const MAX_LINES: usize = 50;
/// Bytes of messages kept per run: a run record must stay small, since sled turns a leaf of
/// records over about 128 KiB into a blob file (see `store/chunks.rs`).
const MAX_BYTES: usize = 4 << 10;
/// Bytes kept of one line; longer lines are cut at a character boundary.
const MAX_LINE_BYTES: usize = 1 << 10;

/// Collects a run's log lines, keeping the newest within the bounds. The host's own lines are
/// dropped only when nothing else is left to drop, so a note such as "page cap reached" survives
/// a chatty plugin.
#[derive(Debug, Default)]
pub(super) struct RunLog {
    lines: VecDeque<RunLogLine>,
    bytes: usize,
    dropped: u64,
}

impl RunLog {
    /// Adds what one plugin call logged.
    pub fn plugin(&mut self, logs: &Logs) {
        for line in &logs.lines {
            let source = match line.source {
                LogSource::Log => RunLogSource::Log,
                LogSource::Stdout => RunLogSource::Stdout,
                LogSource::Stderr => RunLogSource::Stderr,
            };
            self.push(source, line.level.as_str(), &line.message);
        }
        self.dropped += logs.dropped_lines;
    }

    /// Adds a note of the host's about the run.
    pub fn host(&mut self, level: &str, message: &str) {
        self.push(RunLogSource::Host, level, message);
    }

    fn push(&mut self, source: RunLogSource, level: &str, message: &str) {
        let mut cut = message.len().min(MAX_LINE_BYTES);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        let message = message[..cut].to_string();
        self.bytes += message.len();
        self.lines.push_back(RunLogLine { source, level: level.to_string(), message });
        while self.lines.len() > MAX_LINES || self.bytes > MAX_BYTES {
            let oldest = self.lines.iter().position(|l| l.source != RunLogSource::Host).unwrap_or(0);
            let Some(line) = self.lines.remove(oldest) else { break };
            self.bytes -= line.message.len();
            self.dropped += 1;
        }
    }

    /// The lines kept, with every form of `keys` redacted, and how many were dropped.
    pub fn finish(self, keys: &[String]) -> (Vec<RunLogLine>, u64) {
        let lines = self
            .lines
            .into_iter()
            .map(|line| RunLogLine { message: super::redact::redact(&line.message, keys), ..line })
            .collect();
        (lines, self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{LogLevel, LogLine};

    fn logs(lines: usize, len: usize) -> Logs {
        Logs {
            lines: (0..lines)
                .map(|i| LogLine {
                    source: LogSource::Log,
                    level: LogLevel::Info,
                    message: format!("{i:04} {}", "x".repeat(len)),
                })
                .collect(),
            dropped_lines: 3,
            dropped_stdio_bytes: 0,
        }
    }

    #[test]
    fn keeps_the_newest_lines_within_bounds_and_the_hosts_notes() {
        let mut log = RunLog::default();
        log.host("warn", "an older run's records were parked");
        log.plugin(&logs(200, 10));
        log.host("info", "page cap reached");
        let (lines, dropped) = log.finish(&[]);
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(lines[0].message, "an older run's records were parked", "host notes are kept");
        assert!(lines[1].message.starts_with("0152 "), "the tail is kept: {}", lines[1].message);
        assert_eq!(lines.last().unwrap().message, "page cap reached");
        assert_eq!(dropped, 152 + 3, "lines dropped here and by the call's own limits");
    }

    #[test]
    fn long_lines_are_cut_and_bytes_are_bounded_and_keys_redacted() {
        let mut log = RunLog::default();
        log.plugin(&logs(30, 5000));
        log.host("info", "key s3cr3t-value-123 leaked");
        let (lines, _) = log.finish(&["s3cr3t-value-123".to_string()]);
        assert!(lines.iter().all(|l| l.message.len() <= MAX_LINE_BYTES));
        assert!(lines.iter().map(|l| l.message.len()).sum::<usize>() <= MAX_BYTES);
        assert_eq!(lines.last().unwrap().message, "key [redacted] leaked");
        let mut log = RunLog::default();
        log.host("info", &"ü".repeat(1000));
        let (lines, _) = log.finish(&[]);
        assert!(lines[0].message.len() <= MAX_LINE_BYTES && lines[0].message.chars().all(|c| c == 'ü'));
    }
}
