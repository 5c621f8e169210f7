//! `type = "dashboard"`: live charts of what reaches the sink, served by
//! the admin endpoint at `/dashboard/NAME` and pushed to browsers over
//! server-sent events. Every asset is in the binary: no internet needed.
//!
//! What is charted depends on the event values:
//! - **Counts per window** (bars): gender-count's output, either
//!   `{"window_start":MS,"window_end":MS,"counts":{"0":N,...}}` or the seed
//!   text `[{"0":N},{"1":M}]`, or any JSON object of numbers with
//!   `chart = "bars"`.
//! - **Numbers over time** (lines): a JSON object's numeric fields (all, or
//!   those listed in `fields`), or a bare number, against the event time.
//!
//! A value that cannot be charted is rejected with the reason (to the
//! stage's dead-letter output if set).

use futures_util::FutureExt;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::event::Event;
use crate::stage::{BoxError, Component, Sink, SinkContext, StageTask};
use crate::telemetry::StageMetrics;

/// Which chart a dashboard draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Chart {
    /// Bars for counts per window, lines for other numbers.
    #[default]
    Auto,
    /// Bars: the latest value of each key, one bar per key.
    Bars,
    /// Lines: each numeric field over time.
    Lines,
}

/// Settings of the `dashboard` sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// Page title (default: the sink's name).
    #[serde(default)]
    pub title: Option<String>,
    /// `auto` (default), `bars` or `lines`.
    #[serde(default)]
    pub chart: Chart,
    /// Numeric fields to chart (default: every numeric field).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Display names for keys and fields, e.g. `{ "0" = "female" }`.
    #[serde(default)]
    pub labels: IndexMap<String, String>,
    /// Points kept for viewers who open the page later (default 120).
    #[serde(default = "default_history")]
    pub history: usize,
}

fn default_history() -> usize {
    120
}

/// One charted point, as the page receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Event time (for windows: the window's end), Unix ms.
    pub t: i64,
    /// Window start, when the value names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<i64>,
    /// Bars: count (or value) per key, in the order of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<IndexMap<String, Number>>,
    /// Lines: value per field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<IndexMap<String, Number>>,
}

/// Numeric members of `obj` (all, or those in `fields`).
fn numbers(
    obj: &Map<String, Value>,
    fields: &[String],
) -> Result<IndexMap<String, Number>, String> {
    let mut out = IndexMap::new();
    if fields.is_empty() {
        for (k, v) in obj {
            if let Some(x) = v.as_number() {
                out.insert(k.clone(), x.clone());
            }
        }
    } else {
        for f in fields {
            match obj.get(f) {
                Some(v) => match v.as_number() {
                    Some(x) => {
                        out.insert(f.clone(), x.clone());
                    }
                    None => return Err(format!("field `{f}` is not a number: {v}")),
                },
                None => return Err(format!("no field `{f}`")),
            }
        }
    }
    if out.is_empty() {
        return Err("no numeric field to chart".into());
    }
    Ok(out)
}

impl DashboardConfig {
    /// How `event` is charted, or why it cannot be.
    pub fn point(&self, event: &Event) -> Result<Point, String> {
        let v: Value = serde_json::from_slice(&event.value)
            .map_err(|e| format!("not JSON ({e}): {}", crate::util::preview(&event.value)))?;
        let mut p = Point {
            t: event.timestamp_ms,
            window_start: None,
            counts: None,
            values: None,
        };
        match &v {
            // The seed text: [{"0":1},{"1":6}].
            Value::Array(items) if self.chart != Chart::Lines => {
                let mut counts = IndexMap::new();
                for item in items {
                    let Some(obj) = item.as_object() else {
                        return Err(format!("list item is not an object: {item}"));
                    };
                    for (k, n) in obj {
                        let n = n
                            .as_number()
                            .ok_or_else(|| format!("count of `{k}` is not a number: {n}"))?;
                        counts.insert(k.clone(), n.clone());
                    }
                }
                p.counts = Some(counts);
            }
            Value::Object(obj) => {
                if let Some(end) = obj.get("window_end").and_then(Value::as_i64) {
                    p.t = end;
                }
                p.window_start = obj.get("window_start").and_then(Value::as_i64);
                match (obj.get("counts"), self.chart) {
                    (Some(Value::Object(c)), Chart::Auto | Chart::Bars) => {
                        p.counts = Some(numbers(c, &self.fields)?);
                    }
                    (_, Chart::Bars) => p.counts = Some(numbers(obj, &self.fields)?),
                    _ => {
                        let mut values = numbers(obj, &self.fields)?;
                        if self.fields.is_empty() {
                            values.shift_remove("window_start");
                            values.shift_remove("window_end");
                        }
                        if values.is_empty() {
                            return Err("no numeric field to chart".into());
                        }
                        p.values = Some(values);
                    }
                }
            }
            Value::Number(n) if self.chart != Chart::Bars => {
                p.values = Some(IndexMap::from([("value".to_owned(), n.clone())]));
            }
            other => {
                return Err(format!(
                    "cannot chart {} as {:?}",
                    crate::util::preview(other.to_string().as_bytes()),
                    self.chart
                ));
            }
        }
        Ok(p)
    }
}

impl Sink for DashboardConfig {
    fn build(&self, ctx: SinkContext) -> Result<StageTask, BoxError> {
        if !ctx.dashboards.is_served() {
            return Err(format!(
                "the dashboard sink `{}` is served by the admin endpoint, which is off: set `admin = \"127.0.0.1:7470\"` at the top of the pipeline file, or run with `--admin 127.0.0.1:7470`",
                ctx.name
            )
            .into());
        }
        let settings = serde_json::json!({
            "chart": self.chart,
            "fields": self.fields,
            "labels": self.labels,
        });
        let title = self.title.clone().unwrap_or_else(|| ctx.name.clone());
        let board = ctx
            .dashboards
            .dashboard(&ctx.name, title, settings, self.history);
        let config = self.clone();
        Ok(run(ctx, config, board).boxed())
    }
}

impl Component for DashboardConfig {}

async fn run(
    mut ctx: SinkContext,
    config: DashboardConfig,
    board: std::sync::Arc<crate::telemetry::Dashboard>,
) -> Result<(), BoxError> {
    while let Some(batch) = ctx.next_batch().await {
        let started = std::time::Instant::now();
        StageMetrics::add(&ctx.metrics.events_in, batch.events.len() as u64);
        let mut bad = Vec::new();
        let mut shown = 0;
        for e in &batch.events {
            match config.point(e) {
                Ok(p) => {
                    board.push(serde_json::to_string(&p).expect("points serialise"));
                    shown += 1;
                }
                Err(reason) => bad.push((e.clone(), reason)),
            }
        }
        StageMetrics::add(&ctx.metrics.events_out, shown);
        ctx.metrics.record_batch(started.elapsed());
        ctx.dead_letters.send(bad, batch.acks.clone()).await;
        drop(batch); // shown: release the acknowledgements
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(chart: Chart, fields: &[&str]) -> DashboardConfig {
        DashboardConfig {
            title: None,
            chart,
            fields: fields.iter().map(|s| s.to_string()).collect(),
            labels: IndexMap::new(),
            history: 10,
        }
    }

    fn point(c: &DashboardConfig, v: &str) -> Result<Point, String> {
        c.point(&Event::new(v.to_owned(), 7))
    }

    #[test]
    fn window_counts_become_bars() {
        let c = config(Chart::Auto, &[]);
        let p = point(&c, r#"[{"0":1},{"2":3},{"1":6}]"#).unwrap();
        let counts = p.counts.unwrap();
        assert_eq!(counts.keys().collect::<Vec<_>>(), ["0", "2", "1"]);
        assert_eq!(counts["1"], Number::from(6));
        assert_eq!(p.t, 7);

        let p = point(
            &c,
            r#"{"window_start":1000,"window_end":2000,"counts":{"0":4,"1":5}}"#,
        )
        .unwrap();
        assert_eq!((p.t, p.window_start), (2000, Some(1000)));
        assert_eq!(p.counts.unwrap()["0"], Number::from(4));
    }

    #[test]
    fn numeric_fields_become_lines() {
        let c = config(Chart::Auto, &[]);
        let p = point(&c, r#"{"device":"pi","temperature":21.5,"humidity":40}"#).unwrap();
        let v = p.values.unwrap();
        assert_eq!(v.keys().collect::<Vec<_>>(), ["humidity", "temperature"]);
        let p = point(&c, "3.5").unwrap();
        assert_eq!(p.values.unwrap()["value"].as_f64(), Some(3.5));

        let c = config(Chart::Lines, &["humidity"]);
        let p = point(&c, r#"{"temperature":21.5,"humidity":40}"#).unwrap();
        assert_eq!(p.values.unwrap().len(), 1);
    }

    #[test]
    fn values_that_cannot_be_charted_say_why() {
        let c = config(Chart::Auto, &[]);
        assert!(point(&c, "hello").unwrap_err().starts_with("not JSON"));
        assert_eq!(
            point(&c, r#"{"device":"pi"}"#).unwrap_err(),
            "no numeric field to chart"
        );
        let c = config(Chart::Lines, &["humidity"]);
        assert_eq!(
            point(&c, r#"{"humidity":"wet"}"#).unwrap_err(),
            r#"field `humidity` is not a number: "wet""#
        );
        let c = config(Chart::Bars, &[]);
        assert!(point(&c, "3").unwrap_err().starts_with("cannot chart 3"));
    }
}
