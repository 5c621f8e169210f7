//! Partitions handed between a Kafka source and the stages that keep state
//! per input partition (a `wasm` stage's tasks), when the consumer group
//! moves partitions between processes.
//!
//! On a revoke the source registers the partitions it gives away and sends
//! [`Marker::Revoked`] after their last records, so stages release those
//! tasks in order with the data. On an assign the source puts the state the
//! new owner must start from (read from the changelog at the committed
//! position) here before any record of those partitions is read; a stage
//! takes it when it creates the partition's task.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::checkpoint::SavedStage;
use crate::event::Marker;

/// The pipeline's hand-over point; one per process, shared through
/// [`Extensions`](super::Extensions).
#[derive(Debug, Default)]
pub struct Handover {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_generation: u64,
    revoked: HashMap<u64, Vec<i32>>,
    restored: HashMap<(String, i32), SavedStage>,
}

impl Handover {
    /// Registers `partitions` as given away; the marker to send after their
    /// last records.
    pub fn revoke(&self, partitions: Vec<i32>) -> Marker {
        let mut inner = self.inner.lock().expect("handover lock");
        inner.next_generation += 1;
        let generation = inner.next_generation;
        inner.revoked.insert(generation, partitions);
        Marker::Revoked { generation }
    }

    /// The partitions of revocation `generation`.
    pub fn revoked(&self, generation: u64) -> Vec<i32> {
        self.inner
            .lock()
            .expect("handover lock")
            .revoked
            .get(&generation)
            .cloned()
            .unwrap_or_default()
    }

    /// The state stage `stage` starts partition `partition` from, when this
    /// process is assigned it.
    pub fn restore(&self, stage: &str, partition: i32, saved: SavedStage) {
        self.inner
            .lock()
            .expect("handover lock")
            .restored
            .insert((stage.to_owned(), partition), saved);
    }

    /// Forgets state put there for `partitions` that was not taken (they
    /// were assigned again before their first record).
    pub fn clear(&self, partitions: &[i32]) {
        self.inner
            .lock()
            .expect("handover lock")
            .restored
            .retain(|(_, p), _| !partitions.contains(p));
    }

    /// Takes the state `stage` starts `partition` from, if there is one.
    pub fn take(&self, stage: &str, partition: i32) -> Option<SavedStage> {
        self.inner
            .lock()
            .expect("handover lock")
            .restored
            .remove(&(stage.to_owned(), partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_and_restored_state_are_found_again() {
        let h = Handover::default();
        let Marker::Revoked { generation } = h.revoke(vec![1, 4]) else {
            panic!("not a revoke marker")
        };
        assert_eq!(h.revoked(generation), vec![1, 4]);
        assert!(h.revoked(generation + 1).is_empty());
        h.restore("count", 4, SavedStage::new(9, b"ab"));
        assert!(h.take("count", 3).is_none());
        assert_eq!(h.take("count", 4).unwrap().next_seq, 9);
        assert!(h.take("count", 4).is_none());
        h.restore("count", 2, SavedStage::new(1, b""));
        h.clear(&[2]);
        assert!(h.take("count", 2).is_none());
    }
}
