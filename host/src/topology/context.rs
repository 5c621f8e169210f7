//! What a running stage is handed: its output, its dead-letter output, its
//! counters and the shutdown signal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{RwLock, mpsc};
use tokio_util::sync::CancellationToken;

use super::Input;
use super::Update;

use crate::checkpoint::{Reporter, SavedStage, SourceControl};
use crate::event::{Acks, Batch, Event, Marker};
use crate::hub::{Hub, TapPoint};
use crate::metrics::StageMetrics;

/// Boxed error type for stage failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every downstream stage has gone away (the pipeline is shutting down).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("downstream stages have stopped")]
pub struct Closed;

/// One consumer of a stage's output.
#[derive(Clone)]
pub(crate) struct Route {
    /// The consuming stage.
    pub to: String,
    pub tx: mpsc::Sender<Batch>,
}

/// A stage's output: a sender per consuming stage (fan-out). The set of
/// consumers belongs to the stage name and survives restarts; a reload
/// changes it between batches ([`Output::attach`], [`Output::detach`]).
#[derive(Clone)]
pub struct Output {
    routes: Arc<RwLock<Vec<Route>>>,
    metrics: Arc<StageMetrics>,
    tap: Arc<TapPoint>,
    index: u32,
}

impl Output {
    pub(crate) fn new(
        routes: Vec<Route>,
        metrics: Arc<StageMetrics>,
        tap: Arc<TapPoint>,
        index: u32,
    ) -> Self {
        Output {
            routes: Arc::new(RwLock::new(routes)),
            metrics,
            tap,
            index,
        }
    }

    /// Whether any stage consumes this output.
    pub fn is_connected(&self) -> bool {
        self.routes.try_read().map_or(true, |r| !r.is_empty())
    }

    /// Names of the consuming stages.
    pub(crate) async fn consumers(&self) -> Vec<String> {
        self.routes
            .read()
            .await
            .iter()
            .map(|r| r.to.clone())
            .collect()
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
        self.tap.offer(&batch.events);
        // Held while sending, so a reload rewires only between batches.
        let routes = self.routes.read().await;
        let Some((last, rest)) = routes.split_last() else {
            return Ok(());
        };
        let mut delivered = false;
        for r in rest {
            delivered |= r.tx.send(batch.clone()).await.is_ok();
        }
        delivered |= last.tx.send(batch).await.is_ok();
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

    /// Adds consumer `to`; it counts this stage as one more input from now
    /// on. Waits for a batch being sent to finish.
    pub(crate) async fn attach(&self, to: &str, tx: mpsc::Sender<Batch>) {
        let mut routes = self.routes.write().await;
        let mut join = Batch::marker(Marker::Join);
        join.from = self.index;
        if tx.send(join).await.is_ok() {
            routes.push(Route {
                to: to.to_owned(),
                tx,
            });
        }
    }

    /// Drops every consumer (the stage has ended): a consumer's channel
    /// closes once none of its upstream stages is left.
    pub(crate) async fn close(&self) {
        self.routes.write().await.clear();
    }

    /// Removes consumer `to`, telling it this input has ended; what was
    /// already sent stays queued there and is processed.
    pub(crate) async fn detach(&self, to: &str) {
        let mut routes = self.routes.write().await;
        let mut kept = Vec::with_capacity(routes.len());
        for r in routes.drain(..) {
            if r.to == to {
                let mut end = Batch::marker(Marker::End);
                end.from = self.index;
                let _ = r.tx.send(end).await;
            } else {
                kept.push(r);
            }
        }
        *routes = kept;
    }
}

/// Where a stage sends records it cannot process. The target belongs to the
/// stage name and a reload may change it.
#[derive(Clone)]
pub struct DeadLetters {
    stage: Arc<str>,
    target: Arc<std::sync::RwLock<Option<mpsc::Sender<Batch>>>>,
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
            target: Arc::new(std::sync::RwLock::new(target)),
            metrics,
            dropped_logged: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether a dead-letter sink is configured.
    pub fn is_configured(&self) -> bool {
        self.target.read().expect("dead-letter lock").is_some()
    }

    /// Points the dead-letter output at another sink (or none).
    pub(crate) fn retarget(&self, target: Option<mpsc::Sender<Batch>>) {
        *self.target.write().expect("dead-letter lock") = target;
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
        let target = self.target.read().expect("dead-letter lock").clone();
        match &target {
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
    /// Cancelled when the whole pipeline is stopping (a signal), as
    /// opposed to this source alone being replaced by a reload: only then
    /// may it tell downstream that its input has ended.
    pub stopping: CancellationToken,
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
    pub input: Input,
    /// Where undeliverable records go.
    pub dead_letters: DeadLetters,
    /// The stage's counters.
    pub metrics: Arc<StageMetrics>,
    /// Reports checkpoint barriers to the coordinator.
    pub reporter: Reporter,
    /// Taps and dashboards (the `dashboard` sink publishes here).
    pub hub: Hub,
}

impl SinkContext {
    /// The next batch of data, `None` once the input is closed. Checkpoint
    /// barriers are acknowledged on the way: a sink calling this has
    /// written everything it received before.
    pub async fn next_batch(&mut self) -> Option<Batch> {
        loop {
            match self.input.recv().await? {
                super::Item::Batch(b) => return Some(b),
                super::Item::Barrier { id, .. } => self.reporter.sink_ready(id),
                super::Item::End => {}
            }
        }
    }

    /// [`SinkContext::next_batch`] from a blocking thread.
    pub fn blocking_next_batch(&mut self) -> Option<Batch> {
        loop {
            match self.input.blocking_recv()? {
                super::Item::Batch(b) => return Some(b),
                super::Item::Barrier { id, .. } => self.reporter.sink_ready(id),
                super::Item::End => {}
            }
        }
    }
}
