//! Shared by the benchmarks: build plugins, and time a plugin's `process`
//! natively and as WebAssembly on the same batches.

// Each benchmark uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir::event::Event;
use weir::wasm::PluginInput;
use weir::wasm::{Instance, Limits, Runtime, RuntimeOptions};
use weir_plugin::{Batch, Output, Transform};

/// Events per batch in every benchmark.
pub const BATCH: usize = 1024;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds a plugin for wasm32-wasip2 and returns its component.
pub fn build_plugin(package: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "plugin",
            "-p",
            package,
        ])
        .status()
        .unwrap();
    assert!(status.success());
    repo().join(format!(
        "target/wasm32-wasip2/plugin/{}.wasm",
        package.replace('-', "_")
    ))
}

/// Events per second.
pub fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Timed rounds in [`compare`]; each round runs native, WebAssembly with
/// deadlines and without, one after the other.
pub const ROUNDS: usize = 9;

/// Rates of the same plugin: native, WebAssembly with deadline checks (what
/// `weir` runs), WebAssembly without them; best of [`ROUNDS`] interleaved rounds.
pub struct Comparison {
    /// Native events/s.
    pub native: f64,
    /// WebAssembly events/s, epoch deadlines on.
    pub wasm: f64,
    /// WebAssembly events/s, no deadline checks.
    pub wasm_unchecked: f64,
    /// WebAssembly (deadlines on) / native within each round, sorted: a
    /// slow spell that spans a round slows both sides of its ratio.
    pub round_ratios: Vec<f64>,
}

impl Comparison {
    /// Prints the figures under a heading.
    pub fn print(&self, what: &str, unit: &str) {
        println!("{what}, best of {ROUNDS} interleaved rounds:");
        println!(
            "  native                          {:>12.0} {unit}/s",
            self.native
        );
        println!(
            "  wasm (epoch deadlines, default) {:>12.0} {unit}/s",
            self.wasm
        );
        println!(
            "  wasm (no deadline checks)       {:>12.0} {unit}/s",
            self.wasm_unchecked
        );
        println!(
            "  wasm / native                   {:>12.2}",
            self.wasm / self.native
        );
        println!(
            "  wasm without deadlines / native {:>12.2}",
            self.wasm_unchecked / self.native
        );
        let r = &self.round_ratios;
        println!(
            "  wasm / native within a round    {:>12.2} median, {:.2}-{:.2} over the rounds",
            r[r.len() / 2],
            r[0],
            r[r.len() - 1]
        );
    }
}

/// Events from `(timestamp, value)` pairs.
pub fn events_from(pairs: impl IntoIterator<Item = (i64, Vec<u8>)>) -> Vec<Event> {
    pairs
        .into_iter()
        .map(|(t, v)| Event::new(Bytes::from(v), t))
        .collect()
}

/// How [`compare`] feeds the plugin.
pub struct Setup<'a> {
    /// The plugin's config JSON.
    pub config: &'a str,
    /// Events per call.
    pub batch: usize,
    /// The sandbox's memory cap.
    pub memory: u64,
}

impl<'a> Setup<'a> {
    /// Batches of [`BATCH`], the default 64 MiB cap.
    pub fn new(config: &'a str) -> Self {
        Setup {
            config,
            batch: BATCH,
            memory: Limits::default().memory,
        }
    }
}

/// Times `T::process` natively and the component `wasm` on `events`;
/// `units` counts the work per event (1 for events, pixels for images) for
/// the rates.
pub fn compare<T: Transform>(
    wasm: &Path,
    setup: Setup<'_>,
    events: &[Event],
    units: impl Fn(&Event) -> u64,
) -> Comparison {
    let config = setup.config;
    let size = setup.batch;
    let native_batches: Vec<Batch> = events
        .chunks(size)
        .enumerate()
        .map(|(i, c)| {
            let mut b = Batch::from_values((i * size) as u64, &[] as &[(i64, &[u8])]);
            for (j, e) in c.iter().enumerate() {
                b.push(e.timestamp_ms, e.key.as_deref(), &e.value);
                for (name, value) in &e.headers {
                    b.push_header(j as u32, name, value);
                }
            }
            b
        })
        .collect();
    let time_native = || {
        let mut p = T::new(config).unwrap();
        let mut out = Output::default();
        let start = Instant::now();
        for b in &native_batches {
            out.clear();
            p.process(b, &mut out);
            assert!(out.rejections().is_empty(), "{:?}", &out.rejections()[..1]);
        }
        start.elapsed()
    };
    let host_batches: Vec<_> = events
        .chunks(size)
        .enumerate()
        .map(|(i, c)| PluginInput::from_events((i * size) as u64, c))
        .collect();
    let limits = Limits {
        memory: setup.memory,
        ..Limits::default()
    };
    let time_wasm = |plugin: &weir::wasm::Plugin| {
        let mut inst = Instance::new(plugin, "bench", config, limits).unwrap();
        let start = Instant::now();
        for b in &host_batches {
            inst.process(b).unwrap();
        }
        start.elapsed()
    };
    let checked_plugin = Runtime::global().unwrap().load(wasm).unwrap();
    let unchecked_runtime = Runtime::new(RuntimeOptions {
        cache_dir: None,
        deadlines: false,
    })
    .unwrap();
    let unchecked_plugin = unchecked_runtime.load(wasm).unwrap();
    // Rounds interleave the three, so a slower spell of the machine (other
    // load, clock changes) touches all of them alike; best round of each.
    let (mut native, mut checked, mut unchecked) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let mut round_ratios = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let (n, c) = (time_native(), time_wasm(&checked_plugin));
        round_ratios.push(n.as_secs_f64() / c.as_secs_f64());
        native = native.min(n);
        checked = checked.min(c);
        unchecked = unchecked.min(time_wasm(&unchecked_plugin));
    }
    round_ratios.sort_by(f64::total_cmp);
    let n: u64 = events.iter().map(units).sum();
    let r = |d: Duration| n as f64 / d.as_secs_f64();
    Comparison {
        native: r(native),
        wasm: r(checked),
        wasm_unchecked: r(unchecked),
        round_ratios,
    }
}
