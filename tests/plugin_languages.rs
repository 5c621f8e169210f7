//! Plugins written in Python (componentize-py, tests/plugins/chaos-py) and
//! JavaScript (componentize-js, tests/plugins/chaos-js) under the same
//! sandbox as a Rust one: a `time.sleep` past the deadline is stopped at
//! the deadline, files and sockets are out of reach, what they print is
//! logged with their stage, a leak is recycled away, and the host goes on
//! with their state.

use std::time::{Duration, Instant};

use crate::common::toolchains::{js_plugin, js_plugin_with_http, python_plugin};
use crate::common::*;

/// `in.txt` → `plugin` as stage `plugin` (default limits, `batch_size = 1`)
/// → `out.txt`, failures and refusals to `dlq.jsonl`.
fn pipeline(plugin: &std::path::Path, input: &str) -> Pipeline {
    Pipeline::new(&format!(
        r#"
batch_size = 1

[sources.in]
type = "replay"
path = "in.txt"
format = "lines"

[transforms.plugin]
type = "wasm"
inputs = ["in"]
plugin = "{}"
dead_letter = "dlq"

[sinks.out]
type = "file"
inputs = ["plugin"]
path = "out.txt"

[sinks.dlq]
type = "file"
path = "dlq.jsonl"
format = "json"
"#,
        plugin.display()
    ))
    .with_file("in.txt", input)
}

#[test]
fn a_python_plugin_sleeping_a_minute_is_stopped_at_its_one_second_deadline() {
    let p = pipeline(
        &python_plugin("chaos-py"),
        "a\nsleep:60000\nprint:hello from python\nb\n",
    );
    let started = Instant::now();
    let log = p.run_ok(Duration::from_secs(120));
    let took = started.elapsed();
    assert_eq!(
        p.read("out.txt"),
        "a\nprint:hello from python\nb\ntotal=3\n",
        "{log}"
    );
    let dead = p.json_lines("dlq.jsonl");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["value"], "sleep:60000");
    assert_eq!(
        dead[0]["headers"]["weir.reason"],
        "deadline of 1s exceeded (plugin interrupted)"
    );
    // The whole run is far shorter than the sleep it was asked for, with
    // room for a slow machine (and for compiling the 17 MiB component when
    // the cache does not have it).
    assert!(took < Duration::from_secs(30), "took {took:?}:\n{log}");
    let printed = log
        .lines()
        .find(|l| l.contains("hello from python") && l.contains("stream=\"stdout\""))
        .unwrap_or_else(|| panic!("print not logged:\n{log}"));
    assert!(printed.contains("stage=\"plugin\""), "{printed}");
}

#[test]
fn a_python_plugin_cannot_open_host_files_or_sockets() {
    let dir = tempdir();
    let secret = write(dir.path(), "secret.txt", "top secret\n");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let p = pipeline(
        &python_plugin("chaos-py"),
        &format!("a\nopen:{}\nb\nconnect:{addr}\nc\n", secret.display()),
    );
    let log = p.run_ok(Duration::from_secs(120));
    assert_eq!(p.read("out.txt"), "a\nb\nc\ntotal=3\n", "{log}");
    let dead = p.json_lines("dlq.jsonl");
    assert_eq!(dead.len(), 2, "{dead:?}");
    let reason = |i: usize| {
        dead[i]["headers"]["weir.reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(reason(0).starts_with("open failed: "), "{}", reason(0));
    // Python's socket module reaches wasi:sockets, which is linked as traps:
    // the call fails, the instance is re-created with its count.
    assert!(
        reason(1).starts_with("plugin trapped: the sandbox denies `wasi:sockets/"),
        "{}",
        reason(1)
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the plugin reached the listener: {other:?}"),
    }
}

/// A JavaScript plugin that keeps half a MiB per `leak:512` event (200 MiB
/// in all, under the default 64 MiB cap) is recycled with its state as
/// often as it needs: no batch fails, its count survives, and its
/// `console.log` is logged under its stage.
#[test]
fn a_leaking_javascript_plugin_is_recycled_and_loses_nothing() {
    let mut input = String::from("print:hello from javascript\n");
    for i in 0..400 {
        input.push_str(&format!("{i}\nleak:512\n"));
    }
    let p = pipeline(&js_plugin("chaos-js"), &input);
    let log = p.run_ok(Duration::from_secs(180));
    let out = p.read("out.txt");
    assert_eq!(out.lines().count(), 802, "{log}");
    assert_eq!(out.lines().filter(|l| *l == "leaked").count(), 400);
    assert!(out.ends_with("399\nleaked\ntotal=401\n"), "{log}");
    let dead = std::fs::read_to_string(p.path("dlq.jsonl")).unwrap_or_default();
    assert!(dead.is_empty(), "dead letters: {dead}\n{log}");
    let recycled = log.matches("plugin instance recycled").count();
    assert!(recycled >= 3, "{recycled} recycles:\n{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("hello from javascript") && l.contains("stage=\"plugin\"")),
        "{log}"
    );
}

/// componentize-js by default imports `wasi:http`, which the host does not
/// provide: `weir validate` refuses the plugin naming both imports, before
/// anything runs.
#[test]
fn a_javascript_plugin_importing_wasi_http_is_refused_by_validate_naming_the_imports() {
    let p = pipeline(&js_plugin_with_http("chaos-js"), "a\n");
    let out = run_with_timeout(
        weir().arg("validate").arg(p.file()),
        Duration::from_secs(60),
    );
    let (stdout, stderr) = texts(&out);
    let said = format!("{stdout}{stderr}");
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("which this host does not provide"), "{said}");
    for import in ["`wasi:http/types@0.2.", "`wasi:http/outgoing-handler@0.2."] {
        assert!(said.contains(import), "{import} not named:\n{said}");
    }
}
