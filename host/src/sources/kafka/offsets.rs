//! Which offsets may be committed: each batch's offsets wait until the
//! batch is acknowledged, and a partition's stored offset only moves past a
//! finished prefix, so a record still in flight is never committed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// A topic and partition.
pub(super) type Tp = (Arc<str>, i32);

/// Offsets waiting for their batch to be acknowledged, per partition in
/// consumption order.
#[derive(Default)]
pub(super) struct Tracker {
    next_id: u64,
    /// (topic, partition) -> (batch id, last offset, delivered, failed) in
    /// order.
    parts: HashMap<Tp, VecDeque<(u64, i64, bool, bool)>>,
    /// Partitions being handed to another process: undelivered records of
    /// theirs are expected.
    releasing: std::collections::HashSet<Tp>,
    /// batch id -> partitions it touched.
    batches: HashMap<u64, Vec<Tp>>,
    failed_logged: u64,
}

impl Tracker {
    pub fn register(&mut self, ranges: HashMap<(Arc<str>, i32), i64>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut touched = Vec::with_capacity(ranges.len());
        for (tp, last) in ranges {
            self.parts
                .entry(tp.clone())
                .or_default()
                .push_back((id, last, false, false));
            touched.push(tp);
        }
        self.batches.insert(id, touched);
        id
    }

    pub fn outstanding(&self) -> usize {
        self.batches.len()
    }

    /// Marks batch `id` finished and stores, for each partition, the last
    /// offset of the longest finished prefix (librdkafka's
    /// `rd_kafka_offset_store` commits that offset + 1).
    pub fn resolve(&mut self, id: u64, delivered: bool, store: &mut dyn FnMut(&str, i32, i64)) {
        let Some(touched) = self.batches.remove(&id) else {
            return;
        };
        for tp in touched {
            let Some(queue) = self.parts.get_mut(&tp) else {
                continue;
            };
            if let Some(entry) = queue.iter_mut().find(|e| e.0 == id) {
                if delivered {
                    entry.2 = true;
                } else if self.releasing.contains(&tp) {
                    // A task let go of the partition: the next owner reads
                    // these records again.
                    entry.3 = true;
                } else {
                    entry.3 = true;
                    self.failed_logged += 1;
                    tracing::error!(
                        topic = &*tp.0,
                        partition = tp.1,
                        offset = entry.1,
                        "records were not delivered; offsets of this partition will not be committed past them until restart"
                    );
                }
            }
            let mut last_done = None;
            while let Some(&(_, last, true, _)) = queue.front() {
                last_done = Some(last);
                queue.pop_front();
            }
            if let Some(last) = last_done {
                store(&tp.0, tp.1, last);
            }
        }
    }

    pub fn pending_in(&self, revoked: &[(String, i32)]) -> bool {
        self.pending_except(revoked, &HashSet::new())
    }

    /// Whether a batch of `partitions` other than `except` is in flight.
    pub fn pending_except(&self, partitions: &[(String, i32)], except: &HashSet<u64>) -> bool {
        self.any_entry(partitions, |e| !e.2 && !e.3 && !except.contains(&e.0))
    }

    /// Whether a batch of `partitions` was not delivered.
    pub fn failed_in(&self, partitions: &[(String, i32)]) -> bool {
        self.any_entry(partitions, |e| e.3)
    }

    fn any_entry(
        &self,
        partitions: &[(String, i32)],
        test: impl Fn(&(u64, i64, bool, bool)) -> bool,
    ) -> bool {
        partitions.iter().any(|(t, p)| {
            self.parts
                .iter()
                .any(|((tt, pp), q)| &**tt == t && pp == p && q.iter().any(&test))
        })
    }

    /// Undelivered records of `partitions` are expected from now on (their
    /// tasks are released).
    pub fn releasing(&mut self, partitions: &[(String, i32)]) {
        for (t, p) in partitions {
            self.releasing.insert((t.as_str().into(), *p));
        }
    }

    pub fn forget(&mut self, revoked: &[(String, i32)]) {
        self.parts
            .retain(|(t, p), _| !revoked.iter().any(|(rt, rp)| &**t == rt && p == rp));
        self.releasing
            .retain(|(t, p)| !revoked.iter().any(|(rt, rp)| &**t == rt && p == rp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stored_only_past_finished_prefixes() {
        let mut t = Tracker::default();
        let tp: (Arc<str>, i32) = ("t".into(), 0);
        let a = t.register([(tp.clone(), 9)].into());
        let b = t.register([(tp.clone(), 19)].into());
        let c = t.register([(tp.clone(), 29), (("t".into(), 1), 4)].into());
        let mut stored = Vec::new();
        t.resolve(b, true, &mut |topic, p, o| {
            stored.push((topic.to_owned(), p, o))
        });
        assert!(stored.is_empty(), "batch a is still in flight");
        t.resolve(c, true, &mut |topic, p, o| {
            stored.push((topic.to_owned(), p, o))
        });
        assert_eq!(stored, vec![("t".to_owned(), 1, 4)]);
        t.resolve(a, true, &mut |topic, p, o| {
            stored.push((topic.to_owned(), p, o))
        });
        assert_eq!(stored.last(), Some(&("t".to_owned(), 0, 29)));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn an_undelivered_batch_blocks_commits_past_it() {
        let mut t = Tracker::default();
        let tp: (Arc<str>, i32) = ("t".into(), 0);
        let a = t.register([(tp.clone(), 9)].into());
        let b = t.register([(tp.clone(), 19)].into());
        let mut stored = Vec::new();
        t.resolve(a, false, &mut |_, _, o| stored.push(o));
        t.resolve(b, true, &mut |_, _, o| stored.push(o));
        assert!(stored.is_empty());
        // Nothing is in flight any more, but nothing past `a` is stored.
        assert!(!t.pending_in(&[("t".into(), 0)]));
        let c = t.register([(tp.clone(), 29)].into());
        assert!(t.pending_in(&[("t".into(), 0)]));
        t.resolve(c, true, &mut |_, _, o| stored.push(o));
        assert!(stored.is_empty());
        assert!(t.failed_in(&[("t".into(), 0)]));
        t.forget(&[("t".into(), 0)]);
        assert!(!t.pending_in(&[("t".into(), 0)]));
    }

    #[test]
    fn parked_batches_can_be_left_out_of_the_wait() {
        let mut t = Tracker::default();
        let tp: (Arc<str>, i32) = ("t".into(), 0);
        let held = t.register([(tp.clone(), 9)].into());
        let later = t.register([(tp.clone(), 19)].into());
        let part = [("t".to_owned(), 0)];
        assert!(t.pending_except(&part, &HashSet::from([held])));
        t.resolve(later, true, &mut |_, _, _| {});
        assert!(!t.pending_except(&part, &HashSet::from([held])));
        assert!(t.pending_in(&part));
        assert!(!t.failed_in(&part));
    }
}
