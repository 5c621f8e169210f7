//! What the window-stats plugin should emit for the room sensor file,
//! computed independently by brute force (no code shared with the plugin),
//! and the pipeline pieces of the window-stats tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{epoch_ms, repo};

/// `(stat, window, window_end) -> (value, count)`.
pub type Figures = BTreeMap<(String, String, i64), (Option<f64>, u64)>;

/// One room-sensor reading.
pub struct Row {
    /// Event time, Unix ms.
    pub ts: i64,
    /// The numeric columns by name.
    pub fields: BTreeMap<&'static str, f64>,
    /// The `date` column as written.
    pub date: String,
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

/// The room sensor file's columns.
pub const COLUMNS: &str =
    r#"["id","date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"]"#;

/// The room sensor file.
pub fn data() -> PathBuf {
    repo().join("data/room_sensors.csv")
}

/// The data lines (no header) of the room sensor file, as written.
pub fn data_lines() -> Vec<String> {
    std::fs::read_to_string(data())
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// Parses data lines; naive dates are local time `offset_ms` ahead of UTC.
pub fn read_rows(lines: &[String], offset_ms: i64) -> Vec<Row> {
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
pub enum Func {
    /// Arithmetic mean.
    Mean,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Sum of the values.
    Sum,
    /// Number of values.
    Count,
    /// Sample standard deviation (none below two values).
    Stddev,
    /// Consecutive readings not 60 s apart.
    Gaps,
}

/// A statistic's window.
#[derive(Clone, Copy)]
pub enum Win {
    /// The tumbling batch.
    Batch,
    /// Everything since the start.
    SinceStart,
    /// Size and slide, ms.
    Sliding(i64, i64),
}

/// One configured statistic.
pub struct Spec {
    /// Its name in the output.
    pub name: &'static str,
    /// The column it reads.
    pub field: &'static str,
    /// What it computes.
    pub func: Func,
    /// Over which rows.
    pub win: Win,
}

/// A [`Spec`], briefly.
pub const fn spec(name: &'static str, field: &'static str, func: Func, win: Win) -> Spec {
    Spec {
        name,
        field,
        func,
        win,
    }
}

/// The `stats = [...]` TOML list for `specs`.
pub fn stats_toml(specs: &[Spec]) -> String {
    let items: Vec<String> = specs
        .iter()
        .map(|s| {
            let func = match s.func {
                Func::Mean => "mean",
                Func::Min => "min",
                Func::Max => "max",
                Func::Sum => "sum",
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

/// `[transforms.stats]`, window-stats over `input` with the plugin
/// settings `config` and the statistics `specs`, writing its figures to
/// `[sinks.out]` (`out.jsonl`) and dead-lettering rows to `[sinks.bad]`
/// (`bad.jsonl`).
pub fn stats_stage(input: &str, config: &str, specs: &[Spec]) -> String {
    format!(
        r#"
[transforms.stats]
type = "wasm"
inputs = ["{input}"]
plugin = "@plugin(window-stats)"
config = {{ {config}, stats = {stats} }}
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
        stats = stats_toml(specs),
    )
}

/// The plugin settings for rows of the room sensor CSV file as text, in
/// 10-minute event-time batches.
pub fn csv_config() -> String {
    format!(
        r#"input = "csv", columns = {COLUMNS}, time = "event", timestamp = "date", batch = "10m""#
    )
}

/// The name of the statistic counting gaps between readings.
pub const GAPS: &str = "number of sample couples difference != 1 min";

/// `Average temperature` by batch, as the issue asks.
pub const TEMPERATURE_BY_BATCH: Spec =
    spec("Average temperature", "Temperature", Func::Mean, Win::Batch);

/// `Average temperature` since the start.
pub const TEMPERATURE_SINCE_START: Spec = spec(
    "Average temperature",
    "Temperature",
    Func::Mean,
    Win::SinceStart,
);

/// `Average luminosity` over 45 s windows every 15 s.
pub const LUMINOSITY_SLIDING: Spec = spec(
    "Average luminosity",
    "Light",
    Func::Mean,
    Win::Sliding(45_000, 15_000),
);

/// Readings not a minute apart, by batch.
pub const GAPS_BY_BATCH: Spec = spec(GAPS, "date", Func::Gaps, Win::Batch);

/// `Average CO2 concentration` since the start.
pub const CO2_SINCE_START: Spec = spec(
    "Average CO2 concentration",
    "CO2",
    Func::Mean,
    Win::SinceStart,
);

/// `Average humidity ratio` by batch.
pub const HUMIDITY_RATIO_BY_BATCH: Spec = spec(
    "Average humidity ratio",
    "HumidityRatio",
    Func::Mean,
    Win::Batch,
);

/// `Samples`: every row since the start.
pub const SAMPLES: Spec = spec("Samples", "CO2", Func::Count, Win::SinceStart);

/// Eleven statistics over the room sensor file, every function and window.
pub const ROOM_STATS: [Spec; 11] = [
    TEMPERATURE_BY_BATCH,
    TEMPERATURE_SINCE_START,
    LUMINOSITY_SLIDING,
    GAPS_BY_BATCH,
    CO2_SINCE_START,
    HUMIDITY_RATIO_BY_BATCH,
    spec("Min humidity", "Humidity", Func::Min, Win::Batch),
    spec("Max humidity", "Humidity", Func::Max, Win::Batch),
    spec("Total light", "Light", Func::Sum, Win::Batch),
    SAMPLES,
    spec(
        "Temperature spread",
        "Temperature",
        Func::Stddev,
        Win::Batch,
    ),
];

/// A pipeline with `top` settings, the source `[sources.rows]` with the
/// settings `source`, and window-stats computing `specs` over the room
/// sensor rows as CSV text (see [`stats_stage`]).
pub fn stats_pipeline(top: &str, source: &str, specs: &[Spec]) -> String {
    format!(
        "{top}\n[sources.rows]\n{source}\n{}",
        stats_stage("rows", &csv_config(), specs)
    )
}

/// A pipeline replaying the CSV file `data` (rows as text) into
/// window-stats computing [`ROOM_STATS`], with `top` settings and `source`
/// settings added.
pub fn replay_pipeline(top: &str, data: &Path, source: &str) -> String {
    stats_pipeline(
        top,
        &format!(
            "type = \"replay\"\npath = \"{}\"\nformat = \"csv\"\nrow = \"text\"\n{source}",
            data.display()
        ),
        &ROOM_STATS,
    )
}

/// The window label of the JSON output.
pub fn label(win: Win) -> String {
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
        Func::Min => Some(xs.iter().cloned().fold(f64::INFINITY, f64::min)),
        Func::Max => Some(xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max)),
        Func::Sum => Some(xs.iter().sum()),
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
pub fn expected(rows: &[Row], batch: i64, specs: &[Spec]) -> Figures {
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
pub fn figures(text: &str) -> (Figures, usize) {
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
pub fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * want.abs() || (got - want).abs() < 1e-12
}

/// `got` holds exactly the figures of `want`, same counts, values to 1e-9
/// relative.
pub fn assert_same(got: &Figures, want: &Figures) {
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
