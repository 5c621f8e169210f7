//! The state changelog of a pipeline whose plugin state moves with its
//! input partitions: a compacted topic with as many partitions as the
//! pipeline's input, shared by every process of the pipeline. A stage's
//! state with no partition is keyed `stage` in partition 0; the task of
//! input partition `p` is keyed `stage/p` in partition `p`, so the process
//! that takes over a partition reads only that partition.
//!
//! Exactly-once writes it inside the transaction (`exactly_once`, records
//! with [`CHECKPOINT_HEADER`]); at-least-once writes a task's state when
//! its partition is handed over (`state_log`, records with
//! [`POSITIONS_HEADER`]). Read here, read_committed to its end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::delivery::{Delivery, DeliveryTarget, Producer};
use super::{Brokers, KafkaSetupError, TopicSpec, ensure_topic, partition_count};
use crate::checkpoint::SavedStage;

/// Header of a changelog record: the checkpoint it was committed with.
pub const CHECKPOINT_HEADER: &str = "weir.checkpoint";

/// Header of an at-least-once record: the input positions its state
/// reflects, `{"topic": next offset}` of its partition.
pub const POSITIONS_HEADER: &str = "weir.positions";

/// Largest state record: the changelog topic and its producers allow it.
pub const MAX_RECORD_BYTES: &str = "16777216";

/// Creates changelog `topic` unless it exists (compacted, one partition per
/// input partition, three replicas where the cluster has three brokers),
/// and checks that it has a partition for every input partition; its
/// partition count.
pub fn ensure(
    config: &ClientConfig,
    brokers: &Brokers,
    topic: &str,
    input_partitions: i32,
    timeout: Duration,
) -> Result<i32, KafkaSetupError> {
    let input_partitions = input_partitions.max(1);
    let mut spec = TopicSpec::new(input_partitions, replication_for(config, timeout));
    spec.config
        .insert("cleanup.policy".into(), "compact".into());
    spec.config
        .insert("max.message.bytes".into(), MAX_RECORD_BYTES.into());
    ensure_topic(config, brokers, topic, &spec, timeout)?;
    let partitions = partition_count(config, topic, timeout)?.unwrap_or(1) as i32;
    if partitions < input_partitions {
        return Err(KafkaSetupError::Transactions(format!(
            "changelog topic {topic} has {partitions} partitions but the input has {input_partitions}: the state of input partition p is kept in changelog partition p; add partitions to it (kafka-topics.sh --alter --partitions {input_partitions}) or name a new one with `changelog`"
        )));
    }
    Ok(partitions)
}

/// Replication of the changelog: three copies where the cluster has three
/// brokers, else as many as it has.
fn replication_for(config: &ClientConfig, timeout: Duration) -> i32 {
    let mut probe = config.clone();
    probe.remove("transactional.id");
    let brokers = probe
        .create::<BaseConsumer>()
        .ok()
        .and_then(|c| c.fetch_metadata(None, timeout).ok())
        .map_or(1, |m| m.brokers().len());
    brokers.clamp(1, 3) as i32
}

/// One state record for [`send`].
pub struct StateRecord<'a> {
    /// The changelog topic.
    pub topic: &'a str,
    /// Its partition (the task's input partition, or 0).
    pub partition: i32,
    /// [`key`] of the stage and task.
    pub key: &'a str,
    /// The state.
    pub state: &'a SavedStage,
    /// [`CHECKPOINT_HEADER`] or [`POSITIONS_HEADER`], and its value.
    pub header: (&'a str, &'a [u8]),
}

/// Sends a state record with `producer` (waiting while its queue is full);
/// its delivery is reported to `target`.
pub fn send(
    producer: &Producer,
    record: StateRecord<'_>,
    target: Arc<dyn DeliveryTarget>,
) -> Result<(), String> {
    let value = serde_json::to_vec(record.state).map_err(|e| e.to_string())?;
    let mut produced =
        BaseRecord::with_opaque_to(record.topic, Box::new(Delivery { target, index: 0 }))
            .partition(record.partition)
            .key(record.key.as_bytes())
            .payload(&value[..])
            .headers(OwnedHeaders::new().insert(Header {
                key: record.header.0,
                value: Some(record.header.1),
            }));
    loop {
        match producer.send(produced) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                produced = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err((e, _)) => return Err(format!("cannot write the state of `{}`: {e}", record.key)),
        }
    }
}

/// The record key of a stage's state: `stage`, or `stage/p` for the task
/// of partition `p`.
pub fn key(stage: &str, partition: Option<i32>) -> String {
    match partition {
        Some(p) => format!("{stage}/{p}"),
        None => stage.to_owned(),
    }
}

/// The stage and task of a record key.
pub fn parse_key(key: &str) -> (String, Option<i32>) {
    match key.rsplit_once('/') {
        Some((stage, p)) => match p.parse::<i32>() {
            Ok(p) => (stage.to_owned(), Some(p)),
            Err(_) => (key.to_owned(), None),
        },
        None => (key.to_owned(), None),
    }
}

/// What a read found: the last record of every key, and the highest
/// checkpoint id among them.
#[derive(Debug, Default)]
pub struct Found {
    /// By record key.
    pub states: BTreeMap<String, SavedStage>,
    /// Highest checkpoint header seen.
    pub checkpoint: u64,
    /// The input positions of keys whose last record is an at-least-once
    /// hand-over (`{"topic": next offset}`).
    pub positions: BTreeMap<String, BTreeMap<String, i64>>,
}

/// Reads `partitions` of `topic` read_committed to their ends, as consumer
/// group `group` with the `client` settings. A broker that is briefly
/// unreachable is waited for up to `patience`.
pub fn read(
    bootstrap: &str,
    client: &[(String, String)],
    group: &str,
    topic: &str,
    partitions: &[i32],
    patience: Duration,
) -> Result<Found, String> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (k, v) in client {
        config.set(k, v);
    }
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + patience;
    let mut last_error: Option<String> = None;
    // The end of each partition as of now. A partition another process
    // keeps writing (a transaction every checkpoint) may never look ended
    // to a read_committed reader: it is read up to this end (waiting for a
    // transaction open below it to settle), not chased.
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for p in partitions {
        loop {
            match consumer.fetch_watermarks(topic, *p, Duration::from_secs(5)) {
                Ok((low, high)) => {
                    if high > low {
                        ends.insert(*p, high);
                    }
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, partition = p, "cannot get the changelog's end yet; retrying");
                    last_error = Some(e.to_string());
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    return Err(format!(
                        "cannot get the end of changelog partition {p}: {e}"
                    ));
                }
            }
        }
    }
    let mut found = Found::default();
    let mut open: Vec<i32> = ends.keys().copied().collect();
    if open.is_empty() {
        return Ok(found);
    }
    let mut tpl = TopicPartitionList::new();
    for p in &open {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "no end of the changelog in time{}",
                last_error.map_or(String::new(), |e| format!(" (last error: {e})"))
            ));
        }
        // Past the end: its last records were control markers or aborted.
        if let Ok(at) = consumer.position() {
            for e in at.elements() {
                if let (Offset::Offset(o), Some(end)) = (e.offset(), ends.get(&e.partition()))
                    && o >= *end
                {
                    open.retain(|p| *p != e.partition());
                }
            }
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    open.retain(|p| *p != m.partition());
                }
                let (Some(key), Some(value)) = (m.key(), m.payload()) else {
                    continue;
                };
                let key = String::from_utf8_lossy(key).into_owned();
                let state: SavedStage = serde_json::from_slice(value)
                    .map_err(|e| format!("unreadable state of `{key}`: {e}"))?;
                let header = |name: &str| {
                    m.headers()
                        .and_then(|h| h.iter().find(|h| h.key == name))
                        .and_then(|h| h.value)
                };
                let id = header(CHECKPOINT_HEADER)
                    .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
                    .unwrap_or(0);
                found.checkpoint = found.checkpoint.max(id);
                match header(POSITIONS_HEADER).map(serde_json::from_slice) {
                    Some(Ok(positions)) => {
                        found.positions.insert(key.clone(), positions);
                    }
                    Some(Err(e)) => {
                        return Err(format!("unreadable positions of `{key}`: {e}"));
                    }
                    None => {
                        found.positions.remove(&key);
                    }
                }
                found.states.insert(key, state);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => open.retain(|o| *o != p),
            // A broker restarting or a leader moving: keep reading until
            // the deadline.
            Some(Err(e)) => {
                tracing::debug!(error = %e, "reading the changelog; retrying");
                last_error = Some(e.to_string());
            }
            None => {}
        }
    }
    // No end-of-partition events after this read is done.
    let _ = consumer.unassign();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_stage_and_task() {
        assert_eq!(key("count", Some(3)), "count/3");
        assert_eq!(parse_key("count/3"), ("count".to_owned(), Some(3)));
        assert_eq!(parse_key("count"), ("count".to_owned(), None));
        assert_eq!(parse_key("a/b"), ("a/b".to_owned(), None));
    }
}
