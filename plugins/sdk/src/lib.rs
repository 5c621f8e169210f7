//! # weir-plugin: write Weir transform plugins in plain Rust
//!
//! A Weir plugin is a WebAssembly component (target `wasm32-wasip2`) that the
//! `weir` host loads into a sandbox and feeds with batches of events. This
//! crate hides the component bindings: implement [`Transform`] on a type,
//! call [`export!`] once, and the same code
//!
//! * builds as a component with `cargo build --target wasm32-wasip2`, and
//! * compiles natively, so it can be unit-tested with `cargo test` and
//!   benchmarked against its own WebAssembly build.
//!
//! ```
//! use weir_plugin::{Batch, Output, Transform};
//!
//! /// Upper-cases every value.
//! struct Upper;
//!
//! impl Transform for Upper {
//!     fn new(_config: &str) -> Result<Self, String> {
//!         Ok(Upper)
//!     }
//!     fn process(&mut self, batch: &Batch, out: &mut Output) {
//!         for event in batch.iter() {
//!             out.emit_with(event.timestamp_ms, |buf| {
//!                 buf.extend(event.value.iter().map(u8::to_ascii_uppercase))
//!             });
//!         }
//!     }
//! }
//! weir_plugin::export!(Upper);
//!
//! // Natively, drive it like the host would:
//! let mut plugin = Upper::new("{}").unwrap();
//! let batch = Batch::from_values(0, &[(1, b"abc".as_slice())]);
//! let mut out = Output::default();
//! plugin.process(&batch, &mut out);
//! assert_eq!(out.value(0), b"ABC");
//! ```
//!
//! Batches arrive flat (all values in one buffer), and [`Event`] borrows from
//! it, so reading a batch allocates nothing per event. [`Output`] writes into
//! flat buffers the same way.
//!
//! Window helpers for tumbling, sliding and session windows over event or
//! processing time live in [`window`]; [`csv`], [`json`] and [`time`] read
//! fields and timestamps without per-event allocation; [`format`] prints
//! numbers the way existing consumers expect.

mod batch;
pub mod config;
pub mod csv;
pub mod format;
pub mod json;
pub mod time;
pub mod window;

pub use batch::{Batch, Event, Header, Output, Rejection};

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

/// A transform plugin: one value of this type per pipeline stage.
///
/// Only [`Transform::new`] and [`Transform::process`] are required. Stateful
/// plugins also implement [`Transform::snapshot`] and [`Transform::restore`]
/// so their state survives hot reloads, restarts and crashes, and
/// [`Transform::hold_from`] so the host holds the acknowledgements of events
/// still sitting in open windows.
pub trait Transform: Sized + 'static {
    /// Builds the stage from its `config` table, given as JSON. Return a
    /// readable reason for a bad configuration; [`config::parse`] turns a
    /// serde error into one.
    fn new(config: &str) -> Result<Self, String>;

    /// Processes one batch: emit results into `out`, and refuse individual
    /// records with [`Output::reject`].
    fn process(&mut self, batch: &Batch, out: &mut Output);

    /// Processing time has advanced to `now_ms`; close due windows.
    fn tick(&mut self, now_ms: i64, out: &mut Output) {
        let _ = (now_ms, out);
    }

    /// The input has ended: emit whatever is still open.
    fn flush(&mut self, out: &mut Output) {
        let _ = out;
    }

    /// Serialises the plugin's state.
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Replaces the plugin's state with a snapshot, possibly taken by an
    /// older build. Refuse incompatible state with a reason.
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let _ = state;
        Ok(())
    }

    /// The lowest sequence number ([`Event::seq`]) whose effect is held in
    /// state and not yet emitted, or `None` if everything seen so far has
    /// been emitted. Stateless plugins keep the default.
    fn hold_from(&self) -> Option<u64> {
        None
    }
}

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed diagnostics.
    Trace,
    /// Diagnostics for plugin authors.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that was handled.
    Warn,
    /// Something failed.
    Error,
}

/// Writes a log line through the host (tagged with the stage name). In a
/// native build it goes to standard error.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    guest::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Processing time: milliseconds since the Unix epoch, as seen by the host.
pub fn now_ms() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        guest::now_ms()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Exports a [`Transform`] implementation as the plugin's `stage` resource.
///
/// Use it once per plugin crate, at the crate root. It expands to nothing
/// in native builds, so the crate still compiles and tests natively.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        struct __WeirPluginComponent;

        #[cfg(target_arch = "wasm32")]
        impl $crate::guest::bindings::exports::weir::plugin::transform::Guest
            for __WeirPluginComponent
        {
            type Stage = $crate::guest::StageAdapter<$plugin>;
        }

        #[cfg(target_arch = "wasm32")]
        $crate::guest::bindings::__export_weir_bindings!(__WeirPluginComponent with_types_in $crate::guest::bindings);
    };
}
