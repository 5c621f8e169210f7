//! A stage's dead-letter output: records it cannot process, with the
//! reason, go to the sink the pipeline names (or are logged and dropped).
//!
//! The edge to the dead-letter sink is an edge like any other: a source or
//! transform sends its checkpoint barriers and its end down it too (through
//! its [`super::Output`]), in order with the records it rejects, so the sink
//! knows which checkpoint each dead letter belongs to. Sinks that reject
//! records (a failed delivery) send only the records.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::event::{Acks, Batch, Event, Marker};
use crate::telemetry::StageMetrics;

/// Set in the sender index of batches on a dead-letter edge.
pub(crate) const DEAD_LETTER_EDGE: u32 = 1 << 31;

/// A dead-letter edge taken off its sink, still to be told it ended.
#[must_use = "send the end to the old dead-letter sink"]
pub(crate) struct Detached {
    tx: Option<mpsc::Sender<Batch>>,
    index: u32,
}

impl Detached {
    /// Tells the old sink this input has ended.
    pub(crate) async fn end(self) {
        if let Some(tx) = self.tx {
            let mut end = Batch::marker(Marker::End);
            end.from = self.index;
            let _ = tx.send(end).await;
        }
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
    /// How batches on this edge name their sender: the stage's index with
    /// [`DEAD_LETTER_EDGE`] set, so a sink that is both a consumer and the
    /// dead-letter target of one stage counts two inputs.
    index: u32,
    /// Whether the stage sends markers down this edge (sources and
    /// transforms do; sinks send only records).
    with_markers: bool,
    /// The end was sent down the edge to the current target.
    ended: Arc<AtomicBool>,
}

impl DeadLetters {
    /// The dead-letter output of stage `stage` (index `index`) to `target`;
    /// `with_markers` when the stage forwards barriers and its end there.
    pub(crate) fn new(
        stage: &str,
        target: Option<mpsc::Sender<Batch>>,
        metrics: Arc<StageMetrics>,
        index: u32,
        with_markers: bool,
    ) -> Self {
        DeadLetters {
            stage: stage.into(),
            target: Arc::new(std::sync::RwLock::new(target)),
            metrics,
            dropped_logged: Arc::new(AtomicU64::new(0)),
            index: index | DEAD_LETTER_EDGE,
            with_markers,
            ended: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether a dead-letter sink is configured.
    pub fn is_configured(&self) -> bool {
        self.target.read().expect("dead-letter lock").is_some()
    }

    fn current(&self) -> Option<mpsc::Sender<Batch>> {
        self.target.read().expect("dead-letter lock").clone()
    }

    /// Sends a checkpoint barrier or the end down the edge, after every
    /// record rejected before it.
    pub(crate) async fn marker(&self, marker: Marker) {
        if !self.with_markers || matches!(marker, Marker::Join | Marker::Revoked { .. }) {
            return;
        }
        if marker == Marker::End && self.ended.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(tx) = self.current() {
            let mut batch = Batch::marker(marker);
            batch.from = self.index;
            let _ = tx.send(batch).await;
        }
    }

    /// Points the dead-letter output at another sink (or none); the new
    /// sink counts this stage as one more input from now on. The old one
    /// is told this input has ended by [`Detached::end`], which a caller
    /// moving several edges sends only after every new edge is attached,
    /// so no sink sees all its inputs end in between.
    pub(crate) async fn retarget(&self, target: Option<mpsc::Sender<Batch>>) -> Detached {
        let joined = target.clone();
        let old = std::mem::replace(&mut *self.target.write().expect("dead-letter lock"), target);
        let was_ended = self.ended.swap(false, Ordering::AcqRel);
        if let (true, Some(tx)) = (self.with_markers, joined) {
            let mut join = Batch::marker(Marker::Join);
            join.from = self.index;
            let _ = tx.send(join).await;
        }
        Detached {
            tx: old.filter(|_| self.with_markers && !was_ended),
            index: self.index,
        }
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
        match self.current() {
            Some(tx) => {
                let mut batch = Batch::with_acks(events, acks);
                batch.from = self.index;
                if let Err(refused) = tx.send(batch).await {
                    // Not delivered: their sources must not commit them.
                    refused.0.acks.fail();
                    tracing::error!("dead-letter sink has stopped; records not delivered");
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
