//! The ThingsBoard sink's single-token mode and its refusals (400, 401:
//! dead-lettered, never retried), and the DHT source's minimum interval.

use std::time::Duration;

use crate::common::thingsboard::{FakeThingsboard, Fault};
use crate::common::*;

/// The second request is answered 400.
fn second_is_bad(n: u64) -> Fault {
    if n == 2 {
        Fault::BadRequest
    } else {
        Fault::None
    }
}

fn no_faults(_: u64) -> Fault {
    Fault::None
}

/// 50 readings of one device, posted with `token` in batches of 10.
fn run_single_token(server: &FakeThingsboard, token: &str) -> (String, Vec<serde_json::Value>) {
    let dir = tempdir();
    let input: String = (0..50)
        .map(|i| {
            format!(
                "{{\"ts\":{},\"temperature\":{}.5}}\n",
                1_700_000_000_000i64 + i * 1000,
                20 + i % 5
            )
        })
        .collect();
    write(dir.path(), "in.jsonl", &input);
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "replay"
path = "in.jsonl"
format = "jsonl"
timestamp = "ts"

[sinks.tb]
type = "thingsboard"
inputs = ["in"]
url = "{url}"
token = "${{TB_TOKEN}}"
batch = 10
dead_letter = "bad"

[sinks.bad]
type = "file"
path = "bad.jsonl"
format = "json"
"#,
            url = server.url
        ),
    );
    let out = run_with_timeout(
        weir().arg("run").arg(&file).env("TB_TOKEN", token),
        Duration::from_secs(120),
    );
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(token), "the token appeared in the log");
    let bad = std::fs::read_to_string(dir.path().join("bad.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (stderr, bad)
}

#[test]
fn one_token_for_every_event_and_a_400_is_dead_lettered_not_retried() {
    let server = FakeThingsboard::start(&["tok-a"], 1 << 20, second_is_bad);
    let (_, bad) = run_single_token(&server, "tok-a");
    let seen = server.seen.lock().unwrap();
    assert_eq!(
        seen.requests, 5,
        "one request per batch, the 400 not retried"
    );
    assert_eq!(seen.statuses.iter().filter(|s| **s == 400).count(), 1);
    assert_eq!(seen.accepted.len(), 40);
    assert!(seen.accepted.iter().all(|(t, _, _)| t == "tok-a"));
    let mut ts: Vec<i64> = seen.accepted.iter().map(|a| a.1).collect();
    ts.sort();
    ts.dedup();
    assert_eq!(ts.len(), 40, "each accepted reading once");
    assert_eq!(bad.len(), 10, "the refused batch is dead-lettered");
    for b in &bad {
        let reason = b["headers"]["weir.reason"].as_str().unwrap();
        assert!(reason.contains("400"), "{reason}");
    }
}

#[test]
fn a_refused_token_is_not_retried_and_its_readings_are_dead_lettered() {
    let server = FakeThingsboard::start(&["tok-a"], 1 << 20, no_faults);
    let (_, bad) = run_single_token(&server, "revoked");
    let seen = server.seen.lock().unwrap();
    assert_eq!(seen.requests, 5, "{:?}", seen.statuses);
    assert!(seen.statuses.iter().all(|s| *s == 401));
    assert!(seen.accepted.is_empty());
    assert_eq!(bad.len(), 50);
    let reason = bad[0]["headers"]["weir.reason"].as_str().unwrap();
    assert!(reason.contains("401"), "{reason}");
    assert!(!reason.contains("revoked"), "the token leaked: {reason}");
}

#[test]
fn reading_a_dht_faster_than_it_allows_is_refused() {
    let dir = tempdir();
    for (model, interval, min) in [("dht22", "1500ms", "2s"), ("dht11", "500ms", "1s")] {
        let file = write(
            dir.path(),
            "p.toml",
            &format!(
                "[sources.s]\ntype = \"dht\"\nmodel = \"{model}\"\nbackend = \"sim\"\ninterval = \"{interval}\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"s\"]\n"
            ),
        );
        let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(30));
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("is shorter than a"), "{stderr}");
        assert!(stderr.contains(min), "{model}: {stderr}");
    }
}

#[test]
fn a_regression_model_appends_one_value_per_event() {
    let dir = tempdir();
    let rows: Vec<(f64, f64)> = (0..300)
        .map(|i| (-5.0 + (i % 40) as f64 * 0.75, 20.0 + (i % 16) as f64 * 5.0))
        .collect();
    let input: String = rows
        .iter()
        .map(|(t, h)| format!("{{\"temperature\":{t},\"humidity\":{h}}}\n"))
        .collect();
    write(dir.path(), "in.jsonl", &input);
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "replay"
path = "in.jsonl"
format = "jsonl"

[transforms.dew]
type = "onnx"
inputs = ["in"]
model = "{model}"
features = ["temperature", "humidity"]
outputs = {{ dew_point = "dew_point" }}
batch = 32

[sinks.out]
type = "file"
inputs = ["dew"]
path = "out.jsonl"
"#,
            model = repo().join("models/dew-point-linear.onnx").display()
        ),
    );
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(120));
    assert!(out.status.success(), "{}", texts(&out).1);
    let got: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), rows.len());
    for (g, (t, h)) in got.iter().zip(&rows) {
        // The model is dew = T - (100 - RH) / 5, in f32.
        let want = t - (100.0 - h) / 5.0;
        let value = g["dew_point"].as_f64().unwrap_or_else(|| panic!("{g}"));
        assert!((value - want).abs() < 1e-4, "{t}, {h}: {value} vs {want}");
        assert_eq!(g["temperature"].as_f64().unwrap(), *t);
    }
}
