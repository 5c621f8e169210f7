//! Weir plugin `window-stats`: running statistics over sensor readings.
//!
//! ```toml
//! config = { input = "csv", columns = ["id","date","Temperature","Humidity","Light","CO2","HumidityRatio","Occupancy"],
//!   time = "event", timestamp = "date", batch = "5s", stats = [
//!   { name = "Average temperature", field = "Temperature", fn = "mean", window = "batch" },
//!   { name = "Average temperature", field = "Temperature", fn = "mean", window = "since_start" },
//!   { name = "Average luminosity", field = "Light", fn = "mean", window = "45s", slide = "15s" },
//!   { name = "number of sample couples difference != 1 min", field = "date", fn = "gaps", expect = "60s", window = "batch" } ] }
//! ```
//!
//! - `input`: `csv` (one row per event; fields by `columns` name or by
//!   0-based position) or `json` (fields by name).
//! - `time`: `event` (the `timestamp` field, naive date-times in UTC unless
//!   `timezone` is a fixed offset like `+01:00`) or `processing` (arrival
//!   time; windows close on ticks, so results depend on arrival speed).
//! - `batch` (default `5s`): the window `window = "batch"` uses, tumbling.
//! - Each statistic: `fn` is `mean`, `min`, `max`, `sum`, `count`, `stddev`
//!   (sample, n - 1) or `gaps` (consecutive samples, in time order, whose
//!   `field` timestamps are not exactly `expect` apart); `window` is
//!   `batch`, `since_start` (cumulative, emitted whenever a batch window
//!   closes) or a duration, with an optional `slide` for sliding windows.
//!   Windows are aligned to the Unix epoch.
//! - `allowed_lateness` (event time): how far behind the newest timestamp a
//!   row may be; later rows are refused with reason `late`.
//! - `format`: `json` (default), one object per statistic and window, or
//!   `seed`, the text lines of the users' Spark job
//!   (`Average temperature by batch: 23.6795`).
//!
//! A row whose field is missing or not a number is refused with a reason
//! naming the field and counts in no statistic.

mod acc;
mod output;

use std::borrow::Cow;
use std::io::Write as _;

use serde::{Deserialize, Deserializer, Serialize};
use weir_plugin::config::{Duration, parse_duration};
use weir_plugin::field::{Field, Raw, Record};
use weir_plugin::json::Scalar;
use weir_plugin::time::{TimeZone, parse_timestamp_in};
use weir_plugin::window::{Closed, Merge, WindowSpec, Windows};
use weir_plugin::{Batch, Output, Transform, state};

pub use acc::{Acc, GapSummary, Moments, Times};
use output::{Number, Value, label, value_of};
/// The SDK's setting types this plugin's [`Config`] uses.
pub use weir_plugin::{field::FieldRef, format::Format, window::Time};

/// Input layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Input {
    /// One CSV row per event.
    Csv,
    /// One JSON object per event.
    Json,
}

/// A statistic function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Func {
    /// Arithmetic mean.
    Mean,
    /// Minimum.
    Min,
    /// Maximum.
    Max,
    /// Sum.
    Sum,
    /// Number of samples.
    Count,
    /// Sample standard deviation.
    Stddev,
    /// Timestamp gaps not equal to `expect`.
    Gaps,
}

/// Which window a statistic uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WindowKind {
    /// The plugin's batch interval, tumbling.
    Batch,
    /// Cumulative since the start.
    SinceStart,
    /// A window of this many milliseconds.
    Size(i64),
}

impl<'de> Deserialize<'de> for WindowKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "batch" => Ok(WindowKind::Batch),
            "since_start" => Ok(WindowKind::SinceStart),
            other => parse_duration(other)
                .map(|d| WindowKind::Size(Duration(d).ms()))
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "window must be \"batch\", \"since_start\" or a duration: {e}"
                    ))
                }),
        }
    }
}

/// One statistic's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatConfig {
    /// Name used in the output.
    pub name: String,
    /// Field the statistic reads.
    pub field: FieldRef,
    /// Function.
    #[serde(rename = "fn")]
    pub func: Func,
    /// Window.
    pub window: WindowKind,
    /// Slide, for sliding windows.
    #[serde(default)]
    pub slide: Option<Duration>,
    /// Expected distance between samples, for `gaps`.
    #[serde(default)]
    pub expect: Option<Duration>,
}

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Input layout.
    pub input: Input,
    /// CSV column names.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Time domain (default processing).
    #[serde(default)]
    pub time: Time,
    /// Field with the event time (event time).
    #[serde(default)]
    pub timestamp: Option<FieldRef>,
    /// Zone of naive date-times (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Batch interval (default 5 s).
    #[serde(default)]
    pub batch: Option<Duration>,
    /// Allowed lateness (event time).
    #[serde(default)]
    pub allowed_lateness: Option<Duration>,
    /// The statistics.
    pub stats: Vec<StatConfig>,
    /// Output format (default json).
    #[serde(default)]
    pub format: Format,
}

/// One statistic's live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StatState {
    windows: Windows<Acc>,
    /// Since-start totals, built from closed batch windows.
    total: Option<Acc>,
    total_gaps: Option<GapSummary>,
    /// Start of the first batch folded into the total.
    total_start: Option<i64>,
}

/// One statistic, resolved.
struct Stat {
    config: StatConfig,
    /// The name as a JSON string literal.
    name_json: String,
    /// Index into the row's parsed values.
    value: usize,
    label: String,
    state: StatState,
}

/// The plugin.
pub struct WindowStats {
    config: Config,
    zone: TimeZone,
    /// Distinct fields read per row: (where, name, is a timestamp).
    fields: Vec<(Field, String, bool)>,
    timestamp: Option<(Field, String)>,
    /// Index in `values` of the timestamp, when a `gaps` statistic reads
    /// the same field (parsed once).
    timestamp_value: Option<usize>,
    stats: Vec<Stat>,
    header: Option<Vec<String>>,
    values: Vec<f64>,
    /// Closed windows being emitted (kept for its capacity).
    closed: Vec<Closed<Acc>>,
}

/// Snapshot layout: name, window label and state of each statistic.
#[derive(Serialize, Deserialize)]
struct Saved<S> {
    stats: Vec<S>,
}

const STATE_VERSION: u32 = 1;

/// A field's text as the statistics read it; `None` when missing or JSON
/// `null`.
fn text<'r>(raw: Raw<'r>) -> Result<Option<Cow<'r, str>>, String> {
    let utf8 = |b| std::str::from_utf8(b).map_err(|e| e.to_string());
    Ok(match raw {
        Raw::Missing | Raw::Json(Scalar::Null) => None,
        Raw::Whole(b) | Raw::Column(&Cow::Borrowed(b)) => Some(Cow::Borrowed(utf8(b)?)),
        Raw::Column(Cow::Owned(b)) => Some(Cow::Owned(String::from_utf8_lossy(b).into_owned())),
        Raw::Json(v) => Some(v.into_text()),
    })
}

impl WindowStats {
    /// Where `field` is, and its name for messages.
    fn resolve(config: &Config, field: &FieldRef) -> Result<(Field, String), String> {
        let name = match field {
            FieldRef::Position(p) => format!("column {p}"),
            FieldRef::Name(n) => n.clone(),
        };
        let field = match config.input {
            Input::Csv => Field::csv(field, config.columns.as_deref())?,
            Input::Json => Field::json(field)?,
        };
        Ok((field, name))
    }

    /// Reads every field a statistic needs; the row's event time.
    fn read_row(
        &mut self,
        row: &mut Record<'_>,
        arrival: Option<i64>,
    ) -> Result<Option<i64>, String> {
        if self.config.input == Input::Csv {
            let parts = row.columns()?;
            if let Some(h) = &self.header
                && parts.len() == h.len()
                && parts.iter().zip(h).all(|(p, h)| p.as_ref() == h.as_bytes())
            {
                return Ok(None); // a header row in the stream
            }
        }
        for i in 0..self.fields.len() {
            let (field, name, is_time) = &self.fields[i];
            let text =
                text(row.get(field)?)?.ok_or_else(|| format!("field {name:?} is missing"))?;
            let x = if *is_time {
                parse_timestamp_in(&text, self.zone).map_err(|e| format!("field {name:?}: {e}"))?
                    as f64
            } else {
                let t = text.trim();
                t.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("field {name:?} is not a number: {t:?}"))?
            };
            self.values[i] = x;
        }
        let ts = match (arrival, self.timestamp_value, &self.timestamp) {
            (Some(now), _, _) => now,
            (None, Some(i), _) => self.values[i] as i64,
            (None, None, Some((field, name))) => {
                let text =
                    text(row.get(field)?)?.ok_or_else(|| format!("field {name:?} is missing"))?;
                parse_timestamp_in(&text, self.zone).map_err(|e| format!("field {name:?}: {e}"))?
            }
            (None, None, None) => unreachable!("event time is refused without `timestamp`"),
        };
        Ok(Some(ts))
    }

    fn emit(&self, out: &mut Output, stat: &Stat, window: &str, start: i64, end: i64, acc: Value) {
        let (value, count) = acc;
        out.emit_with(end, |buf| match self.config.format {
            Format::Json => {
                output::json(buf, &stat.name_json, window, (start, end), value, count);
            }
            Format::Seed => {
                let name = &stat.config.name;
                let _ = match (stat.config.func, window) {
                    (Func::Gaps, _) => write!(buf, "{name}: {}", value.text()),
                    (_, "since_start") => write!(buf, "{name} since start: {}", value.text()),
                    _ => write!(buf, "{name} by batch: {}", value.text()),
                };
            }
        });
    }

    fn emit_closed(&mut self, out: &mut Output) {
        for i in 0..self.stats.len() {
            if !self.stats[i].state.windows.has_closed() {
                continue;
            }
            // Moved through a buffer kept between calls: windows close on
            // most rows, and a new vector each time was an allocation per
            // row and statistic.
            let mut closed = std::mem::take(&mut self.closed);
            closed.extend(self.stats[i].state.windows.drain_closed());
            for Closed { start, end, acc } in closed.drain(..) {
                let stat = &self.stats[i];
                let func = stat.config.func;
                let expect = stat.config.expect.map_or(0, Duration::ms);
                match stat.config.window {
                    WindowKind::SinceStart => {
                        let st = &mut self.stats[i].state;
                        st.total_start.get_or_insert(start);
                        let value = match acc {
                            Acc::Times(t) => {
                                let total = st.total_gaps.get_or_insert_with(|| GapSummary {
                                    expect,
                                    ..GapSummary::default()
                                });
                                total.append(t.summarise(expect));
                                (Number::Int(total.gaps), total.n)
                            }
                            Acc::Moments(m) => {
                                let total = st.total.get_or_insert_with(Acc::default);
                                total.merge(Acc::Moments(m));
                                let Acc::Moments(t) = total else {
                                    unreachable!()
                                };
                                (value_of(func, t), t.n)
                            }
                        };
                        let s = self.stats[i].state.total_start.unwrap_or(start);
                        self.emit(out, &self.stats[i], "since_start", s, end, value);
                    }
                    _ => {
                        let value = match acc {
                            Acc::Times(t) => {
                                let g = t.summarise(expect);
                                (Number::Int(g.gaps), g.n)
                            }
                            Acc::Moments(m) => (value_of(func, &m), m.n),
                        };
                        self.emit(out, stat, &stat.label, start, end, value);
                    }
                }
            }
            self.closed = closed;
        }
    }
}

impl Transform for WindowStats {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config = weir_plugin::config::parse(config)?;
        if config.stats.is_empty() {
            return Err("`stats` lists no statistics".into());
        }
        let zone = match &config.timezone {
            Some(z) => TimeZone::parse(z)?,
            None => TimeZone::UTC,
        };
        let timestamp = match (config.time, &config.timestamp) {
            (Time::Event, None) => {
                return Err(
                    "time = \"event\" needs `timestamp`, the field holding each row's time".into(),
                );
            }
            (_, Some(f)) => Some(Self::resolve(&config, f)?),
            (_, None) => None,
        };
        let batch = config.batch.map_or(5000, Duration::ms);
        let lateness = config.time.lateness(config.allowed_lateness)?;
        let mut fields: Vec<(Field, String, bool)> = Vec::new();
        let mut stats = Vec::new();
        for sc in &config.stats {
            let (source, name) = Self::resolve(&config, &sc.field)
                .map_err(|e| format!("stat {:?}: {e}", sc.name))?;
            let is_time = sc.func == Func::Gaps;
            if is_time && sc.expect.is_none() {
                return Err(format!(
                    "stat {:?}: fn = \"gaps\" needs `expect`, the normal distance between samples",
                    sc.name
                ));
            }
            let value = match fields
                .iter()
                .position(|(s, _, t)| *s == source && *t == is_time)
            {
                Some(i) => i,
                None => {
                    fields.push((source, name, is_time));
                    fields.len() - 1
                }
            };
            let (size, slide) = match sc.window {
                WindowKind::Batch | WindowKind::SinceStart => (batch, batch),
                WindowKind::Size(s) => (s, sc.slide.map_or(s, Duration::ms)),
            };
            if sc.slide.is_some() && !matches!(sc.window, WindowKind::Size(_)) {
                return Err(format!(
                    "stat {:?}: `slide` needs a window duration",
                    sc.name
                ));
            }
            let windows = Windows::new(WindowSpec::sliding(size, slide).with_lateness(lateness))
                .map_err(|e| format!("stat {:?}: {e}", sc.name))?;
            stats.push(Stat {
                name_json: serde_json::to_string(&sc.name).expect("strings serialise"),
                label: label(sc.window, sc.slide.map(Duration::ms)),
                config: sc.clone(),
                value,
                state: StatState {
                    windows,
                    total: None,
                    total_gaps: None,
                    total_start: None,
                },
            });
        }
        let timestamp_value = timestamp.as_ref().and_then(|(src, _)| {
            fields
                .iter()
                .position(|(s, _, is_time)| s == src && *is_time)
        });
        Ok(WindowStats {
            timestamp_value,
            header: config.columns.clone(),
            values: vec![0.0; fields.len()],
            closed: Vec::new(),
            config,
            zone,
            fields,
            timestamp,
            stats,
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) {
        let arrival = self.config.time.arrival();
        let mut row = Record::default();
        for event in batch.iter() {
            row.set(event);
            let ts = match self.read_row(&mut row, arrival) {
                Ok(Some(ts)) => ts,
                Ok(None) => continue,
                Err(reason) => {
                    out.reject(event.index, reason);
                    continue;
                }
            };
            let mut late = false;
            for stat in &mut self.stats {
                let x = self.values[stat.value];
                let gaps = stat.config.func == Func::Gaps;
                let r = stat.state.windows.add(ts, event.seq, |acc| {
                    if gaps {
                        if let Acc::Moments(m) = acc
                            && m.n == 0
                        {
                            *acc = Acc::Times(Times::default());
                        }
                        if let Acc::Times(t) = acc {
                            t.0.push(x as i64);
                        }
                    } else if let Acc::Moments(m) = acc {
                        m.push(x);
                    }
                });
                late |= r.is_err();
            }
            if late {
                out.reject(event.index, "late");
            }
            self.emit_closed(out);
        }
    }

    fn tick(&mut self, now_ms: i64, out: &mut Output) {
        if self.config.time == Time::Processing {
            for s in &mut self.stats {
                s.state.windows.advance(now_ms);
            }
            self.emit_closed(out);
        }
    }

    fn flush(&mut self, out: &mut Output) {
        for s in &mut self.stats {
            s.state.windows.close_all();
        }
        self.emit_closed(out);
    }

    fn snapshot(&self) -> Vec<u8> {
        let stats = self.stats.iter();
        let stats = stats
            .map(|s| (&s.config.name, &s.label, &s.state))
            .collect();
        state::save(STATE_VERSION, &Saved { stats })
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let s: Saved<(String, String, StatState)> = state::load(STATE_VERSION, state)?;
        let mine: Vec<(&str, &str)> = self
            .stats
            .iter()
            .map(|s| (s.config.name.as_str(), s.label.as_str()))
            .collect();
        let theirs: Vec<(&str, &str)> = s
            .stats
            .iter()
            .map(|(n, l, _)| (n.as_str(), l.as_str()))
            .collect();
        if mine != theirs {
            return Err(format!(
                "state holds statistics {theirs:?}, this configuration has {mine:?}"
            ));
        }
        for (stat, (_, _, st)) in self.stats.iter_mut().zip(s.stats) {
            if st.windows.spec() != stat.state.windows.spec() {
                return Err(format!(
                    "statistic {:?} changed its window",
                    stat.config.name
                ));
            }
            stat.state = st;
        }
        Ok(())
    }

    fn hold_from(&self) -> Option<u64> {
        self.stats
            .iter()
            .filter_map(|s| s.state.windows.hold_from())
            .min()
    }
}

weir_plugin::export!(WindowStats);

#[cfg(test)]
mod tests;
