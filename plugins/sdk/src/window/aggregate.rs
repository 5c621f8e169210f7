//! The shorthand for windowed aggregations: implement [`Aggregate`] (read an
//! event, add it to a window, write a closed window) and [`Windowed`] does
//! the rest of [`Transform`].
//!
//! ```
//! use weir_plugin::config::Duration;
//! use weir_plugin::field::Record;
//! use weir_plugin::window::{Aggregate, Closed, Time, Windowed, Windowing};
//! use weir_plugin::{Batch, Output, Transform};
//!
//! /// Counts events per event-time window of `window` (default 1 s).
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Count {
//!     window: Option<Duration>,
//! }
//!
//! impl Aggregate for Count {
//!     type Acc = u64;
//!     type Item<'r> = ();
//!     fn init(&mut self) -> Result<Windowing, String> {
//!         let window = self.window.unwrap_or(Duration::from_millis(1000));
//!         Windowing::new(window, None, Time::Event, None)
//!     }
//!     fn read(&mut self, _: &mut Record<'_>) -> Result<(), String> {
//!         Ok(())
//!     }
//!     fn add(&self, n: &mut u64, _: &()) {
//!         *n += 1;
//!     }
//!     fn emit(&mut self, w: Closed<u64>, out: &mut Output) {
//!         out.emit(w.end, format!("{}..{}: {}", w.start, w.end, w.acc).as_bytes());
//!     }
//! }
//!
//! let mut stage = Windowed::<Count>::new("{}").unwrap();
//! let mut out = Output::default();
//! stage.process(&Batch::from_values(0, &[(10, "a"), (20, "b"), (1500, "c")]), &mut out);
//! stage.flush(&mut out);
//! assert_eq!(out.values_lossy(), ["0..1000: 2", "1000..2000: 1"]);
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Closed, Time, WindowSpec, Windows};
use crate::config::Duration;
use crate::field::Record;
use crate::{Batch, Output, Transform, state};

/// A plugin that folds events into one set of windows and writes one result
/// per closed window. The type is its own config, parsed from the stage's
/// `config` table with [`config::parse`](crate::config::parse); run it as a
/// [`Windowed`] stage.
pub trait Aggregate: DeserializeOwned + 'static {
    /// What one window accumulates; saved in snapshots with the open
    /// windows.
    type Acc: Default + Serialize + DeserializeOwned;

    /// What [`Aggregate::read`] takes from an event for [`Aggregate::add`];
    /// it may borrow from the event's [`Record`].
    type Item<'r>;

    /// Version of the snapshot layout: raise it when `Acc` changes shape,
    /// and snapshots of the old shape are refused rather than misread.
    const STATE_VERSION: u32 = 1;

    /// Called once the config is parsed: check it, and say which windows to
    /// fill (usually [`Windowing::new`] from the config's settings).
    fn init(&mut self) -> Result<Windowing, String>;

    /// Reads the event `record` holds; `Err` refuses the event.
    fn read<'r>(&mut self, record: &'r mut Record<'_>) -> Result<Self::Item<'r>, String>;

    /// Adds what was read from an event to one of its windows.
    fn add(&self, acc: &mut Self::Acc, item: &Self::Item<'_>);

    /// Writes a closed window.
    fn emit(&mut self, window: Closed<Self::Acc>, out: &mut Output);
}

/// The windows an [`Aggregate`] fills, and the clock that fills them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windowing {
    /// Size, slide and allowed lateness.
    pub spec: WindowSpec,
    /// Processing or event time.
    pub time: Time,
}

impl Windowing {
    /// From the usual settings: `window`, `slide` (default: `window`, so
    /// tumbling windows), `time` and `allowed_lateness` (event time only).
    pub fn new(
        window: Duration,
        slide: Option<Duration>,
        time: Time,
        allowed_lateness: Option<Duration>,
    ) -> Result<Windowing, String> {
        let size = window.ms();
        let slide = slide.map_or(size, Duration::ms);
        let spec = WindowSpec::sliding(size, slide).with_lateness(time.lateness(allowed_lateness)?);
        spec.validate()?;
        Ok(Windowing { spec, time })
    }
}

/// A stage running an [`Aggregate`]: it files each event into its windows on
/// the configured clock, refuses late events with reason `late`, writes
/// windows as they close (as the watermark passes them on event time, on
/// ticks on processing time, and all of them at the end of the input),
/// keeps the acknowledgements of events in open windows, and saves the open
/// windows in snapshots as `{"version":N,"windows":…}`.
pub struct Windowed<T: Aggregate> {
    plugin: T,
    time: Time,
    windows: Windows<T::Acc>,
}

/// The snapshot layout.
#[derive(Serialize, Deserialize)]
struct Saved<W> {
    windows: W,
}

impl<T: Aggregate> Windowed<T> {
    /// The aggregation.
    pub fn plugin(&self) -> &T {
        &self.plugin
    }

    fn emit_closed(&mut self, out: &mut Output) {
        for window in self.windows.drain_closed() {
            self.plugin.emit(window, out);
        }
    }
}

impl<T: Aggregate> Transform for Windowed<T> {
    fn new(config: &str) -> Result<Self, String> {
        let mut plugin: T = crate::config::parse(config)?;
        let windowing = plugin.init()?;
        Ok(Windowed {
            plugin,
            time: windowing.time,
            windows: Windows::new(windowing.spec)?,
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) {
        let arrival = self.time.arrival();
        let mut record = Record::default();
        for event in batch.iter() {
            record.set(event);
            let item = match self.plugin.read(&mut record) {
                Ok(item) => item,
                Err(reason) => {
                    out.reject(event.index, reason);
                    continue;
                }
            };
            let ts = arrival.unwrap_or(event.timestamp_ms);
            let plugin = &self.plugin;
            if let Err(late) = self
                .windows
                .add(ts, event.seq, |acc| plugin.add(acc, &item))
            {
                out.reject(event.index, late.to_string());
            }
            if self.windows.has_closed() {
                self.emit_closed(out);
            }
        }
    }

    fn tick(&mut self, now_ms: i64, out: &mut Output) {
        if self.time == Time::Processing {
            self.windows.advance(now_ms);
            self.emit_closed(out);
        }
    }

    fn flush(&mut self, out: &mut Output) {
        self.windows.close_all();
        self.emit_closed(out);
    }

    fn snapshot(&self) -> Vec<u8> {
        state::save(
            T::STATE_VERSION,
            &Saved {
                windows: &self.windows,
            },
        )
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let saved: Saved<Windows<T::Acc>> = state::load(T::STATE_VERSION, state)?;
        if saved.windows.spec() != self.windows.spec() {
            return Err("state was built with a different window size, slide or lateness".into());
        }
        self.windows = saved.windows;
        Ok(())
    }

    fn hold_from(&self) -> Option<u64> {
        self.windows.hold_from()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums values as integers.
    #[derive(Deserialize)]
    struct Sum {
        time: Time,
    }

    impl Aggregate for Sum {
        type Acc = u64;
        type Item<'r> = u64;
        fn init(&mut self) -> Result<Windowing, String> {
            Windowing::new(Duration::from_millis(10), None, self.time, None)
        }
        fn read(&mut self, record: &mut Record<'_>) -> Result<u64, String> {
            let text = record.key(&crate::field::Field::Whole)?;
            text.parse().map_err(|_| format!("not a number: {text}"))
        }
        fn add(&self, acc: &mut u64, n: &u64) {
            *acc += n;
        }
        fn emit(&mut self, w: Closed<u64>, out: &mut Output) {
            out.emit(w.end, w.acc.to_string().as_bytes());
        }
    }

    #[test]
    fn event_time_windows_refuse_late_and_bad_events_and_survive_snapshots() {
        let mut a = Windowed::<Sum>::new(r#"{"time":"event"}"#).unwrap();
        let mut out = Output::default();
        a.process(
            &Batch::from_values(0, &[(1, "2"), (5, "x"), (12, "3")]),
            &mut out,
        );
        assert_eq!(out.values_lossy(), ["2"]);
        assert_eq!(out.rejections()[0].reason, "not a number: x");
        assert_eq!(a.hold_from(), Some(2));
        let snapshot = a.snapshot();
        assert!(snapshot.starts_with(br#"{"version":1,"windows":{"#));
        let mut b = Windowed::<Sum>::new(r#"{"time":"event"}"#).unwrap();
        b.restore(&snapshot).unwrap();
        let mut out = Output::default();
        b.process(&Batch::from_values(3, &[(3, "1"), (15, "4")]), &mut out);
        b.tick(i64::MAX, &mut out);
        assert!(out.is_empty(), "ticks do not close event-time windows");
        b.flush(&mut out);
        assert_eq!(out.values_lossy(), ["7"]);
        assert_eq!(out.rejections()[0].reason, "late");
        assert_eq!(b.plugin().time, Time::Event);
    }

    #[test]
    fn processing_time_windows_close_on_ticks() {
        assert!(Windowed::<Sum>::new(r#"{"time":"later"}"#).is_err());
        let mut p = Windowed::<Sum>::new(r#"{"time":"processing"}"#).unwrap();
        let mut out = Output::default();
        p.process(&Batch::from_values(0, &[(0, "5")]), &mut out);
        assert!(out.is_empty());
        p.tick(i64::MAX - 10, &mut out);
        assert_eq!(out.values_lossy(), ["5"]);
    }

    #[test]
    fn snapshots_of_other_windows_or_versions_are_refused() {
        let a = Windowed::<Sum>::new(r#"{"time":"event"}"#).unwrap();
        let mut snap = a.snapshot();
        let mut b = Windowed::<Sum>::new(r#"{"time":"event"}"#).unwrap();
        let other = String::from_utf8(snap.clone())
            .unwrap()
            .replace(r#""size_ms":10"#, r#""size_ms":20"#);
        assert!(
            b.restore(other.as_bytes())
                .unwrap_err()
                .contains("different window size")
        );
        snap[11] = b'9';
        assert!(b.restore(&snap).unwrap_err().starts_with("state version 9"));
    }
}
