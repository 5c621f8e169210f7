//! A stage's output: fan-out to every consuming stage, with backpressure.
//! The set of consumers belongs to the stage name and survives restarts; a
//! reload changes it between batches.

use std::sync::Arc;

use tokio::sync::{RwLock, mpsc};

use super::DeadLetters;
use crate::event::{Batch, Marker};
use crate::telemetry::{StageMetrics, TapPoint};

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
    /// The stage's dead-letter edge, which carries its barriers and its end
    /// too.
    dead_letters: Option<DeadLetters>,
}

impl Output {
    pub(crate) fn new(
        routes: Vec<Route>,
        metrics: Arc<StageMetrics>,
        tap: Arc<TapPoint>,
        index: u32,
        dead_letters: Option<DeadLetters>,
    ) -> Self {
        Output {
            routes: Arc::new(RwLock::new(routes)),
            metrics,
            tap,
            index,
            dead_letters,
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
        if let (Some(marker), Some(dead)) = (batch.marker, &self.dead_letters) {
            // The dead-letter sink learns of barriers and the end from the
            // same stage in the same order as of its rejected records.
            dead.marker(marker).await;
        }
        // Held while sending, so a reload rewires only between batches.
        let routes = self.routes.read().await;
        let Some((last, rest)) = routes.split_last() else {
            return Ok(());
        };
        // A consumer that has gone did not take the records: they are not
        // delivered, whoever else took them, and their sources must not
        // commit them (a dropped batch would otherwise count as delivered).
        let mut delivered = false;
        for r in rest {
            match r.tx.send(batch.clone()).await {
                Ok(()) => delivered = true,
                Err(refused) => refused.0.acks.fail(),
            }
        }
        match last.tx.send(batch).await {
            Ok(()) => delivered = true,
            Err(refused) => refused.0.acks.fail(),
        }
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
