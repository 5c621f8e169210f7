//! Integration tests: one test binary that drives the real `weir`
//! executable, with shared helpers in `common`. Each module tests one
//! topic; its name says which.

mod common;

mod cassandra;
mod channels;
mod dashboard;
mod dht;
mod exactly_once;
mod fuzz_short;
mod http_stream;
mod images_grayscale;
mod images_source;
mod instances;
mod kafka_faults;
mod kafka_groups;
mod kafka_replication;
mod kafka_sink;
mod kafka_source;
mod onnx;
mod operator;
mod plugin_build;
mod plugin_failures;
mod plugin_languages;
mod plugin_new;
mod plugin_restore;
mod plugin_sdks;
mod reload_checkpoints;
mod reload_graph;
mod reload_plugin_swap;
mod run_local;
mod scale_out;
mod shipped_pipelines;
mod thingsboard_sink;
mod validate;
mod window_stats;
mod window_stats_checkpoints;
