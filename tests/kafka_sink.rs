//! The Kafka sink: a record above the producer's size limit dead-lettered
//! with the limit named, a key taken from a JSON field, and the sink's
//! idempotent `acks=all` default.

use std::path::Path;
use std::time::Duration;

use crate::common::kafka::*;
use crate::common::*;

#[test]
fn an_oversized_record_goes_to_the_dead_letter_output_with_the_limit_named() {
    let big = "x".repeat(2_000_000);
    let p = Pipeline::new(
        r#"
[sources.in]
type = "replay"
path = "in.txt"
format = "lines"

[sinks.k]
type = "kafka"
inputs = ["in"]
topic = "big"
dead_letter = "dlq"

[sinks.dlq]
type = "file"
path = "dlq.jsonl"
format = "json"
"#,
    )
    .with_file("in.txt", &format!("small\n{big}\nsmall again\n"));
    let stderr = p.run_ok(Duration::from_secs(180));
    let dead = p.read("dlq.jsonl");
    assert_eq!(dead.lines().count(), 1, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(v["value"].as_str().unwrap().len(), 2_000_000);
    let reason = v["headers"]["weir.reason"].as_str().unwrap();
    assert!(
        reason.contains(
            "record of 2000000 bytes is larger than the producer's message.max.bytes (1000000)"
        ),
        "{reason}"
    );
    assert_eq!(stage_total(&stderr, "k", "events_out"), 2);
}

/// A key the sink takes from a JSON field (`key = "sensor"`) arrives as the
/// event key of a Kafka source reading that topic back in the same
/// pipeline (through lz4-compressed batches), with the event's timestamp as
/// the record timestamp; a row without the field has no key.
#[test]
fn a_key_taken_from_a_field_by_the_sink_is_the_event_key_when_read_back() {
    let b = broker();
    let p = Pipeline::new(
        r#"
[sources.in]
type = "replay"
path = "in.jsonl"
format = "jsonl"

[sinks.to_kafka]
type = "kafka"
inputs = ["in"]
brokers = "@broker"
topic = "km-fieldkey"
key = "sensor"
compression = "lz4"
create_topic = { partitions = 1 }

[sources.back]
type = "kafka"
brokers = "@broker"
topic = "km-fieldkey"
group = "km-fieldkey-group"
start = "earliest"
exit_at_end = true

[sinks.out]
type = "file"
inputs = ["back"]
path = "back.jsonl"
format = "json"
"#,
    )
    .with_file(
        "in.jsonl",
        "{\"sensor\":\"S1\",\"t\":1}\n{\"sensor\":\"S2\",\"t\":2}\n{\"t\":3}\n",
    );
    p.run_ok(Duration::from_secs(60));
    let events = p.json_lines("back.jsonl");
    let keys: Vec<&serde_json::Value> = events.iter().map(|e| &e["key"]).collect();
    assert_eq!(
        keys,
        [
            &serde_json::json!("S1"),
            &serde_json::json!("S2"),
            &serde_json::Value::Null
        ]
    );
    let values: Vec<&str> = events
        .iter()
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        values,
        [
            "{\"sensor\":\"S1\",\"t\":1}",
            "{\"sensor\":\"S2\",\"t\":2}",
            "{\"t\":3}"
        ]
    );
    let stored = read_text(b, "km-fieldkey");
    assert_eq!(stored.len(), 3);
    for (e, r) in events.iter().zip(&stored) {
        assert_eq!(e["timestamp"].as_i64(), r.timestamp_ms, "{e} vs {r:?}");
        assert_eq!(e["key"].as_str(), r.key.as_deref());
    }
}

/// Runs a one-record replay → kafka sink pipeline with librdkafka's `conf`
/// and `eos` debug logs on; returns the exit status's success and stderr.
fn run_sink_with_debug(dir: &Path, name: &str, sink_settings: &str) -> (bool, String) {
    write(dir, "in.txt", "one\n");
    let text = pipeline::fill(
        dir,
        &format!(
            r#"
[sources.in]
type = "replay"
path = "in.txt"
format = "lines"

[sinks.k]
type = "kafka"
inputs = ["in"]
brokers = "@broker"
topic = "km-acks"
{sink_settings}
"#
        ),
    );
    let file = write(dir, &format!("{name}.toml"), &text);
    let out = run_with_timeout(
        weir()
            .arg("run")
            .arg(&file)
            .env("RUST_LOG", "info,librdkafka=debug"),
        Duration::from_secs(60),
    );
    let (_, stderr) = texts(&out);
    (out.status.success(), stderr)
}

/// With no `acks`/`idempotent` settings the sink's producer is idempotent
/// with `acks=all`: librdkafka's configuration dump shows both, the
/// producer acquires a producer id from the broker and writes with it, and
/// librdkafka refuses `max.in.flight` > 5 (which only idempotence forbids).
/// `acks = "1"` turns both off, as a control.
#[test]
fn the_kafka_sink_is_an_idempotent_acks_all_producer_by_default() {
    create_topic(broker(), "km-acks", 1);
    let dir = tempdir();
    let debug = r#"options = { "debug" = "conf,eos" }"#;

    let (ok, log) = run_sink_with_debug(dir.path(), "default", debug);
    assert!(ok, "{log}");
    assert!(log.contains("enable.idempotence = true"), "{log}");
    assert!(log.contains("request.required.acks = -1"), "{log}");
    assert!(!log.contains("enable.idempotence = false"), "{log}");
    assert!(log.contains("Acquired PID{Id:"), "{log}");
    assert!(log.contains("events_out=1"), "{log}");

    let (ok, log) = run_sink_with_debug(dir.path(), "acks1", &format!("acks = \"1\"\n{debug}"));
    assert!(ok, "{log}");
    assert!(log.contains("enable.idempotence = false"), "{log}");
    assert!(log.contains("request.required.acks = 1"), "{log}");
    assert!(!log.contains("Acquired PID"), "{log}");

    let (ok, log) = run_sink_with_debug(
        dir.path(),
        "inflight",
        r#"options = { "max.in.flight" = 6 }"#,
    );
    assert!(!ok, "{log}");
    assert!(
        log.contains(
            "stage `k`: cannot create Kafka producer: Client creation error: `max.in.flight` must be set <= 5 when `enable.idempotence` is true"
        ),
        "{log}"
    );
    let (ok, log) = run_sink_with_debug(
        dir.path(),
        "inflight_off",
        "idempotent = false\noptions = { \"max.in.flight\" = 6 }",
    );
    assert!(ok, "idempotent = false allows it:\n{log}");

    let (ok, log) = run_sink_with_debug(
        dir.path(),
        "contradiction",
        "acks = \"1\"\nidempotent = true",
    );
    assert!(!ok, "{log}");
    assert!(
        log.contains("stage `k`: idempotent = true requires acks = \"all\""),
        "{log}"
    );
}
