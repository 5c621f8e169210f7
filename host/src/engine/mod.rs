//! The engine: building, running and reloading the stage graph.
//!
//! Every stage that has inputs (or receives dead letters) owns one bounded
//! channel; its upstream stages hold senders to it. A stage ends when its
//! input closes, so shutdown flows downstream on its own: cancelling the
//! sources makes them finish their current batch and return, transforms then
//! flush their open windows, sinks write what is left, and the run ends.
//!
//! Channels, outputs and dead-letter targets belong to stage *names*, not to
//! running instances, which is what lets a reload ([`Topology::reload`])
//! restart one stage, swap a plugin in place or rewire an edge while every
//! other stage keeps running untouched and nothing queued is lost.

//!
//! Its files: this one starts the graph and runs it to the end; [`launch`]
//! keeps a slot per stage name and builds and spawns instances; [`reload`]
//! applies a new pipeline file to the running graph following the diff of
//! [`plan`]; `checkpoints` wires the checkpoint coordinator in; `writers`
//! lets a source that reads its own pipeline's output wait for the writers.
//! The engine drives components only through the stage API
//! ([`crate::stage`]) and never names a component type.

mod checkpoints;
mod launch;
mod partitioning;
pub mod plan;
mod reload;
mod reload_error;
mod writers;

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{CheckpointReport, CheckpointSetup, CheckpointStore, Control};
use crate::config::{Kind, Pipeline, Stage};
use crate::event::Batch;
use crate::stage::{BoxError, Extensions, Inbox, Route};
use crate::telemetry::{ReloadReport, StageState, StageStatus, Telemetry};
use launch::{InputFrom, StageSlot};
use plan::Fingerprints;
pub use reload_error::ReloadError;
use writers::WriterWaits;

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

/// A request to reload the pipeline from its file.
#[derive(Debug)]
pub struct ReloadRequest {
    /// What asked for it, for the report (`SIGHUP`, `admin`, `file change`).
    pub trigger: String,
    /// Where the outcome goes, if anyone waits for it.
    pub reply: Option<oneshot::Sender<ReloadReport>>,
}

/// What the engine is given besides the pipeline.
#[derive(Clone, Default)]
pub struct Services {
    /// Where checkpoints go when not to `state_dir` (with `guarantee =
    /// "exactly-once"`: the Kafka transaction).
    pub checkpoints: Option<Arc<dyn CheckpointStore>>,
    /// Services the stages share (handed to every stage's context).
    pub extensions: Extensions,
}

/// What a stage task returns: its name, instance and outcome.
type StageResult = (String, u64, Result<(), BoxError>);

/// A running pipeline: its stages, their channels, and the means to change
/// them while they run.
pub struct Topology {
    pipeline: Pipeline,
    telemetry: Telemetry,
    /// Handed to every stage.
    extensions: Extensions,
    shutdown: CancellationToken,
    slots: IndexMap<String, StageSlot>,
    tasks: JoinSet<StageResult>,
    next_slot: u32,
    next_instance: u64,
    capacity: usize,
    prints: Fingerprints,
    writers: WriterWaits,
    /// Checkpoint wiring until the coordinator starts.
    setup: Option<CheckpointSetup>,
    reports: Option<mpsc::UnboundedSender<CheckpointReport>>,
    /// Reloads pause and resume checkpoints here.
    checkpoints: Option<mpsc::UnboundedSender<Control>>,
    coordinator: Option<tokio::task::JoinHandle<Result<(), String>>>,
    failures: Vec<StageError>,
    reloads: u64,
}

impl Topology {
    /// Builds every stage of `pipeline` and starts them. Nothing starts
    /// unless every stage builds. Must be called within a multi-threaded
    /// Tokio runtime; building may block (plugin compilation), so call it
    /// from `block_in_place`.
    pub fn start(
        pipeline: Pipeline,
        telemetry: &Telemetry,
        services: Services,
        shutdown: CancellationToken,
    ) -> Result<Topology, RunError> {
        let refused = partitioning::check(&pipeline);
        if !refused.is_empty() {
            return Err(RunError::Build(refused));
        }
        let capacity = pipeline.options.channel_capacity.unwrap_or(8).max(1);
        let writers = WriterWaits::new(&pipeline);
        let mut topo = Topology {
            pipeline: pipeline.clone(),
            telemetry: telemetry.clone(),
            extensions: services.extensions.clone(),
            shutdown,
            slots: IndexMap::new(),
            tasks: JoinSet::new(),
            next_slot: 0,
            next_instance: 1,
            capacity,
            prints: Fingerprints::new(),
            writers,
            setup: None,
            reports: None,
            checkpoints: None,
            coordinator: None,
            failures: Vec::new(),
            reloads: 0,
        };
        topo.setup = topo.checkpoint_setup(services.checkpoints)?;
        topo.reports = topo.setup.as_ref().map(|w| w.reports.clone());
        topo.checkpoints = topo.setup.as_ref().map(|w| w.control.clone());

        // Channels first, so outputs can be wired to them.
        let mut senders: HashMap<String, mpsc::Sender<Batch>> = HashMap::new();
        let mut inboxes: HashMap<String, Inbox> = HashMap::new();
        for stage in pipeline.stages.values() {
            if stage.component.kind() != Kind::Source {
                let (tx, rx) = mpsc::channel(capacity);
                // Every stage with inputs aligns them: after one input's
                // barrier its batches wait for the others' (a sink that
                // took them early would put them in the wrong checkpoint,
                // which exactly-once cannot have).
                let hold_back = true;
                inboxes.insert(
                    stage.name.clone(),
                    Inbox::new(
                        rx,
                        stage.inputs.len() + pipeline.dead_letter_feeders(&stage.name).count(),
                        hold_back,
                    ),
                );
                senders.insert(stage.name.clone(), tx);
            }
        }
        for stage in pipeline.stages.values() {
            let routes = pipeline
                .consumers_of(&stage.name)
                .filter_map(|c| {
                    senders.get(&c.name).map(|tx| Route {
                        to: c.name.clone(),
                        tx: tx.clone(),
                    })
                })
                .collect();
            let target = stage
                .dead_letter
                .as_deref()
                .and_then(|d| senders.get(d).cloned());
            let slot = topo.new_slot(stage, routes, target, senders.get(&stage.name));
            topo.slots.insert(stage.name.clone(), slot);
        }
        // Only stages hold senders now: a channel closes when its last
        // upstream finishes.
        drop(senders);

        // Sinks first, then transforms, then sources: a sink may create the
        // topic a source of the same pipeline reads.
        let mut order: Vec<&Stage> = pipeline.stages.values().collect();
        order.sort_by_key(|s| match s.component.kind() {
            Kind::Sink => 0,
            Kind::Transform => 1,
            Kind::Source => 2,
        });
        let mut launches = Vec::new();
        let mut errors = Vec::new();
        for stage in order {
            let input = match inboxes.remove(&stage.name) {
                Some(inbox) => InputFrom::Fresh(inbox),
                None => InputFrom::Nothing,
            };
            let control = topo
                .setup
                .as_mut()
                .filter(|_| stage.component.kind() == Kind::Source)
                .map(|w| w.source_control(&stage.name, topo.shutdown.clone()));
            let resume = topo.setup.as_ref().and_then(|w| w.saved_stage(&stage.name));
            match topo.launch(stage, input, control, resume) {
                Ok(l) => launches.push(l),
                Err(source) => errors.push(StageError {
                    stage: stage.name.clone(),
                    source,
                }),
            }
        }
        if !errors.is_empty() {
            topo.shutdown.cancel();
            return Err(RunError::Build(errors));
        }
        for l in launches {
            topo.spawn(l);
        }
        if let Some(w) = topo.setup.take() {
            topo.coordinator = Some(w.spawn(topo.shutdown.clone()));
        }
        topo.prints = reload::fingerprints(&pipeline).unwrap_or_default();
        topo.publish();
        Ok(topo)
    }

    /// Asks sources to stop; the rest drains.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// The pipeline as it runs now.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Runs until every stage has finished, carrying out reload requests
    /// meanwhile. A failing stage stops the sources so the rest drains, and
    /// the failure is returned.
    pub async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<ReloadRequest>,
    ) -> Result<(), RunError> {
        loop {
            tokio::select! {
                joined = self.tasks.join_next() => match joined {
                    Some(joined) => self.on_task_end(joined).await,
                    None => break,
                },
                Some(req) = requests.recv() => {
                    let report = self.reload(&req.trigger).await;
                    if let Some(reply) = req.reply {
                        let _ = reply.send(report);
                    }
                }
            }
        }
        drop(self.reports.take());
        if let Some(c) = self.coordinator.take()
            && let Ok(Err(reason)) = c.await
        {
            self.failures.push(StageError {
                stage: "checkpoints".into(),
                source: reason.into(),
            });
        }
        if self.failures.is_empty() {
            Ok(())
        } else {
            Err(RunError::Failed(std::mem::take(&mut self.failures)))
        }
    }

    /// Runs until every stage has finished, with no reloads.
    pub async fn wait(self) -> Result<(), RunError> {
        let (_keep, requests) = mpsc::unbounded_channel();
        self.run(requests).await
    }

    async fn on_task_end(&mut self, joined: Result<StageResult, tokio::task::JoinError>) {
        let (stage, instance, result) = match joined {
            Ok(r) => r,
            Err(e) => (
                "<task>".to_owned(),
                0,
                Err(format!("stage task panicked: {e}").into()),
            ),
        };
        let current = self.slots.get(&stage).is_some_and(|s| s.task == instance);
        if !current && instance != 0 {
            // A replaced or removed instance finished draining.
            match result {
                Ok(()) => tracing::debug!(stage, instance, "replaced stage instance finished"),
                Err(e) => {
                    tracing::warn!(stage, instance, error = %e, "replaced stage instance failed while stopping")
                }
            }
            if !self.slots.contains_key(&stage) {
                self.telemetry.forget(&stage);
            }
            return;
        }
        self.writers.ended(&stage);
        if let Some(slot) = self.slots.get(&stage) {
            // Its consumers must see it gone, as when the stage owned its
            // senders alone.
            slot.output.close().await;
            slot.dead_letters.retarget(None).await.end().await;
        }
        if let Some(r) = &self.reports {
            let _ = r.send(if result.is_ok() {
                CheckpointReport::Ended {
                    stage: stage.clone(),
                }
            } else {
                CheckpointReport::Failed {
                    stage: stage.clone(),
                }
            });
        }
        let slot = self.slots.get_mut(&stage);
        match result {
            Ok(()) => {
                tracing::debug!(stage, "stage finished");
                if let Some(s) = slot {
                    s.state = StageState::Ended;
                }
            }
            Err(source) => {
                tracing::error!(stage, error = %source, "stage failed; stopping the pipeline");
                if let Some(s) = slot {
                    s.state = StageState::Failed;
                    s.error = Some(source.to_string());
                }
                self.failures.push(StageError { stage, source });
                self.shutdown.cancel();
            }
        }
        self.publish();
    }

    /// Writes every stage's status entry.
    fn publish(&self) {
        for (name, slot) in &self.slots {
            let Some(stage) = self.pipeline.stages.get(name) else {
                continue;
            };
            self.telemetry.set_stage(StageStatus {
                name: name.clone(),
                kind: slot.kind.noun().to_owned(),
                type_name: stage.component.type_name().to_owned(),
                inputs: stage.inputs.clone(),
                outputs: self
                    .pipeline
                    .consumers_of(name)
                    .map(|c| c.name.clone())
                    .collect(),
                dead_letter: stage.dead_letter.clone(),
                instance: slot.instance,
                started_ms: slot.started_ms,
                state: slot.state,
                error: slot.error.clone(),
                counters: Default::default(),
            });
        }
        let names: Vec<String> = self.slots.keys().cloned().collect();
        self.telemetry.order_stages(&names);
    }
}

#[cfg(test)]
mod tests;
