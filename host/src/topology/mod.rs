//! Building and running the stage graph.
//!
//! Every stage that has inputs (or receives dead letters) owns one bounded
//! channel; its upstream stages hold senders to it. A stage ends when its
//! input closes, so shutdown flows downstream on its own: cancelling the
//! sources makes them finish their current batch and return, transforms then
//! flush their open windows, sinks write what is left, and the run ends.

mod context;

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use context::{
    BoxError, Closed, DeadLetters, Output, SinkContext, SourceContext, TransformContext,
};

use crate::config::{Component, Pipeline};
use crate::event::Batch;
use crate::metrics::Registry;

/// A stage that could not be built or that failed while running.
#[derive(Debug, thiserror::Error)]
#[error("stage `{stage}`: {source}")]
pub struct StageError {
    /// The stage's name.
    pub stage: String,
    /// What went wrong.
    #[source]
    pub source: BoxError,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Some stages could not be built; nothing was started.
    #[error("cannot start the pipeline:\n{}", list(.0))]
    Build(Vec<StageError>),
    /// Some stages failed while running; the pipeline was stopped.
    #[error("the pipeline stopped because stages failed:\n{}", list(.0))]
    Failed(Vec<StageError>),
}

fn list(errors: &[StageError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A built pipeline whose stages are running.
pub struct Running {
    tasks: JoinSet<(String, Result<(), BoxError>)>,
    shutdown: CancellationToken,
}

impl Running {
    /// Asks sources to stop; the rest drains.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for every stage to finish. A failing stage stops the sources so
    /// the rest drains, and the failure is returned.
    pub async fn wait(mut self) -> Result<(), RunError> {
        let mut failures = Vec::new();
        while let Some(joined) = self.tasks.join_next().await {
            let (stage, result) = match joined {
                Ok(r) => r,
                Err(e) => (
                    "<task>".to_owned(),
                    Err(format!("stage task panicked: {e}").into()),
                ),
            };
            match result {
                Ok(()) => tracing::debug!(stage, "stage finished"),
                Err(source) => {
                    tracing::error!(stage, error = %source, "stage failed; stopping the pipeline");
                    failures.push(StageError { stage, source });
                    self.shutdown.cancel();
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(RunError::Failed(failures))
        }
    }
}

/// Builds every stage of `pipeline` and starts them. Nothing starts unless
/// every stage builds. Must be called within a multi-threaded Tokio runtime;
/// building may block (plugin compilation), so call it from
/// `spawn_blocking` or `block_in_place`.
pub fn start(
    pipeline: &Pipeline,
    registry: &Registry,
    shutdown: CancellationToken,
) -> Result<Running, RunError> {
    let capacity = pipeline.options.channel_capacity.unwrap_or(8).max(1);
    let mut senders: HashMap<&str, mpsc::Sender<Batch>> = HashMap::new();
    let mut receivers: HashMap<&str, mpsc::Receiver<Batch>> = HashMap::new();
    let dead_letter_targets: Vec<&str> = pipeline
        .stages
        .values()
        .filter_map(|s| s.dead_letter.as_deref())
        .collect();
    for stage in pipeline.stages.values() {
        if !stage.inputs.is_empty() || dead_letter_targets.contains(&stage.name.as_str()) {
            let (tx, rx) = mpsc::channel(capacity);
            senders.insert(&stage.name, tx);
            receivers.insert(&stage.name, rx);
        }
    }

    let mut built: Vec<(String, BoxFuture<'static, Result<(), BoxError>>)> = Vec::new();
    let mut errors = Vec::new();
    // Sinks first, then transforms, then sources: a sink may create the
    // topic a source of the same pipeline reads.
    let mut order: Vec<&crate::config::Stage> = pipeline.stages.values().collect();
    order.sort_by_key(|s| match s.component.kind() {
        crate::config::Kind::Sink => 0,
        crate::config::Kind::Transform => 1,
        crate::config::Kind::Source => 2,
    });
    for stage in order {
        let metrics = registry.stage(&stage.name);
        let outputs: Vec<mpsc::Sender<Batch>> = pipeline
            .consumers_of(&stage.name)
            .filter_map(|c| senders.get(c.name.as_str()).cloned())
            .collect();
        let out = Output::new(outputs, metrics.clone());
        let dead_letters = DeadLetters::new(
            &stage.name,
            stage
                .dead_letter
                .as_deref()
                .and_then(|d| senders.get(d).cloned()),
            metrics.clone(),
        );
        let name = stage.name.clone();
        let result = match &stage.component {
            Component::Source(c) => c.build(SourceContext {
                name: name.clone(),
                out,
                dead_letters,
                shutdown: shutdown.clone(),
                metrics,
                batch_size: pipeline.batch_size(),
            }),
            Component::Transform(c) => c.build(TransformContext {
                name: name.clone(),
                input: receivers
                    .remove(stage.name.as_str())
                    .expect("transforms have inputs"),
                out,
                dead_letters,
                metrics,
            }),
            Component::Sink(c) => c.build(SinkContext {
                name: name.clone(),
                input: receivers
                    .remove(stage.name.as_str())
                    .expect("sinks have inputs"),
                dead_letters,
                metrics,
            }),
        };
        match result {
            Ok(fut) => built.push((name, fut)),
            Err(source) => errors.push(StageError {
                stage: name,
                source,
            }),
        }
    }
    // Only stages hold senders now: a channel closes when its last upstream
    // finishes.
    drop(senders);
    if !errors.is_empty() {
        shutdown.cancel();
        return Err(RunError::Build(errors));
    }
    let mut tasks = JoinSet::new();
    for (name, fut) in built {
        tracing::debug!(stage = name, "stage started");
        tasks.spawn(async move { (name, fut.await) });
    }
    Ok(Running { tasks, shutdown })
}
