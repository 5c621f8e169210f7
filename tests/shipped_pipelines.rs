//! The pipelines shipped in `pipelines/`, run through the binary as a user
//! would run them: the shop log on the embedded broker and the Raspberry
//! Pi job (simulated sensor, ONNX, ThingsBoard).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

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
