//! Plugins that trap, loop forever or allocate without bound are stopped by
//! their limits, reported by stage name, their batch dead-lettered, and the
//! pipeline goes on (with the plugin's state intact).

use std::time::Duration;

use crate::common::*;

const INPUT: &str = "a\nb\ntrap\nc\nloop\nd\nalloc\ne\nreject\nf\n";

fn pipeline(dir: &std::path::Path, dead_letter: bool) -> std::path::PathBuf {
    write(dir, "in.txt", INPUT);
    let (dl, dlq_sink) = if dead_letter {
        (
            "dead_letter = \"dlq\"",
            "[sinks.dlq]\ntype = \"file\"\npath = \"dlq.jsonl\"\nformat = \"json\"\n",
        )
    } else {
        ("", "")
    };
    let text = format!(
        r#"
batch_size = 1

[sources.in]
type = "replay"
path = "in.txt"
format = "lines"

[transforms.chaos]
type = "wasm"
inputs = ["in"]
plugin = "{plugin}"
timeout = "300ms"
memory_limit = "16MiB"
{dl}

[sinks.out]
type = "file"
inputs = ["chaos"]
path = "out.txt"

{dlq_sink}
"#,
        plugin = plugin("chaos").display()
    );
    write(dir, "p.toml", &text)
}

#[test]
fn trap_loop_and_memory_hog_are_stopped_reported_and_dead_lettered() {
    let dir = tempdir();
    let file = pipeline(dir.path(), true);
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");

    // Every good event came through, in order, and the plugin's running
    // total survived three instance re-creations (snapshot + replay).
    let got = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    assert_eq!(got, "a\nb\nc\nd\ne\nf\ntotal=6\n");

    let dead: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("dlq.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_value = |v: &str| {
        dead.iter()
            .find(|d| d["value"] == v)
            .unwrap_or_else(|| panic!("no dead letter for {v}: {dead:?}"))
    };
    let reason = |v: &str| {
        by_value(v)["headers"]["weir.reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(dead.len(), 4, "{dead:?}");
    for v in ["trap", "loop", "alloc", "reject"] {
        assert_eq!(by_value(v)["headers"]["weir.stage"], "chaos");
    }
    assert!(
        reason("trap").starts_with("plugin trapped:"),
        "{}",
        reason("trap")
    );
    assert!(
        reason("trap").contains("asked to trap"),
        "the panic message is quoted: {}",
        reason("trap")
    );
    assert_eq!(
        reason("loop"),
        "deadline of 300ms exceeded (plugin interrupted)"
    );
    assert!(
        reason("alloc").starts_with("memory limit of 16 MiB exceeded"),
        "{}",
        reason("alloc")
    );
    assert_eq!(reason("reject"), "asked to reject");
    assert_eq!(by_value("loop")["headers"]["weir.line"], "5");

    // Each failure is logged with the stage name and counted.
    assert_eq!(stderr.matches("plugin call failed").count(), 3, "{stderr}");
    assert!(stderr.contains("stage=\"chaos\""), "{stderr}");
    assert_eq!(stage_total(&stderr, "chaos", "errors"), 3);
    assert_eq!(stage_total(&stderr, "chaos", "rejected"), 4);
}

#[test]
fn without_a_dead_letter_sink_failed_batches_are_logged_counted_and_dropped() {
    let dir = tempdir();
    let file = pipeline(dir.path(), false);
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let got = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    assert_eq!(got, "a\nb\nc\nd\ne\nf\ntotal=6\n");
    assert_eq!(
        stderr.matches("batch dropped (no dead_letter set)").count(),
        3,
        "{stderr}"
    );
    assert!(stderr.contains("record rejected and dropped"), "{stderr}");
    assert!(!dir.path().join("dlq.jsonl").exists());
}

#[test]
fn a_plugin_refusing_its_config_fails_the_start_with_the_reason() {
    let dir = tempdir();
    write(dir.path(), "in.txt", "a\n");
    let text = format!(
        "[sources.in]\ntype = \"replay\"\npath = \"in.txt\"\nformat = \"lines\"\n\n[transforms.count]\ntype = \"wasm\"\ninputs = [\"in\"]\nplugin = \"{}\"\nconfig = {{ windw = \"1s\" }}\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"count\"]\n",
        plugin("gender-count").display()
    );
    let file = write(dir.path(), "p.toml", &text);
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("stage `count`: plugin rejected its config: unknown field `windw`"),
        "{stderr}"
    );
}
