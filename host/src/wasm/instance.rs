//! Plugin instances: one store per stage instance, with the sandbox's WASI
//! context (nothing granted), the memory cap, the per-call deadline, and the
//! host functions plugins import (`log`, `now-ms`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceAny;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::bindings::{self, PluginLevel};
use super::bounded_poll::{BoundedPoll, DeadlineReached};
use super::convert::{PluginInput, PluginOutput};
use super::runtime::{EPOCH_TICK, Plugin};
use super::stdio::{PluginStdio, Stream};
use super::{CallError, PluginError};

/// Limits applied to every instance of a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline per call.
    pub timeout: Duration,
    /// Linear memory cap in bytes.
    pub memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(1),
            memory: 64 << 20,
        }
    }
}

/// Per-store state: WASI context, limiter, and the stage name for logs.
pub(super) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
    stage: Arc<str>,
    /// When the call in progress must end, if calls have deadlines: WASI
    /// waits end there too.
    deadline: Option<Instant>,
}

impl HostState {
    /// The plugin's resource table.
    pub(super) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The plugin's WASI context.
    pub(super) fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }

    /// The poll interface's view: the table and the call's deadline.
    pub(super) fn bounded_poll(&mut self) -> BoundedPoll<'_> {
        BoundedPoll {
            table: &mut self.table,
            deadline: self.deadline,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::weir::plugin::types::Host for HostState {}

impl bindings::weir::plugin::host::Host for HostState {
    fn log(&mut self, level: PluginLevel, message: String) {
        const MAX: usize = 4096;
        let mut message = message;
        if message.len() > MAX {
            let mut cut = MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("… (truncated)");
        }
        let stage = &*self.stage;
        match level {
            PluginLevel::Trace => tracing::trace!(stage, "{message}"),
            PluginLevel::Debug => tracing::debug!(stage, "{message}"),
            PluginLevel::Info => tracing::info!(stage, "{message}"),
            PluginLevel::Warn => tracing::warn!(stage, "{message}"),
            PluginLevel::Error => tracing::error!(stage, "{message}"),
        }
    }

    fn now_ms(&mut self) -> i64 {
        crate::util::now_ms()
    }
}

struct MemoryCap {
    limit: usize,
    hit: Option<usize>,
    /// Linear memory currently allocated, all memories together.
    current: usize,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = Some(desired);
            return Err(wasmtime::format_err!(
                "memory limit of {} bytes exceeded",
                self.limit
            ));
        }
        self.current = self.current.saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// One live plugin stage: a store, an instance, and its `stage` resource.
pub struct Instance {
    store: Store<HostState>,
    bindings: bindings::TransformPlugin,
    stage: ResourceAny,
    limits: Limits,
    /// Whether calls have deadlines (always, but in benchmarks).
    deadlines: bool,
    stdio: PluginStdio,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Instance {
    /// Instantiates `plugin` for stage `stage` and calls its constructor
    /// with `config` (JSON).
    pub fn new(
        plugin: &Plugin,
        stage: &str,
        config: &str,
        limits: Limits,
    ) -> Result<Self, PluginError> {
        let stage: Arc<str> = stage.into();
        let stdio = PluginStdio::new(stage.clone(), 4096);
        let wasi = WasiCtx::builder()
            .stdout(stdio.stream(Stream::Stdout))
            .stderr(stdio.stream(Stream::Stderr))
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryCap {
                limit: usize::try_from(limits.memory).unwrap_or(usize::MAX),
                hit: None,
                current: 0,
            },
            stage,
            deadline: None,
        };
        let mut store = Store::new(plugin.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        if plugin.deadlines {
            store.epoch_deadline_trap();
        }
        set_deadline(&mut store, limits.timeout, plugin.deadlines);
        let bindings = plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| PluginError::Start(classify(e, &store, limits, &stdio)))?;
        set_deadline(&mut store, limits.timeout, plugin.deadlines);
        let created = bindings
            .weir_plugin_transform()
            .stage()
            .call_constructor(&mut store, config)
            .map_err(|e| PluginError::Start(classify(e, &store, limits, &stdio)))?;
        let stage = created.map_err(PluginError::Config)?;
        Ok(Instance {
            store,
            bindings,
            stage,
            limits,
            deadlines: plugin.deadlines,
            stdio,
        })
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(
            &bindings::exports::weir::plugin::transform::GuestStage<'_>,
            &mut Store<HostState>,
            ResourceAny,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        set_deadline(&mut self.store, self.limits.timeout, self.deadlines);
        let guest = self.bindings.weir_plugin_transform().stage();
        f(&guest, &mut self.store, self.stage)
            .map_err(|e| classify(e, &self.store, self.limits, &self.stdio))
    }

    /// Linear memory the instance has allocated, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.store.data().limiter.current as u64
    }

    /// Calls `process`.
    pub fn process(&mut self, batch: &PluginInput) -> Result<PluginOutput, CallError> {
        self.call(|g, s, r| g.call_process(s, r, &batch.0))
            .map(PluginOutput::from)
    }

    /// Calls `tick`.
    pub fn tick(&mut self, now_ms: i64) -> Result<PluginOutput, CallError> {
        self.call(|g, s, r| g.call_tick(s, r, now_ms))
            .map(PluginOutput::from)
    }

    /// Calls `flush`.
    pub fn flush(&mut self) -> Result<PluginOutput, CallError> {
        self.call(|g, s, r| g.call_flush(s, r))
            .map(PluginOutput::from)
    }

    /// Calls `snapshot`.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, CallError> {
        self.call(|g, s, r| g.call_snapshot(s, r))
    }

    /// Calls `restore`; the outer error is a trap, the inner the plugin's
    /// refusal.
    pub fn restore(&mut self, state: &[u8]) -> Result<Result<(), String>, CallError> {
        self.call(|g, s, r| g.call_restore(s, r, state))
    }

    /// Stops (or resumes) logging what the plugin prints: calls replayed
    /// into a re-created instance printed it once already.
    pub fn set_quiet(&self, quiet: bool) {
        self.stdio.set_quiet(quiet);
    }

    /// The limits the instance runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Resource destructors run guest code; bound them like any call.
        set_deadline(&mut self.store, self.limits.timeout, self.deadlines);
        let _ = self.stage.resource_drop(&mut self.store);
    }
}

fn set_deadline(store: &mut Store<HostState>, timeout: Duration, deadlines: bool) {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1) as u64;
    // One extra tick: the current epoch period may be almost over.
    store.set_epoch_deadline(ticks + 1);
    store.data_mut().deadline = deadlines.then(|| Instant::now() + timeout);
}

fn classify(
    e: wasmtime::Error,
    store: &Store<HostState>,
    limits: Limits,
    stdio: &PluginStdio,
) -> CallError {
    if let Some(wanted) = store.data().limiter.hit {
        return CallError::MemoryLimit {
            limit: limits.memory,
            wanted: wanted as u64,
        };
    }
    if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt))
        || e.downcast_ref::<DeadlineReached>().is_some()
    {
        return CallError::Timeout(limits.timeout);
    }
    let mut reason = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        // A host function's error (a denied import says which), under the
        // wasm backtrace's context.
        None => e.root_cause().to_string(),
    };
    let said = stdio.last_lines(3);
    if !said.is_empty() {
        reason.push_str(&format!(" (plugin said: {said})"));
    }
    CallError::Trap(reason)
}
