//! The loop of a stateless native transform: data in, results and
//! rejections out, checkpoint markers aligned and forwarded.

use crate::event::{Batch, Event, Marker};
use crate::telemetry::StageMetrics;

use super::{BoxError, Item, TransformContext};

/// What a stateless transform makes of a batch of events.
pub struct Processed {
    /// Events to send downstream.
    pub events: Vec<Event>,
    /// Events refused, with the reason (to the dead-letter output).
    pub rejected: Vec<(Event, String)>,
}

/// Runs `f` on every data batch of `ctx`'s input until the input ends (or
/// a reload replaces the stage). Call it from a blocking thread.
/// Acknowledgements follow the batch to both outputs; checkpoint barriers
/// are forwarded with an empty snapshot once aligned across inputs.
pub fn run_stateless(
    ctx: TransformContext,
    handle: &tokio::runtime::Handle,
    mut f: impl FnMut(Vec<Event>) -> Processed,
) -> Result<(), BoxError> {
    let TransformContext {
        mut input,
        out,
        dead_letters,
        metrics,
        reporter,
        ..
    } = ctx;
    while let Some(item) = input.blocking_recv() {
        match item {
            Item::Batch(batch) => {
                let n = batch.events.len() as u64;
                StageMetrics::add(&metrics.events_in, n);
                StageMetrics::add(&metrics.batches, 1);
                let started = std::time::Instant::now();
                let Processed { events, rejected } = f(batch.events);
                metrics.record_batch(started.elapsed());
                dead_letters.blocking_send(handle, rejected, batch.acks.clone());
                if out
                    .blocking_send(handle, Batch::with_acks(events, batch.acks))
                    .is_err()
                {
                    tracing::debug!("downstream stopped");
                    return Ok(());
                }
            }
            Item::Barrier { id, last } => {
                reporter.snapshot(id, 0, &[]);
                if out
                    .blocking_marker(handle, Marker::Barrier { id, last })
                    .is_err()
                {
                    return Ok(());
                }
            }
            Item::Revoked { generation } => {
                if out
                    .blocking_marker(handle, Marker::Revoked { generation })
                    .is_err()
                {
                    return Ok(());
                }
            }
            Item::End => {
                reporter.stage_done(0, &[]);
                let _ = out.blocking_marker(handle, Marker::End);
                return Ok(());
            }
        }
    }
    Ok(())
}
