//! A stage's dead-letter output: records it cannot process, with the
//! reason, go to the sink the pipeline names (or are logged and dropped).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::event::{Acks, Batch, Event};
use crate::telemetry::StageMetrics;

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
                    tracing::error!("dead-letter sink has stopped; records lost");
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
