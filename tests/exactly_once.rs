//! `guarantee = "exactly-once"` on Apache Kafka: a Kafka → gender-count →
//! Kafka pipeline killed with SIGKILL again and again, a broker restarted
//! under it, a zombie fenced by its successor, and the pipelines that
//! cannot have it refused by `weir validate`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::kafka::*;
use crate::common::*;

/// Records of the SIGKILL loop.
const RECORDS: usize = 1_000_000;
/// The poison record's position and value.
const POISON_AT: usize = 500_000;
const POISON: &str = "not json {";
/// Event time of the first record (an hour ago, on a second boundary);
/// one record per millisecond, so a thousand per one-second window. Recent
/// on purpose: the broker deletes records older than its retention (7
/// days) by their timestamps, whatever their offsets.
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

/// The gender of record `i` (a fixed pseudo-random sequence).
fn gender(i: usize) -> &'static str {
    ["0", "1", "2"][(i.wrapping_mul(2_654_435_761) >> 7) % 3]
}

/// The input: keyed records with increasing timestamps, one poison value.
fn input(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            partition: 0,
            key: Some(format!("user-{}", i % 977)),
            value: if i == POISON_AT {
                POISON.to_owned()
            } else {
                format!(r#"{{"g":"{}","n":{i}}}"#, gender(i))
            },
            timestamp_ms: Some(t0() + i as i64),
            headers: Vec::new(),
        })
        .collect()
}

/// Counts per one-second window, computed from the input.
fn expected(n: usize) -> BTreeMap<i64, BTreeMap<String, u64>> {
    let mut windows: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    for i in (0..n).filter(|i| *i != POISON_AT) {
        let start = (t0() + i as i64).div_euclid(1000) * 1000;
        *windows
            .entry(start)
            .or_default()
            .entry(gender(i).to_owned())
            .or_default() += 1;
    }
    windows
}

/// The windows a read_committed reader sees, each once; panics on a
/// window emitted twice.
fn committed_windows(bootstrap: &str, topic: &str) -> BTreeMap<i64, BTreeMap<String, u64>> {
    let mut windows = BTreeMap::new();
    for r in read_all(bootstrap, topic, 1) {
        let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        let start = v["window_start"].as_i64().unwrap();
        let counts: BTreeMap<String, u64> = v["counts"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
            .collect();
        assert!(
            windows.insert(start, counts).is_none(),
            "window {start} emitted twice to read_committed readers"
        );
    }
    windows
}

/// An exactly-once Kafka → gender-count → Kafka pipeline on `bootstrap`.
fn pipeline(bootstrap: &str, name: &str) -> String {
    format!(
        r#"
guarantee = "exactly-once"
instance_id = "{name}"
changelog = "{name}-state"

[sources.in]
type = "kafka"
brokers = "{bootstrap}"
topic = "{name}-in"
group = "{name}"
start = "earliest"
exit_at_end = true

[transforms.count]
type = "wasm"
inputs = ["in"]
plugin = "@plugin(gender-count)"
config = {{ key = "g", time = "event", window = "1s" }}
dead_letter = "dlq"

[sinks.out]
type = "kafka"
inputs = ["count"]
brokers = "{bootstrap}"
topic = "{name}-out"
create_topic = {{ partitions = 1 }}

[sinks.dlq]
type = "kafka"
brokers = "{bootstrap}"
topic = "{name}-dlq"
create_topic = {{ partitions = 1 }}
"#
    )
}

/// A small pseudo-random generator for kill moments (no crate needed).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

#[test]
fn sigkilled_ten_times_the_committed_output_counts_every_record_once() {
    let b = broker();
    create_topic(b, "eos-loop-in", 1);
    produce_records(b, "eos-loop-in", &input(RECORDS));
    let p = Pipeline::new(&pipeline(b, "eos-loop"));
    let mut rng = Lcg(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64);
    let windows_total = (RECORDS / 1000) as i64;
    // Two clients kept open, so the two looks at the output's end are
    // milliseconds apart: its high watermark past its last stable offset
    // means a transaction holds written records not yet committed.
    let committed_end = EndOffsets::new(b, "read_committed");
    let written_end = EndOffsets::new(b, "read_uncommitted");
    let open = || written_end.get("eos-loop-out", 0) > committed_end.get("eos-loop-out", 0);
    let mut kills = 0;
    let mut inside = 0;
    let mut finished = false;
    // Ten kills, and more (up to sixteen) until one has landed inside a
    // transaction: the test is about those.
    while kills < 10 || (inside == 0 && kills < 16) {
        let mut run = Background::start(p.dir(), p.file(), &[]);
        // Kill once the output has grown past a point spread over the run,
        // plus a random delay: always mid-stream, at a random moment.
        let target = (kills + 1) * windows_total / 20 + rng.next(40) as i64;
        let start = Instant::now();
        loop {
            if run.child.try_wait().unwrap().is_some() {
                finished = true;
                break;
            }
            if committed_end.get("eos-loop-out", 0) >= target {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no progress to {target} output records:\n{}",
                run.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if finished {
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.next(300)));
        // Then kill as soon as a transaction is open, so the kill lands
        // inside one; after 5 s without one, kill anyway.
        let open_from = Instant::now();
        while open_from.elapsed() < Duration::from_secs(5) && !open() {
            std::thread::sleep(Duration::from_millis(2));
        }
        signal(&run.child, libc::SIGKILL);
        run.child.wait().unwrap();
        kills += 1;
        // Where the kill landed: a commit the dead process had asked for
        // is finished by the coordinator within moments; a transaction it
        // left open stays open until its successor aborts it.
        std::thread::sleep(Duration::from_secs(1));
        if open() {
            inside += 1;
        }
    }
    assert!(!finished, "the pipeline finished after {kills} kills");
    eprintln!("MEASURED exactly-once: {inside} of {kills} SIGKILLs inside a transaction");
    assert!(
        inside > 0,
        "none of {kills} kills landed inside a transaction"
    );
    // The last run reads to the end and stops by itself.
    let mut last = Background::start(p.dir(), p.file(), &[]);
    let log = last.finish(Duration::from_secs(300));
    assert!(log.contains("restoring from checkpoint"), "{log}");

    let want = expected(RECORDS);
    let got = committed_windows(b, "eos-loop-out");
    assert_eq!(got.len(), want.len(), "every window once");
    assert!(got == want, "window counts differ from the input's");
    // Kills landed inside transactions: their records were written and
    // aborted, so a read_uncommitted reader sees more.
    let uncommitted = read_isolated(b, "eos-loop-out", 1, "read_uncommitted").len();
    eprintln!(
        "MEASURED exactly-once, {kills} SIGKILLs: read_committed {} windows, read_uncommitted {uncommitted} records",
        got.len()
    );
    assert!(
        uncommitted > got.len(),
        "aborted records exist ({uncommitted} read_uncommitted, {} committed)",
        got.len()
    );
    // The poison record's dead letter, once.
    let dead = read_all(b, "eos-loop-dlq", 1);
    assert_eq!(dead.len(), 1, "one dead letter: {dead:?}");
    assert_eq!(String::from_utf8_lossy(&dead[0].value), POISON);
    assert!(dead[0].headers.iter().any(|(k, _)| k == "weir.reason"));
}

#[test]
fn a_broker_restart_mid_stream_ends_with_exact_output_and_weir_keeps_running() {
    let cluster = Cluster::dedicated(1, "eos-restart");
    let b = cluster.0.bootstrap.as_str();
    let n = 300_000;
    create_topic(b, "eos-restart-in", 1);
    produce_records(b, "eos-restart-in", &input(n));
    let p = Pipeline::new(&pipeline(b, "eos-restart"));
    let mut run = Background::start(p.dir(), p.file(), &[]);
    run.wait_until("a third of the output", Duration::from_secs(60), || {
        end_offsets(b, "eos-restart-out", 1)[0] >= (n / 1000 / 3) as i64
    });
    // The operator's view while it runs: the guarantee, the transactional
    // id and commits, in `weir status` and in /metrics.
    let status = run.status();
    assert_eq!(status["guarantee"], "exactly-once", "{status}");
    assert_eq!(
        status["transactions"]["transactional_id"],
        "weir-p-eos-restart"
    );
    assert!(
        status["transactions"]["commits"].as_u64().unwrap() > 0,
        "{status}"
    );
    let out = run_with_timeout(&mut run.client("status"), Duration::from_secs(30));
    let (text, _) = texts(&out);
    assert!(text.contains("guarantee: exactly-once"), "{text}");
    assert!(
        text.contains("transactions (weir-p-eos-restart):"),
        "{text}"
    );
    let (code, metrics) = http("GET", &format!("http://{}/metrics", run.admin), None, None);
    assert_eq!(code, 200);
    assert!(
        metrics
            .contains("weir_transactions_committed_total{transactional_id=\"weir-p-eos-restart\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_transactions_aborted_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("weir_pipeline_guarantee{guarantee=\"exactly-once\"} 1"),
        "{metrics}"
    );
    cluster.0.restart(1);
    let log = run.finish(Duration::from_secs(300));
    let got = committed_windows(b, "eos-restart-out");
    assert!(
        got == expected(n),
        "exact output across the broker restart:\n{log}"
    );
}

#[test]
fn a_second_process_with_the_same_instance_on_this_host_is_refused() {
    let b = broker();
    create_topic(b, "eos-twice-in", 1);
    produce_records(b, "eos-twice-in", &input(300_000));
    let p = Pipeline::new(&pipeline(b, "eos-twice"));
    let mut first = Background::start(p.dir(), p.file(), &[]);
    let out = run_with_timeout(weir().arg("run").arg(p.file()), Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("instance weir-p-eos-twice is in use by another weir on this host")
            && stderr.contains(&format!("(pid {})", first.child.id())),
        "{stderr}"
    );
    // The first goes on undisturbed.
    first.finish(Duration::from_secs(300));
    assert!(committed_windows(b, "eos-twice-out") == expected(300_000));
}

#[test]
fn a_second_process_with_the_same_instance_elsewhere_fences_the_first() {
    let b = broker();
    create_topic(b, "eos-fence-in", 1);
    produce_records(b, "eos-fence-in", &input(400_000));
    // The first never stops at the end of the input: on a slow machine it
    // could otherwise finish before the second has taken its place.
    let p = Pipeline::new(
        &pipeline(b, "eos-fence").replace("exit_at_end = true", "exit_at_end = false"),
    );
    let first = Background::start(p.dir(), p.file(), &[]);
    first.wait_until("output", Duration::from_secs(60), || {
        end_offsets(b, "eos-fence-out", 1)[0] > 20
    });
    // Another lock directory stands for another host: only Kafka can tell
    // the two apart.
    let second_dir = tempdir();
    let second_file = write(
        second_dir.path(),
        "p.toml",
        &std::fs::read_to_string(p.file())
            .unwrap()
            .replace("exit_at_end = false", "exit_at_end = true"),
    );
    let mut second = Background::start_with_env(
        second_dir.path(),
        &second_file,
        &[("WEIR_LOCK_DIR", &second_dir.path().join("locks"))],
    );
    let mut first = first;
    let status = first.exit_status(Duration::from_secs(60));
    let log = first.log_text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("weir-p-eos-fence") && log.contains("another process took it over"),
        "{log}"
    );
    second.finish(Duration::from_secs(300));
    let got = committed_windows(b, "eos-fence-out");
    assert!(got == expected(400_000), "the survivor's output is exact");
}

/// A fence at the first checkpoint (injected: librdkafka's mock cluster
/// answers the first AddPartitionsToTxn, the changelog's, with
/// PRODUCER_FENCED) stops weir for good, naming the rival: `weir run`
/// starts a pipeline again after an aborted transaction, but one started
/// after a fence would fence the rival back. The race of the test above,
/// a sink meeting the fence just before a checkpoint's state write, is
/// pinned down in `kafka::exactly_once::tests`.
#[test]
fn a_fence_at_a_checkpoint_stops_weir_for_good_naming_the_rival() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let mock = MockCluster::with_topic(1, "eos-mockfence-in", 1);
    for topic in ["state", "out", "dlq"] {
        mock.create_topic(&format!("eos-mockfence-{topic}"), 1);
    }
    let bootstrap = mock.bootstrap();
    produce_records(&bootstrap, "eos-mockfence-in", &input(2_000));
    // One window for the whole input, and no end: only a failure ends it.
    let file = pipeline(&bootstrap, "eos-mockfence")
        .replace(r#"window = "1s""#, r#"window = "1d""#)
        .replace("exit_at_end = true", "exit_at_end = false");
    mock.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    let p = Pipeline::new(&file);
    let mut run = Background::start(p.dir(), p.file(), &[]);
    let status = run.exit_status(Duration::from_secs(60));
    let log = run.log_text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(r#"Failed to add partition "eos-mockfence-state""#),
        "the fence did not meet the checkpoint:\n{log}"
    );
    assert!(
        log.contains("weir-p-eos-mockfence") && log.contains("another process took it over"),
        "{log}"
    );
    assert!(!log.contains("starting it again"), "{log}");
}

#[test]
fn pipelines_that_cannot_be_exactly_once_are_refused_naming_the_stage() {
    let p = Pipeline::new(
        r#"
guarantee = "exactly-once"
state_dir = "state"

[sources.log]
type = "replay"
path = "in.txt"
format = "lines"

[sinks.out]
type = "kafka"
inputs = ["log"]
brokers = "localhost:9092"
topic = "t"
dead_letter = "print"

[sinks.weak]
type = "kafka"
inputs = ["log"]
brokers = "localhost:9092"
topic = "t"
acks = "1"

[sinks.print]
type = "console"
inputs = ["log"]

[sinks.other]
type = "kafka"
inputs = ["log"]
brokers = "elsewhere:9092"
topic = "t"

[sinks.packed]
type = "kafka"
inputs = ["log"]
brokers = "localhost:9092"
topic = "t"
compression = "zstd"
"#,
    )
    .with_file("in.txt", "a\n");
    let out = run_with_timeout(
        weir().arg("validate").arg(p.file()),
        Duration::from_secs(30),
    );
    let (stdout, _) = texts(&out);
    assert!(!out.status.success());
    for needle in [
        "p.toml:2: exactly-once keeps plugin state in Kafka",
        "source `log` (replay) cannot be part of an exactly-once pipeline",
        "sink `weak` (kafka) cannot be part of an exactly-once pipeline: transactions need acks = \"all\"",
        "sink `print` (console) cannot be part of an exactly-once pipeline",
        "sink `out` sets `dead_letter`: under exactly-once a record a sink cannot write fails the transaction",
        "sink `other` uses brokers `elsewhere:9092`, but `out` uses `localhost:9092`",
        "sink `packed` sets producer settings (`compression`, `options`) other than sink `out`'s",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}
