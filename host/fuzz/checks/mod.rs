//! What each fuzz target checks, one module a target. The libFuzzer
//! binaries in `fuzz_targets/` and the short unguided run in the test
//! suite (`tests/fuzz_short.rs`) both call `TARGET::run(bytes)`, so the
//! two always check the same things.

pub mod admin_request;
pub mod dht_decode;
pub mod http_framing;
pub mod images;
pub mod kafka_record;
pub mod pipeline_toml;
pub mod plugin_process;
pub mod plugin_restore;
pub mod plugins;
pub mod replay_rows;
pub mod sdk_batch;
pub mod sdk_fields;

/// Reads a target's typed input from raw bytes the way `fuzz_target!`
/// does (`arbitrary`, taking the rest); `None` for bytes too short.
pub fn decode<'a, T: arbitrary::Arbitrary<'a>>(bytes: &'a [u8]) -> Option<T> {
    T::arbitrary_take_rest(arbitrary::Unstructured::new(bytes)).ok()
}
