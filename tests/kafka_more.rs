//! More Kafka connector behaviour through the real `weir` binary and the
//! shared tansu broker: several topics in one source, `start = "latest"`
//! against `"earliest"`, record key/timestamp/headers carried into events
//! and back out, the sink's idempotent `acks=all` default, and a consumer
//! group rebalance that is asserted (not just printed) and loses nothing,
//! and records librdkafka gives up on reaching the dead-letter output.
//!
//! Every topic and group here starts with `km-`, so these tests share the
//! broker with the others in the binary without interfering.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::common::kafka::*;
use crate::common::*;

/// A record to produce: explicit partition, optional key, timestamp and
/// headers.
#[derive(Debug, Clone, Default)]
struct Rec {
    partition: i32,
    key: Option<String>,
    value: String,
    timestamp_ms: Option<i64>,
    headers: Vec<(String, String)>,
}

impl Rec {
    /// A plain record for `partition`.
    fn plain(partition: i32, value: String) -> Rec {
        Rec {
            partition,
            value,
            ..Rec::default()
        }
    }
}

/// Produces `records` to `topic`, one record per batch (see
/// [`produce`] for why tansu needs that), and waits until all are
/// acknowledged.
fn produce_records(bootstrap: &str, topic: &str, records: &[Rec]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut rec = BaseRecord::<str, str>::to(topic)
            .partition(r.partition)
            .payload(&r.value)
            .headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        if let Some(t) = r.timestamp_ms {
            rec = rec.timestamp(t);
        }
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// A record read back with its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    key: Option<String>,
    value: String,
    timestamp_ms: Option<i64>,
    headers: Vec<(String, String)>,
}

/// Every record of a one-partition `topic`, with timestamps.
fn read_with_timestamps(bootstrap: &str, topic: &str) -> Vec<Got> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "km-reader")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut out = Vec::new();
    let start = Instant::now();
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no end of {topic} after {} records",
            out.len()
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Got {
                key: m.key().map(text),
                value: text(m.payload().unwrap_or_default()),
                timestamp_ms: m.timestamp().to_millis(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), text(h.value.unwrap_or_default())))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(KafkaError::PartitionEOF(_))) => return out,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
}

/// Runs a pipeline to its end (sources with `exit_at_end`), with extra
/// environment; returns stderr.
fn run_to_end(file: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = weir();
    cmd.arg("run").arg(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "weir failed:\n{stderr}");
    stderr
}

/// The lines of a file (empty when it does not exist yet).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls `cond` every 50 ms until it holds, failing with `what()` after
/// `timeout`.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out: {}", what());
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "kafka"
brokers = "{b}"
topics = ["km-multi-a", "km-multi-b"]
group = "km-multi-group"
start = "earliest"
exit_at_end = true

[sinks.out]
type = "file"
inputs = ["in"]
path = "out.txt"
"#
        ),
    );
    let stderr = run_to_end(&file, &[]);
    assert!(
        stderr.contains(r#"topics=["km-multi-a", "km-multi-b"]"#),
        "{stderr}"
    );
    let mut got = lines(&dir.path().join("out.txt"));
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
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.early]
type = "kafka"
brokers = "{b}"
topic = "km-start"
group = "km-start-earliest"
start = "earliest"
commit_interval = "100ms"

[sources.late]
type = "kafka"
brokers = "{b}"
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
"#
        ),
    );
    let bg = Background::start(dir.path(), &file, &[]);
    let (early_path, late_path) = (dir.path().join("early.txt"), dir.path().join("late.txt"));
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
    let events_in = |name: &str| {
        status["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["counters"]["events_in"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(events_in("early"), expected.len() as u64);
    assert_eq!(events_in("late"), late.len() as u64);
    let end = (old.len() + new.len() + 1) as i64;
    assert_eq!(committed(b, "km-start-earliest", "km-start", 1), vec![end]);
    assert_eq!(committed(b, "km-start-latest", "km-start", 1), vec![end]);
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
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "kafka"
brokers = "{b}"
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
brokers = "{b}"
topic = "km-meta-out"
key = "$key"
create_topic = {{ partitions = 1 }}
"#
        ),
    );
    run_to_end(&file, &[]);
    let events: Vec<serde_json::Value> = lines(&dir.path().join("events.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
    let copied = read_with_timestamps(b, "km-meta-out");
    let expected: Vec<Got> = records
        .iter()
        .map(|r| Got {
            key: r.key.clone(),
            value: r.value.clone(),
            timestamp_ms: r.timestamp_ms,
            headers: r.headers.clone(),
        })
        .collect();
    assert_eq!(copied, expected);
}

/// A key the sink takes from a JSON field (`key = "sensor"`) arrives as the
/// event key of a Kafka source reading that topic back in the same
/// pipeline (through lz4-compressed batches), with the event's timestamp as
/// the record timestamp; a row without the field has no key.
#[test]
fn a_key_taken_from_a_field_by_the_sink_is_the_event_key_when_read_back() {
    let b = broker();
    let dir = tempdir();
    write(
        dir.path(),
        "in.jsonl",
        "{\"sensor\":\"S1\",\"t\":1}\n{\"sensor\":\"S2\",\"t\":2}\n{\"t\":3}\n",
    );
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "replay"
path = "in.jsonl"
format = "jsonl"

[sinks.to_kafka]
type = "kafka"
inputs = ["in"]
brokers = "{b}"
topic = "km-fieldkey"
key = "sensor"
compression = "lz4"
create_topic = {{ partitions = 1 }}

[sources.back]
type = "kafka"
brokers = "{b}"
topic = "km-fieldkey"
group = "km-fieldkey-group"
start = "earliest"
exit_at_end = true

[sinks.out]
type = "file"
inputs = ["back"]
path = "back.jsonl"
format = "json"
"#
        ),
    );
    run_to_end(&file, &[]);
    let events: Vec<serde_json::Value> = lines(&dir.path().join("back.jsonl"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
    let stored = read_with_timestamps(b, "km-fieldkey");
    assert_eq!(stored.len(), 3);
    for (e, r) in events.iter().zip(&stored) {
        assert_eq!(e["timestamp"].as_i64(), r.timestamp_ms, "{e} vs {r:?}");
        assert_eq!(e["key"].as_str(), r.key.as_deref());
    }
}

/// Runs a one-record replay → kafka sink pipeline with librdkafka's `conf`
/// and `eos` debug logs on; returns the exit status's success and stderr.
fn run_sink_with_debug(dir: &Path, name: &str, sink_settings: &str) -> (bool, String) {
    let b = broker();
    write(dir, "in.txt", "one\n");
    let file = write(
        dir,
        &format!("{name}.toml"),
        &format!(
            r#"
[sources.in]
type = "replay"
path = "in.txt"
format = "lines"

[sinks.k]
type = "kafka"
inputs = ["in"]
brokers = "{b}"
topic = "km-acks"
{sink_settings}
"#
        ),
    );
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

/// One pipeline file of the rebalance test, in its own directory.
fn rebalance_member(dir: &Path, b: &str) -> std::path::PathBuf {
    write(
        dir,
        "p.toml",
        &format!(
            r#"
batch_size = 8

[sources.in]
type = "kafka"
brokers = "{b}"
topic = "km-rb-in"
group = "km-rb-group"
start = "earliest"
commit_interval = "200ms"

[sinks.out]
type = "file"
inputs = ["in"]
path = "out.txt"
"#
        ),
    )
}

/// A stage's counters from a `weir status --json` answer.
fn counters(status: &serde_json::Value, stage: &str) -> serde_json::Value {
    status["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stage)
        .unwrap_or_else(|| panic!("no stage {stage} in {status}"))["counters"]
        .clone()
}

/// A second member joins a group while records are being produced: the
/// first member's partitions are revoked and reassigned (its `rebalances`
/// counter reaches 2 and it logs `partitions revoked`), both members then
/// consume, every record produced before, during and after the rebalance
/// is written by one of them, and the group's offsets end committed at the
/// end of every partition.
#[test]
fn a_rebalance_is_observed_by_both_members_and_loses_nothing() {
    let b = broker();
    create_topic(b, "km-rb-in", 3);
    let before: Vec<Rec> = (0..3000)
        .map(|i| Rec::plain(i % 3, format!("before-{i}")))
        .collect();
    produce_records(b, "km-rb-in", &before);
    let (dir1, dir2) = (tempdir(), tempdir());
    let first = Background::start(dir1.path(), &rebalance_member(dir1.path(), b), &[]);
    first.wait_for("partitions assigned", Duration::from_secs(30));

    // Records keep arriving while the second member joins.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, b) = (stop.clone(), b.to_owned());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Rec> = (n..n + 30)
                    .map(|i| Rec::plain(i % 3, format!("during-{i}")))
                    .collect();
                produce_records(&b, "km-rb-in", &batch);
                n += 30;
                std::thread::sleep(Duration::from_millis(20));
            }
            n
        })
    };
    let second = Background::start(dir2.path(), &rebalance_member(dir2.path(), b), &[]);
    second.wait_for("partitions assigned", Duration::from_secs(30));
    first.wait_for("partitions revoked", Duration::from_secs(30));
    first.wait_for_n("partitions assigned", 2, Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    let during = producer.join().unwrap();
    // After the rebalance, records on every partition: both members get some.
    let after: Vec<Rec> = (0..300)
        .map(|i| Rec::plain(i % 3, format!("after-{i}")))
        .collect();
    produce_records(b, "km-rb-in", &after);

    let mut expected: HashSet<String> = before.iter().map(|r| r.value.clone()).collect();
    expected.extend((0..during).map(|i| format!("during-{i}")));
    expected.extend(after.iter().map(|r| r.value.clone()));
    let outputs = || {
        let mut all = lines(&dir1.path().join("out.txt"));
        all.extend(lines(&dir2.path().join("out.txt")));
        all
    };
    wait_until(
        Duration::from_secs(30),
        || {
            let got: HashSet<String> = outputs().into_iter().collect();
            expected.is_subset(&got)
        },
        || {
            let got: HashSet<String> = outputs().into_iter().collect();
            let missing = expected.difference(&got).count();
            format!(
                "{missing} of {} records missing\nfirst:\n{}\nsecond:\n{}",
                expected.len(),
                first.log_text(),
                second.log_text()
            )
        },
    );
    let (s1, s2) = (first.status(), second.status());
    let (c1, c2) = (counters(&s1, "in"), counters(&s2, "in"));
    let log2 = second.stop();
    let log1 = first.stop();

    assert!(
        c1["rebalances"].as_u64().unwrap() >= 2,
        "first member: assigned, revoked, assigned again: {c1}"
    );
    assert!(
        c2["rebalances"].as_u64().unwrap() >= 1,
        "second member got partitions: {c2}"
    );
    assert!(log1.contains("partitions revoked"), "{log1}");
    let after_values: HashSet<String> = after.iter().map(|r| r.value.clone()).collect();
    let mut after_seen_by = [0usize; 2];
    for (i, dir) in [&dir1, &dir2].iter().enumerate() {
        after_seen_by[i] = lines(&dir.path().join("out.txt"))
            .iter()
            .filter(|l| after_values.contains(*l))
            .count();
    }
    assert!(
        after_seen_by.iter().all(|n| *n > 0),
        "both members consume after the rebalance: {after_seen_by:?}\nfirst:\n{log1}\nsecond:\n{log2}"
    );
    assert!(c2["events_in"].as_u64().unwrap() > 0, "{c2}");

    let all = outputs();
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for l in &all {
        *seen.entry(l.as_str()).or_default() += 1;
    }
    let unexpected: Vec<&&str> = seen.keys().filter(|k| !expected.contains(**k)).collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let lost = expected
        .iter()
        .filter(|v| !seen.contains_key(v.as_str()))
        .count();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!(
        "rebalance: {} records in ({during} during the join), {} out, {duplicates} duplicates, {lost} lost; rebalances first={} second={}",
        expected.len(),
        all.len(),
        c1["rebalances"],
        c2["rebalances"]
    );
    assert_eq!(lost, 0);
    let ends = true_end_offsets(b, "km-rb-in", 3);
    assert_eq!(ends.iter().sum::<i64>(), expected.len() as i64);
    assert_eq!(committed(b, "km-rb-group", "km-rb-in", 3), ends);
}

/// A delivery that librdkafka gives up on (every broker down past
/// `message.timeout.ms`) goes to the dead-letter output with the reason;
/// the pipeline finishes instead of hanging.
#[test]
fn records_that_cannot_be_delivered_in_time_are_dead_lettered() {
    let mock = rdkafka::mocking::MockCluster::new(3).unwrap();
    let bootstrap = mock.bootstrap_servers();
    mock.create_topic("km-unreachable", 1, 1).unwrap();
    let dir = tempdir();
    let lines: String = (0..50).map(|i| format!("d{i}\n")).collect();
    write(dir.path(), "in.txt", &lines);
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "replay"
path = "in.txt"
format = "lines"
rate = 25

[sinks.to_kafka]
type = "kafka"
inputs = ["in"]
brokers = "{bootstrap}"
topic = "km-unreachable"
options = {{ "message.timeout.ms" = "1500" }}
dead_letter = "undelivered"

[sinks.undelivered]
type = "file"
path = "undelivered.jsonl"
format = "json"
"#
        ),
    );
    // The sink checks the brokers at start; they go down once it runs.
    let log = dir.path().join("weir.log");
    let child = weir()
        .arg("run")
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("pipeline running")
    {
        assert!(start.elapsed() < Duration::from_secs(30), "did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    for id in 1..=3 {
        mock.broker_down(id).unwrap();
    }
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{text}");
    let dead: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("undelivered.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    // At 25 rows/s nearly every record is produced after the outage began.
    assert!(dead.len() >= 40, "{} dead-lettered:\n{text}", dead.len());
    let values: HashSet<&str> = dead.iter().map(|d| d["value"].as_str().unwrap()).collect();
    assert_eq!(values.len(), dead.len(), "each dead-lettered once");
    assert!(values.contains("d49"), "the last record is among them");
    for d in &dead {
        let reason = d["headers"]["weir.reason"].as_str().unwrap();
        assert!(reason.to_lowercase().contains("timed out"), "{reason}");
        assert_eq!(d["headers"]["weir.stage"], "to_kafka");
    }
}
