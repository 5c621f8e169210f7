//! A Kafka record to an event: any key, value, timestamp and headers are
//! copied faithfully, and the value check refuses exactly what it should.

use rdkafka::Timestamp;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use weir::sources::kafka::ValueFormat;
use weir::sources::kafka::record::to_event;

type Input = (
    u8,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(input: Input) {
    let (mode, ts, payload, key, headers) = input;
    let timestamp = match mode % 3 {
        0 => Timestamp::NotAvailable,
        1 => Timestamp::CreateTime(ts),
        _ => Timestamp::LogAppendTime(ts),
    };
    let format = match mode / 3 % 3 {
        0 => ValueFormat::Bytes,
        1 => ValueFormat::Text,
        _ => ValueFormat::Json,
    };
    // librdkafka hands header names over as C strings: a name with a NUL
    // cannot come from it.
    let headers: Vec<_> = headers
        .into_iter()
        .filter(|(k, _)| !k.contains('\0'))
        .collect();
    let mut owned = OwnedHeaders::new();
    for (k, v) in &headers {
        owned = owned.insert(Header {
            key: k.as_str(),
            value: v.as_deref(),
        });
    }
    let m = OwnedMessage::new(
        payload.clone(),
        key.clone(),
        "t".into(),
        timestamp,
        1,
        7,
        Some(owned),
    );
    let value = payload.unwrap_or_default();
    let valid = match format {
        ValueFormat::Bytes => true,
        ValueFormat::Text => std::str::from_utf8(&value).is_ok(),
        ValueFormat::Json => serde_json::from_slice::<serde_json::Value>(&value).is_ok(),
    };
    let event = match to_event(&m, "t".into(), format) {
        // The check is JSON's grammar: `1e999` passes it though no double
        // holds it, so only refusals are compared with a full parse.
        (e, None) => {
            assert!(
                valid || format == ValueFormat::Json,
                "accepted a value the check refuses"
            );
            e
        }
        (e, Some(reason)) => {
            assert!(!valid, "refused a valid value: {reason}");
            e
        }
    };
    assert_eq!(&event.value[..], &value[..]);
    assert_eq!(event.key.as_deref(), key.as_deref());
    if let Some(ms) = timestamp.to_millis() {
        assert_eq!(event.timestamp_ms, ms);
    }
    assert_eq!(event.headers.len(), headers.len());
    for ((k, v), (name, bytes)) in headers.iter().zip(&event.headers) {
        assert_eq!(k, name);
        assert_eq!(v.as_deref().unwrap_or_default(), &bytes[..]);
    }
}
