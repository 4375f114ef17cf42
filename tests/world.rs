//! The whole data plane for end-to-end tests: moto behind the fault proxy, a source on loopback,
//! and the real `sluice` binary pointed at both, with short delays so that tests run in seconds.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fault_proxy::FaultProxy;
use crate::source::TestSource;
use crate::tenant_account::TenantAccount;
use crate::{ADMIN_TOKEN, Daemon, Moto, PLATFORM_PRINCIPAL, http_call_raw, plugin_bytes};

/// Settings that keep retries and jitter short.
pub const FAST: &str = "
[scheduler]
jitter_window_ms = 200

[run]
outbox_retry_ms = 300
failing_after_failures = 3
max_backoff_ms = 2000

[aws]
put_backoff_base_ms = 10
put_backoff_max_ms = 50
put_max_attempts = 3
";

/// The store settings the daemon gets on top of a test's own: none (sled in the data directory)
/// unless `SLUICE_TEST_STORE=dynamodb`, which `cargo xtask test` sets for a second pass of the
/// tests that exercise persistence, so that they run against the shared store on moto too.
pub fn test_store() -> Option<&'static str> {
    match std::env::var("SLUICE_TEST_STORE").as_deref() {
        Ok("dynamodb") => Some(
            "\n[store]\nbackend = \"dynamodb\"\ntable = \"sluice\"\nbucket = \"sluice-store\"\ncreate_table = true\n",
        ),
        _ => None,
    }
}

pub struct World {
    pub moto: Moto,
    pub proxy: FaultProxy,
    pub source: TestSource,
    pub dir: tempfile::TempDir,
    pub daemon: Option<Daemon>,
    /// Whether the daemon may fetch from loopback (`SLUICE_ALLOW_PRIVATE_SOURCES`).
    pub allow_private: bool,
}

/// A tenant on the daemon: its id and key, and its AWS account on moto.
pub struct Tenant {
    pub id: String,
    pub key: String,
    pub aws: TenantAccount,
}

impl World {
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// Like [`World::start`]; with `allow_private` false the egress guard refuses the source.
    pub fn start_with(allow_private: bool) -> Self {
        Self::start_configured(allow_private, FAST, &[])
    }

    /// Like [`World::start_with`], with the daemon's configuration file and extra environment.
    pub fn start_configured(allow_private: bool, config: &str, env: &[(&'static str, String)]) -> Self {
        let moto = Moto::start();
        let proxy = FaultProxy::start(&moto.endpoint);
        if test_store().is_some() {
            // moto needs requests one at a time to apply each atomically (see `one_at_a_time`).
            proxy.one_at_a_time();
        }
        let source = TestSource::start();
        let dir = tempfile::tempdir().unwrap();
        let mut world = Self { moto, proxy, source, dir, daemon: None, allow_private };
        world.restart_with(config, env);
        world
    }

    /// Starts the daemon (again) on the same data directory, after a `kill -9` of the running
    /// one, if any: two daemons cannot hold one store.
    pub fn restart(&mut self) {
        self.restart_with(FAST, &[]);
    }

    /// Like [`World::restart`], with the daemon's configuration file and extra environment
    /// (e.g. `SLUICE_LOG`), which a test that restarts passes each time.
    pub fn restart_with(&mut self, config: &str, extra_env: &[(&'static str, String)]) {
        let mut env = vec![
            ("AWS_ENDPOINT_URL", self.proxy.endpoint.clone()),
            ("SLUICE_ALLOW_PRIVATE_SOURCES", self.allow_private.to_string()),
            ("SLUICE_PLATFORM_PRINCIPAL_ARN", PLATFORM_PRINCIPAL.to_string()),
        ];
        env.extend(extra_env.iter().cloned());
        // A test that names its own store keeps it.
        let config = match test_store() {
            Some(store) if !config.contains("[store]") => format!("{config}{store}"),
            _ => config.to_string(),
        };
        self.daemon.take();
        self.daemon = Some(Daemon::start_configured(self.dir.path(), &env, &config));
    }

    /// `kill -9` of the daemon.
    pub fn kill(&mut self) {
        self.daemon.take().expect("the daemon runs").kill();
    }

    /// Waits (at most 30 s) until `/readyz` says the daemon's scheduler has every project, as
    /// after a restart, before which a manual run is refused with 503.
    pub fn wait_ready(&self) {
        wait_for(Duration::from_secs(30), "the daemon to be ready", || {
            let (status, ready) = self.daemon().call("GET", "/readyz", None, None);
            (status == 200 && ready["scheduler"] == true).then_some(())
        });
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the daemon runs")
    }

    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        self.daemon().call(method, path, Some(token), body.as_deref())
    }

    /// A premium tenant (schedules down to one second) with a role in `account`.
    pub async fn tenant(&self, name: &str, account: &str) -> Tenant {
        let (status, body) =
            self.call("POST", "/v1/tenants", ADMIN_TOKEN, Some(json!({"name": name, "tier": "premium"})));
        assert_eq!(status, 201, "{body}");
        Tenant {
            id: body["id"].as_str().unwrap().into(),
            key: body["api_key"].as_str().unwrap().into(),
            aws: TenantAccount::assume(&self.moto.endpoint, account).await,
        }
    }

    /// Uploads an example plugin for a tenant under its own name; returns its id.
    pub fn upload(&self, tenant: &Tenant, plugin: &str) -> String {
        self.upload_as(tenant, plugin, plugin)
    }

    /// Uploads an example plugin for a tenant as a version of the plugin `name`; returns its id.
    pub fn upload_as(&self, tenant: &Tenant, plugin: &str, name: &str) -> String {
        let path = format!("/v1/plugins?name={name}");
        let (status, body) = http_call_raw(
            self.daemon().addr,
            "POST",
            &path,
            Some(&tenant.key),
            "application/wasm",
            &plugin_bytes(plugin),
        );
        assert!(status == 201 || status == 200, "{status} {body}");
        body["id"].as_str().unwrap().into()
    }

    /// Creates a project; `extra` is merged into the body. Returns the project.
    pub fn project(&self, tenant: &Tenant, plugin: &str, path: &str, stream_arn: &str, extra: Value) -> Value {
        let plugin_id = self.upload(tenant, plugin);
        let mut body = json!({
            "name": format!("{plugin}-project"),
            "schedule": "rate(1 hour)",
            "timezone": "UTC",
            "source": {"url": format!("{}{path}", self.source.base)},
            "plugin_id": plugin_id,
            "target": {"stream_arn": stream_arn, "role_arn": tenant.aws.role_arn},
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, project) = self.call("POST", "/v1/projects", &tenant.key, Some(body));
        assert_eq!(status, 201, "{project}");
        project
    }

    /// Runs a project now and waits (at most `timeout`) for that run in its history.
    pub fn run_now(&self, tenant: &Tenant, project: &str, timeout: Duration) -> Value {
        // The previous run may still be finishing (409): a user would retry, and so do we.
        let path = format!("/v1/projects/{project}/run");
        let started = wait_for(timeout, "the previous run to finish", || {
            let (status, body) = self.call("POST", &path, &tenant.key, None);
            assert!(status == 202 || status == 409, "{status} {body}");
            (status == 202).then_some(body)
        });
        let at = started["scheduled_at"].as_str().unwrap().to_string();
        wait_for(timeout, &format!("the manual run of {project}"), || {
            self.runs(tenant, project).into_iter().find(|run| run["scheduled_at"] == at.as_str())
        })
    }

    /// A project's runs, newest first.
    pub fn runs(&self, tenant: &Tenant, project: &str) -> Vec<Value> {
        let (status, body) = self.call("GET", &format!("/v1/projects/{project}/runs?limit=100"), &tenant.key, None);
        assert_eq!(status, 200, "{body}");
        body["runs"].as_array().unwrap().clone()
    }

    pub fn show(&self, tenant: &Tenant, project: &str) -> Value {
        let (status, body) = self.call("GET", &format!("/v1/projects/{project}"), &tenant.key, None);
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The value of a metric; `series` is the name with its labels, as rendered.
    pub fn metric(&self, series: &str) -> f64 {
        self.metric_or(series, None)
    }

    /// Like [`World::metric`], with a value for a series not rendered yet (a counter still at 0).
    pub fn metric_or(&self, series: &str, absent: Option<f64>) -> f64 {
        let (_, text) = crate::http_text(self.daemon().addr, "/metrics");
        text.lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .or(absent)
            .unwrap_or_else(|| panic!("metric {series} missing"))
    }
}

/// Polls `check` every 100 ms until it returns something, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl World {
    /// An `incremental` project of `tenant` whose first run delivered items 0..10 and whose
    /// second left items 10..30 waiting in the outbox, Kinesis being down (it stays down).
    /// Returns the project's id and stream.
    pub async fn leave_records_waiting(&self, tenant: &Tenant) -> (String, String) {
        let arn = tenant.aws.stream("events").await;
        let project = self.project(tenant, "incremental", "/items", &arn, json!({}));
        let id = project["id"].as_str().unwrap().to_string();
        self.source.add_items(0..10);
        let run = self.run_now(tenant, &id, Duration::from_secs(60));
        assert_eq!(run["outcome"], "succeeded", "{run}");
        self.source.add_items(10..30);
        self.proxy.set_down("Kinesis_20131202.", true);
        let run = self.run_now(tenant, &id, Duration::from_secs(60));
        assert_eq!(
            (run["outcome"].as_str(), run["error"]["stage"].as_str()),
            (Some("failed"), Some("deliver")),
            "{run}"
        );
        (id, arn)
    }

    /// After [`World::leave_records_waiting`] and a restart with Kinesis back: every one of the
    /// 30 items arrives once, the outbox drains, and the next run starts after item 29, from the
    /// state the delivered entry committed.
    pub fn expect_waiting_records_delivered_once(&self, tenant: &Tenant, id: &str, arn: &str) {
        let counts = wait_for(Duration::from_secs(30), "the waiting records delivered", || {
            let counts = block_on(copies(tenant, arn));
            (counts.len() == 30).then_some(counts)
        });
        assert!(counts.values().all(|n| *n == 1), "every record once: {counts:?}");
        wait_for(Duration::from_secs(10), "the outbox to drain", || {
            (self.metric("sluice_outbox_depth") == 0.0).then_some(())
        });
        self.wait_ready();
        self.source.add_items(30..32);
        let run = self.run_now(tenant, id, Duration::from_secs(60));
        assert_eq!((run["outcome"].as_str(), run["records"].as_u64()), (Some("succeeded"), Some(2)), "{run}");
        let last = self.source.seen().into_iter().rev().find(|s| s.path == "/items").unwrap();
        assert_eq!(
            last.query.get("since").map(String::as_str),
            Some("2026-01-01T00:00:00.029Z"),
            "the state came along"
        );
    }
}

/// Runs a future to completion from blocking test code (a `wait_for` check, say) on the
/// multi-threaded test runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// How often each item id (the `id` field of a record's JSON) is in the stream `arn` of
/// `tenant`'s account: what at-least-once delivery tests count.
pub async fn copies(tenant: &Tenant, arn: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (_, data) in tenant.aws.read(arn).await {
        let id = serde_json::from_str::<Value>(&data).unwrap()["id"].as_str().unwrap().to_string();
        *counts.entry(id).or_default() += 1;
    }
    counts
}
