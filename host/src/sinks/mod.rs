//! Sinks: where events leave a pipeline.

pub mod console;
pub mod dashboard;
pub mod directory;
pub mod file;
pub mod kafka;
pub mod thingsboard;

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::topology::{BoxError, SinkContext};

/// Every sink type, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkConfig {
    /// Prints events to standard output.
    Console(console::ConsoleConfig),
    /// Live charts in the browser, served by the admin endpoint.
    Dashboard(dashboard::DashboardConfig),
    /// Writes one file per event.
    Directory(directory::DirectoryConfig),
    /// Appends events to a file.
    File(file::FileConfig),
    /// Produces to a Kafka topic.
    Kafka(kafka::KafkaSinkConfig),
    /// Posts device telemetry to ThingsBoard.
    Thingsboard(thingsboard::ThingsboardConfig),
}

impl SinkConfig {
    /// The `type` values sinks accept.
    pub const TYPES: &'static [&'static str] = &[
        "console",
        "dashboard",
        "directory",
        "file",
        "kafka",
        "thingsboard",
    ];

    /// The `type` of this sink.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::Console(_) => "console",
            SinkConfig::Dashboard(_) => "dashboard",
            SinkConfig::Directory(_) => "directory",
            SinkConfig::File(_) => "file",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Thingsboard(_) => "thingsboard",
        }
    }

    pub(crate) fn deserialize_type<'de, D: serde::Deserializer<'de>>(
        type_name: &str,
        de: D,
    ) -> Result<Self, D::Error> {
        Ok(match type_name {
            "console" => SinkConfig::Console(console::ConsoleConfig::deserialize(de)?),
            "dashboard" => SinkConfig::Dashboard(dashboard::DashboardConfig::deserialize(de)?),
            "directory" => SinkConfig::Directory(directory::DirectoryConfig::deserialize(de)?),
            "file" => SinkConfig::File(file::FileConfig::deserialize(de)?),
            "kafka" => SinkConfig::Kafka(kafka::KafkaSinkConfig::deserialize(de)?),
            "thingsboard" => {
                SinkConfig::Thingsboard(thingsboard::ThingsboardConfig::deserialize(de)?)
            }
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown sink type `{other}`"
                )));
            }
        })
    }

    pub(crate) fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            SinkConfig::Console(_) | SinkConfig::Dashboard(_) => vec![],
            SinkConfig::Directory(c) => vec![&mut c.path],
            SinkConfig::File(c) => vec![&mut c.path],
            SinkConfig::Kafka(_) | SinkConfig::Thingsboard(_) => vec![],
        }
    }

    /// Builds the sink; the future runs until its input closes.
    pub fn build(
        &self,
        ctx: SinkContext,
    ) -> Result<BoxFuture<'static, Result<(), BoxError>>, BoxError> {
        match self {
            SinkConfig::Console(c) => c.build(ctx),
            SinkConfig::Dashboard(c) => c.build(ctx),
            SinkConfig::Directory(c) => c.build(ctx),
            SinkConfig::File(c) => c.build(ctx),
            SinkConfig::Kafka(c) => c.build(ctx),
            SinkConfig::Thingsboard(c) => c.build(ctx),
        }
    }
}

/// How text sinks write an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LineFormat {
    /// The value as it is, one per line.
    #[default]
    Value,
    /// A JSON object with `timestamp`, `key`, `value` and `headers`.
    Json,
}

/// Appends one line for `event` to `out`.
pub fn write_line(out: &mut Vec<u8>, event: &Event, format: LineFormat) {
    match format {
        LineFormat::Value => out.extend_from_slice(&event.value),
        LineFormat::Json => {
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            let headers: serde_json::Map<String, serde_json::Value> = event
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(text(v))))
                .collect();
            let obj = serde_json::json!({
                "timestamp": event.timestamp_ms,
                "key": event.key.as_ref().map(|k| text(k)),
                "value": text(&event.value),
                "headers": headers,
            });
            serde_json::to_writer(&mut *out, &obj).expect("JSON to a Vec cannot fail");
        }
    }
    out.push(b'\n');
}
