//! A `wasm` stage running several instances (`instances`), each on a
//! thread of its own, through the real binary: keyed routing keeps every
//! key's count in one place and adds up to a one-instance run; the state of
//! each instance survives a restart, and a changed instance count is
//! refused (or reset when asked); a plugin swap carries every instance's
//! state, and a reload that changes the count is refused; images spread by
//! file name come out as with one instance; the tasks of Kafka partitions
//! spread over the instances count as with one; ticks reach the tasks out
//! on the instances' threads; an instance that fails for good stops weir
//! with nothing committed that was not delivered.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::reload_plugin_swap::{PER_WINDOW, event_log, window_total};

/// The log of `event_log` (CSV rows `ts,g` as JSON objects) counted by
/// `g` per 1 s of event time into `out.jsonl`; `top` before the tables,
/// `source` and `stage` added to the source and the wasm stage.
fn keyed_pipeline(top: &str, source: &str, stage: &str) -> String {
    counting_pipeline(
        top,
        &format!(
            r#"type = "replay"
path = "log.csv"
format = "csv"
timestamp = "ts"
{source}"#
        ),
        stage,
    )
}

/// Source `log` (its settings in `source`) counted by `g` per 1 s of event
/// time by gender-count (`gc.wasm`, with `stage` added) into `out.jsonl`.
fn counting_pipeline(top: &str, source: &str, stage: &str) -> String {
    format!(
        r#"{top}
[sources.log]
{source}

[transforms.count]
type = "wasm"
inputs = ["log"]
plugin = "gc.wasm"
config = {{ key = "g", window = "1s", time = "event", format = "json" }}
{stage}

[sinks.out]
type = "file"
inputs = ["count"]
path = "out.jsonl"
"#
    )
}

/// Counts by (window start, key) in gender-count's JSON lines; panics when
/// one (window, key) is counted on two lines: its events went to two
/// instances.
fn counts_by_window_and_key(lines: &[String]) -> BTreeMap<(i64, String), u64> {
    let mut all = BTreeMap::new();
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let start = v["window_start"].as_i64().unwrap();
        for (key, n) in v["counts"].as_object().unwrap() {
            let before = all.insert((start, key.clone()), n.as_u64().unwrap());
            assert!(
                before.is_none(),
                "window {start}, key {key} on two lines:\n{lines:#?}"
            );
        }
    }
    all
}

/// The keys of each output line, as text.
fn key_sets(lines: &[String]) -> std::collections::BTreeSet<String> {
    lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let keys: Vec<&String> = v["counts"].as_object().unwrap().keys().collect();
            format!("{keys:?}")
        })
        .collect()
}

#[test]
fn keyed_instances_count_every_key_in_one_place_and_add_up_to_one_instance() {
    const N: usize = 100_000;
    let run = |stage: &str| {
        let p = Pipeline::new(&keyed_pipeline("", "", stage));
        event_log(p.dir(), N);
        std::fs::copy(plugin("gender-count"), p.path("gc.wasm")).unwrap();
        let log = p.run_ok(Duration::from_secs(120));
        (p.lines("out.jsonl"), log)
    };
    let (one, _) = run("");
    let (two, log) = run("instances = 2\nkey_field = \"g\"");
    let want = counts_by_window_and_key(&one);
    let got = counts_by_window_and_key(&two);
    assert_eq!(got, want, "the same counts per window and key");
    assert_eq!(want.len(), N / PER_WINDOW * 3, "three keys per window");
    // Keys 0 and 2 go to the first instance, key 1 to the second (Kafka's
    // partitioner's choice for a two-partition topic): two lines per
    // window, each with the keys of its instance.
    assert_eq!(one.len(), N / PER_WINDOW);
    assert_eq!(two.len(), 2 * N / PER_WINDOW, "{two:#?}");
    assert_eq!(
        key_sets(&two),
        ["[\"0\", \"2\"]".to_owned(), "[\"1\"]".to_owned()].into(),
        "{two:#?}"
    );
    assert_eq!(stage_total(&log, "count", "events_in"), N as u64, "{log}");
}

#[test]
fn each_instance_keeps_its_state_over_a_restart_and_a_changed_count_is_refused() {
    const N: usize = 100_000;
    const TOP: &str = "state_dir = \"state\"\ncheckpoint_interval = \"200ms\"\n";
    let stage = "instances = 2\nkey_field = \"g\"";
    let p = Pipeline::new(&keyed_pipeline(TOP, "rate = 40000", stage));
    event_log(p.dir(), N);
    std::fs::copy(plugin("gender-count"), p.path("gc.wasm")).unwrap();
    // Stopped half way: the final checkpoint keeps both instances' open
    // windows.
    let weir = p.start();
    let out = p.path("out.jsonl");
    wait_until(
        Duration::from_secs(30),
        || lines(&out).len() >= 2,
        || "no output".into(),
    );
    let first = weir.stop();
    assert!(first.contains("final checkpoint written"), "{first}");
    let checkpoint: Value = serde_json::from_str(&p.read("state/checkpoint.json")).unwrap();
    let saved = &checkpoint["stages"]["count"];
    assert!(
        saved["state"].as_str().is_some_and(|s| !s.is_empty()),
        "{checkpoint}"
    );
    assert!(
        saved["lanes"]["1"]["state"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "the second instance's state: {checkpoint}"
    );
    let before = lines(&out).len();
    assert!(before < N / PER_WINDOW * 2, "stopped before the end");

    // Restarted: every window and key counted once, in full.
    let second = p.run_ok(Duration::from_secs(120));
    assert!(second.contains("restoring from checkpoint"), "{second}");
    let all = lines(&out);
    let got = counts_by_window_and_key(&all);
    // What `event_log` wrote, counted here.
    let mut want = BTreeMap::new();
    for i in 0..N {
        let start = 1_700_000_000_000 + (i / PER_WINDOW) as i64 * 1000;
        *want.entry((start, (i % 3).to_string())).or_insert(0) += 1;
    }
    assert_eq!(got, want);
    let total: u64 = all.iter().map(|l| window_total(l)).sum();
    assert_eq!(total, N as u64);

    // Three instances cannot take the state of two.
    let three = "instances = 3\nkey_field = \"g\"";
    replace_pipeline(p.file(), &keyed_pipeline(TOP, "", three));
    let refused = p.run_failing(Duration::from_secs(60));
    assert!(
        refused.contains("the saved state was kept by 2 instance(s) and `instances` is now 3"),
        "{refused}"
    );
    // Nor can the same two instances when keys would be routed another way.
    let rerouted = "instances = 2\nkey_field = \"ts\"";
    replace_pipeline(p.file(), &keyed_pipeline(TOP, "", rerouted));
    let refused = p.run_failing(Duration::from_secs(60));
    assert!(
        refused.contains("the saved state was routed to the instances by field:g/2 and would now be routed by field:ts/2"),
        "{refused}"
    );
    // Unless asked to start empty.
    let reset = format!("{three}\non_incompatible_state = \"reset\"");
    replace_pipeline(p.file(), &keyed_pipeline(TOP, "", &reset));
    let log = p.run_ok(Duration::from_secs(60));
    assert!(log.contains("starting with empty state"), "{log}");
}

#[test]
fn a_swap_carries_every_instances_state_and_a_changed_count_waits_for_a_restart() {
    // 40 s of input at the paced rate, stopped once the three reloads are
    // done: on a slow machine those can take longer than a few seconds.
    const N: usize = 1_000_000;
    let stage = "instances = 2\nkey_field = \"g\"";
    let p = Pipeline::new(&keyed_pipeline("", "rate = 25000", stage));
    event_log(p.dir(), N);
    let gc = p.path("gc.wasm");
    std::fs::copy(plugin("gender-count"), &gc).unwrap();
    let out = p.path("out.jsonl");
    // Built before the paced replay starts: a build after it could take
    // longer than the replay on a loaded machine.
    let next = plugin_next();
    let weir = p.start();
    wait_until(
        Duration::from_secs(30),
        || lines(&out).len() >= 4,
        || "no output".into(),
    );
    // A new build of the plugin takes over with both instances' state.
    replace_file(&next, &gc);
    let r = weir.wait_for_reload(1, Duration::from_secs(20));
    assert_eq!(r["ok"], true, "{r}");
    // A changed instance count is refused; the stage runs on.
    replace_pipeline(
        p.file(),
        &keyed_pipeline("", "rate = 25000", "instances = 3\nkey_field = \"g\""),
    );
    let r = weir.wait_for_reload(2, Duration::from_secs(20));
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r.to_string()
            .contains("`instances` cannot change while the stage runs (from 2 to 3)"),
        "{r}"
    );
    // Nor can the routing.
    replace_pipeline(
        p.file(),
        &keyed_pipeline("", "rate = 25000", "instances = 2\nkey_field = \"ts\""),
    );
    let r = weir.wait_for_reload(3, Duration::from_secs(20));
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r.to_string()
            .contains("`route` and `key_field` cannot change while the stage runs"),
        "{r}"
    );
    let log = weir.stop();
    assert!(
        log.contains("plugin swapped in with the running state"),
        "{log}"
    );
    let all = lines(&out);
    assert!(
        all.iter().any(|l| l.contains(r#""build":"next""#)),
        "{all:#?}"
    );
    // Every window that closed reports its full count over the two
    // instances' lines, the one open during the swap included.
    let mut per_window: BTreeMap<i64, u64> = BTreeMap::new();
    for l in &all {
        let v: Value = serde_json::from_str(l).unwrap();
        *per_window
            .entry(v["window_start"].as_i64().unwrap())
            .or_default() += window_total(l);
    }
    let last = *per_window.keys().last().unwrap();
    for (start, n) in &per_window {
        if *start != last {
            assert_eq!(*n, PER_WINDOW as u64, "window {start}: {all:#?}");
        }
    }
    counts_by_window_and_key(&all);
}

/// The grayscale job with two instances, images spread by file name and
/// (`route = "batch"`) each to the least busy instance: the same images
/// come out as with one.
#[test]
fn images_spread_by_file_name_or_to_the_least_busy_come_out_as_with_one_instance() {
    let run = |stage: &str| {
        let p = Pipeline::new(&format!(
            r#"
[sources.photos]
type = "images"
path = "@repo/data/images"
pattern = ["*.jpg", "*.png"]

[transforms.gray]
type = "wasm"
inputs = ["photos"]
plugin = "@plugin(grayscale)"
memory_limit = "256MiB"
timeout = "10s"
config = {{ output = "png" }}
dead_letter = "rejected"
{stage}

[sinks.out]
type = "directory"
inputs = ["gray"]
path = "out"
name = "key"

[sinks.rejected]
type = "directory"
path = "rejected"
name = "key"
"#
        ));
        let log = p.run_ok(Duration::from_secs(120));
        // Contents, sorted: a JPEG and a PNG of one picture share a name,
        // so which of them gets the `-1` suffix depends on arrival order.
        let files = |d: &str| -> Vec<Vec<u8>> {
            let mut all: Vec<Vec<u8>> = std::fs::read_dir(p.path(d))
                .unwrap()
                .map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect();
            all.sort();
            all
        };
        (files("out"), files("rejected"), log)
    };
    let (one, one_rejected, _) = run("");
    assert!(one.len() >= 10, "{} images", one.len());
    assert!(!one_rejected.is_empty(), "the broken samples are refused");
    for stage in ["instances = 2", "instances = 2\nroute = \"batch\""] {
        let (two, two_rejected, log) = run(stage);
        assert!(two == one, "the same gray images with {stage}");
        assert_eq!(two_rejected, one_rejected, "{stage}");
        assert_eq!(stage_total(&log, "gray", "errors"), 0, "{stage}: {log}");
    }
}

/// A Kafka-fed stage with two instances: the tasks of the topic's four
/// partitions are spread over the two threads, each partition's windows
/// stay whole in its task, the counts add up to a one-instance run's, and
/// the group's offsets are committed to the end of every partition.
#[test]
fn kafka_partitions_spread_over_instances_count_as_one_instance_does() {
    use crate::common::kafka::*;
    const N: usize = 20_000;
    const PARTITIONS: i32 = 4;
    const TOPIC: &str = "inst-kafka-in";
    let b = broker();
    create_topic(b, TOPIC, PARTITIONS);
    // Event time 10 ms apart: 100 events per second of event time, keys
    // 0..3 in turn, spread over the partitions by event number.
    let base = 1_700_000_000_000i64;
    let records: Vec<Rec> = (0..N)
        .map(|i| Rec {
            partition: (i / 7) as i32 % PARTITIONS,
            timestamp_ms: Some(base + 10 * i as i64),
            ..Rec::plain(0, format!(r#"{{"g":"{}"}}"#, i % 3))
        })
        .collect();
    produce_records(b, TOPIC, &records);
    let run = |group: &str, stage: &str| {
        let source = format!(
            r#"type = "kafka"
brokers = "@broker"
topics = ["{TOPIC}"]
group = "{group}"
start = "earliest"
exit_at_end = true"#
        );
        let p = Pipeline::new(&counting_pipeline("", &source, stage));
        std::fs::copy(plugin("gender-count"), p.path("gc.wasm")).unwrap();
        let log = p.run_ok(Duration::from_secs(120));
        assert_eq!(
            committed(b, group, TOPIC, PARTITIONS),
            end_offsets(b, TOPIC, PARTITIONS),
            "offsets committed to the end: {log}"
        );
        assert_eq!(stage_total(&log, "count", "events_in"), N as u64, "{log}");
        // Summed over the partitions' lines: each partition's task emits
        // its own line per window.
        let mut sums: BTreeMap<(i64, String), u64> = BTreeMap::new();
        let out = p.lines("out.jsonl");
        for line in &out {
            let v: Value = serde_json::from_str(line).unwrap();
            let start = v["window_start"].as_i64().unwrap();
            for (key, n) in v["counts"].as_object().unwrap() {
                *sums.entry((start, key.clone())).or_default() += n.as_u64().unwrap();
            }
        }
        (sums, out.len())
    };
    let (one, one_lines) = run("inst-kafka-1", "");
    let (two, two_lines) = run("inst-kafka-2", "instances = 2");
    assert_eq!(two, one, "the same counts per window and key");
    assert_eq!(one.values().sum::<u64>(), N as u64);
    assert_eq!(one.len(), N / 100 * 3, "three keys in each second");
    // One line per window and partition either way: the partitions' tasks,
    // not the instances, own the windows.
    assert_eq!(one_lines, N / 100 * PARTITIONS as usize);
    assert_eq!(two_lines, one_lines);
}

/// Processing-time windows of two instances close while the input stays
/// open and idle: the ticks reach the tasks out on the instances' threads
/// (a build whose threads skip ticks fails here), and the status reports
/// both instances' memory meanwhile, more than one instance's. The counts
/// add up to the input once stdin closes.
#[test]
fn ticks_close_windows_on_the_instances_threads_while_the_input_idles() {
    use std::io::Write;
    const N: usize = 3000;
    // Lines of output, memory reported while the input idled.
    let run = |settings: &str| {
        let p = Pipeline::new(&counting_pipeline("", r#"type = "stdin""#, settings));
        let toml = std::fs::read_to_string(p.file())
            .unwrap()
            .replace(r#"time = "event""#, r#"time = "processing""#);
        std::fs::write(p.file(), toml).unwrap();
        std::fs::copy(plugin("gender-count"), p.path("gc.wasm")).unwrap();
        let mut bg = p.start_piped();
        let mut stdin = bg.child.stdin.take().unwrap();
        let text: String = (0..N)
            .map(|i| format!("{{\"g\":\"{}\"}}\n", i % 3))
            .collect();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
        // No more input: only ticks close the 1 s windows.
        let out = p.path("out.jsonl");
        wait_until(
            Duration::from_secs(30),
            || {
                let lines = lines(&out);
                lines.iter().map(|l| window_total(l)).sum::<u64>() == N as u64
            },
            || format!("windows not closed: {:#?}\n{}", lines(&out), bg.log_text()),
        );
        let status = bg.status();
        let memory = stage(&status, "count")["counters"]["memory_bytes"]
            .as_u64()
            .unwrap();
        drop(stdin);
        let log = bg.finish(Duration::from_secs(60));
        assert_eq!(stage_total(&log, "count", "events_in"), N as u64, "{log}");
        (lines(&out), memory)
    };
    let (_, one_memory) = run("");
    let (all, two_memory) = run("instances = 2\nkey_field = \"g\"");
    // Each line is one instance's: keys 0 and 2 (the first), or key 1 (the
    // second); both appear.
    let sets = key_sets(&all);
    let first = ["[\"0\", \"2\"]", "[\"0\"]", "[\"2\"]"];
    assert!(
        sets.iter()
            .all(|s| first.contains(&s.as_str()) || s == "[\"1\"]"),
        "{all:#?}"
    );
    assert!(sets.contains("[\"1\"]") && sets.len() >= 2, "{all:#?}");
    // Each instance has at least the plugin's initial memory, so two
    // report more than one, though their tasks are out on the threads.
    assert!(
        two_memory > one_memory && one_memory > 0,
        "two instances {two_memory} bytes, one {one_memory}"
    );
}

/// A Kafka-fed stage with two instances whose plugin traps and then traps
/// again while its instance is re-created (chaos `restore = "trap"`): weir
/// stops with the reason, and the group's committed offsets cover only
/// records that reached the output or the dead letters. The worker fails
/// the batches it can no longer hand to a task, so the source does not take
/// them as delivered.
#[test]
fn a_failed_instance_commits_nothing_it_did_not_deliver() {
    use crate::common::kafka::*;
    use std::collections::HashSet;
    const TOPIC: &str = "inst-fail-in";
    const GROUP: &str = "inst-fail";
    const PER_PARTITION: usize = 2_000;
    let b = broker();
    create_topic(b, TOPIC, 2);
    let records: Vec<Rec> = (0..2)
        .flat_map(|p| {
            (0..PER_PARTITION).map(move |i| {
                let value = if p == 0 && i == 300 {
                    "trap".to_owned()
                } else {
                    format!("p{p}-{i}")
                };
                Rec::plain(p, value)
            })
        })
        .collect();
    produce_records(b, TOPIC, &records);
    let p = Pipeline::new(&format!(
        r#"
batch_size = 16

[sources.in]
type = "kafka"
brokers = "@broker"
topics = ["{TOPIC}"]
group = "{GROUP}"
start = "earliest"
exit_at_end = true

[transforms.chaos]
type = "wasm"
inputs = ["in"]
plugin = "@plugin(chaos)"
config = {{ restore = "trap" }}
instances = 2
dead_letter = "dlq"

[sinks.out]
type = "file"
inputs = ["chaos"]
path = "out.txt"

[sinks.dlq]
type = "file"
path = "dlq.jsonl"
format = "json"
"#
    ));
    let log = p.run_failing(Duration::from_secs(120));
    assert!(
        log.contains("plugin trapped restoring its snapshot"),
        "{log}"
    );
    let mut delivered: HashSet<String> = p.read("out.txt").lines().map(str::to_owned).collect();
    delivered.extend(
        p.json_lines("dlq.jsonl")
            .iter()
            .map(|d| d["value"].as_str().unwrap().to_owned()),
    );
    assert!(delivered.contains("trap"), "the trap is dead-lettered");
    let committed = committed(b, GROUP, TOPIC, 2);
    let inputs = read_all(b, TOPIC, 2);
    let lost: Vec<(i32, i64)> = inputs
        .iter()
        .filter(|r| r.offset < committed[r.partition as usize])
        .filter(|r| !delivered.contains(&*String::from_utf8_lossy(&r.value)))
        .map(|r| (r.partition, r.offset))
        .collect();
    println!(
        "committed {committed:?} of {PER_PARTITION} per partition; {} delivered",
        delivered.len()
    );
    assert!(
        lost.is_empty(),
        "committed but never delivered: {} records, first {:?}; committed {committed:?}\n{log}",
        lost.len(),
        lost.first()
    );
    // Partition 0 stopped at its trap: nothing past it is committed.
    assert!(committed[0] < PER_PARTITION as i64, "{committed:?}");
}
