//! The state changelog of an exactly-once pipeline: a compacted topic with
//! as many partitions as the pipeline's input, shared by every process of
//! the pipeline. A stage's state with no partition is keyed `stage` in
//! partition 0; the task of input partition `p` is keyed `stage/p` in
//! partition `p`, so the process that takes over a partition reads only
//! that partition. Written inside the transaction (`exactly_once`); read
//! here, read_committed to its end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::checkpoint::SavedStage;

/// Header of a changelog record: the checkpoint it was committed with.
pub const CHECKPOINT_HEADER: &str = "weir.checkpoint";

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
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut found = Found::default();
    let mut open: Vec<i32> = partitions.to_vec();
    let mut last_error: Option<String> = None;
    let deadline = Instant::now() + patience;
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "no end of the changelog in time{}",
                last_error.map_or(String::new(), |e| format!(" (last error: {e})"))
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let (Some(key), Some(value)) = (m.key(), m.payload()) else {
                    continue;
                };
                let key = String::from_utf8_lossy(key).into_owned();
                let state: SavedStage = serde_json::from_slice(value)
                    .map_err(|e| format!("unreadable state of `{key}`: {e}"))?;
                let id = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == CHECKPOINT_HEADER))
                    .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<u64>().ok())
                    .unwrap_or(0);
                found.checkpoint = found.checkpoint.max(id);
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
