//! Kafka connectors against a real Kafka-protocol broker (tansu) and, for
//! fault injection, librdkafka's mock cluster.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::kafka::*;
use crate::common::*;

fn run_to_end(file: &std::path::Path) -> (String, String) {
    let out = run_with_timeout(weir().arg("run").arg(file), Duration::from_secs(180));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "weir failed:\n{stderr}");
    (stdout, stderr)
}

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
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.shop]
type = "kafka"
brokers = "{b}"
topic = "gc-in"
group = "gc-group"
start = "earliest"
exit_at_end = true

[transforms.count]
type = "wasm"
inputs = ["shop"]
plugin = "{plugin}"
config = {{ window = "1h", time = "processing" }}

[sinks.result]
type = "kafka"
inputs = ["count"]
brokers = "{b}"
topic = "gc-out"
create_topic = {{ partitions = 1 }}
"#,
            plugin = plugin("gender-count").display()
        ),
    );
    run_to_end(&file);
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
        true_end_offsets(b, "gc-in", 3)
    );
}

#[test]
fn killed_with_sigkill_and_restarted_nothing_is_lost() {
    let b = broker();
    create_topic(b, "kill-in", 3);
    const N: usize = 100_000;
    produce(b, "kill-in", (0..N).map(|i| format!("id-{i}").into_bytes()));
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "kafka"
brokers = "{b}"
topic = "kill-in"
group = "kill-group"
start = "earliest"
exit_at_end = true
commit_interval = "200ms"

[transforms.echo]
type = "wasm"
inputs = ["in"]
plugin = "{plugin}"

[sinks.out]
type = "kafka"
inputs = ["echo"]
brokers = "{b}"
topic = "kill-out"
create_topic = {{ partitions = 1 }}
"#,
            plugin = plugin("chaos").display()
        ),
    );
    // The first run is killed once a fifth of the records are through.
    let mut child = weir()
        .arg("run")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let produced = end_offsets(b, "kill-out", 1).first().copied().unwrap_or(0);
        if produced >= (N / 5) as i64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no progress before the kill"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "weir ended before it was killed"
        );
    }
    signal(&child, libc::SIGKILL);
    child.wait().unwrap();
    let before_restart = count(b, "kill-out", 1);
    assert!(
        before_restart < N as i64,
        "killed before the end ({before_restart} records out)"
    );

    run_to_end(&file);
    let mut seen: HashMap<Vec<u8>, u32> = HashMap::new();
    for r in read_all(b, "kill-out", 1) {
        *seen.entry(r.value).or_default() += 1;
    }
    seen.remove(&b"total=0"[..]);
    seen.retain(|k, _| k.starts_with(b"id-"));
    let lost: Vec<usize> = (0..N)
        .filter(|i| !seen.contains_key(format!("id-{i}").as_bytes()))
        .collect();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!(
        "at-least-once after SIGKILL: {N} in, {} distinct out, {duplicates} duplicates, {} lost (killed at {before_restart} out)",
        seen.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} records lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(
        committed(b, "kill-group", "kill-in", 3),
        true_end_offsets(b, "kill-in", 3)
    );
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
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "kafka"
brokers = "{b}"
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
brokers = "{b}"
topic = "json-dlq"
create_topic = {{ partitions = 1 }}
"#
        ),
    );
    run_to_end(&file);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "{\"a\":1}\n{\"a\":2}\n"
    );
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
        true_end_offsets(b, "json-in", 1)
    );
}

#[test]
fn an_oversized_record_goes_to_the_dead_letter_output_with_the_limit_named() {
    let dir = tempdir();
    let big = "x".repeat(2_000_000);
    write(
        dir.path(),
        "in.txt",
        &format!("small\n{big}\nsmall again\n"),
    );
    let file = write(
        dir.path(),
        "p.toml",
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
    );
    let (_, stderr) = run_to_end(&file);
    let dead = std::fs::read_to_string(dir.path().join("dlq.jsonl")).unwrap();
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

#[test]
fn an_unreachable_broker_is_reported_within_ten_seconds_naming_the_address() {
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        "[sources.in]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:1\"\ntopic = \"t\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n",
    );
    let start = Instant::now();
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(30));
    let elapsed = start.elapsed();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stage `in`: cannot reach Kafka brokers 127.0.0.1:1 within 10s"),
        "{stderr}"
    );
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
}

/// A mock cluster in this test process: real TCP listeners the `weir`
/// binary connects to, with fault-injection controls.
struct Mock(rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>);

// SAFETY: librdkafka's mock API is thread-safe; see weir::kafka::Embedded.
unsafe impl Send for Mock {}
// SAFETY: as above.
unsafe impl Sync for Mock {}

#[test]
fn brokers_down_for_five_seconds_and_injected_errors_lose_nothing() {
    let mock = Mock(rdkafka::mocking::MockCluster::new(3).unwrap());
    let bootstrap = mock.0.bootstrap_servers();
    mock.0.create_topic("outage", 3, 1).unwrap();
    const N: usize = 20_000;
    let dir = tempdir();
    let lines: String = (0..N).map(|i| format!("r{i}\n")).collect();
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
rate = 2000

[sinks.to_kafka]
type = "kafka"
inputs = ["in"]
brokers = "{bootstrap}"
topic = "outage"

[sources.from_kafka]
type = "kafka"
brokers = "{bootstrap}"
topic = "outage"
group = "outage-group"
start = "earliest"

[sinks.out]
type = "file"
inputs = ["from_kafka"]
path = "out.txt"
"#
        ),
    );
    let mut child = weir()
        .arg("run")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out_path = dir.path().join("out.txt");
    let lines_out = || {
        std::fs::read_to_string(&out_path)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    let start = Instant::now();
    while lines_out() < N / 5 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every broker down for five seconds, mid-stream.
    for id in 1..=3 {
        mock.0.broker_down(id).unwrap();
    }
    let during = lines_out();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        child.try_wait().unwrap().is_none(),
        "weir exited during the outage"
    );
    for id in 1..=3 {
        mock.0.broker_up(id).unwrap();
    }
    // Then produce requests fail with retriable errors a few times.
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    mock.0.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5],
    );
    while lines_out() < N {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {} of {N} records arrived",
            lines_out()
        );
        assert!(child.try_wait().unwrap().is_none(), "weir exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, libc::SIGTERM);
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let got = std::fs::read_to_string(&out_path).unwrap();
    let distinct: std::collections::HashSet<&str> = got.lines().collect();
    println!(
        "outage: {during} records before it, {} after, {} distinct",
        got.lines().count(),
        distinct.len()
    );
    for i in 0..N {
        assert!(distinct.contains(format!("r{i}").as_str()), "r{i} lost");
    }
}

#[test]
fn the_shop_log_pipeline_runs_on_the_embedded_broker() {
    let mut child = weir()
        .arg("run")
        .arg(repo().join("pipelines/gender-count.toml"))
        .args(["--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        lines.push(line);
    }
    signal(&child, libc::SIGINT);
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    for line in lines {
        // Exactly the text today's consumers parse: [{"0":1},{"1":6},{"2":3}]
        let v: Vec<BTreeMap<String, u64>> = serde_json::from_str(line.trim()).unwrap();
        assert!(v.iter().all(|m| m.len() == 1), "{line}");
        let keys: Vec<&String> = v.iter().flat_map(|m| m.keys()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted: {line}");
        assert!(
            line.trim().starts_with("[{\"") && !line.contains(' '),
            "{line}"
        );
    }
}

#[test]
fn a_second_member_joining_the_group_triggers_a_rebalance_without_losses() {
    let b = broker();
    create_topic(b, "rb-in", 3);
    const N: usize = 150_000;
    produce(b, "rb-in", (0..N).map(|i| format!("k{i}").into_bytes()));
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
batch_size = 8

[sources.in]
type = "kafka"
brokers = "{b}"
topic = "rb-in"
group = "rb-group"
start = "earliest"
exit_at_end = true

[sinks.out]
type = "kafka"
inputs = ["in"]
brokers = "{b}"
topic = "rb-out"
create_topic = {{ partitions = 1 }}
"#
        ),
    );
    let spawn = || {
        weir()
            .arg("run")
            .arg(&file)
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
    let distinct: std::collections::HashSet<Vec<u8>> = read_all(b, "rb-out", 1)
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
        true_end_offsets(b, "rb-in", 3)
    );
}
