//! The pause a plugin swap causes, under load: the real `weir` binary runs
//! replay (100,000 events/s, batches of 64) -> chaos plugin (echo, prefixing
//! each event with its `tag`) -> console, and this program timestamps every
//! line as it arrives. It compares the largest gap between consecutive
//! outputs in steady state with the largest gap around each swap (the
//! `tag` alternates, which `weir reload` applies by swapping the plugin
//! instance with its state).
//!
//! `cargo bench -p weir --bench reload`

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RATE: u32 = 100_000;
const SWAPS: usize = 10;

/// Arrival times of output lines, with the tag each carried.
type Arrivals = Arc<Mutex<Vec<(Instant, u8)>>>;

fn pipeline(lines: &std::path::Path, chaos: &std::path::Path, tag: &str) -> String {
    format!(
        r#"batch_size = 64

[sources.in]
type = "replay"
path = "{lines}"
format = "lines"
rate = {RATE}
loop = true

[transforms.echo]
type = "wasm"
inputs = ["in"]
plugin = "{chaos}"
config = {{ tag = "{tag}" }}

[sinks.out]
type = "console"
inputs = ["echo"]
"#,
        lines = lines.display(),
        chaos = chaos.display(),
    )
}

fn max_gap(arrivals: &[(Instant, u8)], from: Instant, to: Instant) -> Duration {
    let inside: Vec<Instant> = arrivals
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t >= from && *t <= to)
        .collect();
    inside
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    let chaos = support::build_plugin("chaos");
    let dir = std::env::temp_dir().join(format!("weir-bench-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let lines = dir.join("in.txt");
    std::fs::write(&lines, "x\n".repeat(100_000)).unwrap();
    let file = dir.join("p.toml");
    std::fs::write(&file, pipeline(&lines, &chaos, "a")).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let weir = env!("CARGO_BIN_EXE_weir");
    let mut child = Command::new(weir)
        .args(["run", "--no-watch", "--admin", &admin])
        .arg(&file)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start weir");
    let arrivals: Arrivals = Arc::default();
    let reader = {
        let arrivals = arrivals.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 16, out);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let tag = line.first().copied().unwrap_or(b'?');
                arrivals.lock().unwrap().push((Instant::now(), tag));
                line.clear();
            }
        })
    };
    // Warm up, then measure steady state in windows as long as a swap's.
    std::thread::sleep(Duration::from_secs(2));
    let window = Duration::from_millis(500);
    let mut steady = Vec::new();
    for _ in 0..SWAPS {
        let from = Instant::now();
        std::thread::sleep(window);
        steady.push(max_gap(&arrivals.lock().unwrap(), from, from + window));
    }
    let mut around = Vec::new();
    let mut pauses = Vec::new();
    for i in 0..SWAPS {
        let tag = if i % 2 == 0 { "b" } else { "a" };
        std::fs::write(&file, pipeline(&lines, &chaos, tag)).unwrap();
        let from = Instant::now();
        let out = Command::new(weir)
            .args(["reload", "--admin", &admin])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(window - from.elapsed().min(window));
        let all = arrivals.lock().unwrap();
        assert!(
            all.iter()
                .rev()
                .take(10)
                .all(|(_, t)| *t == tag.as_bytes()[0]),
            "the new tag is in use"
        );
        around.push(max_gap(&all, from, from + window));
        drop(all);
        let status = Command::new(weir)
            .args(["status", "--json", "--admin", &admin])
            .output()
            .unwrap();
        let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        pauses.push(s["last_reload"]["max_swap_pause_us"].as_u64().unwrap());
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    reader.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let ms = |d: &Duration| d.as_secs_f64() * 1e3;
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut steady_ms: Vec<f64> = steady.iter().map(ms).collect();
    let mut around_ms: Vec<f64> = around.iter().map(ms).collect();
    let mut pause_ms: Vec<f64> = pauses.iter().map(|p| *p as f64 / 1e3).collect();
    println!("plugin swap under load ({RATE} events/s, batches of 64, {SWAPS} swaps)");
    println!(
        "  largest output gap, steady state (per 500 ms window): median {:.2} ms, max {:.2} ms",
        median(&mut steady_ms),
        steady_ms.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "  largest output gap, 500 ms window with a swap:         median {:.2} ms, max {:.2} ms",
        median(&mut around_ms),
        around_ms.iter().cloned().fold(0.0, f64::max)
    );
    println!(
        "  added pause (swap window - steady, medians):             {:.2} ms",
        median(&mut around_ms) - median(&mut steady_ms)
    );
    println!(
        "  swap time inside the stage (snapshot + restore + swap): median {:.3} ms, max {:.3} ms",
        median(&mut pause_ms),
        pause_ms.iter().cloned().fold(0.0, f64::max)
    );
}
