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
//!
//! At-least-once, a revoke may come with a [`StateKeeper`]: the stage gives
//! each released task's state to it (the source writes it to the changelog
//! with the partition's position) and parks here the acknowledgements of
//! the records the task holds. The source settles them: as delivered when
//! everything else read from the partitions was delivered (the offsets
//! then commit at the position the state was written with, so the next
//! owner uses it), else as failed (the offsets stay behind those records,
//! which the next owner reads again; the state is then not used).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::checkpoint::SavedStage;
use crate::event::{AckTarget, Acks, Marker};

/// Revocations remembered; older ones are dropped (their parked records
/// failed, so they are read again).
const REMEMBERED: u64 = 64;

/// The pipeline's hand-over point; one per process, shared through
/// [`Extensions`](super::Extensions).
#[derive(Debug, Default)]
pub struct Handover {
    inner: Mutex<Inner>,
}

/// Keeps the state of a released task: `(stage, partition, state)`; an
/// error says why it could not (the task's records are then read again by
/// the partition's next owner).
pub type StateKeeper = Arc<dyn Fn(&str, i32, &SavedStage) -> Result<(), String> + Send + Sync>;

#[derive(Default)]
struct Inner {
    next_generation: u64,
    revoked: HashMap<u64, Revocation>,
    restored: HashMap<(String, i32), SavedStage>,
}

/// One revocation: its partitions, where their tasks keep state, and the
/// acknowledgements the tasks parked.
#[derive(Default)]
struct Revocation {
    partitions: Vec<i32>,
    keeper: Option<StateKeeper>,
    parked: Vec<Acks>,
    /// The source settled it: parking now fails the records.
    settled: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("next_generation", &self.next_generation)
            .field("restored", &self.restored.len())
            .finish_non_exhaustive()
    }
}

impl Handover {
    /// Registers `partitions` as given away; the marker to send after their
    /// last records. Stages keep the released tasks' state with `keeper`
    /// when there is one.
    pub fn revoke(&self, partitions: Vec<i32>, keeper: Option<StateKeeper>) -> Marker {
        let mut inner = self.inner.lock().expect("handover lock");
        inner.next_generation += 1;
        let generation = inner.next_generation;
        inner.revoked.retain(|g, r| {
            let keep = g + REMEMBERED > generation;
            if !keep {
                r.parked.iter().for_each(Acks::fail);
            }
            keep
        });
        inner.revoked.insert(
            generation,
            Revocation {
                partitions,
                keeper,
                parked: Vec::new(),
                settled: false,
            },
        );
        Marker::Revoked { generation }
    }

    /// The partitions of revocation `generation`, and where their tasks'
    /// state is kept.
    pub fn revoked(&self, generation: u64) -> (Vec<i32>, Option<StateKeeper>) {
        self.inner
            .lock()
            .expect("handover lock")
            .revoked
            .get(&generation)
            .map(|r| {
                (
                    r.partitions.clone(),
                    r.keeper.clone().filter(|_| !r.settled),
                )
            })
            .unwrap_or_default()
    }

    /// A task of revocation `generation` whose state the keeper took leaves
    /// the acknowledgements of the records it holds for the source to
    /// settle.
    pub fn park(&self, generation: u64, acks: Acks) {
        match self
            .inner
            .lock()
            .expect("handover lock")
            .revoked
            .get_mut(&generation)
        {
            Some(r) if !r.settled => r.parked.push(acks),
            // Settled already (the source gave up waiting): read again.
            _ => acks.fail(),
        }
    }

    /// The ids of the parked acknowledgements of `generation` that report
    /// to `target` (a source's).
    pub fn parked_ids(&self, generation: u64, target: &dyn AckTarget) -> HashSet<u64> {
        self.inner
            .lock()
            .expect("handover lock")
            .revoked
            .get(&generation)
            .map(|r| r.parked.iter().flat_map(|a| a.ids_for(target)).collect())
            .unwrap_or_default()
    }

    /// Ends the state keeping of revocation `generation`: its parked
    /// acknowledgements resolve as delivered when `delivered`, else as
    /// failed; a task that comes to it later keeps no state and has its
    /// records read again. (Its partitions stay known: a stage may not have
    /// reached the marker yet.)
    pub fn settle(&self, generation: u64, delivered: bool) {
        let parked = {
            let mut inner = self.inner.lock().expect("handover lock");
            match inner.revoked.get_mut(&generation) {
                Some(r) => {
                    r.settled = true;
                    std::mem::take(&mut r.parked)
                }
                None => Vec::new(),
            }
        };
        if !delivered {
            parked.iter().for_each(Acks::fail);
        }
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
        let Marker::Revoked { generation } = h.revoke(vec![1, 4], None) else {
            panic!("not a revoke marker")
        };
        assert_eq!(h.revoked(generation).0, vec![1, 4]);
        assert!(h.revoked(generation + 1).0.is_empty());
        let kept = Arc::new(Mutex::new(Vec::new()));
        let into = kept.clone();
        let keeper: StateKeeper = Arc::new(move |stage: &str, p: i32, _: &SavedStage| {
            into.lock().unwrap().push((stage.to_owned(), p));
            Ok(())
        });
        let Marker::Revoked { generation } = h.revoke(vec![2], Some(keeper)) else {
            panic!("not a revoke marker")
        };
        let (_, keeper) = h.revoked(generation);
        keeper.expect("a keeper")("count", 2, &SavedStage::new(1, b"")).unwrap();
        assert_eq!(*kept.lock().unwrap(), vec![("count".to_owned(), 2)]);
    }

    /// Records how each token resolved.
    #[derive(Default)]
    struct Outcomes(Mutex<Vec<(u64, bool)>>);

    impl AckTarget for Outcomes {
        fn resolved(&self, id: u64, delivered: bool) {
            self.0.lock().unwrap().push((id, delivered));
        }
    }

    #[test]
    fn parked_records_resolve_as_the_source_settles_them() {
        let h = Handover::default();
        let source = Arc::new(Outcomes::default());
        let other = Arc::new(Outcomes::default());
        for delivered in [true, false] {
            source.0.lock().unwrap().clear();
            let Marker::Revoked { generation } = h.revoke(vec![1], None) else {
                panic!("not a revoke marker")
            };
            let mut acks = Acks::one(crate::event::Ack::new(7, source.clone()));
            acks.merge(Acks::one(crate::event::Ack::new(8, other.clone())));
            h.park(generation, acks);
            assert_eq!(h.parked_ids(generation, &*source), HashSet::from([7]));
            assert!(source.0.lock().unwrap().is_empty(), "parked, not resolved");
            h.settle(generation, delivered);
            assert_eq!(*source.0.lock().unwrap(), vec![(7, delivered)]);
            // A stage that reaches the marker later still releases the
            // partitions, but keeps no state.
            assert_eq!(h.revoked(generation).0, vec![1]);
            // Parked after the source settled: read again.
            h.park(
                generation,
                Acks::one(crate::event::Ack::new(9, source.clone())),
            );
            assert_eq!(source.0.lock().unwrap().last(), Some(&(9, false)));
        }
        h.restore("count", 4, SavedStage::new(9, b"ab"));
        assert!(h.take("count", 3).is_none());
        assert_eq!(h.take("count", 4).unwrap().next_seq, 9);
        assert!(h.take("count", 4).is_none());
        h.restore("count", 2, SavedStage::new(1, b""));
        h.clear(&[2]);
        assert!(h.take("count", 2).is_none());
    }
}
