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

/// Drops `value` on a thread of its own, in the current span, and waits at
/// most `timeout` for the drop to finish: whether it did.
///
/// For client handles whose drop talks to a server and can, through a bug
/// in the client, wait for ever (librdkafka's consumer close when a group
/// assignment arrives during it): the stage ends anyway, and the drop goes
/// on, or not, on its own thread.
pub fn drop_within<T: Send + 'static>(value: T, timeout: Duration) -> bool {
    let span = tracing::Span::current();
    let (done, finished) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("weir-drop".into())
        .spawn(move || {
            span.in_scope(|| drop(value));
            let _ = done.send(());
        });
    // Without a thread (the process is out of them) the value was dropped
    // here, with the closure.
    spawned.is_err() || finished.recv_timeout(timeout).is_ok()
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
        assert!(!drop_within(Stuck(wait), Duration::from_millis(100)));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        drop(release);
    }

    #[test]
    fn a_quick_drop_is_waited_for() {
        let (release, wait) = std::sync::mpsc::channel();
        drop(release);
        assert!(drop_within(Stuck(wait), Duration::from_secs(30)));
        assert!(drop_within(vec![1u8; 16], Duration::from_secs(30)));
    }
}
