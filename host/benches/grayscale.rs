//! Benchmark: the grayscale plugin, WebAssembly versus the same code
//! native, in megapixels per second: conversion alone (raw RGB frames in,
//! raw gray out) and the whole job (decode JPEG/PNG, convert, encode PNG).
//!
//! Run with `cargo bench -p weir --bench grayscale`.

#[path = "support.rs"]
mod support;

use bytes::Bytes;
use support::{Setup, build_plugin, compare, repo};
use weir::event::Event;

fn pixels(e: &Event) -> u64 {
    let h = |n: &str| -> u64 {
        e.header(n)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    h("width") * h("height")
}

fn main() {
    let wasm = build_plugin("grayscale");
    // Conversion alone: 16 frames of 4000x3000 RGB noise.
    let (w, h) = (4000u32, 3000u32);
    let mut state = 1u32;
    let frame: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let frames: Vec<Event> = (0..16)
        .map(|i| {
            let mut e = Event::new(Bytes::from(frame.clone()), i);
            e.headers.push(("width".into(), Bytes::from(w.to_string())));
            e.headers
                .push(("height".into(), Bytes::from(h.to_string())));
            e
        })
        .collect();
    let one_at_a_time = |config| Setup {
        config,
        batch: 1,
        memory: 256 << 20,
    };
    compare::<grayscale::Grayscale>(
        &wasm,
        one_at_a_time(r#"{"input":"rgb","output":"raw","max_pixels":20000000}"#),
        &frames,
        pixels,
    )
    .print("conversion alone, 16 frames of 4000x3000 RGB", "pixels");
    // The whole job on the valid sample images, 4 rounds; then JPEG and
    // PNG inputs apart.
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo().join("data/images")).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("broken") || name.starts_with("not_an") {
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        let size = grayscale::decode(&bytes, u64::MAX).unwrap();
        files.push((name, bytes, u64::from(size.width) * u64::from(size.height)));
    }
    files.sort();
    for (label, suffix) in [
        ("all 13 sample images", ""),
        ("the 7 JPEG samples", ".jpg"),
        ("the 6 PNG samples", ".png"),
    ] {
        let mut events = Vec::new();
        for _ in 0..4 {
            for (_, bytes, px) in files.iter().filter(|(n, _, _)| n.ends_with(suffix)) {
                let mut e = Event::new(Bytes::from(bytes.clone()), 0);
                e.headers
                    .push(("width".into(), Bytes::from(px.to_string())));
                e.headers.push(("height".into(), Bytes::from("1")));
                events.push(e);
            }
        }
        compare::<grayscale::Grayscale>(
            &wasm,
            one_at_a_time(r#"{"output":"png"}"#),
            &events,
            pixels,
        )
        .print(
            &format!("decode + convert + encode PNG, {label} x 4"),
            "pixels",
        );
    }
}
