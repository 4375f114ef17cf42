//! The sandboxed component runtime: the only module that imports wasmtime.
//!
//! One long-lived [`Runtime`] owns the wasmtime `Engine`, the `Linker` with WASI (nothing
//! granted) and the `host` import, the epoch ticker that enforces deadlines, and the pool of
//! instance slots. [`Runtime::load`] turns uploaded bytes into a checked, compiled, pre-linked
//! [`Plugin`]; [`Runtime::prepare`] and [`Runtime::transform`] call it, each in a fresh store
//! under [`Limits`], and return a [`CallReport`] whose error, if any, names the limit or trap.
//!
//! `runtime` knows nothing of HTTP, AWS or storage: it takes bytes and values in and gives values
//! out.

pub mod bindings;
mod budget;
mod call;
mod capture;
mod cpu;
mod engine;
mod error;
mod limits;
mod load;
mod logs;
mod state;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};

pub use bindings::{GuestError, Level, Output, Poll, Record, Request, Response};
pub use call::CallReport;
pub use error::{CallError, Clock, LoadError};
pub use limits::{Limits, WALL_DEADLINE_FACTOR, human_bytes, human_duration};
pub use load::plugin_id;
pub use logs::{LogLevel, LogLine, LogSource, Logs};
pub use state::State;

use call::{Invocation, Returned};
use engine::Ticker;

/// How the runtime is sized. Per-call [`Limits`] may be lowered per tenant, but never raised past
/// what the engine was built for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Plugin calls that may run at once; further calls wait for a slot. Each slot reserves
    /// address space (not memory) for its linear memories.
    pub max_concurrent_calls: u32,
    /// The largest linear memory any call may be given, in bytes.
    pub max_memory_bytes: u64,
    /// The linear memory all calls together may hold, in bytes. A call's first memory waits for
    /// room, and fails only if its wall-clock backstop (`limits.wall_deadline_ms`) passes first:
    /// waiting uses no CPU time; growth of a running call that does not fit fails at once,
    /// because two calls each waiting for the other's memory would otherwise hold it until their
    /// backstops. At least `max_memory_bytes`, so that any one call can
    /// always run.
    pub memory_budget_bytes: u64,
    /// Threads that run plugin code, apart from the threads that schedule runs, fetch sources and
    /// serve the API, so that plugins spinning until their deadline delay only other plugin calls.
    /// 0 means one per CPU core.
    pub threads: usize,
    /// Plugins that may compile at once; further uploads (and first loads of plugins missing
    /// from the cache) wait their turn. A compile runs at the lowest CPU priority and uses every
    /// core the runs leave idle, so more than one at a time only makes each take longer, and
    /// uploads of large components never take the CPU from runs.
    pub max_concurrent_compiles: u32,
    /// The default limits for every call.
    pub limits: Limits,
    /// Where compiled plugins are cached, so that a restart does not recompile them. `None`
    /// compiles in memory only.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 128,
            max_memory_bytes: 256 << 20,
            memory_budget_bytes: 1 << 30,
            threads: 0,
            max_concurrent_compiles: 1,
            limits: Limits::default(),
            cache_dir: None,
        }
    }
}

/// A compiled, checked and pre-linked plugin, cheap to clone and to instantiate.
#[derive(Clone)]
pub struct Plugin {
    id: Arc<str>,
    size_bytes: u64,
    pre: bindings::TransformerPre<State>,
}

impl Plugin {
    /// The plugin's content id, `sha256:<hex>` of its bytes.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The size of the uploaded component in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("id", &self.id).field("size_bytes", &self.size_bytes).finish()
    }
}

/// The host's one component runtime. Cheap to clone; the epoch ticker stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
    /// The share of the memory budget that this handle's calls also count against; see
    /// [`Runtime::sharing`].
    owner: Option<Arc<budget::Budget>>,
}

struct Inner {
    /// Plugins compiled and pre-linked in this process, by content id: the API's dry runs and
    /// every run share them.
    loaded: Mutex<HashMap<String, Plugin>>,
    engine: wasmtime::Engine,
    linker: wasmtime::component::Linker<State>,
    slots: Semaphore,
    /// Turns to compile; see `RuntimeConfig::max_concurrent_compiles`.
    compiles: Semaphore,
    budget: Arc<budget::Budget>,
    /// Each owner's share of `budget`, by owner; see [`Runtime::sharing`].
    shares: Mutex<HashMap<String, Arc<budget::Budget>>>,
    config: RuntimeConfig,
    pool: Pool,
    _ticker: Ticker,
}

/// The tokio runtime whose threads run plugin calls.
struct Pool(Option<tokio::runtime::Runtime>);

/// The nice value of the plugin threads. The kernel then gives the threads that schedule runs,
/// fetch and serve the API the CPU first whenever they have work, and plugins the rest: a tenant
/// whose plugins spin until their deadline delays other tenants' plugin calls (which share these
/// threads fairly), but not their schedule. A call's deadline counts the CPU time it got, not the
/// time it waited for it, so on a host whose cores other processes keep busy plugins are slower
/// but do not fail for it, up to their wall-clock backstop.
const PLUGIN_NICE: i32 = 19;

fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers; on Linux the nice value
        // belongs to the thread, so this lowers only the calling plugin thread.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, PLUGIN_NICE) };
        if result != 0 {
            tracing::warn!("cannot lower a plugin thread's priority: {}", std::io::Error::last_os_error());
        }
    }
}

/// Starts rayon's global pool, where wasmtime compiles a component's functions in parallel, with
/// its threads at the plugin threads' priority: compiling an 18 MiB component takes seconds of
/// every core, and at normal priority it would take them from the runs. A pool started before
/// (by an earlier runtime in the same process) is kept as it is.
fn low_priority_compile_threads() {
    let started = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("sluice-compile-{i}"))
        .start_handler(|_| lower_priority())
        .build_global();
    if started.is_ok() {
        tracing::debug!("compile threads started at nice {PLUGIN_NICE}");
    }
}

impl Pool {
    fn start(threads: usize) -> anyhow::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sluice-plugin")
            .on_thread_start(lower_priority)
            .enable_time()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the plugin threads: {e}"))?;
        Ok(Self(Some(runtime)))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The last clone of a `Runtime` may be dropped inside an async task, where a blocking
        // shutdown would panic; calls still running end at their deadlines on their own.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Runtime {
    /// Builds the engine, the linker and the epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let engine = engine::build(&config)?;
        let linker = engine::linker(&engine)?;
        let ticker = Ticker::start(engine.clone());
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create the plugin cache directory {}: {e}", dir.display()))?;
        }
        let slots = Semaphore::new(config.max_concurrent_calls as usize);
        let compiles = Semaphore::new(config.max_concurrent_compiles.max(1) as usize);
        low_priority_compile_threads();
        let budget = budget::Budget::new(config.memory_budget_bytes);
        let pool = Pool::start(config.threads)?;
        let (loaded, shares) = (Mutex::default(), Mutex::default());
        let inner = Inner { loaded, engine, linker, slots, compiles, budget, shares, config, pool, _ticker: ticker };
        Ok(Self { inner: Arc::new(inner), owner: None })
    }

    /// The limits every call gets unless the caller passes others.
    pub fn default_limits(&self) -> &Limits {
        &self.inner.config.limits
    }

    /// Checks, compiles (or loads from the cache) and pre-links a component.
    ///
    /// Compiling is CPU-heavy (a large Python plugin takes tens of seconds): call this from a
    /// blocking thread, not from an async task.
    pub fn load(&self, wasm: &[u8]) -> Result<Plugin, LoadError> {
        load::load(self, wasm, plugin_id(wasm))
    }

    /// [`Runtime::load`] on a thread of its own at the lowest CPU priority, so that compiling
    /// never holds an async worker nor takes the CPU from runs. A plugin the on-disk cache holds
    /// loads at once; one that must compile waits for its turn
    /// (`RuntimeConfig::max_concurrent_compiles`) first.
    pub async fn compile(&self, wasm: Vec<u8>) -> Result<Plugin, LoadError> {
        let id = plugin_id(&wasm);
        let _turn = match load::is_cached(self, &id) {
            true => None,
            // The semaphore is never closed, so acquiring only fails if that invariant breaks.
            false => Some(self.inner.compiles.acquire().await.map_err(|e| LoadError::Host(e.to_string()))?),
        };
        let (runtime, (done, result)) = (self.clone(), tokio::sync::oneshot::channel());
        std::thread::Builder::new()
            .name("sluice-compile".into())
            .spawn(move || {
                lower_priority();
                let _ = done.send(load::load(&runtime, &wasm, id));
            })
            .map_err(|e| LoadError::Host(format!("cannot start a compile thread: {e}")))?;
        result.await.map_err(|_| LoadError::Host("the compile thread ended without a result".into()))?
    }

    /// Keeps a compiled plugin for [`Runtime::get_or_load`].
    pub fn keep(&self, plugin: Plugin) {
        self.loaded().insert(plugin.id().to_string(), plugin);
    }

    /// The plugin `id`, as compiled in this process before, or compiled now (usually from the
    /// on-disk cache) from the bytes `bytes` finds; `None` when it finds none. `bytes` is only
    /// called when the plugin is not loaded yet.
    pub async fn get_or_load<E: From<LoadError>>(
        &self,
        id: &str,
        bytes: impl Future<Output = Result<Option<Vec<u8>>, E>>,
    ) -> Result<Option<Plugin>, E> {
        if let Some(plugin) = self.loaded().get(id) {
            return Ok(Some(plugin.clone()));
        }
        let Some(wasm) = bytes.await? else { return Ok(None) };
        let plugin = self.compile(wasm).await?;
        self.keep(plugin.clone());
        Ok(Some(plugin))
    }

    /// Forgets a loaded plugin, once no tenant holds its bytes any more.
    pub fn remove(&self, id: &str) {
        self.loaded().remove(id);
    }

    /// How many plugins this process holds compiled.
    pub fn loaded_count(&self) -> usize {
        self.loaded().len()
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, Plugin>> {
        self.inner.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls the plugin's `prepare` export.
    pub async fn prepare(
        &self,
        plugin: &Plugin,
        limits: &Limits,
        poll: &Poll,
        request: &Request,
    ) -> CallReport<Request> {
        let report = call::call(self, plugin, limits, Invocation::Prepare(poll.clone(), request.clone())).await;
        map_report(report, |returned| match returned {
            Returned::Request(request) => Some(request),
            Returned::Output(_) => None,
        })
    }

    /// Calls the plugin's `transform` export.
    pub async fn transform(
        &self,
        plugin: &Plugin,
        limits: &Limits,
        poll: &Poll,
        response: &Response,
    ) -> CallReport<Output> {
        let report = call::call(self, plugin, limits, Invocation::Transform(poll.clone(), response.clone())).await;
        map_report(report, |returned| match returned {
            Returned::Output(output) => Some(output),
            Returned::Request(_) => None,
        })
    }

    /// Linear memory that plugin calls hold right now, in bytes.
    pub fn memory_in_use_bytes(&self) -> u64 {
        self.inner.budget.in_use_bytes()
    }

    /// The most linear memory plugin calls have held at once since the runtime started, in bytes.
    pub fn memory_peak_bytes(&self) -> u64 {
        self.inner.budget.peak_bytes()
    }

    /// The host-wide budget of plugin linear memory, in bytes.
    pub fn memory_budget_bytes(&self) -> u64 {
        self.inner.budget.total_bytes()
    }

    pub(crate) fn budget(&self) -> Arc<budget::Budget> {
        self.inner.budget.clone()
    }

    /// This runtime, with the memory of the calls made through it also counted against `owner`'s
    /// share of the budget, `share_bytes` (at most the whole budget): however much of the budget
    /// is free, one owner's calls together hold no more than its share, so that a fleet of one
    /// owner's hostile plugins cannot keep every other owner's calls from starting. The run
    /// pipeline's owners are tenants. A share whose size changes takes effect for calls that
    /// start after the change; calls already running give their memory back to the old one.
    pub fn sharing(&self, owner: &str, share_bytes: u64) -> Runtime {
        let bytes = budget::Budget::whole_pages(share_bytes.min(self.memory_budget_bytes()));
        let mut shares = self.inner.shares.lock().unwrap_or_else(|e| e.into_inner());
        let share = match shares.get(owner) {
            Some(share) if share.total_bytes() == bytes => share.clone(),
            _ => {
                let share = budget::Budget::new(bytes);
                shares.insert(owner.to_string(), share.clone());
                share
            }
        };
        Runtime { inner: self.inner.clone(), owner: Some(share) }
    }

    /// Linear memory that `owner`'s calls hold now, in bytes; 0 for an owner that made none.
    pub fn owner_memory_in_use_bytes(&self, owner: &str) -> u64 {
        let shares = self.inner.shares.lock().unwrap_or_else(|e| e.into_inner());
        shares.get(owner).map_or(0, |share| share.in_use_bytes())
    }

    /// Linear memory each owner's calls hold now, in bytes, for the owners holding any.
    pub fn memory_in_use_by_owner(&self) -> Vec<(String, u64)> {
        let shares = self.inner.shares.lock().unwrap_or_else(|e| e.into_inner());
        shares
            .iter()
            .map(|(owner, share)| (owner.clone(), share.in_use_bytes()))
            .filter(|(_, bytes)| *bytes > 0)
            .collect()
    }

    pub(crate) fn owner_share(&self) -> Option<Arc<budget::Budget>> {
        self.owner.clone()
    }

    /// The size of this handle's owner share in bytes, or the whole budget without an owner.
    pub(crate) fn owner_share_bytes(&self) -> u64 {
        self.owner.as_ref().map_or_else(|| self.memory_budget_bytes(), |share| share.total_bytes())
    }

    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &wasmtime::component::Linker<State> {
        &self.inner.linker
    }

    pub(crate) fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    pub(crate) fn pool(&self) -> &tokio::runtime::Handle {
        self.inner.pool.0.as_ref().expect("the plugin threads run until the runtime is dropped").handle()
    }

    pub(crate) async fn acquire_slot(&self) -> SemaphorePermit<'_> {
        // The semaphore is never closed, so acquiring only fails if that invariant breaks.
        self.inner.slots.acquire().await.expect("the runtime's slot semaphore is never closed")
    }

    /// Keeps a call's memory within what the engine's pool was sized for.
    pub(crate) fn clamp(&self, limits: &Limits) -> Limits {
        let mut limits = limits.clone();
        limits.memory_bytes = limits.memory_bytes.min(self.inner.config.max_memory_bytes);
        limits
    }
}

fn map_report<T>(report: CallReport<Returned>, pick: impl FnOnce(Returned) -> Option<T>) -> CallReport<T> {
    let result = report.result.and_then(|returned| {
        pick(returned).ok_or_else(|| CallError::Host("export returned a value of the wrong kind".into()))
    });
    CallReport { result, logs: report.logs, duration: report.duration, cpu_time: report.cpu_time }
}
