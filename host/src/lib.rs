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
//! let registry = weir::metrics::Registry::default();
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let running = tokio::task::block_in_place(|| weir::topology::start(&pipeline, &registry, shutdown))?;
//! running.wait().await?;
//! # Ok(()) }
//! ```
//!
//! Layout: [`config`] turns text into a checked [`config::Pipeline`];
//! [`topology`] builds and runs it; [`event`] defines what flows; [`wasm`]
//! hosts plugins; [`sources`], [`transforms`] and [`sinks`] are the stage
//! types.

pub mod checkpoint;
pub mod config;
pub mod event;
pub mod kafka;
pub mod metrics;
pub mod sinks;
pub mod sources;
pub mod topology;
pub mod transforms;
pub mod util;
pub mod wasm;
