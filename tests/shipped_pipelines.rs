//! The pipelines shipped in `pipelines/`, run through the binary as a user
//! would run them: the shop log on the embedded broker.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

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
