//! The replay source's CSV / JSONL / line readers: any file bytes give
//! the same rows whatever the read size, CSV rows become valid JSON, and
//! nothing panics.

use weir::sources::replay::{Format, ReplayConfig, Row};

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(input: (u8, u8, &[u8])) {
    let (mode, chunk, bytes) = input;
    let format = match mode % 3 {
        0 => Format::Csv,
        1 => Format::Jsonl,
        _ => Format::Lines,
    };
    let cfg = ReplayConfig {
        path: "fuzz.csv".into(),
        format,
        select: (mode & 4 != 0).then(|| "v".to_owned()),
        row: if mode & 16 != 0 { Row::Text } else { Row::Json },
        rate: None,
        timestamp: (mode & 8 != 0).then(|| "ts".to_owned()),
        loop_: false,
    };
    let read = |chunk: usize| {
        cfg.read_bytes(bytes, chunk).map(|rows| {
            rows.into_iter()
                .map(|r| r.map(|e| (e.timestamp_ms, e.value)))
                .collect::<Vec<_>>()
        })
    };
    let whole = read(1 << 20);
    let pieces = read(1 + chunk as usize % 64);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the read size changed the rows"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("the read size changed the outcome: {whole:?} / {pieces:?}"),
    }
    if let Ok(rows) = whole
        && format == Format::Csv
        && cfg.select.is_none()
        && cfg.row == Row::Json
    {
        for (_, value) in rows.into_iter().flatten() {
            serde_json::from_slice::<serde_json::Value>(&value)
                .unwrap_or_else(|e| panic!("row is not JSON ({e}): {value:?}"));
        }
    }
}
