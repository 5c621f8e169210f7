//! Partitions leaving this process, from the poll loop: what was read
//! from them goes downstream, exactly-once a checkpoint (one transaction)
//! commits it with their tasks' state and offsets, at-least-once their
//! tasks keep their state in the changelog (or let go of what they hold)
//! and the offsets of what was delivered are committed; then they are
//! unassigned.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};

use super::consume::{Pending, Worker};
use super::group::SourceCtx;
use crate::checkpoint::SavedStage;
use crate::event::{AckTarget, Marker};
use crate::kafka::exactly_once::RESUME_HINT;
use crate::kafka::state_log::Positions;
use crate::stage::{Action, BoxError, SourceContext, StateKeeper};

impl Worker {
    /// Hands over the partitions a cooperative rebalance revoked: what was
    /// read from them goes downstream first; under exactly-once a
    /// checkpoint (one transaction) commits it with their tasks' state and
    /// offsets, at-least-once their tasks are released and the offsets of
    /// what was delivered are committed; then they are unassigned. True
    /// when the source must stop (a final checkpoint came instead).
    pub(super) fn hand_over_revoked(
        &mut self,
        consumer: &BaseConsumer<SourceCtx>,
        ctx: &mut SourceContext,
        handle: &tokio::runtime::Handle,
        pending: &mut Pending,
    ) -> Result<bool, BoxError> {
        let lists =
            std::mem::take(&mut *consumer.context().revoking.lock().expect("revoking lock"));
        for tpl in lists {
            if self.hand_over(consumer, ctx, handle, pending, &tpl)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One revoke: the work of [`Worker::hand_over_work`], then the
    /// partitions are unassigned whatever it gave (the group waits for
    /// that, and so does closing the consumer).
    fn hand_over(
        &mut self,
        consumer: &BaseConsumer<SourceCtx>,
        ctx: &mut SourceContext,
        handle: &tokio::runtime::Handle,
        pending: &mut Pending,
        tpl: &TopicPartitionList,
    ) -> Result<bool, BoxError> {
        let started = Instant::now();
        let result = self.hand_over_work(consumer, ctx, handle, pending, tpl);
        if let Err(e) = consumer.incremental_unassign(tpl) {
            tracing::warn!(error = %e, "cannot unassign revoked partitions");
        }
        if matches!(result, Ok(false)) {
            tracing::info!(
                partitions = %super::group::describe(tpl),
                took_ms = started.elapsed().as_millis() as u64,
                "partitions handed over"
            );
        }
        result
    }

    fn hand_over_work(
        &mut self,
        consumer: &BaseConsumer<SourceCtx>,
        ctx: &mut SourceContext,
        handle: &tokio::runtime::Handle,
        pending: &mut Pending,
        tpl: &TopicPartitionList,
    ) -> Result<bool, BoxError> {
        let revoked = super::group::pairs(tpl);
        let partitions = super::group::partition_numbers(tpl);
        let lost = consumer.assignment_lost();
        if self.flush(ctx, handle, pending).is_err() {
            return Ok(true);
        }
        // The tasks of these partitions are released: records they hold
        // come back undelivered, on purpose.
        self.tracker
            .lock()
            .expect("tracker lock")
            .releasing(&revoked);
        // Lost partitions may be another owner's already: no state of
        // theirs is written from here.
        let keeper = (!lost)
            .then(|| self.state_keeper(consumer, &revoked))
            .flatten();
        let kept = keeper.is_some();
        let marker = self
            .handover
            .as_ref()
            .map(|h| h.revoke(partitions.clone(), keeper));
        if let Some(txn) = self.txn.clone() {
            if lost {
                return Err(format!(
                    "exactly-once: partitions {} were taken from this process without a hand-over (its group session expired: was it paused or cut off?); stopping, so that nothing it read since the last commit is committed twice; {RESUME_HINT}",
                    super::group::describe(tpl)
                )
                .into());
            }
            let Some(id) = self.checkpoint_now(ctx, handle)? else {
                return Ok(true);
            };
            if let Some(marker) = marker {
                let _ = ctx.out.blocking_marker(handle, marker);
            }
            let limit = self.rebalance_timeout.max(StdDuration::from_secs(30));
            match handle.block_on(tokio::time::timeout(limit, txn.committed(id))) {
                Ok(Ok(())) => {}
                Ok(Err(reason)) => return Err(reason.into()),
                Err(_) => {
                    return Err(format!(
                        "exactly-once: the hand-over commit of partitions {} did not finish within {} s; stopping",
                        super::group::describe(tpl),
                        limit.as_secs()
                    )
                    .into());
                }
            }
            tracing::debug!(checkpoint = id, "hand-over committed");
            txn.forget_tasks(&partitions);
            self.tracker.lock().expect("tracker lock").forget(&revoked);
        } else {
            match marker {
                Some(marker @ Marker::Revoked { generation }) => {
                    let sent = ctx.out.blocking_marker(handle, marker).is_ok();
                    self.settle_hand_over(consumer, generation, &revoked, sent && kept);
                }
                Some(marker) => {
                    let _ = ctx.out.blocking_marker(handle, marker);
                }
                None => {}
            }
            consumer.context().wait_for_in_flight(
                consumer,
                &revoked,
                Instant::now() + self.rebalance_timeout,
            );
            self.tracker.lock().expect("tracker lock").forget(&revoked);
            consumer
                .context()
                .assigned_at
                .lock()
                .expect("assigned lock")
                .retain(|tp, _| !revoked.contains(tp));
            if !lost && let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "commit on revoke");
            }
        }
        self.next_offsets
            .retain(|(t, p), _| !revoked.iter().any(|(rt, rp)| &**t == rt && p == rp));
        Ok(false)
    }

    /// At-least-once: waits until every record read from `partitions` is
    /// delivered or held by a task that parked it with its state kept
    /// (revocation `generation`), then settles the parked records: as
    /// delivered when all the others were delivered (the offsets reach the
    /// position the state was written with), else as failed (the offsets
    /// stay behind them and the next owner reads them again). Within the
    /// rebalance timeout.
    pub(super) fn settle_hand_over(
        &self,
        consumer: &BaseConsumer<SourceCtx>,
        generation: u64,
        partitions: &[(String, i32)],
        sent: bool,
    ) {
        let Some(handover) = &self.handover else {
            return;
        };
        if !sent {
            // No state was kept (nothing is parked; the caller waits as
            // before), or the marker never reached the tasks.
            handover.settle(generation, false);
            return;
        }
        let deadline = Instant::now() + self.rebalance_timeout;
        let target: &dyn AckTarget = &*self.ack_target;
        let waiting = || {
            let parked = handover.parked_ids(generation, target);
            self.tracker
                .lock()
                .expect("tracker lock")
                .pending_except(partitions, &parked)
        };
        while waiting() && Instant::now() < deadline {
            consumer
                .context()
                .apply_acks(consumer, StdDuration::from_millis(20));
        }
        let clean = !waiting()
            && !self
                .tracker
                .lock()
                .expect("tracker lock")
                .failed_in(partitions);
        if !clean {
            tracing::warn!(
                partitions = ?partitions,
                "not everything read from the partitions was delivered in time; their next owner reads the held records again instead of using the state written for them"
            );
        }
        handover.settle(generation, clean);
    }

    /// At-least-once with a changelog: where the tasks of `partitions`
    /// (leaving this process) keep their state, with the position of each
    /// partition (the next offset to read, or where it was assigned when
    /// nothing of it was read since). It refuses once the hand-over's time
    /// is up: the partition may have a new owner then.
    pub(super) fn state_keeper(
        &self,
        consumer: &BaseConsumer<SourceCtx>,
        partitions: &[(String, i32)],
    ) -> Option<StateKeeper> {
        let log = consumer.context().state_log.clone()?;
        if self.txn.is_some() {
            return None;
        }
        let assigned_at = consumer
            .context()
            .assigned_at
            .lock()
            .expect("assigned lock")
            .clone();
        let mut positions: BTreeMap<i32, Positions> = BTreeMap::new();
        let mut unknown: Vec<i32> = Vec::new();
        for (topic, partition) in partitions {
            let next = self
                .next_offsets
                .iter()
                .find(|((t, p), _)| &**t == topic && p == partition)
                .map(|(_, o)| *o)
                .or_else(|| assigned_at.get(&(topic.clone(), *partition)).copied());
            match next {
                Some(offset) => {
                    positions
                        .entry(*partition)
                        .or_default()
                        .insert(topic.clone(), offset);
                }
                None => unknown.push(*partition),
            }
        }
        for p in unknown {
            positions.remove(&p);
        }
        let deadline = Instant::now() + self.rebalance_timeout;
        Some(Arc::new(
            move |stage: &str, partition: i32, saved: &SavedStage| {
                if Instant::now() > deadline {
                    return Err("the hand-over's time (rebalance_timeout) is up".into());
                }
                let at = positions
                    .get(&partition)
                    .ok_or_else(|| format!("the position of partition {partition} is not known"))?;
                log.write(stage, partition, saved, at)
            },
        ))
    }

    /// Asks for a checkpoint now and carries it out; its id, or `None` when
    /// the source must stop (the pipeline's final checkpoint came).
    fn checkpoint_now(
        &mut self,
        ctx: &mut SourceContext,
        handle: &tokio::runtime::Handle,
    ) -> Result<Option<u64>, BoxError> {
        ctx.control.request_checkpoint();
        let deadline = Instant::now() + self.rebalance_timeout.max(StdDuration::from_secs(30));
        loop {
            if let Some(action) = ctx.control.poll() {
                let last = matches!(action, Action::Checkpoint { last: true, .. });
                if ctx.act(handle, action, || self.position()) {
                    self.checkpointed = last;
                    return Ok(None);
                }
                if let Action::Checkpoint { id, .. } = action {
                    return Ok(Some(id));
                }
            }
            if Instant::now() > deadline {
                return Err("exactly-once: no checkpoint came to hand revoked partitions over (is a reload holding checkpoints?); stopping".into());
            }
            std::thread::sleep(StdDuration::from_millis(2));
        }
    }
}
