//! The API in process, over a fresh store, for `oneshot` tests.

use std::sync::{Arc, Mutex};

use sluice::run::Control;
use sluice::runtime::{Runtime, RuntimeConfig};
use sluice::scheduler::{Clock, Outcome, Runner, Scheduler, SchedulerConfig, Tick};

use crate::secret_registry::observe_response;
use crate::{ADMIN_TOKEN, PLATFORM_PRINCIPAL, plugin_bytes};

/// An in-process API over a fresh store in a temporary directory, for `oneshot` tests.
pub struct TestApi {
    /// moto, when the store is the shared one (`SLUICE_TEST_STORE=dynamodb`); kept for the
    /// test's lifetime.
    _moto: Option<(crate::Moto, crate::fault_proxy::FaultProxy)>,
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
        let (store, moto) = match crate::world::test_store() {
            None => (sluice::store::Store::open(&dir.path().join("db")).unwrap(), None),
            Some(_) => {
                let (store, moto, proxy) = shared_store();
                (store, Some((moto, proxy)))
            }
        };
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
        Self { _moto: moto, app, store, dir, ticks }
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
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        observe_response(path, &sent, &format!("the response to {method} {path}"), &String::from_utf8_lossy(&body));
        RawResponse { status, content_type, headers, body }
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
    pub headers: axum::http::HeaderMap,
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

/// A fresh shared store on a moto of its own, behind a proxy that hands it one request at a time
/// (see `FaultProxy::one_at_a_time`). Built on a thread of its own, so that `TestApi::new` works
/// in any test, async or not.
fn shared_store() -> (sluice::store::Store, crate::Moto, crate::fault_proxy::FaultProxy) {
    let moto = crate::Moto::start();
    let proxy = crate::fault_proxy::FaultProxy::start(&moto.endpoint);
    proxy.one_at_a_time();
    let endpoint = proxy.endpoint.clone();
    let store = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let credentials = aws_sdk_kinesis::config::Credentials::new("testing", "testing", None, None, "test");
            let sdk = crate::tenant_account::sdk_config(&endpoint, credentials).await;
            let settings =
                sluice::store::dynamo::DynamoSettings { table: "sluice".into(), bucket: "sluice-store".into() };
            let store = sluice::store::dynamo::DynamoStore::new(&sdk, &settings);
            store.init().await.unwrap();
            sluice::store::Store::from(store)
        })
    })
    .join()
    .unwrap();
    (store, moto, proxy)
}
