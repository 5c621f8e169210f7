//! Sources: where events enter a pipeline. The registry below lists every
//! source type; each implements [`crate::stage::Source`] in its own file.

pub mod dht;
pub mod http_stream;
pub mod images;
pub mod kafka;
pub mod replay;
pub mod stdin;

use crate::stage::component_registry;

component_registry! {
    /// Every source type, with its settings (selected by `type`).
    pub enum SourceConfig: Source {
        /// A DHT11/DHT22 sensor (GPIO or simulated).
        "dht" => Dht(dht::DhtConfig),
        /// A long-lived HTTP stream: NDJSON, Server-Sent Events or lines.
        "http_stream" => HttpStream(http_stream::HttpStreamConfig),
        /// One event per file of a directory.
        "images" => Images(images::ImagesConfig),
        /// Consumes Kafka topics as a consumer-group member.
        "kafka" => Kafka(kafka::KafkaSourceConfig),
        /// Replays a CSV, JSONL or text file, optionally at a fixed rate.
        "replay" => Replay(replay::ReplayConfig),
        /// Reads lines from standard input.
        "stdin" => Stdin(stdin::StdinConfig),
    }
}
