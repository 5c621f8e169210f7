//! What `acks` means when a broker dies, on a 3-broker Apache Kafka cluster
//! with `min.insync.replicas = 2`: 100,000 records go through the Kafka
//! sink while the partition's leader is killed with SIGKILL. With
//! `acks = "all"` none is lost; what `acks = "1"` and `"0"` lose is
//! measured and printed (docs/kafka-guarantees.md records the figures), not
//! asserted: it depends on timing. An exactly-once pipeline through the
//! kill of the broker that both leads its output and coordinates its
//! transactions shows each record once to read_committed readers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::kafka::*;
use crate::common::*;

/// The tests here kill brokers of the one shared 3-node cluster: one at a
/// time, or two brokers would be down at once (below min.insync.replicas).
static CLUSTER_FAULTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the cluster for a test that kills brokers.
fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER_FAULTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records produced in each case.
const RECORDS: usize = 100_000;

/// Produces `RECORDS` lines through a Kafka sink with `acks`, kills the
/// partition leader a third of the way, and returns (lost, duplicated).
fn run_case(cluster: &Cluster, acks: &str, idempotent: bool) -> (usize, usize) {
    let b = cluster.bootstrap.as_str();
    let topic = format!("acks-{acks}-{idempotent}");
    create_topic_with(b, &topic, 1, 3, &[("min.insync.replicas", "2")]);
    let input: String = (0..RECORDS).map(|i| format!("{i}\n")).collect();
    let p = Pipeline::new(&format!(
        r#"
[sources.lines]
type = "replay"
path = "in.txt"
format = "lines"
rate = 20000

[sinks.out]
type = "kafka"
inputs = ["lines"]
brokers = "{b}"
topic = "{topic}"
acks = "{acks}"
idempotent = {idempotent}
options = {{ "message.timeout.ms" = 60000 }}
"#
    ))
    .with_file("in.txt", &input);
    let mut run = Background::start(p.dir(), p.file(), &[]);
    let leader = leader_of(b, &topic, 0);
    run.wait_until("a third of the records", Duration::from_secs(60), || {
        end_offsets(b, &topic, 1)[0] >= (RECORDS / 3) as i64
    });
    cluster.kill(leader as u32);
    let killed = Instant::now();
    let log = run.finish(Duration::from_secs(180));
    cluster.restart(leader as u32);
    eprintln!(
        "acks={acks} idempotent={idempotent}: leader {leader} killed; weir finished {:.1}s later",
        killed.elapsed().as_secs_f64()
    );
    let records = read_all(b, &topic, 1);
    let distinct: BTreeSet<String> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect();
    let lost = RECORDS - distinct.len();
    let duplicated = records.len() - distinct.len();
    eprintln!("acks={acks} idempotent={idempotent}: lost {lost}, duplicated {duplicated}\n{log}");
    (lost, duplicated)
}

#[test]
fn acks_all_loses_nothing_when_the_leader_dies_and_the_weaker_levels_are_measured() {
    let _cluster = exclusive();
    let cluster = cluster3();
    let (lost, duplicated) = run_case(cluster, "all", true);
    assert_eq!(lost, 0, "acks = all, min.insync.replicas = 2: nothing lost");
    assert_eq!(
        duplicated, 0,
        "the idempotent producer writes each record once"
    );
    let (lost, duplicated) = run_case(cluster, "all", false);
    assert_eq!(lost, 0, "acks = all without idempotence: nothing lost");
    eprintln!("MEASURED acks=all idempotent=false duplicated={duplicated}");
    for acks in ["1", "0"] {
        let (lost, duplicated) = run_case(cluster, acks, false);
        eprintln!("MEASURED acks={acks} lost={lost} duplicated={duplicated}");
    }
}

/// Counts of a topic's distinct and total records, apart from the plugin's
/// closing `total=N` line.
fn tally(records: &[Record]) -> (usize, usize) {
    let echoed: Vec<&[u8]> = records
        .iter()
        .map(|r| &r.value[..])
        .filter(|v| !v.starts_with(b"total="))
        .collect();
    let distinct: BTreeSet<&[u8]> = echoed.iter().copied().collect();
    (distinct.len(), echoed.len())
}

/// The broker killed is the worst one to lose: the output partition's
/// leader and the transaction coordinator at once (the output topic is
/// placed so), so in-flight batches move to a new leader while the
/// transaction's state moves to a new coordinator.
#[test]
fn exactly_once_through_a_leader_kill_shows_each_record_once_to_read_committed_readers() {
    let _cluster = exclusive();
    let cluster = cluster3();
    let b = cluster.bootstrap.as_str();
    const N: usize = 300_000;
    let isr = [("min.insync.replicas", "2")];
    create_topic_with(b, "eos-rep-in", 1, 3, &isr);
    // The pipeline file is `p.toml`: transactional id `weir-p-rep`.
    let leader = transaction_coordinator(b, "weir-p-rep");
    let followers: Vec<i32> = (1..=3).filter(|&n| n != leader).collect();
    create_topic_on(
        b,
        "eos-rep-out",
        &[leader, followers[0], followers[1]],
        &isr,
    );
    produce(
        b,
        "eos-rep-in",
        (0..N).map(|i| format!("r{i}").into_bytes()),
    );
    let p = Pipeline::new(&format!(
        r#"
guarantee = "exactly-once"
instance_id = "rep"
changelog = "eos-rep-state"

[sources.in]
type = "kafka"
brokers = "{b}"
topic = "eos-rep-in"
group = "eos-rep"
start = "earliest"
exit_at_end = true

[transforms.echo]
type = "wasm"
inputs = ["in"]
plugin = "@plugin(chaos)"

[sinks.out]
type = "kafka"
inputs = ["echo"]
brokers = "{b}"
topic = "eos-rep-out"
"#
    ));
    let mut run = Background::start(p.dir(), p.file(), &[]);
    run.wait_until("a third of the records", Duration::from_secs(60), || {
        end_offsets(b, "eos-rep-out", 1)[0] >= (N / 3) as i64
    });
    assert_eq!(
        transaction_coordinator(b, "weir-p-rep"),
        leader,
        "the coordinator stayed"
    );
    cluster.kill(leader as u32);
    let killed = Instant::now();
    // A transaction the broker aborted while its leader was away stops
    // the process (it would have to rewind); like a supervisor, start it
    // again: it resumes from the last commit.
    let mut restarts = 0;
    let log = loop {
        let status = run.exit_status(Duration::from_secs(300));
        if status.success() {
            break run.log_text();
        }
        restarts += 1;
        assert!(restarts <= 3, "weir kept failing:\n{}", run.log_text());
        run = Background::start(p.dir(), p.file(), &[]);
    };
    let took = killed.elapsed().as_secs_f64();
    cluster.restart(leader as u32);
    let committed = read_all(b, "eos-rep-out", 1);
    let (committed_distinct, committed_total) = tally(&committed);
    // The plugin's count, carried in its state across the kill, closes the
    // output once.
    let totals: Vec<String> = committed
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .filter(|v| v.starts_with("total="))
        .collect();
    let (uncommitted_distinct, uncommitted_total) =
        tally(&read_isolated(b, "eos-rep-out", 1, "read_uncommitted"));
    eprintln!(
        "MEASURED exactly-once leader {leader} killed: finished {took:.1}s later, {restarts} restarts; \
         read_committed {committed_total} records ({} lost, {} duplicated); \
         read_uncommitted {uncommitted_total} records ({} lost, {} duplicated)\n{log}",
        N - committed_distinct,
        committed_total - committed_distinct,
        N - uncommitted_distinct,
        uncommitted_total - uncommitted_distinct,
    );
    assert_eq!(committed_distinct, N, "read_committed: nothing lost");
    assert_eq!(committed_total, N, "read_committed: nothing twice");
    assert_eq!(
        totals,
        [format!("total={N}")],
        "the plugin's state counted each once"
    );
}
