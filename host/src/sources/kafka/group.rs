//! The consumer's context: acknowledgements applied to the offset tracker,
//! rebalances, commit outcomes, and lag from the client's statistics.
//!
//! Under cooperative rebalancing (the default) a revoke is handed to the
//! poll loop (`consume::Worker::hand_over`), which commits the partitions'
//! work and releases their tasks before it unassigns them; an assign first
//! reads, under exactly-once, the state of the partitions' tasks from the
//! changelog into the pipeline's [`Handover`]. Under eager rebalancing a
//! revoke waits here for in-flight records and commits.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::offsets::Tracker;
use crate::event::AckTarget;
use crate::kafka::exactly_once::ExactlyOnce;
use crate::kafka::state_log::StateLog;
use crate::stage::Handover;
use crate::telemetry::StageMetrics;

/// How long fetching the committed offsets of assigned partitions may take
/// (a request to the group coordinator; not the hand-over's own time).
const FETCH_TIMEOUT: StdDuration = StdDuration::from_secs(10);

/// Where acknowledgements of batches arrive, by batch id.
pub(super) struct AckChannel(pub Sender<(u64, bool)>);

impl AckTarget for AckChannel {
    fn resolved(&self, id: u64, delivered: bool) {
        let _ = self.0.send((id, delivered));
    }
}

/// Consumer context: rebalance handling with the tracker.
pub(super) struct SourceCtx {
    pub(super) tracker: Arc<Mutex<Tracker>>,
    pub(super) acks: Mutex<Receiver<(u64, bool)>>,
    pub(super) rebalance_timeout: StdDuration,
    pub(super) metrics: Arc<StageMetrics>,
    /// Set when the source stops after a final checkpoint: what is still
    /// in flight is in the checkpoint, so a revoke need not wait for it.
    pub(super) abandon_in_flight: std::sync::atomic::AtomicBool,
    /// Checkpointed positions not yet applied: a partition assigned for
    /// the first time in this process starts there, whatever the group
    /// has committed (the restored state covers everything before it).
    /// Exactly-once: offsets are committed in the pipeline's transaction.
    pub(super) transactional: bool,
    /// Exactly-once: partitions a rebalance took away while the source
    /// was reading. Their records since the last commit are in the open
    /// transaction, and the next owner reads them again from the committed
    /// offsets, so this process must not commit them.
    pub(super) revoked_mid_run: Mutex<Vec<(String, i32)>>,
    pub(super) resume: Mutex<HashMap<(String, i32), i64>>,
    /// Cooperative revokes waiting for the poll loop to hand the
    /// partitions over.
    pub(super) revoking: Mutex<Vec<TopicPartitionList>>,
    /// Set when the consumer is closing: revokes are finished at once.
    pub(super) closing: std::sync::atomic::AtomicBool,
    /// Exactly-once: the transaction, whose changelog holds the state of
    /// assigned partitions.
    pub(super) txn: Option<Arc<ExactlyOnce>>,
    /// Where state of assigned partitions goes for the stages' tasks.
    pub(super) handover: Option<Arc<Handover>>,
    /// At-least-once: the changelog tasks' state is handed over through.
    pub(super) state_log: Option<Arc<StateLog>>,
    /// At-least-once: the offset each assigned partition started at (its
    /// position when nothing of it has been read since).
    pub(super) assigned_at: Mutex<HashMap<(String, i32), i64>>,
    /// Why the state of an assigned partition could not be read.
    pub(super) failed: Mutex<Option<String>>,
}

impl SourceCtx {
    /// Applies acknowledgements until no record of `partitions` is in
    /// flight, or until `deadline`.
    pub fn wait_for_in_flight(
        &self,
        consumer: &BaseConsumer<SourceCtx>,
        partitions: &[(String, i32)],
        deadline: Instant,
    ) {
        while self
            .tracker
            .lock()
            .expect("tracker lock")
            .pending_in(partitions)
            && Instant::now() < deadline
        {
            self.apply_acks(consumer, StdDuration::from_millis(20));
        }
    }

    /// Applies acknowledgements that have arrived, waiting up to `wait` for
    /// the first one.
    pub fn apply_acks(&self, consumer: &BaseConsumer<SourceCtx>, wait: StdDuration) -> usize {
        let rx = self.acks.lock().expect("ack receiver lock");
        let mut tracker = self.tracker.lock().expect("tracker lock");
        let transactional = self.transactional;
        let mut store = |t: &str, p: i32, o: i64| {
            // Exactly-once: offsets commit in the transaction, not here.
            if transactional {
                return;
            }
            if let Err(e) = consumer.store_offset(t, p, o) {
                tracing::debug!(topic = t, partition = p, offset = o, error = %e, "cannot store offset (partition no longer assigned?)");
            }
        };
        let mut n = 0;
        if !wait.is_zero() {
            match rx.recv_timeout(wait) {
                Ok((id, ok)) => {
                    tracker.resolve(id, ok, &mut store);
                    n += 1;
                }
                Err(_) => return 0,
            }
        }
        while let Ok((id, ok)) = rx.try_recv() {
            tracker.resolve(id, ok, &mut store);
            n += 1;
        }
        n
    }
}

impl ClientContext for SourceCtx {
    fn stats(&self, stats: rdkafka::Statistics) {
        let mut lag: Vec<(String, i32, i64)> = stats
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                t.partitions
                    .values()
                    // -1 is librdkafka's internal "unassigned" partition;
                    // a lag of -1 means not known yet.
                    .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                    .map(move |p| (topic.clone(), p.partition, p.consumer_lag))
            })
            .collect();
        lag.sort();
        *self.metrics.lag.lock().expect("lag lock") = lag;
    }
}

/// The (topic, partition) pairs of a list.
pub(super) fn pairs(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// The partition numbers in a list, sorted, each once.
pub(super) fn partition_numbers(tpl: &TopicPartitionList) -> Vec<i32> {
    let mut partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
    partitions.sort_unstable();
    partitions.dedup();
    partitions
}

/// `topic/partition, ...` of a partition list, for logs.
pub(super) fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SourceCtx {
    /// Exactly-once: reads the state the tasks of newly assigned
    /// partitions start from. The committed offsets are fetched first:
    /// read_committed, librdkafka waits for a previous owner's transaction
    /// to settle, and that transaction wrote the state with the offsets.
    fn restore_state(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        if let (Some(log), Some(handover)) = (&self.state_log, &self.handover) {
            return self.restore_handed_over(consumer, tpl, log, handover);
        }
        let (Some(txn), Some(handover)) = (&self.txn, &self.handover) else {
            return;
        };
        let partitions = partition_numbers(tpl);
        if partitions.is_empty() {
            return;
        }
        let started = Instant::now();
        if let Err(e) = consumer.committed_offsets(tpl.clone(), FETCH_TIMEOUT) {
            tracing::warn!(error = %e, "cannot fetch the committed offsets of assigned partitions");
        }
        match txn.restore_tasks(&partitions) {
            Ok(states) => {
                handover.clear(&partitions);
                let (tasks, mut bytes) = (states.len(), 0);
                for (stage, partition, saved) in states {
                    bytes += saved.state.len() / 2;
                    handover.restore(&stage, partition, saved);
                }
                tracing::info!(
                    partitions = ?partitions,
                    tasks,
                    state_bytes = bytes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "state of assigned partitions read from the changelog"
                );
            }
            Err(e) => {
                *self.failed.lock().expect("failed lock") = Some(format!(
                    "cannot read the state of assigned partitions {partitions:?} from the changelog: {e}"
                ));
            }
        }
    }

    /// At-least-once: the state the tasks of newly assigned partitions
    /// start from, where the changelog has a hand-over whose positions are
    /// the offsets the partitions start at (the state reflects exactly the
    /// records before them). An older hand-over is not used: the committed offsets
    /// stay behind what tasks hold, so reading from them rebuilds it.
    fn restore_handed_over(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
        log: &StateLog,
        handover: &Handover,
    ) {
        let partitions = partition_numbers(tpl);
        if partitions.is_empty() {
            return;
        }
        let started = Instant::now();
        let committed: HashMap<(String, i32), i64> = match consumer
            .committed_offsets(tpl.clone(), FETCH_TIMEOUT)
        {
            Ok(list) => list
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                *self.failed.lock().expect("failed lock") = Some(format!(
                    "cannot fetch the committed offsets of assigned partitions {partitions:?}: {e}"
                ));
                return;
            }
        };
        // Where each partition starts: a checkpointed offset put into the
        // assignment, else the committed one.
        let starts: HashMap<(String, i32), i64> = tpl
            .elements()
            .iter()
            .filter_map(|e| {
                let key = (e.topic().to_owned(), e.partition());
                match e.offset() {
                    Offset::Offset(o) => Some((key, o)),
                    _ => committed.get(&key).map(|c| (key, *c)),
                }
            })
            .collect();
        self.assigned_at
            .lock()
            .expect("assigned lock")
            .extend(starts.clone());
        let states = match log.read(&partitions) {
            Ok(states) => states,
            Err(e) => {
                *self.failed.lock().expect("failed lock") = Some(format!(
                    "cannot read the state of assigned partitions {partitions:?} from changelog {}: {e}",
                    log.topic()
                ));
                return;
            }
        };
        handover.clear(&partitions);
        let (mut tasks, mut bytes, mut older) = (0, 0, 0);
        let elements = tpl.elements();
        for (stage, partition, saved, positions) in states {
            let topics: Vec<&str> = elements
                .iter()
                .filter(|e| e.partition() == partition)
                .map(|e| e.topic())
                .collect();
            let current = topics.iter().all(|t| {
                starts
                    .get(&((*t).to_owned(), partition))
                    .is_some_and(|c| positions.get(*t) == Some(c))
            });
            if current {
                tasks += 1;
                bytes += saved.state.len() / 2;
                handover.restore(&stage, partition, saved);
            } else {
                older += 1;
                tracing::debug!(
                    stage,
                    partition,
                    ?positions,
                    "hand-over state older than the committed offsets; not used"
                );
            }
        }
        tracing::info!(
            partitions = ?partitions,
            tasks,
            state_bytes = bytes,
            older_unused = older,
            took_ms = started.elapsed().as_millis() as u64,
            "state of assigned partitions read from the changelog"
        );
    }

    /// Sets the start offset of newly assigned partitions that have a
    /// checkpointed position.
    fn start_at_checkpoint(&self, tpl: &mut TopicPartitionList) {
        let mut resume = self.resume.lock().expect("resume lock");
        if resume.is_empty() {
            return;
        }
        for (topic, partition) in pairs(tpl) {
            if let Some(offset) = resume.remove(&(topic.clone(), partition)) {
                match tpl.set_partition_offset(&topic, partition, Offset::Offset(offset)) {
                    Ok(()) => tracing::info!(
                        topic,
                        partition,
                        offset,
                        "partition starts at its checkpointed offset"
                    ),
                    Err(e) => {
                        tracing::warn!(topic, partition, error = %e, "cannot start at the checkpointed offset")
                    }
                }
            }
        }
    }
}

impl ConsumerContext for SourceCtx {
    /// librdkafka's default strategy (assign or unassign, eager or
    /// cooperative), with checkpointed positions put into the assignment.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // An assignment that arrives while the consumer closes is
                // turned into an unassignment by librdkafka: nothing will
                // be read, so there is no state to restore for it.
                if !self.closing.load(std::sync::atomic::Ordering::Relaxed) {
                    self.start_at_checkpoint(tpl);
                    self.restore_state(consumer, tpl);
                }
                self.pre_rebalance(consumer, &Rebalance::Assign(tpl));
                if cooperative {
                    // A partition this process paused when it gave it away
                    // stays paused in the client until resumed.
                    consumer
                        .incremental_assign(tpl)
                        .and_then(|()| consumer.resume(tpl))
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
                if cooperative && !self.closing.load(std::sync::atomic::Ordering::Relaxed) =>
            {
                // The poll loop commits what was read from them and
                // releases their tasks, then unassigns them. Nothing more
                // is fetched from them meanwhile.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::debug!(error = %e, "pausing revoked partitions");
                }
                tracing::info!(
                    partitions = %describe(tpl),
                    lost = consumer.assignment_lost(),
                    "partitions revoked; handing them over"
                );
                self.revoking
                    .lock()
                    .expect("revoking lock")
                    .push(tpl.clone());
                Ok(())
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.pre_rebalance(consumer, &Rebalance::Revoke(tpl));
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                let code: RDKafkaErrorCode = other.into();
                self.pre_rebalance(consumer, &Rebalance::Error(KafkaError::Rebalance(code)));
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot apply the rebalance");
        }
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => {
                tracing::debug!(offsets = ?offsets.to_topic_map(), "offsets committed")
            }
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, "offset commit failed"),
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked = pairs(tpl);
                let deadline = if self
                    .abandon_in_flight
                    .load(std::sync::atomic::Ordering::Relaxed)
                {
                    Instant::now()
                } else {
                    Instant::now() + self.rebalance_timeout
                };
                self.wait_for_in_flight(consumer, &revoked, deadline);
                let abandoned = self
                    .tracker
                    .lock()
                    .expect("tracker lock")
                    .pending_in(&revoked);
                self.tracker.lock().expect("tracker lock").forget(&revoked);
                if self.transactional
                    && !self
                        .abandon_in_flight
                        .load(std::sync::atomic::Ordering::Relaxed)
                {
                    self.revoked_mid_run
                        .lock()
                        .expect("revoked lock")
                        .extend(revoked.iter().cloned());
                }
                if !self.transactional
                    && let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
                {
                    tracing::debug!(error = %e, "commit on revoke");
                }
                tracing::info!(
                    partitions = revoked.len(),
                    abandoned_in_flight = abandoned,
                    "partitions revoked"
                );
            }
            Rebalance::Assign(tpl) => {
                StageMetrics::add(&self.metrics.rebalances, 1);
                tracing::info!(partitions = tpl.count(), "partitions assigned");
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error")
            }
        }
    }
}
