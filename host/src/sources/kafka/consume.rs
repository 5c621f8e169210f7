//! The consumer's loop: poll, check and batch records (one partition per
//! batch, so a partition's records and acknowledgements stay apart from
//! the others'), answer checkpoint requests, hand revoked partitions over,
//! stop at the end of the data (`exit_at_end`) or when told, and on the
//! way out wait for what is in flight and commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::ValueFormat;
use super::group::{AckChannel, SourceCtx};
use super::offsets::Tracker;
use crate::event::{Ack, Acks, Batch, Event, Marker};
use crate::kafka::exactly_once::ExactlyOnce;
use crate::stage::{Action, BoxError, Dropped, Handover, SourceContext};
use crate::telemetry::StageMetrics;

pub(super) struct Worker {
    pub(super) format: ValueFormat,
    pub(super) exit_at_end: bool,
    pub(super) drain_timeout: StdDuration,
    pub(super) ack_target: Arc<AckChannel>,
    pub(super) tracker: Arc<Mutex<Tracker>>,
    pub(super) topic_names: HashMap<String, Arc<str>>,
    /// Next offset to read per partition (last taken + 1).
    pub(super) next_offsets: std::collections::BTreeMap<(Arc<str>, i32), i64>,
    /// Stopped after the final checkpoint (which holds the positions).
    pub(super) checkpointed: bool,
    /// Told downstream its input has ended (at the end of the data).
    pub(super) sent_end: bool,
    /// Exactly-once: the pipeline's transaction.
    pub(super) txn: Option<Arc<ExactlyOnce>>,
    /// Where revoked partitions are announced to stages with tasks.
    pub(super) handover: Option<Arc<Handover>>,
    /// How long a hand-over may take before the source gives up.
    pub(super) rebalance_timeout: StdDuration,
    /// A static member (one of several processes): on shutdown, open
    /// windows are handed over with the partitions instead of flushed.
    pub(super) release_on_stop: bool,
}

/// How long the consumer's close (leaving the group, committing on
/// revoke) may take before the source ends without it; a normal close
/// takes well under a second.
const CLOSE_TIMEOUT: StdDuration = StdDuration::from_secs(15);

/// Records read but not yet sent downstream, by partition.
#[derive(Default)]
pub(super) struct Pending {
    parts: BTreeMap<i32, Part>,
}

/// One partition's share of [`Pending`].
#[derive(Default)]
struct Part {
    events: Vec<Event>,
    rejected: Vec<(Event, String)>,
    ranges: HashMap<(Arc<str>, i32), i64>,
}

impl Worker {
    fn topic(&mut self, name: &str) -> Arc<str> {
        if let Some(t) = self.topic_names.get(name) {
            return t.clone();
        }
        let t: Arc<str> = name.into();
        self.topic_names.insert(name.to_owned(), t.clone());
        t
    }

    fn take(&mut self, m: &BorrowedMessage<'_>, pending: &mut Pending) {
        let topic = self.topic(m.topic());
        let (partition, offset) = (m.partition(), m.offset());
        let pending = pending.parts.entry(partition).or_default();
        let last = pending
            .ranges
            .entry((topic.clone(), partition))
            .or_insert(offset);
        *last = (*last).max(offset);
        // What a checkpoint records: everything up to here is sent
        // downstream before the checkpoint's barrier.
        let next = self
            .next_offsets
            .entry((topic.clone(), partition))
            .or_insert(offset + 1);
        *next = (*next).max(offset + 1);
        match super::record::to_event(m, topic, self.format) {
            (event, None) => pending.events.push(event),
            (event, Some(reason)) => pending.rejected.push((event, reason)),
        }
    }

    pub(super) fn flush(
        &mut self,
        ctx: &SourceContext,
        handle: &tokio::runtime::Handle,
        pending: &mut Pending,
    ) -> Result<(), crate::stage::Closed> {
        for (_, mut part) in std::mem::take(&mut pending.parts) {
            self.flush_part(ctx, handle, &mut part)?;
        }
        Ok(())
    }

    fn flush_part(
        &mut self,
        ctx: &SourceContext,
        handle: &tokio::runtime::Handle,
        pending: &mut Part,
    ) -> Result<(), crate::stage::Closed> {
        if pending.ranges.is_empty() {
            return Ok(());
        }
        let id = self
            .tracker
            .lock()
            .expect("tracker lock")
            .register(std::mem::take(&mut pending.ranges));
        let acks = Acks::one(Ack::new(id, self.ack_target.clone()));
        let n = (pending.events.len() + pending.rejected.len()) as u64;
        StageMetrics::add(&ctx.metrics.events_in, n);
        if !pending.rejected.is_empty() {
            ctx.dead_letters.blocking_send(
                handle,
                std::mem::take(&mut pending.rejected),
                acks.clone(),
            );
        }
        let events = std::mem::take(&mut pending.events);
        ctx.out
            .blocking_send(handle, Batch::with_acks(events, acks))
    }

    /// Whether every assigned partition has been consumed to its end.
    ///
    /// The end is the larger of two high watermarks: the one librdkafka
    /// cached from its last fetch response (what it uses for
    /// end-of-partition events; it can be stale when records arrived after
    /// that fetch) and a fresh ListOffsets answer.
    fn at_end(consumer: &BaseConsumer<SourceCtx>) -> bool {
        let Ok(assignment) = consumer.assignment() else {
            return false;
        };
        if assignment.count() == 0 {
            return false;
        }
        let Ok(positions) = consumer.position() else {
            return false;
        };
        let mut committed: Option<TopicPartitionList> = None;
        positions.elements().iter().all(|e| {
            let Some((low, cached_high)) = cached_watermarks(consumer, e.topic(), e.partition())
            else {
                return false;
            };
            let queried_high = consumer
                .fetch_watermarks(e.topic(), e.partition(), StdDuration::from_secs(5))
                .map_or(cached_high, |(_, h)| h);
            let high = cached_high.max(queried_high);
            let position = match e.offset() {
                Offset::Offset(o) => o,
                _ => {
                    // Nothing consumed in this session: start from the
                    // group's committed offset, else the log start.
                    let c = committed.get_or_insert_with(|| {
                        consumer
                            .committed(StdDuration::from_secs(5))
                            .unwrap_or_else(|_| TopicPartitionList::new())
                    });
                    match c
                        .find_partition(e.topic(), e.partition())
                        .map(|c| c.offset())
                    {
                        Some(Offset::Offset(o)) => o,
                        _ => low,
                    }
                }
            };
            position >= high
        })
    }

    /// Runs the consumer until the source stops; however it stops, a
    /// revoke from then on (the consumer closing, wherever its last owner
    /// drops it) is finished at once instead of waiting for this loop.
    /// The source's handle is the consumer's last under at-least-once, so
    /// dropping it closes the consumer; that close may take at most
    /// [`CLOSE_TIMEOUT`]. Under exactly-once the transaction holds the
    /// consumer until it ends, and closes it then.
    pub fn run(
        self,
        consumer: Arc<BaseConsumer<SourceCtx>>,
        ctx: SourceContext,
        handle: tokio::runtime::Handle,
    ) -> Result<(), BoxError> {
        let last = consumer.clone();
        let result = self.run_loop(consumer, ctx, handle);
        let context = last.context();
        context
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Nothing acknowledges records any more.
        context
            .abandon_in_flight
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // librdkafka 2.12 can wait for ever in the close when the group's
        // assignment arrives during it (seen once in a local `scripts/test` run: "partitions
        // assigned" logged after "kafka source stopped", then nothing):
        // the source ends anyway, so the pipeline does. The offsets were
        // committed before (`finish`).
        match crate::stage::drop_within(last, CLOSE_TIMEOUT) {
            Dropped::Done => result,
            Dropped::TimedOut => {
                tracing::warn!(
                    timeout_s = CLOSE_TIMEOUT.as_secs(),
                    "the Kafka consumer did not close in time; leaving it to end on its own thread"
                );
                result
            }
            Dropped::Panicked => result.and(Err(
                "the Kafka consumer's close failed (a panic, printed above)".into(),
            )),
        }
    }

    fn run_loop(
        mut self,
        consumer: Arc<BaseConsumer<SourceCtx>>,
        mut ctx: SourceContext,
        handle: tokio::runtime::Handle,
    ) -> Result<(), BoxError> {
        let batch_size = ctx.batch_size;
        let mut pending = Pending::default();
        let mut errors_logged = 0u64;
        let mut last_end_check = Instant::now();
        loop {
            if let Some(action) = ctx.control.poll() {
                if self.flush(&ctx, &handle, &mut pending).is_err() {
                    break;
                }
                let last = matches!(action, Action::Checkpoint { last: true, .. });
                if ctx.act(&handle, action, || self.position()) {
                    self.checkpointed = last;
                    break;
                }
            }
            consumer.context().apply_acks(&consumer, StdDuration::ZERO);
            let mut polled = consumer.poll(StdDuration::from_millis(100));
            if let Some(reason) = consumer
                .context()
                .failed
                .lock()
                .expect("failed lock")
                .take()
            {
                return Err(reason.into());
            }
            if self.hand_over_revoked(&consumer, &mut ctx, &handle, &mut pending)? {
                break;
            }
            let revoked = std::mem::take(
                &mut *consumer
                    .context()
                    .revoked_mid_run
                    .lock()
                    .expect("revoked lock"),
            );
            if !revoked.is_empty() {
                return Err(format!(
                    "exactly-once: a rebalance took partitions {} from this process while their records were in the open transaction; stopping so that nothing is committed twice (start again to resume from the last commit; several processes on one exactly-once input are not supported yet)",
                    revoked
                        .iter()
                        .map(|(t, p)| format!("{t}/{p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
                .into());
            }
            let mut got = 0;
            while let Some(result) = polled {
                match result {
                    Ok(m) => {
                        self.take(&m, &mut pending);
                        got += 1;
                    }
                    Err(KafkaError::PartitionEOF(_)) => {}
                    Err(e) => {
                        StageMetrics::add(&ctx.metrics.errors, 1);
                        errors_logged += 1;
                        if errors_logged <= 20 || errors_logged.is_multiple_of(1000) {
                            tracing::warn!(error = %e, "kafka consumer error (retrying)");
                        }
                    }
                }
                if got >= batch_size {
                    break;
                }
                polled = consumer.poll(StdDuration::ZERO);
                if self.hand_over_revoked(&consumer, &mut ctx, &handle, &mut pending)? {
                    break;
                }
            }
            if got > 0 {
                if self.flush(&ctx, &handle, &mut pending).is_err() {
                    break;
                }
            } else if self.exit_at_end
                && last_end_check.elapsed() >= StdDuration::from_millis(300)
                // A topic this pipeline also writes is at its end only
                // once those writers have finished.
                && ctx.writers_done.as_ref().is_none_or(|t| t.is_cancelled())
            {
                last_end_check = Instant::now();
                if Self::at_end(&consumer) {
                    tracing::info!("every assigned partition read to its end; stopping");
                    ctx.finish(&handle, self.position());
                    self.sent_end = true;
                    break;
                }
            }
        }
        self.finish(consumer, ctx, &handle)
    }

    /// The next offset to read of every partition read so far, for a
    /// checkpoint: `{"topic/partition": offset}`.
    pub(super) fn position(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.next_offsets
                .iter()
                .map(|((t, p), o)| (format!("{t}/{p}"), serde_json::json!(o)))
                .collect(),
        )
    }

    /// Shutdown: stop reading, let downstream drain, store and commit what
    /// was delivered.
    fn finish(
        self,
        consumer: Arc<BaseConsumer<SourceCtx>>,
        ctx: SourceContext,
        handle: &tokio::runtime::Handle,
    ) -> Result<(), BoxError> {
        if let Ok(assignment) = consumer.assignment() {
            let _ = consumer.pause(&assignment);
        }
        consumer
            .context()
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if self.txn.is_some() {
            // Exactly-once: offsets commit in the transaction; a revoke
            // when the consumer closes has nothing to wait for.
            consumer
                .context()
                .abandon_in_flight
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        if self.checkpointed {
            // The final checkpoint holds the offsets and the state of
            // everything read; records still held downstream (open windows)
            // are in it. Nothing to wait for.
            consumer
                .context()
                .abandon_in_flight
                .store(true, std::sync::atomic::Ordering::Relaxed);
        } else if ctx.stopping.is_cancelled() && !self.sent_end {
            match (&self.handover, self.release_on_stop) {
                // One of several processes sharing the group: the open
                // windows are not complete, the partitions' next owner
                // completes them. Release the tasks (what they hold is
                // read again from the committed offsets).
                (Some(handover), true) => {
                    let list = consumer.assignment().unwrap_or_default();
                    let assigned = super::group::pairs(&list);
                    self.tracker
                        .lock()
                        .expect("tracker lock")
                        .releasing(&assigned);
                    let partitions = super::group::partition_numbers(&list);
                    // Lost partitions may be another owner's already.
                    let keeper = (!consumer.assignment_lost())
                        .then(|| self.state_keeper(&consumer, &assigned))
                        .flatten();
                    let kept = keeper.is_some();
                    let marker = handover.revoke(partitions, keeper);
                    let sent = ctx.out.blocking_marker(handle, marker).is_ok() && kept;
                    if let Marker::Revoked { generation } = marker {
                        self.settle_hand_over(&consumer, generation, &assigned, sent);
                    }
                }
                // The pipeline is stopping: tell downstream this input has
                // ended, so transforms flush their open windows now and the
                // acknowledgements of what they held arrive while we wait.
                _ => {
                    let _ = ctx.out.blocking_marker(handle, Marker::End);
                }
            }
        }
        let SourceContext {
            name: _,
            out,
            dead_letters,
            ..
        } = ctx;
        drop(out);
        drop(dead_letters);
        let deadline = if self.checkpointed {
            Instant::now()
        } else {
            Instant::now() + self.drain_timeout
        };
        while self.tracker.lock().expect("tracker lock").outstanding() > 0
            && Instant::now() < deadline
        {
            consumer
                .context()
                .apply_acks(&consumer, StdDuration::from_millis(50));
            // Keep servicing the group (heartbeats, callbacks) while waiting.
            let _ = consumer.poll(StdDuration::ZERO);
        }
        let outstanding = self.tracker.lock().expect("tracker lock").outstanding();
        if outstanding > 0 {
            tracing::warn!(
                batches = outstanding,
                "stopping with undelivered records; they will be read again on restart"
            );
        }
        if self.txn.is_none() {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(())
                | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => tracing::warn!(error = %e, "final offset commit failed"),
            }
        }
        tracing::info!(
            rebalances = StageMetrics::get(&consumer.context().metrics.rebalances),
            "kafka source stopped"
        );
        drop(consumer);
        Ok(())
    }
}

/// Reads checkpointed offsets (`{"topic/partition": offset}`).
pub(super) fn parse_positions(
    offsets: &serde_json::Map<String, serde_json::Value>,
) -> Result<HashMap<(String, i32), i64>, String> {
    offsets
        .iter()
        .map(|(tp, offset)| {
            let (topic, partition) = tp
                .rsplit_once('/')
                .and_then(|(t, p)| p.parse::<i32>().ok().map(|p| (t, p)))
                .ok_or_else(|| format!("bad partition key {tp:?}"))?;
            let offset = offset
                .as_i64()
                .ok_or_else(|| format!("bad offset for {tp}"))?;
            Ok(((topic.to_owned(), partition), offset))
        })
        .collect()
}

/// The low and high watermarks librdkafka last saw in fetch responses for a
/// partition, without a network round trip; `None` before the first fetch.
fn cached_watermarks(
    consumer: &BaseConsumer<SourceCtx>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime, the
    // topic is a NUL-terminated string that outlives the call, and the two
    // out-pointers point to live i64s.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}
