//! What an exactly-once pipeline reports about its Kafka transactions:
//! written by the transaction's owner, read by `/status`, `/metrics` and
//! `weir status`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Live counters of the pipeline's transactions.
#[derive(Debug, Default)]
pub struct TransactionStats {
    /// The transactional id.
    pub transactional_id: std::sync::OnceLock<String>,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Transactions aborted.
    pub aborts: AtomicU64,
    /// How long the last commit took (offsets, state and the commit
    /// itself), microseconds.
    pub last_commit_us: AtomicU64,
    /// The last checkpoint committed.
    pub checkpoint: AtomicU64,
}

impl TransactionStats {
    /// A commit of checkpoint `id` took `took`.
    pub fn committed(&self, id: u64, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.last_commit_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
        self.checkpoint.store(id, Ordering::Relaxed);
    }

    /// A transaction was aborted.
    pub fn aborted(&self) {
        self.aborts.fetch_add(1, Ordering::Relaxed);
    }

    /// A reading, as `/status` serves it.
    pub fn read(&self) -> TransactionStatus {
        TransactionStatus {
            transactional_id: self.transactional_id.get().cloned().unwrap_or_default(),
            commits: self.commits.load(Ordering::Relaxed),
            aborts: self.aborts.load(Ordering::Relaxed),
            last_commit_ms: self.last_commit_us.load(Ordering::Relaxed) as f64 / 1000.0,
            checkpoint: self.checkpoint.load(Ordering::Relaxed),
        }
    }
}

/// The transactions of an exactly-once pipeline, when read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransactionStatus {
    /// The transactional id (`weir-<pipeline>-<instance_id>`).
    pub transactional_id: String,
    /// Transactions committed.
    pub commits: u64,
    /// Transactions aborted.
    pub aborts: u64,
    /// How long the last commit took, ms.
    pub last_commit_ms: f64,
    /// The last checkpoint committed.
    pub checkpoint: u64,
}
