//! `sluice plugin test`: the plugin author's inner loop. Loads a component with the daemon's
//! checks and limits, optionally runs `prepare` on a request, runs `transform` on a response read
//! from a file, and prints the records, new state, next request and logs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Value, json};

use super::{EXIT_DATA_ERROR, EXIT_SOFTWARE};
use crate::runtime::{
    CallError, CallReport, Limits, Logs, Output, Poll, Request, Response, Runtime, RuntimeConfig, human_bytes,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component to run (`.wasm`, built for wasm32-wasip2).
    component: PathBuf,
    /// A file holding the response body to transform.
    #[arg(long, value_name = "FILE")]
    response: PathBuf,
    /// The response's HTTP status.
    #[arg(long, default_value_t = 200, value_name = "N")]
    status: u16,
    /// A response header, `name: value`; repeat for more.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// A file holding the state from the last run (absent: the first run).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// A plugin setting, `name=value`; repeat for more.
    #[arg(long = "setting", value_name = "NAME=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Also run `prepare` on a GET of this URL and print the request the daemon would send.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The project id the plugin sees.
    #[arg(long, default_value = "local-project")]
    project_id: String,
    /// The tenant id the plugin sees.
    #[arg(long, default_value = "local-tenant")]
    tenant_id: String,
    /// The CPU time the call may use, in milliseconds.
    #[arg(long, default_value_t = Limits::default().deadline_ms)]
    deadline_ms: u64,
    /// The wall-clock time the call may take, waiting included, in milliseconds (default: five
    /// times `--deadline-ms`).
    #[arg(long, value_name = "MS")]
    wall_deadline_ms: Option<u64>,
    /// The call's memory cap in MiB.
    #[arg(long, default_value_t = Limits::default().memory_bytes >> 20)]
    memory_mib: u64,
    /// The largest state the daemon would accept, in bytes: the tenant's `max_state_bytes` quota
    /// (the standard tier's by default; 64 KiB for free, 1 MiB for premium).
    #[arg(long, default_value_t = crate::store::Tier::Standard.quotas().max_state_bytes)]
    max_state_bytes: u64,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) =
        s.split_once(':').ok_or("expected `name: value`, for example `content-type: application/json`")?;
    Ok((name.trim().to_ascii_lowercase(), value.trim().to_string()))
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once('=').ok_or("expected `name=value`, for example `partition_key_field=id`")?;
    if name.is_empty() {
        return Err("the setting name before `=` is empty".into());
    }
    Ok((name.to_string(), value.to_string()))
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ExitCode> {
    std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read the {what} {}: {e}", path.display());
        ExitCode::from(EXIT_DATA_ERROR)
    })
}

pub async fn run(args: Args) -> ExitCode {
    match run_inner(args).await {
        Ok(code) | Err(code) => code,
    }
}

async fn run_inner(args: Args) -> Result<ExitCode, ExitCode> {
    let wasm = read(&args.component, "component")?;
    let body = read(&args.response, "response file")?;
    let state = args.state.as_deref().map(|p| read(p, "state file")).transpose()?;

    let limits = Limits {
        deadline_ms: args.deadline_ms,
        wall_deadline_ms: args.wall_deadline_ms,
        memory_bytes: args.memory_mib << 20,
        ..Limits::default()
    };
    let config =
        RuntimeConfig { max_concurrent_calls: 2, max_memory_bytes: limits.memory_bytes, ..RuntimeConfig::default() };
    let runtime = Runtime::new(config).map_err(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(EXIT_SOFTWARE)
    })?;
    let started = Instant::now();
    let plugin = runtime.load(&wasm).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_DATA_ERROR)
    })?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    let mut settings = args.settings.clone();
    settings.sort();
    let poll = Poll {
        project_id: args.project_id.clone(),
        tenant_id: args.tenant_id.clone(),
        scheduled_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        state,
        settings,
    };

    let mut report = json!({
        "plugin": {"id": plugin.id(), "size_bytes": plugin.size_bytes(), "load_ms": load_ms},
    });
    if !args.json {
        println!("plugin     {} ({}), loaded in {load_ms:.0} ms", plugin.id(), human_bytes(plugin.size_bytes()));
    }

    if let Some(url) = &args.url {
        let request = Request { method: "GET".into(), url: url.clone(), headers: vec![], body: None };
        let prepared = runtime.prepare(&plugin, &limits, &poll, &request).await;
        let ok = prepared.result.is_ok();
        report["prepare"] = call_json(&prepared, request_json);
        if !args.json {
            print_call("prepare", &prepared, print_request);
        }
        if !ok {
            return finish(&args, &report, false);
        }
    }

    let response = Response { status: args.status, headers: args.headers.clone(), body };
    let transformed = runtime.transform(&plugin, &limits, &poll, &response).await;
    report["transform"] = call_json(&transformed, output_json);
    if !args.json {
        print_call("transform", &transformed, print_output);
    }
    let Ok(output) = &transformed.result else { return finish(&args, &report, false) };
    // The checks a run applies before storing anything: a record Kinesis would refuse, or a state
    // over the quota, fails the run in stage `transform`.
    let problems = crate::records::OutputCheck::dry_run(output, args.max_state_bytes, 20);
    report["checks"] = json!({"ok": problems.is_empty(), "problems": problems});
    if !args.json {
        if problems.is_empty() {
            println!("checks     ok: Kinesis would take every record, and the state is within the limit");
        } else {
            println!("checks     failed: a run would store nothing of this output");
            for problem in &problems {
                println!("  problem  {problem}");
            }
        }
    }
    finish(&args, &report, problems.is_empty())
}

fn finish(args: &Args, report: &Value, ok: bool) -> Result<ExitCode, ExitCode> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn call_json<T>(report: &CallReport<T>, value: fn(&T) -> Value) -> Value {
    let mut out = json!({
        "duration_ms": report.duration.as_secs_f64() * 1e3,
        "cpu_ms": report.cpu_time.as_secs_f64() * 1e3,
        "logs": report.logs,
    });
    match &report.result {
        Ok(v) => out["ok"] = value(v),
        Err(e) => out["error"] = error_json(e),
    }
    out
}

fn error_json(error: &CallError) -> Value {
    json!({"kind": error.kind(), "message": error.to_string()})
}

fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => json!({"text": text}),
        Err(_) => json!({"hex": hex::encode(bytes)}),
    }
}

fn request_json(request: &Request) -> Value {
    json!({
        "method": request.method,
        "url": request.url,
        "headers": request.headers,
        "body": request.body.as_deref().map(bytes_json),
    })
}

fn output_json(output: &Output) -> Value {
    let records: Vec<Value> = output
        .records
        .iter()
        .map(|r| {
            json!({
                "partition_key": r.partition_key,
                "explicit_hash_key": r.explicit_hash_key,
                "data": bytes_json(&r.data),
            })
        })
        .collect();
    json!({
        "records": records,
        "state": output.state.as_deref().map(bytes_json),
        "next": output.next.as_ref().map(request_json),
    })
}

fn print_call<T>(name: &str, report: &CallReport<T>, print: fn(&T)) {
    let ms = report.duration.as_secs_f64() * 1e3;
    let cpu_ms = report.cpu_time.as_secs_f64() * 1e3;
    match &report.result {
        Ok(value) => {
            println!("{name:<10} ok in {ms:.2} ms ({cpu_ms:.2} ms of CPU)");
            print(value);
        }
        Err(error) => println!("{name:<10} failed after {ms:.2} ms ({cpu_ms:.2} ms of CPU): {error}"),
    }
    print_logs(&report.logs);
}

fn print_request(request: &Request) {
    println!("  request  {} {}", request.method, request.url);
    for (name, value) in &request.headers {
        println!("           {name}: {value}");
    }
}

/// Longest record or state preview printed in text mode; `--json` prints everything.
const PREVIEW_CHARS: usize = 200;

fn preview(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.chars().count() > PREVIEW_CHARS => {
            format!("{}… ({} bytes)", text.chars().take(PREVIEW_CHARS).collect::<String>(), bytes.len())
        }
        Ok(text) => text.to_string(),
        Err(_) => format!("<{} bytes, not UTF-8>", bytes.len()),
    }
}

fn print_output(output: &Output) {
    println!("  records  {}", output.records.len());
    for (i, record) in output.records.iter().enumerate() {
        let hash = record.explicit_hash_key.as_deref().map(|h| format!(" hash={h}")).unwrap_or_default();
        println!("    [{i}] key={}{hash} {}", record.partition_key, preview(&record.data));
    }
    match &output.state {
        Some(state) => println!("  state    {}", preview(state)),
        None => println!("  state    unchanged"),
    }
    match &output.next {
        Some(next) => println!("  next     {} {}", next.method, next.url),
        None => println!("  next     none (run complete)"),
    }
}

fn print_logs(logs: &Logs) {
    for line in &logs.lines {
        println!("  log      {:<5} {:<6} {}", line.level.as_str(), line.source.as_str(), line.message);
    }
    if logs.dropped_lines > 0 {
        println!("  log      {} more lines dropped (log budget spent)", logs.dropped_lines);
    }
    if logs.dropped_stdio_bytes > 0 {
        println!("  log      {} bytes of stdout/stderr discarded", logs.dropped_stdio_bytes);
    }
}
