//! The Python and JavaScript SDKs: `weir plugin new --lang` → native test →
//! `weir plugin build` (toolchain installed into the plugin) → `weir run`
//! from a fresh clone, and the shipped gender count in Python
//! (`plugins/gender-count-py`) and JavaScript (`plugins/gender-count-js`)
//! giving byte for byte the Rust plugin's output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::toolchains::sdk_plugin;
use crate::common::*;

/// `weir plugin new tally --lang LANG` inside a fresh clone, its native
/// test, `weir plugin build` with the toolchain installed into the plugin's
/// `.weir/`, `inspect`, and a run of its example pipeline that finds the
/// component already compiled.
fn new_build_run(lang: &str, test: &[&str], toolchain: &str, language_line: &str) {
    let dir = tempdir();
    let clone = fresh_clone(dir.path());
    let plugin = dir.path().join("tally");
    let out = run_with_timeout(
        weir()
            .current_dir(&clone)
            .args(["plugin", "new", "tally", "--lang", lang, "--dir"])
            .arg(&plugin),
        Duration::from_secs(30),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("created {lang} plugin")),
        "{stdout}"
    );

    // Its native test passes, without any toolchain.
    let out = Command::new(test[0])
        .args(&test[1..])
        .current_dir(&plugin)
        .output()
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert!(
        out.status.success(),
        "native test failed:\n{stdout}\n{stderr}"
    );

    // `plugin build` installs the toolchain into the plugin, builds, and
    // compiles the component for this machine.
    let out = run_with_timeout(
        weir()
            .current_dir(&plugin)
            .args(["plugin", "build"])
            .env_remove("WEIR_TOOLCHAINS"),
        Duration::from_secs(900),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("weir: installing {toolchain}")),
        "{stderr}"
    );
    let installed = std::fs::read_dir(plugin.join(".weir"))
        .unwrap()
        .flatten()
        .any(|e| e.path().join(".installed").is_file());
    assert!(installed, "no toolchain in {}/.weir", plugin.display());
    assert!(stderr.contains("for this machine"), "{stderr}");
    let wasm = PathBuf::from(stdout.trim());
    assert_eq!(wasm, plugin.join("target/tally.wasm"));

    let out = run_with_timeout(
        weir().args(["plugin", "inspect"]).arg(&wasm),
        Duration::from_secs(120),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(language_line), "{stdout}");
    assert!(
        stdout.contains(&format!("toolchain:   {toolchain} (weir plugin build)")),
        "{stdout}"
    );
    assert!(stdout.contains("weir plugin: yes"), "{stdout}");

    // The example runs, on the component compiled by `build`.
    let (stdout, log) = run_to_end(
        &plugin.join("example/pipeline.toml"),
        Duration::from_secs(300),
    );
    assert_eq!(
        stdout,
        "{\"seen\":1,\"value\":\"apple\"}\n{\"seen\":1,\"value\":\"Banana\"}\n\
         {\"seen\":2,\"value\":\"apple\"}\n{\"seen\":3,\"value\":\"APPLE\"}\n",
        "{log}"
    );
    assert!(!log.contains("building"), "rebuilt at run:\n{log}");
    assert!(!log.contains("plugin compiled"), "compiled at run:\n{log}");
}

#[test]
fn a_new_python_plugin_builds_passes_its_test_and_runs_from_a_fresh_clone() {
    new_build_run(
        "python",
        &["python3", "-m", "unittest", "-q"],
        "componentize-py 0.25.1",
        "language:    python\n",
    );
}

#[test]
fn a_new_javascript_plugin_builds_passes_its_test_and_runs_from_a_fresh_clone() {
    new_build_run(
        "javascript",
        &["node", "--test"],
        "@bytecodealliance/componentize-js 0.23.0",
        "language:    javascript\n",
    );
}

/// `n` events `{"ts":MS,"gender":"G"}`, 2 ms apart from a fixed start,
/// genders from a fixed pseudo-random sequence ("0", "1", "2", "" and
/// now and then a number or null), every 10,007th event 5 s late and every
/// 50,021st not JSON.
fn gender_events(n: usize) -> String {
    let mut text = String::with_capacity(n * 40);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut ts = 1_700_000_000_000 + 2 * i as i64;
        if i % 10_007 == 10_006 {
            ts -= 5_000;
        }
        if i % 50_021 == 50_020 {
            text.push_str("{\"ts\":oops\n");
            continue;
        }
        let gender = match x % 23 {
            0..=7 => "\"0\"",
            8..=15 => "\"1\"",
            16..=19 => "\"2\"",
            20 => "\"\"",
            21 => "1",
            _ => "null",
        };
        let _ = writeln!(text, "{{\"ts\":{ts},\"gender\":{gender}}}");
    }
    text
}

/// Counts `events.jsonl` with `plugin` into `out.txt`, refusals into
/// `dlq.jsonl`; returns (output, dead letters, log).
fn count(events: &Path, plugin: &Path) -> (String, usize, String) {
    let p = Pipeline::new(&format!(
        r#"
[sources.in]
type = "replay"
path = "{}"
format = "jsonl"
timestamp = "ts"

[transforms.count]
type = "wasm"
inputs = ["in"]
plugin = "{}"
config = {{ key = "gender", time = "event", format = "json" }}
dead_letter = "dlq"

[sinks.out]
type = "file"
inputs = ["count"]
path = "out.txt"

[sinks.dlq]
type = "file"
path = "dlq.jsonl"
format = "json"
"#,
        events.display(),
        plugin.display()
    ));
    let log = p.run_ok(Duration::from_secs(600));
    let dead = p.json_lines("dlq.jsonl");
    let late = dead
        .iter()
        .filter(|d| d["headers"]["weir.reason"] == "late")
        .count();
    assert!(late > 0, "no late events refused: {:?}", dead.first());
    (p.read("out.txt"), dead.len(), log)
}

#[test]
fn the_gender_count_in_python_and_javascript_matches_rust_on_a_million_events() {
    let dir = tempdir();
    let events = write(dir.path(), "events.jsonl", &gender_events(1_000_000));
    let (rust, rust_dead, _) = count(&events, &plugin("gender-count"));
    assert!(
        rust.lines().count() >= 2_000,
        "{} windows",
        rust.lines().count()
    );
    for (name, dir) in [
        ("python", "plugins/gender-count-py"),
        ("javascript", "plugins/gender-count-js"),
    ] {
        let (out, dead, log) = count(&events, &sdk_plugin(Path::new(dir)));
        assert_eq!(dead, rust_dead, "{name}: dead letters differ\n{log}");
        if out != rust {
            let first = out
                .lines()
                .zip(rust.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(out.lines().count().min(rust.lines().count()));
            panic!(
                "{name} differs from Rust at window {first}: {:?} vs {:?}",
                out.lines().nth(first),
                rust.lines().nth(first)
            );
        }
    }
}

/// componentize-js's runtime grows with every event it processes; under
/// the default 64 MiB cap the stage is recycled, with its open windows, as
/// often as it needs: 4,000,000 events, no dead letter beyond the late and
/// malformed ones Rust refuses too, and the same output.
#[test]
fn a_leaking_javascript_plugin_counts_four_million_events_with_no_dead_letter() {
    let dir = tempdir();
    let events = write(dir.path(), "events.jsonl", &gender_events(4_000_000));
    let (rust, rust_dead, _) = count(&events, &plugin("gender-count"));
    let (js, js_dead, log) = count(&events, &sdk_plugin(Path::new("plugins/gender-count-js")));
    let recycled = log.matches("plugin instance recycled").count();
    assert!(recycled >= 1, "never recycled:\n{log}");
    assert_eq!(js_dead, rust_dead, "{log}");
    assert!(js == rust, "the JavaScript output differs from Rust's");
}

/// `pipelines/gender-count-py.toml` and `-js.toml` as shipped: the shop log
/// at 10 rows/s through the plugin directory, printing seed lines.
#[test]
fn the_shipped_python_and_javascript_gender_pipelines_print_counts_per_second() {
    for lang in ["py", "js"] {
        // Built (and compiled) up front, so the run finds it up to date.
        sdk_plugin(Path::new(&format!("plugins/gender-count-{lang}")));
        let dir = tempdir();
        let file = repo().join(format!("pipelines/gender-count-{lang}.toml"));
        let mut bg = Background::start(dir.path(), &file, &[]);
        wait_until(
            Duration::from_secs(60),
            || {
                let out = std::fs::read_to_string(&bg.stdout).unwrap_or_default();
                out.lines().count() >= 3
            },
            || bg.log_text(),
        );
        let out = std::fs::read_to_string(&bg.stdout).unwrap();
        // Whole lines only: weir is still writing.
        for line in out
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
        {
            let windows: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{lang}: {line:?}: {e}"));
            let total: u64 = windows
                .iter()
                .flat_map(|w| w.values())
                .map(|n| n.as_u64().unwrap())
                .sum();
            assert!((1..=30).contains(&total), "{lang}: {line}");
        }
        bg.child.kill().unwrap();
        let _ = bg.child.wait();
    }
}
