//! Runtime benchmark, run by `cargo xtask bench`. Each comparison runs its two sides in
//! alternating rounds in one process, and reports the median per round and their ratio, so that
//! the machine's drift affects both sides alike.
//!
//! 1. passthrough on a 1 KiB body: Sluice's `Runtime::transform` (slot, fresh store with limits,
//!    empty WASI, instantiate from the pool, call, drop) against a bare wasmtime
//!    instantiate + call of the same component (default engine and allocator, `Linker` with WASI,
//!    no limits).
//! 2. json-split on a 1 MiB JSON array: the plugin through `Runtime::transform` against the same
//!    logic compiled natively (serde_json parse, one compact record per element).
//! 3. Rust against Python (`python`, only when named, as the Python components are built by
//!    `cargo xtask plugins` too but take seconds each to compile): passthrough on 1 KiB and
//!    json-split on a 64 KiB array, each written in both, through `Runtime::transform`, with the
//!    components' sizes and the time `Runtime::load` takes to validate and compile them, which is
//!    most of an upload's time to ready.

use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::runtime::bindings::{GuestError, Level, Output, Poll, Record, Response};
use sluice::runtime::{Limits, Runtime, RuntimeConfig};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const ROUNDS: usize = 7;

fn plugin_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("SLUICE_PLUGINS_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-wasip2/release")
    });
    dir.join(format!("{name}.wasm"))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl sluice::runtime::bindings::sluice::plugin::host::Host for Bare {
    fn log(&mut self, _level: Level, _message: String) {}
}

impl sluice::runtime::bindings::sluice::plugin::types::Host for Bare {}

/// The smallest honest wasmtime embedding of the same component: async calls (the bindings are
/// async), default engine settings, no limits, no deadline; on-demand or pooling allocation.
struct BareHost {
    engine: Engine,
    pre: sluice::runtime::bindings::TransformerPre<Bare>,
}

impl BareHost {
    fn new(wasm: &[u8], pooling: bool) -> Self {
        let mut config = wasmtime::Config::new();
        if pooling {
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(Default::default()));
        }
        let engine = Engine::new(&config).unwrap();
        let component = Component::new(&engine, wasm).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        sluice::runtime::bindings::Transformer::add_to_linker::<Bare, HasSelf<Bare>>(&mut linker, |s| s).unwrap();
        let pre = sluice::runtime::bindings::TransformerPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
        Self { engine, pre }
    }

    async fn transform(&self, poll: &Poll, response: &Response) -> Result<Output, GuestError> {
        let mut store =
            Store::new(&self.engine, Bare { wasi: WasiCtx::builder().build(), table: ResourceTable::new() });
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        instance.call_transform(&mut store, poll, response).await.unwrap()
    }

    /// The same call, timed by phase: store creation + instantiation, the call, the drop.
    async fn transform_phases(&self, poll: &Poll, response: &Response) -> [Duration; 3] {
        let started = Instant::now();
        let mut store =
            Store::new(&self.engine, Bare { wasi: WasiCtx::builder().build(), table: ResourceTable::new() });
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        let instantiated = Instant::now();
        instance.call_transform(&mut store, poll, response).await.unwrap().unwrap();
        let called = Instant::now();
        drop(store);
        [instantiated - started, called - instantiated, called.elapsed()]
    }
}

fn poll(settings: &[(&str, &str)]) -> Poll {
    Poll {
        project_id: "bench".into(),
        tenant_id: "bench".into(),
        scheduled_at_ms: 0,
        state: None,
        settings: settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn response(body: Vec<u8>) -> Response {
    Response { status: 200, headers: vec![], body }
}

async fn passthrough(runtime: &Runtime) {
    let wasm = std::fs::read(plugin_path("passthrough")).expect("build the plugins first: cargo xtask plugins");
    let plugin = runtime.load(&wasm).unwrap();
    let bare = BareHost::new(&wasm, false);
    let bare_pooled = BareHost::new(&wasm, true);
    let poll = poll(&[]);
    let response = response(vec![b'x'; 1024]);
    let limits = Limits::default();
    const CALLS: u32 = 2_000;

    // Warm every path (page faults, pool slots, thread-local state) before measuring.
    for _ in 0..200 {
        runtime.transform(&plugin, &limits, &poll, &response).await.result.unwrap();
        bare.transform(&poll, &response).await.unwrap();
        bare_pooled.transform(&poll, &response).await.unwrap();
    }
    let (mut sluice, mut on_demand, mut pooled) = (Vec::new(), Vec::new(), Vec::new());
    let mut phases = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..CALLS {
            runtime.transform(&plugin, &limits, &poll, &response).await.result.unwrap();
        }
        sluice.push(started.elapsed() / CALLS);
        let started = Instant::now();
        for _ in 0..CALLS {
            bare.transform(&poll, &response).await.unwrap();
        }
        on_demand.push(started.elapsed() / CALLS);
        let started = Instant::now();
        for _ in 0..CALLS {
            bare_pooled.transform(&poll, &response).await.unwrap();
        }
        pooled.push(started.elapsed() / CALLS);
        let mut sums = [Duration::ZERO; 3];
        for _ in 0..CALLS {
            let times = bare_pooled.transform_phases(&poll, &response).await;
            for (sum, t) in sums.iter_mut().zip(times) {
                *sum += t;
            }
        }
        for (phase, sum) in phases.iter_mut().zip(sums) {
            phase.push(sum / CALLS);
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (s, b, p) = (median(sluice), median(on_demand), median(pooled));
    let [inst, call, dropped] = phases.map(median);
    println!("passthrough 1 KiB, per call (median of {ROUNDS} rounds of {CALLS}):");
    println!("  sluice runtime (pooling, limits, deadline)  {:>7.1} µs", us(s));
    println!("  bare wasmtime, default on-demand allocator  {:>7.1} µs", us(b));
    println!("  bare wasmtime, pooling allocator            {:>7.1} µs", us(p));
    println!(
        "    of which store + instantiate {:.1} µs, call {:.1} µs, drop {:.1} µs",
        us(inst),
        us(call),
        us(dropped)
    );
    println!("  ratio sluice / bare on-demand  {:>5.2}x (aim: within 2x)", s.as_secs_f64() / b.as_secs_f64());
    println!(
        "  ratio sluice / bare pooling    {:>5.2}x (Sluice's limits and bookkeeping)",
        s.as_secs_f64() / p.as_secs_f64()
    );
}

/// json-split's logic, natively: parse, then one compact record per element keyed by a field.
fn native_split(body: &[u8], key_field: &str) -> Vec<Record> {
    let value: Value = serde_json::from_slice(body).unwrap();
    let Value::Array(items) = value else { panic!("not an array") };
    items
        .iter()
        .map(|item| Record {
            data: serde_json::to_vec(item).unwrap(),
            partition_key: match &item[key_field] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
            explicit_hash_key: None,
        })
        .collect()
}

fn json_array(bytes: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut size = 2;
    let mut i = 0;
    while size < bytes {
        let item = serde_json::json!({"id": format!("item-{i}"), "temperature": 20.5 + i as f64 / 10.0, "city": "berlin", "tags": ["a", "b"]});
        size += item.to_string().len() + 1;
        items.push(item);
        i += 1;
    }
    serde_json::to_vec(&items).unwrap()
}

async fn json_split(runtime: &Runtime) {
    let wasm = std::fs::read(plugin_path("json_split")).expect("build the plugins first: cargo xtask plugins");
    let plugin = runtime.load(&wasm).unwrap();
    let body = json_array(1 << 20);
    let poll = poll(&[("partition_key_field", "id")]);
    let response = response(body.clone());
    // A 1 MiB array of small objects holds more than the default 10,000 records per call; the
    // comparison is about throughput, so the cap is raised rather than the records made bigger.
    let limits = Limits { output_records: 100_000, ..Limits::default() };
    let records = native_split(&body, "id").len();
    // Both sides must agree before their speed means anything.
    let output = runtime.transform(&plugin, &limits, &poll, &response).await.result.unwrap();
    assert_eq!(output.records, native_split(&body, "id"));
    const CALLS: u32 = 10;
    let (mut wasm_times, mut native_times) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..CALLS {
            runtime.transform(&plugin, &limits, &poll, &response).await.result.unwrap();
        }
        wasm_times.push(started.elapsed() / CALLS);
        let started = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(native_split(std::hint::black_box(&body), "id"));
        }
        native_times.push(started.elapsed() / CALLS);
    }
    let (w, n) = (median(wasm_times), median(native_times));
    let mib = body.len() as f64 / (1 << 20) as f64;
    println!("json-split on a {mib:.2} MiB array of {records} elements (median of {ROUNDS} rounds of {CALLS}):");
    println!("  sluice runtime  {:>9.2} ms  {:>7.1} MiB/s", w.as_secs_f64() * 1e3, mib / w.as_secs_f64());
    println!("  native rust     {:>9.2} ms  {:>7.1} MiB/s", n.as_secs_f64() * 1e3, mib / n.as_secs_f64());
    println!("  wasm/native throughput {:.2} (aim: at least 0.5)", n.as_secs_f64() / w.as_secs_f64());
}

/// Loads the Rust plugin `name` and its Python twin `py_<name>`, printing size and load time.
fn load_pair(runtime: &Runtime, name: &str) -> [sluice::runtime::Plugin; 2] {
    [name.to_string(), format!("py_{name}")].map(|file| {
        let wasm = std::fs::read(plugin_path(&file)).expect("build the plugins first: cargo xtask plugins");
        let started = Instant::now();
        let plugin = runtime.load(&wasm).unwrap();
        let mib = wasm.len() as f64 / (1 << 20) as f64;
        println!(
            "  {file:<18} {mib:>6.2} MiB, loaded (validated and compiled) in {:>6.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        plugin
    })
}

/// Per-call time of the Rust and the Python plugin on the same input, in alternating rounds.
async fn rust_vs_python(runtime: &Runtime, name: &str, poll: &Poll, body: Vec<u8>, calls: u32) {
    let plugins = load_pair(runtime, name);
    let response = response(body);
    let limits = Limits { output_records: 100_000, ..Limits::default() };
    let outputs: Vec<Output> = {
        let mut outputs = Vec::new();
        for plugin in &plugins {
            outputs.push(runtime.transform(plugin, &limits, poll, &response).await.result.unwrap());
        }
        outputs
    };
    // Both sides must agree before their speed means anything.
    assert_eq!(outputs[0], outputs[1]);
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (plugin, samples) in plugins.iter().zip(times.iter_mut()) {
            let started = Instant::now();
            for _ in 0..calls {
                runtime.transform(plugin, &limits, poll, &response).await.result.unwrap();
            }
            samples.push(started.elapsed() / calls);
        }
    }
    let [rust, python] = times.map(median);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("  {name}: rust {:>9.1} µs, python {:>9.1} µs per call (instantiate + call + drop)", us(rust), us(python));
    println!("  ratio python / rust  {:>7.1}x", python.as_secs_f64() / rust.as_secs_f64());
}

async fn python(runtime: &Runtime) {
    println!("rust against python (median of {ROUNDS} rounds):");
    rust_vs_python(runtime, "passthrough", &poll(&[]), vec![b'x'; 1024], 200).await;
    let body = json_array(64 << 10);
    rust_vs_python(runtime, "json_split", &poll(&[("partition_key_field", "id")]), body, 20).await;
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let named = |name: &str| filter.iter().any(|f| name == f.as_str());
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    tokio.block_on(async {
        if wanted("passthrough") {
            passthrough(&runtime).await;
        }
        if wanted("json-split") {
            json_split(&runtime).await;
        }
        if named("python") {
            python(&runtime).await;
        }
    });
}
