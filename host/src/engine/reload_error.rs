//! Why a reload, or one stage's change within it, did not apply. The text
//! of each goes into the reload report (`weir reload`, `/reload`, the log).

use std::time::Duration;

use crate::config::ConfigErrors;
use crate::stage::BoxError;

use super::plan::PlanError;

/// A reload refused as a whole, or one stage it could not change.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The pipeline is stopping; reloads are refused.
    #[error("the pipeline is shutting down")]
    ShuttingDown,
    /// The new file does not compile.
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
    /// The change cannot be applied while running.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A stage's new settings, plugin or model do not build.
    #[error("stage `{stage}`: {source}")]
    Stage {
        /// The stage.
        stage: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Several stages failed to build (each a [`ReloadError::Stage`]).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Stages(Vec<ReloadError>),
    /// The checkpoint coordinator has ended.
    #[error("checkpoints have stopped (the pipeline is ending)")]
    CheckpointsStopped,
    /// A checkpoint in flight kept the graph from changing.
    #[error(
        "a checkpoint in flight did not complete within {0:?}; the graph was left unchanged, try again"
    )]
    CheckpointInFlight(Duration),
    /// The stage to update has no running instance.
    #[error("the stage is not running")]
    NotRunning,
    /// The running instance did not take its update in time.
    #[error("the stage did not take the new plugin in time")]
    UpdateTimedOut,
    /// The running instance ended before taking its update.
    #[error("the stage stopped before taking the new plugin")]
    UpdateDropped,
    /// The running instance refused its update (it keeps running as it
    /// was), with its reason.
    #[error("{0}")]
    UpdateRefused(String),
    /// A source to restart did not stop in time.
    #[error("the running source did not stop in time")]
    SourceStuck,
    /// A source's new settings failed to start; the previous ones run again.
    #[error("{0}; the previous settings run again")]
    RolledBack(BoxError),
    /// A source's new settings failed, and so did its previous ones.
    #[error("{new}; restarting with the previous settings failed too: {old}")]
    RollbackFailed {
        /// Why the new settings failed.
        new: BoxError,
        /// Why the previous settings failed.
        old: BoxError,
    },
}
