//! One plugin call: a fresh store under the call's limits, instantiation from the pre-linked
//! component, the export call, and the translation of whatever happened into a typed result.

use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{GuestError, Output, Poll, Record, Request, Response};
use super::budget::Bound;
use super::cpu::{CpuMeter, Metered};
use super::error::{CallError, Clock};
use super::limits::Limits;
use super::logs::Logs;
use super::state::State;
use super::{Plugin, Runtime};

/// What a call returned, what it logged, and how long it took.
#[derive(Debug)]
pub struct CallReport<T> {
    /// The plugin's result, or why there is none.
    pub result: Result<T, CallError>,
    /// Lines from `host.log`, stdout and stderr.
    pub logs: Logs,
    /// Wall-clock time from the start of instantiation to the end of the call.
    pub duration: Duration,
    /// CPU time the plugin threads spent on the call, instantiation included: what its deadline
    /// counts. Less than `duration` by the time the call waited or other work held its thread.
    pub cpu_time: Duration,
}

/// The export to call, with its arguments. Owned, because the call runs on the runtime's own
/// threads, apart from the caller's task.
pub(crate) enum Invocation {
    Prepare(Poll, Request),
    Transform(Poll, Response),
}

/// What an export returned.
pub(crate) enum Returned {
    Request(Request),
    Output(Output),
}

/// Lifting a record costs its host-side struct besides its bytes; budget for that so that the
/// byte cap, not the struct overhead, is what a plugin runs into.
const RECORD_OVERHEAD_BYTES: u64 = std::mem::size_of::<Record>() as u64;

/// Runs one call on the runtime's plugin threads and waits for its report. Guest code never runs
/// on the caller's executor: a plugin spinning until its deadline takes a plugin thread's time
/// slices, not those of the threads that schedule runs, fetch sources and serve the API.
pub(crate) async fn call(
    runtime: &Runtime,
    plugin: &Plugin,
    limits: &Limits,
    invocation: Invocation,
) -> CallReport<Returned> {
    let (task_runtime, plugin, limits) = (runtime.clone(), plugin.clone(), limits.clone());
    let task = runtime.pool().spawn(async move { call_here(&task_runtime, &plugin, &limits, invocation).await });
    match task.await {
        Ok(report) => report,
        // The call's task only ends without a report if host code panicked in it (wasm traps are
        // errors, not panics); the run fails with a host error instead of taking the caller down.
        Err(error) => CallReport {
            result: Err(CallError::Host(format!("the plugin call's task failed: {error}"))),
            logs: Logs::default(),
            duration: Duration::ZERO,
            cpu_time: Duration::ZERO,
        },
    }
}

async fn call_here(
    runtime: &Runtime,
    plugin: &Plugin,
    limits: &Limits,
    invocation: Invocation,
) -> CallReport<Returned> {
    let limits = runtime.clamp(limits);
    // Waiting for a free instance slot does not count against the plugin's deadline.
    let _slot = runtime.acquire_slot().await;
    let started = Instant::now();
    let meter = CpuMeter::new();

    let mut store = Store::new(runtime.engine(), State::new(&limits, runtime.budget(), runtime.owner_share()));
    store.limiter_async(|state| &mut state.memory);
    let fuel = limits.output_bytes + u64::from(limits.output_records) * RECORD_OVERHEAD_BYTES + (64 << 10);
    store.set_hostcall_fuel(usize::try_from(fuel).unwrap_or(usize::MAX));
    // Check the call's CPU time at every epoch tick: interrupt once it has used its deadline,
    // otherwise yield so that other calls on the same executor thread get their turn. The time
    // the call spends yielded, waiting or preempted by other processes does not count, so a busy
    // host makes a call slower, not failed.
    store.set_epoch_deadline(1);
    let (cpu_deadline, spent) = (limits.deadline(), meter.clone());
    store.epoch_deadline_callback(move |_| {
        if spent.spent() >= cpu_deadline { Ok(UpdateDeadline::Interrupt) } else { Ok(UpdateDeadline::Yield(1)) }
    });

    let run = async {
        let instance = plugin.pre.instantiate_async(&mut store).await?;
        match invocation {
            Invocation::Prepare(poll, request) => {
                Ok(instance.call_prepare(&mut store, &poll, &request).await?.map(Returned::Request))
            }
            Invocation::Transform(poll, response) => {
                Ok(instance.call_transform(&mut store, &poll, &response).await?.map(Returned::Output))
            }
        }
    };
    // The wall-clock backstop ends what the CPU deadline cannot see: a guest waiting inside a
    // WASI call (a sleep, say), where it uses no CPU time and epochs cannot reach it, or a call
    // waiting for the memory budget.
    let outcome: Result<wasmtime::Result<Result<Returned, GuestError>>, _> = {
        let run = std::pin::pin!(run);
        tokio::time::timeout(limits.wall_deadline(), Metered::new(run, meter.clone())).await
    };
    let duration = started.elapsed();
    let cpu_time = meter.spent();
    let memory_refused = store.data().memory.refused;
    let starved = store.data().memory.starved;
    let waited_out = store.data().memory.share.waiting;
    let logs = store.data_mut().take_logs();

    let short_of = |bound| match bound {
        Bound::Host => CallError::MemoryBudget { budget_bytes: runtime.memory_budget_bytes() },
        Bound::Owner => CallError::MemoryShare { share_bytes: runtime.owner_share_bytes() },
    };
    let result = match outcome {
        Err(_elapsed) => Err(match waited_out {
            Some(bound) => short_of(bound),
            None => CallError::Deadline { clock: Clock::Wall, limit: limits.wall_deadline() },
        }),
        Ok(Err(error)) => Err(match starved {
            Some(bound) => short_of(bound),
            None => classify(&error, memory_refused, &limits, &logs),
        }),
        Ok(Ok(Err(GuestError::Rejected(message)))) => Err(CallError::Rejected(message)),
        Ok(Ok(Err(GuestError::Retry(message)))) => Err(CallError::Retry(message)),
        Ok(Ok(Ok(returned))) => check_output(returned, &limits),
    };
    CallReport { result, logs, duration, cpu_time }
}

/// Names the limit or trap behind a failed call.
fn classify(error: &wasmtime::Error, memory_refused: bool, limits: &Limits, logs: &Logs) -> CallError {
    if memory_refused {
        return CallError::Memory { limit_bytes: limits.memory_bytes };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return CallError::Deadline { clock: Clock::Cpu, limit: limits.deadline() },
        Some(Trap::StackOverflow) => return CallError::StackOverflow,
        Some(trap) => {
            let message = match logs.stderr_summary() {
                Some(line) => format!("{trap}; stderr: {line}"),
                None => trap.to_string(),
            };
            return CallError::Trap { message };
        }
        None => {}
    }
    // wasmtime reports a lift that ran out of hostcall fuel with this text and a private type.
    let text = format!("{error:#}");
    if text.contains("fuel allocated for hostcalls has been exhausted") {
        return CallError::OutputTooLarge { limit_bytes: limits.output_bytes };
    }
    CallError::Host(text)
}

/// Enforces the output caps exactly, now that the result is on the host side.
fn check_output(returned: Returned, limits: &Limits) -> Result<Returned, CallError> {
    let too_large = CallError::OutputTooLarge { limit_bytes: limits.output_bytes };
    match &returned {
        Returned::Request(request) => {
            if request_bytes(request) > limits.output_bytes {
                return Err(too_large);
            }
        }
        Returned::Output(output) => {
            if output.records.len() > limits.output_records as usize {
                return Err(CallError::TooManyRecords { count: output.records.len(), limit: limits.output_records });
            }
            let records: u64 = output
                .records
                .iter()
                .map(|r| {
                    (r.data.len() + r.partition_key.len() + r.explicit_hash_key.as_ref().map_or(0, String::len)) as u64
                })
                .sum();
            let state = output.state.as_ref().map_or(0, |s| s.len() as u64);
            let next = output.next.as_ref().map_or(0, request_bytes);
            if records + state + next > limits.output_bytes {
                return Err(too_large);
            }
        }
    }
    Ok(returned)
}

fn request_bytes(request: &Request) -> u64 {
    let headers: usize = request.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    (request.method.len() + request.url.len() + headers + request.body.as_ref().map_or(0, Vec::len)) as u64
}
