//! What a plugin's store holds: an empty WASI context, the memory cap, and the call's log.

use std::sync::Arc;

use wasmtime::ResourceLimiterAsync;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, sluice};
use super::budget::{Bound, Budget, Share};
use super::capture::Capture;
use super::limits::Limits;
use super::logs::{LogBuffer, LogSource, Logs};

/// The data of one store, which lives for exactly one plugin call.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    log: LogBuffer,
    stdout: Capture,
    stderr: Capture,
}

impl State {
    pub(crate) fn new(limits: &Limits, budget: Arc<Budget>, owner: Option<Arc<Budget>>) -> Self {
        let stdout = Capture::new(limits.stdio_bytes as usize);
        let stderr = Capture::new(limits.stdio_bytes as usize);
        // Nothing is granted: no preopened directories, no environment, no arguments, and the
        // builder's default socket check denies every address. Only stdout and stderr are wired,
        // into bounded buffers, so that panics and prints reach the run log.
        let wasi = WasiCtx::builder().stdout(stdout.clone()).stderr(stderr.clone()).build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit_bytes: limits.memory_bytes,
                refused: false,
                starved: None,
                share: Share::new(budget, owner),
            },
            log: LogBuffer::new(limits),
            stdout,
            stderr,
        }
    }

    /// Ends the call's log: `host.log` lines first, then what was printed to stdout and stderr.
    pub(crate) fn take_logs(&mut self) -> Logs {
        let mut log = std::mem::replace(&mut self.log, LogBuffer::new(&Limits::default()));
        let (out, out_dropped) = self.stdout.take();
        log.push_stdio(LogSource::Stdout, &out, out_dropped);
        let (err, err_dropped) = self.stderr.take();
        log.push_stdio(LogSource::Stderr, &err, err_dropped);
        log.finish()
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl sluice::plugin::host::Host for State {
    fn log(&mut self, level: Level, message: String) {
        self.log.push(LogSource::Log, level.into(), message);
    }
}

impl sluice::plugin::types::Host for State {}

/// Caps linear memory growth and remembers a refusal, so that the trap that usually follows
/// (a Rust guest aborts when allocation fails) can be reported as the memory limit it is. Growth
/// within the cap is also taken out of the host-wide budget, which may make the call wait.
pub(crate) struct MemoryCap {
    limit_bytes: u64,
    pub(crate) refused: bool,
    /// Set when growth within the cap was refused because other calls held the budget, or the
    /// owner's other calls held its share.
    pub(crate) starved: Option<Bound>,
    pub(crate) share: Share,
}

/// Tables hold function references; a plugin has no reason for more than this many.
const MAX_TABLE_ELEMENTS: usize = 100_000;

#[async_trait::async_trait]
impl ResourceLimiterAsync for MemoryCap {
    async fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit_bytes {
            self.refused = true;
            return Ok(false);
        }
        // Only the first memory, at instantiation, may wait (see `budget.rs`).
        if let Err(bound) = self.share.grow_to(desired, current == 0).await {
            self.starved = Some(bound);
            return Ok(false);
        }
        Ok(true)
    }

    async fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
