//! Kafka consumer groups on the shared Apache Kafka broker: offsets committed to
//! the end of every partition once every record is through, and members
//! joining a running group (a rebalance) without losing a record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::kafka::*;
use crate::common::*;

#[test]
fn a_hundred_thousand_records_flow_through_gender_count_and_offsets_are_committed_to_the_end() {
    let b = broker();
    create_topic(b, "gc-in", 3);
    let genders = ["0", "1", "2", ""];
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let values: Vec<Vec<u8>> = (0..100_000)
        .map(|i| {
            let g = genders[(i * 7 + i / 3) % 4];
            *expected.entry(g.to_owned()).or_default() += 1;
            g.as_bytes().to_vec()
        })
        .collect();
    produce(b, "gc-in", values);
    let p = Pipeline::new(
        r#"
[sources.shop]
type = "kafka"
brokers = "@broker"
topic = "gc-in"
group = "gc-group"
start = "earliest"
exit_at_end = true

[transforms.count]
type = "wasm"
inputs = ["shop"]
plugin = "@plugin(gender-count)"
config = { window = "1h", time = "processing" }

[sinks.result]
type = "kafka"
inputs = ["count"]
brokers = "@broker"
topic = "gc-out"
create_topic = { partitions = 1 }
"#,
    );
    p.run_ok(Duration::from_secs(180));
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    for r in read_all(b, "gc-out", 1) {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        for (k, n) in v["counts"].as_object().unwrap() {
            *got.entry(k.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    assert_eq!(got, expected, "every record counted exactly once");
    assert_eq!(
        committed(b, "gc-group", "gc-in", 3),
        end_offsets(b, "gc-in", 3)
    );
}

/// Two members that stop at the end of their input, the second started
/// once the first has written 1,000 records: whichever way the group's
/// partitions end up (here the first usually reads everything before the
/// second's join moves a partition), nothing is lost and the group's
/// offsets end at the end of every partition. The rebalance while records
/// flow is `a_rebalance_is_observed_by_both_members_and_loses_nothing`.
#[test]
fn a_second_member_joining_late_ends_with_nothing_lost_and_offsets_at_the_end() {
    let b = broker();
    create_topic(b, "rb-in", 3);
    const N: usize = 150_000;
    produce(b, "rb-in", (0..N).map(|i| format!("k{i}").into_bytes()));
    let p = Pipeline::new(
        r#"
batch_size = 8

[sources.in]
type = "kafka"
brokers = "@broker"
topic = "rb-in"
group = "rb-group"
start = "earliest"
exit_at_end = true

[sinks.out]
type = "kafka"
inputs = ["in"]
brokers = "@broker"
topic = "rb-out"
create_topic = { partitions = 1 }
"#,
    );
    let spawn = || {
        p.command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn();
    let start = Instant::now();
    while count(b, "rb-out", 1) < 1000 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = spawn();
    let (_, err1) = texts(&wait_with_timeout(first, Duration::from_secs(120)));
    let (_, err2) = texts(&wait_with_timeout(second, Duration::from_secs(120)));
    let revoked =
        err1.contains("partitions revoked") && err1.matches("partitions assigned").count() >= 2;
    println!("rebalance seen by the first member: {revoked}");
    let distinct: HashSet<Vec<u8>> = read_all(b, "rb-out", 1)
        .into_iter()
        .map(|r| r.value)
        .collect();
    let inputs = read_all(b, "rb-in", 3);
    let lost: Vec<(i32, i64)> = inputs
        .iter()
        .filter(|r| !distinct.contains(&r.value))
        .map(|r| (r.partition, r.offset))
        .collect();
    assert!(
        lost.is_empty(),
        "{} lost: first {:?} last {:?}; committed {:?}\nfirst:\n{err1}\nsecond:\n{err2}",
        lost.len(),
        lost.first(),
        lost.last(),
        committed(b, "rb-group", "rb-in", 3)
    );
    assert!(err2.contains("partitions assigned"), "{err2}");
    assert_eq!(
        committed(b, "rb-group", "rb-in", 3),
        end_offsets(b, "rb-in", 3)
    );
}

/// One pipeline file of the rebalance test, in its own directory.
fn rebalance_member(dir: &Path) -> std::path::PathBuf {
    pipeline_file(
        dir,
        r#"
batch_size = 8

[sources.in]
type = "kafka"
brokers = "@broker"
topic = "km-rb-in"
group = "km-rb-group"
start = "earliest"
commit_interval = "200ms"

[sinks.out]
type = "file"
inputs = ["in"]
path = "out.txt"
"#,
    )
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
    let first = Background::start(dir1.path(), &rebalance_member(dir1.path()), &[]);
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
    let second = Background::start(dir2.path(), &rebalance_member(dir2.path()), &[]);
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
    let (c1, c2) = (first.counters("in"), second.counters("in"));
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
    let ends = end_offsets(b, "km-rb-in", 3);
    assert_eq!(ends.iter().sum::<i64>(), expected.len() as i64);
    assert_eq!(committed(b, "km-rb-group", "km-rb-in", 3), ends);
}
