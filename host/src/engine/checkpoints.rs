//! Checkpoints as the engine sees them: the coordinator wired in at start
//! (from `state_dir`), its members, and pausing it around graph changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::{ReloadError, RunError, StageError, Topology};
use crate::checkpoint::{
    CheckpointReporter, CheckpointSetup, CheckpointStore, Control, FileStore, Members,
    SourceControl,
};
use crate::config::{Kind, Pipeline, Stage};

/// How long a graph change waits for a checkpoint in flight to complete.
const PAUSE_WAIT: Duration = Duration::from_secs(10);

impl Topology {
    /// The checkpoint coordinator's wiring: with the store the engine was
    /// given, else with `state_dir`, else none.
    pub(super) fn checkpoint_setup(
        &self,
        given: Option<Arc<dyn CheckpointStore>>,
    ) -> Result<Option<CheckpointSetup>, RunError> {
        let store: Arc<dyn CheckpointStore> = match (given, &self.pipeline.options.state_dir) {
            (Some(store), _) => store,
            (None, Some(dir)) => Arc::new(FileStore::new(dir.clone())),
            (None, None) => return Ok(None),
        };
        let saved = tokio::task::block_in_place(|| store.load()).map_err(|e| {
            RunError::Build(vec![StageError {
                stage: "checkpoints".into(),
                source: e.into(),
            }])
        })?;
        if let Some(s) = &saved {
            tracing::info!(
                checkpoint = s.id,
                store = store.describe(),
                written_ms = s.written_ms,
                "restoring from checkpoint"
            );
        }
        let p = &self.pipeline;
        Ok(Some(CheckpointSetup::new(
            store,
            p.checkpoint_interval(),
            members(p),
            saved,
        )))
    }

    /// Lets checkpoints go on, with the members of the pipeline as it is
    /// now; `started` are stages the reload (re)started.
    pub(super) fn resume_checkpoints(&self, started: Vec<String>) {
        if let Some(c) = &self.checkpoints {
            let _ = c.send(Control::Resume {
                members: members(&self.pipeline),
                started,
            });
        }
    }

    /// Waits until no checkpoint is in flight and holds further ones.
    pub(super) async fn pause_checkpoints(&self) -> Result<(), ReloadError> {
        let Some(c) = &self.checkpoints else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        if c.send(Control::Pause(tx)).is_err() {
            return Err(ReloadError::CheckpointsStopped);
        }
        match tokio::time::timeout(PAUSE_WAIT, rx).await {
            Ok(Ok(())) => Ok(()),
            _ => {
                // Let checkpoints go on as before.
                self.resume_checkpoints(Vec::new());
                Err(ReloadError::CheckpointInFlight(PAUSE_WAIT))
            }
        }
    }

    /// A checkpointing control for a source a reload starts, or `None`
    /// when the pipeline does not checkpoint.
    pub(super) fn joined_source(&self, name: &str) -> Option<SourceControl> {
        let c = self.checkpoints.as_ref()?;
        Some(CheckpointSetup::joined_source(name, self.reporter(name), c))
    }

    /// The checkpoint reporter of `stage` (one that reports nothing when
    /// the pipeline does not checkpoint).
    pub(super) fn reporter(&self, stage: &str) -> CheckpointReporter {
        match &self.reports {
            Some(tx) => CheckpointReporter::new(stage, tx.clone()),
            None => CheckpointReporter::off(stage),
        }
    }
}

/// The stages a checkpoint waits for: sources, transforms, and sinks that
/// receive barriers (from data inputs, or from the sources and transforms
/// whose dead letters they take).
pub(super) fn members(p: &Pipeline) -> Members {
    Members {
        sources: stages_of(p, |s| s.component.kind() == Kind::Source),
        transforms: stages_of(p, |s| s.component.kind() == Kind::Transform),
        sinks: stages_of(p, |s| {
            s.component.kind() == Kind::Sink
                && (!s.inputs.is_empty() || p.dead_letter_feeders(&s.name).next().is_some())
        }),
    }
}

fn stages_of(
    pipeline: &Pipeline,
    keep: impl Fn(&Stage) -> bool,
) -> std::collections::BTreeSet<String> {
    pipeline
        .stages
        .values()
        .filter(|s| keep(s))
        .map(|s| s.name.clone())
        .collect()
}
