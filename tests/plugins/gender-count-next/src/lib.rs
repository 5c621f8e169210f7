//! Test plugin `gender-count-next`: gender-count with every JSON window
//! object given one more field, `"build":"next"`. Same state layout, so it
//! takes over a running gender-count's open windows.

use gender_count::GenderCount;
use weir_plugin::{Batch, Output, Transform};

/// gender-count, output rewritten.
pub struct Next {
    inner: GenderCount,
    scratch: Output,
}

impl Next {
    /// Copies what the inner plugin emitted into `out`, adding the field.
    fn relay(&mut self, out: &mut Output) {
        for i in 0..self.scratch.len() {
            let value = self.scratch.value(i);
            let ts = self.scratch.timestamp(i);
            let key = self.scratch.key(i);
            match value.strip_suffix(b"}") {
                Some(head) if value.starts_with(b"{") => out.emit_with_key(ts, key, |buf| {
                    buf.extend_from_slice(head);
                    buf.extend_from_slice(br#","build":"next"}"#);
                }),
                _ => out.emit_keyed(ts, key, value),
            }
        }
        for r in self.scratch.rejections() {
            out.reject(r.index, r.reason.clone());
        }
        self.scratch.clear();
    }
}

impl Transform for Next {
    fn new(config: &str) -> Result<Self, String> {
        Ok(Next {
            inner: GenderCount::new(config)?,
            scratch: Output::default(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) {
        self.inner.process(batch, &mut self.scratch);
        self.relay(out);
    }

    fn tick(&mut self, now_ms: i64, out: &mut Output) {
        self.inner.tick(now_ms, &mut self.scratch);
        self.relay(out);
    }

    fn flush(&mut self, out: &mut Output) {
        self.inner.flush(&mut self.scratch);
        self.relay(out);
    }

    fn snapshot(&self) -> Vec<u8> {
        self.inner.snapshot()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.inner.restore(state)
    }

    fn hold_from(&self) -> Option<u64> {
        self.inner.hold_from()
    }
}

weir_plugin::export!(Next);
