//! # Weir: a stream-processing plugin host
//!
//! Weir runs pipelines described in TOML files: sources produce events,
//! transforms (sandboxed WebAssembly plugins, among others) reshape them, and
//! sinks deliver them. This crate is the host: the `weir` binary is a thin
//! command line over it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = weir::config::load(std::path::Path::new("pipelines/gender-count-local.toml"))?;
//! let running = weir::runner::start(pipeline, Default::default()).await?;
//! running.wait().await.result?;
//! # Ok(()) }
//! ```
//!
//! Layers, each importing only those below it (docs/architecture.md; a test
//! checks the rule):
//!
//! 1. [`runner`] (run a pipeline in-process), [`admin`] (the HTTP
//!    endpoint), [`watch`] (file watching), [`scaffold`] (`weir plugin
//!    new`);
//! 2. [`engine`]: builds, runs and reloads the stage graph;
//! 3. [`config`]: text to a checked [`config::Pipeline`];
//! 4. the components: [`sources`], [`transforms`], [`sinks`], each type in
//!    its own file and listed in its kind's registry;
//! 5. component support: [`wasm`] (the plugin host), [`kafka`] (clients,
//!    the embedded broker);
//! 6. the stage API [`stage`], over [`checkpoint`], [`telemetry`],
//!    [`event`], [`units`] and [`util`].

pub mod admin;
pub mod checkpoint;
pub mod config;
pub mod engine;
pub mod event;
pub mod kafka;
pub mod runner;
pub mod scaffold;
pub mod sinks;
pub mod sources;
pub mod stage;
pub mod telemetry;
pub mod transforms;
pub mod units;
pub mod util;
pub mod wasm;
pub mod watch;

#[cfg(test)]
mod layering;
