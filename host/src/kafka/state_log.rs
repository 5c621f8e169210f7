//! At-least-once hand-over of task state through the changelog: when a
//! partition leaves a process, each of its tasks' state is written to the
//! pipeline's changelog with the input positions it reflects, before the
//! partition's offsets are committed; the next owner restores it when the
//! committed offsets are those positions, and otherwise reads the records
//! again from the committed offsets (the older way, which the tasks' held
//! acknowledgements keep possible).
//!
//! The Kafka source creates the topic at start ([`StateLog::prepare`]), as
//! exactly-once does (`changelog::ensure`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::Producer as _;

use super::changelog::{self, POSITIONS_HEADER};
use super::delivery::{DeliveryContext, FirstFailure, Producer};
use super::{Brokers, partition_count};
use crate::checkpoint::SavedStage;

/// How long a write or read of the changelog may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// Which changelog an at-least-once pipeline hands task state over
/// through; put into the stages' extensions by the runner when the
/// pipeline has stages with a task per partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changelog {
    /// The topic (`changelog`, default `weir-<pipeline>-state`).
    pub topic: String,
    /// Partitions of the pipeline's input: the changelog has as many.
    pub input_partitions: i32,
}

/// The changelog as one Kafka source's consumer uses it.
pub struct StateLog {
    changelog: Changelog,
    brokers: Brokers,
    bootstrap: String,
    /// The source's librdkafka `options`.
    client: Vec<(String, String)>,
    group: String,
    /// Made at the first write, with the topic.
    producer: Mutex<Option<Producer>>,
}

impl std::fmt::Debug for StateLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateLog")
            .field("topic", &self.changelog.topic)
            .finish_non_exhaustive()
    }
}

/// Input positions of one partition: `{"topic": next offset}`.
pub type Positions = BTreeMap<String, i64>;

impl StateLog {
    /// A state log on the source's cluster, reached with its librdkafka
    /// `client` settings; `group` names the reads.
    pub fn new(
        changelog: Changelog,
        brokers: Brokers,
        bootstrap: String,
        client: Vec<(String, String)>,
        group: &str,
    ) -> Self {
        StateLog {
            changelog,
            brokers,
            bootstrap,
            client,
            group: format!("{group}-restore"),
            producer: Mutex::new(None),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.changelog.topic
    }

    /// Creates the topic if needed and the producer, so the first
    /// hand-over does not wait for them (blocks; seconds at most).
    pub fn prepare(&self) -> Result<(), String> {
        let mut producer = self.producer.lock().expect("producer lock");
        if producer.is_none() {
            *producer = Some(self.open()?);
        }
        Ok(())
    }

    /// Writes the state of `stage`'s task of `partition`, which reflects
    /// the input up to `positions`, and waits until the brokers have it.
    pub fn write(
        &self,
        stage: &str,
        partition: i32,
        state: &SavedStage,
        positions: &Positions,
    ) -> Result<(), String> {
        let mut producer = self.producer.lock().expect("producer lock");
        if producer.is_none() {
            *producer = Some(self.open()?);
        }
        let producer = producer.as_ref().expect("made above");
        let failures = Arc::new(FirstFailure::default());
        let key = changelog::key(stage, Some(partition));
        let header = serde_json::to_vec(positions).map_err(|e| e.to_string())?;
        changelog::send(
            producer,
            changelog::StateRecord {
                topic: &self.changelog.topic,
                partition,
                key: &key,
                state,
                header: (POSITIONS_HEADER, &header),
            },
            failures.clone(),
        )?;
        producer
            .flush(PATIENCE)
            .map_err(|e| format!("the state of `{key}` was not delivered in time: {e}"))?;
        match failures.take() {
            Some(e) => Err(format!("the state of `{key}` was not delivered: {e}")),
            None => Ok(()),
        }
    }

    /// The hand-over state of `partitions`: (stage, partition, state, the
    /// positions it reflects) for every task whose last record is a
    /// hand-over. Nothing when the topic does not exist yet.
    pub fn read(
        &self,
        partitions: &[i32],
    ) -> Result<Vec<(String, i32, SavedStage, Positions)>, String> {
        let exists = partition_count(&self.config(), &self.changelog.topic, PATIENCE)
            .map_err(|e| e.to_string())?;
        let Some(count) = exists else {
            return Ok(Vec::new());
        };
        let wanted: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| (*p as usize) < count)
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = changelog::read(
            &self.bootstrap,
            &self.client,
            &self.group,
            &self.changelog.topic,
            &wanted,
            PATIENCE,
        )?;
        let mut states = Vec::new();
        for (key, state) in found.states {
            if let (stage, Some(p)) = changelog::parse_key(&key)
                && wanted.contains(&p)
                && let Some(positions) = found.positions.remove(&key)
            {
                states.push((stage, p, state, positions));
            }
        }
        Ok(states)
    }

    /// Creates the topic if needed and a producer that waits for every
    /// in-sync replica.
    fn open(&self) -> Result<Producer, String> {
        let mut config = self.config();
        changelog::ensure(
            &config,
            &self.brokers,
            &self.changelog.topic,
            self.changelog.input_partitions,
            PATIENCE,
        )
        .map_err(|e| e.to_string())?;
        if config.get("message.max.bytes").is_none() {
            config.set("message.max.bytes", changelog::MAX_RECORD_BYTES);
        }
        // A record not delivered when a write gives up is failed for good
        // (never written later, over a newer owner's state).
        let timeout = (PATIENCE / 2).as_millis().to_string();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", &timeout);
        config
            .create_with_context(DeliveryContext)
            .map_err(|e| format!("cannot create the changelog producer: {e}"))
    }

    /// The bootstrap servers and the source's settings.
    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.client {
            config.set(k, v);
        }
        config
    }
}
