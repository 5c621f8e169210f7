//! The plugin SDK's batch decoding: flat parts as they cross the component
//! boundary are refused when they disagree, and every event of an accepted
//! batch can be read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_plugin::{Batch, Header};

type Parts = (
    u64,
    Vec<i64>,
    Vec<u8>,
    Vec<u32>,
    Vec<u8>,
    Vec<u32>,
    Vec<(u32, String, Vec<u8>)>,
);

fuzz_target!(|parts: Parts| {
    let (base_seq, timestamps, values, value_ends, keys, key_ends, headers) = parts;
    let headers = headers
        .into_iter()
        .map(|(event, name, value)| Header { event, name, value })
        .collect();
    let n = timestamps.len();
    let Ok(batch) = Batch::from_parts(
        base_seq, timestamps, values, value_ends, keys, key_ends, headers,
    ) else {
        return;
    };
    assert_eq!(batch.len(), n);
    for event in batch.iter() {
        let _ = event.text();
        let _ = event.header("h");
        assert!(event.headers().all(|h| h.event == event.index));
    }
});
