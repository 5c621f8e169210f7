//! Restore of every shipped Rust plugin given any bytes: refused with a
//! reason or taken, never a panic (a trap in WebAssembly); state taken is
//! usable, and its snapshot restores again.

use super::plugins;

use weir_plugin::{Batch, Output};

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(input: (u8, &[u8])) {
    let (which, state) = input;
    let (mut stage, _) = plugins::build(which);
    if stage.restore(state).is_err() {
        return;
    }
    let rows: [(i64, &[u8]); 3] = [
        (1_000, br#"{"gender":"1","v":2.5}"#),
        (2_000, b"2015-02-04 17:51:00,23.18"),
        (3_000, b"u1,0"),
    ];
    let mut out = Output::default();
    stage.process(&Batch::from_values(0, &rows), &mut out);
    stage.tick(10_000, &mut out);
    let again = stage.snapshot();
    stage.flush(&mut out);
    let (mut fresh, _) = plugins::build(which);
    fresh
        .restore(&again)
        .unwrap_or_else(|e| panic!("its own snapshot was refused: {e}"));
}
