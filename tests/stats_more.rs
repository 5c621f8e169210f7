//! More window-stats tests: checkpoints with a real Kafka broker (SIGTERM
//! and SIGKILL half way, then a restart), the shipped
//! `pipelines/sensor-stats.toml` run through the binary, and JSON input
//! with a `timezone`. Expected figures come from an independent
//! computation in this file (no code shared with the plugin).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::kafka::*;
use crate::common::*;

// ---- An independent computation, sharing no code with the plugin. ----

/// `(stat, window, window_end) -> (value, count)`.
type Figures = BTreeMap<(String, String, i64), (Option<f64>, u64)>;

/// One room-sensor reading.
struct Row {
    /// Event time, Unix ms.
    ts: i64,
    /// The numeric columns by name.
    fields: BTreeMap<&'static str, f64>,
    /// The `date` column as written.
    date: String,
}

/// The numeric columns of the room sensor file, in order after `date`.
const NUMERIC: [&str; 6] = [
    "Temperature",
    "Humidity",
    "Light",
    "CO2",
    "HumidityRatio",
    "Occupancy",
];

/// The room sensor file.
fn data() -> PathBuf {
    repo().join("data/room_sensors.csv")
}

/// The data lines (no header) of the room sensor file, as written.
fn data_lines() -> Vec<String> {
    std::fs::read_to_string(data())
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// Parses data lines; naive dates are local time `offset_ms` ahead of UTC.
fn read_rows(lines: &[String], offset_ms: i64) -> Vec<Row> {
    lines
        .iter()
        .map(|line| {
            let f: Vec<&str> = line.split(',').map(|x| x.trim_matches('"')).collect();
            Row {
                ts: epoch_ms(f[1]) - offset_ms,
                fields: NUMERIC
                    .iter()
                    .zip(&f[2..])
                    .map(|(k, v)| (*k, v.parse().unwrap()))
                    .collect(),
                date: f[1].to_owned(),
            }
        })
        .collect()
}

/// A statistic function.
#[derive(Clone, Copy, PartialEq)]
enum Func {
    Mean,
    Max,
    Count,
    Stddev,
    Gaps,
}

/// A statistic's window.
#[derive(Clone, Copy)]
enum Win {
    Batch,
    SinceStart,
    /// Size and slide, ms.
    Sliding(i64, i64),
}

/// One configured statistic.
struct Spec {
    name: &'static str,
    field: &'static str,
    func: Func,
    win: Win,
}

/// The `stats = [...]` TOML list for `specs`.
fn stats_toml(specs: &[Spec]) -> String {
    let items: Vec<String> = specs
        .iter()
        .map(|s| {
            let func = match s.func {
                Func::Mean => "mean",
                Func::Max => "max",
                Func::Count => "count",
                Func::Stddev => "stddev",
                Func::Gaps => "gaps",
            };
            let window = match s.win {
                Win::Batch => r#"window = "batch""#.to_owned(),
                Win::SinceStart => r#"window = "since_start""#.to_owned(),
                Win::Sliding(size, slide) => {
                    format!(
                        r#"window = "{}s", slide = "{}s""#,
                        size / 1000,
                        slide / 1000
                    )
                }
            };
            let expect = if s.func == Func::Gaps {
                r#", expect = "60s""#
            } else {
                ""
            };
            format!(
                r#"{{ name = "{}", field = "{}", fn = "{func}", {window}{expect} }}"#,
                s.name, s.field
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// The window label of the JSON output.
fn label(win: Win) -> String {
    match win {
        Win::Batch => "batch".into(),
        Win::SinceStart => "since_start".into(),
        Win::Sliding(size, slide) => format!("{}s/{}s", size / 1000, slide / 1000),
    }
}

/// `func` over the rows, by brute force.
fn value(func: Func, field: &str, rows: &[&Row]) -> Option<f64> {
    let xs: Vec<f64> = match func {
        Func::Gaps => Vec::new(),
        _ => rows.iter().map(|r| r.fields[field]).collect(),
    };
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    match func {
        Func::Mean => Some(mean),
        Func::Max => Some(xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max)),
        Func::Count => Some(n),
        Func::Stddev => (xs.len() >= 2)
            .then(|| (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()),
        Func::Gaps => {
            let mut times: Vec<i64> = rows.iter().map(|r| r.ts).collect();
            times.sort();
            Some(times.windows(2).filter(|w| w[1] - w[0] != 60_000).count() as f64)
        }
    }
}

/// Every figure the plugin should emit for `rows` with tumbling batches of
/// `batch` ms (windows aligned to the epoch).
fn expected(rows: &[Row], batch: i64, specs: &[Spec]) -> Figures {
    let mut out = Figures::new();
    let mut batches: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        batches
            .entry(r.ts.div_euclid(batch) * batch)
            .or_default()
            .push(r);
    }
    for s in specs {
        match s.win {
            Win::Batch => {
                for (start, rs) in &batches {
                    out.insert(
                        (s.name.into(), label(s.win), start + batch),
                        (value(s.func, s.field, rs), rs.len() as u64),
                    );
                }
            }
            Win::SinceStart => {
                let mut all: Vec<&Row> = Vec::new();
                for (start, rs) in &batches {
                    all.extend(rs);
                    out.insert(
                        (s.name.into(), label(s.win), start + batch),
                        (value(s.func, s.field, &all), all.len() as u64),
                    );
                }
            }
            Win::Sliding(size, slide) => {
                let mut windows: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
                for r in rows {
                    let mut start = r.ts.div_euclid(slide) * slide;
                    while start > r.ts - size {
                        windows.entry(start).or_default().push(r);
                        start -= slide;
                    }
                }
                for (start, rs) in windows {
                    out.insert(
                        (s.name.into(), label(s.win), start + size),
                        (value(s.func, s.field, &rs), rs.len() as u64),
                    );
                }
            }
        }
    }
    out
}

/// Figures from JSON output lines, keeping the last of each and counting
/// how many were emitted more than once.
fn figures(text: &str) -> (Figures, usize) {
    let mut f = Figures::new();
    let mut repeated = 0;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["stat"].as_str().unwrap().to_owned(),
            v["window"].as_str().unwrap().to_owned(),
            v["window_end"].as_i64().unwrap(),
        );
        let prev = f.insert(key, (v["value"].as_f64(), v["count"].as_u64().unwrap()));
        repeated += usize::from(prev.is_some());
    }
    (f, repeated)
}

/// Whether `got` is `want` to 1e-9 relative.
fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs() || (got - want).abs() < 1e-12
}

/// `got` holds exactly the figures of `want`, same counts, values to 1e-9
/// relative.
fn assert_same(got: &Figures, want: &Figures) {
    for (key, (w, wn)) in want {
        let (g, gn) = got.get(key).unwrap_or_else(|| panic!("missing {key:?}"));
        assert_eq!(gn, wn, "count of {key:?}");
        match (g, w) {
            (Some(g), Some(w)) => assert!(close(*g, *w), "{key:?}: got {g}, expected {w}"),
            (g, w) => assert_eq!(g, w, "{key:?}"),
        }
    }
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "unexpected figures: {:?}",
        &extra[..extra.len().min(5)]
    );
}

// ---- Checkpoints with a real Kafka broker. ----

/// The statistics of the Kafka checkpoint tests.
const KAFKA_STATS: [Spec; 5] = [
    Spec {
        name: "Average temperature",
        field: "Temperature",
        func: Func::Mean,
        win: Win::Batch,
    },
    Spec {
        name: "Average temperature",
        field: "Temperature",
        func: Func::Mean,
        win: Win::SinceStart,
    },
    Spec {
        name: "Samples",
        field: "CO2",
        func: Func::Count,
        win: Win::SinceStart,
    },
    Spec {
        name: "Average luminosity",
        field: "Light",
        func: Func::Mean,
        win: Win::Sliding(45_000, 15_000),
    },
    Spec {
        name: "number of sample couples difference != 1 min",
        field: "date",
        func: Func::Gaps,
        win: Win::Batch,
    },
];

/// The room sensor file's columns.
const COLUMNS: &str =
    r#"["id","date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"]"#;

/// Top-level settings for checkpoints every 200 ms.
const CHECKPOINTS: &str = "state_dir = \"state\"\ncheckpoint_interval = \"200ms\"\n";

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
    let text = format!(
        r#"{top}
[sources.rows]
type = "kafka"
brokers = "{b}"
topic = "{topic}"
group = "{topic}-group"
start = "earliest"
format = "text"
commit_interval = "1h"
{source}

[transforms.stats]
type = "wasm"
inputs = ["rows"]
plugin = "{plugin}"
config = {{ input = "csv", columns = {COLUMNS}, time = "event", timestamp = "date", batch = "10m", stats = {stats} }}
dead_letter = "bad"

[sinks.out]
type = "file"
inputs = ["stats"]
path = "out.jsonl"

[sinks.bad]
type = "file"
path = "bad.jsonl"
format = "json"
"#,
        b = broker(),
        plugin = plugin("window-stats").display(),
        stats = stats_toml(&KAFKA_STATS),
    );
    write(dir, "p.toml", &text)
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
    let second = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(80));
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

/// The last `Samples since start` figure: every row counted once.
fn samples(f: &Figures) -> (Option<f64>, u64) {
    *f.iter()
        .rfind(|((s, w, _), _)| s == "Samples" && w == "since_start")
        .unwrap()
        .1
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
        let seen = checkpoint(dir)
            .and_then(|c| c["stages"]["stats"]["next_seq"].as_u64())
            .unwrap_or(0);
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
    while bg.status()["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "stats")
        .unwrap()["counters"]["events_in"]
        != 300
    {
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

// ---- The shipped pipeline. ----

/// Python's `repr(float)` for values between 1e-4 and 1e16 (Rust's
/// shortest round-trip digits, with `.0` on whole numbers).
fn python_repr(x: f64) -> String {
    let s = format!("{x}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// `pipelines/sensor-stats.toml`, run as shipped (replay at 200 rows/s
/// into the embedded broker, read back, window-stats, console), prints the
/// issue's seed lines (`Average temperature by batch: 23.6`), each figure
/// equal to an independent computation over the rows read so far; SIGTERM
/// stops it cleanly (today after about 40 s: see
/// [`kafka_sigterm_stops_promptly`]).
#[test]
fn shipped_sensor_stats_pipeline_prints_seed_lines_with_the_right_figures() {
    plugin("window-stats");
    let dir = tempdir();
    let stdout = dir.path().join("stdout");
    let stderr = dir.path().join("stderr");
    let mut child = weir()
        .current_dir(dir.path())
        .arg("run")
        .arg(repo().join("pipelines/sensor-stats.toml"))
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    const GAPS: &str = "number of sample couples difference != 1 min";
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&stdout).unwrap_or_default();
        // 30 closed batches of 10 minutes: about 300 rows.
        if text.lines().filter(|l| l.starts_with(GAPS)).count() >= 30 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(80),
            "no output yet:\n{text}\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&child, libc::SIGTERM);
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let log = std::fs::read_to_string(&stderr).unwrap();
    assert!(out.status.success(), "{log}");

    // What each printed statistic is, in the independent computation.
    let t = |name, field, func, win| Spec {
        name,
        field,
        func,
        win,
    };
    let specs = [
        t("Average temperature", "Temperature", Func::Mean, Win::Batch),
        t(
            "Average humidity ratio",
            "HumidityRatio",
            Func::Mean,
            Win::Batch,
        ),
        t("Average CO2 concentration", "CO2", Func::Mean, Win::Batch),
        t(
            "Average temperature",
            "Temperature",
            Func::Mean,
            Win::SinceStart,
        ),
        t(
            "Average humidity ratio",
            "HumidityRatio",
            Func::Mean,
            Win::SinceStart,
        ),
        t(
            "Average CO2 concentration",
            "CO2",
            Func::Mean,
            Win::SinceStart,
        ),
        t(
            "Average luminosity",
            "Light",
            Func::Mean,
            Win::Sliding(45_000, 15_000),
        ),
        t(GAPS, "date", Func::Gaps, Win::Batch),
    ];
    // Without checkpoints, the shutdown flushes the open windows: the
    // figures are those of the rows the plugin took, a prefix of the file.
    let taken: usize = log
        .lines()
        .find(|l| l.contains("stage totals stage=\"stats\""))
        .and_then(|l| l.split("events_in=").nth(1))
        .and_then(|n| n.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no totals for `stats`:\n{log}"));
    let want = expected(&read_rows(&data_lines()[..taken], 0), 600_000, &specs);
    let line_of = |s: &Spec| match (s.func, s.win) {
        (Func::Gaps, _) => s.name.to_owned(),
        (_, Win::SinceStart) => format!("{} since start", s.name),
        _ => format!("{} by batch", s.name),
    };
    // Printed values per line prefix, in order.
    let text = std::fs::read_to_string(&stdout).unwrap();
    let mut printed: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for line in text.lines() {
        let (prefix, value) = line
            .rsplit_once(": ")
            .unwrap_or_else(|| panic!("not a seed line: {line:?}"));
        assert!(
            specs.iter().any(|s| line_of(s) == prefix),
            "unexpected line {line:?}"
        );
        printed.entry(prefix.to_owned()).or_default().push(value);
    }
    assert_eq!(printed.len(), specs.len(), "every statistic printed");
    for s in &specs {
        let values = &printed[&line_of(s)];
        let wanted: Vec<f64> = want
            .iter()
            .filter(|((n, w, _), _)| n == s.name && *w == label(s.win))
            .map(|(_, (v, _))| v.unwrap())
            .collect();
        assert!(
            values.len() <= wanted.len(),
            "{}: too many lines",
            line_of(s)
        );
        for (i, (got, w)) in values.iter().zip(&wanted).enumerate() {
            let g: f64 = got.parse().unwrap_or_else(|_| panic!("{got:?}"));
            assert!(
                close(g, *w),
                "{} #{i}: printed {got}, expected {w}",
                line_of(s)
            );
            let form = match s.func {
                Func::Gaps => format!("{}", *w as u64),
                _ => python_repr(g),
            };
            assert_eq!(*got, form, "{} #{i} printed as Python does", line_of(s));
        }
    }
    // The first batch (17:50-18:00, 9 rows) as users read it.
    assert_eq!(
        printed["Average temperature by batch"][0],
        "23.105555555555554"
    );
    assert_eq!(printed[GAPS][0], "0");
}

// ---- JSON input and a time zone. ----

/// `input = "json"` with `timezone = "+05:30"` and hour batches: naive
/// dates are local time, so the hour windows (aligned to the epoch, in UTC)
/// start at half past in the rows' local time. Every figure equals an
/// independent computation with the dates shifted by 5 h 30 min.
#[test]
fn json_input_with_a_timezone_equals_an_independent_computation() {
    let dir = tempdir();
    let lines = data_lines();
    let rows = read_rows(&lines, 0);
    let mut jsonl = String::new();
    for (i, r) in rows.iter().enumerate() {
        let mut o = serde_json::Map::new();
        o.insert("id".into(), (i + 1).to_string().into());
        o.insert("date".into(), r.date.clone().into());
        for (k, v) in &r.fields {
            o.insert((*k).into(), (*v).into());
        }
        jsonl.push_str(&serde_json::Value::Object(o).to_string());
        jsonl.push('\n');
    }
    let input = write(dir.path(), "rows.jsonl", &jsonl);
    let t = |name, field, func, win| Spec {
        name,
        field,
        func,
        win,
    };
    let specs = [
        t("Average temperature", "Temperature", Func::Mean, Win::Batch),
        t("Max humidity", "Humidity", Func::Max, Win::Batch),
        t("Light spread", "Light", Func::Stddev, Win::Batch),
        t("Samples", "CO2", Func::Count, Win::SinceStart),
        t(
            "Ratio",
            "HumidityRatio",
            Func::Mean,
            Win::Sliding(5_400_000, 1_800_000),
        ),
        t("gaps", "date", Func::Gaps, Win::Batch),
    ];
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.rows]
type = "replay"
path = "{input}"
format = "jsonl"

[transforms.stats]
type = "wasm"
inputs = ["rows"]
plugin = "{plugin}"
config = {{ input = "json", time = "event", timestamp = "date", timezone = "+05:30", batch = "1h", stats = {stats} }}
dead_letter = "bad"

[sinks.out]
type = "file"
inputs = ["stats"]
path = "out.jsonl"

[sinks.bad]
type = "file"
path = "bad.jsonl"
format = "json"
"#,
            input = input.display(),
            plugin = plugin("window-stats").display(),
            stats = stats_toml(&specs),
        ),
    );
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(80));
    assert!(out.status.success(), "{}", texts(&out).1);
    let bad = std::fs::read_to_string(dir.path().join("bad.jsonl")).unwrap_or_default();
    assert!(bad.is_empty(), "{bad}");
    let (got, repeated) = figures(&std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap());
    assert_eq!(repeated, 0);
    let want = expected(&read_rows(&lines, 19_800_000), 3_600_000, &specs);
    // The zone matters: read as UTC, the hours would group other rows.
    assert_ne!(
        want.get(&("Max humidity".into(), "batch".into(), 1_423_072_800_000)),
        expected(&rows, 3_600_000, &specs).get(&(
            "Max humidity".into(),
            "batch".into(),
            1_423_072_800_000
        )),
    );
    assert_same(&got, &want);
}
