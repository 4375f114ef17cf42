//! Hostile plugins are contained with the right typed error, within their deadline plus 100 ms,
//! and the engine stays healthy for the next call.

use std::time::{Duration, Instant};

use sluice::runtime::{CallError, Limits, LoadError, Output, Runtime};
use sluice_tests::{load, plugin_bytes, poll, response, shared_runtime};

/// How far past its deadline a contained call may end.
const CONTAINMENT_SLACK: Duration = Duration::from_millis(100);

async fn run_mode(
    runtime: &Runtime,
    limits: &Limits,
    settings: &[(&str, &str)],
) -> (Result<Output, CallError>, Duration) {
    let plugin = load(runtime, "hostile");
    let started = Instant::now();
    let report = runtime.transform(&plugin, limits, &poll(settings), &response("ping")).await;
    (report.result, started.elapsed())
}

/// A healthy call on the same runtime right after a hostile one succeeds.
async fn assert_healthy_after(runtime: &Runtime) {
    let (result, _) = run_mode(runtime, &Limits::default(), &[("mode", "echo")]).await;
    let output = result.expect("a healthy call right after a hostile one succeeds");
    assert_eq!(output.records.len(), 1);
    assert_eq!(output.records[0].data, b"ping");
}

#[tokio::test]
async fn busy_loop_is_interrupted_at_its_deadline() {
    let runtime = shared_runtime();
    let limits = Limits::default();
    let (result, elapsed) = run_mode(runtime, &limits, &[("mode", "busy-loop")]).await;
    assert_eq!(result.unwrap_err(), CallError::Deadline { limit: limits.deadline() });
    assert!(elapsed >= limits.deadline(), "interrupted early, after {elapsed:?}");
    assert!(elapsed < limits.deadline() + CONTAINMENT_SLACK, "took {elapsed:?}");
    assert_healthy_after(runtime).await;
}

#[tokio::test]
async fn memory_bomb_is_refused_at_the_memory_cap() {
    let runtime = shared_runtime();
    let limits = Limits::default();
    let (result, elapsed) = run_mode(runtime, &limits, &[("mode", "memory-bomb")]).await;
    let error = result.unwrap_err();
    assert_eq!(error, CallError::Memory { limit_bytes: 64 << 20 });
    assert_eq!(error.to_string(), "plugin tried to grow memory past 64 MiB");
    assert!(elapsed < limits.deadline() + CONTAINMENT_SLACK, "took {elapsed:?}");
    assert_healthy_after(runtime).await;
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow() {
    let runtime = shared_runtime();
    let (result, elapsed) = run_mode(runtime, &Limits::default(), &[("mode", "deep-recursion")]).await;
    assert_eq!(result.unwrap_err(), CallError::StackOverflow);
    assert!(elapsed < Limits::default().deadline() + CONTAINMENT_SLACK, "took {elapsed:?}");
    assert_healthy_after(runtime).await;
}

#[tokio::test]
async fn panic_is_a_trap_carrying_the_panic_message() {
    let runtime = shared_runtime();
    let (result, _) = run_mode(runtime, &Limits::default(), &[("mode", "panic")]).await;
    match result.unwrap_err() {
        CallError::Trap { message } => assert!(message.contains("fixture panicked on purpose"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_healthy_after(runtime).await;
}

#[tokio::test]
async fn unreachable_is_a_trap() {
    let runtime = shared_runtime();
    let (result, _) = run_mode(runtime, &Limits::default(), &[("mode", "trap")]).await;
    match result.unwrap_err() {
        CallError::Trap { message } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_healthy_after(runtime).await;
}

#[tokio::test]
async fn hundred_megabyte_output_cannot_be_built_within_the_memory_cap() {
    let runtime = shared_runtime();
    let (result, _) = run_mode(runtime, &Limits::default(), &[("mode", "big-output")]).await;
    assert_eq!(result.unwrap_err(), CallError::Memory { limit_bytes: 64 << 20 });
    assert_healthy_after(runtime).await;
}

#[tokio::test]
async fn output_past_the_output_cap_is_refused() {
    let runtime = shared_runtime();
    // With room to build it, a 20 MB output meets the 16 MiB output cap instead.
    let limits = Limits { memory_bytes: 256 << 20, ..Limits::default() };
    let (result, _) = run_mode(runtime, &limits, &[("mode", "big-output"), ("output_mb", "20")]).await;
    let error = result.unwrap_err();
    assert_eq!(error, CallError::OutputTooLarge { limit_bytes: 16 << 20 });
    assert_eq!(error.to_string(), "plugin output exceeded 16 MiB");
    assert_healthy_after(runtime).await;
}

#[tokio::test]
async fn a_million_records_are_refused() {
    let runtime = shared_runtime();
    // Given the memory to build them, a million records run into the output cap while the host
    // lifts them, before the host allocates for all of them.
    let limits = Limits { memory_bytes: 256 << 20, ..Limits::default() };
    let (result, elapsed) = run_mode(runtime, &limits, &[("mode", "many-records")]).await;
    assert_eq!(result.unwrap_err(), CallError::OutputTooLarge { limit_bytes: 16 << 20 });
    assert!(elapsed < limits.deadline() + CONTAINMENT_SLACK, "took {elapsed:?}");
    assert_healthy_after(runtime).await;
}

#[tokio::test]
async fn records_past_the_record_cap_are_refused() {
    let runtime = shared_runtime();
    let (result, _) = run_mode(runtime, &Limits::default(), &[("mode", "many-records"), ("records", "10001")]).await;
    let error = result.unwrap_err();
    assert_eq!(error, CallError::TooManyRecords { count: 10_001, limit: 10_000 });
    assert_eq!(error.to_string(), "plugin returned 10001 records, more than the limit of 10000 per call");
    // Exactly at the cap is fine.
    let (result, _) = run_mode(runtime, &Limits::default(), &[("mode", "many-records"), ("records", "10000")]).await;
    assert_eq!(result.unwrap().records.len(), 10_000);
}

#[tokio::test]
async fn sandbox_grants_no_files_env_or_sockets() {
    let runtime = shared_runtime();
    // A listener the plugin would reach if sockets were granted.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (result, _) = run_mode(runtime, &Limits::default(), &[("mode", "sandbox-probe"), ("connect", &address)]).await;
    let output = result.expect("probing the sandbox does not trap");
    let probe = |key: &str| {
        let record = output.records.iter().find(|r| r.partition_key == key).unwrap_or_else(|| panic!("no {key} probe"));
        String::from_utf8(record.data.clone()).unwrap()
    };
    assert!(probe("file").starts_with("file: error"), "{}", probe("file"));
    assert!(probe("dir").starts_with("dir: error"), "{}", probe("dir"));
    assert_eq!(probe("env"), "env: 0 vars");
    assert!(probe("socket").starts_with("socket: error"), "{}", probe("socket"));
    assert!(listener.accept().is_err(), "the plugin reached a socket on the host");
}

#[tokio::test]
async fn log_spam_is_bounded_and_does_not_fail_the_call() {
    let runtime = shared_runtime();
    let plugin = load(runtime, "hostile");
    // A million host calls take about a second on an idle machine; this test is about how much
    // log is kept, so the deadline is raised well past that to stay clear of CI load.
    let limits = Limits { deadline_ms: 20_000, ..Limits::default() };
    let report = runtime.transform(&plugin, &limits, &poll(&[("mode", "log-spam")]), &response("")).await;
    let output = report.result.expect("log spam is dropped, not fatal");
    assert_eq!(output.records[0].data, b"done");
    let logs = &report.logs;
    let from_log = logs.lines.iter().filter(|l| l.source == sluice::runtime::LogSource::Log).count();
    assert!(from_log <= limits.log_lines as usize);
    let log_bytes: usize =
        logs.lines.iter().filter(|l| l.source == sluice::runtime::LogSource::Log).map(|l| l.message.len()).sum();
    assert!(log_bytes as u64 <= limits.log_bytes);
    assert!(logs.dropped_lines > 0);
    let stdio_bytes: usize =
        logs.lines.iter().filter(|l| l.source != sluice::runtime::LogSource::Log).map(|l| l.message.len()).sum();
    assert!(stdio_bytes as u64 <= 2 * limits.stdio_bytes, "kept {stdio_bytes} stdio bytes");
    assert!(logs.dropped_stdio_bytes > 0);
}

#[test]
fn a_component_of_another_world_is_refused_at_load() {
    let error = shared_runtime().load(&plugin_bytes("wrong-world")).unwrap_err();
    assert!(matches!(error, LoadError::WrongWorld(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("`transform`") && message.contains("`run`"), "{message}");
}

#[test]
fn a_component_with_a_foreign_import_is_refused_at_load() {
    let error = shared_runtime().load(&plugin_bytes("foreign-import")).unwrap_err();
    assert!(matches!(error, LoadError::ForbiddenImport(_)), "{error:?}");
    assert!(error.to_string().contains("fixture:evil/exfil"), "{error}");
}

#[test]
fn bytes_that_are_not_a_component_are_refused_at_load() {
    let error = shared_runtime().load(b"\0asm not really").unwrap_err();
    assert!(matches!(error, LoadError::Invalid(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loops_in_parallel_do_not_stall_a_healthy_call() {
    let runtime = Runtime::new(sluice::runtime::RuntimeConfig::default()).unwrap();
    let plugin = load(&runtime, "hostile");
    let echo = poll(&[("mode", "echo")]);
    let healthy = |runtime: Runtime, plugin: sluice::runtime::Plugin, echo: sluice::runtime::Poll| async move {
        let started = Instant::now();
        let report = runtime.transform(&plugin, &Limits::default(), &echo, &response("ping")).await;
        report.result.expect("the healthy call succeeds");
        started.elapsed()
    };
    // Its own time, measured the same way on an idle runtime (best of a few, to skip warm-up).
    let mut alone = Duration::MAX;
    for _ in 0..5 {
        alone = alone.min(healthy(runtime.clone(), plugin.clone(), echo.clone()).await);
    }

    let busy: Vec<_> = (0..8)
        .map(|_| {
            let (runtime, plugin) = (runtime.clone(), plugin.clone());
            tokio::spawn(async move {
                let limits = Limits::default();
                runtime.transform(&plugin, &limits, &poll(&[("mode", "busy-loop")]), &response("")).await.result
            })
        })
        .collect();
    // Let the busy loops occupy both executor threads first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let crowded = tokio::spawn(healthy(runtime.clone(), plugin.clone(), echo.clone())).await.unwrap();
    for task in busy {
        assert!(matches!(task.await.unwrap(), Err(CallError::Deadline { .. })));
    }
    assert!(
        crowded < alone + Duration::from_millis(100),
        "a healthy call took {crowded:?} beside 8 busy loops, {alone:?} alone"
    );
}

#[tokio::test]
async fn a_hostile_prepare_is_contained_too() {
    let runtime = shared_runtime();
    let plugin = load(runtime, "hostile");
    let limits = Limits { deadline_ms: 300, ..Limits::default() };
    let request =
        sluice::runtime::Request { method: "GET".into(), url: "http://api.test/".into(), headers: vec![], body: None };
    let started = Instant::now();
    let report =
        runtime.prepare(&plugin, &limits, &poll(&[("mode", "busy-loop"), ("phase", "prepare")]), &request).await;
    assert_eq!(report.result.unwrap_err(), CallError::Deadline { limit: limits.deadline() });
    assert!(started.elapsed() < limits.deadline() + CONTAINMENT_SLACK);
    let report =
        runtime.prepare(&plugin, &limits, &poll(&[("mode", "memory-bomb"), ("phase", "prepare")]), &request).await;
    assert_eq!(report.result.unwrap_err(), CallError::Memory { limit_bytes: 64 << 20 });
    assert_healthy_after(runtime).await;
}

#[tokio::test]
async fn a_plugin_sleeping_inside_wasi_is_cut_off_at_its_deadline() {
    let runtime = shared_runtime();
    let limits = Limits { deadline_ms: 300, ..Limits::default() };
    let (result, elapsed) = run_mode(runtime, &limits, &[("mode", "sleep")]).await;
    assert_eq!(result.unwrap_err(), CallError::Deadline { limit: limits.deadline() });
    assert!(elapsed >= limits.deadline(), "cut off early, after {elapsed:?}");
    assert!(elapsed < limits.deadline() + CONTAINMENT_SLACK, "took {elapsed:?}");
    assert_healthy_after(runtime).await;
}

/// A runtime whose calls may each grow to 64 MiB, and all of them together to `budget_mib`.
fn budgeted_runtime(budget_mib: u64) -> Runtime {
    let config = sluice::runtime::RuntimeConfig {
        max_memory_bytes: 64 << 20,
        memory_budget_bytes: budget_mib << 20,
        ..sluice::runtime::RuntimeConfig::default()
    };
    Runtime::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bombs_side_by_side_stay_within_the_memory_budget() {
    let runtime = budgeted_runtime(96);
    let plugin = load(&runtime, "hostile");
    // A bomb meets its limit within milliseconds. The long deadline is slack for a busy machine
    // (plugin threads run at the lowest priority); bombs waiting for each other would still
    // show, as deadlines instead of memory errors.
    let limits = Limits { deadline_ms: 10_000, ..Limits::default() };
    let bombs: Vec<_> = (0..4)
        .map(|_| {
            let (runtime, plugin, limits) = (runtime.clone(), plugin.clone(), limits.clone());
            tokio::spawn(async move {
                let bomb = poll(&[("mode", "memory-bomb")]);
                runtime.transform(&plugin, &limits, &bomb, &response("")).await.result
            })
        })
        .collect();
    // A bomb meets its own cap, or the budget if the others hold it; never a wait for each other.
    // Which bombs reach their cap depends on how their growth interleaves: all four can be
    // refused by the budget while each holds part of it, so no count of either is asserted.
    for bomb in bombs {
        match bomb.await.unwrap().unwrap_err() {
            CallError::Memory { limit_bytes } if limit_bytes == 64 << 20 => {}
            CallError::MemoryBudget { budget_bytes } if budget_bytes == 96 << 20 => {}
            other => panic!("a bomb ended with {other:?}"),
        }
    }
    let peak = runtime.memory_peak_bytes();
    assert!(peak <= 96 << 20, "four bombs held {peak} bytes at once, past the 96 MiB budget");
    assert_eq!(runtime.memory_in_use_bytes(), 0, "every call gave its memory back");

    // With the others' memory given back, a bomb alone grows to its own cap: nothing of theirs
    // is still counted against the budget, and its growth is counted as it goes.
    let (alone, _) = run_mode(&runtime, &limits, &[("mode", "memory-bomb")]).await;
    assert_eq!(alone.unwrap_err(), CallError::Memory { limit_bytes: 64 << 20 });
    let peak = runtime.memory_peak_bytes();
    assert!(peak >= 60 << 20, "a bomb's growth to its cap was counted: peak {peak} bytes");
    assert!(peak <= 96 << 20, "peak {peak} bytes, past the 96 MiB budget");
    assert_eq!(runtime.memory_in_use_bytes(), 0, "the lone bomb gave its memory back");
    assert_healthy_after(&runtime).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growth_past_the_memory_budget_is_refused_at_once_with_an_error_naming_it() {
    let runtime = budgeted_runtime(64);
    let plugin = load(&runtime, "hostile");
    let hog = poll(&[("mode", "memory-hog"), ("hog_mb", "40")]);
    let first = {
        let (runtime, plugin, hog) = (runtime.clone(), plugin.clone(), hog.clone());
        tokio::spawn(async move { runtime.transform(&plugin, &Limits::default(), &hog, &response("")).await.result })
    };
    // Bounded: the first hog holds its 40 MiB within a few milliseconds of starting.
    for _ in 0..200 {
        if runtime.memory_in_use_bytes() >= 40 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(runtime.memory_in_use_bytes() >= 40 << 20, "the first hog holds its memory");

    // A second hog fits its own cap but not the budget beside the first, which holds its memory
    // until its 2 s deadline: the second starts, and its growth is refused without waiting.
    let (result, elapsed) = run_mode(&runtime, &Limits::default(), &[("mode", "memory-hog"), ("hog_mb", "40")]).await;
    let error = result.unwrap_err();
    assert_eq!(error, CallError::MemoryBudget { budget_bytes: 64 << 20 });
    assert_eq!(
        error.to_string(),
        "plugin could not get memory: the host's plugin memory budget of 64 MiB was in use by other calls"
    );
    assert!(elapsed < Duration::from_secs(1), "refused at once, not at a deadline: took {elapsed:?}");
    assert_eq!(first.await.unwrap().unwrap_err(), CallError::Deadline { limit: Limits::default().deadline() });
    assert_eq!(runtime.memory_in_use_bytes(), 0, "both hogs gave their memory back");
    assert_healthy_after(&runtime).await;
}
