//! Control-plane benchmark, run by `cargo xtask bench api`: a real `sluice serve` (in process,
//! on loopback) with 10,000 stored projects, under concurrent clients. It reports p50/p99
//! latency and throughput of `GET /v1/projects/{id}` and `POST /v1/projects`, beside
//! `GET /healthz` measured the same way as the floor of the HTTP stack.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::config::Config;

const PROJECTS: usize = 10_000;
const CLIENTS: usize = 32;
const GETS: usize = 20_000;
const POSTS: usize = 2_000;
const TOKEN: &str = "bench-admin-token-0123456789";

fn plugin_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("SLUICE_PLUGINS_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-wasip2/release")
    });
    dir.join(format!("{name}.wasm"))
}

fn project_body(plugin: &str, n: usize) -> Value {
    json!({
        "name": format!("project-{n}"),
        "schedule": "rate(1 minute)",
        "source": {"url": format!("https://api.example.com/items/{n}"), "headers": {"accept": "application/json"}},
        "plugin_id": plugin,
        "plugin_settings": {"partition_key_field": "id"},
        "target": {
            "stream_arn": "arn:aws:kinesis:eu-central-1:123456789012:stream/bench",
            "role_arn": "arn:aws:iam::123456789012:role/bench",
        },
    })
}

/// Runs `total` requests from `CLIENTS` concurrent clients; returns each request's latency.
async fn load<F, Fut>(total: usize, request: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, request) = (next.clone(), request.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= total {
                        return latencies;
                    }
                    let t = Instant::now();
                    request(n).await;
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    (all, started.elapsed())
}

fn report(name: &str, mut latencies: Vec<Duration>, wall: Duration) -> (Duration, Duration) {
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let (p50, p99) = (pick(0.50), pick(0.99));
    println!(
        "  {name:<28} p50 {:>7.2} ms  p99 {:>7.2} ms  {:>7.0} req/s",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        latencies.len() as f64 / wall.as_secs_f64()
    );
    (p50, p99)
}

async fn bench() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        admin_token: Some(TOKEN.into()),
        platform_principal_arn: Some("arn:aws:iam::111111111111:role/bench".into()),
        ..Config::default()
    };
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sluice::server::run(config, async { stop_rx.await.unwrap_or(()) }, move |addr| {
        addr_tx.send(addr).unwrap()
    }));
    let base = format!("http://{}", addr_rx.await.unwrap());
    let client = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS).build().unwrap();

    let tenant: Value = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "bench", "tier": "premium"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tenant_id = tenant["id"].as_str().unwrap().to_string();
    let key = tenant["api_key"].as_str().unwrap().to_string();
    client
        .patch(format!("{base}/v1/tenants/{tenant_id}"))
        .bearer_auth(TOKEN)
        .json(&json!({"quotas": {"max_projects": PROJECTS + POSTS + 10}}))
        .send()
        .await
        .unwrap();
    let wasm = std::fs::read(plugin_path("passthrough")).expect("build the plugins first: cargo xtask plugins");
    let plugin: Value = client
        .post(format!("{base}/v1/plugins?name=passthrough"))
        .bearer_auth(&key)
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plugin_id = plugin["id"].as_str().unwrap().to_string();

    let create = {
        let (client, base, key, plugin_id) = (client.clone(), base.clone(), key.clone(), plugin_id.clone());
        move |n: usize| {
            let request =
                client.post(format!("{base}/v1/projects")).bearer_auth(&key).json(&project_body(&plugin_id, n));
            async move {
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
            }
        }
    };
    let seeded = Instant::now();
    let (_, _) = load(PROJECTS, create.clone()).await;
    println!("seeded {PROJECTS} projects through the API in {:.1} s", seeded.elapsed().as_secs_f64());

    let list: Value =
        client.get(format!("{base}/v1/projects")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    let ids: Vec<String> =
        list["projects"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), PROJECTS);
    let ids = std::sync::Arc::new(ids);

    println!("{CLIENTS} concurrent clients, {PROJECTS} stored projects:");
    let health = {
        let (client, base) = (client.clone(), base.clone());
        move |_| {
            let request = client.get(format!("{base}/healthz"));
            async move {
                assert!(request.send().await.unwrap().status().is_success());
            }
        }
    };
    let (latencies, wall) = load(GETS, health).await;
    let (floor50, floor99) = report("GET /healthz (floor)", latencies, wall);
    let get = {
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        move |n: usize| {
            // A fixed stride visits projects all over the key space, not just the hot first few.
            let id = &ids[(n * 7919) % ids.len()];
            let request = client.get(format!("{base}/v1/projects/{id}")).bearer_auth(&key);
            async move {
                assert_eq!(request.send().await.unwrap().status(), 200);
            }
        }
    };
    let (latencies, wall) = load(GETS, get).await;
    let (get50, get99) = report("GET /v1/projects/{id}", latencies, wall);
    let (latencies, wall) = load(POSTS, move |n| create(PROJECTS + n)).await;
    let (post50, post99) = report("POST /v1/projects", latencies, wall);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "  ratios to the floor: GET p50 {:.1}x p99 {:.1}x; POST p50 {:.1}x p99 {:.1}x",
        ratio(get50, floor50),
        ratio(get99, floor99),
        ratio(post50, floor50),
        ratio(post99, floor99)
    );

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(bench());
}
