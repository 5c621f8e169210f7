//! The state changelog of an exactly-once pipeline: a compacted topic
//! keyed by stage, each record a plugin snapshot with the checkpoint it was
//! committed with. Written inside the transaction (`exactly_once`); read
//! here, read_committed to its end, at start.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::checkpoint::{Saved, SavedStage};

/// Header of a changelog record: the checkpoint it was committed with.
pub const CHECKPOINT_HEADER: &str = "weir.checkpoint";

/// Every stage's last committed state in `topic` (partition 0), read as
/// consumer group `group` with the `client` settings. A broker that is
/// briefly unreachable is waited for up to `patience`.
pub fn read(
    bootstrap: &str,
    client: &[(String, String)],
    group: &str,
    topic: &str,
    patience: Duration,
) -> Result<Saved, String> {
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
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut saved = Saved::default();
    let mut last_error: Option<String> = None;
    let deadline = Instant::now() + patience;
    loop {
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
                let stage = String::from_utf8_lossy(key).into_owned();
                let state: SavedStage = serde_json::from_slice(value)
                    .map_err(|e| format!("unreadable state of `{stage}`: {e}"))?;
                let id = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == CHECKPOINT_HEADER))
                    .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<u64>().ok())
                    .unwrap_or(0);
                saved.id = saved.id.max(id);
                saved.stages.insert(stage, state);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(saved),
            // A broker restarting or a leader moving: keep reading until
            // the deadline.
            Some(Err(e)) => {
                tracing::debug!(error = %e, "reading the changelog; retrying");
                last_error = Some(e.to_string());
            }
            None => {}
        }
    }
}
