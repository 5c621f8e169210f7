//! The window-stats plugin on the room sensor file: exact event-time
//! figures, independence from arrival speed, checkpoints across SIGTERM and
//! SIGKILL, and bad rows.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

const COLUMNS: &str =
    r#"["id","date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"]"#;

const STATS: &str = r#"
  { name = "Average temperature", field = "Temperature", fn = "mean", window = "batch" },
  { name = "Average temperature", field = "Temperature", fn = "mean", window = "since_start" },
  { name = "Average luminosity", field = "Light", fn = "mean", window = "45s", slide = "15s" },
  { name = "number of sample couples difference != 1 min", field = "date", fn = "gaps", expect = "60s", window = "batch" },
  { name = "Average CO2 concentration", field = "CO2", fn = "mean", window = "since_start" },
  { name = "Average humidity ratio", field = "HumidityRatio", fn = "mean", window = "batch" },
  { name = "Min humidity", field = "Humidity", fn = "min", window = "batch" },
  { name = "Max humidity", field = "Humidity", fn = "max", window = "batch" },
  { name = "Total light", field = "Light", fn = "sum", window = "batch" },
  { name = "Samples", field = "CO2", fn = "count", window = "since_start" },
  { name = "Temperature spread", field = "Temperature", fn = "stddev", window = "batch" },
"#;

fn pipeline(
    dir: &std::path::Path,
    data: &std::path::Path,
    extra_source: &str,
    top: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"{top}
[sources.rows]
type = "replay"
path = "{data}"
format = "csv"
row = "text"
{extra_source}

[transforms.stats]
type = "wasm"
inputs = ["rows"]
plugin = "{plugin}"
config = {{ input = "csv", columns = {COLUMNS}, time = "event", timestamp = "date", batch = "10m", stats = [{stats}] }}
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
        data = data.display(),
        plugin = plugin("window-stats").display(),
        stats = STATS.replace('\n', " "),
    );
    write(dir, "p.toml", &text)
}

/// `(stat, window, window_end) -> (value, count)` from the JSON output.
type Figures = BTreeMap<(String, String, i64), (Option<f64>, u64)>;

fn figures(path: &std::path::Path) -> Figures {
    let mut f = Figures::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["stat"].as_str().unwrap().to_owned(),
            v["window"].as_str().unwrap().to_owned(),
            v["window_end"].as_i64().unwrap(),
        );
        let prev = f.insert(
            key.clone(),
            (v["value"].as_f64(), v["count"].as_u64().unwrap()),
        );
        assert!(prev.is_none(), "{key:?} emitted twice");
    }
    f
}

// ---- An independent computation, sharing no code with the plugin. ----

struct Row {
    ts: i64,
    temperature: f64,
    humidity: f64,
    light: f64,
    co2: f64,
    ratio: f64,
}

fn read_rows(path: &std::path::Path) -> Vec<Row> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').map(|x| x.trim_matches('"')).collect();
            Row {
                ts: epoch_ms(f[1]),
                temperature: f[2].parse().unwrap(),
                humidity: f[3].parse().unwrap(),
                light: f[4].parse().unwrap(),
                co2: f[5].parse().unwrap(),
                ratio: f[6].parse().unwrap(),
            }
        })
        .collect()
}

fn expected(rows: &[Row]) -> Figures {
    const BATCH: i64 = 600_000;
    let mut out = Figures::new();
    let mut batches: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        batches
            .entry(r.ts.div_euclid(BATCH) * BATCH)
            .or_default()
            .push(r);
    }
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (mut all_t, mut all_co2) = (Vec::new(), Vec::new());
    for (start, rs) in &batches {
        let end = start + BATCH;
        let col = |f: fn(&Row) -> f64| rs.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let n = rs.len() as u64;
        let mut put = |name: &str, window: &str, value: Option<f64>, count: u64| {
            out.insert((name.to_owned(), window.to_owned(), end), (value, count));
        };
        let t = col(|r| r.temperature);
        put("Average temperature", "batch", Some(mean(&t)), n);
        put(
            "Average humidity ratio",
            "batch",
            Some(mean(&col(|r| r.ratio))),
            n,
        );
        let h = col(|r| r.humidity);
        put(
            "Min humidity",
            "batch",
            Some(h.iter().cloned().fold(f64::INFINITY, f64::min)),
            n,
        );
        put(
            "Max humidity",
            "batch",
            Some(h.iter().cloned().fold(f64::NEG_INFINITY, f64::max)),
            n,
        );
        put(
            "Total light",
            "batch",
            Some(col(|r| r.light).iter().sum()),
            n,
        );
        let sd = (n >= 2).then(|| {
            let m = mean(&t);
            (t.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64).sqrt()
        });
        put("Temperature spread", "batch", sd, n);
        let mut times: Vec<i64> = rs.iter().map(|r| r.ts).collect();
        times.sort();
        let gaps = times.windows(2).filter(|w| w[1] - w[0] != 60_000).count();
        put(
            "number of sample couples difference != 1 min",
            "batch",
            Some(gaps as f64),
            n,
        );
        all_t.extend(t);
        all_co2.extend(col(|r| r.co2));
        put(
            "Average temperature",
            "since_start",
            Some(mean(&all_t)),
            all_t.len() as u64,
        );
        put(
            "Average CO2 concentration",
            "since_start",
            Some(mean(&all_co2)),
            all_co2.len() as u64,
        );
        put(
            "Samples",
            "since_start",
            Some(all_co2.len() as f64),
            all_co2.len() as u64,
        );
    }
    // 45 s windows every 15 s, aligned to the epoch.
    let mut sliding: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in rows {
        let mut start = r.ts.div_euclid(15_000) * 15_000;
        while start > r.ts - 45_000 {
            sliding.entry(start).or_default().push(r.light);
            start -= 15_000;
        }
    }
    for (start, xs) in sliding {
        out.insert(
            (
                "Average luminosity".into(),
                "45s/15s".into(),
                start + 45_000,
            ),
            (Some(mean(&xs)), xs.len() as u64),
        );
    }
    out
}

fn assert_same(got: &Figures, want: &Figures) {
    assert_eq!(got.len(), want.len(), "number of figures");
    for (key, (w, wn)) in want {
        let (g, gn) = got.get(key).unwrap_or_else(|| panic!("missing {key:?}"));
        assert_eq!(gn, wn, "count of {key:?}");
        match (g, w) {
            (Some(g), Some(w)) => {
                let rel = (g - w).abs() / w.abs().max(1e-300);
                assert!(
                    rel <= 1e-9 || (g - w).abs() < 1e-12,
                    "{key:?}: got {g}, expected {w}"
                );
            }
            (g, w) => assert_eq!(g, w, "{key:?}"),
        }
    }
}

fn data() -> std::path::PathBuf {
    repo().join("data/room_sensors.csv")
}

#[test]
fn event_time_figures_equal_an_independent_computation() {
    let dir = tempdir();
    let file = pipeline(dir.path(), &data(), "", "");
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(120));
    assert!(out.status.success(), "{}", texts(&out).1);
    assert!(
        std::fs::read_to_string(dir.path().join("bad.jsonl"))
            .unwrap_or_default()
            .is_empty()
    );
    assert_same(
        &figures(&dir.path().join("out.jsonl")),
        &expected(&read_rows(&data())),
    );
}

#[test]
fn event_time_results_do_not_depend_on_arrival_speed() {
    let fast = tempdir();
    let slow = tempdir();
    let f = pipeline(fast.path(), &data(), "", "");
    let s = pipeline(slow.path(), &data(), "rate = 1000", "");
    let a = weir()
        .arg("run")
        .arg(&f)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let b = weir()
        .arg("run")
        .arg(&s)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_with_timeout(a, Duration::from_secs(120))
            .status
            .success()
    );
    assert!(
        wait_with_timeout(b, Duration::from_secs(120))
            .status
            .success()
    );
    let full = std::fs::read_to_string(fast.path().join("out.jsonl")).unwrap();
    let paced = std::fs::read_to_string(slow.path().join("out.jsonl")).unwrap();
    assert!(full.lines().count() > 20_000);
    assert_eq!(full, paced, "same figures, in the same order");
}

/// Runs the pipeline with checkpoints, interrupts it with `signal` after
/// `after`, restarts it, and returns the figures of both runs together.
fn interrupted(signal_no: i32, after: Duration) -> (Figures, String) {
    let dir = tempdir();
    let file = pipeline(
        dir.path(),
        &data(),
        "rate = 5000",
        "state_dir = \"state\"\ncheckpoint_interval = \"200ms\"\n",
    );
    let child = weir()
        .arg("run")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < after {
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, signal_no);
    let first = wait_with_timeout(child, Duration::from_secs(60));
    let (_, err1) = texts(&first);
    if signal_no == libc::SIGTERM {
        assert!(first.status.success(), "{err1}");
        assert!(err1.contains("final checkpoint written"), "{err1}");
    }
    let lines_before = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap_or_default()
        .lines()
        .count();
    let second = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(120));
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
    let mut f = Figures::new();
    for line in std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        f.insert(
            (
                v["stat"].as_str().unwrap().into(),
                v["window"].as_str().unwrap().into(),
                v["window_end"].as_i64().unwrap(),
            ),
            (v["value"].as_f64(), v["count"].as_u64().unwrap()),
        );
    }
    (f, err2)
}

fn since_start(f: &Figures) -> Figures {
    f.iter()
        .filter(|((_, w, _), _)| w == "since_start")
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[test]
fn sigterm_half_way_then_restart_ends_like_an_uninterrupted_run() {
    let want = expected(&read_rows(&data()));
    let (got, _) = interrupted(libc::SIGTERM, Duration::from_millis(2000));
    // Every since_start figure, then everything else.
    assert_same(&since_start(&got), &since_start(&want));
    assert_same(&got, &want);
}

#[test]
fn sigkill_then_restart_counts_every_row_exactly_once() {
    let want = expected(&read_rows(&data()));
    let (got, _) = interrupted(libc::SIGKILL, Duration::from_millis(2000));
    let last = |f: &Figures| {
        f.iter()
            .filter(|((s, w, _), _)| s == "Samples" && w == "since_start")
            .map(|(_, v)| *v)
            .next_back()
            .unwrap()
    };
    assert_eq!(
        last(&got),
        (Some(20_160.0), 20_160),
        "no row lost, none counted twice"
    );
    assert_same(&got, &want);
}

#[test]
fn rows_with_bad_fields_are_dead_lettered_with_the_field_name() {
    let dir = tempdir();
    let mut text = std::fs::read_to_string(data()).unwrap();
    let mut lines: Vec<String> = text.lines().take(200).map(str::to_owned).collect();
    lines.insert(
        50,
        r#""x","2015-02-04 18:40:30",hot,27.2,426,721.25,0.0047,1"#.into(),
    );
    lines.insert(100, r#""y","2015-02-04 19:30:30",23.1,27.2"#.into());
    text = lines.join("\n");
    let bad_data = write(dir.path(), "rows.csv", &text);
    let file = pipeline(dir.path(), &bad_data, "", "");
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(60));
    assert!(out.status.success(), "{}", texts(&out).1);
    let dead: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("bad.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reasons: Vec<&str> = dead
        .iter()
        .map(|d| d["headers"]["weir.reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            r#"field "Temperature" is not a number: "hot""#,
            r#"field "Light" is missing"#
        ],
        "{dead:?}"
    );
    assert_eq!(dead[0]["headers"]["weir.stage"], "stats");
    // The statistics ignore them: the figures are those of the good rows.
    std::fs::write(
        dir.path().join("good.csv"),
        std::fs::read_to_string(data())
            .unwrap()
            .lines()
            .take(200)
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    assert_same(
        &figures(&dir.path().join("out.jsonl")),
        &expected(&read_rows(&dir.path().join("good.csv"))),
    );
}
