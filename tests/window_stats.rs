//! The window-stats plugin on the room sensor file: exact event-time
//! figures (equal to the independent computation in `common::stats`),
//! independence from arrival speed, bad rows dead-lettered, and JSON input
//! with a `timezone`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::stats::*;
use crate::common::*;

#[test]
fn event_time_figures_equal_an_independent_computation() {
    let p = Pipeline::new(&replay_pipeline("", &data(), ""));
    let out = p.run(Duration::from_secs(120));
    assert!(out.status.success(), "{}", texts(&out).1);
    assert!(
        std::fs::read_to_string(p.path("bad.jsonl"))
            .unwrap_or_default()
            .is_empty()
    );
    let (got, repeated) = figures(&p.read("out.jsonl"));
    assert_eq!(repeated, 0, "a figure was emitted twice");
    assert_same(
        &got,
        &expected(&read_rows(&data_lines(), 0), 600_000, &ROOM_STATS),
    );
}

#[test]
fn event_time_results_do_not_depend_on_arrival_speed() {
    let fast = Pipeline::new(&replay_pipeline("", &data(), ""));
    let slow = Pipeline::new(&replay_pipeline("", &data(), "rate = 1000"));
    let spawn = |p: &Pipeline| {
        p.command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn(&fast);
    let b = spawn(&slow);
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
    let full = fast.read("out.jsonl");
    let paced = slow.read("out.jsonl");
    assert!(full.lines().count() > 20_000);
    assert_eq!(full, paced, "same figures, in the same order");
}

#[test]
fn rows_with_bad_fields_are_dead_lettered_with_the_field_name() {
    let text = std::fs::read_to_string(data()).unwrap();
    let mut lines: Vec<String> = text.lines().take(200).map(str::to_owned).collect();
    lines.insert(
        50,
        r#""x","2015-02-04 18:40:30",hot,27.2,426,721.25,0.0047,1"#.into(),
    );
    lines.insert(100, r#""y","2015-02-04 19:30:30",23.1,27.2"#.into());
    let p = Pipeline::new(&replay_pipeline("", Path::new("@dir/rows.csv"), ""))
        .with_file("rows.csv", &lines.join("\n"));
    let out = p.run(Duration::from_secs(60));
    assert!(out.status.success(), "{}", texts(&out).1);
    let dead = p.json_lines("bad.jsonl");
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
    // The statistics ignore them: the figures are those of the good rows
    // (the file's first 200 lines, header included).
    let (got, repeated) = figures(&p.read("out.jsonl"));
    assert_eq!(repeated, 0, "a figure was emitted twice");
    assert_same(
        &got,
        &expected(&read_rows(&data_lines()[..199], 0), 600_000, &ROOM_STATS),
    );
}

/// `input = "json"` with `timezone = "+05:30"` and hour batches: naive
/// dates are local time, so the hour windows (aligned to the epoch, in UTC)
/// start at half past in the rows' local time. Every figure equals an
/// independent computation with the dates shifted by 5 h 30 min.
#[test]
fn json_input_with_a_timezone_equals_an_independent_computation() {
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
    let specs = [
        TEMPERATURE_BY_BATCH,
        spec("Max humidity", "Humidity", Func::Max, Win::Batch),
        spec("Light spread", "Light", Func::Stddev, Win::Batch),
        SAMPLES,
        spec(
            "Ratio",
            "HumidityRatio",
            Func::Mean,
            Win::Sliding(5_400_000, 1_800_000),
        ),
        spec("gaps", "date", Func::Gaps, Win::Batch),
    ];
    let p = Pipeline::new(&format!(
        r#"
[sources.rows]
type = "replay"
path = "@dir/rows.jsonl"
format = "jsonl"
{}"#,
        stats_stage(
            "rows",
            r#"input = "json", time = "event", timestamp = "date", timezone = "+05:30", batch = "1h""#,
            &specs
        ),
    ))
    .with_file("rows.jsonl", &jsonl);
    let out = p.run(Duration::from_secs(80));
    assert!(out.status.success(), "{}", texts(&out).1);
    let bad = std::fs::read_to_string(p.path("bad.jsonl")).unwrap_or_default();
    assert!(bad.is_empty(), "{bad}");
    let (got, repeated) = figures(&p.read("out.jsonl"));
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
