//! A short, unguided run of every fuzz target inside the test suite.
//!
//! The guided runs (libFuzzer, `scripts/fuzz`) need a nightly, coverage-
//! instrumented build of the whole host that takes about 16 minutes, too
//! long for the suite's budget. This run calls the very same checks
//! (`host/fuzz/checks/`) from the ordinary release build: each target's
//! seeds (the files `scripts/fuzz` seeds its corpus from, and every
//! crash input kept in `host/fuzz/regressions/TARGET/`), then random
//! mutations of them for `WEIR_FUZZ_SHORT_SECS` seconds (default 2). The
//! generator is seeded, so a failure repeats; its input is saved and named
//! in the failure.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "../host/fuzz/checks/mod.rs"]
mod checks;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `prefix` then the first 4 KiB of each file in `dir` whose name ends
/// with one of `suffixes`, as `scripts/fuzz` seeds its corpora.
fn files(dir: &str, suffixes: &[&str], prefix: &[u8]) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            suffixes.iter().any(|s| name.ends_with(s))
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let mut bytes = prefix.to_vec();
            let data = std::fs::read(p).unwrap();
            bytes.extend_from_slice(&data[..data.len().min(4096)]);
            bytes
        })
        .collect()
}

/// A small, seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the parsers under test.
const TOKENS: &[&[u8]] = &[
    b"\n",
    b",",
    b"\"",
    b"=",
    b"[",
    b"]",
    b"{",
    b"}",
    b":",
    b"\r\n",
    b"\\u0000",
    b"1e999",
    b"-0",
    b"\xff",
    b"\x00",
    b"[[stage]]",
    b"data: ",
    b"true",
    b"null",
    b"\xef\xbb\xbf",
];

/// Changes `input` by one to four random edits, some splicing in `other`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(16)).min(len);
                input.drain(at..end);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let end = (at + 1 + rng.below(32)).min(len);
                let copy = input[at..end].to_vec();
                let to = rng.below(len + 1);
                input.splice(to..to, copy);
            }
            5 => {
                let at = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, token.iter().copied());
            }
            6 if !other.is_empty() => {
                let keep = rng.below(len + 1);
                let from = rng.below(other.len());
                input.truncate(keep);
                input.extend_from_slice(&other[from..]);
            }
            _ if len > 0 => input.truncate(rng.below(len)),
            _ => input.push(rng.next() as u8),
        }
    }
    input.truncate(64 * 1024);
}

/// Runs `check` on `input`; on a panic saves the input and fails, naming it.
fn run_one(target: &str, check: fn(&[u8]), input: &[u8]) {
    if catch_unwind(AssertUnwindSafe(|| check(input))).is_ok() {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-short");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{target}-crash"));
    std::fs::write(&path, input).unwrap();
    panic!(
        "fuzz target {target} failed on the input saved in {} ({} bytes); \
         keep it in host/fuzz/regressions/{target}/ once fixed",
        path.display(),
        input.len()
    );
}

/// Seeds, kept crash inputs, then seeded mutations for the time budget.
fn short_run(target: &str, check: fn(&[u8]), mut seeds: Vec<Vec<u8>>) {
    let regressions = root().join("host/fuzz/regressions").join(target);
    if let Ok(entries) = std::fs::read_dir(&regressions) {
        for entry in entries {
            seeds.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    seeds.push(Vec::new());
    for seed in &seeds {
        run_one(target, check, seed);
    }
    let secs: f64 = std::env::var("WEIR_FUZZ_SHORT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    let mut rng = Rng(0x5eed_0000_0000_0001 ^ target.len() as u64);
    let mut pool = seeds;
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < budget {
        let mut input = pool[rng.below(pool.len())].clone();
        let other = pool[rng.below(pool.len())].clone();
        mutate(&mut rng, &mut input, &other);
        run_one(target, check, &input);
        runs += 1;
        if rng.below(16) == 0 {
            if pool.len() < 256 {
                pool.push(input);
            } else {
                let i = rng.below(pool.len());
                pool[i] = input;
            }
        }
    }
    println!("fuzz target {target}: {runs} mutated inputs in {secs} s");
    assert!(runs > 0, "no input ran within {secs} s");
}

macro_rules! short_runs {
    ($($target:ident => $seeds:expr;)*) => {$(
        #[test]
        fn $target() {
            short_run(stringify!($target), checks::$target::run, $seeds);
        }
    )*};
}

short_runs! {
    pipeline_toml => files("pipelines", &[".toml"], b"");
    replay_rows => {
        let mut seeds = files("data", &[".csv"], b"\x00\x10");
        seeds.extend(files("data", &[".jsonl"], b"\x01\x10"));
        seeds
    };
    images => files("data/images", &[".jpg", ".png"], b"\x00");
    sdk_fields => vec![
        b"gender\x00{\"gender\":\"1\",\"t\":23.5}".to_vec(),
        b"t\x002015-02-04 17:51:00,23.18,27.27".to_vec(),
    ];
    sdk_batch => Vec::new();
    plugin_process => Vec::new();
    plugin_restore => Vec::new();
    dht_decode => Vec::new();
    kafka_record => Vec::new();
    admin_request => Vec::new();
    http_framing => vec![b"\x00\x40data: a\n\nid: 1\ndata: b\n\n{\"x\":1}\n".to_vec()];
}
