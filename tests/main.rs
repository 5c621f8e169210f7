//! Integration tests: one test binary that drives the real `weir`
//! executable, with shared helpers in `common`.

mod common;

mod dashboard;
mod images;
mod inputs_more;
mod kafka;
mod kafka_more;
mod limits;
mod operator;
mod plugin_build;
mod plugin_new;
mod reload;
mod reload_more;
mod run_local;
mod sensors;
mod sensors_more;
mod stats_more;
mod validate;
mod window_stats;
