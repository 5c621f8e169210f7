//! The WebAssembly side: generated bindings and the adapter from the
//! component's `stage` resource to a [`Transform`]. Only compiled for wasm32.

use std::cell::RefCell;

use crate::{Batch, Level, Output, Transform};

/// Bindings generated from `wit/weir.wit`. Private to the SDK in spirit:
/// plugin code never names them; `export!` does.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "transform-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_weir_bindings",
        default_bindings_module: "weir_plugin::guest::bindings",
    });
}

use bindings::exports::weir::plugin::transform::GuestStage;
use bindings::weir::plugin::types as wit;

pub(crate) fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => wit::Level::Trace,
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
    };
    bindings::weir::plugin::host::log(level, message);
}

pub(crate) fn now_ms() -> i64 {
    bindings::weir::plugin::host::now_ms()
}

/// Adapts a [`Transform`] to the generated `stage` resource trait.
#[doc(hidden)]
pub struct StageAdapter<T> {
    plugin: RefCell<T>,
}

/// Moves flat events between the SDK's type and the bindings' (their
/// fields are the same).
macro_rules! events {
    ($from:expr => $($events:ident)::+, $($header:ident)::+) => {{
        let e = $from;
        $($events)::+ {
            timestamps: e.timestamps,
            values: e.values,
            value_ends: e.value_ends,
            keys: e.keys,
            key_ends: e.key_ends,
            headers: (e.headers.into_iter())
                .map(|h| $($header)::+ {
                    event: h.event,
                    name: h.name,
                    value: h.value,
                })
                .collect(),
        }
    }};
}

fn into_result<T: Transform>(plugin: &T, out: Output) -> wit::BatchResult {
    wit::BatchResult {
        events: events!(out.events => wit::Events, wit::Header),
        rejections: out
            .rejections
            .into_iter()
            .map(|r| wit::Rejection {
                index: r.index,
                reason: r.reason,
            })
            .collect(),
        hold_from: plugin.hold_from(),
    }
}

impl<T: Transform> GuestStage for StageAdapter<T> {
    fn new(config: String) -> Result<Self, String> {
        Ok(StageAdapter {
            plugin: RefCell::new(T::new(&config)?),
        })
    }

    fn process(&self, input: wit::Batch) -> wit::BatchResult {
        let batch = Batch {
            base_seq: input.base_seq,
            events: events!(input.events => crate::batch::Events, crate::Header),
        };
        let mut plugin = self.plugin.borrow_mut();
        let mut out = Output::default();
        match batch.events.check() {
            Ok(()) => plugin.process(&batch, &mut out),
            // Only a host bug gets here; refusing every event sends them
            // to the dead-letter output with the reason instead of
            // trapping on an out-of-range slice.
            Err(why) => {
                for i in 0..batch.events.timestamps.len() {
                    out.reject(i as u32, format!("malformed batch from the host: {why}"));
                }
            }
        }
        into_result(&*plugin, out)
    }

    fn tick(&self, now_ms: i64) -> wit::BatchResult {
        let mut plugin = self.plugin.borrow_mut();
        let mut out = Output::default();
        plugin.tick(now_ms, &mut out);
        into_result(&*plugin, out)
    }

    fn flush(&self) -> wit::BatchResult {
        let mut plugin = self.plugin.borrow_mut();
        let mut out = Output::default();
        plugin.flush(&mut out);
        into_result(&*plugin, out)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.plugin.borrow().snapshot()
    }

    fn restore(&self, state: Vec<u8>) -> Result<(), String> {
        self.plugin.borrow_mut().restore(&state)
    }
}
