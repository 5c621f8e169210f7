//! How busy each instance thread of a several-instance `wasm` stage is:
//! batches given to it and not yet done. With `route = "batch"` the worker
//! gives each batch to the least busy thread, so a thread that drew a large
//! image does not hold the worker up while the other sits idle (which
//! taking turns did: the worker waited on the full queue of the busy one).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Batches given to each thread and not yet done.
#[derive(Debug)]
pub(super) struct Load {
    busy: Mutex<Vec<usize>>,
    /// Signalled each time a thread finishes a batch.
    freed: Condvar,
}

/// How long [`Load::least_busy`] waits for a thread to finish a batch
/// before it answers anyway: a thread that ended without saying so is then
/// found by the send to it, not by waiting forever.
const WAIT_AT_MOST: Duration = Duration::from_millis(200);

impl Load {
    /// Every one of `threads` idle.
    pub fn new(threads: usize) -> Load {
        Load {
            busy: Mutex::new(vec![0; threads]),
            freed: Condvar::new(),
        }
    }

    /// A batch was given to `thread`.
    pub fn given(&self, thread: usize) {
        self.busy.lock().expect("load lock")[thread] += 1;
    }

    /// `thread` is done with a batch (processed it, or failed it because
    /// the stage is ending).
    pub fn done(&self, thread: usize) {
        let mut busy = self.busy.lock().expect("load lock");
        busy[thread] = busy[thread].saturating_sub(1);
        drop(busy);
        self.freed.notify_one();
    }

    /// The thread with the fewest batches not yet done (the first of
    /// equals), once one has fewer than `limit`; waits for that (at most
    /// [`WAIT_AT_MOST`] in all) while every thread has `limit` or more.
    pub fn least_busy(&self, limit: usize) -> usize {
        let busy = self.busy.lock().expect("load lock");
        let (busy, _) = self
            .freed
            .wait_timeout_while(busy, WAIT_AT_MOST, |busy| busy.iter().all(|&n| n >= limit))
            .expect("load lock");
        busy.iter()
            .enumerate()
            .min_by_key(|&(_, n)| *n)
            .map_or(0, |(thread, _)| thread)
    }

    /// Batches given to each thread and not yet done, for tests.
    #[cfg(test)]
    fn counts(&self) -> Vec<usize> {
        self.busy.lock().expect("load lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_least_busy_thread_gets_the_next_batch() {
        let load = Load::new(3);
        assert_eq!(load.least_busy(2), 0, "all idle: the first");
        load.given(0);
        assert_eq!(load.least_busy(2), 1);
        load.given(1);
        load.given(1);
        load.given(2);
        // 1, 2, 1: the first of the least busy.
        assert_eq!(load.least_busy(3), 0);
        load.given(0);
        load.given(2);
        // 2, 2, 2, then thread 1 finishes one.
        load.done(1);
        assert_eq!(load.counts(), [2, 1, 2]);
        assert_eq!(load.least_busy(3), 1);
        load.done(1);
        load.done(1);
        assert_eq!(load.counts(), [2, 0, 2], "never below zero");
    }

    #[test]
    fn waits_while_every_thread_is_full_until_one_finishes() {
        let load = Arc::new(Load::new(2));
        for thread in [0, 0, 1, 1] {
            load.given(thread);
        }
        let other = Arc::clone(&load);
        let finisher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.done(1);
        });
        let started = Instant::now();
        assert_eq!(load.least_busy(2), 1, "the thread that finished");
        let waited = started.elapsed();
        finisher.join().unwrap();
        assert!(
            waited >= Duration::from_millis(40) && waited < WAIT_AT_MOST,
            "waited {waited:?}"
        );
    }

    #[test]
    fn gives_up_waiting_on_threads_that_never_finish() {
        let load = Load::new(2);
        for thread in [0, 1, 1] {
            load.given(thread);
        }
        let started = Instant::now();
        assert_eq!(load.least_busy(1), 0, "the least busy, full or not");
        assert!(started.elapsed() >= WAIT_AT_MOST);
    }
}
