//! The loop of a stateless native transform: data in, results and
//! rejections out, checkpoint markers aligned and forwarded.

use std::collections::VecDeque;

use crate::checkpoint::Alignment;
use crate::event::{Batch, Event, Marker};
use crate::metrics::StageMetrics;

use super::{BoxError, TransformContext};

/// What a stateless transform makes of a batch of events.
pub struct Processed {
    /// Events to send downstream.
    pub events: Vec<Event>,
    /// Events refused, with the reason (to the dead-letter output).
    pub rejected: Vec<(Event, String)>,
}

/// Runs `f` on every data batch of `ctx`'s input until the input ends. Call
/// it from a blocking thread. Acknowledgements follow the batch to both
/// outputs; checkpoint barriers are aligned across inputs (batches of an
/// input that is ahead wait) and forwarded with an empty snapshot.
pub fn run_stateless(
    ctx: TransformContext,
    handle: &tokio::runtime::Handle,
    mut f: impl FnMut(Vec<Event>) -> Processed,
) -> Result<(), BoxError> {
    let TransformContext {
        name,
        mut input,
        out,
        dead_letters,
        metrics,
        inputs,
        reporter,
        ..
    } = ctx;
    let mut align = Alignment::new(inputs);
    let mut backlog: VecDeque<Batch> = VecDeque::new();
    let mut ready: VecDeque<Batch> = VecDeque::new();
    loop {
        let batch = match ready.pop_front() {
            Some(b) => b,
            None => match input.blocking_recv() {
                Some(b) => b,
                None => return Ok(()),
            },
        };
        if align.blocks(batch.from) {
            backlog.push_back(batch);
            continue;
        }
        let completed = match batch.marker {
            None => {
                let n = batch.events.len() as u64;
                StageMetrics::add(&metrics.events_in, n);
                StageMetrics::add(&metrics.batches, 1);
                let started = std::time::Instant::now();
                let Processed { events, rejected } = f(batch.events);
                StageMetrics::add(&metrics.busy_ns, started.elapsed().as_nanos() as u64);
                dead_letters.blocking_send(handle, rejected, batch.acks.clone());
                if out
                    .blocking_send(handle, Batch::with_acks(events, batch.acks))
                    .is_err()
                {
                    tracing::debug!(stage = name, "downstream stopped");
                    return Ok(());
                }
                None
            }
            Some(Marker::Barrier { id, last }) => align.barrier(batch.from, id, last),
            Some(Marker::End) => {
                let (completed, all_ended) = align.end();
                if all_ended {
                    reporter.stage_done(0, &[]);
                    let _ = out.blocking_marker(handle, Marker::End);
                    return Ok(());
                }
                completed
            }
        };
        if let Some(Marker::Barrier { id, last }) = completed {
            reporter.snapshot(id, 0, &[]);
            if out
                .blocking_marker(handle, Marker::Barrier { id, last })
                .is_err()
            {
                return Ok(());
            }
            // What waited for the barrier goes first.
            for b in backlog.drain(..).rev() {
                ready.push_front(b);
            }
        }
    }
}
