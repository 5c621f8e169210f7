//! Hot reload of the pipeline's graph through the real binary, under
//! continuous input: only the changed stage restarted (a Kafka consumer
//! undisturbed), a broken edit changing nothing, SIGHUP and `weir reload`
//! as triggers with removed stages drained, edges and dead-letter targets
//! rewired under backpressure, and a restarted source resuming.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

#[test]
fn editing_the_file_restarts_only_the_changed_stage_and_a_broken_edit_changes_nothing() {
    let b = crate::common::kafka::broker();
    crate::common::kafka::create_topic(b, "reload-edges", 2);
    let dir = tempdir();
    let file = pipeline_file(dir.path(), &kafka_pipeline("reload-edges", "", "value"));
    let counts = dir.path().join("counts.jsonl");
    let weir = Background::start(dir.path(), &file, &[]);
    wait_growth(&counts, 0, 2);
    let before = weir.instances();
    let rebalances =
        |w: &Background| -> u64 { w.counters("from_kafka")["rebalances"].as_u64().unwrap() };
    let rebalances_before = rebalances(&weir);
    assert!(rebalances_before >= 1, "the consumer got its partitions");

    // Add a sink and change one stage's settings.
    let added = "\n[sinks.copy]\ntype = \"file\"\ninputs = [\"count\"]\npath = \"copy.jsonl\"\n";
    replace_pipeline(&file, &kafka_pipeline("reload-edges", added, "json"));
    let r = weir.wait_for_reload(1, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["restarted"], serde_json::json!(["counts"]), "{r}");
    assert_eq!(r["added"], serde_json::json!(["copy"]), "{r}");
    assert!(r["swapped"].as_array().unwrap().is_empty(), "{r}");
    let after = weir.instances();
    for stage in ["log", "to_kafka", "from_kafka", "count"] {
        assert_eq!(before[stage], after[stage], "{stage} kept its instance");
    }
    assert_ne!(before["counts"], after["counts"], "counts restarted");
    assert!(after.contains_key("copy"));
    // The restarted sink writes in its new format; the new sink receives.
    let start = Instant::now();
    loop {
        let l = lines(&counts);
        let copies = lines(&dir.path().join("copy.jsonl"));
        // `format = "json"` wraps each value in an object with its metadata.
        if l.last().is_some_and(|l| l.contains(r#""timestamp":"#)) && copies.len() >= 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{l:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        rebalances(&weir),
        rebalances_before,
        "the Kafka consumer was not disturbed"
    );

    // A broken edit is rejected with FILE:LINE and changes nothing.
    let good = std::fs::read_to_string(&file).unwrap();
    replace_text(
        &file,
        &good.replace("path = \"copy.jsonl\"", "path = copy.jsonl"),
    );
    let r = weir.wait_for_reload(2, Duration::from_secs(30));
    assert_eq!(r["ok"], false, "{r}");
    let why = r["rejected"].as_str().unwrap();
    let line = good.lines().position(|l| l.contains("copy.jsonl")).unwrap() + 1;
    assert!(why.contains(&format!("p.toml:{line}:")), "{why}");
    assert_eq!(weir.instances(), after, "nothing changed");
    assert_eq!(rebalances(&weir), rebalances_before);
    let seen = lines(&counts).len();
    wait_growth(&counts, seen, 2);
    weir.stop();
}

/// A pipeline where a Kafka source consumes what the same pipeline
/// produces, so a rebalance would show in the source's counters.
fn kafka_pipeline(topic: &str, extra: &str, out_format: &str) -> String {
    format!(
        r#"{LOOPING_SHOP_LOG}
[sinks.to_kafka]
type = "kafka"
inputs = ["log"]
brokers = "@broker"
topic = "{topic}"

[sources.from_kafka]
type = "kafka"
brokers = "@broker"
topic = "{topic}"
group = "{topic}-group"
start = "earliest"
{counting}format = "{out_format}"
{extra}"#,
        counting = counting("from_kafka", "@plugin(gender-count)"),
    )
}

#[test]
fn sighup_and_weir_reload_apply_the_same_changes_and_removed_stages_drain() {
    let dir = tempdir();
    let gc = dir.path().join("gc.wasm");
    std::fs::copy(plugin("gender-count"), &gc).unwrap();
    let base = continuous_pipeline(r#"{ tag = "a" }"#);
    let file = pipeline_file(dir.path(), &base);
    let echoes = dir.path().join("echoes.txt");
    // No file watching: only the explicit triggers.
    let weir = Background::start(dir.path(), &file, &["--no-watch"]);
    wait_growth(&echoes, 0, 1000);
    let before = weir.instances();

    // SIGHUP: the chaos stage's new settings are swapped in with its state.
    replace_pipeline(&file, &base.replace(r#"tag = "a""#, r#"tag = "b""#));
    signal(&weir.child, libc::SIGHUP);
    let r = weir.wait_for_reload(1, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["trigger"], "SIGHUP");
    assert_eq!(r["swapped"], serde_json::json!(["echo"]), "{r}");
    let seen = lines(&echoes).len();
    let more = wait_growth(&echoes, seen, 1000);
    assert!(more.last().unwrap().starts_with("b:"), "new tag in use");

    // `weir reload`: remove the echo branch entirely.
    let without = base.split("[transforms.echo]").next().unwrap().to_owned();
    replace_pipeline(&file, &without);
    let out = run_with_timeout(&mut weir.client("reload"), Duration::from_secs(30));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("removed echo,echoes"), "{stdout}");
    let after = weir.instances();
    assert_eq!(after.keys().collect::<Vec<_>>(), ["count", "counts", "log"]);
    for stage in ["log", "count", "counts"] {
        assert_eq!(before[stage], after[stage], "{stage} kept its instance");
    }
    // The removed sink drained: the file stops growing (the removed stages
    // finish what was queued after the reload has answered, so a loaded
    // machine may take a while) and every line is whole.
    let start = Instant::now();
    let mut settled = std::fs::read_to_string(&echoes).unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = std::fs::read_to_string(&echoes).unwrap();
        if now == settled {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the removed sink still writes after 30 s"
        );
        settled = now;
    }
    assert!(settled.ends_with('\n'));

    // A rejected `weir reload` exits 1 with the reason.
    replace_pipeline(
        &file,
        &without.replace("window = \"500ms\"", "window = \"soon\""),
    );
    let out = run_with_timeout(&mut weir.client("reload"), Duration::from_secs(30));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("reload rejected, nothing changed"),
        "{stderr}"
    );
    let log = weir.stop();
    assert!(log.contains("reload applied"), "{log}");
}

/// Timestamps of source `a`'s rows; `b`'s start at twice this.
const A_BASE: i64 = 1_000_000_000_000;

/// Rows of source `a` (replayed as fast as the slow sink takes them);
/// source `b` has [`B_ROWS`].
const A_ROWS: usize = 100_000;

/// Rows of source `b`.
const B_ROWS: usize = 50_000;

/// Every `REJECT_EVERY`th row asks the chaos plugin to reject it.
const REJECT_EVERY: usize = 7;

/// A CSV `ts,v` with `rows` rows: `ts = base + i`, `v = PREFIX i`, or
/// `reject` for every [`REJECT_EVERY`]th row.
fn rows(prefix: &str, base: i64, rows: usize) -> String {
    let mut text = String::from("ts,v\n");
    for i in 0..rows {
        if i % REJECT_EVERY == 3 {
            text.push_str(&format!("{},reject\n", base + i as i64));
        } else {
            text.push_str(&format!("{},{prefix}{i}\n", base + i as i64));
        }
    }
    text
}

/// Two sources through two chaos stages (tags `pa`, `pb`). `pa` feeds the
/// `out` directory sink, one synced file per event: the slow path that
/// keeps every queue full with `channel_capacity = 1`. `pb` feeds `bs`.
/// `out_inputs` is `out`'s inputs; `dl_a` and `dl_b` are the dead-letter
/// sinks of `pa` and `pb`.
fn rewire_pipeline(out_inputs: &str, dl_a: &str, dl_b: &str) -> String {
    format!(
        r#"batch_size = 16
channel_capacity = 1

[sources.a]
type = "replay"
path = "a.csv"
format = "csv"
select = "v"
timestamp = "ts"

[sources.b]
type = "replay"
path = "b.csv"
format = "csv"
select = "v"
timestamp = "ts"
rate = 1000

[transforms.pa]
type = "wasm"
inputs = ["a"]
plugin = "@plugin(chaos)"
config = {{ tag = "pa" }}
dead_letter = "{dl_a}"

[transforms.pb]
type = "wasm"
inputs = ["b"]
plugin = "@plugin(chaos)"
config = {{ tag = "pb" }}
dead_letter = "{dl_b}"

[sinks.out]
type = "directory"
inputs = {out_inputs}
path = "out"
extension = "txt"

[sinks.bs]
type = "file"
inputs = ["pb"]
path = "bs.txt"

[sinks.dl1]
type = "file"
path = "dl1.jsonl"
format = "json"

[sinks.dl2]
type = "file"
path = "dl2.jsonl"
format = "json"
"#
    )
}

/// Timestamps of the dead-lettered events in a `format = "json"` file,
/// checking each is a rejected record with its reason.
fn dead_letters(path: &Path) -> Vec<i64> {
    lines(path)
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert_eq!(v["value"], "reject", "{l}");
            assert_eq!(v["headers"]["weir.reason"], "asked to reject", "{l}");
            let ts = v["timestamp"].as_i64().unwrap();
            let from = if ts < 2 * A_BASE { "pa" } else { "pb" };
            assert_eq!(v["headers"]["weir.stage"], from, "{l}");
            ts
        })
        .collect()
}

/// The contents of every file in the `out` directory sink.
fn dir_values(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// Row indexes `0..sent` of a source that are not rejected.
fn kept_rows(sent: usize) -> Vec<usize> {
    (0..sent).filter(|i| i % REJECT_EVERY != 3).collect()
}

/// Runs the rewiring scenario: `b` joins `out`'s inputs, then leaves them
/// again, each by editing the file while every queue is full; with
/// `swap_dead_letters` the same two edits also trade the dead-letter sinks
/// of `pa` and `pb`. Checks that only the edited stages are reported as
/// rewired, every stage keeps its instance, the status shows the new
/// edges, and once drained every event of `a` is in `out` and every event
/// of `b` in `bs` exactly once, `b`'s events in `out` are an unbroken run,
/// and each rejected record is in exactly one dead-letter sink.
fn rewire_scenario(swap_dead_letters: bool) {
    let dir = tempdir();
    write(dir.path(), "a.csv", &rows("a", A_BASE, A_ROWS));
    write(dir.path(), "b.csv", &rows("b", 2 * A_BASE, B_ROWS));
    let original = rewire_pipeline(r#"["pa"]"#, "dl1", "dl2");
    let joined = if swap_dead_letters {
        rewire_pipeline(r#"["pa", "pb"]"#, "dl2", "dl1")
    } else {
        rewire_pipeline(r#"["pa", "pb"]"#, "dl1", "dl2")
    };
    let rewired: &[&str] = if swap_dead_letters {
        &["out", "pa", "pb"]
    } else {
        &["out"]
    };
    let file = pipeline_file(dir.path(), &original);
    let (out, bs) = (dir.path().join("out"), dir.path().join("bs.txt"));
    let (dl1, dl2) = (dir.path().join("dl1.jsonl"), dir.path().join("dl2.jsonl"));
    let weir = Background::start(dir.path(), &file, &[]);
    weir.wait_until("output of both paths", Duration::from_secs(20), || {
        dir_values(&out).len() >= 200 && lines(&bs).len() >= 100 && lines(&dl1).len() >= 10
    });
    let before = weir.instances();
    let all: Vec<String> = before.keys().cloned().collect();
    let from_a = |p: &Path| dead_letters(p).iter().filter(|t| **t < 2 * A_BASE).count();
    let from_b = |p: &Path| dead_letters(p).iter().filter(|t| **t >= 2 * A_BASE).count();
    let from_pb = || {
        dir_values(&out)
            .iter()
            .filter(|v| v.starts_with("pb:"))
            .count()
    };

    // `b` joins `out` (and the dead-letter targets trade places).
    let (a_in_dl1, b_in_dl2) = (from_a(&dl1), from_b(&dl2));
    replace_pipeline(&file, &joined);
    let r = weir.wait_for_reload(1, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(sorted(&r["rewired"]), rewired, "{r}");
    assert_eq!(sorted(&r["kept"]), all, "{r}");
    for list in ["swapped", "restarted", "added", "removed", "failed"] {
        assert_eq!(r[list], json!([]), "{list}: {r}");
    }
    assert_eq!(weir.instances(), before, "rewiring replaces no instance");
    let s = weir.status();
    assert_eq!(stage(&s, "out")["inputs"], json!(["pa", "pb"]), "{s}");
    assert_eq!(sorted(&stage(&s, "pb")["outputs"]), ["bs", "out"], "{s}");
    let (dl_a, dl_b) = if swap_dead_letters {
        ("dl2", "dl1")
    } else {
        ("dl1", "dl2")
    };
    assert_eq!(stage(&s, "pa")["dead_letter"], dl_a, "{s}");
    assert_eq!(stage(&s, "pb")["dead_letter"], dl_b, "{s}");
    weir.wait_until(
        "the new edges carrying events",
        Duration::from_secs(20),
        || {
            let dead_letters_moved = if swap_dead_letters {
                from_a(&dl2) >= 10 && from_b(&dl1) >= 10
            } else {
                from_a(&dl1) >= a_in_dl1 + 10 && from_b(&dl2) >= b_in_dl2 + 10
            };
            from_pb() >= 100 && dead_letters_moved
        },
    );

    // And back: `b` leaves `out` again.
    let (a_in_dl1, b_in_dl2) = (from_a(&dl1), from_b(&dl2));
    let seen_bs = lines(&bs).len();
    replace_pipeline(&file, &original);
    let r = weir.wait_for_reload(2, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(sorted(&r["rewired"]), rewired, "{r}");
    assert_eq!(weir.instances(), before, "rewiring replaces no instance");
    let s = weir.status();
    assert_eq!(stage(&s, "out")["inputs"], json!(["pa"]), "{s}");
    assert_eq!(stage(&s, "pb")["outputs"], json!(["bs"]), "{s}");
    assert_eq!(stage(&s, "pa")["dead_letter"], "dl1", "{s}");
    assert_eq!(stage(&s, "pb")["dead_letter"], "dl2", "{s}");
    weir.wait_until(
        "the old edges carrying events",
        Duration::from_secs(20),
        || {
            from_a(&dl1) >= a_in_dl1 + 10
                && from_b(&dl2) >= b_in_dl2 + 10
                && lines(&bs).len() >= seen_bs + 100
        },
    );
    let log = weir.stop();

    // Everything sent was delivered once; nothing queued was lost.
    let sent_a = stage_total(&log, "a", "events_out") as usize;
    let sent_b = stage_total(&log, "b", "events_out") as usize;
    assert!(
        sent_a < A_ROWS && sent_b < B_ROWS,
        "the sources were still going"
    );
    let (rows_a, rows_b) = (kept_rows(sent_a), kept_rows(sent_b));
    let values = dir_values(&out);
    let index = |v: &str, tag: &str| -> Option<usize> {
        v.strip_prefix(tag)
            .map(|n| n.parse().unwrap_or_else(|_| panic!("{v}")))
    };
    let mut in_out_a: Vec<usize> = values.iter().filter_map(|v| index(v, "pa:a")).collect();
    let mut in_out_b: Vec<usize> = values.iter().filter_map(|v| index(v, "pb:b")).collect();
    in_out_a.sort_unstable();
    in_out_b.sort_unstable();
    assert_eq!(in_out_a, rows_a, "every event of `a` in `out` exactly once");
    let (first, last) = (in_out_b[0], *in_out_b.last().unwrap());
    let run: Vec<usize> = rows_b
        .iter()
        .copied()
        .filter(|i| (first..=last).contains(i))
        .collect();
    assert_eq!(in_out_b, run, "`b`'s events in `out` are an unbroken run");
    assert!(in_out_b.len() >= 100 && last < *rows_b.last().unwrap());
    let totals: Vec<&String> = values.iter().filter(|v| v.starts_with("total=")).collect();
    assert_eq!(
        totals,
        [&format!("total={}", rows_a.len())],
        "`pa`'s final count"
    );
    assert_eq!(
        values.len(),
        in_out_a.len() + in_out_b.len() + 1,
        "nothing else in `out`"
    );
    let mut expected_bs: Vec<String> = rows_b.iter().map(|i| format!("pb:b{i}")).collect();
    expected_bs.push(format!("total={}", rows_b.len()));
    assert_eq!(
        lines(&bs),
        expected_bs,
        "every event of `b` in `bs`, in order"
    );

    let (d1, d2) = (dead_letters(&dl1), dead_letters(&dl2));
    let mut got: Vec<i64> = d1.iter().chain(&d2).copied().collect();
    got.sort_unstable();
    let mut want: Vec<i64> = (0..sent_a)
        .filter(|i| i % REJECT_EVERY == 3)
        .map(|i| A_BASE + i as i64)
        .chain(
            (0..sent_b)
                .filter(|i| i % REJECT_EVERY == 3)
                .map(|i| 2 * A_BASE + i as i64),
        )
        .collect();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "each rejected record in one dead-letter sink, once"
    );
    let crossed = (from_b(&dl1) > 0, from_a(&dl2) > 0);
    assert_eq!(crossed, (swap_dead_letters, swap_dead_letters));
    assert!(!log.contains("rejected and dropped"), "{log}");
}

/// Editing `out`'s inputs so `b`'s path joins it, then leaves it again,
/// rewires only `out`, between batches, while every queue is full: no
/// instance changes and, once drained, every event is where it belongs
/// exactly once (see [`rewire_scenario`]).
#[test]
fn rewiring_inputs_keeps_instances_and_drops_no_queued_event() {
    rewire_scenario(false);
}

/// The same edits, also trading the dead-letter sinks of `pa` (dl1 → dl2)
/// and `pb` (dl2 → dl1): all three stages are rewired and each rejected
/// record still lands in exactly one dead-letter sink.
#[test]
fn rewiring_dead_letters_between_two_stages_keeps_every_rejected_record() {
    rewire_scenario(true);
}

/// A source restarted by a reload (its settings changed) still stops on
/// SIGTERM, and goes on from where the old instance stopped.
#[test]
fn a_restarted_source_resumes_and_still_stops_on_sigterm() {
    let dir = tempdir();
    let input: String = (0..1_000_000).map(|i| format!("e{i}\n")).collect();
    write(dir.path(), "in.txt", &input);
    let text = "[sources.in]\ntype = \"replay\"\npath = \"in.txt\"\nformat = \"lines\"\nrate = 20000\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"out.txt\"\n";
    let file = write(dir.path(), "p.toml", text);
    let out = dir.path().join("out.txt");
    let weir = Background::start(dir.path(), &file, &[]);
    weir.wait_until("output", Duration::from_secs(30), || {
        lines(&out).len() > 2_000
    });
    replace_text(&file, &text.replace("rate = 20000", "rate = 10000"));
    let r = weir.wait_for_reload(1, Duration::from_secs(30));
    assert_eq!(r["restarted"], json!(["in"]), "{r}");
    let before = lines(&out).len();
    weir.wait_until("more output", Duration::from_secs(30), || {
        lines(&out).len() > before + 2_000
    });
    weir.stop();
    // Every line once, in order, with no gap at the restart.
    let got = lines(&out);
    assert!(got.len() < 1_000_000, "stopped by the signal");
    for (i, l) in got.iter().enumerate() {
        assert_eq!(l, &format!("e{i}"));
    }
}
