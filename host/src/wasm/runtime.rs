//! The process-wide WebAssembly runtime: one engine (Cranelift, epoch
//! interruption), one linker (WASI with nothing granted, plus the host
//! interface), the epoch ticker, and the on-disk compile cache. Loading a
//! `.wasm` gives a [`Plugin`], ready to instantiate any number of times.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::PluginError;
use super::bindings::{self, TransformPluginPre};
use super::bounded_poll::HasBoundedPoll;
use super::inspect::inspect_bytes;
use super::instance::HostState;

/// How often the epoch ticker advances; deadlines are rounded up to it.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(10);

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
        link_wasi(&mut linker)?;
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
        // What the toolchain always imports but the sandbox denies
        // (sockets; `check_weir_plugin` refused anything else missing)
        // traps when called.
        let mut linker = self.linker.clone();
        let pre = link_denied_as_traps(&mut linker, &component)
            .and_then(|()| linker.instantiate_pre(&component))
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
            let component = wasmtime::component::Component::new(&self.engine, bytes)?;
            super::trim::release_freed_memory();
            return Ok((component, false));
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
        drop(compiled);
        // Cranelift's working memory is free now; without this the
        // process keeps it (see `trim`).
        super::trim::release_freed_memory();
        Ok((component, false))
    }
}

/// Links the WASI interfaces of [`super::capabilities`], and no other:
/// sockets are left out (linked as traps per plugin, see [`Runtime::load`]).
fn link_wasi(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
    use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
    use wasmtime_wasi::random::WasiRandom;
    type H = HostState;
    let l = linker;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<H, HasTable>(l, |s| s.table())?;
    sync::io::streams::add_to_linker::<H, HasTable>(l, |s| s.table())?;
    // WASI's waits, bounded by the call's deadline.
    sync::io::poll::add_to_linker::<H, HasBoundedPoll>(l, HostState::bounded_poll)?;
    clocks::wall_clock::add_to_linker::<H, WasiClocks>(l, H::clocks)?;
    clocks::monotonic_clock::add_to_linker::<H, WasiClocks>(l, H::clocks)?;
    random::random::add_to_linker::<H, WasiRandom>(l, |s| s.wasi().random())?;
    random::insecure::add_to_linker::<H, WasiRandom>(l, |s| s.wasi().random())?;
    random::insecure_seed::add_to_linker::<H, WasiRandom>(l, |s| s.wasi().random())?;
    cli::exit::add_to_linker::<H, WasiCli>(l, H::cli)?;
    cli::environment::add_to_linker::<H, WasiCli>(l, H::cli)?;
    cli::stdin::add_to_linker::<H, WasiCli>(l, H::cli)?;
    cli::stdout::add_to_linker::<H, WasiCli>(l, H::cli)?;
    cli::stderr::add_to_linker::<H, WasiCli>(l, H::cli)?;
    cli::terminal_input::add_to_linker::<H, WasiCli>(l, H::cli)?;
    cli::terminal_output::add_to_linker::<H, WasiCli>(l, H::cli)?;
    cli::terminal_stdin::add_to_linker::<H, WasiCli>(l, H::cli)?;
    cli::terminal_stdout::add_to_linker::<H, WasiCli>(l, H::cli)?;
    cli::terminal_stderr::add_to_linker::<H, WasiCli>(l, H::cli)?;
    filesystem::preopens::add_to_linker::<H, WasiFilesystem>(l, H::filesystem)?;
    sync::filesystem::types::add_to_linker::<H, WasiFilesystem>(l, H::filesystem)?;
    Ok(())
}

/// Links the component's imports that [`super::capabilities`] denies
/// (sockets) as functions that trap, naming the function. (wasmtime's
/// `define_unknown_imports_as_traps` would also stub WASI interfaces the
/// linker provides at another 0.2.x version than the one imported.)
fn link_denied_as_traps(
    linker: &mut Linker<HostState>,
    component: &wasmtime::component::Component,
) -> wasmtime::Result<()> {
    use super::capabilities::{Denied, Import};
    use wasmtime::component::types::ComponentItem;
    let engine = linker.engine().clone();
    for (name, item) in component.component_type().imports(&engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if Import::of(name) != Import::Trapped {
            continue;
        }
        let mut defined = linker.instance(name)?;
        for (export, item) in instance.exports(&engine) {
            match item.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{name}#{export}");
                    defined.func_new(export, move |_, _, _, _| {
                        Err(wasmtime::Error::new(Denied(what.clone())))
                    })?;
                }
                ComponentItem::Resource(_) => {
                    // The WASI I/O resources the sockets interfaces use are
                    // the linked ones; their own (sockets, networks) are
                    // placeholders nothing can create.
                    use wasmtime::component::ResourceType;
                    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable};
                    let ty = match export {
                        "pollable" => ResourceType::host::<DynPollable>(),
                        "input-stream" => ResourceType::host::<DynInputStream>(),
                        "output-stream" => ResourceType::host::<DynOutputStream>(),
                        _ => ResourceType::host::<()>(),
                    };
                    defined.resource(export, ty, |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Selects a plugin's resource table as the host state of an interface.
struct HasTable;

impl wasmtime::component::HasData for HasTable {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
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
    pub(super) pre: Arc<TransformPluginPre<HostState>>,
    pub(super) deadlines: bool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.path)
            .field("hash", &self.hash)
            .finish()
    }
}
