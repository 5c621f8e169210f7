//! More hot reload through the real binary: a plugin build that refuses
//! the running state (`on_incompatible_state`), rewiring edges and
//! dead-letter targets under backpressure, reloads triggered by editing a
//! plugin crate's sources, and the pipeline file's own `admin` address.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// The lines of a text file (none if it does not exist yet).
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls `done` every 20 ms until it holds, failing with `what` and the
/// weir log after `timeout`.
fn wait_until(weir: &Background, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "{what} did not happen within {timeout:?}:\n{}",
            weir.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One stage of a `weir status --json` document.
fn stage<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no stage {name}: {status}"))
}

/// A sorted list of the strings in a JSON array.
fn sorted(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

// --- on_incompatible_state --------------------------------------------

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
plugin = "{chaos}"
config = {echo}

[sinks.out]
type = "file"
inputs = ["echo"]
path = "out.txt"
"#,
        chaos = plugin("chaos").display(),
    )
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
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &echo_pipeline(dir.path(), r#"{ tag = "a" }"#),
    );
    let out = dir.path().join("out.txt");
    let weir = Background::start(dir.path(), &file, &[]);
    wait_until(&weir, "first output", Duration::from_secs(20), || {
        lines(&out).len() >= 500
    });
    let before = weir.instances();

    let refusing = [
        r#"{ tag = "b", restore = "refuse" }"#,
        "{ tag = \"b\", restore = \"refuse\" }\non_incompatible_state = \"reject\"",
    ];
    for (n, echo) in refusing.into_iter().enumerate() {
        replace_text(&file, &echo_pipeline(dir.path(), echo));
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
        wait_until(&weir, "more output", Duration::from_secs(20), || {
            lines(&out).len() >= seen + 500
        });
        assert!(lines(&out)[seen..].iter().all(|l| l.starts_with("a:")));
    }
    let status = weir.status();
    assert_eq!(status["reloads_failed"], 2, "{status}");
    assert_eq!(status["reloads_ok"], 0, "{status}");

    // A build that takes the state swaps in with the old instance's count.
    replace_text(&file, &echo_pipeline(dir.path(), r#"{ tag = "b" }"#));
    let r = weir.wait_for_reload(3, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["swapped"], json!(["echo"]), "{r}");
    let seen = lines(&out).len();
    wait_until(
        &weir,
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
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &echo_pipeline(dir.path(), r#"{ tag = "a" }"#),
    );
    let out = dir.path().join("out.txt");
    let weir = Background::start(dir.path(), &file, &[]);
    wait_until(&weir, "first output", Duration::from_secs(20), || {
        lines(&out).len() >= 500
    });
    let before = weir.instances();

    replace_text(
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
    wait_until(
        &weir,
        "output of the new plugin",
        Duration::from_secs(20),
        || {
            lines(&out)[start..]
                .iter()
                .filter(|l| l.starts_with("b:"))
                .count()
                >= 500
        },
    );
    let log = weir.stop();

    let ([a, b], total) = check_echoes(&out, &log, ["a", "b"]);
    assert!(a >= 500 && b >= 500, "a: {a}, b: {b}");
    assert_eq!(
        total, b as u64,
        "the new instance counted only what it echoed itself"
    );
}

// --- rewiring -----------------------------------------------------------

/// Timestamps of source `a`'s rows; `b`'s start at twice this.
const A_BASE: i64 = 1_000_000_000_000;

/// Rows of source `a` (replayed as fast as the slow sink takes them);
/// source `b` has [`B_ROWS`].
const A_ROWS: usize = 100_000;
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
plugin = "{chaos}"
config = {{ tag = "pa" }}
dead_letter = "{dl_a}"

[transforms.pb]
type = "wasm"
inputs = ["b"]
plugin = "{chaos}"
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
"#,
        chaos = plugin("chaos").display(),
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
    let file = write(dir.path(), "p.toml", &original);
    let (out, bs) = (dir.path().join("out"), dir.path().join("bs.txt"));
    let (dl1, dl2) = (dir.path().join("dl1.jsonl"), dir.path().join("dl2.jsonl"));
    let weir = Background::start(dir.path(), &file, &[]);
    wait_until(
        &weir,
        "output of both paths",
        Duration::from_secs(20),
        || dir_values(&out).len() >= 200 && lines(&bs).len() >= 100 && lines(&dl1).len() >= 10,
    );
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
    replace_text(&file, &joined);
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
    wait_until(
        &weir,
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
    replace_text(&file, &original);
    let r = weir.wait_for_reload(2, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(sorted(&r["rewired"]), rewired, "{r}");
    assert_eq!(weir.instances(), before, "rewiring replaces no instance");
    let s = weir.status();
    assert_eq!(stage(&s, "out")["inputs"], json!(["pa"]), "{s}");
    assert_eq!(stage(&s, "pb")["outputs"], json!(["bs"]), "{s}");
    assert_eq!(stage(&s, "pa")["dead_letter"], "dl1", "{s}");
    assert_eq!(stage(&s, "pb")["dead_letter"], "dl2", "{s}");
    wait_until(
        &weir,
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

// --- plugin crate sources ---------------------------------------------

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

/// `weir run FILE` (watching files, admin on a free port) with `envs` set,
/// waiting until the pipeline runs.
fn start_with_env(dir: &Path, file: &Path, envs: &[(&str, &Path)]) -> Background {
    let log = dir.join("weir.log");
    let stdout = dir.join("weir.out");
    let mut cmd = weir();
    cmd.arg("run").arg(file).args(["--admin", "127.0.0.1:0"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn weir");
    let mut bg = Background {
        child,
        admin: String::new(),
        log,
        stdout,
    };
    let text = bg.wait_for("admin endpoint listening address=", Duration::from_secs(60));
    let rest = text
        .split("admin endpoint listening address=")
        .nth(1)
        .unwrap();
    bg.admin = rest.split_whitespace().next().unwrap().to_owned();
    bg.wait_for("pipeline running", Duration::from_secs(60));
    bg
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
    let weir = start_with_env(dir.path(), &file, &envs);
    assert!(
        !weir.log_text().contains("building plugin"),
        "the crate was built already:\n{}",
        weir.log_text()
    );
    wait_until(&weir, "first output", Duration::from_secs(20), || {
        lines(&out).len() >= 100
    });
    let before = weir.instances();

    replace_text(&krate.join("src/lib.rs"), &counter_source("v2"));
    wait_until(
        &weir,
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

// --- admin address in the pipeline file --------------------------------

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `weir` client command with no admin address from the environment.
fn client(command: &str) -> std::process::Command {
    let mut c = weir();
    c.arg(command)
        .env_remove("WEIR_ADMIN")
        .env_remove("WEIR_ADMIN_TOKEN");
    c
}

/// `admin = "127.0.0.1:PORT"` in the pipeline file (no `--admin`) is where
/// `weir run` serves the endpoint, and where `weir status FILE` and
/// `weir reload FILE` find it; a file without `admin` is refused by the
/// clients, and editing the address is refused by the running pipeline
/// (it applies at start only), whose endpoint stays where it was.
#[test]
fn the_admin_address_in_the_pipeline_file_is_served_and_found_by_the_clients() {
    let dir = tempdir();
    let port = free_port();
    write(dir.path(), "in.txt", "x\ny\n");
    let body = r#"
[sources.in]
type = "replay"
path = "in.txt"
format = "lines"
rate = 100
loop = true

[sinks.out]
type = "file"
inputs = ["in"]
path = "out.txt"
"#;
    let text = format!("admin = \"127.0.0.1:{port}\"\n{body}");
    let file = write(dir.path(), "p.toml", &text);
    let weir = Background::start_with(dir.path(), &file, &[], &[], Stdio::null());
    assert_eq!(weir.admin, format!("127.0.0.1:{port}"));

    let out = run_with_timeout(
        client("status").arg(&file).arg("--json"),
        Duration::from_secs(30),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let s: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(s["pid"], weir.child.id(), "{s}");
    let names: Vec<&str> = s["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["in", "out"], "{s}");

    let out = run_with_timeout(client("status").arg(&file), Duration::from_secs(30));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("(pid {})", weir.child.id())),
        "{stdout}"
    );

    let out = run_with_timeout(client("reload").arg(&file), Duration::from_secs(30));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("reload 1: kept 2, swapped -, restarted -"),
        "{stdout}"
    );

    // A file that names no endpoint: the client says so.
    let other = write(dir.path(), "other.toml", body);
    let out = run_with_timeout(client("status").arg(&other), Duration::from_secs(30));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sets no `admin` address; pass --admin"),
        "{stderr}"
    );

    // Moving the endpoint needs a restart.
    let moved = format!("admin = \"127.0.0.1:{}\"\n{body}", free_port());
    replace_text(&file, &moved);
    let r = weir.wait_for_reload(2, Duration::from_secs(30));
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["rejected"]
            .as_str()
            .unwrap()
            .contains("top-level settings (batch_size, channel_capacity, state_dir, checkpoint_interval, admin) apply at start"),
        "{r}"
    );
    assert_eq!(weir.status()["pid"], weir.child.id());
    weir.stop();
}

/// A checkpointing pipeline changes its graph (a sink added while events
/// flow), is stopped with SIGTERM and restarted from its checkpoint: the
/// plugin's count, restored from the checkpoints taken before and after
/// the reload, ends at exactly the number of events sent.
#[test]
fn a_graph_change_between_checkpoints_keeps_state_exactly_once_across_a_restart() {
    const N: usize = 150_000;
    let dir = tempdir();
    let input: String = (0..N).map(|i| format!("e{i}\n")).collect();
    write(dir.path(), "in.txt", &input);
    let text = format!(
        r#"
state_dir = "state"
checkpoint_interval = "100ms"

[sources.in]
type = "replay"
path = "in.txt"
format = "lines"
rate = 30000

[transforms.echo]
type = "wasm"
inputs = ["in"]
plugin = "{}"

[sinks.out]
type = "file"
inputs = ["echo"]
path = "out.txt"
"#,
        plugin("chaos").display()
    );
    let file = write(dir.path(), "p.toml", &text);
    let out = dir.path().join("out.txt");
    let weir = Background::start(dir.path(), &file, &[]);
    wait_until(&weir, "output", Duration::from_secs(30), || {
        lines(&out).len() > N / 6
    });
    replace_text(
        &file,
        &format!(
            "{text}\n[sinks.more]\ntype = \"file\"\ninputs = [\"echo\"]\npath = \"more.txt\"\n"
        ),
    );
    let r = weir.wait_for_reload(1, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["added"], json!(["more"]), "{r}");
    let more = dir.path().join("more.txt");
    wait_until(&weir, "the new sink", Duration::from_secs(30), || {
        !lines(&more).is_empty()
    });
    let written = lines(&out).len();
    assert!(written < N, "stopped before the end ({written} of {N})");
    let log = weir.stop();
    assert!(log.contains("final checkpoint written"), "{log}");

    // The restart resumes from the checkpoint and runs to the end.
    let mut again = Background::start(dir.path(), &file, &[]);
    let log = again.finish(Duration::from_secs(60));
    assert!(log.contains("restoring from checkpoint"), "{log}");
    let totals: Vec<String> = lines(&out)
        .into_iter()
        .filter(|l| l.starts_with("total="))
        .collect();
    assert_eq!(totals, [format!("total={N}")], "counted exactly once");
    // Every event reached both sinks (at least once: sinks may repeat what
    // came after the last checkpoint).
    let seen: std::collections::HashSet<String> = lines(&out).into_iter().collect();
    assert!((0..N).all(|i| seen.contains(&format!("e{i}"))));
    let in_more: std::collections::HashSet<String> = lines(&more).into_iter().collect();
    assert!(in_more.contains(&format!("e{}", N - 1)));
    assert!(in_more.contains(&format!("total={N}")));
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
    wait_until(&weir, "output", Duration::from_secs(30), || {
        lines(&out).len() > 2_000
    });
    replace_text(&file, &text.replace("rate = 20000", "rate = 10000"));
    let r = weir.wait_for_reload(1, Duration::from_secs(30));
    assert_eq!(r["restarted"], json!(["in"]), "{r}");
    let before = lines(&out).len();
    wait_until(&weir, "more output", Duration::from_secs(30), || {
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
