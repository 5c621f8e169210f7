//! Integration tests: one test binary that drives the real `weir`
//! executable, with shared helpers in `common`.

mod common;

mod images;
mod kafka;
mod limits;
mod plugin_build;
mod reload;
mod run_local;
mod sensors;
mod validate;
mod window_stats;
