//! The shared-store side (`--sides shared`): the fleet's runs with the store on DynamoDB and S3
//! (moto's server, started here on loopback) instead of sled, counting what the store asks of
//! them per successful run in the window: requests by operation, as its SDK interceptor counts
//! them (`store/dynamo/meter.rs`), and DynamoDB write units by DynamoDB's published rules. These
//! counts, not moto's speed, are what the side is for: moto's `TransactWriteItems` copies the
//! whole table once per action, so it is far slower than DynamoDB and a window's run rate is what
//! moto carries, not what Sluice does.

use super::*;

/// moto's server on a free loopback port, stopped when dropped.
pub struct MotoServer {
    child: std::process::Child,
    pub endpoint: String,
}

impl MotoServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start moto_server: `cargo xtask bench` installs it (pip install 'moto[server]')");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto_server did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("dataplane: moto (DynamoDB, S3) on 127.0.0.1:{port}");
        Self { child, endpoint: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One window per schedule: `n` projects of one tenant on the shared store at `endpoint`.
pub fn shared_rows(n: usize, schedules: &[String], window: Duration, common: &Common, endpoint: &str) -> Vec<Row> {
    schedules
        .iter()
        .map(|schedule| Row {
            short: format!("shared N={n}, {schedule}"),
            scenario: Scenario {
                label: format!("shared store (moto's DynamoDB and S3), {n} projects at {schedule}"),
                role: Role::Sluice(SluiceSettings {
                    kind: "shared".into(),
                    variant: schedule.chars().filter(char::is_ascii_alphanumeric).collect(),
                    n,
                    shared_store: Some(endpoint.to_string()),
                    schedule: Some(schedule.clone()),
                    // A fleet's firings spread over the period, as a fleet created over time has.
                    stagger_s: period_s(schedule),
                    window,
                    // One whole period and a little: every project has run once (its session made,
                    // its status changed to active), so the window sees steady runs.
                    warmup: Duration::from_secs(period_s(schedule) + 20),
                    perf: common.perf.clone(),
                    ..SluiceSettings::default()
                }),
            },
        })
        .collect()
}

/// The period of a `rate(N unit)` schedule, in seconds (0 for anything else).
fn period_s(schedule: &str) -> u64 {
    let inner = schedule.trim().strip_prefix("rate(").and_then(|s| s.strip_suffix(')')).unwrap_or_default();
    let (count, unit) = inner.split_once(' ').unwrap_or_default();
    let unit_s = match unit.trim_end_matches('s') {
        "second" => 1,
        "minute" => 60,
        "hour" => 3600,
        _ => 0,
    };
    count.parse::<u64>().unwrap_or(0) * unit_s
}

/// Requests and write units per successful run of each shared-store window.
pub fn print_shared(scenarios: &[Row], results: &[Value]) {
    let rows: Vec<(&Row, &Value)> = scenarios.iter().zip(results).filter(|(_, r)| r["kind"] == "shared").collect();
    if rows.is_empty() {
        return;
    }
    const WRITES: [&str; 5] = ["TransactWriteItems", "BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem"];
    println!();
    println!("Shared store: DynamoDB and S3 requests per successful run (moto's server; counts, not speed)");
    println!(
        "| {:<34} | {:>7} | {:>6} | {:>10} | {:>8} | {:>9} | {:>9} | {:>8} | {:>8} |",
        "side", "runs/s", "runs", "write req", "WRU", "read req", "S3 req", "runs per", "lag p99"
    );
    println!(
        "| {:<34} | {:>7} | {:>6} | {:>10} | {:>8} | {:>9} | {:>9} | {:>8} | {:>8} |",
        "", "", "", "/run", "/run", "/run", "/run", "TWI", "ms"
    );
    for (row, r) in &rows {
        let runs = r["succeeded"].as_u64().unwrap_or(0).max(1) as f64;
        let requests = r["store_requests"].as_object().cloned().unwrap_or_default();
        let count = |filter: &dyn Fn(&str, &str) -> bool| -> f64 {
            requests
                .iter()
                .filter(|(key, _)| key.split_once('.').is_some_and(|(service, op)| filter(service, op)))
                .map(|(_, n)| n.as_f64().unwrap_or(0.0))
                .sum()
        };
        let writes = count(&|service, op| service == "DynamoDB" && WRITES.contains(&op));
        let reads = count(&|service, op| service == "DynamoDB" && !WRITES.contains(&op));
        let s3 = count(&|service, _| service == "S3");
        let transactions = count(&|service, op| service == "DynamoDB" && op == "TransactWriteItems");
        println!(
            "| {:<34} | {:>7.1} | {:>6} | {:>10.3} | {:>8.2} | {:>9.2} | {:>9.3} | {:>8.1} | {:>8.0} |",
            row.short,
            r["polls_per_s"].as_f64().unwrap_or(f64::NAN),
            runs,
            writes / runs,
            r["store_write_units"].as_f64().unwrap_or(0.0) / runs,
            reads / runs,
            s3 / runs,
            runs / transactions.max(1.0),
            r["lag_p99_ms"].as_f64().unwrap_or(f64::NAN),
        );
    }
    println!();
    for (row, r) in &rows {
        let runs = r["succeeded"].as_u64().unwrap_or(0).max(1) as f64;
        println!("{}:", row.scenario.label);
        let per_run: Vec<String> = r["store_requests"]
            .as_object()
            .map(|m| m.iter().map(|(op, n)| format!("{op} {:.3}", n.as_f64().unwrap_or(0.0) / runs)).collect())
            .unwrap_or_default();
        println!("  requests per run: {}", per_run.join(", "));
        println!(
            "  runs in window: {} succeeded, {} failed, {} skipped; CPU {:.0} µs per run",
            r["succeeded"],
            r["failed"],
            r["skipped"],
            r["cpu_us_per_poll"].as_f64().unwrap_or(f64::NAN)
        );
    }
}
