//! What the Kafka source and sink share: broker addresses, client
//! settings, reachability checks and topic creation (here); the embedded
//! broker ([`embedded`]); producer delivery reports ([`delivery`]); and the
//! transaction of an exactly-once pipeline ([`exactly_once`]), its state
//! changelog ([`changelog`]) and its
//! one-process-per-instance lock ([`instance_lock`]).

pub mod changelog;
pub mod delivery;
pub mod embedded;
pub mod exactly_once;
pub mod instance_lock;
pub mod state_log;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Deserialize;

/// This process's lasting identity in its consumer groups (static
/// membership, KIP-345), shared with the Kafka sources through the
/// pipeline's extensions: `weir-<pipeline>-<instance_id>`. A source's member
/// id is this plus its stage name, so a restarted process takes its
/// partitions back without a rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMembership {
    /// `weir-<pipeline>-<instance_id>`.
    pub id: String,
}

/// Why a Kafka client, topic or the embedded broker could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    /// The embedded broker did not start.
    #[error("cannot start the embedded Kafka broker: {0}")]
    Embedded(String),
    /// librdkafka refused the client settings.
    #[error("invalid Kafka client settings: {0}")]
    Settings(#[source] KafkaError),
    /// No broker answered in time.
    #[error("cannot reach Kafka brokers {brokers} within {secs}s: {source}")]
    Unreachable {
        /// The brokers, as configured.
        brokers: String,
        /// How long it waited.
        secs: f64,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// A topic could not be created.
    #[error("cannot create topic `{topic}` on {brokers}: {reason}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// Where.
        brokers: String,
        /// The broker's or client's reason.
        reason: String,
    },
    /// Transactions cannot begin (exactly-once).
    #[error("{0}")]
    Transactions(String),
    /// A request to the cluster failed (metadata, committed offsets, fault
    /// injection).
    #[error("{0}")]
    Request(#[from] KafkaError),
}

pub use embedded::Embedded;

/// The value of `brokers` that selects the in-process broker.
pub const EMBEDDED: &str = "embedded";

/// A librdkafka setting given in `options`: strings, numbers and booleans
/// are all passed on as text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl std::fmt::Display for OptionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionValue::Text(s) => f.write_str(s),
            OptionValue::Int(i) => write!(f, "{i}"),
            OptionValue::Float(x) => write!(f, "{x}"),
            OptionValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Pass-through librdkafka settings (`options = { "fetch.max.bytes" = 10485760 }`).
pub type Options = BTreeMap<String, OptionValue>;

/// What a Kafka stage on `brokers` with librdkafka `options` brings to an
/// exactly-once pipeline's transaction.
pub fn transactional(brokers: &Option<String>, options: &Options) -> crate::stage::Transactional {
    crate::stage::Transactional::Kafka {
        brokers: brokers.clone(),
        client: options
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    }
}

/// Where a stage's brokers are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Brokers {
    /// The in-process broker.
    Embedded,
    /// A real cluster: `host:port[,host:port...]`.
    Cluster(String),
}

impl Brokers {
    /// From the `brokers` setting (absent means embedded).
    pub fn from_setting(setting: Option<&str>) -> Self {
        match setting.map(str::trim) {
            None | Some("") | Some(EMBEDDED) => Brokers::Embedded,
            Some(list) => Brokers::Cluster(list.to_owned()),
        }
    }

    /// The bootstrap list, starting the embedded broker if needed.
    pub fn bootstrap(&self) -> Result<String, KafkaSetupError> {
        match self {
            Brokers::Embedded => Ok(Embedded::get()?.bootstrap().to_owned()),
            Brokers::Cluster(list) => Ok(list.clone()),
        }
    }

    /// Topic `topic` on these brokers, as a resource stages read or write
    /// (a source waits for its own pipeline's writers of the same one).
    pub fn topic(&self, topic: &str) -> crate::stage::Resource {
        let cluster = match self {
            Brokers::Embedded => EMBEDDED,
            Brokers::Cluster(list) => list,
        };
        crate::stage::Resource::new("kafka", format!("{cluster}/{topic}"))
    }

    /// How to name these brokers in messages.
    pub fn describe(&self) -> String {
        match self {
            Brokers::Embedded => "the embedded broker".to_owned(),
            Brokers::Cluster(list) => list.clone(),
        }
    }
}

/// A client configuration: bootstrap servers, Weir's defaults, then the
/// user's `options` (which win).
pub fn client_config(
    bootstrap: &str,
    defaults: &[(&str, String)],
    options: &Options,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in defaults {
        c.set(*k, v);
    }
    for (k, v) in options {
        c.set(k, v.to_string());
    }
    c
}

/// Fails with a clear message when no broker answers within `timeout`.
pub fn check_reachable(
    config: &ClientConfig,
    brokers: &Brokers,
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let mut probe = config.clone();
    // A plain metadata probe: no group, no subscriptions.
    probe.remove("group.id");
    let consumer: BaseConsumer = probe.create().map_err(KafkaSetupError::Settings)?;
    consumer
        .fetch_metadata(None, timeout)
        .map(drop)
        .map_err(|source| KafkaSetupError::Unreachable {
            brokers: brokers.describe(),
            secs: timeout.as_secs_f64(),
            source,
        })
}

/// How to create a missing topic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicSpec {
    /// Partition count.
    pub partitions: i32,
    /// Replication factor.
    pub replication: i32,
    /// Topic-level settings (`max.message.bytes`, `min.insync.replicas`,
    /// `cleanup.policy`, ...).
    pub config: BTreeMap<String, String>,
}

impl TopicSpec {
    /// `partitions` partitions, `replication` replicas, default settings.
    pub fn new(partitions: i32, replication: i32) -> Self {
        TopicSpec {
            partitions,
            replication,
            config: BTreeMap::new(),
        }
    }
}

/// Creates `topic` as `spec` says unless it exists.
pub fn ensure_topic(
    config: &ClientConfig,
    brokers: &Brokers,
    topic: &str,
    spec: &TopicSpec,
    timeout: Duration,
) -> Result<(), KafkaSetupError> {
    let (partitions, replication) = (spec.partitions, spec.replication);
    if *brokers == Brokers::Embedded {
        return Embedded::get()?.ensure_topic(topic, partitions);
    }
    let failed = |reason: String| KafkaSetupError::CreateTopic {
        topic: topic.to_owned(),
        brokers: brokers.describe(),
        reason,
    };
    // A topic that exists is left alone: asking to create it anyway needs
    // the cluster's permission to create topics, which a user who was
    // given the topic may not have. A look-up that fails is no answer: the
    // creation below then reports what is wrong, naming the topic.
    if let Ok(Some(_)) = partition_count(config, topic, timeout) {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(KafkaSetupError::Settings)?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (k, v) in &spec.config {
        new = new.set(k, v);
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(e.to_string()))?;
    let results = rt
        .block_on(admin.create_topics([&new], &opts))
        .map_err(|e| failed(e.to_string()))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, "created Kafka topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(failed(code.to_string())),
        }
    }
    Ok(())
}

/// How many partitions `topic` has, if it exists.
pub fn partition_count(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Option<usize>, KafkaSetupError> {
    let mut probe = config.clone();
    probe.remove("group.id");
    let consumer: BaseConsumer = probe.create().map_err(KafkaSetupError::Settings)?;
    let md = consumer.fetch_metadata(Some(topic), timeout)?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|n| *n > 0))
}

/// Committed offsets of `group` for `topic`, for tests and tools.
pub fn committed_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<i64>, KafkaSetupError> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .map_err(KafkaSetupError::Settings)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
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
    fn brokers_default_to_embedded() {
        assert_eq!(Brokers::from_setting(None), Brokers::Embedded);
        assert_eq!(Brokers::from_setting(Some("embedded")), Brokers::Embedded);
        assert_eq!(
            Brokers::from_setting(Some("k1:9092,k2:9092")),
            Brokers::Cluster("k1:9092,k2:9092".into())
        );
    }

    #[test]
    fn options_win_over_defaults() {
        let mut opts = Options::new();
        opts.insert("acks".into(), OptionValue::Int(1));
        opts.insert("enable.idempotence".into(), OptionValue::Bool(false));
        let c = client_config("b:1", &[("acks", "all".into())], &opts);
        assert_eq!(c.get("acks"), Some("1"));
        assert_eq!(c.get("enable.idempotence"), Some("false"));
        assert_eq!(c.get("bootstrap.servers"), Some("b:1"));
    }
}
