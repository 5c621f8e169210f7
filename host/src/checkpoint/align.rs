//! Barrier alignment: a stage with several inputs holds back an input that
//! delivered checkpoint barrier `n` until every live input has delivered it,
//! so its snapshot covers exactly the records before the barrier.

use std::collections::HashSet;

use crate::event::Marker;

/// Barrier alignment for stages with several inputs: once an input has
/// delivered barrier `n`, its later batches wait until every live input has
/// delivered it.
#[derive(Debug)]
pub struct Alignment {
    live: usize,
    pending: Option<(u64, bool, HashSet<u32>)>,
}

impl Alignment {
    /// For a stage with `inputs` data inputs.
    pub fn new(inputs: usize) -> Self {
        Alignment {
            live: inputs,
            pending: None,
        }
    }

    /// Whether batches from input `from` must be held back.
    pub fn blocks(&self, from: u32) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|(_, _, seen)| seen.contains(&from))
    }

    fn complete(&mut self) -> Option<Marker> {
        match &self.pending {
            Some((id, last, seen)) if seen.len() >= self.live => {
                let m = Marker::Barrier {
                    id: *id,
                    last: *last,
                };
                self.pending = None;
                Some(m)
            }
            _ => None,
        }
    }

    /// Barrier `id` arrived from `from`; returns the barrier once aligned.
    pub fn barrier(&mut self, from: u32, id: u64, last: bool) -> Option<Marker> {
        let entry = self
            .pending
            .get_or_insert_with(|| (id, last, HashSet::new()));
        if entry.0 != id {
            // A newer barrier while one is pending (an input skipped one):
            // align on the newer one.
            *entry = (id, last, HashSet::new());
        }
        entry.1 |= last;
        entry.2.insert(from);
        self.complete()
    }

    /// A new input joined.
    pub fn join(&mut self) {
        self.live += 1;
    }

    /// An input ended: returns a barrier completed by its absence, and
    /// whether every input has ended.
    pub fn end(&mut self) -> (Option<Marker>, bool) {
        self.live = self.live.saturating_sub(1);
        if self.live == 0 {
            return (None, true);
        }
        (self.complete(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_waits_for_every_live_input() {
        let mut a = Alignment::new(2);
        assert_eq!(a.barrier(0, 1, false), None);
        assert!(a.blocks(0));
        assert!(!a.blocks(1));
        assert_eq!(
            a.barrier(1, 1, false),
            Some(Marker::Barrier { id: 1, last: false })
        );
        assert!(!a.blocks(0));
        // One input ends while a barrier is pending: it completes.
        assert_eq!(a.barrier(1, 2, true), None);
        assert_eq!(
            a.end(),
            (Some(Marker::Barrier { id: 2, last: true }), false)
        );
        assert_eq!(a.end(), (None, true));
    }
}
