//! Hot reload through the real binary, under continuous input: plugin
//! swaps with state, rejected changes, stage restarts and additions, and
//! every trigger (file change, SIGHUP, `weir reload`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// Events per second of event time in the generated log, so every 1 s
/// window holds exactly this many events.
const PER_WINDOW: usize = 20_000;

/// A CSV log `ts,g` with `n` rows, `PER_WINDOW` rows per second of event
/// time, genders cycling 0, 1, 2.
fn event_log(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut text = String::from("ts,g\n");
    let base: u64 = 1_700_000_000_000;
    for i in 0..n {
        let ts = base + (i as u64 * 1000) / PER_WINDOW as u64;
        text.push_str(&format!("{ts},{}\n", i % 3));
    }
    write(dir, "log.csv", &text)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn window_total(line: &str) -> u64 {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    v["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[test]
fn a_new_plugin_build_takes_over_within_two_seconds_with_every_event_counted_once() {
    const N: usize = 200_000;
    let dir = tempdir();
    event_log(dir.path(), N);
    let gc = dir.path().join("gc.wasm");
    std::fs::copy(plugin("gender-count"), &gc).unwrap();
    let next = plugin_next();
    let file = write(
        dir.path(),
        "p.toml",
        r#"
[sources.log]
type = "replay"
path = "log.csv"
format = "csv"
select = "g"
timestamp = "ts"
rate = 25000

[transforms.count]
type = "wasm"
inputs = ["log"]
plugin = "gc.wasm"
config = { window = "1s", time = "event", format = "json" }

[sinks.out]
type = "file"
inputs = ["count"]
path = "out.jsonl"
"#,
    );
    let out = dir.path().join("out.jsonl");
    let mut weir = Background::start(dir.path(), &file, &[]);
    // Swap once a few windows are out.
    let start = Instant::now();
    while lines(&out).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "no output");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = weir.instances();
    let swapped_at = Instant::now();
    replace_file(&next, &gc);
    let switched_after = loop {
        if lines(&out).iter().any(|l| l.contains(r#""build":"next""#)) {
            break swapped_at.elapsed();
        }
        assert!(
            swapped_at.elapsed() < Duration::from_secs(20),
            "the new build never produced output:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let report = weir.wait_for_reload(1, Duration::from_secs(10));
    let after = weir.instances();
    let log = weir.finish(Duration::from_secs(60));

    println!("output switched {switched_after:?} after the plugin file was replaced");
    assert!(
        switched_after < Duration::from_secs(2),
        "output switched only after {switched_after:?}"
    );
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["swapped"], serde_json::json!(["count"]), "{report}");
    assert!(
        report["trigger"]
            .as_str()
            .unwrap()
            .starts_with("file change"),
        "{report}"
    );
    assert_ne!(
        before["count"], after["count"],
        "the plugin instance changed"
    );
    assert_eq!(before["log"], after["log"], "the source was not touched");
    assert_eq!(before["out"], after["out"], "the sink was not touched");

    let got = lines(&out);
    assert_eq!(got.len(), N / PER_WINDOW, "one line per window:\n{got:#?}");
    let first_next = got
        .iter()
        .position(|l| l.contains(r#""build":"next""#))
        .unwrap();
    assert!(first_next >= 2, "swapped after two windows: {got:#?}");
    for (i, l) in got.iter().enumerate() {
        // Every window, including the one open during the swap, reports
        // its full count: nothing lost, nothing counted twice.
        assert_eq!(window_total(l), PER_WINDOW as u64, "window {i}: {l}");
        assert_eq!(
            l.contains(r#""build":"next""#),
            i >= first_next,
            "old output after the switch, or new before it: {got:#?}"
        );
    }
    let total: u64 = got.iter().map(|l| window_total(l)).sum();
    assert_eq!(total, N as u64);
    assert!(
        log.contains("plugin swapped in with the running state"),
        "{log}"
    );
}

/// `[sources.log]`: the shop log replayed at 20,000 lines/s, in a loop.
fn looping_shop_log() -> String {
    format!(
        r#"
[sources.log]
type = "replay"
path = "{}"
format = "csv"
select = "gender"
rate = 20000
loop = true
"#,
        repo().join("data/user_log.csv").display()
    )
}

/// `[transforms.count]`, gender-count from `plugin` in 500 ms JSON windows
/// over `input`, and `[sinks.counts]` writing them to `counts.jsonl` (the
/// last table, so callers may add keys to it).
fn counting(input: &str, plugin: &str) -> String {
    format!(
        r#"
[transforms.count]
type = "wasm"
inputs = ["{input}"]
plugin = "{plugin}"
config = {{ window = "500ms", format = "json" }}

[sinks.counts]
type = "file"
inputs = ["count"]
path = "counts.jsonl"
"#
    )
}

/// A continuously fed pipeline with a gender-count stage and a chaos stage
/// (which echoes each event prefixed with its `tag`).
fn continuous_pipeline(chaos_config: &str) -> String {
    format!(
        r#"{log}{counting}
[transforms.echo]
type = "wasm"
inputs = ["log"]
plugin = "{chaos}"
config = {chaos_config}

[sinks.echoes]
type = "file"
inputs = ["echo"]
path = "echoes.txt"
"#,
        log = looping_shop_log(),
        counting = counting("log", "gc.wasm"),
        chaos = plugin("chaos").display(),
    )
}

/// Waits until `path` has grown by `more` lines past `from`.
fn wait_growth(path: &Path, from: usize, more: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let l = lines(path);
        if l.len() >= from + more {
            return l;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} stopped growing at {} lines",
            path.display(),
            l.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn broken_plugins_are_rejected_and_the_running_ones_keep_producing() {
    let dir = tempdir();
    let gc = dir.path().join("gc.wasm");
    std::fs::copy(plugin("gender-count"), &gc).unwrap();
    let file = write(
        dir.path(),
        "p.toml",
        &continuous_pipeline(r#"{ tag = "a" }"#),
    );
    let counts = dir.path().join("counts.jsonl");
    let echoes = dir.path().join("echoes.txt");
    let weir = Background::start(dir.path(), &file, &[]);
    wait_growth(&counts, 0, 2);
    let instances = weir.instances();

    // 1. A corrupt .wasm.
    let seen = lines(&counts).len();
    std::fs::write(dir.path().join("garbage"), b"this is not wasm").unwrap();
    replace_file(&dir.path().join("garbage"), &gc);
    let r = weir.wait_for_reload(1, Duration::from_secs(20));
    assert_eq!(r["ok"], false, "{r}");
    let why = r["rejected"].as_str().unwrap();
    assert!(
        why.contains("gc.wasm") && why.contains("not a WebAssembly file"),
        "{why}"
    );
    let after = wait_growth(&counts, seen, 2);
    assert!(
        !after.iter().any(|l| l.contains("build")),
        "old plugin output"
    );

    // 2. A component of another world.
    let seen = after.len();
    std::fs::write(dir.path().join("other"), EMPTY_COMPONENT).unwrap();
    replace_file(&dir.path().join("other"), &gc);
    let r = weir.wait_for_reload(2, Duration::from_secs(20));
    assert_eq!(r["ok"], false, "{r}");
    let why = r["rejected"].as_str().unwrap();
    assert!(
        why.contains("does not export `weir:plugin/transform@0.1.0`"),
        "{why}"
    );
    wait_growth(&counts, seen, 2);

    // 3. A plugin that traps in `restore`: the chaos stage is given new
    // settings that make its new instance trap when handed the state.
    let seen_echoes = lines(&echoes).len();
    std::fs::copy(plugin("gender-count"), &gc).unwrap(); // back to normal
    replace_text(
        &file,
        &continuous_pipeline(r#"{ tag = "b", restore = "trap" }"#),
    );
    let r = weir.wait_for_reload(3, Duration::from_secs(20));
    assert_eq!(r["ok"], false, "{r}");
    let failed = r["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{r}");
    assert_eq!(failed[0]["stage"], "echo");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("trapped restoring the running state"),
        "{r}"
    );
    let more = wait_growth(&echoes, seen_echoes, 20_000);
    assert!(
        more[seen_echoes..].iter().all(|l| l.starts_with("a:")),
        "the old chaos instance keeps echoing with its own tag"
    );

    // `weir reload` reports the same refusal and exits 1.
    let out = run_with_timeout(&mut weir.client("reload"), Duration::from_secs(30));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("FAILED echo"), "{stderr}");
    assert!(
        stderr.contains("trapped restoring the running state"),
        "{stderr}"
    );

    // Nothing was restarted by any of this.
    assert_eq!(weir.instances(), instances);
    let status = weir.status();
    assert_eq!(status["reloads_failed"], 4);
    assert_eq!(status["reloads_ok"], 0);
    weir.stop();
}

/// An empty component: valid WebAssembly, but exporting nothing.
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

/// A pipeline where a Kafka source consumes what the same pipeline
/// produces, so a rebalance would show in the source's counters.
fn kafka_pipeline(b: &str, topic: &str, extra: &str, out_format: &str) -> String {
    format!(
        r#"{log}
[sinks.to_kafka]
type = "kafka"
inputs = ["log"]
brokers = "{b}"
topic = "{topic}"

[sources.from_kafka]
type = "kafka"
brokers = "{b}"
topic = "{topic}"
group = "{topic}-group"
start = "earliest"
{counting}format = "{out_format}"
{extra}"#,
        log = looping_shop_log(),
        counting = counting("from_kafka", &plugin("gender-count").display().to_string()),
    )
}

#[test]
fn editing_the_file_restarts_only_the_changed_stage_and_a_broken_edit_changes_nothing() {
    let b = crate::common::kafka::broker();
    crate::common::kafka::create_topic(b, "reload-edges", 2);
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &kafka_pipeline(b, "reload-edges", "", "value"),
    );
    let counts = dir.path().join("counts.jsonl");
    let weir = Background::start(dir.path(), &file, &[]);
    wait_growth(&counts, 0, 2);
    let before = weir.instances();
    let rebalances = |w: &Background| -> u64 {
        w.status()["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "from_kafka")
            .unwrap()["counters"]["rebalances"]
            .as_u64()
            .unwrap()
    };
    let rebalances_before = rebalances(&weir);
    assert!(rebalances_before >= 1, "the consumer got its partitions");

    // Add a sink and change one stage's settings.
    let added = "\n[sinks.copy]\ntype = \"file\"\ninputs = [\"count\"]\npath = \"copy.jsonl\"\n";
    replace_text(&file, &kafka_pipeline(b, "reload-edges", added, "json"));
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

#[test]
fn sighup_and_weir_reload_apply_the_same_changes_and_removed_stages_drain() {
    let dir = tempdir();
    let gc = dir.path().join("gc.wasm");
    std::fs::copy(plugin("gender-count"), &gc).unwrap();
    let base = continuous_pipeline(r#"{ tag = "a" }"#);
    let file = write(dir.path(), "p.toml", &base);
    let echoes = dir.path().join("echoes.txt");
    // No file watching: only the explicit triggers.
    let weir = Background::start(dir.path(), &file, &["--no-watch"]);
    wait_growth(&echoes, 0, 1000);
    let before = weir.instances();

    // SIGHUP: the chaos stage's new settings are swapped in with its state.
    replace_text(&file, &base.replace(r#"tag = "a""#, r#"tag = "b""#));
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
    replace_text(&file, &without);
    let out = run_with_timeout(&mut weir.client("reload"), Duration::from_secs(30));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("removed echo,echoes"), "{stdout}");
    let after = weir.instances();
    assert_eq!(after.keys().collect::<Vec<_>>(), ["count", "counts", "log"]);
    for stage in ["log", "count", "counts"] {
        assert_eq!(before[stage], after[stage], "{stage} kept its instance");
    }
    // The removed sink drained: the file stops growing and every line is
    // whole.
    std::thread::sleep(Duration::from_millis(500));
    let settled = std::fs::read_to_string(&echoes).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(std::fs::read_to_string(&echoes).unwrap(), settled);
    assert!(settled.ends_with('\n'));

    // A rejected `weir reload` exits 1 with the reason.
    replace_text(
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

/// The id and the stage names of the last checkpoint in `dir/state`.
fn last_checkpoint(dir: &std::path::Path) -> (u64, Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(dir.join("state/checkpoint.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let names = |k: &str| {
        v[k].as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    (
        v["id"].as_u64().unwrap_or(0),
        names("sources"),
        names("stages"),
    )
}

/// Waits until a checkpoint newer than `after` is written; returns it.
fn next_checkpoint(dir: &std::path::Path, after: u64) -> (u64, Vec<String>, Vec<String>) {
    let start = Instant::now();
    loop {
        let c = last_checkpoint(dir);
        if c.0 > after {
            return c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no checkpoint after {after}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_checkpointing_pipeline_changes_its_graph_and_plugins_while_checkpoints_go_on() {
    let dir = tempdir();
    let gc = dir.path().join("gc.wasm");
    std::fs::copy(plugin("gender-count"), &gc).unwrap();
    let text = format!(
        "state_dir = \"state\"\ncheckpoint_interval = \"200ms\"\n{}{}",
        looping_shop_log(),
        counting("log", "gc.wasm")
    );
    let file = write(dir.path(), "p.toml", &text);
    let counts = dir.path().join("counts.jsonl");
    let weir = Background::start(dir.path(), &file, &[]);
    wait_growth(&counts, 0, 2);
    let (first, _, _) = next_checkpoint(dir.path(), 0);
    let before = weir.instances();

    // A new source feeding the running transform, and a new sink.
    let grown = text.replace("inputs = [\"log\"]", "inputs = [\"log\", \"log2\"]")
        + &looping_shop_log()
            .replace("[sources.log]", "[sources.log2]")
            .replace("rate = 20000", "rate = 5000")
        + "\n[sinks.more]\ntype = \"file\"\ninputs = [\"count\"]\npath = \"more.jsonl\"\n";
    replace_text(&file, &grown);
    let r = weir.wait_for_reload(1, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["added"], serde_json::json!(["more", "log2"]), "{r}");
    assert_eq!(r["rewired"], serde_json::json!(["count"]), "{r}");
    let after = weir.instances();
    for s in ["log", "count", "counts"] {
        assert_eq!(before[s], after[s], "{s} kept its instance");
    }
    wait_growth(&dir.path().join("more.jsonl"), 0, 2);
    // Checkpoints go on and now cover the new source.
    let (id, sources, stages) = next_checkpoint(dir.path(), first + 2);
    assert_eq!(sources, ["log", "log2"], "checkpoint {id}");
    assert_eq!(stages, ["count"]);

    // Removing them again is as quick, and they leave the checkpoint.
    replace_text(&file, &text);
    let r = weir.wait_for_reload(2, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["removed"], serde_json::json!(["log2", "more"]), "{r}");
    let (id, sources, _) = next_checkpoint(dir.path(), id + 1);
    let (_, sources_later, _) = next_checkpoint(dir.path(), id);
    assert!(
        sources == ["log"] || sources_later == ["log"],
        "{sources:?} {sources_later:?}"
    );

    // A changed source restarts where it stopped, and takes checkpoint
    // requests again.
    replace_text(&file, &text.replace("rate = 20000", "rate = 15000"));
    let r = weir.wait_for_reload(3, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["restarted"], serde_json::json!(["log"]), "{r}");
    let (id, _, _) = next_checkpoint(dir.path(), id + 1);
    next_checkpoint(dir.path(), id + 1);

    // A plugin swap carries the state.
    let seen = lines(&counts).len();
    replace_file(&plugin_next(), &gc);
    let r = weir.wait_for_reload(4, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["swapped"], serde_json::json!(["count"]), "{r}");
    let l = wait_growth(&counts, seen, 3);
    assert!(l.last().unwrap().contains(r#""build":"next""#));
    // A restart restores the state the new build saved.
    let log = weir.stop();
    assert!(log.contains("final checkpoint written"), "{log}");
    let again = Background::start(dir.path(), &file, &[]);
    again.wait_for(
        "plugin state restored from the checkpoint",
        Duration::from_secs(30),
    );
    again.stop();
}
