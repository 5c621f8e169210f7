//! The plugin SDK's batch decoding: flat parts as they cross the component
//! boundary are refused when they disagree, and every event of an accepted
//! batch can be read.

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

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(parts: Parts) {
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
}
