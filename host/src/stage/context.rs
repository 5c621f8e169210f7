//! What a running stage is handed: its input or output, its dead-letter
//! output, its counters, its checkpoint control and the shutdown signal.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{DeadLetters, Extensions, Input, Item, Output, Update};
use crate::checkpoint::{Action, CheckpointReporter, SavedStage, SourceControl};
use crate::event::{Batch, Marker};
use crate::telemetry::{Dashboards, StageMetrics};

/// Handed to a source when it starts.
pub struct SourceContext {
    /// Stage name.
    pub name: String,
    /// Where produced batches go.
    pub out: Output,
    /// Where unreadable records go.
    pub dead_letters: DeadLetters,
    /// Checkpoint requests and the stop signal: check it between batches.
    pub control: SourceControl,
    /// The stage's counters.
    pub metrics: Arc<StageMetrics>,
    /// Events per batch.
    pub batch_size: usize,
    /// Cancelled when the whole pipeline is stopping (a signal), as
    /// opposed to this source alone being replaced by a reload: only then
    /// may it tell downstream that its input has ended.
    pub stopping: CancellationToken,
    /// Cancelled once every stage of this pipeline that writes what this
    /// source reads has finished (a Kafka sink producing to the topic a
    /// Kafka source consumes); `None` when there is no such stage.
    pub writers_done: Option<CancellationToken>,
    /// Services the stages of this pipeline share.
    pub extensions: Extensions,
}

impl SourceContext {
    /// Carries out a control action between batches: for a checkpoint,
    /// reports `position` and sends the barrier downstream. Returns true
    /// when the source must stop now.
    pub fn act(
        &self,
        handle: &tokio::runtime::Handle,
        action: Action,
        position: impl FnOnce() -> serde_json::Value,
    ) -> bool {
        match action {
            Action::Stop => {
                if let Some(slot) = &self.control.stopped_at {
                    *slot.lock().expect("position lock") = Some(position());
                }
                true
            }
            Action::Checkpoint { id, last } => {
                self.control.reporter.position(id, position());
                let _ = self
                    .out
                    .blocking_marker(handle, Marker::Barrier { id, last });
                last
            }
        }
    }

    /// Ends the source at the end of its data: reports the final position
    /// and tells downstream this input is done.
    pub fn finish(&self, handle: &tokio::runtime::Handle, position: serde_json::Value) {
        self.control.reporter.source_done(position);
        let _ = self.out.blocking_marker(handle, Marker::End);
    }
}

/// Handed to a transform when it starts.
pub struct TransformContext {
    /// Stage name.
    pub name: String,
    /// Batches from every input, merged and aligned on checkpoint barriers.
    pub input: Input,
    /// Where results go.
    pub out: Output,
    /// Where rejected records go.
    pub dead_letters: DeadLetters,
    /// The stage's counters.
    pub metrics: Arc<StageMetrics>,
    /// In-place updates from reloads (a new plugin build or config). A
    /// transform that does not support them drops this, and reloads restart
    /// it instead.
    pub updates: mpsc::UnboundedReceiver<Update>,
    /// Reports snapshots to the checkpoint coordinator.
    pub reporter: CheckpointReporter,
    /// State saved by the last checkpoint, to restore.
    pub resume: Option<SavedStage>,
    /// Services the stages of this pipeline share.
    pub extensions: Extensions,
}

/// Handed to a sink when it starts.
pub struct SinkContext {
    /// Stage name.
    pub name: String,
    /// Batches from every input (and from stages using this sink as their
    /// dead-letter output). Closed when all of them finished.
    pub input: Input,
    /// Where undeliverable records go.
    pub dead_letters: DeadLetters,
    /// The stage's counters.
    pub metrics: Arc<StageMetrics>,
    /// Reports checkpoint barriers to the coordinator.
    pub reporter: CheckpointReporter,
    /// The pipeline's dashboards (the `dashboard` sink publishes here).
    pub dashboards: Dashboards,
    /// Services the stages of this pipeline share.
    pub extensions: Extensions,
}

impl SinkContext {
    /// The next batch of data, `None` once the input is closed. Checkpoint
    /// barriers are acknowledged on the way: a sink calling this has
    /// written everything it received before.
    pub async fn next_batch(&mut self) -> Option<Batch> {
        loop {
            match self.input.recv().await? {
                Item::Batch(b) => return Some(b),
                Item::Barrier { id, .. } => self.reporter.sink_ready(id),
                Item::End | Item::Revoked { .. } => {}
            }
        }
    }

    /// [`SinkContext::next_batch`] from a blocking thread.
    pub fn blocking_next_batch(&mut self) -> Option<Batch> {
        loop {
            match self.input.blocking_recv()? {
                Item::Batch(b) => return Some(b),
                Item::Barrier { id, .. } => self.reporter.sink_ready(id),
                Item::End | Item::Revoked { .. } => {}
            }
        }
    }
}
