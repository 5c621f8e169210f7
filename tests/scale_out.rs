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
/// Record `i` of an input with `parts` partitions.
fn record_in(i: usize, parts: i32) -> Rec {
    let p = (i % parts as usize) as i32;
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
fn closers_in(n: usize, parts: i32) -> Vec<Rec> {
    (0..parts)
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
    expected_in(n, PARTITIONS)
}

fn expected_in(n: usize, parts: i32) -> Windows {
    let mut w = Windows::new();
    for i in 0..n {
        let v: serde_json::Value = serde_json::from_str(&record_in(i, parts).value).unwrap();
        let start = (t0() + i as i64).div_euclid(1000) * 1000;
        *w.entry((start, v["g"].as_str().unwrap().to_owned()))
            .or_default() += 1;
    }
    w
}

/// Every (window, key) count in the output as read with `isolation`, each
/// emission listed.
fn emitted(bootstrap: &str, topic: &str, isolation: &str) -> BTreeMap<(i64, String), Vec<u64>> {
    emitted_in(bootstrap, topic, isolation, PARTITIONS)
}

fn emitted_in(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    parts: i32,
) -> BTreeMap<(i64, String), Vec<u64>> {
    let mut out: BTreeMap<(i64, String), Vec<u64>> = BTreeMap::new();
    for r in read_isolated(bootstrap, topic, parts, isolation) {
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
    pipeline_with(
        bootstrap,
        name,
        guarantee,
        "@plugin(gender-count)",
        PARTITIONS,
    )
}

fn pipeline_with(bootstrap: &str, name: &str, guarantee: &str, plugin: &str, parts: i32) -> String {
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
plugin = "{plugin}"
config = {{ key = "g", time = "event", window = "1s" }}

[sinks.out]
type = "kafka"
inputs = ["count"]
brokers = "{bootstrap}"
topic = "{name}-out"
create_topic = {{ partitions = {parts} }}
"#
    )
}

/// Produces `n` records of a `parts`-partition input in ten chunks three
/// seconds apart, then the closers.
fn produce_slowly(b: &str, input: &str, n: usize, parts: i32) -> std::thread::JoinHandle<()> {
    let (b, input) = (b.to_owned(), input.to_owned());
    std::thread::spawn(move || {
        let chunk = n / 10;
        for c in 0..10 {
            let recs: Vec<Rec> = (c * chunk..(c + 1) * chunk)
                .map(|i| record_in(i, parts))
                .collect();
            produce_records(&b, &input, &recs);
            std::thread::sleep(Duration::from_secs(3));
        }
        produce_records(&b, &input, &closers_in(n, parts));
    })
}

/// A `parts`-partition input of `n` records arriving over ~30 s, counted
/// by gender-count under `guarantee`: the pipeline, its output topic and
/// the producing thread.
fn slow_input(
    name: &str,
    guarantee: &str,
    parts: i32,
    n: usize,
) -> (Pipeline, String, std::thread::JoinHandle<()>) {
    slow_input_edited(name, guarantee, parts, n, |text| text)
}

/// [`slow_input`] with the pipeline's text changed by `edit`.
fn slow_input_edited(
    name: &str,
    guarantee: &str,
    parts: i32,
    n: usize,
    edit: impl Fn(String) -> String,
) -> (Pipeline, String, std::thread::JoinHandle<()>) {
    let b = broker();
    create_topic(b, &format!("{name}-in"), parts);
    let p = Pipeline::new(&edit(pipeline_with(
        b,
        name,
        guarantee,
        "@plugin(gender-count)",
        parts,
    )));
    let producer = produce_slowly(b, &format!("{name}-in"), n, parts);
    (p, format!("{name}-out"), producer)
}

/// What [`join_and_leave`] saw: the first process's whole log, and the
/// second's when it had joined and when it had left.
struct JoinAndLeave {
    first: String,
    joined: String,
    left: String,
}

/// One process runs; a second joins 4 s later and leaves with SIGTERM 8 s
/// after that; once the input is produced and every window of an
/// `n`-record input is in `out`, the first stops too.
fn join_and_leave(
    p: &Pipeline,
    name: &str,
    out: &str,
    parts: i32,
    n: usize,
    producer: std::thread::JoinHandle<()>,
) -> JoinAndLeave {
    let b = broker();
    let (mut a, _da) = instance(p.file(), &format!("{name}-a"));
    a.wait_for("task started", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(4));
    let (mut second, _ds) = instance(p.file(), &format!("{name}-b"));
    let joined = second.wait_for("task started", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(8));
    signal(&second.child, libc::SIGTERM);
    assert!(
        second.exit_status(Duration::from_secs(60)).success(),
        "{}",
        second.log_text()
    );
    let left = second.log_text();
    producer.join().unwrap();
    wait_for_windows(b, out, parts, &expected_in(n, parts), &a);
    signal(&a.child, libc::SIGTERM);
    a.exit_status(Duration::from_secs(60));
    JoinAndLeave {
        first: a.log_text(),
        joined,
        left,
    }
}

/// Waits until every window of `want` is in `out`.
fn wait_for_windows(b: &str, out: &str, parts: i32, want: &Windows, log: &Background) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let got = emitted_in(b, out, "read_committed", parts);
        if want.keys().all(|k| got.contains_key(k)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} window counts out; log:\n{}",
            got.len(),
            want.len(),
            log.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Asserts every window count of `want` is in `got` once, exactly.
fn assert_exact(got: &BTreeMap<(i64, String), Vec<u64>>, want: &Windows) {
    let duplicated = got.values().filter(|c| c.len() > 1).count();
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, n)| got.get(*k).and_then(|c| c.first()) != Some(n))
        .take(5)
        .collect();
    assert_eq!(duplicated, 0, "a window count emitted twice");
    assert!(wrong.is_empty(), "counts differ or are missing: {wrong:?}");
    assert_eq!(got.len(), want.len(), "every window count once");
}

/// A process of the group, instance `id`, logging to a directory of its own.
fn instance(file: &Path, id: &str) -> (Background, tempfile::TempDir) {
    let dir = tempdir();
    let bg = Background::start_with_env(
        dir.path(),
        file,
        &[
            ("WEIR_INSTANCE_ID", Path::new(id)),
            ("RUST_LOG", Path::new("weir=info")),
        ],
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
    let producer = produce_slowly(b, &input, n, PARTITIONS);
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
    assert!(
        wrong.is_empty(),
        "counts differ: {:?}",
        &wrong[..wrong.len().min(5)]
    );
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

#[test]
fn at_least_once_hand_overs_move_open_windows_through_the_changelog() {
    // Joins and SIGTERM leaves only: every hand-over writes the tasks'
    // state to the changelog before committing, so nothing is read twice
    // and every window is counted once, exactly.
    let (name, parts, n) = ("scale-alo-move", 4, 200_000);
    let (p, out, producer) = slow_input(name, "at-least-once", parts, n);
    let seen = join_and_leave(&p, name, &out, parts, n, producer);
    assert_exact(
        &emitted_in(broker(), &out, "read_committed", parts),
        &expected_in(n, parts),
    );
    // The state went through the changelog both ways.
    let (first, joined, left) = (&seen.first, &seen.joined, &seen.left);
    assert!(
        first.contains("its state went to the changelog with its partition"),
        "{first}"
    );
    assert!(
        joined.contains("plugin state restored from the changelog"),
        "{joined}"
    );
    assert!(
        left.contains("its state went to the changelog with its partition"),
        "{left}"
    );
    assert!(
        first.contains("plugin state restored from the changelog"),
        "the first process took the second's partitions back with their state:\n{first}"
    );
}

#[test]
fn at_least_once_loses_nothing_when_hand_overs_run_out_of_time() {
    // A rebalance timeout of 1 ms: hand-overs cannot wait for the output in
    // flight, so the state written for a partition is not used (or not
    // written) and the records its tasks held are read again. Nothing may
    // be lost, and no window may count a record twice.
    let (name, parts, n) = ("scale-alo-hurried", 4, 200_000);
    let (p, out, producer) = slow_input_edited(name, "at-least-once", parts, n, |text| {
        text.replace(
            "commit_interval = \"1s\"",
            "commit_interval = \"1s\"\nrebalance_timeout = \"1ms\"",
        )
    });
    let seen = join_and_leave(&p, name, &out, parts, n, producer);
    let got = emitted_in(broker(), &out, "read_committed", parts);
    for (k, expected_count) in &expected_in(n, parts) {
        let counts = got.get(k).unwrap_or_else(|| panic!("window {k:?} lost"));
        assert!(
            counts.contains(expected_count) && counts.iter().all(|c| c <= expected_count),
            "window {k:?}: emitted {counts:?}, input has {expected_count}"
        );
    }
    let logs = format!("{}\n{}", seen.first, seen.left);
    assert!(
        logs.contains("task released without its state")
            || logs.contains("not everything read from the partitions was delivered in time"),
        "the hand-overs ran out of time:\n{logs}"
    );
}

#[test]
fn a_process_paused_past_its_session_is_fenced_and_adds_no_duplicate() {
    let (name, parts, n) = ("scale-zombie", 4, 200_000);
    let b = broker();
    let (p, out, producer) = slow_input(name, "exactly-once", parts, n);
    let (mut a, _da) = instance(p.file(), &format!("{name}-a"));
    a.wait_for("task started", Duration::from_secs(60));
    let (mut z, _dz) = instance(p.file(), &format!("{name}-z"));
    z.wait_for("task started", Duration::from_secs(60));
    // Paused well past the 6 s session timeout: its partitions go to `a`.
    signal(&z.child, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(15));
    signal(&z.child, libc::SIGCONT);
    producer.join().unwrap();
    let want = expected_in(n, parts);
    wait_for_windows(b, &out, parts, &want, &a);
    // The zombie found its partitions gone or its transaction aborted:
    // what it did since its last commit was refused, and it started again
    // from the commits.
    let zombie_log = z.wait_for(
        "starting it again from the last commit",
        Duration::from_secs(60),
    );
    signal(&z.child, libc::SIGTERM);
    z.exit_status(Duration::from_secs(60));
    signal(&a.child, libc::SIGTERM);
    a.exit_status(Duration::from_secs(60));
    assert_exact(&emitted_in(b, &out, "read_committed", parts), &want);
    // Which it notices first depends on timing: the group taking its
    // partitions, the broker having aborted its transaction, a record
    // queued before the pause timing out, or librdkafka stuck sending the
    // offsets to a coordinator that moved on (given up after 10 s;
    // docs/kafka-guarantees.md).
    assert!(
        zombie_log.contains("without a hand-over")
            || zombie_log.contains("so the broker aborted it")
            || zombie_log.contains("so the transaction is aborted")
            || zombie_log.contains("send_offsets_to_transaction did not return"),
        "the zombie says its partitions or its transaction were taken:\n{zombie_log}"
    );
}

#[test]
fn a_second_process_with_the_same_instance_id_is_refused() {
    let name = "scale-twice";
    let b = broker();
    create_topic(b, &format!("{name}-in"), 2);
    let p = Pipeline::new(&pipeline_with(
        b,
        name,
        "at-least-once",
        "@plugin(gender-count)",
        2,
    ));
    let id = format!("{name}-a");
    let (mut first, _d) = instance(p.file(), &id);
    let out = run_with_timeout(
        weir().arg("run").arg(p.file()).env("WEIR_INSTANCE_ID", &id),
        Duration::from_secs(60),
    );
    let (_, stderr) = texts(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "weir-p-{id} is in use by another weir on this host"
        )) && stderr.contains(&format!("(pid {})", first.child.id())),
        "{stderr}"
    );
    signal(&first.child, libc::SIGTERM);
    assert!(first.exit_status(Duration::from_secs(60)).success());
}

#[test]
fn a_plugin_swap_applies_to_every_task_each_keeping_its_state() {
    let (name, parts, n) = ("scale-swap", 3, 300_000);
    let b = broker();
    create_topic(b, &format!("{name}-in"), parts);
    let p = Pipeline::new(&pipeline_with(b, name, "exactly-once", "gc.wasm", parts));
    std::fs::copy(plugin("gender-count"), p.path("gc.wasm")).unwrap();
    let out = format!("{name}-out");
    let producer = produce_slowly(b, &format!("{name}-in"), n, parts);
    let (mut run, _d) = instance(p.file(), &format!("{name}-a"));
    run.wait_until("three tasks with output", Duration::from_secs(120), || {
        end_offsets(b, &out, parts).iter().sum::<i64>() > 30
    });
    // One task per partition, shown in /status.
    run.wait_until("three tasks", Duration::from_secs(60), || {
        stage(&run.status(), "count")["counters"]["partitions"] == serde_json::json!([0, 1, 2])
    });
    replace_file(&plugin_next(), &p.path("gc.wasm"));
    let (code, report) = http("POST", &format!("http://{}/reload", run.admin), None, None);
    assert_eq!(code, 200, "{report}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["swapped"], serde_json::json!(["count"]), "{report}");
    producer.join().unwrap();
    let want = expected_in(n, parts);
    wait_for_windows(b, &out, parts, &want, &run);
    signal(&run.child, libc::SIGTERM);
    let log = run.log_text();
    run.exit_status(Duration::from_secs(60));
    assert!(
        log.contains("plugin swapped in with the running state partitions=3"),
        "{log}"
    );
    // Every window exact, the ones open during the swap included, and the
    // new build wrote the later ones.
    assert_exact(&emitted_in(b, &out, "read_committed", parts), &want);
    let next = read_isolated(b, &out, parts, "read_committed")
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.value).contains(r#""build":"next""#))
        .count();
    assert!(next > 0, "the new build produced output");
}

#[test]
fn stages_whose_partitions_do_not_fit_are_refused_at_start() {
    let b = broker();
    create_topic(b, "scale-fit-a", 3);
    create_topic(b, "scale-fit-b", 2);
    let p = Pipeline::new(&format!(
        r#"
[sources.a]
type = "kafka"
brokers = "{b}"
topic = "scale-fit-a"

[sources.b]
type = "kafka"
brokers = "{b}"
topic = "scale-fit-b"

[transforms.joined]
type = "wasm"
inputs = ["a", "b"]
plugin = "@plugin(chaos)"

[transforms.everything]
type = "wasm"
inputs = ["a"]
plugin = "@plugin(chaos)"
scope = "global"

[sinks.out]
type = "console"
inputs = ["joined", "everything"]
"#
    ));
    let out = run_with_timeout(weir().arg("run").arg(p.file()), Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stage `joined`: its Kafka inputs are not co-partitioned (`scale-fit-a` has 3, `scale-fit-b` has 2)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stage `everything`: scope = \"global\" keeps one state for the whole input, but its Kafka input has more than one partition (`scale-fit-a` has 3)"),
        "{stderr}"
    );
}
