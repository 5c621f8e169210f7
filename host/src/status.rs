//! What a running pipeline reports about itself: its stages, their
//! instances and counters, and the outcome of the last reload. Served as
//! JSON by the admin endpoint (`/status`) and read back by `weir status`.

use std::sync::{Arc, RwLock};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::metrics::{Registry, StageMetrics};

/// Whether a stage is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageState {
    /// Processing.
    Running,
    /// Finished (its input ended).
    Ended,
    /// Stopped with an error.
    Failed,
}

/// One stage as the status shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageStatus {
    /// Stage name.
    pub name: String,
    /// `source`, `transform` or `sink`.
    pub kind: String,
    /// The stage's `type`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Stages feeding this one.
    pub inputs: Vec<String>,
    /// Stages this one feeds.
    pub outputs: Vec<String>,
    /// Its dead-letter sink, if any.
    pub dead_letter: Option<String>,
    /// Identity of the running instance: changes when a reload restarts the
    /// stage or swaps its plugin, and only then.
    pub instance: u64,
    /// When the running instance started (Unix ms).
    pub started_ms: i64,
    /// Running, ended or failed.
    pub state: StageState,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Counters (filled in when the status is read).
    #[serde(default)]
    pub counters: Counters,
}

/// A stage's counters at the time the status was read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Events received (sources: produced).
    pub events_in: u64,
    /// Events sent on (sinks: written).
    pub events_out: u64,
    /// Events sent to the dead-letter output or dropped.
    pub rejected: u64,
    /// Failures.
    pub errors: u64,
    /// Batches processed.
    pub batches: u64,
    /// Time spent in stage calls, ms.
    pub busy_ms: u64,
    /// Kafka sources: partition assignments (consumer-group rebalances).
    pub rebalances: u64,
    /// Kafka sources: messages behind the end of the assigned partitions.
    #[serde(default)]
    pub lag: i64,
    /// WASM transforms: the plugin instance's linear memory, bytes.
    #[serde(default)]
    pub memory_bytes: u64,
}

impl Counters {
    /// Reads `m`.
    pub fn of(m: &StageMetrics) -> Self {
        Counters {
            events_in: StageMetrics::get(&m.events_in),
            events_out: StageMetrics::get(&m.events_out),
            rejected: StageMetrics::get(&m.rejected),
            errors: StageMetrics::get(&m.errors),
            batches: StageMetrics::get(&m.batches),
            busy_ms: StageMetrics::get(&m.busy_ns) / 1_000_000,
            rebalances: StageMetrics::get(&m.rebalances),
            lag: m.total_lag(),
            memory_bytes: StageMetrics::get(&m.memory_bytes),
        }
    }
}

/// A stage that a reload could not change, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Failure {
    /// The stage (or `pipeline` for the file as a whole).
    pub stage: String,
    /// What went wrong.
    pub reason: String,
}

/// The outcome of one reload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Sequence number of this reload in the process (1, 2, ...).
    pub id: u64,
    /// What asked for it: `SIGHUP`, `admin`, `file change: PATH`.
    pub trigger: String,
    /// When it started (Unix ms).
    pub at_ms: i64,
    /// How long it took, ms.
    pub duration_ms: u64,
    /// Whether every change was applied.
    pub ok: bool,
    /// Why the new pipeline was rejected as a whole (nothing changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    /// Stages left running untouched.
    pub kept: Vec<String>,
    /// Stages whose plugin or config was swapped in place, state carried over.
    pub swapped: Vec<String>,
    /// Stages replaced by a new instance.
    pub restarted: Vec<String>,
    /// Stages started.
    pub added: Vec<String>,
    /// Stages drained and stopped.
    pub removed: Vec<String>,
    /// Stages whose inputs or dead-letter output changed.
    pub rewired: Vec<String>,
    /// Changes that failed; those stages keep running as they were.
    pub failed: Vec<Failure>,
    /// Longest processing pause a plugin swap caused, microseconds.
    #[serde(default)]
    pub max_swap_pause_us: u64,
}

impl ReloadReport {
    /// Whether the reload changed nothing.
    pub fn is_noop(&self) -> bool {
        self.swapped.is_empty()
            && self.restarted.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.rewired.is_empty()
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        if let Some(r) = &self.rejected {
            return format!("reload rejected, nothing changed: {r}");
        }
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(",")
            }
        };
        let mut s = format!(
            "kept {}, swapped {}, restarted {}, added {}, removed {}, rewired {}",
            self.kept.len(),
            list(&self.swapped),
            list(&self.restarted),
            list(&self.added),
            list(&self.removed),
            list(&self.rewired),
        );
        for f in &self.failed {
            s.push_str(&format!("; FAILED {}: {}", f.stage, f.reason));
        }
        s
    }
}

/// The whole status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// The pipeline file.
    pub pipeline: String,
    /// Process id.
    pub pid: u32,
    /// When the pipeline started (Unix ms).
    pub started_ms: i64,
    /// Every stage, in pipeline order.
    pub stages: Vec<StageStatus>,
    /// Reloads applied in full.
    pub reloads_ok: u64,
    /// Reloads rejected or partly failed.
    pub reloads_failed: u64,
    /// The last reload.
    pub last_reload: Option<ReloadReport>,
}

/// The status shared between the running topology (which writes it) and
/// the admin endpoint (which reads it).
#[derive(Debug, Clone, Default)]
pub struct Board {
    inner: Arc<RwLock<Inner>>,
    hub: crate::hub::Hub,
}

#[derive(Debug, Default)]
struct Inner {
    status: Status,
    stages: IndexMap<String, StageStatus>,
}

impl Board {
    /// A board for the pipeline in `file`.
    pub fn new(file: &std::path::Path) -> Self {
        let board = Board::default();
        {
            let mut inner = board.inner.write().expect("status lock");
            inner.status.pipeline = file.display().to_string();
            inner.status.pid = std::process::id();
            inner.status.started_ms = crate::util::now_ms();
        }
        board
    }

    /// The pipeline's taps and dashboards.
    pub fn hub(&self) -> &crate::hub::Hub {
        &self.hub
    }

    /// Sets or replaces a stage's entry.
    pub fn set_stage(&self, stage: StageStatus) {
        let mut inner = self.inner.write().expect("status lock");
        inner.stages.insert(stage.name.clone(), stage);
    }

    /// Updates a stage's entry in place.
    pub fn update_stage(&self, name: &str, f: impl FnOnce(&mut StageStatus)) {
        if let Some(s) = self
            .inner
            .write()
            .expect("status lock")
            .stages
            .get_mut(name)
        {
            f(s);
        }
    }

    /// Puts the stages in this order (the pipeline's), dropping any not
    /// listed.
    pub fn order_stages(&self, names: &[String]) {
        let mut inner = self.inner.write().expect("status lock");
        let mut ordered = IndexMap::new();
        for n in names {
            if let Some(s) = inner.stages.shift_remove(n) {
                ordered.insert(n.clone(), s);
            }
        }
        inner.stages = ordered;
    }

    /// Records a reload's outcome.
    pub fn record_reload(&self, report: ReloadReport) {
        let mut inner = self.inner.write().expect("status lock");
        if report.ok {
            inner.status.reloads_ok += 1;
        } else {
            inner.status.reloads_failed += 1;
        }
        inner.status.last_reload = Some(report);
    }

    /// Every stage's metric labels and counters, in pipeline order.
    pub fn metrics(
        &self,
        registry: &Registry,
    ) -> Vec<(crate::metrics::StageLabels, Arc<StageMetrics>)> {
        let inner = self.inner.read().expect("status lock");
        inner
            .stages
            .values()
            .map(|s| {
                (
                    crate::metrics::StageLabels {
                        stage: s.name.clone(),
                        kind: s.kind.clone(),
                        type_name: s.type_name.clone(),
                    },
                    registry.stage(&s.name),
                )
            })
            .collect()
    }

    /// Reloads applied and failed so far.
    pub fn reload_counts(&self) -> (u64, u64) {
        let inner = self.inner.read().expect("status lock");
        (inner.status.reloads_ok, inner.status.reloads_failed)
    }

    /// Whether `stage` is part of the pipeline.
    pub fn has_stage(&self, stage: &str) -> bool {
        self.inner
            .read()
            .expect("status lock")
            .stages
            .contains_key(stage)
    }

    /// Names of every stage.
    pub fn stage_names(&self) -> Vec<String> {
        self.inner
            .read()
            .expect("status lock")
            .stages
            .keys()
            .cloned()
            .collect()
    }

    /// The status now, with every stage's counters read from `registry`.
    pub fn read(&self, registry: &Registry) -> Status {
        let inner = self.inner.read().expect("status lock");
        let mut status = inner.status.clone();
        status.stages = inner
            .stages
            .values()
            .cloned()
            .map(|mut s| {
                s.counters = Counters::of(&registry.stage(&s.name));
                s
            })
            .collect();
        status
    }
}
