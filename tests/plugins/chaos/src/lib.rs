//! Test plugin `chaos`: echoes every event and counts them, and misbehaves
//! when an event's value asks it to, so tests can drive the host's limits.
//!
//! - `trap`: panics (a wasm trap);
//! - `loop`: spins forever (hits the call deadline);
//! - `alloc`: allocates without bound (hits the memory cap);
//! - `reject`: refuses the record with reason `asked to reject`;
//! - `sleep:MS`: sleeps MS milliseconds (a blocking WASI wait, which the
//!   call deadline must bound too), then echoes `slept`;
//! - `leak:KIB`: allocates KIB kibibytes it never frees (not part of its
//!   state), then echoes `leaked`;
//! - `print:TEXT`, `eprint:TEXT`: writes TEXT to standard output or error
//!   (the host logs it), then echoes it;
//! - `open:PATH`, `connect:ADDR`: try to read a file or open a TCP
//!   connection, emitting `opened`/`connected`, or rejecting with the error
//!   (the sandbox grants neither, so they must fail).
//!
//! `flush` emits `total=N`, the number of events echoed, which survives
//! snapshots, so a test can check that recovery after a trap lost no state.
//! Config: `{"restore": "trap" | "refuse"}` makes `restore` misbehave,
//! `{"tag": "x"}` prefixes every echoed value with `x:`, `{"pace_us": N}`
//! spends N microseconds on each event (a slow stage).

use serde::{Deserialize, Serialize};
use weir_plugin::{Batch, Output, Transform, state};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    restore: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    /// Microseconds to spend on each event (a slow stage).
    #[serde(default)]
    pace_us: u64,
}

/// The plugin.
pub struct Chaos {
    config: Config,
    total: u64,
}

#[derive(Serialize, Deserialize)]
struct State {
    total: u64,
}

impl Transform for Chaos {
    fn new(config: &str) -> Result<Self, String> {
        Ok(Chaos {
            config: weir_plugin::config::parse(config)?,
            total: 0,
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) {
        if self.config.pace_us > 0 {
            let us = self.config.pace_us * batch.len() as u64;
            std::thread::sleep(std::time::Duration::from_micros(us));
        }
        for e in batch.iter() {
            match e.value {
                b"trap" => panic!("asked to trap"),
                b"loop" => {
                    let mut x: u64 = 0;
                    loop {
                        x = std::hint::black_box(x.wrapping_add(1));
                    }
                }
                b"alloc" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 1 << 20]);
                        std::hint::black_box(&hoard);
                    }
                }
                b"reject" => out.reject(e.index, "asked to reject"),
                v if v.starts_with(b"sleep:") => {
                    let ms = String::from_utf8_lossy(&v[b"sleep:".len()..])
                        .parse::<u64>()
                        .unwrap_or(0);
                    std::thread::sleep(std::time::Duration::from_millis(ms));
                    out.emit(e.timestamp_ms, b"slept");
                }
                v if v.starts_with(b"leak:") => {
                    let kib = String::from_utf8_lossy(&v[b"leak:".len()..])
                        .parse::<usize>()
                        .unwrap_or(0);
                    std::mem::forget(std::hint::black_box(vec![1u8; kib << 10]));
                    out.emit(e.timestamp_ms, b"leaked");
                }
                v if v.starts_with(b"print:") => {
                    println!("{}", String::from_utf8_lossy(&v[b"print:".len()..]));
                    out.emit(e.timestamp_ms, v);
                }
                v if v.starts_with(b"eprint:") => {
                    eprintln!("{}", String::from_utf8_lossy(&v[b"eprint:".len()..]));
                    out.emit(e.timestamp_ms, v);
                }
                // Sandbox probes: the host grants no files and no sockets.
                v if v.starts_with(b"open:") => {
                    let path = String::from_utf8_lossy(&v[b"open:".len()..]).into_owned();
                    match std::fs::read(&path) {
                        Ok(_) => out.emit(e.timestamp_ms, b"opened"),
                        Err(err) => out.reject(e.index, format!("open failed: {err}")),
                    }
                }
                v if v.starts_with(b"connect:") => {
                    let addr = String::from_utf8_lossy(&v[b"connect:".len()..]).into_owned();
                    match std::net::TcpStream::connect(addr.as_str()) {
                        Ok(_) => out.emit(e.timestamp_ms, b"connected"),
                        Err(err) => out.reject(e.index, format!("connect failed: {err}")),
                    }
                }
                v => {
                    self.total += 1;
                    match &self.config.tag {
                        Some(tag) => out.emit_with_key(e.timestamp_ms, e.key, |b| {
                            b.extend_from_slice(tag.as_bytes());
                            b.push(b':');
                            b.extend_from_slice(v);
                        }),
                        None => out.emit_keyed(e.timestamp_ms, e.key, v),
                    }
                    for h in e.headers() {
                        out.header(&h.name, &h.value);
                    }
                }
            }
        }
    }

    fn flush(&mut self, out: &mut Output) {
        out.emit(0, format!("total={}", self.total).as_bytes());
    }

    fn snapshot(&self) -> Vec<u8> {
        state::save(1, &State { total: self.total })
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        match self.config.restore.as_deref() {
            Some("trap") => panic!("asked to trap in restore"),
            Some("refuse") => return Err("asked to refuse state".into()),
            _ => {}
        }
        self.total = state::load::<State>(1, state)?.total;
        Ok(())
    }
}

weir_plugin::export!(Chaos);
