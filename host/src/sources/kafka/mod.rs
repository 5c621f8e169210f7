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

//!
//! Files: the settings and start-up are here; `offsets` tracks which
//! offsets may be committed; `group` is the consumer's context (rebalances,
//! acknowledgements, statistics); `consume` is the poll loop, checkpoints
//! and shutdown; `handover` gives revoked partitions away; `record` turns
//! a record into an event.

mod consume;
mod group;
mod handover;
mod offsets;
pub mod record;

use std::collections::HashMap;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use futures_util::FutureExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Deserialize;

pub use crate::kafka::committed_offsets;
use crate::kafka::exactly_once::ExactlyOnce;
use crate::kafka::state_log::{Changelog, StateLog};
use crate::kafka::{
    Brokers, Options, StaticMembership, TopicSpec, check_reachable, client_config, ensure_topic,
    partition_count,
};
use crate::stage::{
    BoxError, Component, Handover, Resource, Source, SourceContext, StageTask, Transactional,
    run_blocking,
};
use crate::units::Duration;
use consume::{Worker, parse_positions};
use group::{AckChannel, SourceCtx};
use offsets::Tracker;

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
}

impl Source for KafkaSourceConfig {
    fn build(&self, ctx: SourceContext) -> Result<StageTask, BoxError> {
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
        // Exactly-once: offsets commit in the pipeline's transaction, only
        // committed records are read, and the member keeps its identity
        // across restarts (static membership) so a restarted process takes
        // its partitions back at once.
        let txn = ctx.extensions.get::<ExactlyOnce>();
        let membership = ctx.extensions.get::<StaticMembership>();
        let handover = ctx.extensions.get::<Handover>();
        let mut defaults = vec![
            ("group.id", group.clone()),
            ("enable.auto.commit", txn.is_none().to_string()),
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
            // Partitions move one at a time and the others keep flowing
            // (KIP-429); a revoked partition is handed over first.
            (
                "partition.assignment.strategy",
                "cooperative-sticky".to_owned(),
            ),
            // Consumer lag for /metrics comes from the client's statistics.
            ("statistics.interval.ms", "1000".to_owned()),
        ];
        if txn.is_some() {
            defaults.push(("isolation.level", "read_committed".to_owned()));
        }
        if let Some(member) = &membership {
            defaults.push(("group.instance.id", format!("{}-{}", member.id, ctx.name)));
        }
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
                    &TopicSpec::new(self.partitions.unwrap_or(1), 1),
                    timeout,
                )?;
            } else if partition_count(&config, t, timeout)?.is_none() {
                tracing::warn!(
                    topic = t,
                    "topic does not exist yet; waiting for it to be created"
                );
            }
        }
        // At-least-once with tasks per partition: their state goes to the
        // changelog when their partition leaves this process.
        let state_log = match (ctx.extensions.get::<Changelog>(), &txn, &brokers) {
            (Some(changelog), None, Brokers::Cluster(_)) if handover.is_some() => {
                Some(Arc::new(StateLog::new(
                    (*changelog).clone(),
                    brokers.clone(),
                    bootstrap.clone(),
                    self.options
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string()))
                        .collect(),
                    &group,
                )))
            }
            _ => None,
        };
        if let Some(log) = &state_log
            && let Err(e) = log.prepare()
        {
            tracing::warn!(
                changelog = log.topic(),
                error = %e,
                "cannot prepare the changelog; partitions leaving this process will be read again by their next owner instead"
            );
        }
        let (ack_tx, ack_rx) = channel();
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let context = SourceCtx {
            tracker: tracker.clone(),
            acks: Mutex::new(ack_rx),
            rebalance_timeout: self
                .rebalance_timeout
                .map_or(StdDuration::from_secs(10), Duration::get),
            metrics: ctx.metrics.clone(),
            abandon_in_flight: std::sync::atomic::AtomicBool::new(false),
            resume: Mutex::new(HashMap::new()),
            transactional: txn.is_some(),
            revoked_mid_run: Mutex::new(Vec::new()),
            revoking: Mutex::new(Vec::new()),
            closing: std::sync::atomic::AtomicBool::new(false),
            txn: txn.clone(),
            handover: handover.clone(),
            state_log,
            assigned_at: Mutex::new(HashMap::new()),
            failed: Mutex::new(None),
        };
        let consumer: Arc<BaseConsumer<SourceCtx>> = Arc::new(
            config
                .create_with_context(context)
                .map_err(|e| format!("cannot create Kafka consumer: {e}"))?,
        );
        if let Some(txn) = &txn {
            // Offsets commit in the transaction under the group as it is
            // at the commit, the final one included (after this source has
            // stopped): the transaction keeps the consumer until it ends.
            let member = consumer.clone();
            txn.register_group(&ctx.name, move || member.group_metadata());
        }
        if brokers == Brokers::Embedded && ctx.control.resume.is_some() {
            // The embedded broker starts empty in every process: saved
            // offsets point into topics that no longer exist.
            tracing::info!(
                "embedded broker: checkpointed offsets do not apply; reading its topics from the start"
            );
        } else if let Some(resume) = ctx.control.resume.as_ref().and_then(|r| r.as_object()) {
            // Applied when the group assigns the partitions: committing
            // them to the group now would be refused while a killed
            // member of the previous run still holds them.
            let positions = parse_positions(resume)
                .map_err(|e| format!("cannot resume from the checkpoint: {e}"))?;
            *consumer.context().resume.lock().expect("resume lock") = positions;
            tracing::info!(
                partitions = resume.len(),
                "kafka source resumes from the checkpoint offsets"
            );
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
        tracing::info!(brokers = brokers.describe(), group, topics = ?topics, "kafka source subscribed");
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
            txn,
            release_on_stop: membership.is_some(),
            handover,
            rebalance_timeout: self
                .rebalance_timeout
                .map_or(StdDuration::from_secs(10), Duration::get),
        };
        let handle = tokio::runtime::Handle::current();
        Ok(async move { run_blocking(move || worker.run(consumer, ctx, handle)).await? }.boxed())
    }
}

impl Component for KafkaSourceConfig {
    fn reads(&self) -> Vec<Resource> {
        let brokers = Brokers::from_setting(self.brokers.as_deref());
        self.topic_list().iter().map(|t| brokers.topic(t)).collect()
    }

    fn transactional(&self) -> Transactional {
        crate::kafka::transactional(&self.brokers, &self.options)
    }

    fn input_partitions(&self) -> Option<Result<Vec<(String, i32)>, BoxError>> {
        let brokers = Brokers::from_setting(self.brokers.as_deref());
        if brokers == Brokers::Embedded {
            let n = self.partitions.unwrap_or(1);
            return Some(Ok(self.topic_list().into_iter().map(|t| (t, n)).collect()));
        }
        let count = || -> Result<Vec<(String, i32)>, BoxError> {
            let bootstrap = brokers.bootstrap()?;
            let config = client_config(&bootstrap, &[], &self.options);
            let timeout = self
                .connect_timeout
                .map_or(StdDuration::from_secs(10), Duration::get);
            let mut counts = Vec::new();
            for t in self.topic_list() {
                // A topic that does not exist yet is created by whoever
                // writes it first; it cannot be checked now.
                if let Some(n) = partition_count(&config, &t, timeout)? {
                    counts.push((t, n as i32));
                }
            }
            Ok(counts)
        };
        Some(count())
    }
}
