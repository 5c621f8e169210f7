//! Blocking work of a stage (file I/O, a Kafka client's poll loop, a model
//! run) on Tokio's blocking pool, inside the stage's span so its log lines
//! still name the stage; and drops that may block, with a bound.

use std::time::Duration;

use super::BoxError;

/// Runs `f` on the blocking pool in the current span and waits for it.
pub async fn run_blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, BoxError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| format!("stage task failed: {e}").into())
}

/// How a [`drop_within`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The drop finished in time.
    Done,
    /// The drop panicked (the panic was printed as usual).
    Panicked,
    /// The drop had not finished when the time was up; it goes on, or not,
    /// on its own thread.
    TimedOut,
}

/// Drops `value` on a thread of its own, in the current span, and waits at
/// most `timeout` for the drop to finish.
///
/// For client handles whose drop talks to a server and can, through a bug
/// in the client, wait for ever (librdkafka's consumer close when a group
/// assignment arrives during it): the stage ends anyway.
pub fn drop_within<T: Send + 'static>(value: T, timeout: Duration) -> Dropped {
    let span = tracing::Span::current();
    let (done, finished) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("weir-drop".into())
        .spawn(move || {
            let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                span.in_scope(|| drop(value))
            }));
            let _ = done.send(dropped.is_ok());
        });
    if spawned.is_err() {
        // Without a thread (the process is out of them) the value was
        // dropped here, with the closure.
        return Dropped::Done;
    }
    match finished.recv_timeout(timeout) {
        Ok(true) => Dropped::Done,
        Ok(false) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Dropped::Panicked,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Dropped::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks in its drop until its channel's sender is gone.
    struct Stuck(std::sync::mpsc::Receiver<()>);

    impl Drop for Stuck {
        fn drop(&mut self) {
            let _ = self.0.recv();
        }
    }

    #[test]
    fn a_drop_that_blocks_is_left_behind_after_the_timeout() {
        let (release, wait) = std::sync::mpsc::channel();
        let start = std::time::Instant::now();
        assert_eq!(
            drop_within(Stuck(wait), Duration::from_millis(100)),
            Dropped::TimedOut
        );
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        drop(release);
    }

    #[test]
    fn a_quick_drop_is_waited_for() {
        let (release, wait) = std::sync::mpsc::channel();
        drop(release);
        assert_eq!(
            drop_within(Stuck(wait), Duration::from_secs(30)),
            Dropped::Done
        );
        assert_eq!(
            drop_within(vec![1u8; 16], Duration::from_secs(30)),
            Dropped::Done
        );
    }

    /// Panics in its drop.
    struct Bad;

    impl Drop for Bad {
        fn drop(&mut self) {
            panic!("a drop that panics (expected by this test)");
        }
    }

    #[test]
    fn a_drop_that_panics_is_told_apart_from_one_that_is_slow() {
        assert_eq!(drop_within(Bad, Duration::from_secs(30)), Dropped::Panicked);
    }
}
