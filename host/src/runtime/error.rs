//! Typed failures of loading and calling plugins. Every message names the limit or the trap and,
//! where the plugin author can act on it, what to change.

use std::time::Duration;

use super::limits::{human_bytes, human_duration};

/// Why an uploaded component cannot be used as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a valid WebAssembly component under the host's feature set.
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    /// The component does not export the `transformer` world's functions with the right types.
    #[error(
        "component does not implement the sluice:plugin/transformer world: {0}; build it against the wit/ package of this host"
    )]
    WrongWorld(String),
    /// The component imports something the sandbox does not offer.
    #[error(
        "component imports {0}, which Sluice does not offer; plugins may import only sluice:plugin/host and WASI 0.2 (cli, clocks, filesystem, io, random, sockets)"
    )]
    ForbiddenImport(String),
    /// The host could not read or write its compiled-code cache.
    #[error("compiled-code cache failed: {0}")]
    Cache(String),
    /// The host failed while compiling, not because of the component.
    #[error("internal error while compiling the component: {0}")]
    Host(String),
}

/// Why one plugin call produced no usable result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin rejected its input: retrying the same input will not help.
    #[error("plugin rejected the input: {0}")]
    Rejected(String),
    /// The plugin reported a transient problem.
    #[error("plugin asked to retry later: {0}")]
    Retry(String),
    /// The call used its CPU time, or ran past its wall-clock backstop.
    #[error("{}", deadline_message(*.clock, *.limit))]
    Deadline {
        /// Which of the two deadlines passed.
        clock: Clock,
        /// The deadline that passed, on that clock.
        limit: Duration,
    },
    /// The plugin tried to grow its linear memory past the cap.
    #[error("plugin tried to grow memory past {}", human_bytes(*.limit_bytes))]
    Memory {
        /// The memory cap in bytes.
        limit_bytes: u64,
    },
    /// The plugin could not get memory within its cap because other calls held the host's
    /// plugin memory budget: refused growth, or a wall-clock backstop that passed while the call
    /// waited to start. Not the plugin's fault; a later run may well succeed.
    #[error(
        "plugin could not get memory: the host's plugin memory budget of {} was in use by other calls",
        human_bytes(*.budget_bytes)
    )]
    MemoryBudget {
        /// The host-wide budget in bytes.
        budget_bytes: u64,
    },
    /// The plugin could not get memory within its cap because its owner's other calls (the
    /// tenant's other projects) held the owner's share of the budget: refused growth, or a
    /// wall-clock backstop that passed while the call waited to start. The tenant's own doing,
    /// which no other tenant's calls can cause.
    #[error(
        "plugin could not get memory: the tenant's share of plugin memory, {}, was in use by its other calls; \
         run fewer of its projects at the same moment, use plugins that need less memory, or ask the operator \
         to raise the tenant's max_plugin_memory_bytes quota",
        human_bytes(*.share_bytes)
    )]
    MemoryShare {
        /// The owner's share in bytes.
        share_bytes: u64,
    },
    /// The plugin's result was larger than the output cap.
    #[error("plugin output exceeded {}", human_bytes(*.limit_bytes))]
    OutputTooLarge {
        /// The output cap in bytes.
        limit_bytes: u64,
    },
    /// The plugin returned more records than allowed in one call.
    #[error("plugin returned {count} records, more than the limit of {limit} per call")]
    TooManyRecords {
        /// How many records the plugin returned.
        count: usize,
        /// The record cap.
        limit: u32,
    },
    /// The plugin recursed past the stack limit.
    #[error("plugin overflowed its stack (too deep recursion)")]
    StackOverflow,
    /// The plugin trapped: a panic, `unreachable`, or another WebAssembly trap.
    #[error("plugin trapped: {message}")]
    Trap {
        /// The trap, with what the plugin wrote to stderr about it (a Rust panic message).
        message: String,
    },
    /// The host could not run the call at all (for example, instantiation failed).
    #[error("plugin could not be started: {0}")]
    Host(String),
}

/// The clock a call's deadline is counted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The CPU time the call's thread spent running it (`Limits::deadline_ms`).
    Cpu,
    /// The time that passed since the call started, waiting included (`Limits::wall_deadline_ms`).
    Wall,
}

fn deadline_message(clock: Clock, limit: Duration) -> String {
    match clock {
        Clock::Cpu => format!("plugin used its {} of CPU time", human_duration(limit)),
        Clock::Wall => format!("plugin exceeded its wall-clock backstop of {}", human_duration(limit)),
    }
}

impl CallError {
    /// A short, stable name for the kind of failure, for run history and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Rejected(_) => "rejected",
            CallError::Retry(_) => "retry",
            CallError::Deadline { .. } => "deadline",
            CallError::Memory { .. } => "memory",
            CallError::MemoryBudget { .. } => "memory_budget",
            CallError::MemoryShare { .. } => "memory_share",
            CallError::OutputTooLarge { .. } => "output_too_large",
            CallError::TooManyRecords { .. } => "too_many_records",
            CallError::StackOverflow => "stack_overflow",
            CallError::Trap { .. } => "trap",
            CallError::Host(_) => "host",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_says_which_clock_ran_out() {
        let cpu = CallError::Deadline { clock: Clock::Cpu, limit: Duration::from_secs(2) };
        assert_eq!(cpu.to_string(), "plugin used its 2 s of CPU time");
        let wall = CallError::Deadline { clock: Clock::Wall, limit: Duration::from_secs(10) };
        assert_eq!(wall.to_string(), "plugin exceeded its wall-clock backstop of 10 s");
        assert_eq!((cpu.kind(), wall.kind()), ("deadline", "deadline"));
    }
}
