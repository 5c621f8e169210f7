//! Weir plugin `gender-count`: counts events by value over time windows.
//!
//! Config (the stage's `config` table):
//! - `key`: what to count by. Absent: the whole value (trimmed). A name: that
//!   JSON field, or that CSV column when `columns` lists the CSV header.
//! - `columns`: CSV column names, making the input CSV.
//! - `window` (default `"1s"`), `slide` (default = window; smaller = sliding).
//! - `time`: `"processing"` (default) or `"event"` (the event timestamp).
//! - `allowed_lateness` (event time, default `"0s"`).
//! - `format`: `"json"` (default), one object per window
//!   `{"window_start":MS,"window_end":MS,"counts":{"0":N,...}}`, or `"seed"`,
//!   the text today's consumers read: `[{"0":1},{"1":6},{"2":3}]`.
//!
//! The SDK's [`Aggregate`] shorthand does the windows, the clock, late
//! events and snapshots; this file reads the key, counts, and writes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write as _;

use serde::Deserialize;
use weir_plugin::Output;
use weir_plugin::config::Duration;
use weir_plugin::field::{Field, Record};
use weir_plugin::format::Format;
use weir_plugin::window::{Aggregate, Closed, Time, Windowed, Windowing};

/// The plugin's configuration, and the field it counts by.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Counter {
    /// Field or column to count by; the whole value when absent.
    pub key: Option<String>,
    /// CSV header, when the input is CSV.
    pub columns: Option<Vec<String>>,
    /// Window length (default 1 s).
    pub window: Option<Duration>,
    /// Distance between window starts (default: the window length).
    pub slide: Option<Duration>,
    /// Time domain.
    pub time: Time,
    /// Lateness allowed on event time.
    pub allowed_lateness: Option<Duration>,
    /// Output format.
    pub format: Format,
    /// Where `key` is, resolved.
    #[serde(skip)]
    field: Field,
}

/// The plugin: counts in windows.
pub type GenderCount = Windowed<Counter>;

impl Aggregate for Counter {
    /// Counts per distinct key within one window. A short vector beats a
    /// map for the handful of distinct values typical here.
    type Acc = Vec<(String, u64)>;
    type Item<'r> = Cow<'r, str>;

    fn init(&mut self) -> Result<Windowing, String> {
        self.field = Field::keyed(self.key.as_deref(), self.columns.as_deref())?;
        let window = self.window.unwrap_or(Duration::from_millis(1000));
        Windowing::new(window, self.slide, self.time, self.allowed_lateness)
    }

    // Inlined into the SDK's per-event loop: in the sandbox each function
    // entry is a deadline check.
    #[inline(always)]
    fn read<'r>(&mut self, record: &'r mut Record<'_>) -> Result<Cow<'r, str>, String> {
        record.key(&self.field)
    }

    #[inline(always)]
    fn add(&self, counts: &mut Self::Acc, key: &Cow<'_, str>) {
        // The keys are short: compared inline, not by a `memcmp` call.
        let same = |k: &str| weir_plugin::bytes::same(k.as_bytes(), key.as_bytes());
        // The first four keys are tried one by one before the loop: in the
        // sandbox a loop costs a deadline check per event, and most streams
        // have a handful of keys (two or three genders).
        let hit = match counts.as_mut_slice() {
            [(a, n), ..] if same(a) => Some(n),
            [_, (b, n), ..] if same(b) => Some(n),
            [_, _, (c, n), ..] if same(c) => Some(n),
            [_, _, _, (d, n), ..] if same(d) => Some(n),
            [_, _, _, _, rest @ ..] => rest.iter_mut().find(|(k, _)| same(k)).map(|(_, n)| n),
            _ => None,
        };
        match hit {
            Some(n) => *n += 1,
            None => counts.push((key.to_string(), 1)),
        }
    }

    fn emit(&mut self, w: Closed<Self::Acc>, out: &mut Output) {
        let (s, e) = (w.start, w.end);
        let counts: BTreeMap<&str, u64> = w.acc.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        out.emit_with(e, |buf| match self.format {
            Format::Json => {
                let _ = write!(buf, r#"{{"window_start":{s},"window_end":{e},"counts":"#);
                serde_json::to_writer(&mut *buf, &counts).expect("counts serialise");
                buf.push(b'}');
            }
            // One object per key, in key order.
            Format::Seed => {
                let seed: Vec<_> = counts.iter().map(|kn| BTreeMap::from([kn])).collect();
                serde_json::to_writer(buf, &seed).expect("counts serialise");
            }
        });
    }
}

#[cfg(feature = "export")]
weir_plugin::export!(GenderCount);

#[cfg(test)]
mod tests {
    use weir_plugin::{Batch, Transform};

    use super::*;

    fn run(config: &str, events: &[(i64, &str)]) -> (Vec<String>, Vec<String>) {
        let mut p = GenderCount::new(config).unwrap();
        let batch = Batch::from_values(0, events);
        let mut out = Output::default();
        p.process(&batch, &mut out);
        p.flush(&mut out);
        let rejected = out.rejections().iter().map(|r| r.reason.clone()).collect();
        (out.values_lossy(), rejected)
    }

    #[test]
    fn seed_format_matches_todays_consumers() {
        let events: Vec<(i64, &str)> = [("0", 1), ("1", 6), ("2", 3)]
            .iter()
            .flat_map(|(v, n)| std::iter::repeat_n((100, *v), *n))
            .collect();
        let (out, _) = run(r#"{"time":"event","format":"seed"}"#, &events);
        assert_eq!(out, [r#"[{"0":1},{"1":6},{"2":3}]"#]);
    }

    #[test]
    fn json_format_counts_per_window_with_sorted_keys() {
        let (out, rej) = run(
            r#"{"time":"event","key":"gender"}"#,
            &[
                (10, r#"{"gender":"1"}"#),
                (20, r#"{"gender":"0","x":[1,{"gender":"9"}]}"#),
                (1500, r#"{"gender":1}"#),
                (1600, r#"{"gender":null}"#),
                (1700, r#"{"other":1}"#),
                (1800, "not json"),
            ],
        );
        assert_eq!(
            out,
            [
                r#"{"window_start":0,"window_end":1000,"counts":{"0":1,"1":1}}"#,
                r#"{"window_start":1000,"window_end":2000,"counts":{"":1,"1":1}}"#
            ]
        );
        assert_eq!(rej.len(), 2);
        assert!(rej[0].contains("no field \"gender\""), "{rej:?}");
        assert!(rej[1].starts_with("invalid JSON"), "{rej:?}");
    }

    #[test]
    fn empty_values_count_under_the_empty_key() {
        let (out, _) = run(r#"{"time":"event","format":"seed"}"#, &[(1, ""), (2, "1")]);
        assert_eq!(out, [r#"[{"":1},{"1":1}]"#]);
    }

    #[test]
    fn csv_columns_select_the_key() {
        let cfg = r#"{"time":"event","key":"gender","columns":["user_id","gender","province"],"format":"seed"}"#;
        let (out, _) = run(cfg, &[(1, "7,1,\"Hebei, CN\""), (2, "8,0,x"), (3, "9,1,y")]);
        assert_eq!(out, [r#"[{"0":1},{"1":2}]"#]);
    }

    #[test]
    fn late_events_are_rejected_as_late() {
        let (out, rej) = run(r#"{"time":"event"}"#, &[(1500, "a"), (200, "b")]);
        assert_eq!(rej, ["late"]);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn sliding_windows_count_each_event_in_every_window() {
        let (out, _) = run(
            r#"{"time":"event","window":"2s","slide":"1s","format":"seed"}"#,
            &[(1500, "a")],
        );
        assert_eq!(out, [r#"[{"a":1}]"#, r#"[{"a":1}]"#]);
    }

    #[test]
    fn state_carries_open_windows_across_instances() {
        let cfg = r#"{"time":"event","format":"seed"}"#;
        let mut a = GenderCount::new(cfg).unwrap();
        let mut out = Output::default();
        a.process(&Batch::from_values(0, &[(10, "1"), (20, "1")]), &mut out);
        assert!(out.is_empty());
        assert_eq!(a.hold_from(), Some(0));
        let mut b = GenderCount::new(cfg).unwrap();
        b.restore(&a.snapshot()).unwrap();
        b.process(&Batch::from_values(2, &[(30, "0"), (1000, "0")]), &mut out);
        assert_eq!(out.values_lossy(), [r#"[{"0":1},{"1":2}]"#]);
        assert_eq!(b.hold_from(), Some(3));
        let other = GenderCount::new(r#"{"time":"event","window":"5s"}"#).unwrap();
        assert!(clone_state_into(&b, other).is_err());
    }

    fn clone_state_into(from: &GenderCount, mut other: GenderCount) -> Result<(), String> {
        other.restore(&from.snapshot())
    }

    #[test]
    fn bad_config_is_explained() {
        let e = GenderCount::new(r#"{"windw":"1s"}"#).err().unwrap();
        assert!(e.contains("unknown field `windw`"), "{e}");
        let e = GenderCount::new(r#"{"key":"g","columns":["a"]}"#)
            .err()
            .unwrap();
        assert!(e.contains("not one of the columns"), "{e}");
    }
}
