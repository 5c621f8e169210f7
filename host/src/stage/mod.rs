//! The stage API: everything a source, transform or sink deals with, and
//! nothing of how the engine runs them.
//!
//! A component type implements [`Source`], [`Transform`] or [`Sink`] (and
//! the hooks of [`Component`]) and is listed in its kind's registry
//! (`sources/mod.rs`, `transforms/mod.rs`, `sinks/mod.rs`). When a stage
//! starts it is handed a context:
//!
//! - [`SourceContext`]: an [`Output`], [`DeadLetters`], its counters and a
//!   [`SourceControl`] (checkpoint requests and the stop signal);
//! - [`TransformContext`]: an [`Input`] (batches from every input, aligned
//!   on checkpoint barriers), an [`Output`], [`DeadLetters`], in-place
//!   [`Update`]s and a [`CheckpointReporter`];
//! - [`SinkContext`]: an [`Input`], [`DeadLetters`] and a reporter.
//!
//! Events travel in [`crate::event::Batch`]es carrying the acknowledgements
//! of the source records behind them; a stage that drops a batch on purpose
//! (written, dead-lettered, filtered) releases them by dropping it.
//!
//! Components import this module, [`crate::event`], [`crate::units`],
//! [`crate::telemetry`] and component support ([`crate::wasm`],
//! [`crate::kafka`]); never the engine.

mod blocking;
mod component;
mod context;
mod dead_letters;
mod extensions;
mod handover;
mod input;
mod output;
mod stateless;
mod update;

pub use crate::checkpoint::{Action, CheckpointReporter, SavedStage, SourceControl};
pub use blocking::{Dropped, drop_within, run_blocking};
pub(crate) use component::component_registry;
pub use component::{
    Component, Partitioning, Resource, Sink, Source, StageTask, Transactional, Transform,
};
pub use context::{SinkContext, SourceContext, TransformContext};
pub use dead_letters::DeadLetters;
pub use extensions::Extensions;
pub use handover::{Handover, StateKeeper};
pub use input::{Inbox, Input, Item};
pub(crate) use output::Route;
pub use output::{Closed, Output};
pub use stateless::{Processed, run_stateless};
pub use update::{Update, UpdateOutcome, UpdateReply, Updated};

/// Boxed error type for stage failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
