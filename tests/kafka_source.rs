//! The Kafka source against the shared Apache Kafka broker: several topics in one
//! source, `start = "latest"` against `"earliest"`, invalid JSON
//! dead-lettered with its origin, and a record's key, timestamp and
//! headers carried into the event (and back out by a Kafka sink).
//!
//! Topics and groups are named after their test, so these tests share the
//! broker with the others in the binary without interfering.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::kafka::*;
use crate::common::*;

/// A source with `topics = [a, b]` reads every record of both topics (one
/// with one partition, one with two), exactly once in a clean run, and
/// commits the group's offsets to the end of each.
#[test]
fn a_source_with_several_topics_reads_all_of_them() {
    let b = broker();
    create_topic(b, "km-multi-a", 1);
    create_topic(b, "km-multi-b", 2);
    let a: Vec<Rec> = (0..200).map(|i| Rec::plain(0, format!("a-{i}"))).collect();
    let bs: Vec<Rec> = (0..300)
        .map(|i| Rec::plain(i % 2, format!("b-{i}")))
        .collect();
    produce_records(b, "km-multi-a", &a);
    produce_records(b, "km-multi-b", &bs);
    let p = Pipeline::new(
        r#"
[sources.in]
type = "kafka"
brokers = "@broker"
topics = ["km-multi-a", "km-multi-b"]
group = "km-multi-group"
start = "earliest"
exit_at_end = true

[sinks.out]
type = "file"
inputs = ["in"]
path = "out.txt"
"#,
    );
    let stderr = p.run_ok(Duration::from_secs(60));
    assert!(
        stderr.contains(r#"topics=["km-multi-a", "km-multi-b"]"#),
        "{stderr}"
    );
    let mut got = p.lines("out.txt");
    got.sort();
    let mut expected: Vec<String> = a.iter().chain(&bs).map(|r| r.value.clone()).collect();
    expected.sort();
    assert_eq!(got.len(), 500, "{stderr}");
    assert_eq!(got, expected);
    assert_eq!(committed(b, "km-multi-group", "km-multi-a", 1), vec![200]);
    assert_eq!(
        committed(b, "km-multi-group", "km-multi-b", 2),
        vec![150, 150]
    );
}

/// Two new groups on one topic in one pipeline: `start = "earliest"` reads
/// the records produced before it subscribed, `start = "latest"` skips
/// them and reads only (a suffix of) what is produced afterwards.
#[test]
fn start_latest_skips_earlier_records_and_start_earliest_reads_them() {
    let b = broker();
    create_topic(b, "km-start", 1);
    let old: Vec<Rec> = (0..10).map(|i| Rec::plain(0, format!("old-{i}"))).collect();
    produce_records(b, "km-start", &old);
    let p = Pipeline::new(
        r#"
[sources.early]
type = "kafka"
brokers = "@broker"
topic = "km-start"
group = "km-start-earliest"
start = "earliest"
commit_interval = "100ms"

[sources.late]
type = "kafka"
brokers = "@broker"
topic = "km-start"
group = "km-start-latest"
start = "latest"
commit_interval = "100ms"

[sinks.early_out]
type = "file"
inputs = ["early"]
path = "early.txt"

[sinks.late_out]
type = "file"
inputs = ["late"]
path = "late.txt"
"#,
    );
    let bg = p.start();
    let (early_path, late_path) = (p.path("early.txt"), p.path("late.txt"));
    // The "latest" group's position is set asynchronously after it is
    // assigned its partition: produce new records one by one until it has
    // read one of them, then a final marker both must read.
    let mut new = Vec::new();
    let start = Instant::now();
    while lines(&late_path).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the latest group read nothing:\n{}",
            bg.log_text()
        );
        let v = format!("new-{}", new.len());
        produce_records(b, "km-start", &[Rec::plain(0, v.clone())]);
        new.push(v);
        std::thread::sleep(Duration::from_millis(200));
    }
    produce_records(b, "km-start", &[Rec::plain(0, "final".into())]);
    wait_until(
        Duration::from_secs(20),
        || {
            lines(&early_path).last().map(String::as_str) == Some("final")
                && lines(&late_path).last().map(String::as_str) == Some("final")
        },
        || bg.log_text(),
    );
    let status = bg.status();
    bg.stop();
    let early = lines(&early_path);
    let late = lines(&late_path);
    let mut expected: Vec<String> = old.iter().map(|r| r.value.clone()).collect();
    expected.extend(new.iter().cloned());
    expected.push("final".into());
    assert_eq!(early, expected, "earliest reads everything, in order");
    assert!(
        late.iter().all(|l| !l.starts_with("old-")),
        "latest read records produced before it subscribed: {late:?}"
    );
    assert!(
        late.len() >= 2 && early.ends_with(&late),
        "latest reads a suffix of the new records: {late:?}"
    );
    assert_eq!(
        counter(&status, "early", "events_in"),
        expected.len() as u64
    );
    assert_eq!(counter(&status, "late", "events_in"), late.len() as u64);
    let end = (old.len() + new.len() + 1) as i64;
    assert_eq!(committed(b, "km-start-earliest", "km-start", 1), vec![end]);
    assert_eq!(committed(b, "km-start-latest", "km-start", 1), vec![end]);
}

#[test]
fn invalid_json_is_dead_lettered_to_kafka_with_its_origin() {
    let b = broker();
    create_topic(b, "json-in", 1);
    produce(
        b,
        "json-in",
        [r#"{"a":1}"#, "{not json", r#"{"a":2}"#].map(|s| s.as_bytes().to_vec()),
    );
    let p = Pipeline::new(
        r#"
[sources.in]
type = "kafka"
brokers = "@broker"
topic = "json-in"
group = "json-group"
start = "earliest"
format = "json"
exit_at_end = true
dead_letter = "dlq"

[sinks.out]
type = "file"
inputs = ["in"]
path = "out.txt"

[sinks.dlq]
type = "kafka"
brokers = "@broker"
topic = "json-dlq"
create_topic = { partitions = 1 }
"#,
    );
    p.run_ok(Duration::from_secs(180));
    assert_eq!(p.read("out.txt"), "{\"a\":1}\n{\"a\":2}\n");
    let dead = read_all(b, "json-dlq", 1);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value, b"{not json");
    let h: HashMap<_, _> = dead[0].headers.iter().cloned().collect();
    assert_eq!(h["weir.stage"], "in");
    assert!(
        h["weir.reason"].starts_with("invalid JSON: key must be a string"),
        "{h:?}"
    );
    assert_eq!(h["weir.topic"], "json-in");
    assert_eq!(h["weir.partition"], "0");
    let offset_of_bad = read_all(b, "json-in", 1)
        .iter()
        .find(|r| r.value == b"{not json")
        .unwrap()
        .offset;
    assert_eq!(h["weir.offset"], offset_of_bad.to_string());
    assert_eq!(
        committed(b, "json-group", "json-in", 1),
        end_offsets(b, "json-in", 1)
    );
}

/// A record's key, timestamp and headers become the event's (seen in a
/// `file` sink with `format = "json"`), and a `kafka` sink with
/// `key = "$key"` writes them back out unchanged.
#[test]
fn record_key_timestamp_and_headers_become_the_events_and_are_written_back() {
    let b = broker();
    create_topic(b, "km-meta-in", 1);
    let records = vec![
        Rec {
            partition: 0,
            key: Some("sensor-1".into()),
            value: r#"{"t":21.5}"#.into(),
            timestamp_ms: Some(1_700_000_000_123),
            headers: vec![
                ("trace".into(), "abc".into()),
                ("source".into(), "lab".into()),
            ],
        },
        Rec {
            partition: 0,
            key: None,
            value: "no key, no headers".into(),
            timestamp_ms: Some(1_700_000_000_456),
            headers: vec![],
        },
        Rec {
            partition: 0,
            key: Some("sensor-2".into()),
            value: "third".into(),
            timestamp_ms: Some(1_700_000_001_000),
            headers: vec![("only".into(), "one".into())],
        },
    ];
    produce_records(b, "km-meta-in", &records);
    let p = Pipeline::new(
        r#"
[sources.in]
type = "kafka"
brokers = "@broker"
topic = "km-meta-in"
group = "km-meta-group"
start = "earliest"
exit_at_end = true

[sinks.json]
type = "file"
inputs = ["in"]
path = "events.jsonl"
format = "json"

[sinks.copy]
type = "kafka"
inputs = ["in"]
brokers = "@broker"
topic = "km-meta-out"
key = "$key"
create_topic = { partitions = 1 }
"#,
    );
    p.run_ok(Duration::from_secs(60));
    let events = p.json_lines("events.jsonl");
    let expected: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            serde_json::json!({
                "timestamp": r.timestamp_ms.unwrap(),
                "key": r.key,
                "value": r.value,
                "headers": headers,
            })
        })
        .collect();
    assert_eq!(events, expected);
    let copied = read_text(b, "km-meta-out");
    let expected: Vec<TextRecord> = records
        .iter()
        .map(|r| TextRecord {
            key: r.key.clone(),
            value: r.value.clone(),
            timestamp_ms: r.timestamp_ms,
            headers: r.headers.clone(),
        })
        .collect();
    assert_eq!(copied, expected);
}
