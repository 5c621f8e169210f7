//! Telemetry: everything a running pipeline tells about itself, in one
//! place.
//!
//! [`Telemetry`] holds, per stage name, the stage's counters
//! ([`StageMetrics`]), its tap point and its status entry; plus the reload
//! history and the dashboards. Stages write counters and offer events to
//! their tap; the engine writes status entries; every view reads the same
//! data: `/status` ([`Telemetry::status`]), `/metrics`
//! ([`Telemetry::prometheus`]), taps, `weir top` (from `/status`) and the
//! exit summary ([`Telemetry::totals`]).
//!
//! A stage keeps its counters and tap across restarts and plugin swaps (they
//! belong to the name); [`Telemetry::forget`] drops them when a reload has
//! removed the stage and its last instance has finished.

pub mod counters;
pub mod dashboards;
pub mod prometheus;
pub mod status;
pub mod taps;
pub mod transactions;

use std::sync::{Arc, RwLock};

use indexmap::IndexMap;

pub use counters::{Counters, Histogram, StageMetrics};
pub use dashboards::{Dashboard, Dashboards};
pub use prometheus::StageLabels;
pub use status::{Failure, ReloadReport, StageState, StageStatus, Status};
pub use taps::{TAP_EVENTS_PER_SECOND, TAP_VALUE_BYTES, TapEvent, TapPoint};
pub use transactions::{TransactionStats, TransactionStatus};

/// The telemetry of one running pipeline; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    inner: Arc<RwLock<Inner>>,
    dashboards: Dashboards,
    transactions: Arc<std::sync::OnceLock<Arc<TransactionStats>>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The document's header and reload history (its stage list is built
    /// when read).
    header: Status,
    stages: IndexMap<String, Entry>,
}

/// What is kept per stage name.
#[derive(Debug, Default)]
struct Entry {
    metrics: Arc<StageMetrics>,
    tap: Arc<TapPoint>,
    /// Set by the engine while the stage is part of the pipeline; `None`
    /// for a stage a reload removed that is still draining.
    status: Option<StageStatus>,
}

impl Telemetry {
    /// The telemetry of the pipeline in `file`.
    pub fn new(file: &std::path::Path) -> Self {
        let t = Telemetry::default();
        {
            let mut inner = t.inner.write().expect("telemetry lock");
            inner.header.pipeline = file.display().to_string();
            inner.header.pid = std::process::id();
            inner.header.started_ms = crate::util::now_ms();
        }
        t
    }

    fn entry<R>(&self, stage: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut inner = self.inner.write().expect("telemetry lock");
        f(inner.stages.entry(stage.to_owned()).or_default())
    }

    /// The counters of `stage` (created on first use; kept across restarts
    /// of the stage).
    pub fn metrics(&self, stage: &str) -> Arc<StageMetrics> {
        if let Some(e) = self.inner.read().expect("telemetry lock").stages.get(stage) {
            return e.metrics.clone();
        }
        self.entry(stage, |e| e.metrics.clone())
    }

    /// The tap point of `stage` (created on first use; kept across
    /// restarts of the stage).
    pub fn tap(&self, stage: &str) -> Arc<TapPoint> {
        self.entry(stage, |e| e.tap.clone())
    }

    /// The tap point of `stage`, if it has one (a removed stage keeps it
    /// until forgotten).
    pub fn find_tap(&self, stage: &str) -> Option<Arc<TapPoint>> {
        let inner = self.inner.read().expect("telemetry lock");
        inner.stages.get(stage).map(|e| e.tap.clone())
    }

    /// The pipeline's dashboards.
    pub fn dashboards(&self) -> &Dashboards {
        &self.dashboards
    }

    /// Records this process's static member id.
    pub fn set_instance(&self, id: &str) {
        self.inner.write().expect("telemetry lock").header.instance = Some(id.to_owned());
    }

    /// Records the pipeline's guarantee (`at-least-once`, `exactly-once`).
    pub fn set_guarantee(&self, guarantee: &str) {
        self.inner.write().expect("telemetry lock").header.guarantee = guarantee.to_owned();
    }

    /// The counters of the pipeline's Kafka transactions (exactly-once),
    /// created on first use.
    pub fn transactions(&self) -> Arc<TransactionStats> {
        self.transactions.get_or_init(Default::default).clone()
    }

    /// Sets or replaces a stage's status entry.
    pub fn set_stage(&self, status: StageStatus) {
        let name = status.name.clone();
        self.entry(&name, |e| e.status = Some(status));
    }

    /// Updates a stage's status entry in place.
    pub fn update_stage(&self, name: &str, f: impl FnOnce(&mut StageStatus)) {
        let mut inner = self.inner.write().expect("telemetry lock");
        if let Some(s) = inner.stages.get_mut(name).and_then(|e| e.status.as_mut()) {
            f(s);
        }
    }

    /// Lists the stages in this order (the pipeline's); stages not named
    /// leave the status (their counters stay until [`Telemetry::forget`]).
    pub fn order_stages(&self, names: &[String]) {
        let mut inner = self.inner.write().expect("telemetry lock");
        let mut rest = std::mem::take(&mut inner.stages);
        let mut ordered = IndexMap::with_capacity(rest.len());
        for n in names {
            if let Some(e) = rest.shift_remove(n) {
                ordered.insert(n.clone(), e);
            }
        }
        for (n, mut e) in rest {
            e.status = None;
            ordered.insert(n, e);
        }
        inner.stages = ordered;
    }

    /// Forgets a stage a reload removed, once its last instance finished:
    /// counters, tap (its viewers' streams end) and dashboard.
    pub fn forget(&self, stage: &str) {
        self.inner
            .write()
            .expect("telemetry lock")
            .stages
            .shift_remove(stage);
        self.dashboards.forget(stage);
    }

    /// Records a reload's outcome.
    pub fn record_reload(&self, report: ReloadReport) {
        let mut inner = self.inner.write().expect("telemetry lock");
        if report.ok {
            inner.header.reloads_ok += 1;
        } else {
            inner.header.reloads_failed += 1;
        }
        inner.header.last_reload = Some(report);
    }

    /// Names of the stages of the pipeline.
    pub fn stage_names(&self) -> Vec<String> {
        let inner = self.inner.read().expect("telemetry lock");
        inner
            .stages
            .iter()
            .filter(|(_, e)| e.status.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether `stage` is part of the pipeline.
    pub fn has_stage(&self, stage: &str) -> bool {
        let inner = self.inner.read().expect("telemetry lock");
        inner.stages.get(stage).is_some_and(|e| e.status.is_some())
    }

    /// The status document now, counters read as of this call.
    pub fn status(&self) -> Status {
        let inner = self.inner.read().expect("telemetry lock");
        let mut status = inner.header.clone();
        status.transactions = self.transactions.get().map(|t| t.read());
        status.stages = inner
            .stages
            .values()
            .filter_map(|e| {
                let mut s = e.status.clone()?;
                s.counters = e.metrics.read();
                Some(s)
            })
            .collect();
        status
    }

    /// Every stage's metrics in the Prometheus text format.
    pub fn prometheus(&self) -> String {
        let (stages, reloads, guarantee) = {
            let inner = self.inner.read().expect("telemetry lock");
            let stages: Vec<(StageLabels, Arc<StageMetrics>)> = inner
                .stages
                .values()
                .filter_map(|e| {
                    let s = e.status.as_ref()?;
                    Some((
                        StageLabels {
                            stage: s.name.clone(),
                            kind: s.kind.clone(),
                            type_name: s.type_name.clone(),
                        },
                        e.metrics.clone(),
                    ))
                })
                .collect();
            let reloads = (inner.header.reloads_ok, inner.header.reloads_failed);
            (stages, reloads, inner.header.guarantee.clone())
        };
        let mut text = prometheus::render_prometheus(&stages, reloads);
        prometheus::render_guarantee(&mut text, &guarantee);
        if let Some(t) = self.transactions.get() {
            prometheus::render_transactions(&mut text, &t.read());
        }
        text
    }

    /// Every stage's counters, removed stages still draining included (the
    /// exit summary).
    pub fn totals(&self) -> Vec<(String, Counters)> {
        let inner = self.inner.read().expect("telemetry lock");
        inner
            .stages
            .iter()
            .map(|(n, e)| (n.clone(), e.metrics.read()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str) -> StageStatus {
        StageStatus {
            name: name.into(),
            kind: "sink".into(),
            type_name: "console".into(),
            ..StageStatus::default()
        }
    }

    #[test]
    fn every_view_reads_the_same_counters() {
        let t = Telemetry::new(std::path::Path::new("p.toml"));
        let m = t.metrics("out");
        StageMetrics::add(&m.events_in, 7);
        t.set_stage(status("out"));
        assert_eq!(t.status().stages[0].counters.events_in, 7);
        assert!(
            t.prometheus()
                .contains("weir_events_in_total{stage=\"out\",kind=\"sink\",type=\"console\"} 7")
        );
        assert_eq!(t.totals(), vec![("out".to_owned(), m.read())]);
    }

    #[test]
    fn a_removed_stage_leaves_the_status_but_keeps_counting_until_forgotten() {
        let t = Telemetry::new(std::path::Path::new("p.toml"));
        t.set_stage(status("a"));
        t.set_stage(status("b"));
        StageMetrics::add(&t.metrics("b").events_in, 1);
        t.order_stages(&["a".to_owned()]);
        assert_eq!(t.stage_names(), ["a"]);
        assert!(!t.has_stage("b") && t.find_tap("b").is_some());
        assert_eq!(t.totals().len(), 2, "b still drains");
        t.forget("b");
        assert_eq!(t.totals().len(), 1);
        assert!(t.find_tap("b").is_none());
    }
}
