//! Shared support for Sluice's integration tests: where the built plugins and the `sluice`
//! binary are, and small builders for plugin inputs.
//!
//! The tests themselves live in `e2e/`, compiled into one test binary.

pub mod fault_proxy;
pub mod hostile_source;
pub mod secret_registry;
pub mod source;
pub mod tenant_account;
pub mod world;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use secret_registry::observe_response;
pub use secret_registry::{assert_no_secrets, canary, leaked_secrets, register_secret, wire_log_lines};

use sluice::run::Control;
use sluice::scheduler::{Clock, Outcome, Runner, Scheduler, SchedulerConfig, Tick};

use sluice::runtime::{Plugin, Poll, Response, Runtime, RuntimeConfig};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace root").to_path_buf()
}

/// The directory holding the plugin components: `SLUICE_PLUGINS_DIR`, set by `cargo xtask test`,
/// or the plugins workspace's release output.
pub fn plugins_dir() -> PathBuf {
    std::env::var_os("SLUICE_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("plugins/target/wasm32-wasip2/release"))
}

/// The bytes of a built plugin, by crate name (`json-split` or `json_split`).
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    let path = plugins_dir().join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("cannot read plugin {}: {e}; build the plugins first with `cargo xtask plugins`", path.display())
    })
}

/// The `sluice` binary built for this test run: `SLUICE_BIN`, or `target/<profile>/sluice` next
/// to this test executable.
pub fn sluice_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/debug/deps/e2e-<hash> → target/debug/sluice
    let path =
        exe.parent().and_then(|deps| deps.parent()).expect("tests run from target/<profile>/deps").join("sluice");
    assert!(path.is_file(), "{} is missing; build it with `cargo build -p sluice-host`", path.display());
    path
}

/// One runtime shared by the tests in this binary, the way the daemon shares one engine between
/// all tenants.
pub fn shared_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("the runtime starts"))
}

/// Loads a built plugin into a runtime, panicking with the load error.
pub fn load(runtime: &Runtime, name: &str) -> Plugin {
    runtime.load(&plugin_bytes(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// A poll for project `p-1` of tenant `t-1` with the given settings and no state.
pub fn poll(settings: &[(&str, &str)]) -> Poll {
    let mut settings: Vec<(String, String)> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    settings.sort();
    Poll {
        project_id: "p-1".into(),
        tenant_id: "t-1".into(),
        scheduled_at_ms: 1_700_000_000_000,
        state: None,
        settings,
    }
}

/// A 200 response with a JSON content type and the given body.
pub fn response(body: impl Into<Vec<u8>>) -> Response {
    Response { status: 200, headers: vec![("content-type".into(), "application/json".into())], body: body.into() }
}

/// The operator token the API tests use.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The platform principal the API tests configure.
pub const PLATFORM_PRINCIPAL: &str = "arn:aws:iam::111111111111:role/sluice-test";

/// An in-process API over a fresh store in a temporary directory, for `oneshot` tests.
pub struct TestApi {
    pub app: axum::Router,
    /// The same store the app uses, for arranging data the API cannot create (run history).
    pub store: sluice::store::Store,
    pub dir: tempfile::TempDir,
    /// Ticks the API's scheduler fired: runs only record them here, so API tests see what would
    /// run without fetching or delivering anything.
    pub ticks: Arc<Mutex<Vec<Tick>>>,
}

/// A runner that only records ticks.
struct Recorder(Arc<Mutex<Vec<Tick>>>);

impl Runner for Recorder {
    async fn run(&self, tick: Tick) -> Outcome {
        self.0.lock().unwrap().push(tick);
        Outcome::default()
    }

    fn skipped(&self, _: Tick, _: u32) {}
}

impl TestApi {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = sluice::store::Store::open(&dir.path().join("db")).unwrap();
        let runtime = Runtime::new(RuntimeConfig {
            max_concurrent_calls: 8,
            cache_dir: Some(dir.path().join("compiled")),
            ..RuntimeConfig::default()
        })
        .unwrap();
        let limits = sluice::api::BodyLimits { max_json_bytes: 1 << 20, max_plugin_bytes: 32 << 20 };
        let metrics = Arc::default();
        let mut state =
            sluice::api::AppState::new(store.clone(), runtime, metrics, ADMIN_TOKEN, limits, PLATFORM_PRINCIPAL);
        let ticks = Arc::default();
        // A scheduler driven by a recorder, as `sluice serve` drives one with the data plane.
        if tokio::runtime::Handle::try_current().is_ok() {
            let scheduler = Scheduler::new(SchedulerConfig::default(), Clock::system());
            let driver = scheduler.clone();
            let recorder = Arc::new(Recorder(Arc::clone(&ticks)));
            tokio::spawn(async move { driver.run(recorder, std::future::pending()).await });
            state = state.with_control(Control::new(scheduler, store.clone()));
        }
        let app = sluice::api::app(state);
        Self { app, store, dir, ticks }
    }

    /// Sends one request and returns the status and the JSON body (`null` when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let content_type = body.map(|_| "application/json");
        self.call_raw(method, path, token, content_type, body.unwrap_or("").as_bytes().to_vec()).await
    }

    /// Sends one request with any body and content type.
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let response = self.send(method, path, token, content_type, body).await;
        let json = if response.body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&response.body).unwrap()
        };
        (response.status, json)
    }

    /// Sends one request and returns the response as it came: status, content type and bytes,
    /// whatever the body is (for checking responses against the OpenAPI document).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> RawResponse {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let sent = body.clone();
        let request = request.body(axum::body::Body::from(body)).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").map(|v| v.to_str().expect("an ASCII content type").to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        observe_response(path, &sent, &format!("the response to {method} {path}"), &String::from_utf8_lossy(&body));
        RawResponse { status, content_type, body }
    }

    /// Sends a request without credentials and returns the body as text (for `/metrics`).
    pub async fn call_text(&self, method: &str, path: &str) -> String {
        String::from_utf8(self.send(method, path, None, None, vec![]).await.body).unwrap()
    }

    /// Uploads a built plugin as a tenant.
    pub async fn upload(&self, key: &str, plugin: &str) -> (u16, serde_json::Value) {
        let path = format!("/v1/plugins?name={plugin}");
        self.call_raw("POST", &path, Some(key), Some("application/wasm"), plugin_bytes(plugin)).await
    }

    /// Creates a tenant as the operator; returns its id and API key.
    pub async fn tenant(&self, name: &str) -> (String, String) {
        let (status, body) =
            self.call("POST", "/v1/tenants", Some(ADMIN_TOKEN), Some(&format!(r#"{{"name": "{name}"}}"#))).await;
        assert_eq!(status, 201, "{body}");
        (body["id"].as_str().unwrap().to_string(), body["api_key"].as_str().unwrap().to_string())
    }
}

/// A response from [`TestApi::send`], body unparsed.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as JSON, `null` when empty; panics on anything else.
    pub fn json(&self) -> serde_json::Value {
        if self.body.is_empty() {
            return serde_json::Value::Null;
        }
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Default for TestApi {
    fn default() -> Self {
        Self::new()
    }
}

/// A running `sluice serve`, killed when dropped.
///
/// Its stdout and stderr (its log, at `SLUICE_LOG=info,sluice=debug` unless a test sets another
/// level) are captured and echoed as the test's own output, which the harness shows when the test
/// fails. When dropped, it checks that no registered secret (see [`register_secret`]) is in the
/// log or, while the daemon still runs, in `/metrics`.
pub struct Daemon {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    log: Arc<Mutex<String>>,
    /// One message per output stream once it reaches its end.
    drained: std::sync::mpsc::Receiver<()>,
}

/// The daemon's log level in tests: its own debug messages (an AWS error's full context, among
/// others) are the ones most likely to carry what must not leak, and it says little at info.
const TEST_LOG: &str = "info,sluice=debug";

/// Copies one output stream of a child process into `log`, line by line, and hands each line to
/// `on_line` (for the address the child prints). With `echo`, each line also goes to the test's
/// output behind that name.
fn capture(
    stream: impl std::io::Read + Send + 'static,
    log: Arc<Mutex<String>>,
    echo: Option<&'static str>,
    drained: std::sync::mpsc::Sender<()>,
    mut on_line: impl FnMut(&str) + Send + 'static,
) {
    use std::io::BufRead;
    // Spawned threads inherit the test's output capture, so the echo shows only on failure.
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stream);
        let mut raw = Vec::new();
        while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&raw).into_owned();
            if let Some(name) = echo {
                eprint!("[{name}] {line}");
            }
            on_line(line.trim_end());
            log.lock().unwrap_or_else(|e| e.into_inner()).push_str(&line);
            raw.clear();
        }
        let _ = drained.send(());
    });
}

impl Daemon {
    /// Starts `sluice serve` on an ephemeral loopback port with the given data directory and
    /// waits (at most 30 s) until it prints its address.
    pub fn start(data_dir: &std::path::Path) -> Self {
        Self::start_with(data_dir, &[("SLUICE_PLATFORM_PRINCIPAL_ARN", PLATFORM_PRINCIPAL.to_string())])
    }

    /// Like [`Daemon::start`], with extra environment variables.
    pub fn start_with(data_dir: &std::path::Path, env: &[(&str, String)]) -> Self {
        Self::start_configured(data_dir, env, "")
    }

    /// Like [`Daemon::start_with`], with a TOML configuration file holding `config` (none when
    /// empty), kept in the data directory.
    pub fn start_configured(data_dir: &std::path::Path, env: &[(&str, String)], config: &str) -> Self {
        let mut command = std::process::Command::new(sluice_bin());
        command.arg("serve");
        if !config.is_empty() {
            let path = data_dir.join("sluice-test.toml");
            std::fs::create_dir_all(data_dir).unwrap();
            std::fs::write(&path, config).unwrap();
            command.arg("--config").arg(path);
        }
        let mut child = command
            .env("SLUICE_LISTEN", "127.0.0.1:0")
            .env("SLUICE_DATA_DIR", data_dir)
            .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SLUICE_LOG", TEST_LOG)
            // Plain text: colour codes in the log would only get in the way of reading it.
            .env("NO_COLOR", "1")
            .env_remove("SLUICE_PLATFORM_PRINCIPAL_ARN")
            // Unless a test points it at moto, AWS goes to a closed loopback port: a test must
            // never reach the real AWS, and a project that runs fails fast instead.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_REGION", "eu-central-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("sluice starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (drained_tx, drained) = std::sync::mpsc::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        capture(child.stdout.take().unwrap(), log.clone(), Some("sluice"), drained_tx.clone(), move |line| {
            if let Some(addr) = line.strip_prefix("sluice listening on http://") {
                let _ = tx.send(addr.parse::<std::net::SocketAddr>().unwrap());
            }
        });
        capture(child.stderr.take().unwrap(), log.clone(), Some("sluice"), drained_tx, |_| {});
        let addr = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sluice did not print its address within 30 s; its output:\n{}", log.lock().unwrap());
            }
        };
        Self { child, addr, log, drained }
    }

    /// The daemon's peak resident memory so far (`VmHWM` in `/proc/<pid>/status`), in MiB.
    pub fn peak_rss_mib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("the daemon's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status");
        kib / 1024
    }

    /// Everything the daemon has printed so far, stdout and stderr.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends one HTTP/1.1 request and returns the status and JSON body (`null` when empty).
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
        http_call(self.addr, method, path, token, body)
    }

    /// Sends SIGTERM and waits (at most 15 s) for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(15), "sluice did not stop after SIGTERM");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Everything is gathered, and the process is gone, before anything can panic.
        let running = matches!(self.child.try_wait(), Ok(None));
        let timeout = std::time::Duration::from_secs(5);
        let metrics = running.then(|| http_exchange_within(self.addr, "GET", "/metrics", None, "", b"", timeout).ok());
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Both streams end with the process; waiting for them makes the log complete.
        let complete = (0..2).all(|_| self.drained.recv_timeout(timeout).is_ok());
        if std::thread::panicking() {
            return;
        }
        if let Some(Some((_, text))) = metrics {
            assert_no_secrets("the daemon's /metrics", &text);
        }
        assert_no_secrets("the daemon's log", &self.log());
        assert!(complete, "the daemon's output did not end within {timeout:?} of its exit");
    }
}

/// A minimal HTTP/1.1 client over a loopback TCP connection (`Connection: close`), enough for
/// JSON APIs in tests.
pub fn http_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let body = body.unwrap_or("");
    let content_type = if body.is_empty() { "" } else { "application/json" };
    http_call_raw(addr, method, path, token, content_type, body.as_bytes())
}

/// Like [`http_call`], with any body and content type (none when empty).
pub fn http_call_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let (status, rest) = http_exchange(addr, method, path, token, content_type, body);
    let json = if rest.trim().is_empty() { serde_json::Value::Null } else { serde_json::from_str(&rest).unwrap() };
    (status, json)
}

/// A `GET` without credentials whose body is text (such as `/metrics`).
pub fn http_text(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_exchange(addr, "GET", path, None, "", b"")
}

/// One HTTP/1.1 exchange; returns the status and the body as text, which must hold no registered
/// secret beyond a key the response issues.
fn http_exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> (u16, String) {
    let timeout = std::time::Duration::from_secs(30);
    let (status, text) = http_exchange_within(addr, method, path, token, content_type, body, timeout)
        .unwrap_or_else(|e| panic!("{method} {path} on the daemon at {addr}: {e}"));
    observe_response(path, body, &format!("the response to {method} {path}"), &text);
    (status, text)
}

/// Like [`http_exchange`] with a read timeout and without the check, failing with a message.
fn http_exchange_within(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
    timeout: std::time::Duration,
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let fail = |e: std::io::Error| e.to_string();
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    if !content_type.is_empty() {
        request.push_str(&format!("content-type: {content_type}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).map_err(fail)?;
    stream.write_all(body).map_err(fail)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(fail)?;
    let text = String::from_utf8_lossy(&response);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("an incomplete HTTP response")?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status code")?;
    // Responses from axum here are small and sent with content-length, not chunked.
    Ok((status, rest.to_string()))
}

/// moto's server on a free loopback port, the local AWS for tests; stopped when dropped.
pub struct Moto {
    child: std::process::Child,
    /// moto's output (one line per request, and any traceback), printed when a test fails.
    log: Arc<Mutex<String>>,
    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
}

impl Moto {
    /// Starts `moto_server` on a port of its own choosing and waits (at most 60 s) until it
    /// listens.
    ///
    /// moto binds port 0 and names the port once it listens. Picking a free port first and
    /// handing it to moto left a second of Python start-up in which another test could be handed
    /// the same port: one moto then failed to bind and exited, its test went on against the other
    /// test's moto, and lost it mid-test when that test ended.
    pub fn start() -> Self {
        let mut child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("moto_server runs; `cargo xtask test` installs it with pip install 'moto[server]'");
        let log = Arc::new(Mutex::new(String::new()));
        // Nobody waits for moto's output to end: the log is read only when something went wrong.
        let (drained, _) = std::sync::mpsc::channel();
        let (tx, rx) = std::sync::mpsc::channel();
        capture(child.stdout.take().unwrap(), log.clone(), None, drained.clone(), |_| {});
        // The sender goes with this stream's thread, so the wait below ends when moto exits.
        capture(child.stderr.take().unwrap(), log.clone(), None, drained, move |line| {
            if let Some(port) = line.split("Running on http://127.0.0.1:").nth(1) {
                let _ = tx.send(port.parse::<u16>().expect("moto prints its port"));
            }
        });
        let port = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(port) => port,
            Err(error) => {
                let _ = child.kill();
                let status = child.wait().map_or("exit status unknown".to_string(), |status| status.to_string());
                let log = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
                panic!("moto_server did not say where it listens ({error}; {status}); its output:\n{log}");
            }
        };
        Self { child, log, endpoint: format!("http://127.0.0.1:{port}") }
    }

    /// The environment that points the AWS SDK at this server with dummy credentials.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "eu-central-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }
}

impl Drop for Moto {
    /// Stops moto. When the test is failing, or moto had already stopped by itself, the end of
    /// its log goes to the test's output: a test that saw AWS misbehave then shows whether moto
    /// did.
    fn drop(&mut self) {
        let exited = self.child.try_wait().ok().flatten();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || exited.is_some() {
            let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            let status = exited.map_or("was running".to_string(), |status| format!("had exited ({status})"));
            eprintln!("moto at {} {status}; the end of its log:\n{tail}", self.endpoint);
        }
    }
}
