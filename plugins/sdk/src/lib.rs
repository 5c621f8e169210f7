//! # weir-plugin: write Weir transform plugins in plain Rust
//!
//! A Weir plugin is a WebAssembly component (target `wasm32-wasip2`) that the
//! `weir` host loads into a sandbox and feeds with batches of events. This
//! crate hides the component bindings: implement a trait on a type, call
//! [`export!`] once, and the same code
//!
//! * builds as a component with `cargo build --target wasm32-wasip2`, and
//! * compiles natively, so it can be unit-tested with `cargo test` and
//!   benchmarked against its own WebAssembly build.
//!
//! Most plugins fit a shorthand, where the type is its own config:
//!
//! * [`Map`]: one event out for each event in (or a rejection), with state
//!   kept across reloads: `export!(map Plugin)`;
//! * [`Filter`]: events passed on unchanged or dropped: `export!(filter
//!   Plugin)`;
//! * [`window::Aggregate`]: events folded into tumbling or sliding windows,
//!   one result per closed window: `export!(Windowed<Plugin>)`.
//!
//! ```
//! use weir_plugin::{Emit, Event, Map};
//!
//! /// Upper-cases every value.
//! #[derive(serde::Deserialize)]
//! struct Upper {}
//!
//! impl Map for Upper {
//!     type State = ();
//!     fn map(&mut self, event: &Event, _: &mut (), out: &mut Emit) -> Result<(), String> {
//!         out.extend_from_slice(&event.value.to_ascii_uppercase());
//!         Ok(())
//!     }
//! }
//! weir_plugin::export!(map Upper);
//!
//! // Natively, drive it like the host would:
//! use weir_plugin::{Batch, Mapped, Output, Transform};
//! let mut plugin = Mapped::<Upper>::new("{}").unwrap();
//! let mut out = Output::default();
//! plugin.process(&Batch::from_values(0, &[(1, "abc")]), &mut out);
//! assert_eq!(out.value(0), b"ABC");
//! ```
//!
//! Anything else implements [`Transform`] itself: batches in, any number of
//! events out, ticks, flushes and snapshots by hand.
//!
//! Batches arrive flat (all values in one buffer), and [`Event`] borrows from
//! it, so reading a batch allocates nothing per event. [`Output`] writes into
//! flat buffers the same way.
//!
//! The helpers the shorthands are made of serve hand-written plugins too:
//! [`config`] parses the config (errors name the key; `"1s"` and `"64MiB"`
//! read as the host reads them), [`state`] saves and loads versioned state,
//! [`field`] reads the whole value, a JSON field or a CSV column,
//! [`window`] keeps tumbling, sliding and session windows on processing or
//! event time; [`csv`], [`json`] and [`time`] read fields and timestamps
//! without per-event allocation; [`format`](mod@format) writes results as existing
//! consumers expect.

mod batch;
pub mod bytes;
pub mod config;
pub mod csv;
pub mod field;
pub mod format;
pub mod json;
mod map;
pub mod state;
pub mod time;
pub mod window;

pub use batch::{Batch, Emit, Event, Header, Output, Rejection};
pub use map::{Filter, Map, Mapped};

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
    /// readable reason for a bad configuration; [`config::parse`] gives one
    /// that names the key.
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

    /// Serialises the plugin's state; [`state::save`] versions it.
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }

    /// Replaces the plugin's state with a snapshot, possibly taken by an
    /// older build. Refuse incompatible state with a reason; [`state::load`]
    /// refuses other versions. The default, for plugins without state,
    /// takes only the empty snapshot [`Transform::snapshot`] gives: bytes
    /// are someone else's state, not this plugin's.
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        state::none(state)
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

/// Exports the plugin as the component's `stage` resource: a
/// [`Transform`] as `export!(Plugin)`, a [`Map`] as `export!(map Plugin)`, a
/// [`Filter`] as `export!(filter Plugin)`.
///
/// Use it once per plugin crate, at the crate root. It expands to nothing
/// in native builds, so the crate still compiles and tests natively.
#[macro_export]
macro_rules! export {
    (map $plugin:ty) => {
        $crate::export!($crate::Mapped<$plugin>);
    };
    (filter $plugin:ty) => {
        $crate::export!($crate::Mapped<$plugin>);
    };
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
