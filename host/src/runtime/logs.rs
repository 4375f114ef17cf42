//! The run log a plugin call leaves behind: `host.log` lines plus captured stdout and stderr,
//! all bounded so that a plugin cannot make the host hold more than a few hundred KiB per call.

use serde::Serialize;

use super::bindings::Level;
use super::limits::{LOG_LINE_BYTES, Limits};

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// A call to the `host.log` import.
    Log,
    /// A line the plugin printed to stdout.
    Stdout,
    /// A line the plugin printed to stderr (a Rust panic message lands here).
    Stderr,
}

/// The severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The level's name as shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

/// One line of a plugin's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Where the line came from.
    pub source: LogSource,
    /// How severe it is.
    pub level: LogLevel,
    /// The text, cut at 4 KiB.
    pub message: String,
}

/// Everything one call logged, within its limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Logs {
    /// The lines kept, in order (stdout and stderr lines follow the `host.log` lines).
    pub lines: Vec<LogLine>,
    /// `host.log` lines dropped because the call's line or byte budget was spent.
    pub dropped_lines: u64,
    /// Bytes of stdout and stderr discarded past their cap.
    pub dropped_stdio_bytes: u64,
}

impl Logs {
    /// The last line the plugin wrote to stderr, which holds a Rust panic's message.
    pub fn last_stderr_line(&self) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .find(|l| l.source == LogSource::Stderr && !l.message.trim().is_empty())
            .map(|l| l.message.as_str())
    }
}

/// Collects `host.log` lines within a call's budget.
#[derive(Debug)]
pub(crate) struct LogBuffer {
    logs: Logs,
    bytes: u64,
    max_lines: u32,
    max_bytes: u64,
}

impl LogBuffer {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self { logs: Logs::default(), bytes: 0, max_lines: limits.log_lines, max_bytes: limits.log_bytes }
    }

    pub(crate) fn push(&mut self, source: LogSource, level: LogLevel, mut message: String) {
        truncate_at_char_boundary(&mut message, LOG_LINE_BYTES);
        let bytes = message.len() as u64;
        if self.logs.lines.len() as u64 >= u64::from(self.max_lines) || self.bytes + bytes > self.max_bytes {
            self.logs.dropped_lines += 1;
            return;
        }
        self.bytes += bytes;
        self.logs.lines.push(LogLine { source, level, message });
    }

    /// Appends captured stdio text line by line. Stdio has its own byte cap, so these lines do not
    /// count against the `host.log` budget.
    pub(crate) fn push_stdio(&mut self, source: LogSource, text: &str, discarded: u64) {
        let level = if source == LogSource::Stderr { LogLevel::Warn } else { LogLevel::Info };
        for line in text.lines() {
            let mut message = line.to_string();
            truncate_at_char_boundary(&mut message, LOG_LINE_BYTES);
            self.logs.lines.push(LogLine { source, level, message });
        }
        self.logs.dropped_stdio_bytes += discarded;
    }

    pub(crate) fn finish(self) -> Logs {
        self.logs
    }
}

fn truncate_at_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_lines_past_the_budget_and_cuts_long_ones() {
        let limits = Limits { log_lines: 2, ..Limits::default() };
        let mut buffer = LogBuffer::new(&limits);
        buffer.push(LogSource::Log, LogLevel::Info, "é".repeat(LOG_LINE_BYTES));
        buffer.push(LogSource::Log, LogLevel::Info, "two".into());
        buffer.push(LogSource::Log, LogLevel::Info, "three".into());
        let logs = buffer.finish();
        assert_eq!(logs.lines.len(), 2);
        assert_eq!(logs.lines[0].message.len(), LOG_LINE_BYTES);
        assert_eq!(logs.dropped_lines, 1);
    }
}
