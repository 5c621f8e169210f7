//! Integration tests: one test binary that drives the real `weir`
//! executable, with shared helpers in `common`.

mod common;

mod dashboard;
mod images;
mod kafka;
mod limits;
mod operator;
mod plugin_build;
mod plugin_new;
mod reload;
mod run_local;
mod sensors;
mod validate;
mod window_stats;
