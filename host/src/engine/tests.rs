//! The engine in-process: launching a graph, draining it at the end of the
//! data and on shutdown, a reload planned and applied while data flows, and
//! checkpoint barriers aligned across two sources.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{ReloadRequest, RunError, Topology};
use crate::telemetry::{ReloadReport, Telemetry};

/// A pipeline file in `dir` with `text`, compiled.
fn pipeline(dir: &Path, text: &str) -> crate::config::Pipeline {
    let file = dir.join("p.toml");
    std::fs::write(&file, text).unwrap();
    crate::config::load(&file).unwrap_or_else(|e| panic!("{e}"))
}

/// A file of `n` lines `0`, `1`, ...
fn numbers(dir: &Path, name: &str, n: usize) -> PathBuf {
    let path = dir.join(name);
    let text: String = (0..n).map(|i| format!("{i}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A started engine, its reload channel and the task running it.
struct Started {
    telemetry: Telemetry,
    shutdown: CancellationToken,
    reloads: mpsc::UnboundedSender<ReloadRequest>,
    run: tokio::task::JoinHandle<Result<(), RunError>>,
}

fn start(p: crate::config::Pipeline) -> Started {
    let telemetry = Telemetry::new(&p.file);
    let shutdown = CancellationToken::new();
    let topology = tokio::task::block_in_place(|| {
        Topology::start(p, &telemetry, Default::default(), shutdown.clone())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (reloads, requests) = mpsc::unbounded_channel();
    Started {
        telemetry,
        shutdown,
        reloads,
        run: tokio::spawn(topology.run(requests)),
    }
}

impl Started {
    async fn reload(&self) -> ReloadReport {
        let (tx, rx) = oneshot::channel();
        self.reloads
            .send(ReloadRequest {
                trigger: "test".into(),
                reply: Some(tx),
            })
            .unwrap();
        rx.await.unwrap()
    }

    fn counter(&self, stage: &str, f: fn(&crate::telemetry::Counters) -> u64) -> u64 {
        f(&self.telemetry.metrics(stage).read())
    }

    async fn finish(self) {
        tokio::time::timeout(Duration::from_secs(30), self.run)
            .await
            .expect("the pipeline ends")
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Waits until `cond` holds, for up to ten seconds.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finite_source_runs_through_every_stage_and_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let input = numbers(dir.path(), "in.txt", 5000);
    let out = dir.path().join("out.txt");
    let p = pipeline(
        dir.path(),
        &format!(
            "batch_size = 64\n[sources.nums]\ntype = \"replay\"\nformat = \"lines\"\npath = {input:?}\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"nums\"]\npath = {out:?}\n"
        ),
    );
    let started = start(p);
    let status = started.telemetry.status();
    assert_eq!(
        status
            .stages
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["nums", "out"]
    );
    let telemetry = started.telemetry.clone();
    started.finish().await;
    let got = lines(&out);
    assert_eq!(got.len(), 5000);
    assert_eq!(got[4999], "4999");
    let totals = telemetry.totals();
    assert_eq!(totals[0].1.events_in, 5000, "{totals:?}");
    assert_eq!(totals[1].1.events_out, 5000, "{totals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_what_the_sources_sent() {
    let dir = tempfile::tempdir().unwrap();
    let input = numbers(dir.path(), "in.txt", 100_000);
    let out = dir.path().join("out.txt");
    let p = pipeline(
        dir.path(),
        &format!(
            "batch_size = 16\n[sources.nums]\ntype = \"replay\"\nformat = \"lines\"\npath = {input:?}\nrate = 2000\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"nums\"]\npath = {out:?}\n"
        ),
    );
    let started = start(p);
    until("some output", || lines(&out).len() > 100).await;
    started.shutdown.cancel();
    let telemetry = started.telemetry.clone();
    started.finish().await;
    let sent = telemetry.metrics("nums").read().events_out;
    let got = lines(&out);
    assert!(sent < 100_000, "stopped before the end ({sent})");
    assert_eq!(got.len() as u64, sent, "every event sent was written");
    assert!(got.iter().enumerate().all(|(i, l)| *l == i.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_planned_and_applied_while_data_flows() {
    let dir = tempfile::tempdir().unwrap();
    let input = numbers(dir.path(), "in.txt", 1_000_000);
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    let source = format!(
        "batch_size = 8\n[sources.nums]\ntype = \"replay\"\nformat = \"lines\"\npath = {input:?}\nrate = 1000\n\n"
    );
    let p = pipeline(
        dir.path(),
        &format!("{source}[sinks.a]\ntype = \"file\"\ninputs = [\"nums\"]\npath = {a:?}\n"),
    );
    let file = p.file.clone();
    let started = start(p);
    until("output before the reload", || !lines(&a).is_empty()).await;
    let instance = |name: &str| {
        started
            .telemetry
            .status()
            .stages
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.instance)
    };
    let (source_before, a_before) = (instance("nums"), instance("a"));

    // Sink `a` changes (json lines) and sink `b` is added.
    std::fs::write(
        &file,
        format!(
            "{source}[sinks.a]\ntype = \"file\"\ninputs = [\"nums\"]\npath = {a:?}\nformat = \"json\"\n\n[sinks.b]\ntype = \"file\"\ninputs = [\"nums\"]\npath = {b:?}\n"
        ),
    )
    .unwrap();
    let report = started.reload().await;
    assert!(report.ok, "{}", report.summary());
    assert_eq!(report.kept, ["nums"]);
    assert_eq!(report.restarted, ["a"]);
    assert_eq!(report.added, ["b"]);
    assert_eq!(
        instance("nums"),
        source_before,
        "the source was not touched"
    );
    assert_ne!(
        instance("a"),
        a_before,
        "a new instance of the changed sink"
    );
    until("output of the new sink", || lines(&b).len() > 10).await;

    // A broken file is refused and nothing changes.
    std::fs::write(&file, "[sinks.a\n").unwrap();
    let refused = started.reload().await;
    assert!(!refused.ok && refused.rejected.is_some(), "{refused:?}");
    assert_eq!(
        started.telemetry.stage_names(),
        ["nums", "a", "b"],
        "still running as before"
    );

    started.shutdown.cancel();
    let sent = started.counter("nums", |c| c.events_out);
    started.finish().await;
    let a_lines = lines(&a);
    assert_eq!(
        a_lines.len() as u64,
        sent,
        "sink a lost nothing over its restart"
    );
    assert!(a_lines.first().is_some_and(|l| l == "0"));
    assert!(
        a_lines.last().is_some_and(|l| l.starts_with('{')),
        "written as JSON after the reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_align_the_barriers_of_two_sources() {
    let dir = tempfile::tempdir().unwrap();
    let one = numbers(dir.path(), "one.txt", 400);
    let two = numbers(dir.path(), "two.txt", 700);
    let out = dir.path().join("out.txt");
    let p = pipeline(
        dir.path(),
        &format!(
            "batch_size = 4\nstate_dir = \"state\"\ncheckpoint_interval = \"50ms\"\n\
             [sources.one]\ntype = \"replay\"\nformat = \"lines\"\npath = {one:?}\nrate = 2000\n\n\
             [sources.two]\ntype = \"replay\"\nformat = \"lines\"\npath = {two:?}\nrate = 3000\n\n\
             [sinks.out]\ntype = \"file\"\ninputs = [\"one\", \"two\"]\npath = {out:?}\n"
        ),
    );
    let state = dir.path().join("state");
    let started = start(p);
    until("a checkpoint while both sources run", || {
        crate::checkpoint::load(&state)
            .ok()
            .flatten()
            .is_some_and(|s| s.sources.len() == 2)
    })
    .await;
    let mid = crate::checkpoint::load(&state).unwrap().unwrap();
    started.finish().await;
    // A checkpoint records where each source was when its barrier left.
    for (name, total) in [("one", 400), ("two", 700)] {
        let line = mid.sources[name]["line"].as_u64().unwrap();
        assert!(line <= total, "{name}: {mid:?}");
    }
    // At the end of the data, a last checkpoint records both end positions.
    let last = crate::checkpoint::load(&state).unwrap().unwrap();
    assert!(last.id > mid.id);
    assert_eq!(last.sources["one"]["line"], 400, "{last:?}");
    assert_eq!(last.sources["two"]["line"], 700, "{last:?}");
    assert_eq!(lines(&out).len(), 1100);
}
