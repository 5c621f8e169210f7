//! Tumbling and sliding windows over event time or processing time.
//!
//! [`Windows`] keeps one accumulator per open window. Windows are aligned to
//! the Unix epoch: with `size = 1s` they cover `[0, 1000)`, `[1000, 2000)`,
//! and so on. A sliding window (`slide < size`) starts every `slide`
//! milliseconds, so each event falls into `size / slide` windows.
//!
//! A window closes when the **watermark** passes its end. On event time the
//! watermark is the largest event time seen minus `allowed_lateness`, so
//! results depend only on the events, never on how fast they arrive; an event
//! whose window has already closed is *late* and [`Windows::add`] refuses it.
//! On processing time the plugin passes the current time as the event time and
//! advances the watermark from [`Transform::tick`](crate::Transform::tick)
//! with [`Windows::advance`].
//!
//! ```
//! use weir_plugin::window::{WindowSpec, Windows};
//!
//! let mut w: Windows<u64> = Windows::new(WindowSpec::tumbling(1000)).unwrap();
//! w.add(100, 0, |n| *n += 1).unwrap();
//! w.add(900, 1, |n| *n += 1).unwrap();
//! w.add(1500, 2, |n| *n += 1).unwrap(); // watermark 1500 closes [0, 1000)
//! let closed = w.take_closed();
//! assert_eq!((closed[0].start, closed[0].end, closed[0].acc), (0, 1000, 2));
//! assert!(w.add(999, 3, |n| *n += 1).is_err()); // late
//! ```
//!
//! [`Sessions`] groups events into session windows: a session lasts while
//! events keep arriving less than `gap` apart, and sessions that an
//! out-of-order event bridges are merged.
//!
//! The whole structure is serde-serialisable, so a plugin's
//! [`snapshot`](crate::Transform::snapshot) can include its open windows and
//! they survive restarts and hot reloads.
//!
//! [`Time`] is the `time` setting that picks the clock, and [`Aggregate`]
//! the shorthand for a plugin that folds events into one set of windows:
//! [`Windowed`] runs it, with the clock, late events, ticks, snapshots and
//! held acknowledgements taken care of.

mod aggregate;
mod open;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use open::ByStart;

use crate::config::Duration;

pub use aggregate::{Aggregate, Windowed, Windowing};

/// Which clock assigns events to windows: a plugin's `time` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Time {
    /// Arrival at the plugin (the default): windows close on ticks, so
    /// results depend on how fast events arrive.
    #[default]
    Processing,
    /// The event's own time: windows close as the watermark passes, so
    /// results depend only on the events.
    Event,
}

impl Time {
    /// The `allowed_lateness` setting in milliseconds, 0 when absent.
    /// Lateness only means something on event time.
    pub fn lateness(self, allowed_lateness: Option<Duration>) -> Result<i64, String> {
        let ms = allowed_lateness.map_or(0, Duration::ms);
        if self == Time::Processing && ms != 0 {
            return Err("allowed_lateness applies only to time = \"event\"".into());
        }
        Ok(ms)
    }

    /// The time to file a batch's events under: now on processing time,
    /// `None` on event time, where each event brings its own.
    pub fn arrival(self) -> Option<i64> {
        (self == Time::Processing).then(crate::now_ms)
    }
}

/// Shape of the windows: size, slide and allowed lateness, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Length of each window.
    pub size_ms: i64,
    /// Distance between window starts; equal to `size_ms` for tumbling windows.
    pub slide_ms: i64,
    /// How far behind the largest event time an event may be and still count.
    pub allowed_lateness_ms: i64,
}

impl WindowSpec {
    /// Back-to-back windows of `size_ms`.
    pub fn tumbling(size_ms: i64) -> Self {
        WindowSpec {
            size_ms,
            slide_ms: size_ms,
            allowed_lateness_ms: 0,
        }
    }

    /// Windows of `size_ms` starting every `slide_ms`.
    pub fn sliding(size_ms: i64, slide_ms: i64) -> Self {
        WindowSpec {
            size_ms,
            slide_ms,
            allowed_lateness_ms: 0,
        }
    }

    /// The same windows with an allowed lateness.
    pub fn with_lateness(mut self, allowed_lateness_ms: i64) -> Self {
        self.allowed_lateness_ms = allowed_lateness_ms;
        self
    }

    /// Checks the spec, explaining what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.size_ms <= 0 {
            return Err(format!(
                "window size must be positive, got {} ms",
                self.size_ms
            ));
        }
        if self.slide_ms <= 0 || self.slide_ms > self.size_ms {
            return Err(format!(
                "slide must be positive and at most the window size ({} ms), got {} ms",
                self.size_ms, self.slide_ms
            ));
        }
        if self.allowed_lateness_ms < 0 {
            return Err("allowed_lateness must not be negative".into());
        }
        Ok(())
    }
}

/// The event falls only into windows that have already closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    /// The watermark at the time the event arrived.
    pub watermark: i64,
}

impl std::fmt::Display for Late {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("late")
    }
}

/// A window that has closed, with its accumulated value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Closed<A> {
    /// Inclusive start, ms since the epoch.
    pub start: i64,
    /// Exclusive end, ms since the epoch.
    pub end: i64,
    /// The accumulator.
    pub acc: A,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Slot<A> {
    acc: A,
    first_seq: u64,
}

/// Open windows keyed by start time, each with an accumulator `A`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Windows<A> {
    spec: WindowSpec,
    open: ByStart<Slot<A>>,
    /// Every window ending at or before this has closed.
    watermark: i64,
    #[serde(skip, default = "Vec::new")]
    closed: Vec<Closed<A>>,
}

#[inline(always)]
fn floor_to(ts: i64, step: i64) -> i64 {
    ts.div_euclid(step) * step
}

impl<A: Default> Windows<A> {
    /// Creates an empty set of windows.
    pub fn new(spec: WindowSpec) -> Result<Self, String> {
        spec.validate()?;
        Ok(Windows {
            spec,
            open: ByStart::default(),
            watermark: i64::MIN,
            closed: Vec::new(),
        })
    }

    /// The window shape.
    pub fn spec(&self) -> WindowSpec {
        self.spec
    }

    /// The current watermark (`i64::MIN` before the first event).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Adds an event at time `ts` (sequence number `seq`) to every window that
    /// contains it, calling `update` on each window's accumulator, then closes
    /// the windows the advanced watermark has passed (collect them with
    /// [`Windows::take_closed`]). Refuses the event if its earliest window has
    /// already closed.
    pub fn add(&mut self, ts: i64, seq: u64, mut update: impl FnMut(&mut A)) -> Result<(), Late> {
        let WindowSpec {
            size_ms: size,
            slide_ms: slide,
            allowed_lateness_ms: lateness,
        } = self.spec;
        let last_start = floor_to(ts, slide);
        // Earliest window containing ts: the smallest aligned start > ts - size.
        let first_start = last_start - ((size - 1 - (ts - last_start)) / slide) * slide;
        if first_start.saturating_add(size) <= self.watermark {
            return Err(Late {
                watermark: self.watermark,
            });
        }
        if first_start == last_start {
            // One window (always so when tumbling): no loop, so no deadline
            // check per event in the sandbox.
            self.add_at(first_start, seq, &mut update);
        } else {
            self.add_each(first_start, last_start, seq, &mut update);
        }
        self.advance(ts.saturating_sub(lateness));
        Ok(())
    }

    /// Updates every window from `first` to `last` start (sliding windows),
    /// out of line so that the one-window path stays short.
    #[inline(never)]
    fn add_each(&mut self, first: i64, last: i64, seq: u64, update: &mut impl FnMut(&mut A)) {
        let mut start = first;
        while start <= last {
            self.add_at(start, seq, update);
            start += self.spec.slide_ms;
        }
    }

    /// Updates the window starting at `start` (opening it for event `seq`).
    /// Inlined: in the sandbox each function entry is a deadline check.
    #[inline(always)]
    fn add_at(&mut self, start: i64, seq: u64, update: &mut impl FnMut(&mut A)) {
        let slot = self.open.entry(start, || Slot {
            acc: A::default(),
            first_seq: seq,
        });
        slot.first_seq = slot.first_seq.min(seq);
        update(&mut slot.acc);
    }

    /// Moves the watermark forward to `watermark` (never backwards) and closes
    /// every window that ends at or before it.
    #[inline(always)]
    pub fn advance(&mut self, watermark: i64) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        // Called per event: the common case (nothing to close) stays inline.
        let size = self.spec.size_ms;
        if self
            .open
            .first_start()
            .is_some_and(|s| s.saturating_add(size) <= watermark)
        {
            self.close_until(watermark);
        }
    }

    fn close_until(&mut self, watermark: i64) {
        let size = self.spec.size_ms;
        while let Some(start) = self.open.first_start() {
            if start.saturating_add(size) > watermark {
                break;
            }
            let (start, slot) = self.open.pop_first().expect("a first window");
            self.closed.push(Closed {
                start,
                end: start + size,
                acc: slot.acc,
            });
        }
    }

    /// Closes every open window regardless of the watermark (end of input).
    pub fn close_all(&mut self) {
        let size = self.spec.size_ms;
        for (start, slot) in self.open.drain() {
            self.closed.push(Closed {
                start,
                end: start + size,
                acc: slot.acc,
            });
        }
    }

    /// Takes the windows closed since the last call, oldest first.
    pub fn take_closed(&mut self) -> Vec<Closed<A>> {
        std::mem::take(&mut self.closed)
    }

    /// Like [`Windows::take_closed`], but keeps the buffer's capacity (no
    /// allocation per closing window on hot paths).
    pub fn drain_closed(&mut self) -> std::vec::Drain<'_, Closed<A>> {
        self.closed.drain(..)
    }

    /// Whether windows have closed since the last [`Windows::take_closed`].
    pub fn has_closed(&self) -> bool {
        !self.closed.is_empty()
    }

    /// The lowest sequence number held in an open window, for
    /// [`Transform::hold_from`](crate::Transform::hold_from).
    pub fn hold_from(&self) -> Option<u64> {
        self.open.values().map(|s| s.first_seq).min()
    }

    /// Open windows as `(start, end, accumulator)`, oldest first.
    pub fn open_windows(&self) -> impl Iterator<Item = (i64, i64, &A)> {
        let size = self.spec.size_ms;
        self.open
            .iter()
            .map(move |(s, slot)| (*s, s + size, &slot.acc))
    }
}

/// Accumulators that can be combined, for merging session windows.
pub trait Merge {
    /// Adds `other` into `self`.
    fn merge(&mut self, other: Self);
}

impl Merge for u64 {
    fn merge(&mut self, other: Self) {
        *self += other;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Session<A> {
    /// Last event time + gap (exclusive).
    end: i64,
    acc: A,
    first_seq: u64,
}

/// Session windows over event time (or processing time, with `advance`
/// from `tick`): `[first event, last event + gap)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sessions<A> {
    gap_ms: i64,
    allowed_lateness_ms: i64,
    /// Open sessions by start; they never overlap.
    open: BTreeMap<i64, Session<A>>,
    watermark: i64,
    #[serde(skip, default = "Vec::new")]
    closed: Vec<Closed<A>>,
}

impl<A: Default + Merge> Sessions<A> {
    /// Sessions that close after `gap_ms` without events.
    pub fn new(gap_ms: i64, allowed_lateness_ms: i64) -> Result<Self, String> {
        if gap_ms <= 0 {
            return Err(format!("session gap must be positive, got {gap_ms} ms"));
        }
        if allowed_lateness_ms < 0 {
            return Err("allowed_lateness must not be negative".into());
        }
        Ok(Sessions {
            gap_ms,
            allowed_lateness_ms,
            open: BTreeMap::new(),
            watermark: i64::MIN,
            closed: Vec::new(),
        })
    }

    /// The current watermark.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Adds an event, merging every session it touches; refuses it when its
    /// session would already have closed.
    pub fn add(&mut self, ts: i64, seq: u64, update: impl FnOnce(&mut A)) -> Result<(), Late> {
        let end = ts.saturating_add(self.gap_ms);
        if end <= self.watermark {
            return Err(Late {
                watermark: self.watermark,
            });
        }
        // Sessions overlapping [ts, end): start < end and session.end > ts.
        let touching: Vec<i64> = self
            .open
            .range(..end)
            .filter(|(_, s)| s.end > ts)
            .map(|(start, _)| *start)
            .collect();
        let mut merged = Session {
            end,
            acc: A::default(),
            first_seq: seq,
        };
        let mut start = ts;
        for s in touching {
            let old = self.open.remove(&s).expect("listed above");
            start = start.min(s);
            merged.end = merged.end.max(old.end);
            merged.first_seq = merged.first_seq.min(old.first_seq);
            merged.acc.merge(old.acc);
        }
        update(&mut merged.acc);
        self.open.insert(start, merged);
        self.advance(ts.saturating_sub(self.allowed_lateness_ms));
        Ok(())
    }

    /// Moves the watermark forward and closes sessions ending at or before it.
    pub fn advance(&mut self, watermark: i64) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        let done: Vec<i64> = self
            .open
            .iter()
            .filter(|(_, s)| s.end <= watermark)
            .map(|(start, _)| *start)
            .collect();
        for start in done {
            let s = self.open.remove(&start).expect("listed above");
            self.closed.push(Closed {
                start,
                end: s.end,
                acc: s.acc,
            });
        }
    }

    /// Closes every open session (end of input).
    pub fn close_all(&mut self) {
        for (start, s) in std::mem::take(&mut self.open) {
            self.closed.push(Closed {
                start,
                end: s.end,
                acc: s.acc,
            });
        }
    }

    /// Sessions closed since the last call, by start.
    pub fn take_closed(&mut self) -> Vec<Closed<A>> {
        let mut c = std::mem::take(&mut self.closed);
        c.sort_by_key(|c| c.start);
        c
    }

    /// The lowest sequence number held in an open session.
    pub fn hold_from(&self) -> Option<u64> {
        self.open.values().map(|s| s.first_seq).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(spec: WindowSpec, events: &[i64]) -> (Vec<(i64, i64, u32)>, usize) {
        let mut w: Windows<u32> = Windows::new(spec).unwrap();
        let mut late = 0;
        for (i, ts) in events.iter().enumerate() {
            if w.add(*ts, i as u64, |n| *n += 1).is_err() {
                late += 1;
            }
        }
        w.close_all();
        let got = w
            .take_closed()
            .into_iter()
            .map(|c| (c.start, c.end, c.acc))
            .collect();
        (got, late)
    }

    #[test]
    fn tumbling_windows_align_to_epoch() {
        let (got, late) = counts(WindowSpec::tumbling(1000), &[5, 999, 1000, 2500, 2999]);
        assert_eq!(got, vec![(0, 1000, 2), (1000, 2000, 1), (2000, 3000, 2)]);
        assert_eq!(late, 0);
    }

    #[test]
    fn negative_times_floor_correctly() {
        let (got, _) = counts(WindowSpec::tumbling(1000), &[-1, -1000, -1001]);
        assert_eq!(got, vec![(-1000, 0, 2)]);
        let (_, late) = counts(WindowSpec::tumbling(1000), &[-1, -1001]);
        assert_eq!(
            late, 1,
            "[-2000,-1000) closed when the watermark reached -1"
        );
    }

    #[test]
    fn sliding_windows_hold_each_event_size_over_slide_times() {
        let (got, _) = counts(WindowSpec::sliding(3000, 1000), &[2500]);
        assert_eq!(got, vec![(0, 3000, 1), (1000, 4000, 1), (2000, 5000, 1)]);
        // Size not a multiple of slide: 45s windows every 15s hold an event 3 times.
        let (got, _) = counts(WindowSpec::sliding(45_000, 15_000), &[50_000]);
        let starts: Vec<i64> = got.iter().map(|g| g.0).collect();
        assert_eq!(starts, vec![15_000, 30_000, 45_000]);
        let (got, _) = counts(WindowSpec::sliding(2500, 1000), &[2600]);
        let starts: Vec<i64> = got.iter().map(|g| g.0).collect();
        assert_eq!(starts, vec![1000, 2000]);
    }

    #[test]
    fn late_events_are_refused_and_lateness_admits_stragglers() {
        let (_, late) = counts(WindowSpec::tumbling(1000), &[1500, 999]);
        assert_eq!(late, 1);
        let (got, late) = counts(WindowSpec::tumbling(1000).with_lateness(600), &[1500, 999]);
        assert_eq!(late, 0);
        assert_eq!(got, vec![(0, 1000, 1), (1000, 2000, 1)]);
    }

    #[test]
    fn windows_close_as_the_watermark_passes() {
        let mut w: Windows<u32> = Windows::new(WindowSpec::tumbling(10)).unwrap();
        w.add(3, 7, |n| *n += 1).unwrap();
        assert_eq!(w.hold_from(), Some(7));
        assert!(!w.has_closed());
        w.advance(10);
        assert_eq!(
            w.take_closed(),
            vec![Closed {
                start: 0,
                end: 10,
                acc: 1
            }]
        );
        assert_eq!(w.hold_from(), None);
    }

    #[test]
    fn windows_survive_a_snapshot_round_trip() {
        let mut w: Windows<u32> = Windows::new(WindowSpec::sliding(20, 10)).unwrap();
        w.add(15, 1, |n| *n += 1).unwrap();
        let json = serde_json::to_vec(&w).unwrap();
        let mut back: Windows<u32> = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, w);
        back.add(16, 2, |n| *n += 1).unwrap();
        back.add(40, 3, |n| *n += 1).unwrap();
        let closed = back.take_closed();
        assert_eq!(
            closed[0],
            Closed {
                start: 0,
                end: 20,
                acc: 2
            }
        );
        assert_eq!(
            closed[1],
            Closed {
                start: 10,
                end: 30,
                acc: 2
            }
        );
        assert!(back.add(19, 4, |n| *n += 1).is_err());
    }

    #[test]
    fn sessions_split_on_gaps_and_merge_when_bridged() {
        let mut s: Sessions<u64> = Sessions::new(10, 100).unwrap();
        for (i, ts) in [0, 5, 30, 33].into_iter().enumerate() {
            s.add(ts, i as u64, |n| *n += 1).unwrap();
        }
        // 18 starts [18,28): it touches neither [0,15) nor [30,43).
        s.add(18, 4, |n| *n += 1).unwrap();
        // 24 ([24,34)) bridges [18,28) and [30,43) into [18,43).
        s.add(24, 5, |n| *n += 1).unwrap();
        s.close_all();
        let closed: Vec<(i64, i64, u64)> = s
            .take_closed()
            .into_iter()
            .map(|c| (c.start, c.end, c.acc))
            .collect();
        assert_eq!(closed, vec![(0, 15, 2), (18, 43, 4)]);
    }

    #[test]
    fn sessions_close_on_the_watermark_and_refuse_late_events() {
        let mut s: Sessions<u64> = Sessions::new(10, 0).unwrap();
        s.add(0, 0, |n| *n += 1).unwrap();
        s.add(50, 1, |n| *n += 1).unwrap();
        assert_eq!(
            s.take_closed(),
            vec![Closed {
                start: 0,
                end: 10,
                acc: 1
            }]
        );
        assert!(
            s.add(39, 2, |n| *n += 1).is_err(),
            "39 + 10 <= watermark 50"
        );
        assert_eq!(s.hold_from(), Some(1));
        let json = serde_json::to_string(&s).unwrap();
        let mut back: Sessions<u64> = serde_json::from_str(&json).unwrap();
        back.add(55, 3, |n| *n += 1).unwrap();
        back.advance(100);
        assert_eq!(
            back.take_closed(),
            vec![Closed {
                start: 50,
                end: 65,
                acc: 2
            }]
        );
    }

    #[test]
    fn lateness_is_for_event_time() {
        let second = Some(Duration::from_millis(1000));
        assert_eq!(Time::Event.lateness(second), Ok(1000));
        assert_eq!(Time::Event.lateness(None), Ok(0));
        assert_eq!(
            Time::Processing.lateness(Some(Duration::from_millis(0))),
            Ok(0)
        );
        assert!(
            Time::Processing
                .lateness(second)
                .unwrap_err()
                .contains("only to time")
        );
        assert_eq!(Time::Event.arrival(), None);
        assert!(Time::Processing.arrival().is_some());
    }

    #[test]
    fn invalid_specs_are_explained() {
        assert!(WindowSpec::tumbling(0).validate().is_err());
        assert!(
            WindowSpec::sliding(10, 20)
                .validate()
                .unwrap_err()
                .contains("slide")
        );
    }
}
