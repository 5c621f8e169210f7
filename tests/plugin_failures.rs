//! Plugins that fail or misbehave: traps, endless loops and unbounded
//! allocation are stopped by their limits (set, or the 1 s / 64 MiB
//! defaults), reported by stage name and their batch dead-lettered (or
//! logged and dropped) while the pipeline goes on with the plugin's state
//! intact; the sandbox refuses host files and sockets; a plugin refusing
//! its config fails the start.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

/// A `[sources.in]` table replaying `in.txt` line by line.
const REPLAY_IN: &str = "[sources.in]\ntype = \"replay\"\npath = \"in.txt\"\nformat = \"lines\"\n";

/// Tight limits for the chaos stage.
const LIMITS: &str = "timeout = \"300ms\"\nmemory_limit = \"16MiB\"";

/// `batch_size = 1`, the `[sources.in]` table `source` → the chaos plugin
/// (with the further stage settings `limits`) → `out.txt`; with
/// `dead_letter`, failed batches go to `dlq.jsonl`.
fn chaos_pipeline(source: &str, limits: &str, dead_letter: bool) -> String {
    let (dl, dlq_sink) = if dead_letter {
        (
            "dead_letter = \"dlq\"",
            "[sinks.dlq]\ntype = \"file\"\npath = \"dlq.jsonl\"\nformat = \"json\"\n",
        )
    } else {
        ("", "")
    };
    format!(
        r#"
batch_size = 1

{source}

[transforms.chaos]
type = "wasm"
inputs = ["in"]
plugin = "@plugin(chaos)"
{limits}
{dl}

[sinks.out]
type = "file"
inputs = ["chaos"]
path = "out.txt"

{dlq_sink}
"#
    )
}

/// Good events and chaos modes, one per line.
const INPUT: &str = "a\nb\ntrap\nc\nloop\nd\nalloc\ne\nreject\nf\n";

#[test]
fn trap_loop_and_memory_hog_are_stopped_reported_and_dead_lettered() {
    let p = Pipeline::new(&chaos_pipeline(REPLAY_IN, LIMITS, true)).with_file("in.txt", INPUT);
    let stderr = p.run_ok(Duration::from_secs(60));

    // Every good event came through, in order, and the plugin's running
    // total survived three instance re-creations (snapshot + replay).
    let got = p.read("out.txt");
    assert_eq!(got, "a\nb\nc\nd\ne\nf\ntotal=6\n");

    let dead = p.json_lines("dlq.jsonl");
    let by_value = |v: &str| {
        dead.iter()
            .find(|d| d["value"] == v)
            .unwrap_or_else(|| panic!("no dead letter for {v}: {dead:?}"))
    };
    let reason = |v: &str| {
        by_value(v)["headers"]["weir.reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(dead.len(), 4, "{dead:?}");
    for v in ["trap", "loop", "alloc", "reject"] {
        assert_eq!(by_value(v)["headers"]["weir.stage"], "chaos");
    }
    assert!(
        reason("trap").starts_with("plugin trapped:"),
        "{}",
        reason("trap")
    );
    assert!(
        reason("trap").contains("asked to trap"),
        "the panic message is quoted: {}",
        reason("trap")
    );
    assert_eq!(
        reason("loop"),
        "deadline of 300ms exceeded (plugin interrupted)"
    );
    assert!(
        reason("alloc").starts_with("memory limit of 16 MiB exceeded"),
        "{}",
        reason("alloc")
    );
    assert_eq!(reason("reject"), "asked to reject");
    assert_eq!(by_value("loop")["headers"]["weir.line"], "5");

    // Each failure is logged with the stage name and counted.
    assert_eq!(stderr.matches("plugin call failed").count(), 3, "{stderr}");
    assert!(stderr.contains("stage=\"chaos\""), "{stderr}");
    assert_eq!(stage_total(&stderr, "chaos", "errors"), 3);
    assert_eq!(stage_total(&stderr, "chaos", "rejected"), 4);
}

#[test]
fn without_a_dead_letter_sink_failed_batches_are_logged_counted_and_dropped() {
    let p = Pipeline::new(&chaos_pipeline(REPLAY_IN, LIMITS, false)).with_file("in.txt", INPUT);
    let stderr = p.run_ok(Duration::from_secs(60));
    let got = p.read("out.txt");
    assert_eq!(got, "a\nb\nc\nd\ne\nf\ntotal=6\n");
    assert_eq!(
        stderr.matches("batch dropped (no dead_letter set)").count(),
        3,
        "{stderr}"
    );
    assert!(stderr.contains("record rejected and dropped"), "{stderr}");
    assert!(!p.path("dlq.jsonl").exists());
}

#[test]
fn a_plugin_refusing_its_config_fails_the_start_with_the_reason() {
    let p = Pipeline::new(
        "[sources.in]\ntype = \"replay\"\npath = \"in.txt\"\nformat = \"lines\"\n\n[transforms.count]\ntype = \"wasm\"\ninputs = [\"in\"]\nplugin = \"@plugin(gender-count)\"\nconfig = { windw = \"1s\" }\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"count\"]\n",
    )
    .with_file("in.txt", "a\n");
    let stderr = p.run_failing(Duration::from_secs(60));
    assert!(
        stderr.contains("stage `count`: plugin rejected its config: unknown field `windw`"),
        "{stderr}"
    );
}

/// Polls `path` until `done` accepts its text; returns the text.
fn wait_file(path: &Path, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if done(&text) {
            return text;
        }
        assert!(
            start.elapsed() < timeout,
            "{} not as expected within {timeout:?}; it holds:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Feeds `a`, then `bad` (a chaos mode), then `b` to a running pipeline
/// without a `timeout` or `memory_limit`, checking the host is still up and
/// processing after the failure. Returns the dead letter of `bad`, the time
/// from sending `bad` to its dead letter appearing, and the log line
/// reporting the failed call (checked to name the stage).
fn misbehave_under_default_limits(bad: &str) -> (serde_json::Value, Duration, String) {
    let p = Pipeline::new(&chaos_pipeline(
        "[sources.in]\ntype = \"stdin\"\n",
        "",
        true,
    ));
    let mut bg = Background::start_piped(p.dir(), p.file(), &[]);
    let mut stdin = bg.child.stdin.take().unwrap();
    let (out, dlq) = (p.path("out.txt"), p.path("dlq.jsonl"));

    stdin.write_all(b"a\n").unwrap();
    stdin.flush().unwrap();
    wait_file(&out, Duration::from_secs(30), |t| t == "a\n");

    let sent = Instant::now();
    stdin.write_all(format!("{bad}\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_file(&dlq, Duration::from_secs(30), |t| t.lines().count() == 1);
    let took = sent.elapsed();

    // The host is up: the admin endpoint answers, the stage runs on with
    // the failure counted, and a later event goes through.
    let status = bg.status();
    assert_eq!(stage(&status, "chaos")["state"], "running", "{status}");
    assert_eq!(counter(&status, "chaos", "errors"), 1, "{status}");
    assert_eq!(bg.child.try_wait().unwrap(), None, "weir exited");
    stdin.write_all(b"b\n").unwrap();
    stdin.flush().unwrap();
    wait_file(&out, Duration::from_secs(30), |t| t == "a\nb\n");

    drop(stdin);
    let log = bg.finish(Duration::from_secs(30));
    // The plugin's running total survived the re-created instance.
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "a\nb\ntotal=2\n",
        "{log}"
    );
    let dead = json_lines(&dlq);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["value"], bad);
    assert_eq!(dead[0]["headers"]["weir.stage"], "chaos");
    assert_eq!(log.matches("plugin call failed").count(), 1, "{log}");
    let failure = log
        .lines()
        .find(|l| l.contains("plugin call failed"))
        .unwrap();
    assert!(failure.contains("stage=\"chaos\""), "{failure}");
    (dead[0].clone(), took, failure.to_owned())
}

/// Feeds `bad` to a stage without a `timeout` and checks that it was
/// stopped by the default 1 s deadline (not earlier, and not much later),
/// reported and dead-lettered while the host kept processing.
fn stopped_by_the_default_deadline(bad: &str) {
    let (dead, took, failure) = misbehave_under_default_limits(bad);
    assert_eq!(
        dead["headers"]["weir.reason"],
        "deadline of 1s exceeded (plugin interrupted)"
    );
    assert!(
        took >= Duration::from_secs(1),
        "interrupted after {took:?}, before the 1 s default"
    );
    assert!(
        took < Duration::from_secs(10),
        "took {took:?} to interrupt `{bad}`"
    );
    assert!(failure.contains("deadline of 1s exceeded"), "{failure}");
}

/// A plugin that loops forever in a stage with no `timeout` is stopped by
/// the default 1 s deadline (not earlier), reported by stage name, its
/// batch dead-lettered, and the host keeps processing.
#[test]
fn a_looping_plugin_is_stopped_by_the_default_one_second_deadline() {
    stopped_by_the_default_deadline("loop");
}

/// A plugin that sleeps for 30 s (blocked in a WASI wait, where epoch
/// interruption cannot reach it) is stopped at the default 1 s deadline
/// all the same, reported like a loop, and the host keeps processing.
#[test]
fn a_sleeping_plugin_is_stopped_at_its_deadline() {
    stopped_by_the_default_deadline("sleep:30000");
}

/// A short sleep within the deadline is a plugin's right: it ends and the
/// event goes through.
#[test]
fn a_plugin_may_sleep_within_its_deadline() {
    let p =
        Pipeline::new(&chaos_pipeline(REPLAY_IN, "", true)).with_file("in.txt", "a\nsleep:50\nb\n");
    let stderr = p.run_ok(Duration::from_secs(60));
    assert_eq!(p.read("out.txt"), "a\nslept\nb\ntotal=2\n", "{stderr}");
    assert!(!stderr.contains("plugin call failed"), "{stderr}");
}

/// What a plugin prints becomes log lines tagged with its stage (standard
/// output at info, standard error at warn), at most 50 a second, with the
/// dropped ones counted in a warning.
#[test]
fn a_plugins_output_is_logged_with_its_stage_and_rate_limited() {
    // The trap re-creates the instance and replays the calls since the
    // last snapshot (the first print among them): printed once, logged once.
    let mut input =
        String::from("print:only once\ntrap\nprint:hello from stdout\neprint:trouble on stderr\n");
    for i in 0..200 {
        input.push_str(&format!("print:line {i}\n"));
    }
    let p = Pipeline::new(&chaos_pipeline(REPLAY_IN, "", false)).with_file("in.txt", &input);
    let stderr = p.run_ok(Duration::from_secs(60));
    let line_of = |needle: &str| {
        stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{stderr}"))
            .to_owned()
    };
    let out = line_of("hello from stdout");
    assert!(out.contains("INFO"), "{out}");
    assert!(out.contains("stage=\"chaos\""), "{out}");
    assert!(out.contains("stream=\"stdout\""), "{out}");
    let err = line_of("trouble on stderr");
    assert!(err.contains("WARN"), "{err}");
    assert!(err.contains("stream=\"stderr\""), "{err}");
    // 202 lines in well under a second: 50 logged, the rest dropped.
    let logged = stderr.matches("stream=\"stdout\"").count() + 1;
    assert!(logged <= 60, "{logged} lines logged:\n{stderr}");
    assert!(stderr.contains("lines dropped"), "{stderr}");
    let once = stderr
        .lines()
        .filter(|l| l.contains("only once") && l.contains("stream=\"stdout\""))
        .count();
    assert_eq!(once, 1, "replayed output logged again:\n{stderr}");
    assert!(
        stderr.contains("plugin instance re-created replayed=1"),
        "{stderr}"
    );
}

/// A plugin that leaks (half a MiB per `leak:512` event, 50 MiB in all,
/// under a 16 MiB cap) is recycled before it reaches the cap: a fresh
/// instance takes its state between batches, so no batch fails, nothing
/// is dead-lettered, its count survives, and `/metrics` counts the
/// recycles.
#[test]
fn a_leaking_plugin_is_recycled_with_its_state_before_it_hits_its_cap() {
    let p = Pipeline::new(&chaos_pipeline(
        "[sources.in]\ntype = \"stdin\"\n",
        "memory_limit = \"16MiB\"",
        true,
    ));
    let mut bg = Background::start_piped(p.dir(), p.file(), &[]);
    let mut stdin = bg.child.stdin.take().unwrap();
    let mut expected = String::new();
    for i in 0..100 {
        stdin
            .write_all(format!("{i}\nleak:512\n").as_bytes())
            .unwrap();
        expected.push_str(&format!("{i}\nleaked\n"));
    }
    stdin.flush().unwrap();
    let out = p.path("out.txt");
    wait_file(&out, Duration::from_secs(60), |t| t == expected);
    let (code, metrics) = http("GET", &format!("http://{}/metrics", bg.admin), None, None);
    assert_eq!(code, 200);
    let recycles: u64 = metrics
        .lines()
        .find(|l| l.starts_with("weir_plugin_recycles_total{stage=\"chaos\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no recycle count:\n{metrics}"));
    // 50 MiB leaked, recycled past 12 MiB (3/4 of the cap): at least 4.
    assert!(recycles >= 4, "{recycles} recycles");
    drop(stdin);
    let log = bg.finish(Duration::from_secs(30));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{expected}total=100\n"),
        "{log}"
    );
    let dead = std::fs::read_to_string(p.path("dlq.jsonl")).unwrap_or_default();
    assert!(dead.is_empty(), "dead letters: {dead}\n{log}");
    assert!(!log.contains("plugin call failed"), "{log}");
    assert_eq!(
        log.matches("plugin instance recycled").count() as u64,
        recycles,
        "{log}"
    );
}

/// A plugin that allocates without bound in a stage with no `memory_limit`
/// is stopped by the default 64 MiB cap, reported by stage name, its batch
/// dead-lettered, and the host keeps processing.
#[test]
fn a_memory_hogging_plugin_is_stopped_by_the_default_64_mib_cap() {
    let (dead, _, failure) = misbehave_under_default_limits("alloc");
    let reason = dead["headers"]["weir.reason"].as_str().unwrap();
    assert!(
        reason.starts_with("memory limit of 64 MiB exceeded (plugin asked for "),
        "{reason}"
    );
    // The refused growth was past the cap.
    let wanted: f64 = reason
        .trim_start_matches("memory limit of 64 MiB exceeded (plugin asked for ")
        .trim_end_matches(" MiB)")
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {reason}"));
    assert!(wanted > 64.0, "{reason}");
    assert!(
        failure.contains("memory limit of 64 MiB exceeded"),
        "{failure}"
    );
}

/// A plugin asking to read a file that exists on the host (`open:PATH`) or
/// to connect to a listening loopback socket (`connect:ADDR`) fails inside
/// the sandbox: a file cannot be found (no directory is preopened), a
/// socket call traps (sockets are not linked), nothing is read or
/// accepted, and the host goes on with later events.
#[test]
fn a_plugin_cannot_open_host_files_or_sockets() {
    let p = Pipeline::new(&chaos_pipeline(REPLAY_IN, "", true));
    let secret = write(p.dir(), "secret.txt", "top secret\n");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let input = format!(
        "a\nopen:{}\nb\nopen:secret.txt\nc\nconnect:{addr}\nd\n",
        secret.display()
    );
    write(p.dir(), "in.txt", &input);
    let stderr = p.run_ok(Duration::from_secs(60));

    // Neither `opened` nor `connected`: every good event, then the total.
    assert_eq!(p.read("out.txt"), "a\nb\nc\nd\ntotal=4\n");
    let dead = p.json_lines("dlq.jsonl");
    assert_eq!(dead.len(), 3, "{dead:?}");
    for (d, (value, prefix)) in dead.iter().zip([
        (format!("open:{}", secret.display()), "open failed: "),
        ("open:secret.txt".to_owned(), "open failed: "),
        (
            format!("connect:{addr}"),
            "plugin trapped: the sandbox denies `wasi:sockets/",
        ),
    ]) {
        assert_eq!(d["value"], value.as_str());
        assert_eq!(d["headers"]["weir.stage"], "chaos");
        let reason = d["headers"]["weir.reason"].as_str().unwrap();
        assert!(reason.starts_with(prefix), "{reason}");
    }
    // Files: refusals (no directory is preopened). Sockets: not linked, so
    // the call traps; the instance is re-created with its state (the
    // total above counts every good event).
    assert_eq!(stderr.matches("plugin call failed").count(), 1, "{stderr}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the plugin reached the listener: {other:?}"),
    }
}

/// A plugin that traps after its instance failed, while it is being
/// re-created from its snapshot (chaos with `restore = "trap"`): the stage
/// cannot go on, so `weir run` stops with status 1 and the reason, with
/// one instance and with two (the instance's thread stops calling its
/// tasks, and the worker, which gives each batch to the least busy thread,
/// learns why at its next batch instead of failing batches meanwhile).
#[test]
fn an_instance_that_cannot_be_recreated_stops_the_run_with_the_reason() {
    let mut input = "a\n".repeat(300);
    input.push_str("trap\n");
    input.push_str(&"b\n".repeat(3000));
    for stage in [
        "config = { restore = \"trap\" }",
        "config = { restore = \"trap\" }\ninstances = 2\nroute = \"batch\"",
        "config = { restore = \"trap\" }\ninstances = 2",
    ] {
        let p = Pipeline::new(&chaos_pipeline(REPLAY_IN, stage, false)).with_file("in.txt", &input);
        let log = p.run_failing(Duration::from_secs(60));
        assert!(
            log.contains("plugin trapped restoring its snapshot"),
            "{stage}: {log}"
        );
        assert!(log.contains("chaos"), "names the stage: {log}");
        // The events before the trap came through (with two instances a
        // batch queued behind the trap on its thread may be failed); the
        // run stopped before the end of the input.
        let out = p.read("out.txt");
        let before = out.lines().filter(|l| *l == "a").count();
        assert!(before >= 298, "{stage}: {before} of 300");
        assert!(
            out.lines().count() < 3300,
            "{stage}: {} lines",
            out.lines().count()
        );
    }
}
