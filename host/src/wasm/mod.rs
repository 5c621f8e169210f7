//! The WebAssembly plugin host (wasmtime, component model).
//!
//! This module owns the only `bindgen!` of the host; generated types do not
//! leak into the rest of the crate except through [`PluginBatch`] and
//! [`PluginResult`], the flat batch layout of `wit/weir.wit`.
//!
//! Sandboxing: a plugin gets WASI with nothing granted (no preopened
//! directories, no network, no environment, no inherited stdio; its stderr
//! is captured so a panic message can be reported), plus the `host` interface
//! (`log`, `now-ms`). Every call runs under a wall-clock deadline enforced by
//! epoch interruption and a linear-memory cap enforced by a resource limiter.
//!
//! Compiled components are cached on disk by the SHA-256 of the `.wasm`
//! bytes and the engine's compatibility hash, so a second start skips
//! Cranelift entirely.

mod build;
mod tail;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker, ResourceAny};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

pub use build::{BuildOutcome, CrateInfo, build_crate, crate_info, resolve_plugin};
use tail::TailPipe;

#[allow(missing_docs, clippy::all)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transform-plugin",
    });
}

use bindings::TransformPluginPre;
pub use bindings::weir::plugin::types::{
    Batch as PluginBatch, BatchResult as PluginResult, Events as PluginEvents,
    Header as PluginHeader, Level as PluginLevel,
};

/// The WIT package and interface every plugin must export.
pub const EXPORT_NAME: &str = "weir:plugin/transform@0.1.0";
/// The host interface plugins import.
pub const IMPORT_NAME: &str = "weir:plugin/host@0.1.0";

/// How often the epoch ticker advances; deadlines are rounded up to it.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Failure to load or start a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a Weir component (core module, other world, garbage).
    #[error("{path} is not a Weir plugin: {reason}")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Compilation or linking failed.
    #[error("cannot load plugin {path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Cause.
        reason: String,
    },
    /// The plugin refused its configuration.
    #[error("plugin rejected its config: {0}")]
    Config(String),
    /// Creating the instance trapped or hit a limit.
    #[error("plugin failed to start: {0}")]
    Start(CallError),
    /// Building a plugin crate failed.
    #[error("{0}")]
    Build(String),
}

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call ran past its deadline and was interrupted.
    #[error("deadline of {0:?} exceeded (plugin interrupted)")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past the cap.
    #[error("memory limit of {} MiB exceeded (plugin asked for {:.1} MiB)", *.limit as f64 / 1048576.0, *.wanted as f64 / 1048576.0)]
    MemoryLimit {
        /// Cap, bytes.
        limit: u64,
        /// Requested size, bytes.
        wanted: u64,
    },
    /// The plugin trapped (panic, unreachable, out-of-bounds access, ...).
    #[error("plugin trapped: {0}")]
    Trap(String),
}

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
struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryCap,
    stage: Arc<str>,
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

/// How a [`Runtime`] is set up.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are cached (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// Compile epoch checks into plugins so calls can be interrupted at
    /// their deadline. Always on in `weir`; benchmarks turn it off to
    /// measure what the checks cost.
    pub deadlines: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: cache_dir(),
            deadlines: true,
        }
    }
}

/// The process-wide engine: one Cranelift configuration, one epoch ticker,
/// one linker with WASI and the host interface.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    deadlines: bool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// Where compiled components are cached: `$WEIR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/weir/components`, else `~/.cache/weir/components`.
/// `WEIR_CACHE_DIR=off` disables the cache.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        if dir == "off" {
            return None;
        }
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weir").join("components"))
}

impl Runtime {
    /// The shared runtime, created on first use.
    pub fn global() -> Result<&'static Runtime, PluginError> {
        RUNTIME
            .get_or_init(|| Runtime::new(RuntimeOptions::default()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| PluginError::Load {
                path: PathBuf::new(),
                reason: e.clone(),
            })
    }

    /// A separate runtime with its own engine (the CLI uses [`Runtime::global`]).
    pub fn new(options: RuntimeOptions) -> Result<Runtime, wasmtime::Error> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(options.deadlines);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // `perf` names the JIT-compiled plugin functions from the map
        // wasmtime writes (docs/plugin-guide.md, "Make it fast").
        if std::env::var_os("WEIR_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::TransformPlugin::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| wasmtime::format_err!("cannot start epoch thread: {e}"))?;
        Ok(Runtime {
            engine,
            linker,
            cache_dir: options.cache_dir,
            deadlines: options.deadlines,
        })
    }

    /// Loads a `.wasm` component: checks that it is a Weir plugin, compiles
    /// it (or reads the cached compilation) and links it.
    pub fn load(&self, path: &Path) -> Result<Plugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let info = inspect_bytes(&bytes).map_err(|reason| PluginError::NotAPlugin {
            path: path.to_path_buf(),
            reason,
        })?;
        if let Err(reason) = info.check_weir_plugin() {
            return Err(PluginError::NotAPlugin {
                path: path.to_path_buf(),
                reason,
            });
        }
        let started = Instant::now();
        let hash = crate::util::hex(&Sha256::digest(&bytes));
        let (component, cached) =
            self.compile_cached(&bytes, &hash)
                .map_err(|e| PluginError::Load {
                    path: path.to_path_buf(),
                    reason: format!("{e:#}"),
                })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(TransformPluginPre::new)
            .map_err(|e| PluginError::NotAPlugin {
                path: path.to_path_buf(),
                reason: format!("{e:#}"),
            })?;
        tracing::debug!(
            plugin = %path.display(),
            hash = &hash[..12],
            cached,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugin loaded"
        );
        Ok(Plugin {
            path: path.to_path_buf(),
            hash,
            size: bytes.len(),
            pre: Arc::new(pre),
            from_cache: cached,
            deadlines: self.deadlines,
        })
    }

    fn compile_cached(
        &self,
        bytes: &[u8],
        hash: &str,
    ) -> Result<(wasmtime::component::Component, bool), wasmtime::Error> {
        let Some(dir) = &self.cache_dir else {
            return Ok((
                wasmtime::component::Component::new(&self.engine, bytes)?,
                false,
            ));
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        self.deadlines.hash(&mut h);
        let file = dir.join(format!("{hash}-{:016x}.cwasm", h.finish()));
        if file.exists() {
            // SAFETY: the cache directory is written only by this function,
            // with files named by the hash of their source and of the engine
            // configuration; a file that fails to deserialize is recompiled.
            match unsafe { wasmtime::component::Component::deserialize_file(&self.engine, &file) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "ignoring unreadable compile cache entry")
                }
            }
        }
        // Compiling a large plugin takes seconds: say so, once, since the
        // result is cached.
        let started = Instant::now();
        tracing::info!(
            size_kib = bytes.len() / 1024,
            cache = %dir.display(),
            "compiling plugin for this machine (cached for later starts)"
        );
        let compiled = self.engine.precompile_component(bytes)?;
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "plugin compiled"
        );
        if let Err(e) = write_atomically(dir, &file, &compiled) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write compile cache");
        }
        // SAFETY: `compiled` was produced just above by this engine.
        let component =
            unsafe { wasmtime::component::Component::deserialize(&self.engine, &compiled)? };
        Ok((component, false))
    }
}

fn write_atomically(dir: &Path, file: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        crate::util::now_ms()
    ));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, file)
}

/// A compiled, linked plugin, ready to instantiate any number of times.
#[derive(Clone)]
pub struct Plugin {
    /// The `.wasm` file.
    pub path: PathBuf,
    /// SHA-256 of the file, hex.
    pub hash: String,
    /// File size in bytes.
    pub size: usize,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    pre: Arc<TransformPluginPre<HostState>>,
    deadlines: bool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("hash", &self.hash)
            .finish()
    }
}

/// One live plugin stage: a store, an instance, and its `stage` resource.
pub struct Instance {
    store: Store<HostState>,
    bindings: bindings::TransformPlugin,
    stage: ResourceAny,
    limits: Limits,
    stderr: TailPipe,
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
        let stderr = TailPipe::new(4096);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .stdout(stderr.clone())
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryCap {
                limit: usize::try_from(limits.memory).unwrap_or(usize::MAX),
                hit: None,
                current: 0,
            },
            stage: stage.into(),
        };
        let mut store = Store::new(plugin.pre.engine(), state);
        store.limiter(|s| &mut s.limiter);
        if plugin.deadlines {
            store.epoch_deadline_trap();
        }
        set_deadline(&mut store, limits.timeout);
        let bindings = plugin
            .pre
            .instantiate(&mut store)
            .map_err(|e| PluginError::Start(classify(e, &store, limits, &stderr)))?;
        set_deadline(&mut store, limits.timeout);
        let created = bindings
            .weir_plugin_transform()
            .stage()
            .call_constructor(&mut store, config)
            .map_err(|e| PluginError::Start(classify(e, &store, limits, &stderr)))?;
        let stage = created.map_err(PluginError::Config)?;
        Ok(Instance {
            store,
            bindings,
            stage,
            limits,
            stderr,
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
        set_deadline(&mut self.store, self.limits.timeout);
        let guest = self.bindings.weir_plugin_transform().stage();
        f(&guest, &mut self.store, self.stage)
            .map_err(|e| classify(e, &self.store, self.limits, &self.stderr))
    }

    /// Linear memory the instance has allocated, in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.store.data().limiter.current as u64
    }

    /// Calls `process`.
    pub fn process(&mut self, batch: &PluginBatch) -> Result<PluginResult, CallError> {
        self.call(|g, s, r| g.call_process(s, r, batch))
    }

    /// Calls `tick`.
    pub fn tick(&mut self, now_ms: i64) -> Result<PluginResult, CallError> {
        self.call(|g, s, r| g.call_tick(s, r, now_ms))
    }

    /// Calls `flush`.
    pub fn flush(&mut self) -> Result<PluginResult, CallError> {
        self.call(|g, s, r| g.call_flush(s, r))
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

    /// The limits the instance runs under.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Resource destructors run guest code; bound them like any call.
        set_deadline(&mut self.store, self.limits.timeout);
        let _ = self.stage.resource_drop(&mut self.store);
    }
}

fn set_deadline(store: &mut Store<HostState>, timeout: Duration) {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos()).max(1) as u64;
    // One extra tick: the current epoch period may be almost over.
    store.set_epoch_deadline(ticks + 1);
}

fn classify(
    e: wasmtime::Error,
    store: &Store<HostState>,
    limits: Limits,
    stderr: &TailPipe,
) -> CallError {
    if let Some(wanted) = store.data().limiter.hit {
        return CallError::MemoryLimit {
            limit: limits.memory,
            wanted: wanted as u64,
        };
    }
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return CallError::Timeout(limits.timeout);
    }
    let mut reason = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => e.to_string(),
    };
    let said = stderr.last_lines(3);
    if !said.is_empty() {
        reason.push_str(&format!(" (plugin said: {said})"));
    }
    CallError::Trap(reason)
}

/// What a `.wasm` file is, read without compiling it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentInfo {
    /// Whether the file is a component (not a core module).
    pub is_component: bool,
    /// Top-level import names.
    pub imports: Vec<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
}

impl ComponentInfo {
    /// Checks that the component exports the Weir transform interface.
    pub fn check_weir_plugin(&self) -> Result<(), String> {
        if !self.is_component {
            return Err("it is a core WebAssembly module, not a component; build it for the wasm32-wasip2 target with the weir-plugin SDK".into());
        }
        if self.exports.iter().any(|e| e == EXPORT_NAME) {
            return Ok(());
        }
        let weir: Vec<&String> = self
            .exports
            .iter()
            .filter(|e| e.starts_with("weir:plugin/"))
            .collect();
        if let Some(other) = weir.first() {
            return Err(format!(
                "it exports `{other}`, but this host supports `{EXPORT_NAME}`; rebuild it against this version of the SDK"
            ));
        }
        Err(format!(
            "it does not export `{EXPORT_NAME}` (exports: {}); implement weir_plugin::Transform and call weir_plugin::export!",
            if self.exports.is_empty() {
                "none".to_owned()
            } else {
                self.exports.join(", ")
            }
        ))
    }
}

/// Reads a component's top-level imports and exports.
pub fn inspect_bytes(bytes: &[u8]) -> Result<ComponentInfo, String> {
    use wasmparser::{Encoding, Parser, Payload};
    if !bytes.starts_with(b"\0asm") {
        return Err(format!(
            "not a WebAssembly file: it does not start with the `\\0asm` magic number ({} bytes{})",
            bytes.len(),
            if bytes.is_empty() { ", empty" } else { "" }
        ));
    }
    let mut info = ComponentInfo::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not valid WebAssembly: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 {
                    info.is_component = encoding == Encoding::Component;
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| format!("not valid WebAssembly: {e}"))?;
                    info.imports.push(import.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| format!("not valid WebAssembly: {e}"))?;
                    info.exports.push(export.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Checks a `plugin =` reference from a pipeline file without building or
/// compiling anything: a plugin crate directory must hold a `Cargo.toml`, a
/// file must exist and be a Weir component.
pub fn check_plugin_reference(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        if path.join("Cargo.toml").is_file() {
            return Ok(());
        }
        return Err(format!(
            "plugin directory {} has no Cargo.toml; point `plugin` at a .wasm file or a plugin crate",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("plugin file {} does not exist", path.display()),
        _ => format!("cannot read plugin {}: {e}", path.display()),
    })?;
    inspect_bytes(&bytes)
        .and_then(|info| info.check_weir_plugin())
        .map_err(|reason| format!("{} is not a Weir plugin: {reason}", path.display()))
}
