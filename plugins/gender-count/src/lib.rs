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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write as _;

use serde::{Deserialize, Serialize};
use weir_plugin::config::Duration;
use weir_plugin::json::Scalar;
use weir_plugin::window::{Closed, WindowSpec, Windows};
use weir_plugin::{Batch, Output, Transform};

/// Which clock assigns events to windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Time {
    /// Arrival time at the plugin; windows close on ticks.
    Processing,
    /// The event's own timestamp; windows close as the watermark passes.
    Event,
}

/// Output text format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"window_start":..,"window_end":..,"counts":{..}}`
    Json,
    /// `[{"0":1},{"1":6}]`
    Seed,
}

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Field or column to count by; the whole value when absent.
    #[serde(default)]
    pub key: Option<String>,
    /// CSV header, when the input is CSV.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Window length.
    #[serde(default = "one_second")]
    pub window: Duration,
    /// Distance between window starts.
    #[serde(default)]
    pub slide: Option<Duration>,
    /// Time domain.
    #[serde(default = "processing")]
    pub time: Time,
    /// Lateness allowed on event time.
    #[serde(default)]
    pub allowed_lateness: Option<Duration>,
    /// Output format.
    #[serde(default = "json")]
    pub format: Format,
}

fn one_second() -> Duration {
    Duration::from_millis(1000)
}
fn processing() -> Time {
    Time::Processing
}
fn json() -> Format {
    Format::Json
}

/// Counts per distinct key within one window. A short vector beats a map
/// for the handful of distinct values typical here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts(Vec<(String, u64)>);

impl Counts {
    fn bump(&mut self, key: &str) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, n)) => *n += 1,
            None => self.0.push((key.to_owned(), 1)),
        }
    }

    /// Counts sorted by key.
    pub fn sorted(&self) -> BTreeMap<&str, u64> {
        self.0.iter().map(|(k, n)| (k.as_str(), *n)).collect()
    }
}

/// How the key is extracted from a value.
#[derive(Debug, Clone)]
enum Extract {
    Whole,
    Json(String),
    Csv(usize),
}

/// The plugin state.
pub struct GenderCount {
    extract: Extract,
    time: Time,
    format: Format,
    windows: Windows<Counts>,
    scratch: String,
}

/// Snapshot layout, versioned so future builds can refuse or migrate it.
#[derive(Serialize, Deserialize)]
struct State {
    version: u32,
    windows: Windows<Counts>,
}

const STATE_VERSION: u32 = 1;

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("value is not UTF-8: {e}"))
}

impl GenderCount {
    /// Puts the event's key into `self.scratch`.
    fn key_of<'a>(
        &mut self,
        value: &'a [u8],
        fields: &mut Vec<Cow<'a, [u8]>>,
    ) -> Result<(), String> {
        self.scratch.clear();
        match &self.extract {
            Extract::Whole => self.scratch.push_str(utf8(value)?.trim()),
            Extract::Json(name) => match weir_plugin::json::field(value, name)? {
                None => return Err(format!("no field {name:?}")),
                Some(Scalar::Json(_)) => {
                    return Err(format!(
                        "field {name:?} is not a string, number, boolean or null"
                    ));
                }
                Some(v) => self.scratch.push_str(&v.as_text()),
            },
            Extract::Csv(col) => {
                weir_plugin::csv::split(value, fields)?;
                let field = fields.get(*col).ok_or_else(|| {
                    format!(
                        "row has {} columns, the key is column {}",
                        fields.len(),
                        col + 1
                    )
                })?;
                self.scratch.push_str(utf8(field)?.trim());
            }
        }
        Ok(())
    }

    fn emit_closed(&mut self, out: &mut Output) {
        for Closed { start, end, acc } in self.windows.take_closed() {
            let counts = acc.sorted();
            out.emit_with(end, |buf| match self.format {
                Format::Json => {
                    let _ = write!(
                        buf,
                        r#"{{"window_start":{start},"window_end":{end},"counts":"#
                    );
                    serde_json::to_writer(&mut *buf, &counts).expect("counts serialise");
                    buf.push(b'}');
                }
                Format::Seed => {
                    buf.push(b'[');
                    for (i, (k, n)) in counts.iter().enumerate() {
                        if i > 0 {
                            buf.push(b',');
                        }
                        buf.push(b'{');
                        serde_json::to_writer(&mut *buf, k).expect("key serialises");
                        let _ = write!(buf, ":{n}}}");
                    }
                    buf.push(b']');
                }
            });
        }
    }
}

impl Transform for GenderCount {
    fn new(config: &str) -> Result<Self, String> {
        let c: Config = weir_plugin::config::parse(config)?;
        let extract = match (&c.key, &c.columns) {
            (None, _) => Extract::Whole,
            (Some(k), None) => Extract::Json(k.clone()),
            (Some(k), Some(cols)) => Extract::Csv(
                cols.iter()
                    .position(|c| c == k)
                    .ok_or_else(|| format!("key {k:?} is not one of the columns {cols:?}"))?,
            ),
        };
        let size = c.window.ms();
        let slide = c.slide.map_or(size, |s| s.ms());
        let lateness = c.allowed_lateness.map_or(0, |d| d.ms());
        if c.time == Time::Processing && lateness != 0 {
            return Err("allowed_lateness applies only to time = \"event\"".into());
        }
        let windows = Windows::new(WindowSpec::sliding(size, slide).with_lateness(lateness))?;
        Ok(GenderCount {
            extract,
            time: c.time,
            format: c.format,
            windows,
            scratch: String::new(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) {
        let now = match self.time {
            Time::Processing => weir_plugin::now_ms(),
            Time::Event => 0,
        };
        let mut fields = Vec::new();
        for event in batch.iter() {
            if let Err(reason) = self.key_of(event.value, &mut fields) {
                out.reject(event.index, reason);
                continue;
            }
            let ts = match self.time {
                Time::Processing => now,
                Time::Event => event.timestamp_ms,
            };
            let key = self.scratch.as_str();
            if let Err(late) = self.windows.add(ts, event.seq, |c| c.bump(key)) {
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
        serde_json::to_vec(&State {
            version: STATE_VERSION,
            windows: self.windows.clone(),
        })
        .expect("state serialises")
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let s: State =
            serde_json::from_slice(state).map_err(|e| format!("unreadable state: {e}"))?;
        if s.version != STATE_VERSION {
            return Err(format!(
                "state version {} is not supported (this build reads version {STATE_VERSION})",
                s.version
            ));
        }
        if s.windows.spec() != self.windows.spec() {
            return Err("state was built with a different window size, slide or lateness".into());
        }
        self.windows = s.windows;
        Ok(())
    }

    fn hold_from(&self) -> Option<u64> {
        self.windows.hold_from()
    }
}

#[cfg(feature = "export")]
weir_plugin::export!(GenderCount);

#[cfg(test)]
mod tests {
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
        assert!(b.clone_state_into(other).is_err());
    }

    impl GenderCount {
        fn clone_state_into(&self, mut other: GenderCount) -> Result<(), String> {
            other.restore(&self.snapshot())
        }
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
