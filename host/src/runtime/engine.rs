//! The engine configuration, the linker, and the epoch ticker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::RuntimeConfig;
use super::bindings::Transformer;
use super::state::State;

/// How often the epoch advances. Every running call checks its CPU time against its deadline and
/// yields to other calls at each tick, so this bounds both deadline overshoot (in CPU time, at
/// most one tick's worth) and how long one call can hold an executor thread.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// The largest native stack wasm frames may use; deeper recursion traps as a stack overflow.
const MAX_WASM_STACK_BYTES: usize = 512 << 10;

/// Builds the one engine: Cranelift, epoch interruption, the pooling allocator, and only the
/// WebAssembly proposals that components built by today's toolchains need.
pub(crate) fn build(config: &RuntimeConfig) -> anyhow::Result<Engine> {
    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK_BYTES)
        // Proposals tenants do not need are off: they are attack surface, and GC, exceptions and
        // component-model async are where most 2026 advisories were.
        .wasm_gc(false)
        .wasm_stack_switching(false)
        .wasm_memory64(false)
        .wasm_wide_arithmetic(false)
        .wasm_custom_page_sizes(false)
        .concurrency_support(false);

    let slots = config.max_concurrent_calls.max(1);
    let mut pool = PoolingAllocationConfig::new();
    // A Rust component has three core instances and one memory; componentize-py has fourteen
    // core instances. Size for the large ones.
    pool.total_component_instances(slots)
        .total_core_instances(slots * 16)
        .max_core_instances_per_component(32)
        .total_memories(slots * 2)
        .max_memories_per_component(4)
        .total_tables(slots * 8)
        .max_tables_per_component(32)
        .total_stacks(slots)
        .max_memory_size(config.max_memory_bytes as usize)
        .max_component_instance_size(4 << 20);
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Ok(Engine::new(&cfg)?)
}

/// Links WASI 0.2 with an empty context per store, and the `host` interface.
pub(crate) fn linker(engine: &Engine) -> anyhow::Result<Linker<State>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Transformer::add_to_linker::<State, HasSelf<State>>(&mut linker, |state| state)?;
    Ok(linker)
}

/// Advances the engine's epoch on a dedicated thread until dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch thread");
        Self { stop, thread: Some(thread) }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
