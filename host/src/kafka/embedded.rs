//! `brokers = "embedded"` (also the default when `brokers` is omitted):
//! librdkafka's mock cluster inside the `weir` process, shared by every
//! Kafka stage of the process. It speaks the Kafka protocol on loopback
//! ports, keeps everything **in memory, in this one process**, and vanishes
//! when `weir` exits: it is for demos and tests, not for data you need to
//! keep.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaSetupError;

/// The in-process broker.
pub struct Embedded {
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
    topics: Mutex<BTreeMap<String, i32>>,
}

// SAFETY: the mock cluster handle is only used through librdkafka's mock
// API, which is thread-safe (operations are queued to the cluster's own
// thread); the owning client is never used directly.
unsafe impl Send for Embedded {}
// SAFETY: as above.
unsafe impl Sync for Embedded {}

static EMBEDDED_CLUSTER: OnceLock<Result<Embedded, String>> = OnceLock::new();

impl Embedded {
    /// The process-wide embedded broker, started on first use (3 brokers, so
    /// topics can have several partitions with distinct leaders).
    pub fn get() -> Result<&'static Embedded, KafkaSetupError> {
        EMBEDDED_CLUSTER
            .get_or_init(|| {
                let cluster = MockCluster::new(3).map_err(|e| e.to_string())?;
                let bootstrap = cluster.bootstrap_servers();
                tracing::info!(
                    bootstrap,
                    "embedded Kafka broker started (in memory, this process only)"
                );
                Ok(Embedded {
                    cluster,
                    bootstrap,
                    topics: Mutex::new(BTreeMap::new()),
                })
            })
            .as_ref()
            .map_err(|e| KafkaSetupError::Embedded(e.clone()))
    }

    /// The broker addresses clients connect to.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Creates `topic` with `partitions` unless it exists.
    pub fn ensure_topic(&self, topic: &str, partitions: i32) -> Result<(), KafkaSetupError> {
        let mut topics = self.topics.lock().expect("topics lock");
        if topics.contains_key(topic) {
            return Ok(());
        }
        match self.cluster.create_topic(topic, partitions.max(1), 1) {
            Ok(()) => {}
            Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::TopicAlreadyExists) => {}
            Err(e) => {
                return Err(KafkaSetupError::CreateTopic {
                    topic: topic.to_owned(),
                    brokers: "the embedded broker".to_owned(),
                    reason: e.to_string(),
                });
            }
        }
        topics.insert(topic.to_owned(), partitions);
        Ok(())
    }

    /// Fault injection for tests: takes broker `id` (1-3) down.
    pub fn broker_down(&self, id: i32) -> Result<(), KafkaSetupError> {
        Ok(self.cluster.broker_down(id)?)
    }

    /// Fault injection for tests: brings broker `id` back.
    pub fn broker_up(&self, id: i32) -> Result<(), KafkaSetupError> {
        Ok(self.cluster.broker_up(id)?)
    }
}
