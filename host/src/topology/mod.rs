//! Building, running and reloading the stage graph.
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

mod context;
mod input;
mod plan;
mod stateless;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use indexmap::IndexMap;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use context::{
    BoxError, Closed, DeadLetters, Output, SinkContext, SourceContext, TransformContext,
};
pub use input::{Inbox, Input, Item};
pub use stateless::{Processed, run_stateless};

use crate::checkpoint::{Control, Members, Report, Reporter, SavedStage, SourceControl, Wiring};
use crate::config::{Component, Kind, Pipeline, Stage};
use crate::event::Batch;
use crate::metrics::Registry;
use crate::status::{Board, Failure, ReloadReport, StageState, StageStatus};
use crate::transforms::TransformConfig;
use crate::transforms::wasm::{Swap, SwapReply};
use crate::util::now_ms;
use context::Route;
use plan::Fingerprints;

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

/// An in-place update for a running transform.
#[derive(Debug)]
pub enum Update {
    /// A new plugin build or configuration for a `wasm` stage.
    Wasm(Box<Swap>),
}

/// A request to reload the pipeline from its file.
#[derive(Debug)]
pub struct ReloadRequest {
    /// What asked for it, for the report (`SIGHUP`, `admin`, `file change`).
    pub trigger: String,
    /// Where the outcome goes, if anyone waits for it.
    pub reply: Option<oneshot::Sender<ReloadReport>>,
}

/// How long a reload waits for a stage instance to stop or swap.
const STAGE_WAIT: Duration = Duration::from_secs(60);

/// How long a graph change waits for a checkpoint in flight to complete.
const PAUSE_WAIT: Duration = Duration::from_secs(10);

type StageResult = (String, u64, Result<(), BoxError>);

/// What the topology keeps per stage name, across instances.
struct Slot {
    kind: Kind,
    /// The running instance's identity as reported: changes on restart
    /// and on a plugin swap.
    instance: u64,
    /// The running instance's task (a swap keeps the task).
    task: u64,
    started_ms: i64,
    state: StageState,
    error: Option<String>,
    /// Consumers of the stage's events (empty for sinks).
    output: Output,
    dead_letters: DeadLetters,
    /// The stage's input channel, to connect new upstream stages
    /// (transforms and sinks).
    inbox: Option<mpsc::WeakSender<Batch>>,
    /// Asks the running instance to stop (sources) or to stop and hand its
    /// input over (transforms and sinks).
    stop: CancellationToken,
    /// Where the running instance hands its input over.
    handback: Option<oneshot::Receiver<Inbox>>,
    /// In-place updates for the running instance.
    updates: Option<mpsc::UnboundedSender<Update>>,
    /// A source's position when it stopped on request.
    stopped_at: Arc<Mutex<Option<serde_json::Value>>>,
    /// Cancelled when the running instance's task has finished.
    ended: CancellationToken,
    /// A new stage's channel is held open by this until its edges are
    /// attached.
    pending_tx: Option<mpsc::Sender<Batch>>,
}

/// A built stage instance, not yet started.
struct Launch {
    name: String,
    instance: u64,
    fut: BoxFuture<'static, Result<(), BoxError>>,
    stop: CancellationToken,
    handback: Option<oneshot::Receiver<Inbox>>,
    updates: Option<mpsc::UnboundedSender<Update>>,
    stopped_at: Arc<Mutex<Option<serde_json::Value>>>,
}

/// Where a new instance's input comes from.
enum InputFrom {
    /// Sources have none.
    Nothing,
    /// A new channel.
    Fresh(Inbox),
    /// The instance it replaces hands it over.
    Handover(oneshot::Receiver<Inbox>),
}

/// A running pipeline: its stages, their channels, and the means to change
/// them while they run.
pub struct Topology {
    pipeline: Pipeline,
    registry: Registry,
    board: Board,
    shutdown: CancellationToken,
    slots: IndexMap<String, Slot>,
    tasks: JoinSet<StageResult>,
    next_slot: u32,
    next_instance: u64,
    capacity: usize,
    prints: Fingerprints,
    writers: Writers,
    wiring: Option<Wiring>,
    reports: Option<mpsc::UnboundedSender<Report>>,
    /// Reloads pause and resume checkpoints here.
    checkpoints: Option<mpsc::UnboundedSender<Control>>,
    coordinator: Option<tokio::task::JoinHandle<()>>,
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
        registry: &Registry,
        board: &Board,
        shutdown: CancellationToken,
    ) -> Result<Topology, RunError> {
        let capacity = pipeline.options.channel_capacity.unwrap_or(8).max(1);
        let writers = Writers::new(&pipeline);
        let mut topo = Topology {
            pipeline: pipeline.clone(),
            registry: registry.clone(),
            board: board.clone(),
            shutdown,
            slots: IndexMap::new(),
            tasks: JoinSet::new(),
            next_slot: 0,
            next_instance: 1,
            capacity,
            prints: Fingerprints::new(),
            writers,
            wiring: None,
            reports: None,
            checkpoints: None,
            coordinator: None,
            failures: Vec::new(),
            reloads: 0,
        };
        topo.wiring = topo.checkpoint_wiring()?;
        topo.reports = topo.wiring.as_ref().map(|w| w.reports.clone());
        topo.checkpoints = topo.wiring.as_ref().map(|w| w.control.clone());

        // Channels first, so outputs can be wired to them.
        let mut senders: HashMap<String, mpsc::Sender<Batch>> = HashMap::new();
        let mut inboxes: HashMap<String, Inbox> = HashMap::new();
        for stage in pipeline.stages.values() {
            if stage.component.kind() != Kind::Source {
                let (tx, rx) = mpsc::channel(capacity);
                let hold_back = stage.component.kind() == Kind::Transform;
                inboxes.insert(
                    stage.name.clone(),
                    Inbox::new(rx, stage.inputs.len(), hold_back),
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
                .wiring
                .as_mut()
                .filter(|_| stage.component.kind() == Kind::Source)
                .map(|w| w.source_control(&stage.name, topo.shutdown.clone()));
            let resume = topo
                .wiring
                .as_ref()
                .and_then(|w| w.saved_stage(&stage.name));
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
        if let Some(w) = topo.wiring.take() {
            topo.coordinator = Some(w.spawn(topo.shutdown.clone()));
        }
        topo.prints = fingerprints(&pipeline).unwrap_or_default();
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
        if let Some(c) = self.coordinator.take() {
            let _ = c.await;
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
                self.registry.remove(&stage);
                self.board.hub().forget(&stage);
            }
            return;
        }
        self.writers.ended(&stage);
        if let Some(slot) = self.slots.get(&stage) {
            // Its consumers must see it gone, as when the stage owned its
            // senders alone.
            slot.output.close().await;
            slot.dead_letters.retarget(None);
        }
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

    fn checkpoint_wiring(&self) -> Result<Option<Wiring>, RunError> {
        let Some(dir) = &self.pipeline.options.state_dir else {
            return Ok(None);
        };
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
        let p = &self.pipeline;
        let members = members(p);
        let interval = p
            .options
            .checkpoint_interval
            .map_or(Duration::from_secs(10), |d| d.get());
        Ok(Some(Wiring::new(dir.clone(), interval, members, saved)))
    }

    fn new_slot(
        &mut self,
        stage: &Stage,
        routes: Vec<Route>,
        dead_letter: Option<mpsc::Sender<Batch>>,
        inbox: Option<&mpsc::Sender<Batch>>,
    ) -> Slot {
        let id = self.next_slot;
        self.next_slot += 1;
        let metrics = self.registry.stage(&stage.name);
        Slot {
            kind: stage.component.kind(),
            instance: 0,
            task: 0,
            started_ms: 0,
            state: StageState::Running,
            error: None,
            output: Output::new(
                routes,
                metrics.clone(),
                self.board.hub().tap(&stage.name),
                id,
            ),
            dead_letters: DeadLetters::new(&stage.name, dead_letter, metrics),
            inbox: inbox.map(mpsc::Sender::downgrade),
            stop: CancellationToken::new(),
            handback: None,
            updates: None,
            stopped_at: Arc::new(Mutex::new(None)),
            ended: CancellationToken::new(),
            pending_tx: None,
        }
    }

    fn reporter(&self, stage: &str) -> Reporter {
        match &self.reports {
            Some(tx) => Reporter::new(stage, tx.clone()),
            None => Reporter::off(stage),
        }
    }

    /// Builds an instance of `stage` for its slot (which must exist).
    fn launch(
        &mut self,
        stage: &Stage,
        input: InputFrom,
        control: Option<SourceControl>,
        resume: Option<SavedStage>,
    ) -> Result<Launch, BoxError> {
        let instance = self.next_instance;
        self.next_instance += 1;
        let name = stage.name.clone();
        let slot = &self.slots[&name];
        let (output, dead_letters) = (slot.output.clone(), slot.dead_letters.clone());
        let kind = stage.component.kind();
        let checkpointing = control.as_ref().is_some_and(SourceControl::checkpoints);
        // A checkpointing source stops for the pipeline's shutdown through
        // a final checkpoint; its own token only serves reloads.
        let stop = if kind == Kind::Source && !checkpointing {
            self.shutdown.child_token()
        } else {
            CancellationToken::new()
        };
        let (give, take) = oneshot::channel();
        let input = match input {
            InputFrom::Nothing => None,
            InputFrom::Fresh(inbox) => Some(Input::ready(inbox, stop.clone(), Some(give))),
            InputFrom::Handover(from) => Some(Input::pending(from, stop.clone(), Some(give))),
        };
        let handback = input.as_ref().map(|_| take);
        let metrics = self.registry.stage(&name);
        let stopped_at = Arc::new(Mutex::new(None));
        let mut updates = None;
        let fut = match &stage.component {
            Component::Source(c) => {
                let mut control =
                    control.unwrap_or_else(|| SourceControl::plain(&name, stop.clone()));
                control.stopped_at = Some(stopped_at.clone());
                control.stop_on(stop.clone());
                c.build(SourceContext {
                    name: name.clone(),
                    out: output,
                    dead_letters,
                    control,
                    metrics,
                    batch_size: self.pipeline.batch_size(),
                    stopping: self.shutdown.clone(),
                    writers_done: self.writers.token_for(&name),
                })?
            }
            Component::Transform(c) => {
                let (tx, rx) = mpsc::unbounded_channel();
                updates = Some(tx);
                c.build(TransformContext {
                    name: name.clone(),
                    input: input.expect("transforms have an input"),
                    out: output,
                    dead_letters,
                    metrics,
                    updates: rx,
                    reporter: self.reporter(&name),
                    resume,
                })?
            }
            Component::Sink(c) => c.build(SinkContext {
                name: name.clone(),
                input: input
                    .expect("sinks have an input")
                    .with_tap(self.board.hub().tap(&name)),
                dead_letters,
                metrics,
                reporter: self.reporter(&name),
                hub: self.board.hub().clone(),
            })?,
        };
        Ok(Launch {
            name,
            instance,
            fut,
            stop,
            handback,
            updates,
            stopped_at,
        })
    }

    /// Starts a built instance; it becomes its slot's running instance.
    fn spawn(&mut self, l: Launch) {
        let ended = CancellationToken::new();
        let guard = ended.clone().drop_guard();
        let (name, instance, fut) = (l.name.clone(), l.instance, l.fut);
        tracing::debug!(stage = name, instance, "stage started");
        self.tasks.spawn(async move {
            let result = fut.await;
            drop(guard);
            (name, instance, result)
        });
        let slot = self
            .slots
            .get_mut(&l.name)
            .expect("launched stages have a slot");
        slot.instance = l.instance;
        slot.task = l.instance;
        slot.started_ms = now_ms();
        slot.state = StageState::Running;
        slot.error = None;
        slot.stop = l.stop;
        slot.handback = l.handback;
        slot.updates = l.updates;
        slot.stopped_at = l.stopped_at;
        slot.ended = ended;
    }

    /// Writes every stage's entry to the status board.
    fn publish(&self) {
        for (name, slot) in &self.slots {
            let Some(stage) = self.pipeline.stages.get(name) else {
                continue;
            };
            self.board.set_stage(StageStatus {
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
        self.board.order_stages(&names);
    }

    /// Reloads the pipeline from its file: the new file is parsed and
    /// checked, then only what changed is touched. Unchanged stages keep
    /// running as they are; changed `wasm` stages get the new plugin or
    /// settings in place with their state carried over; other changed
    /// stages are replaced by a new instance that takes over the old one's
    /// queue; new stages start; removed stages drain and stop; edges are
    /// rewired between batches. An invalid file, or a new stage, plugin or
    /// model that does not build, is rejected and nothing changes.
    pub async fn reload(&mut self, trigger: &str) -> ReloadReport {
        let started = Instant::now();
        self.reloads += 1;
        let mut report = ReloadReport {
            id: self.reloads,
            trigger: trigger.to_owned(),
            at_ms: now_ms(),
            ..ReloadReport::default()
        };
        if let Err(reason) = self.apply_reload(&mut report).await {
            report.rejected = Some(reason);
        }
        report.ok = report.rejected.is_none() && report.failed.is_empty();
        report.duration_ms = started.elapsed().as_millis() as u64;
        if report.ok {
            tracing::info!(
                reload = report.id,
                trigger,
                kept = report.kept.len(),
                swapped = report.swapped.len(),
                restarted = report.restarted.len(),
                added = report.added.len(),
                removed = report.removed.len(),
                elapsed_ms = report.duration_ms,
                "reload applied: {}",
                report.summary()
            );
        } else {
            tracing::error!(
                reload = report.id,
                trigger,
                "reload failed: {}",
                report.summary()
            );
        }
        self.publish();
        self.board.record_reload(report.clone());
        report
    }

    async fn apply_reload(&mut self, report: &mut ReloadReport) -> Result<(), String> {
        if self.shutdown.is_cancelled() {
            return Err("the pipeline is shutting down".into());
        }
        let file = self.pipeline.file.clone();
        let new = tokio::task::block_in_place(|| crate::config::load(&file))
            .map_err(|e| e.to_string())?;
        let new_prints = tokio::task::block_in_place(|| fingerprints(&new))?;
        let plan = plan::diff(&self.pipeline, &new, &self.prints, &new_prints)?;
        // A checkpoint must match the graph it was taken from: the graph
        // changes only while no checkpoint is in flight.
        let pause = self.checkpoints.is_some() && plan.is_structural(&new);
        if pause {
            self.pause_checkpoints().await?;
            if self.shutdown.is_cancelled() {
                self.resume_checkpoints(Vec::new());
                return Err("the pipeline is shutting down".into());
            }
        }
        let result = self.apply_plan(plan, new, new_prints, report).await;
        if pause {
            let started = report
                .added
                .iter()
                .chain(&report.restarted)
                .cloned()
                .collect();
            self.resume_checkpoints(started);
        }
        result
    }

    /// Lets checkpoints go on, with the members of the pipeline as it is
    /// now; `started` are stages the reload (re)started.
    fn resume_checkpoints(&self, started: Vec<String>) {
        if let Some(c) = &self.checkpoints {
            let _ = c.send(Control::Resume {
                members: members(&self.pipeline),
                started,
            });
        }
    }

    /// Waits until no checkpoint is in flight and holds further ones.
    async fn pause_checkpoints(&self) -> Result<(), String> {
        let Some(c) = &self.checkpoints else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        if c.send(Control::Pause(tx)).is_err() {
            return Err("checkpoints have stopped (the pipeline is ending)".into());
        }
        match tokio::time::timeout(PAUSE_WAIT, rx).await {
            Ok(Ok(())) => Ok(()),
            _ => {
                // Let checkpoints go on as before.
                self.resume_checkpoints(Vec::new());
                Err(format!(
                    "a checkpoint in flight did not complete within {PAUSE_WAIT:?}; the graph was left unchanged, try again"
                ))
            }
        }
    }

    /// A checkpointing control for a source a reload starts, or `None`
    /// when the pipeline does not checkpoint.
    fn joined_source(&self, name: &str) -> Option<SourceControl> {
        let c = self.checkpoints.as_ref()?;
        Some(Wiring::joined_source(name, self.reporter(name), c))
    }

    /// Carries out a checked plan (see [`Topology::reload`]).
    async fn apply_plan(
        &mut self,
        plan: plan::Plan,
        new: Pipeline,
        new_prints: Fingerprints,
        report: &mut ReloadReport,
    ) -> Result<(), String> {
        report.kept = plan.keep.clone();
        report.rewired = plan.rewire.clone();
        let old = std::mem::replace(&mut self.pipeline, new.clone());
        let mut effective = new;
        let mut prints = new_prints;

        // Prepare everything that can fail before changing anything.
        let prepared = match self.prepare(&plan).await {
            Ok(p) => p,
            Err(e) => {
                self.pipeline = old;
                return Err(e);
            }
        };
        let Prepared {
            swaps,
            launches,
            restarts,
        } = prepared;

        // 1. Swap plugins in place.
        for (name, swap, outcome) in swaps {
            match self.swap(&name, swap, outcome).await {
                Ok(pause_us) => {
                    report.swapped.push(name);
                    report.max_swap_pause_us = report.max_swap_pause_us.max(pause_us);
                }
                Err(reason) => {
                    // The stage keeps running as it was.
                    effective.stages[&name].component = old.stages[&name].component.clone();
                    match self.prints.get(&name) {
                        Some(p) => prints.insert(name.clone(), p.clone()),
                        None => prints.remove(&name),
                    };
                    report.failed.push(Failure {
                        stage: name,
                        reason,
                    });
                }
            }
        }
        // 2. New transforms and sinks start, waiting for input.
        let mut source_launches = Vec::new();
        for l in launches {
            if self.slots[&l.name].kind == Kind::Source {
                source_launches.push(l);
            } else {
                report.added.push(l.name.clone());
                self.spawn(l);
            }
        }
        // 3. Changed transforms and sinks: the old instance stops between
        // batches and hands its queue to the new one.
        for (l, give) in restarts {
            let slot = self.slots.get_mut(&l.name).expect("restarted stages exist");
            if let Some(from) = slot.handback.take() {
                tokio::spawn(async move {
                    if let Ok(inbox) = from.await {
                        let _ = give.send(inbox);
                    }
                });
            }
            slot.stop.cancel();
            report.restarted.push(l.name.clone());
            self.spawn(l);
        }
        // 4. Rewire: dead-letter targets, then new edges, then removed ones.
        self.rewire(&old).await;
        // 5. Changed sources stop, and start again from where they were.
        for name in &plan.restart {
            if self.slots[name].kind != Kind::Source {
                continue;
            }
            match self.restart_source(name, &old).await {
                Ok(()) => report.restarted.push(name.clone()),
                Err(reason) => {
                    effective.stages[name].component = old.stages[name].component.clone();
                    report.failed.push(Failure {
                        stage: name.clone(),
                        reason,
                    });
                }
            }
        }
        // 6. New sources start.
        for l in source_launches {
            report.added.push(l.name.clone());
            self.spawn(l);
        }
        // 7. Removed stages drain and stop.
        for name in &plan.remove {
            self.remove(name).await;
            report.removed.push(name.clone());
        }
        self.pipeline = effective;
        self.prints = prints;
        self.writers.update(&self.pipeline);
        Ok(())
    }

    /// Builds what a reload needs: new plugin instances, new stages (with
    /// their slots and channels), replacement instances. Nothing runs yet;
    /// on failure everything built is dropped and the slots of new stages
    /// are removed again.
    async fn prepare(&mut self, plan: &plan::Plan) -> Result<Prepared, String> {
        let new = self.pipeline.clone();
        let mut errors = Vec::new();
        let mut swaps = Vec::new();
        for name in &plan.swap {
            let Component::Transform(TransformConfig::Wasm(c)) = &new.stages[name].component else {
                unreachable!("swaps are wasm stages");
            };
            match tokio::task::block_in_place(|| c.prepare_swap(name)) {
                Ok((swap, outcome)) => swaps.push((name.clone(), swap, outcome)),
                Err(e) => errors.push(format!("stage `{name}`: {e}")),
            }
        }
        let mut launches = Vec::new();
        for name in &plan.add {
            let stage = &new.stages[name];
            let kind = stage.component.kind();
            let (tx, input) = if kind == Kind::Source {
                (None, InputFrom::Nothing)
            } else {
                let (tx, rx) = mpsc::channel(self.capacity);
                // Edges are attached later, each announcing itself.
                let inbox = Inbox::new(rx, 0, kind == Kind::Transform);
                (Some(tx), InputFrom::Fresh(inbox))
            };
            let mut slot = self.new_slot(stage, Vec::new(), None, tx.as_ref());
            // Keeps the channel open until `rewire` has attached its edges.
            slot.pending_tx = tx;
            self.slots.insert(name.clone(), slot);
            let control = (kind == Kind::Source)
                .then(|| self.joined_source(&stage.name))
                .flatten();
            match tokio::task::block_in_place(|| self.launch(stage, input, control, None)) {
                Ok(l) => launches.push(l),
                Err(e) => errors.push(format!("stage `{name}`: {e}")),
            }
        }
        let mut restarts = Vec::new();
        for name in &plan.restart {
            let stage = &new.stages[name];
            if stage.component.kind() == Kind::Source {
                continue;
            }
            let (give, take) = oneshot::channel();
            match tokio::task::block_in_place(|| {
                self.launch(stage, InputFrom::Handover(take), None, None)
            }) {
                Ok(l) => restarts.push((l, give)),
                Err(e) => errors.push(format!("stage `{name}`: {e}")),
            }
        }
        if !errors.is_empty() {
            for name in &plan.add {
                self.slots.shift_remove(name);
            }
            return Err(errors.join("; "));
        }
        Ok(Prepared {
            swaps,
            launches,
            restarts,
        })
    }

    /// Sends a prepared plugin to its stage and waits for the outcome.
    async fn swap(&mut self, name: &str, swap: Swap, outcome: SwapReply) -> Result<u64, String> {
        let slot = self.slots.get_mut(name).expect("swapped stages exist");
        let sent = slot
            .updates
            .as_ref()
            .is_some_and(|u| u.send(Update::Wasm(Box::new(swap))).is_ok());
        if !sent {
            return Err("the stage is not running".into());
        }
        let o = tokio::time::timeout(STAGE_WAIT, outcome)
            .await
            .map_err(|_| "the stage did not take the new plugin in time".to_owned())?
            .map_err(|_| "the stage stopped before taking the new plugin".to_owned())??;
        slot.instance = self.next_instance;
        self.next_instance += 1;
        slot.started_ms = now_ms();
        Ok(o.pause_us)
    }

    /// Brings every slot's edges and dead-letter target in line with the
    /// (new) pipeline. New edges are attached before old ones are detached,
    /// so a stage never sees all its inputs end during a rewire.
    async fn rewire(&mut self, old: &Pipeline) {
        let pipeline = self.pipeline.clone();
        let sender_of = |slots: &IndexMap<String, Slot>, name: &str| {
            slots
                .get(name)
                .and_then(|s| s.inbox.as_ref())
                .and_then(mpsc::WeakSender::upgrade)
        };
        // Take every new dead-letter sender before releasing any old one:
        // when two stages trade dead-letter sinks, the first retarget would
        // otherwise drop a sink's last sender and end it before the second
        // stage is pointed at it.
        let retargets: Vec<(String, Option<mpsc::Sender<Batch>>)> = pipeline
            .stages
            .values()
            .filter(|stage| {
                old.stages.get(&stage.name).map(|s| &s.dead_letter) != Some(&stage.dead_letter)
            })
            .map(|stage| {
                let target = stage
                    .dead_letter
                    .as_deref()
                    .and_then(|d| sender_of(&self.slots, d));
                (stage.name.clone(), target)
            })
            .collect();
        for (name, target) in retargets {
            self.slots[&name].dead_letters.retarget(target);
        }
        let mut detach = Vec::new();
        for stage in pipeline.stages.values() {
            let slot = &self.slots[&stage.name];
            if slot.kind == Kind::Sink {
                continue;
            }
            let want: HashSet<String> = pipeline
                .consumers_of(&stage.name)
                .map(|c| c.name.clone())
                .collect();
            let have: HashSet<String> = slot.output.consumers().await.into_iter().collect();
            for to in want.difference(&have) {
                match sender_of(&self.slots, to) {
                    Some(tx) => slot.output.attach(to, tx).await,
                    None => tracing::warn!(
                        stage = stage.name,
                        to,
                        "cannot connect: the consuming stage has ended"
                    ),
                }
            }
            for to in have.difference(&want) {
                detach.push((stage.name.clone(), to.clone()));
            }
        }
        for (from, to) in detach {
            self.slots[&from].output.detach(&to).await;
        }
        for slot in self.slots.values_mut() {
            slot.pending_tx = None;
        }
    }

    /// Stops a source, then starts it with its new settings from the
    /// position where it stopped (for sources that have one). If the new
    /// settings do not build, the old ones are started again.
    async fn restart_source(&mut self, name: &str, old: &Pipeline) -> Result<(), String> {
        let stage = self.pipeline.stages[name].clone();
        let slot = &self.slots[name];
        slot.stop.cancel();
        let ended = slot.ended.clone();
        if tokio::time::timeout(STAGE_WAIT, ended.cancelled())
            .await
            .is_err()
        {
            return Err("the running source did not stop in time".into());
        }
        let position = slot.stopped_at.lock().expect("position lock").take();
        // With checkpoints, the new instance takes checkpoint requests on a
        // channel of its own.
        let control =
            |base: Option<SourceControl>, pos: Option<serde_json::Value>, stage: &Stage| {
                let mut c =
                    base.unwrap_or_else(|| SourceControl::plain(name, CancellationToken::new()));
                if let Component::Source(s) = &stage.component
                    && s.resumes_where_stopped()
                {
                    c.resume = pos;
                }
                c
            };
        // `launch` adds the instance's stop token to the control.
        let base = self.joined_source(name);
        let first = tokio::task::block_in_place(|| {
            self.launch(
                &stage,
                InputFrom::Nothing,
                Some(control(base, position.clone(), &stage)),
                None,
            )
        });
        match first {
            Ok(l) => {
                self.spawn(l);
                Ok(())
            }
            Err(e) => {
                let before = old.stages[name].clone();
                let base = self.joined_source(name);
                let back = tokio::task::block_in_place(|| {
                    self.launch(
                        &before,
                        InputFrom::Nothing,
                        Some(control(base, position, &before)),
                        None,
                    )
                });
                match back {
                    Ok(l) => {
                        self.spawn(l);
                        Err(format!("{e}; the previous settings run again"))
                    }
                    Err(e2) => Err(format!(
                        "{e}; restarting with the previous settings failed too: {e2}"
                    )),
                }
            }
        }
    }

    /// Drains and stops a stage that is no longer in the pipeline.
    async fn remove(&mut self, name: &str) {
        let Some(slot) = self.slots.shift_remove(name) else {
            return;
        };
        self.board
            .update_stage(name, |s| s.state = StageState::Ended);
        if slot.kind == Kind::Source {
            slot.stop.cancel();
            if tokio::time::timeout(STAGE_WAIT, slot.ended.cancelled())
                .await
                .is_err()
            {
                tracing::warn!(stage = name, "removed source did not stop in time");
            }
            for to in slot.output.consumers().await {
                slot.output.detach(&to).await;
            }
        }
        // Transforms and sinks were detached from every input by `rewire`;
        // they process what is queued, flush and end on their own.
    }
}

/// What [`Topology::prepare`] built.
struct Prepared {
    swaps: Vec<(String, Swap, SwapReply)>,
    launches: Vec<Launch>,
    restarts: Vec<(Launch, oneshot::Sender<Inbox>)>,
}

/// Digests of the plugin and model files of every transform.
fn fingerprints(p: &Pipeline) -> Result<Fingerprints, String> {
    let mut prints = Fingerprints::new();
    for s in p.stages.values() {
        if let Component::Transform(t) = &s.component {
            let print = t
                .fingerprint()
                .map_err(|e| format!("stage `{}`: {e}", s.name))?;
            prints.insert(s.name.clone(), print);
        }
    }
    Ok(prints)
}

/// Sources that read what sinks of the same pipeline write (a Kafka topic
/// produced and consumed in one pipeline), so `exit_at_end` waits for the
/// writers to finish instead of stopping at a topic that is still filling.
#[derive(Default)]
struct Writers {
    /// Source name -> (writer sink names still running, token).
    waits: HashMap<String, (HashSet<String>, CancellationToken)>,
    /// Stages that have ended.
    ended: HashSet<String>,
}

impl Writers {
    fn new(pipeline: &Pipeline) -> Self {
        let mut w = Writers::default();
        w.update(pipeline);
        w
    }

    /// Recomputes who waits for whom (after a reload), keeping the tokens
    /// already handed out.
    fn update(&mut self, pipeline: &Pipeline) {
        use crate::sinks::SinkConfig;
        use crate::sources::SourceConfig;
        for source in pipeline.stages.values() {
            let Component::Source(SourceConfig::Kafka(k)) = &source.component else {
                continue;
            };
            let brokers = crate::kafka::Brokers::from_setting(k.brokers.as_deref());
            let topics = k.topic_list();
            let sinks: HashSet<String> = pipeline
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
                .filter(|s| !self.ended.contains(s))
                .collect();
            match self.waits.get_mut(&source.name) {
                Some((writers, token)) => {
                    *writers = sinks;
                    if writers.is_empty() {
                        token.cancel();
                    }
                }
                None if !sinks.is_empty() => {
                    self.waits
                        .insert(source.name.clone(), (sinks, CancellationToken::new()));
                }
                None => {}
            }
        }
    }

    fn token_for(&self, source: &str) -> Option<CancellationToken> {
        self.waits.get(source).map(|(_, t)| t.clone())
    }

    /// A stage ended: release sources whose writers have all finished.
    fn ended(&mut self, stage: &str) {
        self.ended.insert(stage.to_owned());
        for (writers, token) in self.waits.values_mut() {
            if writers.remove(stage) && writers.is_empty() {
                token.cancel();
            }
        }
    }
}

/// The stages a checkpoint waits for: sources, transforms, and sinks with
/// data inputs.
fn members(p: &Pipeline) -> Members {
    Members {
        sources: stages_of(p, |s| s.component.kind() == Kind::Source),
        transforms: stages_of(p, |s| s.component.kind() == Kind::Transform),
        sinks: stages_of(p, |s| {
            s.component.kind() == Kind::Sink && !s.inputs.is_empty()
        }),
    }
}

fn stages_of(
    pipeline: &Pipeline,
    keep: impl Fn(&Stage) -> bool,
) -> std::collections::BTreeSet<String> {
    pipeline
        .stages
        .values()
        .filter(|s| keep(s))
        .map(|s| s.name.clone())
        .collect()
}
