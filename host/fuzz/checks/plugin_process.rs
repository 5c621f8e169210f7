//! The shipped Rust plugins over fuzzed events: nothing panics, and a
//! snapshot taken mid-stream and restored into a fresh instance gives the
//! same output as running straight through (event-time configs).

use super::plugins;

use weir_plugin::{Batch, Output};

/// One fuzzed event: timestamp, key, value, headers.
type Event = (i64, Option<Vec<u8>>, Vec<u8>, Vec<(String, Vec<u8>)>);
type Events = Vec<Event>;

fn batch(base_seq: u64, events: &[Event]) -> Batch {
    let mut b = Batch::from_values(base_seq, &[] as &[(i64, &[u8])]);
    for (i, (ts, key, value, headers)) in events.iter().enumerate() {
        b.push(*ts, key.as_deref(), value);
        for (name, v) in headers {
            b.push_header(i as u32, name, v);
        }
    }
    b
}

/// Decodes `bytes` as libFuzzer's `arbitrary` would and checks them.
pub fn run(bytes: &[u8]) {
    if let Some(input) = super::decode(bytes) {
        check(input);
    }
}

fn check(input: (u8, u8, i64, Events)) {
    let (which, split, now, events) = input;
    let cut = usize::from(split) % (events.len() + 1);
    let (first, second) = events.split_at(cut);
    let (first, second) = (batch(0, first), batch(cut as u64, second));

    let run = |restart: bool| {
        let (mut stage, deterministic) = plugins::build(which);
        let mut seen = Vec::new();
        let mut out = Output::default();
        stage.process(&first, &mut out);
        seen.push(plugins::seen(&out));
        if restart {
            let state = stage.snapshot();
            let (fresh, _) = plugins::build(which);
            stage = fresh;
            stage
                .restore(&state)
                .unwrap_or_else(|e| panic!("own snapshot refused: {e}"));
        }
        let mut out = Output::default();
        stage.process(&second, &mut out);
        seen.push(plugins::seen(&out));
        if !deterministic {
            let mut out = Output::default();
            stage.tick(now, &mut out);
        }
        let mut out = Output::default();
        stage.flush(&mut out);
        seen.push(plugins::seen(&out));
        (seen, deterministic)
    };
    let (straight, deterministic) = run(false);
    let (restarted, _) = run(true);
    if deterministic {
        assert_eq!(straight, restarted, "a restore changed the output");
    }
}
