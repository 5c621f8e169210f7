//! The Raspberry Pi job: DHT decoding on a simulated wire, ONNX
//! predictions against onnxruntime's, ThingsBoard under faults, and the
//! whole pipeline on the embedded broker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use crate::common::thingsboard::{FakeThingsboard, Fault};
use crate::common::*;

fn weather() -> Vec<(f64, f64)> {
    std::fs::read_to_string(repo().join("data/weather_greensboro.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn simulated_dht22_on_a_noisy_wire_reads_the_weather_file_or_reports_failures() {
    let dir = tempdir();
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.sensor]
type = "dht"
model = "dht22"
backend = "sim"
readings = "{data}"
jitter = 0.1
flip_bit = 0.01
negative = "twos_complement"
interval = "1h"
realtime = false
start = "1988-01-01 01:00:00"
count = 8760
device = "sim"
experiment = "noise"

[sinks.out]
type = "file"
inputs = ["sensor"]
path = "readings.jsonl"
"#,
            data = repo().join("data/weather_greensboro.csv").display()
        ),
    );
    let out = run_with_timeout(
        weir().args(["--log-level", "weir=debug", "run"]).arg(&file),
        Duration::from_secs(120),
    );
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    // Reads the simulator accepted although two or more bits flipped and
    // cancelled in the one-byte checksum: undetectable by the protocol.
    let cancelled: HashSet<usize> = stderr
        .lines()
        .filter(|l| l.contains("sim: read accepted although bits were flipped"))
        .filter_map(|l| {
            l.split("read=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let rows = weather();
    let start = 567_997_200_000i64; // 1988-01-01 01:00:00 UTC
    let mut read = 0;
    let mut sub_zero = 0;
    let mut misread = 0;
    for line in std::fs::read_to_string(dir.path().join("readings.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ms = (v["time"].as_f64().unwrap() * 1000.0).round() as i64;
        let row = ((ms - start) / 3_600_000) as usize;
        let (t, h) = rows[row];
        if (
            v["temperature"].as_f64().unwrap(),
            v["humidity"].as_f64().unwrap(),
        ) != (t, h)
        {
            assert!(
                cancelled.contains(&row),
                "row {row} misread without cancelling flips: {line}, file {t} {h}"
            );
            misread += 1;
            continue;
        }
        assert_eq!(v["device"], "sim");
        assert_eq!(v["experiment"], "noise");
        sub_zero += (t < 0.0) as usize;
        read += 1;
    }
    let errors = stage_total(&stderr, "sensor", "errors") as usize;
    println!(
        "8760 reads at 10 % jitter, 1 % flipped bits: {read} read correctly ({sub_zero} below zero), {errors} failed after retries, {misread} misread through cancelling flips ({} such reads)",
        cancelled.len()
    );
    assert_eq!(
        read + misread + errors,
        8760,
        "every read either matches the file or is reported"
    );
    assert!(
        misread <= 20,
        "jump confirmation keeps misreads rare: {misread}"
    );
    assert!(errors > 0 && errors < 400, "{errors} failures");
    assert!(sub_zero > 100, "sub-zero two's-complement readings decoded");
    assert!(
        stderr.contains("sensor read failed; skipped"),
        "failures are logged"
    );
}

/// Rows of a model fixture: temperature, humidity, label, p0, p1.
pub(crate) fn fixture(name: &str) -> Vec<(f64, f64, i64, f64, f64)> {
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

fn predict(model: &str, input: &str, batch: usize) -> (std::process::Output, tempfile::TempDir) {
    let dir = tempdir();
    write(dir.path(), "in.jsonl", input);
    let file = write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "replay"
path = "in.jsonl"
format = "jsonl"

[transforms.predict]
type = "onnx"
inputs = ["in"]
model = "{model}"
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
"#,
            model = repo().join("models").join(model).display()
        ),
    );
    let out = run_with_timeout(weir().arg("run").arg(&file), Duration::from_secs(120));
    (out, dir)
}

#[test]
fn predictions_equal_onnxruntime_on_two_thousand_rows_for_both_models() {
    for (model, expected) in [
        ("rain-mlp.onnx", "rain-mlp-expected.csv"),
        ("rain-forest.onnx", "rain-forest-expected.csv"),
    ] {
        let rows = fixture(expected);
        let input: String = rows
            .iter()
            .map(|(t, h, ..)| format!("{{\"temperature\":{t},\"humidity\":{h}}}\n"))
            .collect();
        for batch in [1, 64] {
            let (out, dir) = predict(model, &input, batch);
            assert!(out.status.success(), "{}", texts(&out).1);
            let got: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("out.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
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
    let (out, dir) = predict("rain-mlp.onnx", input, 64);
    assert!(out.status.success(), "{}", texts(&out).1);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
    let bad = std::fs::read_to_string(dir.path().join("bad.jsonl")).unwrap();
    let reasons: Vec<String> = bad
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["headers"]["weir.reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
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

const TOKENS: [(&str, &str); 3] = [
    ("S1", "tok-camera-7f3a9c"),
    ("S11", "tok-counter-b81d22"),
    ("S7", "tok-revoked-00e1f5"),
];

fn faults(n: u64) -> Fault {
    match n % 9 {
        2 => Fault::RateLimited,
        5 => Fault::DropBefore,
        7 => Fault::DropAfter,
        _ => Fault::None,
    }
}

#[test]
fn thingsboard_gets_every_reading_at_least_once_under_faults_and_never_sees_tokens_logged() {
    // The server knows S1's and S11's tokens; S7's was revoked (401); S99
    // has no token configured at all.
    let server = FakeThingsboard::start(&[TOKENS[0].1, TOKENS[1].1], 1500, faults);
    let dir = tempdir();
    let mut input = String::new();
    let devices = ["S1", "S11", "S1", "S11", "S7", "S99"];
    for i in 0..600 {
        let d = devices[i % devices.len()];
        input.push_str(&format!(
            "{{\"ts\":{},\"device\":\"{d}\",\"temperature\":{:.1},\"humidity\":{},\"label\":\"x\"}}\n",
            1_700_000_000_000i64 + i as i64 * 1000,
            20.0 + (i % 10) as f64 / 10.0,
            40 + i % 7
        ));
    }
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
device_field = "device"
tokens = {{ "S1" = "${{TB_S1}}", "S11" = "${{TB_S11}}", "S7" = "${{TB_S7}}" }}
batch = 20
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
        weir()
            .args(["--log-level", "debug"])
            .arg("run")
            .arg(&file)
            .env("TB_S1", TOKENS[0].1)
            .env("TB_S11", TOKENS[1].1)
            .env("TB_S7", TOKENS[2].1),
        Duration::from_secs(180),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    let seen = server.seen.lock().unwrap();
    // Every reading of a known device was accepted at least once.
    let mut accepted: HashMap<(String, i64), usize> = HashMap::new();
    for (token, ts, values) in &seen.accepted {
        *accepted.entry((token.clone(), *ts)).or_default() += 1;
        assert!(
            values["temperature"].is_number() && values.get("label").is_none(),
            "numeric fields only: {values}"
        );
    }
    let mut expected_keys = HashSet::new();
    for (i, line) in input.lines().enumerate() {
        let d = devices[i % devices.len()];
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some((_, tok)) = TOKENS
            .iter()
            .find(|(dev, _)| *dev == d)
            .filter(|(dev, _)| *dev != "S7")
        {
            let key = (tok.to_string(), v["ts"].as_i64().unwrap());
            assert!(
                accepted.contains_key(&key),
                "reading {i} of {d} never accepted"
            );
            expected_keys.insert(key);
        }
    }
    // Duplicates only where the server accepted a request whose response
    // was lost.
    let lost: HashSet<(String, i64)> = seen.lost_responses.iter().cloned().collect();
    let duplicates: usize = accepted.values().map(|n| n - 1).sum();
    for (key, n) in &accepted {
        assert!(
            *n == 1 || lost.contains(key),
            "{key:?} accepted {n} times without a lost response"
        );
    }
    assert!(
        seen.statuses.contains(&413),
        "a request above 1500 bytes was split"
    );
    println!(
        "thingsboard: {} requests, {} readings accepted ({} distinct), {duplicates} duplicates, {} readings in lost responses",
        seen.requests,
        seen.accepted.len(),
        accepted.len(),
        lost.len()
    );
    assert!(duplicates > 0, "the fault plan loses some responses");
    // Revoked and missing tokens are dead letters, with readable reasons.
    let bad: Vec<serde_json::Value> = std::fs::read_to_string(dir.path().join("bad.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reason_of = |dev: &str| -> Vec<String> {
        bad.iter()
            .filter(|b| {
                b["value"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("\"device\":\"{dev}\""))
            })
            .map(|b| b["headers"]["weir.reason"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(reason_of("S7").len(), 100);
    assert!(
        reason_of("S7")[0].contains("ThingsBoard refused the telemetry of device S7: 401"),
        "{:?}",
        reason_of("S7")[0]
    );
    assert_eq!(reason_of("S99").len(), 100);
    assert_eq!(reason_of("S99")[0], "no access token for device \"S99\"");
    // No token in any log line or dead letter.
    for (_, token) in TOKENS {
        assert!(!stderr.contains(token), "token {token} appears in the log");
        assert!(!stdout.contains(token));
        assert!(
            !std::fs::read_to_string(dir.path().join("bad.jsonl"))
                .unwrap()
                .contains(token)
        );
    }
    assert!(
        stderr.contains("ThingsBoard post failed; retrying"),
        "retries are logged"
    );
}

#[test]
fn the_raspberry_pi_pipeline_runs_on_the_embedded_broker() {
    let server = FakeThingsboard::start(&["tok-greensboro-41c9"], 1 << 20, |_| Fault::None);
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
}
