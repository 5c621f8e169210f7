//! Benchmark: the gender-count plugin, WebAssembly versus the same code
//! compiled natively, and the whole pipeline (file → plugin → file) through
//! the real `weir` binary.
//!
//! Run with `cargo bench -p weir --bench gender_count` (the plugin is built
//! for wasm32-wasip2 first). `WEIR_BENCH_EVENTS` sets the end-to-end event
//! count (default 10 000 000). Every figure is measured in the same run, so
//! the ratios compare like with like.

#[path = "support.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{BATCH, build_plugin, compare, rate};

const PLUGIN_EVENTS: usize = 2_000_000;
const CONFIG: &str = r#"{"key":"gender","window":"1s","time":"event"}"#;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// `{"ts": MS, "gender": "G"}` lines with increasing timestamps (~1 ms apart).
fn events(n: usize) -> impl Iterator<Item = (i64, String)> {
    let mut rng = Lcg(1);
    let genders = ["0", "1", "2", ""];
    let mut t = 1_700_000_000_000i64;
    (0..n).map(move |_| {
        t += (rng.next() % 3) as i64;
        let g = genders[(rng.next() % 4) as usize];
        (t, format!("{{\"ts\": {t}, \"gender\": \"{g}\"}}"))
    })
}

/// One `weir run` of the end-to-end pipeline.
struct Run {
    rate: f64,
    rss_mib: f64,
    elapsed: Duration,
}

/// Rounds of the end-to-end pipeline.
const E2E_ROUNDS: usize = 3;

/// The end-to-end pipeline in [`E2E_ROUNDS`] rounds on the same input,
/// each round with a compile cache of its own: first with the cache empty
/// (`weir` compiles the plugin, as on the first run after a build), then
/// with the plugin compiled in it (every later run). Returns every round's
/// pair of runs.
fn end_to_end(wasm: &Path, n: usize) -> Vec<[Run; 2]> {
    let dir = tempfile::tempdir().unwrap();
    // Written streaming: a large buffer in this process would be counted in
    // the child's peak RSS between fork and exec.
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(dir.path().join("events.jsonl")).unwrap(),
        );
        for (_, line) in events(n) {
            writeln!(f, "{line}").unwrap();
        }
        f.flush().unwrap();
    }
    let pipeline = format!(
        r#"
[sources.events]
type = "replay"
path = "events.jsonl"
format = "jsonl"
timestamp = "ts"

[transforms.count]
type = "wasm"
inputs = ["events"]
plugin = "{}"
config = {{ key = "gender", window = "1s", time = "event" }}

[sinks.out]
type = "file"
inputs = ["count"]
path = "counts.jsonl"
"#,
        wasm.display()
    );
    std::fs::write(dir.path().join("p.toml"), pipeline).unwrap();
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/weir");
    assert!(
        bin.is_file(),
        "build the binary first: cargo build --release"
    );
    (0..E2E_ROUNDS)
        .map(|_| {
            let cache = tempfile::tempdir().unwrap();
            [(); 2].map(|()| run_once(&bin, dir.path(), cache.path(), n))
        })
        .collect()
}

fn run_once(bin: &Path, dir: &Path, cache: &Path, n: usize) -> Run {
    let _ = std::fs::remove_file(dir.join("counts.jsonl"));
    let start = Instant::now();
    let child = Command::new(bin)
        .args(["run", "--log-level", "warn"])
        .arg(dir.join("p.toml"))
        .env("WEIR_CACHE_DIR", cache)
        .spawn()
        .unwrap();
    let (status, rss_kib) = wait_rusage(child);
    let elapsed = start.elapsed();
    assert!(status, "weir failed");
    let windows = std::fs::read_to_string(dir.join("counts.jsonl")).unwrap();
    let counted: u64 = windows
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["counts"]
                .as_object()
                .unwrap()
                .values()
                .map(|c| c.as_u64().unwrap())
                .sum::<u64>()
        })
        .sum();
    assert_eq!(counted, n as u64, "every event counted");
    Run {
        rate: rate(n, elapsed),
        rss_mib: rss_kib as f64 / 1024.0,
        elapsed,
    }
}

fn wait_rusage(child: std::process::Child) -> (bool, i64) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    std::mem::forget(child);
    (
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        usage.ru_maxrss,
    )
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let wasm = build_plugin("gender-count");
    let n: usize = std::env::var("WEIR_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    println!(
        "gender-count benchmark (batches of {BATCH} events, event-time 1 s windows, key = JSON field)"
    );
    // End to end first, while this process is small: a child's peak RSS
    // includes what it shared with its parent before exec.
    let rounds = end_to_end(&wasm, n);
    for (i, how) in [
        "plugin compiled in the run, compile cache empty",
        "plugin from the compile cache",
    ]
    .into_iter()
    .enumerate()
    {
        // The machine's speed moves in spells of minutes (BENCHMARKS.md),
        // so the best round is reported, with the range; the peak RSS is
        // the largest of the rounds.
        let runs: Vec<&Run> = rounds.iter().map(|r| &r[i]).collect();
        let best = runs.iter().min_by_key(|r| r.elapsed).unwrap();
        let slowest = runs.iter().map(|r| r.elapsed).max().unwrap();
        let rss = runs.iter().map(|r| r.rss_mib).fold(0.0, f64::max);
        println!(
            "end to end through `weir run` ({how}), best of {E2E_ROUNDS} rounds, {n} JSONL events file -> plugin -> file:"
        );
        println!(
            "  elapsed                         {:>12.2} s (rounds {:.2}-{:.2} s)",
            best.elapsed.as_secs_f64(),
            best.elapsed.as_secs_f64(),
            slowest.as_secs_f64()
        );
        println!(
            "  throughput                      {:>12.0} events/s",
            best.rate
        );
        println!("  peak RSS                        {:>12.1} MiB", rss);
    }
    let events = support::events_from(events(PLUGIN_EVENTS).map(|(t, v)| (t, v.into_bytes())));
    compare::<gender_count::GenderCount>(&wasm, support::Setup::new(CONFIG), &events, |_| 1)
        .print(&format!("plugin alone, {PLUGIN_EVENTS} events"), "events");
}
