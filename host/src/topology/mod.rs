//! Building and running the stage graph.
//!
//! Every stage that has inputs (or receives dead letters) owns one bounded
//! channel; its upstream stages hold senders to it. A stage ends when its
//! input closes, so shutdown flows downstream on its own: cancelling the
//! sources makes them finish their current batch and return, transforms then
//! flush their open windows, sinks write what is left, and the run ends.

mod context;
mod stateless;

use std::collections::HashMap;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use context::{
    BoxError, Closed, DeadLetters, Output, SinkContext, SourceContext, TransformContext,
};
pub use stateless::{Processed, run_stateless};

use crate::checkpoint::{Members, Report, Reporter, SourceControl, Wiring};
use crate::config::{Component, Kind, Pipeline};
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
    reports: Option<tokio::sync::mpsc::UnboundedSender<Report>>,
    coordinator: Option<tokio::task::JoinHandle<()>>,
    writers: Writers,
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
            self.writers.ended(&stage);
            if let Some(r) = &self.reports {
                let _ = r.send(if result.is_ok() {
                    Report::Ended {
                        stage: stage.clone(),
                    }
                } else {
                    Report::Failed {
                        stage: stage.clone(),
                    }
                });
            }
            match result {
                Ok(()) => tracing::debug!(stage, "stage finished"),
                Err(source) => {
                    tracing::error!(stage, error = %source, "stage failed; stopping the pipeline");
                    failures.push(StageError { stage, source });
                    self.shutdown.cancel();
                }
            }
        }
        drop(self.reports.take());
        if let Some(c) = self.coordinator.take() {
            let _ = c.await;
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

    let mut wiring = match &pipeline.options.state_dir {
        Some(dir) => {
            let saved = crate::checkpoint::load(dir).map_err(|e| {
                RunError::Build(vec![StageError {
                    stage: "state_dir".into(),
                    source: e.into(),
                }])
            })?;
            if let Some(s) = &saved {
                tracing::info!(
                    checkpoint = s.id,
                    dir = %dir.display(),
                    written_ms = s.written_ms,
                    "restoring from checkpoint"
                );
            }
            let members = Members {
                sources: stages_of(pipeline, |s| s.component.kind() == Kind::Source),
                transforms: stages_of(pipeline, |s| s.component.kind() == Kind::Transform),
                sinks: stages_of(pipeline, |s| {
                    s.component.kind() == Kind::Sink && !s.inputs.is_empty()
                }),
            };
            let interval = pipeline
                .options
                .checkpoint_interval
                .map_or(std::time::Duration::from_secs(10), |d| d.get());
            Some(Wiring::new(dir.clone(), interval, members, saved))
        }
        None => None,
    };
    let reporter = |wiring: &Option<Wiring>, name: &str| match wiring {
        Some(w) => w.reporter(name),
        None => Reporter::off(name),
    };

    let writers = Writers::new(pipeline);
    let mut built: Vec<(String, BoxFuture<'static, Result<(), BoxError>>)> = Vec::new();
    let mut errors = Vec::new();
    // Sinks first, then transforms, then sources: a sink may create the
    // topic a source of the same pipeline reads.
    let mut order: Vec<(usize, &crate::config::Stage)> =
        pipeline.stages.values().enumerate().collect();
    order.sort_by_key(|(_, s)| match s.component.kind() {
        Kind::Sink => 0,
        Kind::Transform => 1,
        Kind::Source => 2,
    });
    for (index, stage) in order {
        let metrics = registry.stage(&stage.name);
        let outputs: Vec<mpsc::Sender<Batch>> = pipeline
            .consumers_of(&stage.name)
            .filter_map(|c| senders.get(c.name.as_str()).cloned())
            .collect();
        let out = Output::new(outputs, metrics.clone(), index as u32);
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
                control: match wiring.as_mut() {
                    Some(w) => w.source_control(&name, shutdown.clone()),
                    None => SourceControl::plain(&name, shutdown.clone()),
                },
                metrics,
                batch_size: pipeline.batch_size(),
                writers_done: writers.token_for(&name),
            }),
            Component::Transform(c) => c.build(TransformContext {
                name: name.clone(),
                input: receivers
                    .remove(stage.name.as_str())
                    .expect("transforms have inputs"),
                out,
                dead_letters,
                metrics,
                inputs: stage.inputs.len(),
                reporter: reporter(&wiring, &name),
                resume: wiring.as_ref().and_then(|w| w.saved_stage(&name)),
            }),
            Component::Sink(c) => c.build(SinkContext {
                name: name.clone(),
                input: receivers
                    .remove(stage.name.as_str())
                    .expect("sinks have inputs"),
                dead_letters,
                metrics,
                inputs: stage.inputs.len(),
                reporter: reporter(&wiring, &name),
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
    let (reports, coordinator) = match wiring {
        Some(w) => {
            let reports = w.reports.clone();
            (Some(reports), Some(w.spawn(shutdown.clone())))
        }
        None => (None, None),
    };
    Ok(Running {
        tasks,
        shutdown,
        reports,
        coordinator,
        writers,
    })
}

/// Sources that read what sinks of the same pipeline write (a Kafka topic
/// produced and consumed in one pipeline), so `exit_at_end` waits for the
/// writers to finish instead of stopping at a topic that is still filling.
#[derive(Default)]
struct Writers {
    /// Source name -> (writer sink names still running, token).
    waits:
        std::collections::HashMap<String, (std::collections::HashSet<String>, CancellationToken)>,
}

impl Writers {
    fn new(pipeline: &Pipeline) -> Self {
        use crate::sinks::SinkConfig;
        use crate::sources::SourceConfig;
        let mut waits = std::collections::HashMap::new();
        for source in pipeline.stages.values() {
            let Component::Source(SourceConfig::Kafka(k)) = &source.component else {
                continue;
            };
            let brokers = crate::kafka::Brokers::from_setting(k.brokers.as_deref());
            let topics = k.topic_list();
            let sinks: std::collections::HashSet<String> = pipeline
                .stages
                .values()
                .filter(|s| match &s.component {
                    Component::Sink(SinkConfig::Kafka(w)) => {
                        crate::kafka::Brokers::from_setting(w.brokers.as_deref()) == brokers
                            && topics.contains(&w.topic)
                    }
                    _ => false,
                })
                .map(|s| s.name.clone())
                .collect();
            if !sinks.is_empty() {
                waits.insert(source.name.clone(), (sinks, CancellationToken::new()));
            }
        }
        Writers { waits }
    }

    fn token_for(&self, source: &str) -> Option<CancellationToken> {
        self.waits.get(source).map(|(_, t)| t.clone())
    }

    /// A stage ended: release sources whose writers have all finished.
    fn ended(&mut self, stage: &str) {
        for (writers, token) in self.waits.values_mut() {
            if writers.remove(stage) && writers.is_empty() {
                token.cancel();
            }
        }
    }
}

fn stages_of(
    pipeline: &Pipeline,
    keep: impl Fn(&crate::config::Stage) -> bool,
) -> std::collections::BTreeSet<String> {
    pipeline
        .stages
        .values()
        .filter(|s| keep(s))
        .map(|s| s.name.clone())
        .collect()
}
