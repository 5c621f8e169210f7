//! Several `weir run` processes sharing one consumer group on Apache
//! Kafka: a 12-partition input of keyed records counted in event-time
//! windows while instances join, leave with SIGTERM and die with SIGKILL.
//! Each process runs one plugin task per partition it owns; a partition's
//! open windows move with it. Exactly-once, a read_committed reader sees
//! every window of every partition once with the input's counts;
//! at-least-once, nothing is lost and the duplicates are counted.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::kafka::*;
use crate::common::*;

const PARTITIONS: i32 = 12;

/// Event time of the first record: an hour ago, on a second boundary.
fn t0() -> i64 {
    static T0: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *T0.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        (now - 3_600_000) / 1000 * 1000
    })
}

/// Record `i`: partition `i % 12`, one per millisecond of event time, and a
/// counted key naming its partition (so every window's count of a key comes
/// from one task, and a key counted twice is a duplicate).
fn record(i: usize) -> Rec {
    let p = (i % PARTITIONS as usize) as i32;
    let g = ["a", "b", "c"][(i.wrapping_mul(2_654_435_761) >> 7) % 3];
    Rec {
        partition: p,
        key: Some(format!("k{p}")),
        value: format!(r#"{{"g":"p{p}-{g}","n":{i}}}"#),
        timestamp_ms: Some(t0() + i as i64),
        headers: Vec::new(),
    }
}

/// One record per partition far ahead in event time: closes every window
/// of the input in every task.
fn closers(n: usize) -> Vec<Rec> {
    (0..PARTITIONS)
        .map(|p| Rec {
            partition: p,
            key: Some(format!("k{p}")),
            value: format!(r#"{{"g":"end","n":{}}}"#, n + p as usize),
            timestamp_ms: Some(t0() + n as i64 + 3_600_000),
            headers: Vec::new(),
        })
        .collect()
}

type Windows = BTreeMap<(i64, String), u64>;

fn expected(n: usize) -> Windows {
    let mut w = Windows::new();
    for i in 0..n {
        let v: serde_json::Value = serde_json::from_str(&record(i).value).unwrap();
        let start = (t0() + i as i64).div_euclid(1000) * 1000;
        *w.entry((start, v["g"].as_str().unwrap().to_owned()))
            .or_default() += 1;
    }
    w
}

/// Every (window, key) count in the output as read with `isolation`, each
/// emission listed.
fn emitted(bootstrap: &str, topic: &str, isolation: &str) -> BTreeMap<(i64, String), Vec<u64>> {
    let mut out: BTreeMap<(i64, String), Vec<u64>> = BTreeMap::new();
    for r in read_isolated(bootstrap, topic, PARTITIONS, isolation) {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        let start = v["window_start"].as_i64().unwrap();
        for (k, n) in v["counts"].as_object().unwrap() {
            if k == "end" {
                continue;
            }
            out.entry((start, k.clone()))
                .or_default()
                .push(n.as_u64().unwrap());
        }
    }
    out
}

fn pipeline(bootstrap: &str, name: &str, guarantee: &str) -> String {
    format!(
        r#"
guarantee = "{guarantee}"
changelog = "{name}-state"
transaction_timeout = "10s"

[sources.in]
type = "kafka"
brokers = "{bootstrap}"
topic = "{name}-in"
group = "{name}"
start = "earliest"
commit_interval = "1s"
options = {{ "session.timeout.ms" = 6000, "heartbeat.interval.ms" = 500 }}

[transforms.count]
type = "wasm"
inputs = ["in"]
plugin = "@plugin(gender-count)"
config = {{ key = "g", time = "event", window = "1s" }}

[sinks.out]
type = "kafka"
inputs = ["count"]
brokers = "{bootstrap}"
topic = "{name}-out"
create_topic = {{ partitions = {PARTITIONS} }}
"#
    )
}

/// A process of the group, instance `id`, logging to a directory of its own.
fn instance(file: &Path, id: &str) -> (Background, tempfile::TempDir) {
    let dir = tempdir();
    let bg = Background::start_with_env(
        dir.path(),
        file,
        &[("WEIR_INSTANCE_ID", Path::new(id)), ("RUST_LOG", Path::new("weir=info"))],
    );
    (bg, dir)
}

/// Runs the elastic scenario and returns what the output holds.
fn elastic_run(name: &str, guarantee: &str, n: usize) -> BTreeMap<(i64, String), Vec<u64>> {
    let b = broker();
    create_topic(b, &format!("{name}-in"), PARTITIONS);
    let p = Pipeline::new(&pipeline(b, name, guarantee));
    let input = format!("{name}-in");
    let out = format!("{name}-out");
    // The input arrives over ~30 s while processes come and go.
    let producer = {
        let (b, input) = (b.to_owned(), input.clone());
        std::thread::spawn(move || {
            let chunk = n / 10;
            for c in 0..10 {
                let recs: Vec<Rec> = (c * chunk..(c + 1) * chunk).map(record).collect();
                produce_records(&b, &input, &recs);
                std::thread::sleep(Duration::from_secs(3));
            }
            produce_records(&b, &input, &closers(n));
        })
    };
    let progress = |at_least: i64, running: &[&Background]| {
        let deadline = Instant::now() + Duration::from_secs(180);
        while end_offsets(b, &out, PARTITIONS).iter().sum::<i64>() < at_least {
            assert!(
                Instant::now() < deadline,
                "no progress to {at_least} outputs; logs:\n{}",
                running
                    .iter()
                    .map(|r| r.log_text())
                    .collect::<Vec<_>>()
                    .join("\n-----\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (mut a, _da) = instance(p.file(), &format!("{name}-a"));
    progress(200, &[&a]);
    let (mut bb, _db) = instance(p.file(), &format!("{name}-b"));
    bb.wait_for("task started", Duration::from_secs(60));
    progress(2_000, &[&a, &bb]);
    let (mut c, _dc) = instance(p.file(), &format!("{name}-c"));
    c.wait_for("task started", Duration::from_secs(60));
    progress(4_000, &[&a, &bb, &c]);
    // The status of a process shows its tasks.
    let status = c.status();
    let partitions = stage(&status, "count")["counters"]["partitions"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(
        (1..PARTITIONS as usize).contains(&partitions),
        "the third process runs some of the tasks: {status}"
    );
    signal(&bb.child, libc::SIGTERM);
    let left = bb.exit_status(Duration::from_secs(60));
    assert!(left.success(), "SIGTERM: clean exit\n{}", bb.log_text());
    progress(6_000, &[&a, &c]);
    signal(&c.child, libc::SIGKILL);
    c.child.wait().unwrap();
    producer.join().unwrap();
    // Wait until every window of the input is out (the closers close them).
    let want = expected(n);
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let got = emitted(b, &out, "read_committed");
        if want.keys().all(|k| got.contains_key(k)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} window counts out; survivor's log:\n{}",
            got.len(),
            want.len(),
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The survivor took over every partition at some point.
    let log = a.log_text();
    assert!(log.contains("partitions handed over"), "{log}");
    signal(&a.child, libc::SIGTERM);
    a.exit_status(Duration::from_secs(60));
    emitted(b, &out, "read_committed")
}

#[test]
fn exactly_once_windows_stay_exact_while_instances_join_leave_and_die() {
    let n = 1_000_000;
    let got = elastic_run("scale-eos", "exactly-once", n);
    let want = expected(n);
    let mut duplicated = 0;
    let mut wrong = Vec::new();
    for (k, counts) in &got {
        if counts.len() > 1 {
            duplicated += 1;
        }
        if want.get(k) != counts.first() {
            wrong.push((k.clone(), counts.clone(), want.get(k)));
        }
    }
    eprintln!(
        "MEASURED scale-out exactly-once: {} window counts, {duplicated} duplicated, {} wrong",
        got.len(),
        wrong.len()
    );
    assert_eq!(duplicated, 0, "a window count emitted twice");
    assert!(wrong.is_empty(), "counts differ: {:?}", &wrong[..wrong.len().min(5)]);
    assert_eq!(got.len(), want.len(), "every window count once");
}

#[test]
fn at_least_once_loses_nothing_while_instances_join_leave_and_die() {
    let n = 1_000_000;
    let got = elastic_run("scale-alo", "at-least-once", n);
    let want = expected(n);
    let (mut duplicates, mut partial) = (0, 0);
    for (k, expected_count) in &want {
        let counts = got.get(k).unwrap_or_else(|| panic!("window {k:?} lost"));
        // Nothing lost: the window's whole count is out at least once, and
        // no emission counts a record twice.
        assert!(
            counts.contains(expected_count) && counts.iter().all(|c| c <= expected_count),
            "window {k:?}: emitted {counts:?}, input has {expected_count}"
        );
        duplicates += counts.iter().filter(|c| *c == expected_count).count() - 1;
        // A partition replayed from its committed offset re-reads the tail
        // of a window it had closed (offsets commit per batch), and emits
        // that window again with part of its count.
        partial += counts.iter().filter(|c| *c < expected_count).count();
    }
    eprintln!(
        "MEASURED scale-out at-least-once: {} window counts, {duplicates} whole duplicates, {partial} partial re-emissions",
        want.len()
    );
}
