//! Native unit tests of the plugin.

use weir_plugin::{Batch, Output, Transform};

use super::WindowStats;

const COLUMNS: &str =
    r#"["id","date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"]"#;

fn config(stats: &str, extra: &str) -> String {
    format!(
        r#"{{"input":"csv","columns":{COLUMNS},"time":"event","timestamp":"date","format":"seed","stats":[{stats}]{extra}}}"#
    )
}

fn row(min: u32, sec: u32, temp: f64, light: f64) -> String {
    format!(r#""1","2015-02-04 17:{min:02}:{sec:02}",{temp},27.2,{light},721.25,0.0047,1"#)
}

fn run(cfg: &str, rows: &[String]) -> (Vec<String>, Vec<String>) {
    let mut p = WindowStats::new(cfg).unwrap();
    let pairs: Vec<(i64, &[u8])> = rows.iter().map(|r| (0, r.as_bytes())).collect();
    let mut out = Output::default();
    p.process(&Batch::from_values(0, &pairs), &mut out);
    p.flush(&mut out);
    (
        out.values_lossy(),
        out.rejections().iter().map(|r| r.reason.clone()).collect(),
    )
}

#[test]
fn batch_and_since_start_means_in_todays_text() {
    let cfg = config(
        r#"{"name":"Average temperature","field":"Temperature","fn":"mean","window":"batch"},
           {"name":"Average temperature","field":"Temperature","fn":"mean","window":"since_start"}"#,
        r#","batch":"1m""#,
    );
    let rows = [
        row(51, 0, 23.0, 1.0),
        row(51, 30, 24.2, 1.0),
        row(52, 0, 25.0, 1.0),
    ];
    let (out, rej) = run(&cfg, &rows);
    assert!(rej.is_empty(), "{rej:?}");
    assert_eq!(
        out,
        [
            "Average temperature by batch: 23.6",
            "Average temperature since start: 23.6",
            "Average temperature by batch: 25.0",
            "Average temperature since start: 24.066666666666666",
        ]
    );
}

#[test]
fn gaps_count_consecutive_samples_not_expect_apart() {
    let cfg = config(
        r#"{"name":"number of sample couples difference != 1 min","field":"date","fn":"gaps","expect":"60s","window":"batch"}"#,
        r#","batch":"10m""#,
    );
    // 17:50:00, 17:51:00, 17:52:01, 17:55:00 -> 2 gaps (61 s and 179 s).
    let rows = [
        row(50, 0, 1.0, 1.0),
        row(52, 1, 1.0, 1.0),
        row(51, 0, 1.0, 1.0),
        row(55, 0, 1.0, 1.0),
    ];
    let (out, _) = run(&cfg, &rows);
    assert_eq!(out, ["number of sample couples difference != 1 min: 2"]);
}

#[test]
fn sliding_windows_and_json_output() {
    let cfg = r#"{"input":"csv","columns":["t","x"],"time":"event","timestamp":"t","stats":[
        {"name":"Average luminosity","field":"x","fn":"mean","window":"45s","slide":"15s"},
        {"name":"n","field":1,"fn":"count","window":"45s"},
        {"name":"sd","field":"x","fn":"stddev","window":"batch"}]}"#;
    let mut p = WindowStats::new(cfg).unwrap();
    let mut out = Output::default();
    p.process(
        &Batch::from_values(0, &[(0, "10000,2"), (0, "20000,4"), (0, "100000,6")]),
        &mut out,
    );
    let v: Vec<serde_json::Value> = out
        .values_lossy()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lum: Vec<(i64, f64)> = v
        .iter()
        .filter(|o| o["stat"] == "Average luminosity")
        .map(|o| {
            (
                o["window_start"].as_i64().unwrap(),
                o["value"].as_f64().unwrap(),
            )
        })
        .collect();
    // Windows containing 10 s and 20 s: [-30,15) has 10 s only; [-15,30) and [0,45) both.
    assert_eq!(
        lum,
        vec![(-30_000, 2.0), (-15_000, 3.0), (0, 3.0), (15_000, 4.0)]
    );
    assert!(
        v.iter()
            .all(|o| o["window"] != "45s/15s" || o["stat"] == "Average luminosity")
    );
    let n = v.iter().find(|o| o["stat"] == "n").unwrap();
    assert_eq!(
        (
            n["window"].as_str(),
            n["value"].as_u64(),
            n["count"].as_u64()
        ),
        (Some("45s"), Some(2), Some(2))
    );
    let sd: Vec<&serde_json::Value> = v.iter().filter(|o| o["stat"] == "sd").collect();
    assert_eq!(
        sd[0]["value"],
        serde_json::Value::Null,
        "one sample: no sample stddev"
    );
}

#[test]
fn rows_with_bad_fields_are_refused_naming_the_field() {
    let cfg = config(
        r#"{"name":"t","field":"Temperature","fn":"sum","window":"since_start"}"#,
        "",
    );
    let rows = [
        row(51, 0, 1.0, 1.0),
        r#""2","2015-02-04 17:52:00",warm,27,1,1,1,1"#.to_owned(),
        r#""3","2015-02-04 17:53:00""#.to_owned(),
        r#""4","yesterday",1,1,1,1,1,1"#.to_owned(),
        r#""id","date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy""#
            .to_owned(),
        row(54, 0, 2.0, 1.0),
    ];
    let (out, rej) = run(&cfg, &rows);
    assert_eq!(
        rej.len(),
        3,
        "the header row is skipped, not refused: {rej:?}"
    );
    assert_eq!(rej[0], r#"field "Temperature" is not a number: "warm""#);
    assert_eq!(rej[1], r#"field "Temperature" is missing"#);
    assert!(
        rej[2].starts_with(r#"field "date": cannot read timestamp "yesterday""#),
        "{}",
        rej[2]
    );
    assert_eq!(out.last().unwrap(), "t since start: 3.0");
}

#[test]
fn state_spans_a_snapshot_and_restore_mid_window() {
    let cfg = config(
        r#"{"name":"T","field":"Temperature","fn":"mean","window":"batch"},
           {"name":"T","field":"Temperature","fn":"mean","window":"since_start"}"#,
        r#","batch":"1m""#,
    );
    let mut a = WindowStats::new(&cfg).unwrap();
    let mut out = Output::default();
    let r1 = [
        row(51, 0, 20.0, 0.0),
        row(51, 20, 21.0, 0.0),
        row(52, 0, 30.0, 0.0),
    ];
    let pairs: Vec<(i64, &[u8])> = r1.iter().map(|r| (0, r.as_bytes())).collect();
    a.process(&Batch::from_values(0, &pairs), &mut out);
    assert_eq!(out.len(), 2, "the 17:51 batch closed");
    // A new instance picks up the open 17:52 batch and the running total.
    let mut b = WindowStats::new(&cfg).unwrap();
    b.restore(&a.snapshot()).unwrap();
    let r2 = [row(52, 30, 32.0, 0.0), row(53, 0, 1.0, 0.0)];
    let pairs: Vec<(i64, &[u8])> = r2.iter().map(|r| (3, r.as_bytes())).collect();
    let mut out = Output::default();
    b.process(&Batch::from_values(3, &pairs), &mut out);
    assert_eq!(
        out.values_lossy(),
        ["T by batch: 31.0", "T since start: 25.75"]
    );
    // A different configuration refuses the state.
    let other = config(
        r#"{"name":"X","field":"CO2","fn":"max","window":"batch"}"#,
        "",
    );
    let err = WindowStats::new(&other)
        .unwrap()
        .restore(&a.snapshot())
        .unwrap_err();
    assert!(err.contains("state holds statistics"), "{err}");
}

#[test]
fn late_rows_are_refused_and_lateness_admits_them() {
    let stats = r#"{"name":"T","field":"Temperature","fn":"count","window":"batch"}"#;
    let rows = [row(52, 0, 1.0, 0.0), row(51, 0, 1.0, 0.0)];
    let (_, rej) = run(&config(stats, r#","batch":"1m""#), &rows);
    assert_eq!(rej, ["late"]);
    let (out, rej) = run(
        &config(stats, r#","batch":"1m","allowed_lateness":"2m""#),
        &rows,
    );
    assert!(rej.is_empty());
    assert_eq!(out, ["T by batch: 1", "T by batch: 1"]);
}

#[test]
fn configuration_errors_are_explained() {
    let bad = |cfg: &str| WindowStats::new(cfg).err().unwrap();
    assert!(bad(r#"{"input":"csv","stats":[]}"#).contains("no statistics"));
    assert!(
        bad(&config(
            r#"{"name":"g","field":"date","fn":"gaps","window":"batch"}"#,
            ""
        ))
        .contains("needs `expect`")
    );
    assert!(
        bad(&config(
            r#"{"name":"t","field":"Temp","fn":"mean","window":"batch"}"#,
            ""
        ))
        .contains("not one of the columns")
    );
    assert!(
        bad(&config(
            r#"{"name":"t","field":"Temperature","fn":"median","window":"batch"}"#,
            ""
        ))
        .contains("unknown variant `median`")
    );
    assert!(
        bad(&config(
            r#"{"name":"t","field":"Temperature","fn":"mean","window":"weekly"}"#,
            ""
        ))
        .contains("window must be")
    );
    assert!(bad(r#"{"input":"csv","columns":["a"],"time":"event","stats":[{"name":"a","field":"a","fn":"sum","window":"batch"}]}"#).contains("needs `timestamp`"));
}
