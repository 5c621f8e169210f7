//! Per-stage counters, shared between the running stages and the operator
//! surface (status, metrics, exit summary).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use indexmap::IndexMap;

/// Counters of one stage. All are monotonically increasing.
#[derive(Debug, Default)]
pub struct StageMetrics {
    /// Events received from inputs (sources: events produced).
    pub events_in: AtomicU64,
    /// Events sent downstream (sinks: events written).
    pub events_out: AtomicU64,
    /// Events sent to the dead-letter output, or dropped for lack of one.
    pub rejected: AtomicU64,
    /// Failures: plugin traps, timeouts, write errors, failed reads.
    pub errors: AtomicU64,
    /// Batches processed.
    pub batches: AtomicU64,
    /// Total time spent in plugin or stage calls, nanoseconds.
    pub busy_ns: AtomicU64,
    /// Kafka sources: partition assignments received (each consumer-group
    /// rebalance that reaches this member counts once).
    pub rebalances: AtomicU64,
}

impl StageMetrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Counters of every stage of a pipeline, by name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    stages: Arc<std::sync::RwLock<IndexMap<String, Arc<StageMetrics>>>>,
}

impl Registry {
    /// The counters for `stage`, created on first use. A reloaded stage keeps
    /// its counters.
    pub fn stage(&self, stage: &str) -> Arc<StageMetrics> {
        if let Some(m) = self.stages.read().expect("metrics lock").get(stage) {
            return m.clone();
        }
        self.stages
            .write()
            .expect("metrics lock")
            .entry(stage.to_owned())
            .or_default()
            .clone()
    }

    /// A snapshot of every stage's counters.
    pub fn all(&self) -> Vec<(String, Arc<StageMetrics>)> {
        self.stages
            .read()
            .expect("metrics lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Forgets a removed stage.
    pub fn remove(&self, stage: &str) {
        self.stages
            .write()
            .expect("metrics lock")
            .shift_remove(stage);
    }
}
