//! libFuzzer's entry to `checks/pipeline_toml.rs`, which says what is checked.
#![no_main]

// Each target uses one check of the shared module.
#[allow(dead_code)]
#[path = "../checks/mod.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| checks::pipeline_toml::run(bytes));
