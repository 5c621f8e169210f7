//! The ThingsBoard sink against the fake server in `common::thingsboard`:
//! every reading delivered at least once under faults with per-device
//! tokens that never reach a log, the single-token mode, and refusals (400,
//! 401) dead-lettered, never retried.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::thingsboard::{FakeThingsboard, Fault};
use crate::common::*;

/// JSON lines from `in.jsonl` (event time in `ts`) posted to `server` by a
/// ThingsBoard sink with `settings`; what it cannot deliver goes to
/// `bad.jsonl`.
fn posting_pipeline(server: &FakeThingsboard, settings: &str) -> String {
    format!(
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
{settings}
dead_letter = "bad"

[sinks.bad]
type = "file"
path = "bad.jsonl"
format = "json"
"#,
        url = server.url
    )
}

/// Devices and their access tokens (S7's is revoked on the server).
const TOKENS: [(&str, &str); 3] = [
    ("S1", "tok-camera-7f3a9c"),
    ("S11", "tok-counter-b81d22"),
    ("S7", "tok-revoked-00e1f5"),
];

/// Every ninth request rate-limited, one dropped before it is read and
/// one dropped after its readings were recorded.
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
    let p = Pipeline::new(&posting_pipeline(
        &server,
        r#"device_field = "device"
tokens = { "S1" = "${TB_S1}", "S11" = "${TB_S11}", "S7" = "${TB_S7}" }
batch = 20"#,
    ))
    .with_file("in.jsonl", &input);
    let out = run_with_timeout(
        weir()
            .args(["--log-level", "debug"])
            .arg("run")
            .arg(p.file())
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
    let bad = p.json_lines("bad.jsonl");
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
        assert!(!p.read("bad.jsonl").contains(token));
    }
    assert!(
        stderr.contains("ThingsBoard post failed; retrying"),
        "retries are logged"
    );
}

/// The second request is answered 400.
fn second_is_bad(n: u64) -> Fault {
    if n == 2 {
        Fault::BadRequest
    } else {
        Fault::None
    }
}

/// Every request is answered normally.
fn no_faults(_: u64) -> Fault {
    Fault::None
}

/// 50 readings of one device, posted with `token` in batches of 10.
fn run_single_token(server: &FakeThingsboard, token: &str) -> (String, Vec<serde_json::Value>) {
    let input: String = (0..50)
        .map(|i| {
            format!(
                "{{\"ts\":{},\"temperature\":{}.5}}\n",
                1_700_000_000_000i64 + i * 1000,
                20 + i % 5
            )
        })
        .collect();
    let p = Pipeline::new(&posting_pipeline(
        server,
        "token = \"${TB_TOKEN}\"\nbatch = 10",
    ))
    .with_file("in.jsonl", &input);
    let out = run_with_timeout(p.command().env("TB_TOKEN", token), Duration::from_secs(120));
    let (_, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(token), "the token appeared in the log");
    (stderr, p.json_lines("bad.jsonl"))
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
