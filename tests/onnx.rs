//! ONNX models in a pipeline: predictions equal onnxruntime's on both
//! rain models, a regression model's output, events without usable
//! features dead-lettered, unsupported models refused, and a new model
//! checked before it replaces the running one (hot reload).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// Rows of a model fixture: temperature, humidity, label, p0, p1.
fn fixture(name: &str) -> Vec<(f64, f64, i64, f64, f64)> {
    std::fs::read_to_string(repo().join("models").join(name))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

/// JSON lines `{"temperature":T,"humidity":H}`, one per fixture row.
fn features_input(rows: &[(f64, f64, i64, f64, f64)]) -> String {
    rows.iter()
        .map(|(t, h, ..)| format!("{{\"temperature\":{t},\"humidity\":{h}}}\n"))
        .collect()
}

/// Runs `input` (JSON lines) through the rain model `model` with `batch`
/// rows per call, predictions to `out.jsonl`, rows it cannot take to
/// `bad.jsonl`.
fn predict(model: &str, input: &str, batch: usize) -> (std::process::Output, Pipeline) {
    let p = Pipeline::new(&format!(
        r#"
[sources.in]
type = "replay"
path = "in.jsonl"
format = "jsonl"

[transforms.predict]
type = "onnx"
inputs = ["in"]
model = "@repo/models/{model}"
features = ["temperature", "humidity"]
outputs = {{ label = "rain", probabilities = ["p_dry", "p_rain"] }}
batch = {batch}
dead_letter = "bad"

[sinks.out]
type = "file"
inputs = ["predict"]
path = "out.jsonl"

[sinks.bad]
type = "file"
path = "bad.jsonl"
format = "json"
"#
    ))
    .with_file("in.jsonl", input);
    let out = p.run(Duration::from_secs(120));
    (out, p)
}

#[test]
fn predictions_equal_onnxruntime_on_two_thousand_rows_for_both_models() {
    for (model, expected) in [
        ("rain-mlp.onnx", "rain-mlp-expected.csv"),
        ("rain-forest.onnx", "rain-forest-expected.csv"),
    ] {
        let rows = fixture(expected);
        let input = features_input(&rows);
        for batch in [1, 64] {
            let (out, p) = predict(model, &input, batch);
            assert!(out.status.success(), "{}", texts(&out).1);
            let got = p.json_lines("out.jsonl");
            assert_eq!(got.len(), rows.len(), "{model}");
            for (g, (t, h, label, p0, p1)) in got.iter().zip(&rows) {
                assert_eq!(g["temperature"].as_f64().unwrap(), *t);
                assert_eq!(g["humidity"].as_f64().unwrap(), *h);
                assert_eq!(
                    g["rain"].as_i64().unwrap(),
                    *label,
                    "{model} label for {t}, {h}"
                );
                assert!(
                    (g["p_dry"].as_f64().unwrap() - p0).abs() < 1e-5,
                    "{model} p0 for {t}, {h}: {g}"
                );
                assert!(
                    (g["p_rain"].as_f64().unwrap() - p1).abs() < 1e-5,
                    "{model} p1 for {t}, {h}: {g}"
                );
            }
        }
    }
}

#[test]
fn events_without_usable_features_are_dead_lettered_and_unsupported_models_refused() {
    let input = "{\"temperature\":20.5,\"humidity\":40}\n{\"temperature\":\"warm\",\"humidity\":40}\n{\"humidity\":40}\nnot json\n";
    let (out, p) = predict("rain-mlp.onnx", input, 64);
    assert!(out.status.success(), "{}", texts(&out).1);
    assert_eq!(p.read("out.jsonl").lines().count(), 1);
    let reasons: Vec<String> = p
        .json_lines("bad.jsonl")
        .iter()
        .map(|b| b["headers"]["weir.reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(reasons[0], "field \"temperature\" is not a number: warm");
    assert_eq!(reasons[1], "field \"temperature\" is missing");
    assert!(reasons[2].starts_with("invalid JSON"), "{reasons:?}");
    let (out, _) = predict("unsupported-zipmap.onnx", input, 64);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is not supported") && stderr.contains("ZipMap"),
        "{stderr}"
    );
}

#[test]
fn a_regression_model_appends_one_value_per_event() {
    let rows: Vec<(f64, f64)> = (0..300)
        .map(|i| (-5.0 + (i % 40) as f64 * 0.75, 20.0 + (i % 16) as f64 * 5.0))
        .collect();
    let input: String = rows
        .iter()
        .map(|(t, h)| format!("{{\"temperature\":{t},\"humidity\":{h}}}\n"))
        .collect();
    let p = Pipeline::new(
        r#"
[sources.in]
type = "replay"
path = "in.jsonl"
format = "jsonl"

[transforms.dew]
type = "onnx"
inputs = ["in"]
model = "@repo/models/dew-point-linear.onnx"
features = ["temperature", "humidity"]
outputs = { dew_point = "dew_point" }
batch = 32

[sinks.out]
type = "file"
inputs = ["dew"]
path = "out.jsonl"
"#,
    )
    .with_file("in.jsonl", &input);
    let out = p.run(Duration::from_secs(120));
    assert!(out.status.success(), "{}", texts(&out).1);
    let got = p.json_lines("out.jsonl");
    assert_eq!(got.len(), rows.len());
    for (g, (t, h)) in got.iter().zip(&rows) {
        // The model is dew = T - (100 - RH) / 5, in f32.
        let want = t - (100.0 - h) / 5.0;
        let value = g["dew_point"].as_f64().unwrap_or_else(|| panic!("{g}"));
        assert!((value - want).abs() < 1e-4, "{t}, {h}: {value} vs {want}");
        assert_eq!(g["temperature"].as_f64().unwrap(), *t);
    }
}

#[test]
fn a_new_model_is_checked_before_it_replaces_the_running_one() {
    let mlp = fixture("rain-mlp-expected.csv");
    let forest = fixture("rain-forest-expected.csv");
    let dir = tempdir();
    write(dir.path(), "in.jsonl", &features_input(&mlp));
    let model = dir.path().join("model.onnx");
    std::fs::copy(repo().join("models/rain-mlp.onnx"), &model).unwrap();
    let text = r#"
[sources.in]
type = "replay"
path = "in.jsonl"
format = "jsonl"
rate = 5000
loop = true

[transforms.predict]
type = "onnx"
inputs = ["in"]
model = "model.onnx"
features = ["temperature", "humidity"]
outputs = { probabilities = ["p_dry", "p_rain"] }

[sinks.out]
type = "file"
inputs = ["predict"]
path = "out.jsonl"
"#;
    let file = write(dir.path(), "p.toml", text);
    let out = dir.path().join("out.jsonl");
    let weir = Background::start(dir.path(), &file, &[]);
    wait_growth(&out, 0, 1000);
    let first = weir.instances();
    // Which model produced a line: compare its p_rain with both fixtures.
    let by_input = |rows: &[(f64, f64, i64, f64, f64)]| -> std::collections::HashMap<String, f64> {
        rows.iter()
            .map(|(t, h, _, _, p1)| (format!("{t}/{h}"), *p1))
            .collect()
    };
    let (mlp_p, forest_p) = (by_input(&mlp), by_input(&forest));
    let model_of = |line: &str| -> &'static str {
        let v: Value = serde_json::from_str(line).unwrap();
        let key = format!("{}/{}", v["temperature"], v["humidity"]);
        let p = v["p_rain"].as_f64().unwrap();
        let close = |x: f64| (x - p).abs() < 1e-5;
        match (close(mlp_p[&key]), close(forest_p[&key])) {
            (true, false) => "mlp",
            (false, true) => "forest",
            (true, true) => "either",
            (false, false) => "neither",
        }
    };

    // A model tract cannot run is refused; the running one stays.
    replace_file(&repo().join("models/unsupported-zipmap.onnx"), &model);
    let r = weir.wait_for_reload(1, Duration::from_secs(30));
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["rejected"].as_str().unwrap().contains("ZipMap"),
        "the operator is named: {r}"
    );
    assert_eq!(weir.instances(), first);
    let seen = lines(&out).len();
    let l = wait_growth(&out, seen, 1000);
    assert!(l[seen..].iter().all(|l| model_of(l) != "forest"));
    // Putting the running model back changes nothing.
    replace_file(&repo().join("models/rain-mlp.onnx"), &model);
    let r = weir.wait_for_reload(2, Duration::from_secs(30));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        r["kept"],
        serde_json::json!(["in", "predict", "out"]),
        "{r}"
    );

    // A model whose outputs do not fit the configured fields is refused.
    let seen = l.len();
    replace_text(
        &file,
        &text.replace(r#"["p_dry", "p_rain"]"#, r#"["p_rain"]"#),
    );
    let r = weir.wait_for_reload(3, Duration::from_secs(30));
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["rejected"]
            .as_str()
            .unwrap()
            .contains("2 values per row but 1 field name(s)"),
        "{r}"
    );
    let l = wait_growth(&out, seen, 1000);

    // So is one that takes another number of inputs than `features`.
    let seen = l.len();
    replace_text(
        &file,
        &text.replace(r#"["temperature", "humidity"]"#, r#"["temperature"]"#),
    );
    let r = weir.wait_for_reload(4, Duration::from_secs(30));
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["rejected"]
            .as_str()
            .unwrap()
            .contains("takes 2 value(s) per row, but `features` lists 1"),
        "{r}"
    );
    assert_eq!(weir.instances(), first);
    wait_growth(&out, seen, 1000);

    // A good new model replaces the old one without losing an event.
    replace_text(&file, text);
    replace_file(&repo().join("models/rain-forest.onnx"), &model);
    let start = Instant::now();
    let r = loop {
        let r = weir.wait_for_reload(5, Duration::from_secs(30));
        if r["ok"] == true && r["restarted"] == serde_json::json!(["predict"]) {
            break r;
        }
        // The pipeline file and the model may land in separate reloads.
        assert!(start.elapsed() < Duration::from_secs(30), "{r}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let after = weir.instances();
    assert_ne!(after["predict"], first["predict"], "{r}");
    assert_eq!(after["in"], first["in"]);
    assert_eq!(after["out"], first["out"]);
    // Counted from the swap, not from before the reload: on a slow machine
    // the old model may write thousands of lines while the new one loads.
    let seen = lines(&out).len();
    let l = wait_growth(&out, seen, 3000);
    // The last readings the two models tell apart (a few rows give both
    // the same figure to 1e-5) are the new model's.
    assert!(
        l.iter().all(|l| model_of(l) != "neither"),
        "a prediction neither model makes"
    );
    let recent: Vec<&str> = l
        .iter()
        .rev()
        .map(|l| model_of(l))
        .filter(|m| *m != "either")
        .take(20)
        .collect();
    assert!(
        recent.len() == 20 && recent.iter().all(|m| *m == "forest"),
        "{recent:?}"
    );
    let log = weir.stop();
    let produced = stage_total(&log, "in", "events_out") as usize;
    assert_eq!(lines(&out).len(), produced, "every reading predicted once");
}
