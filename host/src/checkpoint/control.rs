//! The stage side of checkpoints: what a source is asked to do next
//! ([`Action`], through its [`SourceControl`]) and how every stage answers
//! the coordinator ([`CheckpointReporter`]).

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::SavedStage;
use crate::event::Marker;

/// What stages tell the coordinator.
#[derive(Debug)]
pub enum CheckpointReport {
    /// A source's position at barrier `id`.
    Position {
        /// Checkpoint.
        id: u64,
        /// Source stage.
        stage: String,
        /// Where it is.
        position: serde_json::Value,
    },
    /// A source reached the end of its data at `position`.
    SourceDone {
        /// Source stage.
        stage: String,
        /// Final position.
        position: serde_json::Value,
    },
    /// A transform's state at barrier `id`.
    Snapshot {
        /// Checkpoint.
        id: u64,
        /// Transform stage.
        stage: String,
        /// Saved state.
        saved: SavedStage,
    },
    /// A transform's final state after its inputs ended.
    StageDone {
        /// Transform stage.
        stage: String,
        /// Saved state.
        saved: SavedStage,
    },
    /// A sink wrote everything before barrier `id`.
    SinkReady {
        /// Checkpoint.
        id: u64,
        /// Sink stage.
        stage: String,
    },
    /// A stage's task ended normally.
    Ended {
        /// Stage.
        stage: String,
    },
    /// A stage failed: no further checkpoint is written this run, so the
    /// last good one stays.
    Failed {
        /// Stage.
        stage: String,
    },
}

/// A stage's handle for reporting to the coordinator; does nothing when
/// checkpoints are off.
#[derive(Debug, Clone)]
pub struct CheckpointReporter {
    stage: String,
    tx: Option<mpsc::UnboundedSender<CheckpointReport>>,
}

impl CheckpointReporter {
    /// A reporter sending to `tx` (a coordinator's report channel).
    pub(crate) fn new(stage: &str, tx: mpsc::UnboundedSender<CheckpointReport>) -> Self {
        CheckpointReporter {
            stage: stage.to_owned(),
            tx: Some(tx),
        }
    }

    /// A reporter that reports nothing.
    pub fn off(stage: &str) -> Self {
        CheckpointReporter {
            stage: stage.to_owned(),
            tx: None,
        }
    }

    /// Whether checkpoints are on.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    fn send(&self, r: CheckpointReport) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(r);
        }
    }

    /// A source's position at barrier `id`.
    pub fn position(&self, id: u64, position: serde_json::Value) {
        self.send(CheckpointReport::Position {
            id,
            stage: self.stage.clone(),
            position,
        });
    }

    /// A source ended at `position`.
    pub fn source_done(&self, position: serde_json::Value) {
        self.send(CheckpointReport::SourceDone {
            stage: self.stage.clone(),
            position,
        });
    }

    /// A transform's state at barrier `id`.
    pub fn snapshot(&self, id: u64, next_seq: u64, state: &[u8]) {
        self.send(CheckpointReport::Snapshot {
            id,
            stage: self.stage.clone(),
            saved: SavedStage::new(next_seq, state),
        });
    }

    /// A transform's state at barrier `id`, already saved (with its
    /// tasks).
    pub fn snapshot_saved(&self, id: u64, saved: SavedStage) {
        self.send(CheckpointReport::Snapshot {
            id,
            stage: self.stage.clone(),
            saved,
        });
    }

    /// A transform's final state, already saved (with its tasks).
    pub fn stage_done_saved(&self, saved: SavedStage) {
        self.send(CheckpointReport::StageDone {
            stage: self.stage.clone(),
            saved,
        });
    }

    /// A transform's final state.
    pub fn stage_done(&self, next_seq: u64, state: &[u8]) {
        self.send(CheckpointReport::StageDone {
            stage: self.stage.clone(),
            saved: SavedStage::new(next_seq, state),
        });
    }

    /// A sink is ready for barrier `id`.
    pub fn sink_ready(&self, id: u64) {
        self.send(CheckpointReport::SinkReady {
            id,
            stage: self.stage.clone(),
        });
    }
}

/// What a source should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Record the position, report it, send barrier `id` downstream; stop
    /// afterwards when `last`.
    Checkpoint {
        /// Checkpoint id.
        id: u64,
        /// Stop after it.
        last: bool,
    },
    /// Stop now (shutdown without checkpoints).
    Stop,
}

impl Action {
    /// The barrier to send for a checkpoint action.
    pub fn marker(self) -> Option<Marker> {
        match self {
            Action::Checkpoint { id, last } => Some(Marker::Barrier { id, last }),
            Action::Stop => None,
        }
    }
}

/// A source's control channel: checkpoint requests and shutdown.
pub struct SourceControl {
    commands: Option<mpsc::UnboundedReceiver<Action>>,
    shutdown: CancellationToken,
    /// Cancelled when this instance must stop: a reload replacing it (with
    /// checkpoints the pipeline's own shutdown comes as a final checkpoint
    /// instead).
    replaced: Option<CancellationToken>,
    /// Reports to the coordinator.
    pub reporter: CheckpointReporter,
    /// Where to resume: from the last checkpoint, or where the instance
    /// this one replaces (a reload) stopped.
    pub resume: Option<serde_json::Value>,
    /// Filled with the source's position when it stops on request, so a
    /// replacing instance can go on from there.
    pub(crate) stopped_at: Option<std::sync::Arc<std::sync::Mutex<Option<serde_json::Value>>>>,
    /// Asks the coordinator for a checkpoint out of turn.
    pub(crate) urgent: Option<mpsc::UnboundedSender<super::coordinator::Control>>,
}

impl SourceControl {
    /// Without checkpoints: only the shutdown signal.
    pub fn plain(stage: &str, shutdown: CancellationToken) -> Self {
        SourceControl {
            commands: None,
            shutdown,
            replaced: None,
            reporter: CheckpointReporter::off(stage),
            resume: None,
            stopped_at: None,
            urgent: None,
        }
    }

    /// Asks for a checkpoint now, without waiting for the interval (a
    /// source handing partitions over needs its work committed); it comes
    /// as an [`Action::Checkpoint`] like any other. Does nothing without
    /// checkpoints.
    pub fn request_checkpoint(&self) {
        if let Some(tx) = &self.urgent {
            let _ = tx.send(super::coordinator::Control::Now);
        }
    }

    /// With checkpoints: requests arrive on `commands`; `resume` is where
    /// the last checkpoint left the source.
    pub(crate) fn checkpointing(
        commands: Option<mpsc::UnboundedReceiver<Action>>,
        reporter: CheckpointReporter,
        resume: Option<serde_json::Value>,
        shutdown: CancellationToken,
    ) -> Self {
        SourceControl {
            commands,
            shutdown,
            replaced: None,
            reporter,
            resume,
            stopped_at: None,
            urgent: None,
        }
    }

    /// Whether this control takes checkpoint requests.
    pub(crate) fn checkpoints(&self) -> bool {
        self.commands.is_some()
    }

    /// `token` stops this instance (a reload replacing or removing it; for
    /// sources without checkpoints also the pipeline's shutdown).
    pub(crate) fn stop_on(&mut self, token: CancellationToken) {
        self.replaced = Some(token);
    }

    /// The next action, if any, without waiting.
    pub fn poll(&mut self) -> Option<Action> {
        if self.replaced.as_ref().is_some_and(|t| t.is_cancelled()) {
            return Some(Action::Stop);
        }
        match &mut self.commands {
            Some(rx) => rx.try_recv().ok(),
            None => self.shutdown.is_cancelled().then_some(Action::Stop),
        }
    }

    /// Waits for the next action.
    pub async fn next(&mut self) -> Action {
        let replaced = self.replaced.clone().unwrap_or_default();
        match &mut self.commands {
            Some(rx) => tokio::select! {
                _ = replaced.cancelled() => Action::Stop,
                a = rx.recv() => a.unwrap_or(Action::Stop),
            },
            None => {
                tokio::select! {
                    _ = self.shutdown.cancelled() => {}
                    _ = replaced.cancelled() => {}
                }
                Action::Stop
            }
        }
    }
}
