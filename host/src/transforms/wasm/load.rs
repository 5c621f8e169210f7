//! How busy each instance thread of a several-instance `wasm` stage is:
//! batches given to it and not yet done, and how long a batch takes.
//!
//! With `route = "batch"` the worker gives each batch to the least busy
//! thread, so a thread that drew a large image does not hold the worker up
//! while another sits idle (which taking turns did: the worker waited on
//! the full queue of the busy one). Routed by key, a batch must go to its
//! key's thread; the queue there may then be as deep as [`depth_for`]
//! allows: deep for quick batches, so one slow batch does not leave the
//! other threads dry, and shallow for slow ones, so bringing the tasks home
//! (checkpoints, swaps, the end), which waits for what is queued, stays
//! quick.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Batches given to each thread and not yet done, and how long batches take.
#[derive(Debug)]
pub(super) struct Load {
    state: Mutex<State>,
    /// Signalled when a thread finishes a batch or ends while the worker
    /// waits for room ([`State::waiting`]).
    freed: Condvar,
}

#[derive(Debug)]
struct State {
    /// Batches queued or running, per thread.
    busy: Vec<usize>,
    /// Threads that ended: a batch sent to one fails, which is how the
    /// worker learns why.
    gone: Vec<bool>,
    /// A batch's time, smoothed over the recent batches of every thread;
    /// `None` until the first is done.
    batch_time: Option<Duration>,
    /// Where the search for the least busy starts, moved on each time, so
    /// equally idle threads take turns.
    next: usize,
    /// The worker is waiting for room: only then is a finished batch
    /// signalled (a signal is a system call, and batches can be many
    /// thousands a second).
    waiting: bool,
}

/// Queued work a keyed thread may hold: [`depth_for`] allows as many
/// batches as take about this long.
const QUEUED_TIME: Duration = Duration::from_millis(100);

impl Load {
    /// Every one of `threads` idle.
    pub fn new(threads: usize) -> Load {
        Load {
            state: Mutex::new(State {
                busy: vec![0; threads],
                gone: vec![false; threads],
                batch_time: None,
                next: 0,
                waiting: false,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("load lock")
    }

    /// A batch was given to `thread` (the worker counts its batches with
    /// [`Load::reserve`]).
    #[cfg(test)]
    fn given(&self, thread: usize) {
        self.lock().busy[thread] += 1;
    }

    /// `thread` is done with a batch that took `took` (processed, or
    /// failed at once because the stage is ending).
    pub fn done(&self, thread: usize, took: Duration) {
        let mut state = self.lock();
        debug_assert!(
            state.busy[thread] > 0,
            "thread {thread} done with more than given"
        );
        state.busy[thread] = state.busy[thread].saturating_sub(1);
        // An exponential average over about the last eight batches.
        state.batch_time = Some(match state.batch_time {
            None => took,
            Some(avg) => (avg * 7 + took) / 8,
        });
        let wake = state.waiting;
        drop(state);
        if wake {
            self.freed.notify_all();
        }
    }

    /// `thread` ended: nothing it was given will be done.
    pub fn gone(&self, thread: usize) {
        let mut state = self.lock();
        state.gone[thread] = true;
        state.busy[thread] = 0;
        let wake = state.waiting;
        drop(state);
        if wake {
            self.freed.notify_all();
        }
    }

    /// How many batches a keyed thread may have queued or running now
    /// ([`depth_for`]), for tests.
    #[cfg(test)]
    fn depth(&self, most: usize) -> usize {
        depth_for(self.lock().batch_time, most)
    }

    /// Waits until `thread` has fewer batches queued or running than
    /// [`depth_for`] allows with the batches' time now (or ended), and
    /// counts the batch about to be given to it, under one lock.
    pub fn reserve(&self, thread: usize, most: usize) {
        let mut state = self.lock();
        state.waiting = true;
        let mut state = self
            .freed
            .wait_while(state, |s| {
                !s.gone[thread] && s.busy[thread] >= depth_for(s.batch_time, most)
            })
            .expect("load lock");
        state.waiting = false;
        state.busy[thread] += 1;
    }

    /// The thread with the fewest batches queued or running, once one has
    /// fewer than `limit` (equals take turns); a thread that ended comes
    /// first, so the send to it fails and tells the worker why.
    pub fn least_busy(&self, limit: usize) -> usize {
        let mut state = self.lock();
        state.waiting = true;
        let mut state = self
            .freed
            .wait_while(state, |s| {
                !s.gone.iter().any(|&g| g) && s.busy.iter().all(|&n| n >= limit)
            })
            .expect("load lock");
        state.waiting = false;
        let threads = state.busy.len();
        if let Some(ended) = state.gone.iter().position(|&g| g) {
            return ended;
        }
        let start = state.next;
        let least = (0..threads)
            .map(|i| (start + i) % threads)
            .min_by_key(|&t| state.busy[t])
            .unwrap_or(0);
        state.next = (least + 1) % threads.max(1);
        least
    }

    /// Batches given to each thread and not yet done, for tests.
    #[cfg(test)]
    fn counts(&self) -> Vec<usize> {
        self.lock().busy.clone()
    }
}

/// How many batches a keyed thread may have queued or running: as many
/// as take about [`QUEUED_TIME`], from 2 (one running, one waiting) to
/// `most`; 2 until a batch's time is known.
fn depth_for(batch_time: Option<Duration>, most: usize) -> usize {
    let Some(t) = batch_time else { return 2 };
    let fit = QUEUED_TIME.as_nanos() / t.as_nanos().max(1);
    (fit.min(most as u128) as usize).max(2).min(most.max(2))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_least_busy_thread_gets_the_next_batch_and_equals_take_turns() {
        let load = Load::new(3);
        // All idle: each in turn.
        assert_eq!(load.least_busy(2), 0);
        assert_eq!(load.least_busy(2), 1);
        assert_eq!(load.least_busy(2), 2);
        assert_eq!(load.least_busy(2), 0);
        load.given(0);
        load.given(1);
        load.given(1);
        load.given(2);
        // 1, 2, 1: one of the least busy, the turn moving on.
        let a = load.least_busy(3);
        let b = load.least_busy(3);
        assert!([a, b] == [0, 2] || [a, b] == [2, 0], "{a} {b}");
        load.given(0);
        load.given(2);
        // 2, 2, 2, then thread 1 finishes one.
        load.done(1, MS);
        assert_eq!(load.counts(), [2, 1, 2]);
        assert_eq!(load.least_busy(3), 1);
    }

    #[test]
    fn waits_while_every_thread_is_full_until_one_finishes() {
        let load = Arc::new(Load::new(2));
        for thread in [0, 0, 1, 1] {
            load.given(thread);
        }
        let started = Instant::now();
        let other = Arc::clone(&load);
        let finisher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.done(1, MS);
        });
        assert_eq!(load.least_busy(2), 1, "the thread that finished");
        assert!(started.elapsed() >= Duration::from_millis(50));
        finisher.join().unwrap();
    }

    #[test]
    fn a_thread_that_ended_is_named_at_once() {
        let load = Arc::new(Load::new(2));
        for thread in [0, 0, 1, 1] {
            load.given(thread);
        }
        let other = Arc::clone(&load);
        let ender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            other.gone(0);
        });
        assert_eq!(load.least_busy(2), 0, "the send to it tells why");
        ender.join().unwrap();
        load.reserve(0, 8);
    }

    #[test]
    fn keyed_queues_are_deep_for_quick_batches_and_shallow_for_slow_ones() {
        assert_eq!(depth_for(None, 8), 2, "unknown: one running, one waiting");
        assert_eq!(depth_for(Some(Duration::from_micros(100)), 8), 8);
        assert_eq!(depth_for(Some(20 * MS), 8), 5);
        assert_eq!(depth_for(Some(60 * MS), 8), 2);
        assert_eq!(depth_for(Some(Duration::from_secs(3)), 8), 2);
        let load = Load::new(1);
        load.given(0);
        load.done(0, Duration::from_secs(1));
        for _ in 0..60 {
            load.given(0);
            load.done(0, Duration::from_micros(50));
        }
        assert_eq!(load.depth(8), 8, "the average follows the batches");
    }

    #[test]
    fn a_keyed_send_waits_for_room_on_its_thread() {
        let load = Arc::new(Load::new(2));
        load.given(0);
        load.given(0);
        load.given(1);
        // Thread 1 has room at depth 2; thread 0 waits for a batch to end.
        load.reserve(1, 8);
        let started = Instant::now();
        let other = Arc::clone(&load);
        let finisher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.done(0, MS);
        });
        load.reserve(0, 8);
        assert!(started.elapsed() >= Duration::from_millis(50));
        finisher.join().unwrap();
    }
}
