//! Benchmark: the `onnx` transform's predictor (tract) against onnxruntime
//! (Python, one thread) on the same models, batch 1 and 64, in one run.
//!
//! Run with `scripts/bench-onnx` (it makes a Python environment with the
//! pinned onnxruntime and runs `cargo bench -p weir --bench onnx`), or set
//! `WEIR_ONNXRUNTIME_PYTHON` to a Python that has onnxruntime.

#[path = "support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use support::repo;
use weir::transforms::onnx::{Fields, Predictor};

const ORT: &str = r#"
import sys, time
import numpy as np
import onnxruntime as ort
path, rows = sys.argv[1], np.load(sys.argv[2])
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
name = sess.get_inputs()[0].name
for batch, total in ((1, 20000), (64, 640000)):
    chunks = [rows[i:i + batch] for i in range(0, total, batch)]
    best = None
    for _ in range(3):
        t = time.perf_counter()
        for c in chunks:
            sess.run(None, {name: c})
        d = time.perf_counter() - t
        best = d if best is None else min(best, d)
    print(batch, total / best)
"#;

fn main() {
    let text = std::fs::read_to_string(repo().join("data/weather_greensboro.csv")).unwrap();
    let base: Vec<f32> = text
        .lines()
        .skip(1)
        .flat_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            [f[1].parse::<f32>().unwrap(), f[2].parse::<f32>().unwrap()]
        })
        .collect();
    // 640,000 rows: the weather year repeated.
    let rows: Vec<f32> = base.iter().cycle().take(640_000 * 2).copied().collect();
    let python = std::env::var("WEIR_ONNXRUNTIME_PYTHON").ok();
    let npy = std::env::temp_dir().join(format!("weir-onnx-bench-{}.npy", std::process::id()));
    write_npy(&npy, &rows);
    let outputs: BTreeMap<String, Fields> = [
        ("label".to_owned(), Fields::One("label".into())),
        (
            "probabilities".to_owned(),
            Fields::Many(vec!["p0".into(), "p1".into()]),
        ),
    ]
    .into();
    println!("rain classifiers: predictions/s, best of 3, one thread");
    for model in ["rain-mlp.onnx", "rain-forest.onnx"] {
        let path = repo().join("models").join(model);
        let mut p = Predictor::load_for_batch(&path, 2, &outputs, Some(64)).unwrap();
        let ort: BTreeMap<usize, f64> = match &python {
            Some(py) => {
                let out = std::process::Command::new(py)
                    .args(["-c", ORT])
                    .arg(&path)
                    .arg(&npy)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .map(|l| {
                        let mut it = l.split_whitespace();
                        (
                            it.next().unwrap().parse().unwrap(),
                            it.next().unwrap().parse().unwrap(),
                        )
                    })
                    .collect()
            }
            None => BTreeMap::new(),
        };
        for (batch, total) in [(1usize, 20_000usize), (64, 640_000)] {
            let best = (0..3)
                .map(|_| {
                    let start = Instant::now();
                    for chunk in rows[..total * 2].chunks(batch * 2) {
                        p.predict(chunk).unwrap();
                    }
                    start.elapsed()
                })
                .min()
                .unwrap();
            let tract = total as f64 / best.as_secs_f64();
            match ort.get(&batch) {
                Some(o) => println!(
                    "  {model:<18} batch {batch:>2}: tract {tract:>10.0}  onnxruntime {o:>10.0}  tract/onnxruntime {:.2}",
                    tract / o
                ),
                None => println!(
                    "  {model:<18} batch {batch:>2}: tract {tract:>10.0}  (onnxruntime: set WEIR_ONNXRUNTIME_PYTHON)"
                ),
            }
        }
    }
    let _ = std::fs::remove_file(&npy);
}

/// Writes `rows` (pairs) as a NumPy `.npy` float32 array of shape (n, 2).
fn write_npy(path: &std::path::Path, rows: &[f32]) {
    let header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 2), }}",
        rows.len() / 2
    );
    let mut h = header.into_bytes();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(&h);
    for x in rows {
        out.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}
