//! `type = "kafka"` sink: an idempotent producer whose delivery reports
//! acknowledge upstream.
//!
//! ```toml
//! [sinks.results]
//! type = "kafka"
//! inputs = ["count"]
//! brokers = "k1:9092"        # or "embedded" (the default)
//! topic = "result"
//! key = "sensor"             # a JSON field of the value, or "$key" for the input key
//! acks = "all"               # all (default) | 1 | 0
//! idempotent = true          # default when acks = "all"
//! compression = "lz4"        # none (default) | gzip | snappy | lz4 | zstd
//! create_topic = { partitions = 3, replication = 1 }   # create the topic at start if missing
//!                                   # (and `config = { "max.message.bytes" = "16777216" }`)
//! options = { "linger.ms" = 20 }                       # any librdkafka producer setting
//! ```
//!
//! Event headers become record headers; the event timestamp becomes the
//! record timestamp. A batch's acknowledgements are released when librdkafka
//! reports every record delivered. librdkafka retries transient failures
//! itself (for `message.timeout.ms`, 5 minutes by default); a record that
//! still fails, or is refused outright (for example larger than
//! `message.max.bytes`), goes to the dead-letter output with the reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use futures_util::FutureExt;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::event::{Acks, Event};
use crate::kafka::delivery::{Delivery, DeliveryContext, DeliveryTarget, Producer};
use crate::kafka::exactly_once::ExactlyOnce;
use crate::kafka::{
    Brokers, OptionValue, Options, TopicSpec, check_reachable, client_config, ensure_topic,
};
use crate::stage::{
    BoxError, Component, Item, Resource, Sink, SinkContext, StageTask, Transactional, run_blocking,
};
use crate::telemetry::StageMetrics;
use crate::units::Duration;

/// Producer acknowledgement level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum AckLevel {
    /// Every in-sync replica has the record.
    #[default]
    #[serde(rename = "all", alias = "-1")]
    All,
    /// The partition leader has it.
    #[serde(rename = "1")]
    Leader,
    /// Fire and forget.
    #[serde(rename = "0")]
    None,
}

/// Batch compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// librdkafka's name of the codec (`compression.type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// `create_topic = { partitions = N, replication = R, config = { ... } }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    /// Partition count.
    pub partitions: i32,
    /// Replication factor (default 1).
    #[serde(default = "one")]
    pub replication: i32,
    /// Topic settings, e.g. `{ "max.message.bytes" = "16777216",
    /// "min.insync.replicas" = "2" }`.
    #[serde(default)]
    pub config: BTreeMap<String, OptionValue>,
}

fn one() -> i32 {
    1
}

/// Settings of the `kafka` sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `host:port,...`, or `embedded` (default).
    #[serde(default)]
    pub brokers: Option<String>,
    /// Topic to write to.
    pub topic: String,
    /// Record key: a JSON field of the value, or `$key` for the event key.
    #[serde(default)]
    pub key: Option<String>,
    /// Acknowledgement level.
    #[serde(default)]
    pub acks: AckLevel,
    /// Idempotent producer (default: on when `acks = "all"`).
    #[serde(default)]
    pub idempotent: Option<bool>,
    /// Compression codec.
    #[serde(default)]
    pub compression: Compression,
    /// Create the topic at start if it is missing.
    #[serde(default)]
    pub create_topic: Option<CreateTopic>,
    /// How long to wait for a broker at start (default 10 s).
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    /// librdkafka producer settings, passed through.
    #[serde(default)]
    pub options: Options,
}

/// Delivery bookkeeping of one batch.
struct InFlight {
    id: u64,
    remaining: AtomicUsize,
    failed: Mutex<Vec<(usize, String)>>,
    /// A record of a transaction failed (refused at once, or not delivered):
    /// the transaction must abort.
    undelivered: AtomicBool,
    /// Where the batch's id goes once every record has its report.
    done: mpsc::UnboundedSender<u64>,
}

impl InFlight {
    fn fail(&self, index: usize, reason: String) {
        self.failed
            .lock()
            .expect("failures lock")
            .push((index, reason));
    }

    fn complete_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = self.done.send(self.id);
        }
    }
}

impl DeliveryTarget for InFlight {
    fn delivered(&self, index: usize, error: Option<&KafkaError>) {
        if let Some(e) = error {
            self.undelivered.store(true, Ordering::Release);
            self.fail(index, describe(e, None));
        }
        self.complete_one();
    }
}

/// The producer a sink writes with: its own, or (exactly-once) the
/// pipeline's transactional one.
enum Writer {
    Own(Producer),
    Transactional(Arc<ExactlyOnce>),
}

impl Writer {
    fn producer(&self) -> &Producer {
        match self {
            Writer::Own(p) => p,
            Writer::Transactional(t) => t.producer(),
        }
    }
}

fn describe(e: &KafkaError, size: Option<(usize, &str)>) -> String {
    match (e.rdkafka_error_code(), size) {
        (Some(RDKafkaErrorCode::MessageSizeTooLarge), Some((len, max))) => format!(
            "record of {len} bytes is larger than the producer's message.max.bytes ({max}); raise it with options = {{ \"message.max.bytes\" = ... }} (and the topic's max.message.bytes)"
        ),
        (Some(RDKafkaErrorCode::MessageSizeTooLarge), None) => {
            "record is larger than the broker or topic accepts (max.message.bytes)".to_owned()
        }
        _ => format!("kafka delivery failed: {e}"),
    }
}

/// Batches waiting for their delivery reports.
struct Waiting {
    events: Vec<Event>,
    acks: Acks,
    state: Arc<InFlight>,
    /// When producing began; the batch's time runs to its last report.
    started: std::time::Instant,
}

/// At most this many batches are waiting for delivery reports at once.
const MAX_IN_FLIGHT: usize = 64;

impl Sink for KafkaSinkConfig {
    fn build(&self, ctx: SinkContext) -> Result<StageTask, BoxError> {
        let brokers = Brokers::from_setting(self.brokers.as_deref());
        let bootstrap = brokers.bootstrap()?;
        let idempotent = match (self.idempotent, self.acks) {
            (Some(true), AckLevel::All) | (None, AckLevel::All) => true,
            (Some(true), _) => {
                return Err("idempotent = true requires acks = \"all\"".into());
            }
            (Some(false), _) | (None, _) => false,
        };
        let defaults = [
            (
                "acks",
                match self.acks {
                    AckLevel::All => "all",
                    AckLevel::Leader => "1",
                    AckLevel::None => "0",
                }
                .to_owned(),
            ),
            ("enable.idempotence", idempotent.to_string()),
            ("compression.type", self.compression.as_str().to_owned()),
            ("linger.ms", "5".to_owned()),
            ("client.id", format!("weir-{}", ctx.name)),
        ];
        let config = client_config(&bootstrap, &defaults, &self.options);
        let timeout = self
            .connect_timeout
            .map_or(StdDuration::from_secs(10), Duration::get);
        check_reachable(&config, &brokers, timeout)?;
        match (&self.create_topic, &brokers) {
            (Some(c), _) => {
                let spec = TopicSpec {
                    partitions: c.partitions,
                    replication: c.replication,
                    config: c
                        .config
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string()))
                        .collect(),
                };
                ensure_topic(&config, &brokers, &self.topic, &spec, timeout)?
            }
            (None, Brokers::Embedded) => ensure_topic(
                &config,
                &brokers,
                &self.topic,
                &TopicSpec::new(1, 1),
                timeout,
            )?,
            (None, _) => {}
        }
        let max_bytes = config
            .get("message.max.bytes")
            .unwrap_or("1000000")
            .to_owned();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let writer = match ctx.extensions.get::<ExactlyOnce>() {
            Some(txn) => Writer::Transactional(txn),
            None => Writer::Own(
                config
                    .create_with_context(DeliveryContext)
                    .map_err(|e| format!("cannot create Kafka producer: {e}"))?,
            ),
        };
        tracing::info!(
            brokers = brokers.describe(),
            topic = self.topic,
            transactional = matches!(writer, Writer::Transactional(_)),
            "kafka sink ready"
        );
        let run = Run {
            topic: self.topic.clone(),
            key: self.key.clone(),
            max_bytes,
            writer,
            done_tx,
        };
        Ok(run.run(ctx, done_rx).boxed())
    }
}

impl Component for KafkaSinkConfig {
    fn writes(&self) -> Vec<Resource> {
        vec![Brokers::from_setting(self.brokers.as_deref()).topic(&self.topic)]
    }

    fn transactional(&self) -> Transactional {
        if self.acks != AckLevel::All || self.idempotent == Some(false) {
            return Transactional::No(
                "transactions need acks = \"all\" and an idempotent producer".into(),
            );
        }
        // Under exactly-once every sink writes through the one
        // transactional producer: its settings are the sinks' (which
        // `weir validate` requires to agree).
        let mut t = crate::kafka::transactional(&self.brokers, &self.options);
        if let Transactional::Kafka { client, .. } = &mut t
            && self.compression != Compression::None
        {
            client.push(("compression.type".into(), self.compression.as_str().into()));
        }
        t
    }
}

struct Run {
    topic: String,
    key: Option<String>,
    max_bytes: String,
    writer: Writer,
    done_tx: mpsc::UnboundedSender<u64>,
}

impl Run {
    async fn run(
        self,
        mut ctx: SinkContext,
        mut done_rx: mpsc::UnboundedReceiver<u64>,
    ) -> Result<(), BoxError> {
        let mut waiting: HashMap<u64, Waiting> = HashMap::new();
        let mut next_id = 0u64;
        let mut input_open = true;
        // A completed checkpoint barrier waits until everything produced
        // before it is delivered; meanwhile no new input is taken. In a
        // transaction, the commit delivers it: the barrier is answered at
        // once and input waits for the commit instead.
        let mut barrier: Option<u64> = None;
        while input_open || !waiting.is_empty() {
            if let (Some(id), Writer::Transactional(txn)) = (barrier, &self.writer) {
                ctx.reporter.sink_ready(id);
                barrier = None;
                txn.committed(id).await?;
            }
            if let Some(id) = barrier
                && waiting.is_empty()
            {
                ctx.reporter.sink_ready(id);
                barrier = None;
            }
            tokio::select! {
                Some(id) = done_rx.recv() => self.complete(&ctx, &mut waiting, id).await?,
                batch = ctx.input.recv(), if input_open && barrier.is_none() && waiting.len() < MAX_IN_FLIGHT => match batch {
                    Some(Item::Barrier { id, .. }) => barrier = Some(id),
                    Some(Item::End | Item::Revoked { .. }) => {}
                    Some(Item::Batch(batch)) => {
                        StageMetrics::add(&ctx.metrics.events_in, batch.events.len() as u64);
                        let id = next_id;
                        next_id += 1;
                        let state = Arc::new(InFlight {
                            id,
                            remaining: AtomicUsize::new(batch.events.len() + 1),
                            failed: Mutex::new(Vec::new()),
                            undelivered: AtomicBool::new(false),
                            done: self.done_tx.clone(),
                        });
                        let started = std::time::Instant::now();
                        self.produce(&batch.events, &state).await;
                        waiting.insert(id, Waiting { events: batch.events, acks: batch.acks, state: state.clone(), started });
                        // The extra count taken above keeps an empty batch
                        // (or one whose records all failed at once) from
                        // completing before it is registered.
                        state.complete_one();
                    }
                    None => input_open = false,
                },
            }
        }
        if let Some(id) = barrier {
            ctx.reporter.sink_ready(id);
        }
        // A transaction's records are flushed by its commit.
        if let Writer::Own(producer) = self.writer {
            run_blocking(move || producer.flush(StdDuration::from_secs(30)))
                .await?
                .map_err(|e| format!("flushing the producer failed: {e}"))?;
        }
        Ok(())
    }

    async fn produce(&self, events: &[Event], state: &Arc<InFlight>) {
        for (index, event) in events.iter().enumerate() {
            let key: Option<Vec<u8>> = match self.key.as_deref() {
                None => None,
                Some("$key") => event.key.as_ref().map(|k| k.to_vec()),
                Some(field) => weir_plugin::json::field(&event.value, field)
                    .ok()
                    .flatten()
                    .map(|v| v.as_text().into_owned().into_bytes()),
            };
            let mut headers = OwnedHeaders::new_with_capacity(event.headers.len());
            for (name, value) in &event.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(&value[..]),
                });
            }
            let mut record: BaseRecord<'_, [u8], [u8], Box<Delivery>> = BaseRecord::with_opaque_to(
                &self.topic,
                Box::new(Delivery {
                    target: state.clone(),
                    index,
                }),
            )
            .payload(&event.value[..])
            .timestamp(event.timestamp_ms)
            .headers(headers);
            if let Some(k) = &key {
                record = record.key(&k[..]);
            }
            loop {
                match self.writer.producer().send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's queue is full: wait for deliveries.
                        record = back;
                        tokio::time::sleep(StdDuration::from_millis(5)).await;
                    }
                    Err((e, back)) => {
                        // In a transaction a refused record cannot be set
                        // aside: the transaction must not commit without it.
                        if matches!(self.writer, Writer::Transactional(_)) {
                            state.undelivered.store(true, Ordering::Release);
                        }
                        state.fail(
                            index,
                            describe(&e, Some((event.value.len(), &self.max_bytes))),
                        );
                        drop(back);
                        state.complete_one();
                        break;
                    }
                }
            }
        }
    }

    async fn complete(
        &self,
        ctx: &SinkContext,
        waiting: &mut HashMap<u64, Waiting>,
        id: u64,
    ) -> Result<(), BoxError> {
        let Some(w) = waiting.remove(&id) else {
            return Ok(());
        };
        // From produce to the last delivery report: latency, not busy time
        // (up to 64 batches are in flight at once).
        ctx.metrics.batch_time.observe(w.started.elapsed());
        let failed = std::mem::take(&mut *w.state.failed.lock().expect("failures lock"));
        if let (Writer::Transactional(txn), true, Some((_, reason))) = (
            &self.writer,
            w.state.undelivered.load(Ordering::Acquire),
            failed.first(),
        ) {
            // The transaction cannot commit; nothing of it becomes visible
            // and the next start resumes from the last commit.
            StageMetrics::add(&ctx.metrics.errors, failed.len() as u64);
            return Err(format!(
                "a record of the open transaction was not delivered; {}",
                txn.explain(reason)
            )
            .into());
        }
        let delivered = w.events.len() - failed.len();
        StageMetrics::add(&ctx.metrics.events_out, delivered as u64);
        if !failed.is_empty() {
            StageMetrics::add(&ctx.metrics.errors, failed.len() as u64);
            let mut events: Vec<Option<Event>> = w.events.into_iter().map(Some).collect();
            let dead: Vec<(Event, String)> = failed
                .into_iter()
                .filter_map(|(i, reason)| {
                    events
                        .get_mut(i)
                        .and_then(Option::take)
                        .map(|e| (e, reason))
                })
                .collect();
            ctx.dead_letters.send(dead, w.acks).await;
        }
        Ok(())
    }
}
