//! `weir run` on local sources and sinks: exact event-time counts, stdin,
//! and clean shutdown on signals.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

/// A small deterministic generator (no dependency on `rand`).
struct Lcg(u64);

impl Lcg {
    /// The next pseudo-random number (31 bits).
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn event_time_counts_match_an_independent_computation_on_a_million_events() {
    const N: usize = 1_000_000;
    let genders = ["0", "1", "2", ""];
    let mut rng = Lcg(7);
    let mut t: i64 = 1_700_000_000_000;
    let mut expected: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    let mut late = 0;
    let mut text = String::with_capacity(N * 40);
    for i in 0..N {
        t += (rng.next() % 3) as i64;
        let g = genders[(rng.next() % 4) as usize];
        let ts = if i % 100_000 == 99_999 {
            late += 1;
            t - 10_000 // far behind the watermark: must be refused as late
        } else {
            let ts = t - (rng.next() % 1500) as i64; // out of order, within lateness
            *expected
                .entry(ts.div_euclid(1000) * 1000)
                .or_default()
                .entry(g.to_owned())
                .or_default() += 1;
            ts
        };
        text.push_str(&format!("{{\"ts\": {ts}, \"gender\": \"{g}\"}}\n"));
    }
    let p = Pipeline::new(
        r#"
[sources.events]
type = "replay"
path = "events.jsonl"
format = "jsonl"
timestamp = "ts"

[transforms.count]
type = "wasm"
inputs = ["events"]
plugin = "@plugin(gender-count)"
config = { key = "gender", window = "1s", time = "event", allowed_lateness = "2s" }
dead_letter = "late"

[sinks.counts]
type = "file"
inputs = ["count"]
path = "counts.jsonl"

[sinks.late]
type = "file"
path = "late.jsonl"
format = "json"
"#,
    )
    .with_file("events.jsonl", &text);
    p.run_ok(Duration::from_secs(300));

    let mut got: BTreeMap<i64, BTreeMap<String, u64>> = BTreeMap::new();
    for line in p.read("counts.jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let start = v["window_start"].as_i64().unwrap();
        assert_eq!(v["window_end"].as_i64().unwrap(), start + 1000);
        let counts: BTreeMap<String, u64> = serde_json::from_value(v["counts"].clone()).unwrap();
        assert!(
            got.insert(start, counts).is_none(),
            "window {start} emitted twice"
        );
    }
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "counts differ from the independent computation"
    );

    let dead = p.read("late.jsonl");
    assert_eq!(dead.lines().count(), late, "{dead}");
    assert!(
        dead.lines().all(|l| l.contains("\"weir.reason\":\"late\"")),
        "{dead}"
    );
}

#[test]
fn stdin_lines_are_counted_and_flushed_at_end_of_input() {
    let p = Pipeline::new(
        "[sources.in]\ntype = \"stdin\"\n\n[transforms.count]\ntype = \"wasm\"\ninputs = [\"in\"]\nplugin = \"@plugin(gender-count)\"\nconfig = { window = \"1h\", format = \"seed\" }\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"count\"]\n",
    );
    let mut child = p
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"1\n0\n1\n2\n\n1\n")
        .unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    // One hour-long processing-time window, closed by the end of input
    // (it could straddle an hour boundary: then the counts are split).
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for line in stdout.lines() {
        let v: Vec<BTreeMap<String, u64>> = serde_json::from_str(line).unwrap();
        for m in v {
            for (k, n) in m {
                *total.entry(k).or_default() += n;
            }
        }
    }
    let want: BTreeMap<String, u64> = [
        ("".into(), 1),
        ("0".into(), 1),
        ("1".into(), 3),
        ("2".into(), 1),
    ]
    .into();
    assert_eq!(total, want, "{stdout}");
}

#[test]
fn sigint_and_sigterm_drain_flush_and_exit_zero() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let p = Pipeline::new(
            r#"
[sources.shop_log]
type = "replay"
path = "@repo/data/user_log.csv"
select = "gender"
rate = 200

[transforms.count]
type = "wasm"
inputs = ["shop_log"]
plugin = "@plugin(gender-count)"
config = { window = "1s", format = "seed" }

[sinks.out]
type = "console"
inputs = ["count"]
"#,
        );
        let mut child = p
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the first window, then stop mid-stream.
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        let started = Instant::now();
        stdout.read_line(&mut first).unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(700));
        signal(&child, sig);
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
        let out = wait_with_timeout(child, Duration::from_secs(30));
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(0), "signal {sig}: {stderr}");
        let counted: u64 = format!("{first}{rest}")
            .lines()
            .flat_map(|l| serde_json::from_str::<Vec<BTreeMap<String, u64>>>(l).unwrap())
            .flat_map(|m| m.into_values())
            .sum();
        let replayed: u64 = stderr
            .lines()
            .find(|l| l.contains("replay stopped") || l.contains("replay finished"))
            .and_then(|l| l.split("events=").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no replay summary in {stderr}"));
        assert!(replayed > 100, "{stderr}");
        assert_eq!(counted, replayed, "the open window was flushed on shutdown");
    }
}

/// An unpaced replay that loops over a file of nothing but bad lines never
/// fills a batch; it must still deliver its dead letters as it reads and
/// stop on a signal (control is looked at every few hundred lines, not
/// only between batches).
#[test]
fn a_looping_replay_of_only_bad_lines_dead_letters_them_and_stops_on_a_signal() {
    let lines: String = (0..100).map(|i| format!("{{\"no_ts\": {i}}}\n")).collect();
    let p = Pipeline::new(
        r#"
[sources.in]
type = "replay"
path = "in.jsonl"
format = "jsonl"
timestamp = "ts"
loop = true
dead_letter = "bad"

[sinks.out]
type = "file"
inputs = ["in"]
path = "out.jsonl"

[sinks.bad]
type = "file"
path = "bad.jsonl"
format = "json"
"#,
    )
    .with_file("in.jsonl", &lines);
    let bg = p.start();
    let bad = p.path("bad.jsonl");
    let dead_letters = || std::fs::read_to_string(&bad).map_or(0, |t| t.lines().count());
    bg.wait_until(
        "dead letters written while the bad lines loop",
        Duration::from_secs(30),
        || dead_letters() >= 1000,
    );
    bg.stop();
    let first = p.lines("bad.jsonl").swap_remove(0);
    assert!(first.contains("no field \\\"ts\\\""), "{first}");
}
