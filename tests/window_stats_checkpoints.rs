//! Window-stats with checkpoints: stopped with SIGTERM or killed with
//! SIGKILL half way and restarted, replay-fed and Kafka-fed (the shared
//! Apache Kafka broker), it ends with the figures of an uninterrupted run; the
//! checkpoint holds the Kafka offsets its state reflects; and SIGTERM stops
//! a Kafka-fed pipeline promptly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::kafka::*;
use crate::common::stats::*;
use crate::common::*;

/// Top-level settings for checkpoints every 200 ms.
const CHECKPOINTS: &str = "state_dir = \"state\"\ncheckpoint_interval = \"200ms\"\n";

// ---- Replayed from the file. ----

/// Runs the replay pipeline with checkpoints, interrupts it with `signal`
/// after `after`, restarts it, and returns the figures of both runs
/// together.
fn interrupted(signal_no: i32, after: Duration) -> (Figures, String) {
    let p = Pipeline::new(&replay_pipeline(CHECKPOINTS, &data(), "rate = 5000"));
    let child = p
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // At least `after`, and never before the first checkpoint: on a loaded
    // machine the start can take longer than `after`, and a restart with no
    // checkpoint would test nothing.
    let saved = p.path("state/checkpoint.json");
    while started.elapsed() < after || !saved.exists() {
        if started.elapsed() > Duration::from_secs(60) {
            signal(&child, libc::SIGKILL);
            let out = wait_with_timeout(child, Duration::from_secs(10));
            panic!("no checkpoint within 60 s:\n{}", texts(&out).1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, signal_no);
    let first = wait_with_timeout(child, Duration::from_secs(60));
    let (_, err1) = texts(&first);
    if signal_no == libc::SIGTERM {
        assert!(first.status.success(), "{err1}");
        assert!(err1.contains("final checkpoint written"), "{err1}");
    }
    let lines_before = p.lines("out.jsonl").len();
    let second = p.run(Duration::from_secs(120));
    let (_, err2) = texts(&second);
    assert!(second.status.success(), "{err2}");
    assert!(err2.contains("restoring from checkpoint"), "{err2}");
    assert!(
        err2.contains("replay resumes from the checkpoint"),
        "{err2}"
    );
    println!("interrupted by signal {signal_no} after {lines_before} figures");
    // Figures may repeat after a SIGKILL (work since the last checkpoint is
    // redone); keep the last of each, as a consumer would.
    let (f, _) = figures(&p.read("out.jsonl"));
    (f, err2)
}

/// The `since_start` figures of `f`.
fn since_start(f: &Figures) -> Figures {
    f.iter()
        .filter(|((_, w, _), _)| w == "since_start")
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The last `Samples since start` figure: every row counted once.
fn samples(f: &Figures) -> (Option<f64>, u64) {
    *f.iter()
        .rfind(|((s, w, _), _)| s == "Samples" && w == "since_start")
        .unwrap()
        .1
}

#[test]
fn sigterm_half_way_then_restart_ends_like_an_uninterrupted_run() {
    let want = expected(&read_rows(&data_lines(), 0), 600_000, &ROOM_STATS);
    let (got, _) = interrupted(libc::SIGTERM, Duration::from_millis(2000));
    // Every since_start figure, then everything else.
    assert_same(&since_start(&got), &since_start(&want));
    assert_same(&got, &want);
}

#[test]
fn sigkill_then_restart_counts_every_row_exactly_once() {
    let want = expected(&read_rows(&data_lines(), 0), 600_000, &ROOM_STATS);
    let (got, _) = interrupted(libc::SIGKILL, Duration::from_millis(2000));
    assert_eq!(
        samples(&got),
        (Some(20_160.0), 20_160),
        "no row lost, none counted twice"
    );
    assert_same(&got, &want);
}

// ---- Read from a real Kafka broker. ----

/// The statistics of the Kafka checkpoint tests.
const KAFKA_STATS: [Spec; 5] = [
    TEMPERATURE_BY_BATCH,
    TEMPERATURE_SINCE_START,
    SAMPLES,
    LUMINOSITY_SLIDING,
    GAPS_BY_BATCH,
];

/// Source settings that bound shutdown to about a second (see
/// [`kafka_sigterm_stops_promptly`]) and let the broker drop a killed
/// member of the group after 6 s instead of librdkafka's default 45 s.
const QUICK_STOP: &str = "drain_timeout = \"1s\"\nrebalance_timeout = \"1s\"\n\
    options = { \"session.timeout.ms\" = 6000, \"heartbeat.interval.ms\" = 500 }\n";

/// A pipeline reading CSV rows from `topic` on the real broker into
/// window-stats, with `top` settings and `source` settings added. Offsets
/// are committed to the group only hourly, so where a checkpointed restart
/// resumes can come only from the checkpoint.
fn kafka_pipeline(dir: &Path, topic: &str, top: &str, source: &str) -> PathBuf {
    let rows = format!(
        r#"type = "kafka"
brokers = "@broker"
topic = "{topic}"
group = "{topic}-group"
start = "earliest"
format = "text"
commit_interval = "1h"
{source}"#
    );
    pipeline_file(dir, &stats_pipeline(top, &rows, &KAFKA_STATS))
}

/// The saved checkpoint, if any.
fn checkpoint(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("state/checkpoint.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// What [`kafka_interrupted`] observed.
struct Interrupted {
    /// Figures of both runs, the last of each kept.
    figures: Figures,
    /// Figures emitted more than once.
    repeated: usize,
    /// The checkpoint the first run left.
    checkpoint: serde_json::Value,
    /// The second run's log.
    log: String,
}

/// Produces the first half of the room sensor rows to a fresh topic, runs
/// the checkpointed pipeline until a checkpoint covers all of them, stops
/// it with `sig`, produces the second half and runs the same pipeline again
/// (now stopping at the end of the topic).
fn kafka_interrupted(topic: &str, sig: i32) -> Interrupted {
    let b = broker();
    create_topic(b, topic, 1);
    let lines = data_lines();
    let half = lines.len() / 2;
    produce(
        b,
        topic,
        lines[..half].iter().map(|l| l.clone().into_bytes()),
    );
    let dir = tempdir();
    let file = kafka_pipeline(dir.path(), topic, CHECKPOINTS, QUICK_STOP);
    let mut first = Background::start(dir.path(), &file, &[]);
    wait_for_checkpoint(&first, dir.path(), half as u64);
    let saved = if sig == libc::SIGTERM {
        let log = first.stop();
        assert!(log.contains("final checkpoint written"), "{log}");
        checkpoint(dir.path()).unwrap()
    } else {
        let saved = checkpoint(dir.path()).unwrap();
        signal(&first.child, sig);
        first.child.wait().unwrap();
        saved
    };
    let before = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap_or_default();
    assert!(!before.is_empty(), "no figures before the stop");

    produce(
        b,
        topic,
        lines[half..].iter().map(|l| l.clone().into_bytes()),
    );
    let file = kafka_pipeline(
        dir.path(),
        topic,
        CHECKPOINTS,
        &format!("{QUICK_STOP}exit_at_end = true"),
    );
    let second = run_pipeline(&file, Duration::from_secs(80));
    let (_, log) = texts(&second);
    assert!(second.status.success(), "{log}");
    assert!(log.contains("restoring from checkpoint"), "{log}");
    let bad = std::fs::read_to_string(dir.path().join("bad.jsonl")).unwrap_or_default();
    assert!(
        bad.is_empty(),
        "no row is bad: {}",
        &bad[..bad.len().min(2000)]
    );
    let (figures, repeated) =
        figures(&std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
    Interrupted {
        figures,
        repeated,
        checkpoint: saved,
        log,
    }
}

/// A Kafka-fed window-stats pipeline stopped with SIGTERM half way and
/// restarted ends with exactly the figures of an independent computation
/// over the whole file (so equal to an uninterrupted run), none emitted
/// twice.
#[test]
fn kafka_sigterm_half_way_then_restart_ends_like_an_uninterrupted_run() {
    let lines = data_lines();
    let want = expected(&read_rows(&lines, 0), 600_000, &KAFKA_STATS);
    let run = kafka_interrupted("stats-sigterm", libc::SIGTERM);
    assert_eq!(
        samples(&run.figures),
        (Some(lines.len() as f64), lines.len() as u64),
        "no row lost, none counted twice"
    );
    assert_same(&run.figures, &want);
    assert_eq!(run.repeated, 0, "a figure was emitted twice");
}

/// As above with SIGKILL: the restart restores the last checkpoint and
/// resumes the Kafka source from the offsets saved with it.
#[test]
fn kafka_sigkill_then_restart_counts_every_row_exactly_once() {
    let lines = data_lines();
    let want = expected(&read_rows(&lines, 0), 600_000, &KAFKA_STATS);
    let run = kafka_interrupted("stats-sigkill", libc::SIGKILL);
    assert_eq!(
        samples(&run.figures),
        (Some(lines.len() as f64), lines.len() as u64),
        "no row lost, none counted twice\n{}",
        run.log
    );
    assert_same(&run.figures, &want);
}

/// The checkpoint of a Kafka-fed pipeline holds the Kafka offsets its
/// state reflects (`{"topic/partition": next offset}`), and the restart
/// resumes from them.
#[test]
fn kafka_checkpoint_records_the_offsets_its_state_reflects() {
    let run = kafka_interrupted("stats-offsets", libc::SIGTERM);
    let half = data_lines().len() / 2;
    assert_eq!(
        run.checkpoint["sources"]["rows"],
        serde_json::json!({ "stats-offsets/0": half }),
        "{:#}",
        run.checkpoint["sources"]
    );
    assert!(
        run.log
            .contains("kafka source resumes from the checkpoint offsets")
            && run.log.contains("partitions=1"),
        "{}",
        run.log
    );
}

/// Waits until the checkpoint in `dir/state` covers `rows` input rows of
/// the `stats` stage.
fn wait_for_checkpoint(bg: &Background, dir: &Path, rows: u64) {
    let start = Instant::now();
    loop {
        // Rows seen by the stage: its own and its tasks' (one per Kafka
        // partition).
        let seen = checkpoint(dir).map_or(0, |c| {
            let stage = &c["stages"]["stats"];
            stage["next_seq"].as_u64().unwrap_or(0)
                + stage["tasks"].as_object().map_or(0, |t| {
                    t.values().filter_map(|t| t["next_seq"].as_u64()).sum()
                })
        });
        if seen == rows {
            return;
        }
        assert!(
            seen < rows && start.elapsed() < Duration::from_secs(60),
            "checkpoint at {seen} rows of {rows}:\n{}",
            bg.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a Kafka-fed window-stats pipeline with default timeouts on 300
/// rows until the plugin has taken them all (and, with `top` =
/// [`CHECKPOINTS`], a checkpoint covers them), then returns how long
/// SIGTERM takes to stop it, and its log.
fn sigterm_time(topic: &str, top: &str) -> (Duration, String) {
    let b = broker();
    create_topic(b, topic, 1);
    let lines = data_lines();
    produce(
        b,
        topic,
        lines[..300].iter().map(|l| l.clone().into_bytes()),
    );
    let dir = tempdir();
    let file = kafka_pipeline(dir.path(), topic, top, "");
    let bg = Background::start(dir.path(), &file, &[]);
    let start = Instant::now();
    while bg.counters("stats")["events_in"] != 300 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{}",
            bg.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if !top.is_empty() {
        wait_for_checkpoint(&bg, dir.path(), 300);
    }
    let start = Instant::now();
    let log = bg.stop();
    (start.elapsed(), log)
}

/// SIGTERM on a Kafka-fed window-stats pipeline without checkpoints exits
/// within 10 s: the plugin flushes its windows once its input closes,
/// which releases every record.
#[test]
fn kafka_sigterm_stops_promptly() {
    let (took, log) = sigterm_time("stats-stop-plain", "");
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM took {took:?}:\n{log}"
    );
}

/// The same with checkpoints: the final checkpoint covers the rows of the
/// open windows, so there is nothing left to wait for.
#[test]
fn kafka_sigterm_with_checkpoints_stops_promptly() {
    let (took, log) = sigterm_time("stats-stop-checkpointed", CHECKPOINTS);
    assert!(log.contains("final checkpoint written"), "{log}");
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM took {took:?}:\n{log}"
    );
}
