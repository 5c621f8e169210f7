//! Hot reload of plugins through the real binary, under continuous input:
//! a new build swapped in with the running state, broken builds rejected,
//! a build that refuses the running state (`on_incompatible_state`), and a
//! plugin crate rebuilt when its sources are edited.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// Events per second of event time in the generated log, so every 1 s
/// window holds exactly this many events.
pub(crate) const PER_WINDOW: usize = 20_000;

/// A CSV log `ts,g` with `n` rows, `PER_WINDOW` rows per second of event
/// time, genders cycling 0, 1, 2.
pub(crate) fn event_log(dir: &Path, n: usize) -> std::path::PathBuf {
    let mut text = String::from("ts,g\n");
    let base: u64 = 1_700_000_000_000;
    for i in 0..n {
        let ts = base + (i as u64 * 1000) / PER_WINDOW as u64;
        text.push_str(&format!("{ts},{}\n", i % 3));
    }
    write(dir, "log.csv", &text)
}

/// The events counted in one window (a line of gender-count's JSON output).
pub(crate) fn window_total(line: &str) -> u64 {
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
    let p = Pipeline::new(
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
    event_log(p.dir(), N);
    let gc = p.path("gc.wasm");
    std::fs::copy(plugin("gender-count"), &gc).unwrap();
    let next = plugin_next();
    let out = p.path("out.jsonl");
    let mut weir = p.start();
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

#[test]
fn broken_plugins_are_rejected_and_the_running_ones_keep_producing() {
    let dir = tempdir();
    let gc = dir.path().join("gc.wasm");
    std::fs::copy(plugin("gender-count"), &gc).unwrap();
    let file = pipeline_file(dir.path(), &continuous_pipeline(r#"{ tag = "a" }"#));
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
    replace_file(&plugin("gender-count"), &gc); // back to normal, atomically
    replace_pipeline(
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

/// Events in the replayed file: far more than a test reads at `rate`, so
/// the source is still going when the test stops it.
const ECHO_EVENTS: usize = 200_000;

/// A pipeline feeding distinct lines `e0`, `e1`, ... through the chaos
/// plugin (which echoes each one as `TAG:eN`, counts them in its state and
/// emits `total=N` when its input ends). `echo` is the chaos stage's
/// `config` plus any further settings.
fn echo_pipeline(dir: &Path, echo: &str) -> String {
    if !dir.join("in.txt").exists() {
        let text: String = (0..ECHO_EVENTS).map(|i| format!("e{i}\n")).collect();
        write(dir, "in.txt", &text);
    }
    format!(
        r#"
[sources.log]
type = "replay"
path = "in.txt"
format = "lines"
rate = 5000

[transforms.echo]
type = "wasm"
inputs = ["log"]
plugin = "@plugin(chaos)"
config = {echo}

[sinks.out]
type = "file"
inputs = ["echo"]
path = "out.txt"
"#
    )
}

/// Starts [`echo_pipeline`] with tag `a` in a fresh directory and waits
/// for its first 500 lines; returns the directory, the pipeline file, the
/// output file and the running pipeline.
fn start_echoing() -> (tempfile::TempDir, PathBuf, PathBuf, Background) {
    let dir = tempdir();
    let file = pipeline_file(dir.path(), &echo_pipeline(dir.path(), r#"{ tag = "a" }"#));
    let out = dir.path().join("out.txt");
    let weir = Background::start(dir.path(), &file, &[]);
    weir.wait_until("first output", Duration::from_secs(20), || {
        lines(&out).len() >= 500
    });
    (dir, file, out, weir)
}

/// Checks the echo output after the pipeline stopped: `e0`, `e1`, ... in
/// order, each exactly once, as many as the source produced, tagged with
/// `tags[0]` up to some line and `tags[1]` after it, then the plugin's
/// final `total=`. Returns the count per tag and the total.
fn check_echoes(out: &Path, log: &str, tags: [&str; 2]) -> ([usize; 2], u64) {
    let got = lines(out);
    let sent = stage_total(log, "log", "events_out") as usize;
    assert_eq!(
        got.len(),
        sent + 1,
        "every event echoed once, then the total"
    );
    let mut per_tag = [0; 2];
    for (i, l) in got[..sent].iter().enumerate() {
        let (tag, value) = l.split_once(':').unwrap_or_else(|| panic!("line {i}: {l}"));
        assert_eq!(value, format!("e{i}"), "line {i} out of order or lost");
        let t = tags
            .iter()
            .position(|t| *t == tag)
            .unwrap_or_else(|| panic!("line {i}: unknown tag in {l}"));
        assert!(
            t == 1 || per_tag[1] == 0,
            "line {i}: old output after the new: {l}"
        );
        per_tag[t] += 1;
    }
    let total = got[sent]
        .strip_prefix("total=")
        .unwrap_or_else(|| panic!("last line: {}", got[sent]))
        .parse()
        .unwrap();
    (per_tag, total)
}

/// With `on_incompatible_state` unset (`reject`) or set to `"reject"`, a
/// new plugin setting whose `restore` refuses the running state fails the
/// swap: the reload reports the stage as failed with the plugin's reason,
/// no instance changes, and the old instance keeps echoing with its own tag
/// and its state (the later good swap carries the full count over).
#[test]
fn a_refused_state_with_reject_fails_the_swap_and_the_old_instance_keeps_its_state() {
    let (dir, file, out, weir) = start_echoing();
    let before = weir.instances();

    let refusing = [
        r#"{ tag = "b", restore = "refuse" }"#,
        "{ tag = \"b\", restore = \"refuse\" }\non_incompatible_state = \"reject\"",
    ];
    for (n, echo) in refusing.into_iter().enumerate() {
        replace_pipeline(&file, &echo_pipeline(dir.path(), echo));
        let r = weir.wait_for_reload(n as u64 + 1, Duration::from_secs(30));
        assert_eq!(r["ok"], false, "{r}");
        assert!(r.get("rejected").is_none(), "the file itself is fine: {r}");
        assert_eq!(sorted(&r["kept"]), ["log", "out"], "{r}");
        assert_eq!(r["swapped"], json!([]), "{r}");
        let failed = r["failed"].as_array().unwrap();
        assert_eq!(failed.len(), 1, "{r}");
        assert_eq!(failed[0]["stage"], "echo", "{r}");
        assert_eq!(
            failed[0]["reason"],
            "the new plugin refused the running state: asked to refuse state \
             (set on_incompatible_state = \"reset\" to start it with empty state)",
            "{r}"
        );
        assert_eq!(weir.instances(), before, "nothing was replaced");
        // The old instance goes on with its own settings.
        let seen = lines(&out).len();
        weir.wait_until("more output", Duration::from_secs(20), || {
            lines(&out).len() >= seen + 500
        });
        assert!(lines(&out)[seen..].iter().all(|l| l.starts_with("a:")));
    }
    let status = weir.status();
    assert_eq!(status["reloads_failed"], 2, "{status}");
    assert_eq!(status["reloads_ok"], 0, "{status}");

    // A build that takes the state swaps in with the old instance's count.
    replace_pipeline(&file, &echo_pipeline(dir.path(), r#"{ tag = "b" }"#));
    let r = weir.wait_for_reload(3, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["swapped"], json!(["echo"]), "{r}");
    let seen = lines(&out).len();
    weir.wait_until(
        "output of the swapped plugin",
        Duration::from_secs(20),
        || lines(&out).len() >= seen + 500,
    );
    let log = weir.stop();

    let ([a, b], total) = check_echoes(&out, &log, ["a", "b"]);
    assert!(a >= 1500 && b >= 1, "a: {a}, b: {b}");
    assert_eq!(
        total,
        (a + b) as u64,
        "the count kept by the old instance through both refusals was carried over"
    );
    assert!(
        log.contains("the new plugin refused the running state"),
        "{log}"
    );
    assert!(!log.contains("plugin swapped in, empty"), "{log}");
}

/// With `on_incompatible_state = "reset"`, the same refusal starts the new
/// plugin empty: the reload succeeds with the stage swapped, the reason is
/// logged, the output switches to the new tag without losing or repeating
/// an event, and the new instance's count starts from zero.
#[test]
fn a_refused_state_with_reset_starts_the_new_plugin_empty() {
    let (dir, file, out, weir) = start_echoing();
    let before = weir.instances();

    replace_pipeline(
        &file,
        &echo_pipeline(
            dir.path(),
            "{ tag = \"b\", restore = \"refuse\" }\non_incompatible_state = \"reset\"",
        ),
    );
    let r = weir.wait_for_reload(1, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["swapped"], json!(["echo"]), "{r}");
    assert_eq!(r["failed"], json!([]), "{r}");
    assert_eq!(sorted(&r["kept"]), ["log", "out"], "{r}");
    let after = weir.instances();
    assert_ne!(after["echo"], before["echo"], "the plugin was swapped");
    assert_eq!(after["log"], before["log"]);
    assert_eq!(after["out"], before["out"]);
    let logged = weir.wait_for("plugin swapped in, empty", Duration::from_secs(10));
    let refusal = logged
        .lines()
        .find(|l| l.contains("the new plugin refused the running state; starting it empty"))
        .unwrap_or_else(|| panic!("{logged}"));
    assert!(refusal.contains("asked to refuse state"), "{refusal}");
    assert!(refusal.contains("echo"), "{refusal}");

    let start = lines(&out).len();
    weir.wait_until("output of the new plugin", Duration::from_secs(20), || {
        lines(&out)[start..]
            .iter()
            .filter(|l| l.starts_with("b:"))
            .count()
            >= 500
    });
    let log = weir.stop();

    let ([a, b], total) = check_echoes(&out, &log, ["a", "b"]);
    assert!(a >= 500 && b >= 500, "a: {a}, b: {b}");
    assert_eq!(
        total, b as u64,
        "the new instance counted only what it echoed itself"
    );
}

/// A plugin crate that emits `TAG:N` for the Nth event it has seen, and
/// keeps N in its state.
fn counter_source(tag: &str) -> String {
    format!(
        r#"use weir_plugin::{{Batch, Output, Transform}};

struct Counter(u64);

impl Transform for Counter {{
    fn new(_: &str) -> Result<Self, String> {{
        Ok(Counter(0))
    }}

    fn process(&mut self, b: &Batch, out: &mut Output) {{
        for e in b.iter() {{
            self.0 += 1;
            out.emit(e.timestamp_ms, format!("{tag}:{{}}", self.0).as_bytes());
        }}
    }}

    fn snapshot(&self) -> Vec<u8> {{
        self.0.to_le_bytes().to_vec()
    }}

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {{
        let bytes: [u8; 8] = state.try_into().map_err(|_| "bad state".to_string())?;
        self.0 = u64::from_le_bytes(bytes);
        Ok(())
    }}
}}

weir_plugin::export!(Counter);
"#
    )
}

/// Writes the `reload-counter` crate into `dir`, depending on this
/// repository's SDK with its locked dependency versions.
fn counter_crate(dir: &Path) -> PathBuf {
    plugin_crate(dir, "reload-counter", &counter_source("v1"))
}

/// Editing `src/lib.rs` of a plugin crate named by `plugin = "DIR"` while
/// `weir run` watches it rebuilds the crate and swaps the new build in with
/// the running state: the output switches from `v1:N` to `v2:N` once, and
/// the count N runs on without a gap or repeat.
#[test]
fn editing_a_plugin_crate_rebuilds_it_and_swaps_it_in_with_its_state() {
    let dir = tempdir();
    let krate = counter_crate(dir.path());
    // Shared between runs, so only the first one builds the SDK's
    // dependencies.
    let target = target_dir().join("test-reload-crate");
    let cargo = PathBuf::from(env!("CARGO"));
    let envs: [(&str, &Path); 2] = [("CARGO_TARGET_DIR", &target), ("CARGO", &cargo)];
    let mut build = weir();
    build.args(["plugin", "build"]).arg(&krate);
    for (k, v) in envs {
        build.env(k, v);
    }
    let built = run_with_timeout(&mut build, Duration::from_secs(600));
    assert!(built.status.success(), "{}", texts(&built).1);

    write(dir.path(), "in.txt", "x\n");
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "replay"
path = "in.txt"
format = "lines"
rate = 500
loop = true

[transforms.count]
type = "wasm"
inputs = ["in"]
plugin = "{}"

[sinks.out]
type = "file"
inputs = ["count"]
path = "out.txt"
"#,
            krate.display()
        ),
    );
    let out = dir.path().join("out.txt");
    let weir = Background::start_with_env(dir.path(), &file, &envs);
    assert!(
        !weir.log_text().contains("building plugin"),
        "the crate was built already:\n{}",
        weir.log_text()
    );
    weir.wait_until("first output", Duration::from_secs(20), || {
        lines(&out).len() >= 100
    });
    let before = weir.instances();

    replace_text(&krate.join("src/lib.rs"), &counter_source("v2"));
    weir.wait_until(
        "output of the rebuilt plugin",
        Duration::from_secs(80),
        || lines(&out).iter().filter(|l| l.starts_with("v2:")).count() >= 100,
    );
    // A reload may also have seen the file's temporary name or cargo's
    // lock file; the one that found new sources swapped the stage.
    let status = weir.status();
    let r = &status["last_reload"];
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["swapped"], json!(["count"]), "{r}");
    assert!(
        r["trigger"].as_str().unwrap().starts_with("file change"),
        "{r}"
    );
    assert_eq!(status["reloads_failed"], 0, "{status}");
    let after = weir.instances();
    assert_ne!(after["count"], before["count"], "the plugin was swapped");
    assert_eq!(after["in"], before["in"]);
    assert_eq!(after["out"], before["out"]);
    let log = weir.stop();
    assert!(
        log.contains("weir: building plugin reload-counter from")
            && log.contains("(sources changed)"),
        "{log}"
    );
    assert!(
        log.contains("plugin swapped in with the running state"),
        "{log}"
    );

    let got = lines(&out);
    assert_eq!(
        got.len() as u64,
        stage_total(&log, "in", "events_out"),
        "every event counted once"
    );
    let first_v2 = got.iter().position(|l| l.starts_with("v2:")).unwrap();
    assert!(first_v2 >= 100);
    for (i, l) in got.iter().enumerate() {
        let tag = if i < first_v2 { "v1" } else { "v2" };
        assert_eq!(*l, format!("{tag}:{}", i + 1), "line {i}");
    }
}
