//! The status document: what a running pipeline reports about itself (its
//! stages, their instances and counters, and the outcome of the last
//! reload). Served as JSON by `/status` and read back by `weir status` and
//! `weir top`.

use serde::{Deserialize, Serialize};

use super::counters::Counters;

/// Whether a stage is running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageState {
    /// Processing.
    #[default]
    Running,
    /// Finished (its input ended).
    Ended,
    /// Stopped with an error.
    Failed,
}

/// One stage as the status shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// What the pipeline promises: `at-least-once` or `exactly-once`.
    #[serde(default)]
    pub guarantee: String,
    /// Its Kafka transactions (exactly-once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<super::transactions::TransactionStatus>,
    /// This process's static member id in its consumer groups
    /// (`weir-<pipeline>-<instance_id>`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}
