//! Hot reload of a checkpointing pipeline: its graph and plugins change
//! while checkpoints go on (and cover the new stages), and the state
//! carried through a graph change is restored exactly once after a
//! restart.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

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
        LOOPING_SHOP_LOG,
        counting("log", "gc.wasm")
    );
    let file = pipeline_file(dir.path(), &text);
    let counts = dir.path().join("counts.jsonl");
    let weir = Background::start(dir.path(), &file, &[]);
    wait_growth(&counts, 0, 2);
    let (first, _, _) = next_checkpoint(dir.path(), 0);
    let before = weir.instances();

    // A new source feeding the running transform, and a new sink.
    let grown = text.replace("inputs = [\"log\"]", "inputs = [\"log\", \"log2\"]")
        + &LOOPING_SHOP_LOG
            .replace("[sources.log]", "[sources.log2]")
            .replace("rate = 20000", "rate = 5000")
        + "\n[sinks.more]\ntype = \"file\"\ninputs = [\"count\"]\npath = \"more.jsonl\"\n";
    replace_pipeline(&file, &grown);
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
    replace_pipeline(&file, &text);
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
    replace_pipeline(&file, &text.replace("rate = 20000", "rate = 15000"));
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
    // Lines the old build emitted before the swap may still be arriving:
    // wait for the new build's, then check it keeps producing.
    wait_until(
        Duration::from_secs(30),
        || {
            lines(&counts)
                .last()
                .is_some_and(|l| l.contains(r#""build":"next""#))
        },
        || format!("no line of the new build after {seen}"),
    );
    let now = lines(&counts).len();
    let l = wait_growth(&counts, now, 2);
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
    let text = r#"
state_dir = "state"
checkpoint_interval = "100ms"

[sources.in]
type = "replay"
path = "in.txt"
format = "lines"
rate = 10000

[transforms.echo]
type = "wasm"
inputs = ["in"]
plugin = "@plugin(chaos)"

[sinks.out]
type = "file"
inputs = ["echo"]
path = "out.txt"
"#;
    let file = pipeline_file(dir.path(), text);
    let out = dir.path().join("out.txt");
    let weir = Background::start(dir.path(), &file, &[]);
    weir.wait_until("output", Duration::from_secs(30), || {
        lines(&out).len() > N / 6
    });
    replace_pipeline(
        &file,
        &format!(
            "{text}\n[sinks.more]\ntype = \"file\"\ninputs = [\"echo\"]\npath = \"more.txt\"\n"
        ),
    );
    let r = weir.wait_for_reload(1, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["added"], json!(["more"]), "{r}");
    let more = dir.path().join("more.txt");
    weir.wait_until("the new sink", Duration::from_secs(30), || {
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
