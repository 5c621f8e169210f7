//! The open windows of a [`Windows`](super::Windows): accumulators ordered
//! by window start.
//!
//! Events mostly arrive in time order, so the window an event belongs to is
//! nearly always the newest, and the windows that close are the oldest. A
//! ring buffer sorted by start makes both ends O(1), where a tree map costs
//! a search per event; an out-of-order event is found by binary search.
//! Snapshots keep the map layout (`{start: slot}`) they had as a tree map,
//! so state saved by earlier builds still loads.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Values keyed by window start, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ByStart<V>(VecDeque<(i64, V)>);

impl<V> Default for ByStart<V> {
    fn default() -> Self {
        ByStart(VecDeque::new())
    }
}

impl<V> ByStart<V> {
    /// The value of the window starting at `start`, made by `new` when the
    /// window is not open yet. The newest window, nearly always the one
    /// asked for, is straight-line code inlined into the caller (in the
    /// sandbox each function entry is a deadline check); the rest is not.
    #[inline(always)]
    pub(super) fn entry(&mut self, start: i64, new: impl FnOnce() -> V) -> &mut V {
        if matches!(self.0.back(), Some((last, _)) if *last == start) {
            return &mut self.0.back_mut().expect("checked above").1;
        }
        self.entry_elsewhere(start, new)
    }

    /// [`ByStart::entry`] for any window but the newest.
    #[inline(never)]
    fn entry_elsewhere(&mut self, start: i64, new: impl FnOnce() -> V) -> &mut V {
        let at = match self.0.back() {
            Some((last, _)) if *last < start => {
                self.0.push_back((start, new()));
                self.0.len() - 1
            }
            None => {
                self.0.push_back((start, new()));
                0
            }
            Some(_) => match self.0.binary_search_by_key(&start, |(s, _)| *s) {
                Ok(at) => at,
                Err(at) => {
                    self.0.insert(at, (start, new()));
                    at
                }
            },
        };
        &mut self.0[at].1
    }

    /// The oldest window's start.
    pub(super) fn first_start(&self) -> Option<i64> {
        self.0.front().map(|(s, _)| *s)
    }

    /// Removes the oldest window.
    pub(super) fn pop_first(&mut self) -> Option<(i64, V)> {
        self.0.pop_front()
    }

    /// Removes every window, oldest first.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = (i64, V)> + '_ {
        self.0.drain(..)
    }

    /// Every window, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&i64, &V)> {
        self.0.iter().map(|(s, v)| (s, v))
    }

    /// Every value, oldest first.
    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl<V: Serialize> Serialize for ByStart<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for ByStart<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sorted = BTreeMap::<i64, V>::deserialize(d)?;
        Ok(ByStart(sorted.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_windows_sorted_whatever_the_arrival_order() {
        let mut w = ByStart::default();
        for s in [20, 30, 10, 30, 25, 40, 10, 0] {
            *w.entry(s, || 0) += 1;
        }
        let got: Vec<_> = w.iter().map(|(s, n)| (*s, *n)).collect();
        assert_eq!(got, [(0, 1), (10, 2), (20, 1), (25, 1), (30, 2), (40, 1)]);
        assert_eq!(w.first_start(), Some(0));
        assert_eq!(w.pop_first(), Some((0, 1)));
        assert_eq!(w.values().sum::<i32>(), 7);
    }

    #[test]
    fn snapshots_keep_the_tree_map_layout() {
        let mut w = ByStart::default();
        *w.entry(2000, || 0u64) += 3;
        *w.entry(1000, || 0u64) += 1;
        let tree = BTreeMap::from([(1000i64, 1u64), (2000, 3)]);
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(json, serde_json::to_string(&tree).unwrap());
        let back: ByStart<u64> = serde_json::from_str(r#"{"2000":3,"1000":1}"#).unwrap();
        assert_eq!(back, w);
    }
}
