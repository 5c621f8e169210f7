//! What a running stage is handed: its output, its dead-letter output, its
//! counters and the shutdown signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Reporter, SavedStage, SourceControl};
use crate::event::{Acks, Batch, Event, Marker};
use crate::metrics::StageMetrics;

/// Boxed error type for stage failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every downstream stage has gone away (the pipeline is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("downstream stages have stopped")]
pub struct Closed;

/// A stage's output: a sender per consuming stage (fan-out).
#[derive(Clone)]
pub struct Output {
    senders: Vec<mpsc::Sender<Batch>>,
    metrics: Arc<StageMetrics>,
    index: u32,
}

impl Output {
    pub(crate) fn new(
        senders: Vec<mpsc::Sender<Batch>>,
        metrics: Arc<StageMetrics>,
        index: u32,
    ) -> Self {
        Output {
            senders,
            metrics,
            index,
        }
    }

    /// Whether any stage consumes this output.
    pub fn is_connected(&self) -> bool {
        !self.senders.is_empty()
    }

    /// Sends a batch to every consumer, waiting while their queues are full
    /// (backpressure). Empty batches that carry no acknowledgements are
    /// skipped.
    pub async fn send(&self, mut batch: Batch) -> Result<(), Closed> {
        if batch.events.is_empty() && batch.acks.is_empty() && batch.marker.is_none() {
            return Ok(());
        }
        batch.from = self.index;
        StageMetrics::add(&self.metrics.events_out, batch.events.len() as u64);
        let Some((last, rest)) = self.senders.split_last() else {
            return Ok(());
        };
        let mut delivered = false;
        for tx in rest {
            delivered |= tx.send(batch.clone()).await.is_ok();
        }
        delivered |= last.send(batch).await.is_ok();
        if delivered { Ok(()) } else { Err(Closed) }
    }

    /// [`Output::send`] from a non-async thread.
    pub fn blocking_send(
        &self,
        handle: &tokio::runtime::Handle,
        batch: Batch,
    ) -> Result<(), Closed> {
        handle.block_on(self.send(batch))
    }

    /// Sends a control marker to every consumer.
    pub fn blocking_marker(
        &self,
        handle: &tokio::runtime::Handle,
        marker: Marker,
    ) -> Result<(), Closed> {
        handle.block_on(self.send(Batch::marker(marker)))
    }
}

/// Where a stage sends records it cannot process.
#[derive(Clone)]
pub struct DeadLetters {
    stage: Arc<str>,
    target: Option<mpsc::Sender<Batch>>,
    metrics: Arc<StageMetrics>,
    dropped_logged: Arc<AtomicU64>,
}

impl DeadLetters {
    pub(crate) fn new(
        stage: &str,
        target: Option<mpsc::Sender<Batch>>,
        metrics: Arc<StageMetrics>,
    ) -> Self {
        DeadLetters {
            stage: stage.into(),
            target,
            metrics,
            dropped_logged: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether a dead-letter sink is configured.
    pub fn is_configured(&self) -> bool {
        self.target.is_some()
    }

    fn prepare(&self, events: Vec<(Event, String)>) -> Vec<Event> {
        StageMetrics::add(&self.metrics.rejected, events.len() as u64);
        events
            .into_iter()
            .map(|(e, reason)| e.into_dead_letter(&self.stage, &reason))
            .collect()
    }

    fn log_dropped(&self, events: &[Event]) {
        // Log the first few in full, then one line per 1000 so a stream of
        // bad records cannot flood the log.
        for e in events {
            let n = self.dropped_logged.fetch_add(1, Ordering::Relaxed);
            if n < 20 || n.is_multiple_of(1000) {
                let reason = e
                    .header("weir.reason")
                    .map(|r| String::from_utf8_lossy(r).into_owned())
                    .unwrap_or_default();
                tracing::warn!(
                    stage = &*self.stage,
                    reason,
                    dropped_total = n + 1,
                    value = %crate::util::preview(&e.value),
                    "record rejected and dropped (set `dead_letter` on the stage to keep such records)"
                );
            }
        }
    }

    /// Sends `(event, reason)` pairs to the dead-letter sink, or logs and
    /// drops them when none is configured. `acks` are the acknowledgements of
    /// the records behind them.
    pub async fn send(&self, events: Vec<(Event, String)>, acks: Acks) {
        if events.is_empty() {
            return;
        }
        let events = self.prepare(events);
        match &self.target {
            Some(tx) => {
                if tx.send(Batch::with_acks(events, acks)).await.is_err() {
                    tracing::error!(
                        stage = &*self.stage,
                        "dead-letter sink has stopped; records lost"
                    );
                }
            }
            None => self.log_dropped(&events),
        }
    }

    /// [`DeadLetters::send`] from a non-async thread.
    pub fn blocking_send(
        &self,
        handle: &tokio::runtime::Handle,
        events: Vec<(Event, String)>,
        acks: Acks,
    ) {
        handle.block_on(self.send(events, acks))
    }
}

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
    /// Cancelled once every stage of this pipeline that writes what this
    /// source reads has finished (a Kafka sink producing to the topic a
    /// Kafka source consumes); `None` when there is no such stage.
    pub writers_done: Option<CancellationToken>,
}

impl SourceContext {
    /// Carries out a control action between batches: for a checkpoint,
    /// reports `position` and sends the barrier downstream. Returns true
    /// when the source must stop now.
    pub fn act(
        &self,
        handle: &tokio::runtime::Handle,
        action: crate::checkpoint::Action,
        position: impl FnOnce() -> serde_json::Value,
    ) -> bool {
        use crate::checkpoint::Action;
        match action {
            Action::Stop => true,
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
    /// Batches from every input, merged. Closed when all inputs finished.
    pub input: mpsc::Receiver<Batch>,
    /// Where results go.
    pub out: Output,
    /// Where rejected records go.
    pub dead_letters: DeadLetters,
    /// The stage's counters.
    pub metrics: Arc<StageMetrics>,
    /// Number of data inputs (for barrier alignment).
    pub inputs: usize,
    /// Reports snapshots to the checkpoint coordinator.
    pub reporter: Reporter,
    /// State saved by the last checkpoint, to restore.
    pub resume: Option<SavedStage>,
}

/// Handed to a sink when it starts.
pub struct SinkContext {
    /// Stage name.
    pub name: String,
    /// Batches from every input (and from stages using this sink as their
    /// dead-letter output). Closed when all of them finished.
    pub input: mpsc::Receiver<Batch>,
    /// Where undeliverable records go.
    pub dead_letters: DeadLetters,
    /// The stage's counters.
    pub metrics: Arc<StageMetrics>,
    /// Number of data inputs (for barrier alignment).
    pub inputs: usize,
    /// Reports checkpoint barriers to the coordinator.
    pub reporter: Reporter,
}
