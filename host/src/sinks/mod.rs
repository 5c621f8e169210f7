//! Sinks: where events leave a pipeline. The registry below lists every
//! sink type; each implements [`crate::stage::Sink`] in its own file.

pub mod cassandra;
pub mod console;
pub mod dashboard;
pub mod directory;
pub mod file;
pub mod kafka;
pub mod thingsboard;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::stage::{BoxError, component_registry};
use crate::telemetry::StageMetrics;

component_registry! {
    /// Every sink type, with its settings (selected by `type`).
    pub enum SinkConfig: Sink {
        /// Writes rows to an Apache Cassandra table.
        "cassandra" => Cassandra(cassandra::CassandraConfig),
        /// Prints events to standard output.
        "console" => Console(console::ConsoleConfig),
        /// Live charts in the browser, served by the admin endpoint.
        "dashboard" => Dashboard(dashboard::DashboardConfig),
        /// Writes one file per event.
        "directory" => Directory(directory::DirectoryConfig),
        /// Appends events to a file.
        "file" => File(file::FileConfig),
        /// Produces to a Kafka topic.
        "kafka" => Kafka(kafka::KafkaSinkConfig),
        /// Posts device telemetry to ThingsBoard.
        "thingsboard" => Thingsboard(thingsboard::ThingsboardConfig),
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

/// Writes a batch as lines with `write`, counting it in and out on `metrics`
/// and timing the write; the batch is dropped (its acknowledgements
/// released) only once written.
pub fn write_lines(
    batch: crate::event::Batch,
    format: LineFormat,
    buf: &mut Vec<u8>,
    metrics: &StageMetrics,
    write: impl FnOnce(&[u8]) -> Result<(), BoxError>,
) -> Result<(), BoxError> {
    let started = std::time::Instant::now();
    buf.clear();
    for e in &batch.events {
        write_line(buf, e, format);
    }
    let n = batch.events.len() as u64;
    StageMetrics::add(&metrics.events_in, n);
    write(buf)?;
    StageMetrics::add(&metrics.events_out, n);
    metrics.record_batch(started.elapsed());
    drop(batch); // written: release the acknowledgements
    Ok(())
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
