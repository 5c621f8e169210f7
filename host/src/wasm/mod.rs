//! The WebAssembly plugin host (wasmtime, component model).
//!
//! - [`runtime`]: the process-wide engine, linker, epoch ticker and
//!   compile cache; loading a `.wasm` gives a [`Plugin`].
//! - [`instance`]: one sandboxed [`Instance`] per stage instance, with its
//!   deadline and memory cap.
//! - [`convert`]: events to the contract's flat batch layout and back
//!   ([`PluginInput`], [`PluginOutput`]).
//! - [`inspect`]: what a `.wasm` file is, without compiling it.
//! - [`build`]: plugin directories built on demand: Rust crates with
//!   cargo, and through [`lang`], Python and JavaScript plugins with
//!   componentize-py and componentize-js.
//! - `bindings` (private): the only `bindgen!`; generated types do not
//!   leave this module.
//! - `trim` (private): after a compile, the compiler's freed memory goes
//!   back to the operating system.
//!
//! Sandboxing: a plugin gets WASI with nothing granted (no preopened
//! directories, no network, no environment, no inherited stdio; its stdout
//! and stderr become log lines tagged with its stage, and their tail is
//! kept so a panic message can be reported), plus the `host` interface
//! (`log`, `now-ms`). Every call runs under a wall-clock deadline enforced by
//! epoch interruption, and in WASI waits by `bounded_poll`, and a
//! linear-memory cap enforced by a resource limiter.
//!
//! Compiled components are cached on disk by the SHA-256 of the `.wasm`
//! bytes and the engine's compatibility hash, so a second start skips
//! Cranelift entirely.

mod bindings;
mod bounded_poll;
pub mod build;
pub mod capabilities;
pub mod convert;
mod error;
pub mod inspect;
pub mod instance;
pub mod lang;
pub mod runtime;
mod stdio;
mod trim;

pub use build::{BuildOutcome, CrateInfo, build_crate, crate_info, resolve_plugin};
pub use convert::{PluginInput, PluginOutput};
pub use error::{CallError, PluginError};
pub use inspect::{ComponentInfo, check_plugin_reference, inspect_bytes};
pub use instance::{Instance, Limits};
pub use runtime::{Plugin, Runtime, RuntimeOptions, cache_dir};

/// The WIT package and interface every plugin must export.
pub const EXPORT_NAME: &str = "weir:plugin/transform@0.1.0";
/// The host interface plugins import.
pub const IMPORT_NAME: &str = "weir:plugin/host@0.1.0";
