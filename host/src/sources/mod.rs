//! Sources: where events enter a pipeline.

pub mod dht;
pub mod images;
pub mod kafka;
pub mod replay;
pub mod stdin;

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::topology::{BoxError, SourceContext};

/// Every source type, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// A DHT11/DHT22 sensor (GPIO or simulated).
    Dht(dht::DhtConfig),
    /// One event per file of a directory.
    Images(images::ImagesConfig),
    /// Consumes Kafka topics as a consumer-group member.
    Kafka(kafka::KafkaSourceConfig),
    /// Replays a CSV, JSONL or text file, optionally at a fixed rate.
    Replay(replay::ReplayConfig),
    /// Reads lines from standard input.
    Stdin(stdin::StdinConfig),
}

impl SourceConfig {
    /// The `type` values sources accept.
    pub const TYPES: &'static [&'static str] = &["dht", "images", "kafka", "replay", "stdin"];

    /// The `type` of this source.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::Dht(_) => "dht",
            SourceConfig::Images(_) => "images",
            SourceConfig::Kafka(_) => "kafka",
            SourceConfig::Replay(_) => "replay",
            SourceConfig::Stdin(_) => "stdin",
        }
    }

    pub(crate) fn deserialize_type<'de, D: serde::Deserializer<'de>>(
        type_name: &str,
        de: D,
    ) -> Result<Self, D::Error> {
        Ok(match type_name {
            "dht" => SourceConfig::Dht(dht::DhtConfig::deserialize(de)?),
            "images" => SourceConfig::Images(images::ImagesConfig::deserialize(de)?),
            "kafka" => SourceConfig::Kafka(kafka::KafkaSourceConfig::deserialize(de)?),
            "replay" => SourceConfig::Replay(replay::ReplayConfig::deserialize(de)?),
            "stdin" => SourceConfig::Stdin(stdin::StdinConfig::deserialize(de)?),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown source type `{other}`"
                )));
            }
        })
    }

    pub(crate) fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            SourceConfig::Replay(c) => vec![&mut c.path],
            SourceConfig::Kafka(_) => vec![],
            SourceConfig::Images(c) => vec![&mut c.path],
            SourceConfig::Dht(c) => c.readings.iter_mut().collect(),
            SourceConfig::Stdin(_) => vec![],
        }
    }

    /// Whether a replacement instance (a reload changed the settings) goes
    /// on from where the old one stopped. Replay and image sources do; a
    /// Kafka source resumes from its group's committed offsets anyway; a
    /// sensor or stdin has no position.
    pub fn resumes_where_stopped(&self) -> bool {
        matches!(self, SourceConfig::Replay(_) | SourceConfig::Images(_))
    }

    /// Starts building the source; the returned future runs it until its
    /// input ends or shutdown is signalled.
    pub fn build(
        &self,
        ctx: SourceContext,
    ) -> Result<BoxFuture<'static, Result<(), BoxError>>, BoxError> {
        match self {
            SourceConfig::Dht(c) => c.build(ctx),
            SourceConfig::Images(c) => c.build(ctx),
            SourceConfig::Kafka(c) => c.build(ctx),
            SourceConfig::Replay(c) => c.build(ctx),
            SourceConfig::Stdin(c) => c.build(ctx),
        }
    }
}
