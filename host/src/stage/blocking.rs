//! Blocking work of a stage (file I/O, a Kafka client's poll loop, a model
//! run) on Tokio's blocking pool, inside the stage's span so its log lines
//! still name the stage.

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
