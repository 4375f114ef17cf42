//! `cargo xtask demo`: the whole Sluice flow on one machine, with records visibly arriving.
//!
//! It starts moto (the local AWS) and a sample JSON API on loopback, then the real `sluice`
//! binary, and plays both sides: the operator creates a tenant; the tenant reads its external id
//! (`GET /v1/me`), deploys `tenant-stack/template.yaml` with CloudFormation once, trusting that
//! id, uploads the `json-split` plugin, creates two projects from the stack's outputs (both
//! active from their first run, with no stack update), and reads the Kinesis stream through the
//! AWS API, printing each record with its project's site and its delay. After about ten records
//! it prints a summary and stops everything; the exit code says whether the records arrived.
//!
//! It is a binary of `sluice-tests` rather than part of xtask because it is made of what the
//! end-to-end tests already use and trust (`Moto`, `Daemon`, the SDK settings for moto), so the
//! demo walks the same paths as the tests and cannot drift from them, while xtask stays a thin
//! driver with no AWS SDK to compile. `cargo xtask demo` installs and builds what it needs, then
//! runs this binary; `cargo run -p sluice-tests --bin demo` runs it alone once everything is built.

mod sample_api;
mod stack;

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use aws_sdk_kinesis::config::Credentials;
use serde_json::{Value, json};
use sluice_tests::stream_tail;
use sluice_tests::tenant_account::sdk_config;
use sluice_tests::{ADMIN_TOKEN, Daemon, Moto, http_call_raw, plugins_dir, root};

/// How long the demo may take once everything is built, from starting moto to the last record.
const BUDGET: Duration = Duration::from_secs(90);
/// Records to show before the summary.
const WANTED: usize = 10;
const STACK: &str = "sluice-demo";
const STREAM: &str = "sluice-demo-readings";
/// The sites of the demo's two projects: each polls the sample API for its own site.
const SITES: [&str; 2] = ["north", "south"];
/// The key the sample API wants; the tenant keeps it in its secret.
const SOURCE_KEY: &str = "demo-source-key-0123456789";
/// The platform's own identity. The daemon runs with this role's credentials in a separate
/// account (999999999999) from the tenant's (moto's default, 123456789012), as in production,
/// and learns its principal from STS, so `onboarding.platform_principal_arn` is this role.
const PLATFORM_ROLE: &str = "arn:aws:iam::999999999999:role/sluice-platform";
const REGION: &str = "eu-central-1";

/// The step in progress and what to do if it fails, for error messages and the panic hook
/// (the shared test helpers report failures by panicking).
static STEP: Mutex<(String, &str)> = Mutex::new((String::new(), ""));

fn step(what: &str, fix: &'static str) {
    println!("==> {what}");
    *STEP.lock().unwrap_or_else(|e| e.into_inner()) = (what.to_string(), fix);
}

fn info(text: impl std::fmt::Display) {
    println!("    {text}");
}

fn failed_step() -> String {
    let (what, fix) = STEP.lock().unwrap_or_else(|e| e.into_inner()).clone();
    format!("demo: failed while {what}\n      {fix}")
}

fn main() -> ExitCode {
    if std::env::var_os("SLUICE_BIN").is_none()
        && let Some(dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.to_path_buf()))
    {
        // `Daemon` finds the binary through SLUICE_BIN or next to a test executable in `deps/`;
        // this binary sits next to `sluice` itself. SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("SLUICE_BIN", dir.join("sluice")) };
    }
    // The shared helpers fail by panicking with a message that says what is wrong; a backtrace
    // would bury it, so the demo prints the message, where it came from, and the step's fix.
    std::panic::set_hook(Box::new(|info| {
        let message = info.payload_as_str().unwrap_or("a panic without a message");
        let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: {message}{at}");
        eprintln!("{}", failed_step());
    }));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("demo: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            eprintln!("{}", failed_step());
            ExitCode::FAILURE
        }
    }
}

/// Calls the daemon's API and expects `want`; anything else is an error naming the answer.
fn call(daemon: &Daemon, method: &str, path: &str, token: &str, body: Option<Value>, want: u16) -> Result<Value> {
    let body = body.map(|b| b.to_string());
    let (status, answer) = daemon.call(method, path, Some(token), body.as_deref());
    if status != want {
        bail!("{method} {path} answered {status}: {answer}");
    }
    Ok(answer)
}

fn text<'a>(value: &'a Value, field: &str) -> Result<&'a str> {
    value[field].as_str().with_context(|| format!("the answer has no `{field}`: {value}"))
}

fn check_deadline(deadline: Instant) -> Result<()> {
    if Instant::now() >= deadline {
        bail!("the demo ran out of its {} s budget", BUDGET.as_secs());
    }
    Ok(())
}

/// Runs the demo; `Ok(false)` when it ran but the records did not arrive in time.
async fn demo() -> Result<bool> {
    let started = Instant::now();
    let deadline = started + BUDGET;
    let elapsed = || format!("{:.1} s", started.elapsed().as_secs_f64());

    step("checking what the demo needs", "run it through `cargo xtask demo`, which installs and builds everything");
    let template_path = root().join("tenant-stack/template.yaml");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("cannot read the tenant stack template {}", template_path.display()))?;
    let plugin_path = plugins_dir().join("json_split.wasm");
    let plugin = std::fs::read(&plugin_path).with_context(|| {
        format!("cannot read {}; build the plugins with `cargo xtask plugins`", plugin_path.display())
    })?;
    let sluice = sluice_tests::sluice_bin();
    anyhow::ensure!(sluice.is_file(), "{} is missing; build it with `cargo build -p sluice-host`", sluice.display());
    info(format!("template {}", template_path.display()));
    info(format!("plugin   {} ({} KiB)", plugin_path.display(), plugin.len() / 1024));
    info(format!("daemon   {}", sluice.display()));

    step(
        "starting moto (the local AWS: STS, CloudFormation, Secrets Manager, Kinesis) on 127.0.0.1",
        "install moto's server with `pip install 'moto[server]'` so that `moto_server` is on PATH",
    );
    let moto = Moto::start();
    info(format!("moto is up at {} ({})", moto.endpoint, elapsed()));

    step("starting the sample JSON API on 127.0.0.1", "another process may hold the loopback ports; try again");
    let api = sample_api::SampleApi::start(SOURCE_KEY).context("cannot start the sample API")?;
    info(format!(
        "GET {}/readings?site=… produces two readings of the site per request, each stamped with produced_at; it wants x-api-key",
        api.base
    ));

    step(
        &format!("starting sluice as the platform role {PLATFORM_ROLE}"),
        "build the daemon with `cargo build -p sluice-host --bin sluice`; its own messages are above",
    );
    let operator = sdk_config(&moto.endpoint, Credentials::new("testing", "testing", None, None, "operator")).await;
    let assumed = aws_sdk_sts::Client::new(&operator)
        .assume_role()
        .role_arn(PLATFORM_ROLE)
        .role_session_name("sluice-demo")
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("AssumeRole failed: {}", aws_sdk_sts::error::DisplayErrorContext(&e)))?;
    let platform = assumed.credentials().context("AssumeRole returned no credentials")?;
    let data_dir = tempfile::tempdir().context("cannot create a temporary data directory")?;
    // SLUICE_ALLOW_PRIVATE_SOURCES: the sample API is on loopback, which the egress guard refuses
    // unless the operator allows it, as the tests do. The platform principal comes from STS.
    let env = [
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_REGION", REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", platform.access_key_id().to_string()),
        ("AWS_SECRET_ACCESS_KEY", platform.secret_access_key().to_string()),
        ("AWS_SESSION_TOKEN", platform.session_token().to_string()),
        ("SLUICE_ALLOW_PRIVATE_SOURCES", "true".to_string()),
        // Warnings and errors only: the demo's own output tells the story.
        ("SLUICE_LOG", "warn".to_string()),
    ];
    let mut daemon = Daemon::start_configured(data_dir.path(), &env, "");
    info(format!("sluice (pid {}) listening on http://{} ({})", daemon.child.id(), daemon.addr, elapsed()));
    check_deadline(deadline)?;

    step(
        "creating tenant \"acme\" as the operator (POST /v1/tenants)",
        "the daemon refused the request; its answer is above",
    );
    let tenant =
        call(&daemon, "POST", "/v1/tenants", ADMIN_TOKEN, Some(json!({"name": "acme", "tier": "premium"})), 201)?;
    let key = text(&tenant, "api_key")?.to_string();
    info(format!(
        "tenant {} (tier premium: schedules down to one second), key {}…",
        text(&tenant, "id")?,
        key.get(..8).unwrap_or(&key)
    ));

    step("reading the tenant's trust values (GET /v1/me)", "the daemon refused the tenant's key; its answer is above");
    let me = call(&daemon, "GET", "/v1/me", &key, None, 200)?;
    let principal = text(&me, "platform_principal_arn")?.to_string();
    let external_id = text(&me, "external_id")?.to_string();
    info(format!("platform_principal_arn {principal}"));
    info(format!("external_id            {external_id} (the tenant's, for all its projects)"));

    step(
        &format!(
            "deploying the tenant stack {STACK} from tenant-stack/template.yaml, once (CloudFormation CreateStack)"
        ),
        "fix tenant-stack/template.yaml (check it with `cfn-lint`), or see moto's CloudFormation support",
    );
    let tenant_aws = sdk_config(&moto.endpoint, Credentials::new("testing", "testing", None, None, "tenant")).await;
    let cloudformation = aws_sdk_cloudformation::Client::new(&tenant_aws);
    let secrets = aws_sdk_secretsmanager::Client::new(&tenant_aws);
    // The stack trusts the tenant's external id, so it serves every project of the tenant that
    // names its role: no update per project.
    let parameters = [
        ("StreamName", STREAM),
        ("StreamMode", "PROVISIONED"),
        ("ShardCount", "1"),
        ("ApiKey", SOURCE_KEY),
        ("PlatformPrincipalArn", &principal),
        ("ExternalId", &external_id),
    ];
    let outputs = stack::create(&cloudformation, STACK, &template, &parameters, deadline).await?;
    info(format!("RoleArn   {}", outputs.role_arn));
    info(format!("StreamArn {}", outputs.stream_arn));
    let (secret_arn, created) =
        stack::ensure_secret(&secrets, outputs.secret_arn.as_deref(), &format!("{STACK}/api-key"), SOURCE_KEY).await?;
    info(format!("SecretArn {secret_arn}"));
    if created {
        info("note: moto's CloudFormation does not create Secrets Manager secrets, so the demo created this one");
        info(
            "      itself (CreateSecret) with the same ApiKey value; real CloudFormation creates it from the template",
        );
    }
    check_deadline(deadline)?;

    step("uploading the json-split plugin (POST /v1/plugins)", "rebuild the plugins with `cargo xtask plugins`");
    let (status, uploaded) =
        http_call_raw(daemon.addr, "POST", "/v1/plugins?name=json-split", Some(&key), "application/wasm", &plugin);
    if status != 201 && status != 200 {
        bail!("POST /v1/plugins answered {status}: {uploaded}");
    }
    let plugin_id = text(&uploaded, "id")?.to_string();
    info(format!("plugin {plugin_id}"));

    let mut project_ids = Vec::new();
    for site in SITES {
        step(
            &format!(
                "creating project \"readings-{site}\" at rate(2 seconds) with the stack's outputs (POST /v1/projects)"
            ),
            "the daemon refused the project; its answer above names the field to fix",
        );
        let project = call(
            &daemon,
            "POST",
            "/v1/projects",
            &key,
            Some(json!({
                "name": format!("readings-{site}"),
                "schedule": "rate(2 seconds)",
                "timezone": "UTC",
                "source": {
                    "url": format!("{}/readings?site={site}", api.base),
                    "api_key": {"secret_arn": secret_arn, "header": "x-api-key"},
                },
                "plugin_id": plugin_id,
                "plugin_settings": {"array_path": "readings", "partition_key_field": "id"},
                "target": {"stream_arn": outputs.stream_arn, "role_arn": outputs.role_arn},
            })),
            201,
        )?;
        let project_id = text(&project, "id")?.to_string();
        info(format!(
            "project {project_id}, status {} until its first run, trust {}, external id {}",
            project["status"].as_str().unwrap_or("?"),
            project["trust"].as_str().unwrap_or("?"),
            project["onboarding"]["external_id"].as_str().unwrap_or("?"),
        ));
        project_ids.push(project_id);
    }
    info("no stack update: the role already trusts the tenant's id, so both projects run from their first run");
    info("note: moto does not evaluate IAM trust policies; against real AWS a stack that did not trust");
    info("      the tenant's id would leave the projects pending, failing at assume_role");
    check_deadline(deadline)?;

    step(
        &format!("reading {STREAM} as the tenant (GetShardIterator, GetRecords) until {WANTED} records arrive"),
        "see the project's runs in the summary; the failing stage says what to fix",
    );
    let kinesis = aws_sdk_kinesis::Client::new(&tenant_aws);
    let mut tail = stream_tail::Tail::open(kinesis, &outputs.stream_arn).await?;
    let mut delays = Vec::new();
    while delays.len() < WANTED && Instant::now() < deadline {
        for record in tail.poll().await? {
            let delay = show(delays.len() + 1, &record);
            delays.extend(delay);
            if delay.is_none() {
                info("  (a record without produced_at: not the sample API's)");
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let arrived = delays.len() >= WANTED;

    step("summary", "the daemon stopped answering; its messages are above");
    let mut runs = Vec::new();
    for project_id in &project_ids {
        let page = call(&daemon, "GET", &format!("/v1/projects/{project_id}/runs?limit=100"), &key, None, 200)?;
        runs.extend(page["runs"].as_array().cloned().unwrap_or_default());
    }
    // Newest first across both projects, as each project's own history is.
    runs.sort_by(|a, b| b["started_at"].as_str().cmp(&a["started_at"].as_str()));
    summarize(&runs, &delays, &api);
    for project_id in &project_ids {
        let shown = call(&daemon, "GET", &format!("/v1/projects/{project_id}"), &key, None, 200)?;
        let name = shown["name"].as_str().unwrap_or("?");
        info(format!("project   {project_id} ({name}) is {}", shown["status"].as_str().unwrap_or("?")));
    }
    if !arrived {
        println!(
            "demo: gave up after {} s with {} of {WANTED} records; the runs above say where they stopped",
            BUDGET.as_secs(),
            delays.len()
        );
    }

    step(
        "stopping sluice (SIGTERM) and moto",
        "sluice did not stop within 15 s of SIGTERM, so the demo killed it; its messages above say why",
    );
    let code = daemon.terminate();
    info(format!("sluice exited with {}", code.map_or("a signal".to_string(), |c| format!("code {c}"))));
    drop(daemon);
    drop(moto);
    info("moto stopped");
    drop(data_dir);
    if arrived {
        println!("demo: {} records arrived in Kinesis; done in {}", delays.len(), elapsed());
    }
    Ok(arrived)
}

/// Prints one record as it arrived and returns its delay in milliseconds: Kinesis's arrival
/// time minus the time the sample API produced it. `None` for a record the API did not stamp.
fn show(number: usize, record: &stream_tail::Arrived) -> Option<i64> {
    let data: Value = serde_json::from_str(&record.data).unwrap_or(Value::Null);
    let produced = data["produced_at"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok())?;
    let arrived = record.arrived_at_ms.unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
    let delay = arrived - produced.as_millisecond();
    info(format!(
        "record {number:>2}  {:<12} key {:<12} {:<5} {:<10} {:>5.1} °C  produced {}  delay {delay:>4} ms",
        data["id"].as_str().unwrap_or("?"),
        record.partition_key,
        data["site"].as_str().unwrap_or("?"),
        data["sensor"].as_str().unwrap_or("?"),
        data["celsius"].as_f64().unwrap_or(f64::NAN),
        produced.strftime("%H:%M:%S%.3f"),
    ));
    Some(delay)
}

/// Prints what the run history and the records say.
fn summarize(runs: &[Value], delays: &[i64], api: &sample_api::SampleApi) {
    let count = |outcome: &str| runs.iter().filter(|r| r["outcome"] == outcome).count();
    let delivered: u64 =
        runs.iter().filter(|r| r["outcome"] == "succeeded").filter_map(|r| r["records"].as_u64()).sum();
    info(format!(
        "runs      {} ({} succeeded, {} failed, {} skipped), {delivered} records delivered, from the projects' run history",
        runs.len(),
        count("succeeded"),
        count("failed"),
        count("skipped"),
    ));
    // Runs come newest first, and the newest failure is the one that says what to fix now.
    if let Some(failed) = runs.iter().find(|r| r["outcome"] == "failed") {
        let field = |name: &str| failed["error"][name].as_str().unwrap_or("?").to_string();
        let at = failed["started_at"].as_str().unwrap_or("?");
        info(format!("newest failure ({at}) in {}: {}", field("stage"), field("message")));
    }
    let mut durations: Vec<i64> = runs
        .iter()
        .filter_map(|r| {
            let at = |field: &str| r[field].as_str()?.parse::<jiff::Timestamp>().ok();
            Some(at("finished_at")?.as_millisecond() - at("started_at")?.as_millisecond())
        })
        .collect();
    durations.sort_unstable();
    if let (Some(p50), Some(max)) = (percentile(&durations, 50), durations.last()) {
        info(format!("run time  p50 {p50} ms, max {max} ms (assume role, secret, fetch, transform, deliver)"));
    }
    info(format!("source    {} requests answered, {} refused for their key", api.served(), api.refused()));
    let mut sorted = delays.to_vec();
    sorted.sort_unstable();
    match (percentile(&sorted, 50), sorted.last()) {
        (Some(p50), Some(max)) => info(format!(
            "records   {} arrived; latency p50 {p50} ms, max {max} ms (Kinesis arrival minus production at the API)",
            sorted.len()
        )),
        _ => info("records   none arrived"),
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}
