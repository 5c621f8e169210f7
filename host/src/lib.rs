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
//! let board = weir::status::Board::new(&pipeline.file);
//! let running = tokio::task::block_in_place(|| {
//!     weir::topology::Topology::start(pipeline, &registry, &board, shutdown)
//! })?;
//! running.wait().await?;
//! # Ok(()) }
//! ```
//!
//! Layout: [`config`] turns text into a checked [`config::Pipeline`];
//! [`topology`] builds, runs and reloads it; [`event`] defines what flows;
//! [`wasm`] hosts plugins; [`sources`], [`transforms`] and [`sinks`] are the
//! stage types; [`status`] is what a running pipeline reports about itself.

pub mod admin;
pub mod checkpoint;
pub mod config;
pub mod event;
pub mod hub;
pub mod kafka;
pub mod metrics;
pub mod scaffold;
pub mod sinks;
pub mod sources;
pub mod status;
pub mod top;
pub mod topology;
pub mod transforms;
pub mod util;
pub mod wasm;
pub mod watch;
