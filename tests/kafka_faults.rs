//! Kafka under faults: an unreachable broker reported at start, a pipeline
//! killed with SIGKILL and restarted (on the shared Apache Kafka broker), and,
//! with librdkafka's mock cluster, every broker down mid-stream and
//! deliveries that time out.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::kafka::*;
use crate::common::*;

#[test]
fn an_unreachable_broker_is_reported_within_ten_seconds_naming_the_address() {
    let p = Pipeline::new(
        "[sources.in]\ntype = \"kafka\"\nbrokers = \"127.0.0.1:1\"\ntopic = \"t\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n",
    );
    let start = Instant::now();
    let stderr = p.run_failing(Duration::from_secs(30));
    let elapsed = start.elapsed();
    assert!(
        stderr.contains("stage `in`: cannot reach Kafka brokers 127.0.0.1:1 within 10s"),
        "{stderr}"
    );
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
}

#[test]
fn killed_with_sigkill_and_restarted_nothing_is_lost() {
    let b = broker();
    create_topic(b, "kill-in", 3);
    const N: usize = 400_000;
    produce(b, "kill-in", (0..N).map(|i| format!("id-{i}").into_bytes()));
    let p = Pipeline::new(
        r#"
[sources.in]
type = "kafka"
brokers = "@broker"
topic = "kill-in"
group = "kill-group"
start = "earliest"
exit_at_end = true
commit_interval = "200ms"

[transforms.echo]
type = "wasm"
inputs = ["in"]
plugin = "@plugin(chaos)"

[sinks.out]
type = "kafka"
inputs = ["echo"]
brokers = "@broker"
topic = "kill-out"
create_topic = { partitions = 1 }
"#,
    );
    // The first run is killed once a twentieth of the records are through.
    let mut child = p
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let produced = end_offsets(b, "kill-out", 1).first().copied().unwrap_or(0);
        if produced >= (N / 20) as i64 {
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

    p.run_ok(Duration::from_secs(180));
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
        end_offsets(b, "kill-in", 3)
    );
}

#[test]
fn brokers_down_for_five_seconds_and_injected_errors_lose_nothing() {
    let mock = MockCluster::with_topic(3, "outage", 3);
    const N: usize = 20_000;
    let lines: String = (0..N).map(|i| format!("r{i}\n")).collect();
    let p = Pipeline::new(
        &r#"
[sources.in]
type = "replay"
path = "in.txt"
format = "lines"
rate = 2000

[sinks.to_kafka]
type = "kafka"
inputs = ["in"]
brokers = "MOCK"
topic = "outage"

[sources.from_kafka]
type = "kafka"
brokers = "MOCK"
topic = "outage"
group = "outage-group"
start = "earliest"

[sinks.out]
type = "file"
inputs = ["from_kafka"]
path = "out.txt"
"#
        .replace("MOCK", &mock.bootstrap()),
    )
    .with_file("in.txt", &lines);
    let mut child = p
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out_path = p.path("out.txt");
    let lines_out = || {
        std::fs::read_to_string(&out_path)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    // At-least-once may write a record twice (a partition re-read after
    // the outage), so the end is judged by the distinct records, never by
    // the line count: duplicates could reach N lines while a partition is
    // still being read.
    let missing_out = || {
        let got = crate::common::lines(&out_path);
        let distinct: HashSet<&str> = got.iter().map(String::as_str).collect();
        (0..N)
            .filter(|i| !distinct.contains(format!("r{i}").as_str()))
            .collect::<Vec<usize>>()
    };
    let start = Instant::now();
    while lines_out() < N / 5 {
        assert!(start.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every broker down for five seconds, mid-stream.
    mock.brokers_down(3);
    let during = lines_out();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        child.try_wait().unwrap().is_none(),
        "weir exited during the outage"
    );
    mock.brokers_up(3);
    // Then produce requests fail with retriable errors a few times.
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 5],
    );
    loop {
        let missing = missing_out();
        if missing.is_empty() {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            signal(&child, libc::SIGTERM);
            let out = wait_with_timeout(child, Duration::from_secs(60));
            panic!(
                "{} of {N} records never arrived, in ranges {:?}; weir said:\n{}",
                missing.len(),
                ranges(&missing),
                texts(&out).1
            );
        }
        assert!(child.try_wait().unwrap().is_none(), "weir exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, libc::SIGTERM);
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let got = p.read("out.txt");
    let distinct: HashSet<&str> = got.lines().collect();
    println!(
        "outage: {during} records before it, {} after, {} distinct",
        got.lines().count(),
        distinct.len()
    );
    for i in 0..N {
        assert!(distinct.contains(format!("r{i}").as_str()), "r{i} lost");
    }
}

/// Sorted record numbers as inclusive ranges, for a readable failure.
fn ranges(sorted: &[usize]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &n in sorted {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => out.push((n, n)),
        }
    }
    out
}

/// A delivery that librdkafka gives up on (every broker down past
/// `message.timeout.ms`) goes to the dead-letter output with the reason;
/// the pipeline finishes instead of hanging.
#[test]
fn records_that_cannot_be_delivered_in_time_are_dead_lettered() {
    let mock = MockCluster::with_topic(3, "km-unreachable", 1);
    let lines: String = (0..50).map(|i| format!("d{i}\n")).collect();
    let p = Pipeline::new(
        &r#"
[sources.in]
type = "replay"
path = "in.txt"
format = "lines"
rate = 25

[sinks.to_kafka]
type = "kafka"
inputs = ["in"]
brokers = "MOCK"
topic = "km-unreachable"
options = { "message.timeout.ms" = "1500" }
dead_letter = "undelivered"

[sinks.undelivered]
type = "file"
path = "undelivered.jsonl"
format = "json"
"#
        .replace("MOCK", &mock.bootstrap()),
    )
    .with_file("in.txt", &lines);
    // The sink checks the brokers at start; they go down once it runs.
    let log = p.path("weir.log");
    let child = p
        .command()
        .stdout(Stdio::null())
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
    mock.brokers_down(3);
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{text}");
    let dead: Vec<serde_json::Value> = json_lines(&p.path("undelivered.jsonl"));
    // At 25 rows/s nearly every record is produced after the outage began
    // (the bound leaves a second for this thread to be late on a loaded
    // machine).
    assert!(dead.len() >= 25, "{} dead-lettered:\n{text}", dead.len());
    let values: HashSet<&str> = dead.iter().map(|d| d["value"].as_str().unwrap()).collect();
    assert_eq!(values.len(), dead.len(), "each dead-lettered once");
    assert!(values.contains("d49"), "the last record is among them");
    for d in &dead {
        let reason = d["headers"]["weir.reason"].as_str().unwrap();
        assert!(reason.to_lowercase().contains("timed out"), "{reason}");
        assert_eq!(d["headers"]["weir.stage"], "to_kafka");
    }
}
