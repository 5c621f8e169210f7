//! A Kafka record as an event: value, key, timestamp and headers copied,
//! the value checked against the source's `format`.

use std::sync::Arc;

use bytes::Bytes;
use rdkafka::message::{Headers, Message};

use super::ValueFormat;
use crate::event::{Event, Origin};
use crate::util::now_ms;

/// Converts one record read from `topic`. A value that fails the `format`
/// check comes back with the reason, for the dead-letter output. A record without a usable timestamp takes the
/// time it was read.
pub fn to_event<M: Message>(
    m: &M,
    topic: Arc<str>,
    format: ValueFormat,
) -> (Event, Option<String>) {
    let value = Bytes::copy_from_slice(m.payload().unwrap_or_default());
    let mut event = Event::new(value, m.timestamp().to_millis().unwrap_or_else(now_ms));
    event.key = m.key().map(Bytes::copy_from_slice);
    if let Some(headers) = m.headers() {
        for h in headers.iter() {
            event.headers.push((
                h.key.to_owned(),
                Bytes::copy_from_slice(h.value.unwrap_or_default()),
            ));
        }
    }
    event.origin = Some(Origin::Kafka {
        topic,
        partition: m.partition(),
        offset: m.offset(),
    });
    let problem = match format {
        ValueFormat::Bytes => None,
        ValueFormat::Text => std::str::from_utf8(&event.value)
            .err()
            .map(|e| format!("value is not UTF-8 text: {e}")),
        ValueFormat::Json => serde_json::from_slice::<serde::de::IgnoredAny>(&event.value)
            .err()
            .map(|e| format!("invalid JSON: {e}")),
    };
    (event, problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    fn record(payload: &[u8], ts: Timestamp) -> OwnedMessage {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "trace",
                value: Some(&b"abc"[..]),
            })
            .insert(Header::<&[u8]> {
                key: "empty",
                value: None,
            });
        OwnedMessage::new(
            Some(payload.to_vec()),
            Some(b"k".to_vec()),
            "t".into(),
            ts,
            3,
            42,
            Some(headers),
        )
    }

    #[test]
    fn copies_key_headers_time_and_origin() {
        let (e, problem) = to_event(
            &record(b"{\"a\":1}", Timestamp::CreateTime(1_700)),
            "t".into(),
            ValueFormat::Json,
        );
        assert_eq!(problem, None);
        assert_eq!(e.timestamp_ms, 1_700);
        assert_eq!(e.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(e.headers.len(), 2);
        assert_eq!(e.headers[1].1.len(), 0);
        assert!(matches!(
            e.origin,
            Some(Origin::Kafka {
                partition: 3,
                offset: 42,
                ..
            })
        ));
    }

    #[test]
    fn failed_checks_carry_the_reason() {
        let bad = record(b"\xff{", Timestamp::NotAvailable);
        let (e, why) = to_event(&bad, "t".into(), ValueFormat::Text);
        let why = why.unwrap();
        assert!(why.starts_with("value is not UTF-8"), "{why}");
        assert!(e.timestamp_ms > 0);
        let why = to_event(&bad, "t".into(), ValueFormat::Json).1.unwrap();
        assert!(why.starts_with("invalid JSON"), "{why}");
        assert_eq!(to_event(&bad, "t".into(), ValueFormat::Bytes).1, None);
    }
}
