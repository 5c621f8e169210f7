//! `type = "kafka"` source: a consumer-group member with at-least-once
//! delivery.
//!
//! ```toml
//! [sources.orders]
//! type = "kafka"
//! brokers = "k1:9092,k2:9092"   # or "embedded" (the default): the in-process broker
//! topics = ["orders"]           # or topic = "orders"
//! group = "weir-orders"         # default: weir-<stage name>
//! start = "earliest"            # where a new group starts: earliest | latest (default)
//! format = "json"               # bytes (default) | text (UTF-8 checked) | json (parsed to check)
//! commit_interval = "5s"        # how often stored offsets are committed
//! exit_at_end = false           # stop once every assigned partition is read to its end
//! options = { "fetch.max.bytes" = 52428800 }   # any librdkafka consumer setting
//! ```
//!
//! Each batch of records carries an acknowledgement. A record's offset is
//! *stored* only when every event derived from it has been delivered or
//! dead-lettered, in order per partition, and librdkafka commits stored
//! offsets every `commit_interval`, on rebalance and on shutdown. So a crash
//! re-reads whatever was not finished (duplicates possible, losses not).
//! When partitions are revoked, the consumer waits (up to
//! `rebalance_timeout`) for their in-flight records before giving them up.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;

use crate::checkpoint::Action;
use crate::config::units::Duration;
use crate::event::{Ack, AckTarget, Acks, Batch, Event, Marker, Origin};
use crate::kafka::{
    Brokers, Options, check_reachable, client_config, ensure_topic, partition_count,
};
use crate::metrics::StageMetrics;
use crate::topology::{BoxError, SourceContext};
use crate::util::now_ms;

/// Where a consumer group with no committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// The oldest retained record.
    Earliest,
    /// Only records produced from now on.
    #[default]
    Latest,
}

/// How record values are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    /// Any bytes.
    #[default]
    Bytes,
    /// UTF-8 text; other records go to the dead-letter output.
    Text,
    /// JSON documents; invalid ones go to the dead-letter output.
    Json,
}

/// Settings of the `kafka` source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port,...`, or `embedded` (default).
    #[serde(default)]
    pub brokers: Option<String>,
    /// Topics to subscribe to.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A single topic (same as `topics = [..]`).
    #[serde(default)]
    pub topic: Option<String>,
    /// Consumer group (default `weir-<stage>`).
    #[serde(default)]
    pub group: Option<String>,
    /// Where a new group starts.
    #[serde(default)]
    pub start: Start,
    /// Value check.
    #[serde(default)]
    pub format: ValueFormat,
    /// How often stored offsets are committed (default 5 s).
    #[serde(default)]
    pub commit_interval: Option<Duration>,
    /// Stop when every assigned partition has been read to its end.
    #[serde(default)]
    pub exit_at_end: bool,
    /// Partitions for topics the embedded broker creates (default 1).
    #[serde(default)]
    pub partitions: Option<i32>,
    /// How long to wait for a broker at start (default 10 s).
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    /// How long a revoke waits for in-flight records (default 10 s).
    #[serde(default)]
    pub rebalance_timeout: Option<Duration>,
    /// How long shutdown waits for in-flight records (default 30 s).
    #[serde(default)]
    pub drain_timeout: Option<Duration>,
    /// librdkafka consumer settings, passed through.
    #[serde(default)]
    pub options: Options,
}

/// A topic and partition.
type Tp = (Arc<str>, i32);

/// Offsets waiting for their batch to be acknowledged, per partition in
/// consumption order.
#[derive(Default)]
struct Tracker {
    next_id: u64,
    /// (topic, partition) -> (batch id, last offset, done) in order.
    parts: HashMap<Tp, VecDeque<(u64, i64, bool)>>,
    /// batch id -> partitions it touched.
    batches: HashMap<u64, Vec<Tp>>,
    failed_logged: u64,
}

impl Tracker {
    fn register(&mut self, ranges: HashMap<(Arc<str>, i32), i64>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut touched = Vec::with_capacity(ranges.len());
        for (tp, last) in ranges {
            self.parts
                .entry(tp.clone())
                .or_default()
                .push_back((id, last, false));
            touched.push(tp);
        }
        self.batches.insert(id, touched);
        id
    }

    fn outstanding(&self) -> usize {
        self.batches.len()
    }

    /// Marks batch `id` finished and stores, for each partition, the last
    /// offset of the longest finished prefix (librdkafka's
    /// `rd_kafka_offset_store` commits that offset + 1).
    fn resolve(&mut self, id: u64, delivered: bool, store: &mut dyn FnMut(&str, i32, i64)) {
        let Some(touched) = self.batches.remove(&id) else {
            return;
        };
        for tp in touched {
            let Some(queue) = self.parts.get_mut(&tp) else {
                continue;
            };
            if let Some(entry) = queue.iter_mut().find(|e| e.0 == id) {
                if delivered {
                    entry.2 = true;
                } else {
                    self.failed_logged += 1;
                    tracing::error!(
                        topic = &*tp.0,
                        partition = tp.1,
                        offset = entry.1,
                        "records were not delivered; offsets of this partition will not be committed past them until restart"
                    );
                }
            }
            let mut last_done = None;
            while let Some(&(_, last, true)) = queue.front() {
                last_done = Some(last);
                queue.pop_front();
            }
            if let Some(last) = last_done {
                store(&tp.0, tp.1, last);
            }
        }
    }

    fn pending_in(&self, revoked: &[(String, i32)]) -> bool {
        revoked.iter().any(|(t, p)| {
            self.parts
                .iter()
                .any(|((tt, pp), q)| &**tt == t && pp == p && !q.is_empty())
        })
    }

    fn forget(&mut self, revoked: &[(String, i32)]) {
        self.parts
            .retain(|(t, p), _| !revoked.iter().any(|(rt, rp)| &**t == rt && p == rp));
    }
}

struct AckChannel(Sender<(u64, bool)>);

impl AckTarget for AckChannel {
    fn resolved(&self, id: u64, delivered: bool) {
        let _ = self.0.send((id, delivered));
    }
}

/// Consumer context: rebalance handling with the tracker.
struct SourceCtx {
    stage: String,
    tracker: Arc<Mutex<Tracker>>,
    acks: Mutex<Receiver<(u64, bool)>>,
    rebalance_timeout: StdDuration,
    metrics: Arc<StageMetrics>,
    /// Set when the source stops after a final checkpoint: what is still
    /// in flight is in the checkpoint, so a revoke need not wait for it.
    abandon_in_flight: std::sync::atomic::AtomicBool,
}

impl SourceCtx {
    /// Applies acknowledgements that have arrived, waiting up to `wait` for
    /// the first one.
    fn apply_acks(&self, consumer: &BaseConsumer<SourceCtx>, wait: StdDuration) -> usize {
        let rx = self.acks.lock().expect("ack receiver lock");
        let mut tracker = self.tracker.lock().expect("tracker lock");
        let mut store = |t: &str, p: i32, o: i64| {
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

impl ConsumerContext for SourceCtx {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => {
                tracing::debug!(stage = self.stage, offsets = ?offsets.to_topic_map(), "offsets committed")
            }
            Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(stage = self.stage, error = %e, "offset commit failed"),
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked: Vec<(String, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                let deadline = if self
                    .abandon_in_flight
                    .load(std::sync::atomic::Ordering::Relaxed)
                {
                    Instant::now()
                } else {
                    Instant::now() + self.rebalance_timeout
                };
                while self
                    .tracker
                    .lock()
                    .expect("tracker lock")
                    .pending_in(&revoked)
                    && Instant::now() < deadline
                {
                    self.apply_acks(consumer, StdDuration::from_millis(20));
                }
                let abandoned = self
                    .tracker
                    .lock()
                    .expect("tracker lock")
                    .pending_in(&revoked);
                self.tracker.lock().expect("tracker lock").forget(&revoked);
                if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                    tracing::debug!(stage = self.stage, error = %e, "commit on revoke");
                }
                tracing::info!(
                    stage = self.stage,
                    partitions = revoked.len(),
                    abandoned_in_flight = abandoned,
                    "partitions revoked"
                );
            }
            Rebalance::Assign(tpl) => {
                StageMetrics::add(&self.metrics.rebalances, 1);
                tracing::info!(
                    stage = self.stage,
                    partitions = tpl.count(),
                    "partitions assigned"
                );
            }
            Rebalance::Error(e) => {
                tracing::warn!(stage = self.stage, error = %e, "rebalance error")
            }
        }
    }
}

impl KafkaSourceConfig {
    /// Every topic this source reads (`topics` and `topic`).
    pub fn topic_list(&self) -> Vec<String> {
        let mut t = self.topics.clone();
        if let Some(one) = &self.topic
            && !t.contains(one)
        {
            t.push(one.clone());
        }
        t
    }

    pub(crate) fn build(
        &self,
        ctx: SourceContext,
    ) -> Result<BoxFuture<'static, Result<(), BoxError>>, BoxError> {
        let topics = self.topic_list();
        if topics.is_empty() {
            return Err("set `topic` or `topics`".into());
        }
        let brokers = Brokers::from_setting(self.brokers.as_deref());
        let bootstrap = brokers.bootstrap()?;
        let group = self
            .group
            .clone()
            .unwrap_or_else(|| format!("weir-{}", ctx.name));
        let commit_ms = self
            .commit_interval
            .map_or(5000, |d| d.get().as_millis() as u64)
            .max(1);
        let defaults = [
            ("group.id", group.clone()),
            ("enable.auto.commit", "true".to_owned()),
            ("auto.commit.interval.ms", commit_ms.to_string()),
            ("enable.auto.offset.store", "false".to_owned()),
            (
                "auto.offset.reset",
                match self.start {
                    Start::Earliest => "earliest",
                    Start::Latest => "latest",
                }
                .to_owned(),
            ),
            ("enable.partition.eof", "false".to_owned()),
            ("client.id", format!("weir-{}", ctx.name)),
            // Consumer lag for /metrics comes from the client's statistics.
            ("statistics.interval.ms", "1000".to_owned()),
        ];
        let config = client_config(&bootstrap, &defaults, &self.options);
        let timeout = self
            .connect_timeout
            .map_or(StdDuration::from_secs(10), Duration::get);
        check_reachable(&config, &brokers, timeout)?;
        for t in &topics {
            if brokers == Brokers::Embedded {
                ensure_topic(
                    &config,
                    &brokers,
                    t,
                    self.partitions.unwrap_or(1),
                    1,
                    timeout,
                )?;
            } else if partition_count(&config, t, timeout)?.is_none() {
                tracing::warn!(
                    stage = ctx.name,
                    topic = t,
                    "topic does not exist yet; waiting for it to be created"
                );
            }
        }
        let (ack_tx, ack_rx) = channel();
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let context = SourceCtx {
            stage: ctx.name.clone(),
            tracker: tracker.clone(),
            acks: Mutex::new(ack_rx),
            rebalance_timeout: self
                .rebalance_timeout
                .map_or(StdDuration::from_secs(10), Duration::get),
            metrics: ctx.metrics.clone(),
            abandon_in_flight: std::sync::atomic::AtomicBool::new(false),
        };
        let consumer: BaseConsumer<SourceCtx> = config
            .create_with_context(context)
            .map_err(|e| format!("cannot create Kafka consumer: {e}"))?;
        if brokers == Brokers::Embedded && ctx.control.resume.is_some() {
            // The embedded broker starts empty in every process: saved
            // offsets point into topics that no longer exist.
            tracing::info!(
                stage = ctx.name,
                "embedded broker: checkpointed offsets do not apply; reading its topics from the start"
            );
        } else if let Some(resume) = ctx.control.resume.as_ref().and_then(|r| r.as_object()) {
            resume_from(&consumer, resume)
                .map_err(|e| format!("cannot resume from the checkpoint: {e}"))?;
            tracing::info!(
                stage = ctx.name,
                partitions = resume.len(),
                "kafka source resumes from the checkpoint offsets"
            );
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
        tracing::info!(stage = ctx.name, brokers = brokers.describe(), group, topics = ?topics, "kafka source subscribed");
        let worker = Worker {
            format: self.format,
            exit_at_end: self.exit_at_end,
            drain_timeout: self
                .drain_timeout
                .map_or(StdDuration::from_secs(30), Duration::get),
            ack_target: Arc::new(AckChannel(ack_tx)),
            tracker,
            topic_names: HashMap::new(),
            next_offsets: std::collections::BTreeMap::new(),
            checkpointed: false,
            sent_end: false,
        };
        let handle = tokio::runtime::Handle::current();
        Ok(async move {
            tokio::task::spawn_blocking(move || worker.run(consumer, ctx, handle))
                .await
                .map_err(|e| -> BoxError { format!("kafka source task failed: {e}").into() })?
        }
        .boxed())
    }
}

struct Worker {
    format: ValueFormat,
    exit_at_end: bool,
    drain_timeout: StdDuration,
    ack_target: Arc<AckChannel>,
    tracker: Arc<Mutex<Tracker>>,
    topic_names: HashMap<String, Arc<str>>,
    /// Next offset to read per partition (last taken + 1).
    next_offsets: std::collections::BTreeMap<(Arc<str>, i32), i64>,
    /// Stopped after the final checkpoint (which holds the positions).
    checkpointed: bool,
    /// Told downstream its input has ended (at the end of the data).
    sent_end: bool,
}

/// Records read but not yet sent downstream.
#[derive(Default)]
struct Pending {
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
        let value = Bytes::copy_from_slice(m.payload().unwrap_or_default());
        let mut event = Event::new(value, m.timestamp().to_millis().unwrap_or_else(now_ms));
        event.key = m.key().map(Bytes::copy_from_slice);
        if let Some(headers) = m.headers() {
            for h in headers.iter() {
                event.headers.push((
                    h.key.to_owned(),
                    Bytes::copy_from_slice(h.value.unwrap_or_default()),
                ));
            }
        }
        event.origin = Some(Origin::Kafka {
            topic,
            partition,
            offset,
        });
        let problem = match self.format {
            ValueFormat::Bytes => None,
            ValueFormat::Text => std::str::from_utf8(&event.value)
                .err()
                .map(|e| format!("value is not UTF-8 text: {e}")),
            ValueFormat::Json => serde_json::from_slice::<serde::de::IgnoredAny>(&event.value)
                .err()
                .map(|e| format!("invalid JSON: {e}")),
        };
        match problem {
            Some(reason) => pending.rejected.push((event, reason)),
            None => pending.events.push(event),
        }
    }

    fn flush(
        &mut self,
        ctx: &SourceContext,
        handle: &tokio::runtime::Handle,
        pending: &mut Pending,
    ) -> Result<(), crate::topology::Closed> {
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
    /// that fetch) and a fresh ListOffsets answer (which some
    /// Kafka-compatible brokers, tansu among them, give as the last
    /// batch's base offset + 1: too small for multi-record batches).
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

    fn run(
        mut self,
        consumer: BaseConsumer<SourceCtx>,
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
                            tracing::warn!(stage = ctx.name, error = %e, "kafka consumer error (retrying)");
                        }
                    }
                }
                if got >= batch_size {
                    break;
                }
                polled = consumer.poll(StdDuration::ZERO);
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
                    tracing::info!(
                        stage = ctx.name,
                        "every assigned partition read to its end; stopping"
                    );
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
    fn position(&self) -> serde_json::Value {
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
        consumer: BaseConsumer<SourceCtx>,
        ctx: SourceContext,
        handle: &tokio::runtime::Handle,
    ) -> Result<(), BoxError> {
        if let Ok(assignment) = consumer.assignment() {
            let _ = consumer.pause(&assignment);
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
            // The pipeline is stopping: tell downstream this input has
            // ended, so transforms flush their open windows now and the
            // acknowledgements of what they held arrive while we wait.
            let _ = ctx.out.blocking_marker(handle, Marker::End);
        }
        let SourceContext {
            name,
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
                stage = name,
                batches = outstanding,
                "stopping with undelivered records; they will be read again on restart"
            );
        }
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(stage = name, error = %e, "final offset commit failed"),
        }
        tracing::info!(
            stage = name,
            rebalances = StageMetrics::get(&consumer.context().metrics.rebalances),
            "kafka source stopped"
        );
        drop(consumer);
        Ok(())
    }
}

/// Commits checkpointed offsets (`{"topic/partition": offset}`) to the
/// group, so the subscription starts there.
fn resume_from(
    consumer: &BaseConsumer<SourceCtx>,
    offsets: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    let mut tpl = TopicPartitionList::new();
    for (tp, offset) in offsets {
        let (topic, partition) = tp
            .rsplit_once('/')
            .and_then(|(t, p)| p.parse::<i32>().ok().map(|p| (t, p)))
            .ok_or_else(|| format!("bad partition key {tp:?}"))?;
        let offset = offset
            .as_i64()
            .ok_or_else(|| format!("bad offset for {tp}"))?;
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|e| e.to_string())?;
    }
    if tpl.count() > 0 {
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
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

/// Committed offsets of `group` for `topic`, for tests and tools.
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<i64>, String> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer
        .committed_offsets(tpl, StdDuration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(got
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => -1,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stored_only_past_finished_prefixes() {
        let mut t = Tracker::default();
        let tp: (Arc<str>, i32) = ("t".into(), 0);
        let a = t.register([(tp.clone(), 9)].into());
        let b = t.register([(tp.clone(), 19)].into());
        let c = t.register([(tp.clone(), 29), (("t".into(), 1), 4)].into());
        let mut stored = Vec::new();
        t.resolve(b, true, &mut |topic, p, o| {
            stored.push((topic.to_owned(), p, o))
        });
        assert!(stored.is_empty(), "batch a is still in flight");
        t.resolve(c, true, &mut |topic, p, o| {
            stored.push((topic.to_owned(), p, o))
        });
        assert_eq!(stored, vec![("t".to_owned(), 1, 4)]);
        t.resolve(a, true, &mut |topic, p, o| {
            stored.push((topic.to_owned(), p, o))
        });
        assert_eq!(stored.last(), Some(&("t".to_owned(), 0, 29)));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn an_undelivered_batch_blocks_commits_past_it() {
        let mut t = Tracker::default();
        let tp: (Arc<str>, i32) = ("t".into(), 0);
        let a = t.register([(tp.clone(), 9)].into());
        let b = t.register([(tp.clone(), 19)].into());
        let mut stored = Vec::new();
        t.resolve(a, false, &mut |_, _, o| stored.push(o));
        t.resolve(b, true, &mut |_, _, o| stored.push(o));
        assert!(stored.is_empty());
        assert!(t.pending_in(&[("t".into(), 0)]));
        t.forget(&[("t".into(), 0)]);
        assert!(!t.pending_in(&[("t".into(), 0)]));
    }
}
