//! The pipelines shipped in `pipelines/`, run through the binary as a user
//! would run them: the shop log on the embedded broker, the Raspberry Pi
//! job (simulated sensor, ONNX, ThingsBoard) and the room sensor
//! statistics, each printing or posting what its users read.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::stats::*;
use crate::common::thingsboard::{FakeThingsboard, Fault};
use crate::common::*;

#[test]
fn the_shop_log_pipeline_runs_on_the_embedded_broker() {
    let mut child = weir()
        .arg("run")
        .arg(repo().join("pipelines/gender-count.toml"))
        .args(["--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        lines.push(line);
    }
    signal(&child, libc::SIGINT);
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    for line in lines {
        // Exactly the text today's consumers parse: [{"0":1},{"1":6},{"2":3}]
        let v: Vec<BTreeMap<String, u64>> = serde_json::from_str(line.trim()).unwrap();
        assert!(v.iter().all(|m| m.len() == 1), "{line}");
        let keys: Vec<&String> = v.iter().flat_map(|m| m.keys()).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted: {line}");
        assert!(
            line.trim().starts_with("[{\"") && !line.contains(' '),
            "{line}"
        );
    }
}

#[test]
fn the_raspberry_pi_pipeline_runs_on_the_embedded_broker() {
    let server = FakeThingsboard::start(&["tok-greensboro-41c9"], 1 << 20, |_| Fault::None);
    let cassandra = crate::common::cassandra::single();
    let cql = cassandra.cql();
    cql.exec("DROP KEYSPACE IF EXISTS sensors");
    let dir = tempdir();
    // The shipped pipeline, with the simulated sensor sped up and finite.
    let text = std::fs::read_to_string(repo().join("pipelines/dht-thingsboard.toml"))
        .unwrap()
        .replace("\"../", &format!("\"{}/", repo().display()))
        .replace(
            "interval = \"5s\"",
            "interval = \"5s\"\nrealtime = false\ncount = 200",
        );
    let file = write(dir.path(), "p.toml", &text);
    let out = run_with_timeout(
        weir()
            .arg("run")
            .arg(&file)
            .env("THINGSBOARD_URL", &server.url)
            .env("THINGSBOARD_TOKEN", "tok-greensboro-41c9")
            .env("CASSANDRA_HOSTS", &cassandra.hosts)
            .stdout(Stdio::piped()),
        Duration::from_secs(120),
    );
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let seen = server.seen.lock().unwrap();
    let mut by_ts: BTreeMap<i64, serde_json::Value> = BTreeMap::new();
    for (_, ts, values) in &seen.accepted {
        by_ts.insert(*ts, values.clone());
    }
    let failed = stage_total(&stderr, "sensor", "errors") as usize;
    assert_eq!(
        by_ts.len() + failed,
        200,
        "every reading reached ThingsBoard: {stderr}"
    );
    for v in by_ts.values() {
        for f in ["temperature", "humidity", "p_rain", "rain_predicted"] {
            assert!(v[f].is_number(), "{f} in {v}");
        }
    }
    assert!(!stderr.contains("tok-greensboro-41c9"));

    // Every reading and every prediction stored in Cassandra too, the
    // predictions equal to what ThingsBoard got.
    let readings: Vec<(String, scylla::value::CqlTimestamp, f32, f32)> =
        cql.rows("SELECT device, time, temperature, humidity FROM sensors.readings");
    assert_eq!(readings.len() + failed, 200, "{stderr}");
    assert!(readings.iter().all(|r| r.0 == "pi-greensboro"));
    let predictions: Vec<(scylla::value::CqlTimestamp, f32, f64, i32)> =
        cql.rows("SELECT time, temperature, p_rain, rain_predicted FROM sensors.predictions");
    assert_eq!(predictions.len(), by_ts.len());
    for (time, temperature, p_rain, rain) in predictions {
        let sent = &by_ts[&time.0];
        assert_eq!(sent["temperature"].as_f64().unwrap() as f32, temperature);
        assert_eq!(sent["p_rain"].as_f64().unwrap(), p_rain);
        assert_eq!(sent["rain_predicted"].as_i64().unwrap(), rain as i64);
    }
}

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
/// stops it cleanly (within 10 s: see
/// `window_stats_checkpoints::kafka_sigterm_stops_promptly`).
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
    let specs = [
        TEMPERATURE_BY_BATCH,
        HUMIDITY_RATIO_BY_BATCH,
        spec("Average CO2 concentration", "CO2", Func::Mean, Win::Batch),
        TEMPERATURE_SINCE_START,
        spec(
            "Average humidity ratio",
            "HumidityRatio",
            Func::Mean,
            Win::SinceStart,
        ),
        CO2_SINCE_START,
        LUMINOSITY_SLIDING,
        GAPS_BY_BATCH,
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
