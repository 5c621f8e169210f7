//! Human-friendly units in pipeline files and stage settings: durations and
//! byte sizes.
//!
//! They are the plugin SDK's types, so the host and its plugins read
//! `"250ms"` or `"64MiB"` with one parser and report a mistake the same way.

pub use weir_plugin::config::{ByteSize, Duration, parse_bytes, parse_duration};
