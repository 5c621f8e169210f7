//! Stage slots and launching: what the engine keeps per stage name (its
//! output, dead-letter output and input channel, which outlive instances),
//! and building an instance of a stage from its settings and starting it.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Topology;
use crate::checkpoint::{SavedStage, SourceControl};
use crate::config::{ComponentConfig, Kind, Stage};
use crate::event::Batch;
use crate::stage::{
    BoxError, DeadLetters, Inbox, Input, Output, Route, SinkContext, SourceContext, StageTask,
    TransformContext, Update,
};
use crate::telemetry::StageState;
use crate::util::now_ms;

/// What the engine keeps per stage name, across instances.
pub(super) struct StageSlot {
    pub(super) kind: Kind,
    /// The running instance's identity as reported: changes on restart
    /// and on a plugin swap.
    pub(super) instance: u64,
    /// The running instance's task (a swap keeps the task).
    pub(super) task: u64,
    pub(super) started_ms: i64,
    pub(super) state: StageState,
    pub(super) error: Option<String>,
    /// Consumers of the stage's events (empty for sinks).
    pub(super) output: Output,
    pub(super) dead_letters: DeadLetters,
    /// The stage's input channel, to connect new upstream stages
    /// (transforms and sinks).
    pub(super) inbox: Option<mpsc::WeakSender<Batch>>,
    /// Asks the running instance to stop (sources) or to stop and hand its
    /// input over (transforms and sinks).
    pub(super) stop: CancellationToken,
    /// Where the running instance hands its input over.
    pub(super) handback: Option<oneshot::Receiver<Inbox>>,
    /// In-place updates for the running instance.
    pub(super) updates: Option<mpsc::UnboundedSender<Update>>,
    /// A source's position when it stopped on request.
    pub(super) stopped_at: Arc<Mutex<Option<serde_json::Value>>>,
    /// Cancelled when the running instance's task has finished.
    pub(super) ended: CancellationToken,
    /// A new stage's channel is held open by this until its edges are
    /// attached.
    pub(super) pending_tx: Option<mpsc::Sender<Batch>>,
}

/// A built stage instance, not yet started.
pub(super) struct Launch {
    pub(super) name: String,
    pub(super) instance: u64,
    pub(super) fut: StageTask,
    pub(super) stop: CancellationToken,
    pub(super) handback: Option<oneshot::Receiver<Inbox>>,
    pub(super) updates: Option<mpsc::UnboundedSender<Update>>,
    pub(super) stopped_at: Arc<Mutex<Option<serde_json::Value>>>,
}

/// Where a new instance's input comes from.
pub(super) enum InputFrom {
    /// Sources have none.
    Nothing,
    /// A new channel.
    Fresh(Inbox),
    /// The instance it replaces hands it over.
    Handover(oneshot::Receiver<Inbox>),
}

impl Topology {
    /// A slot for `stage`: its output to `routes`, its dead-letter output
    /// to `dead_letter`, and (transforms and sinks) its input channel.
    pub(super) fn new_slot(
        &mut self,
        stage: &Stage,
        routes: Vec<Route>,
        dead_letter: Option<mpsc::Sender<Batch>>,
        inbox: Option<&mpsc::Sender<Batch>>,
    ) -> StageSlot {
        let id = self.next_slot;
        self.next_slot += 1;
        let metrics = self.telemetry.metrics(&stage.name);
        let kind = stage.component.kind();
        let dead_letters = DeadLetters::new(
            &stage.name,
            dead_letter,
            metrics.clone(),
            id,
            kind != Kind::Sink,
        );
        StageSlot {
            kind,
            instance: 0,
            task: 0,
            started_ms: 0,
            state: StageState::Running,
            error: None,
            output: Output::new(
                routes,
                metrics,
                self.telemetry.tap(&stage.name),
                id,
                Some(dead_letters.clone()),
            ),
            dead_letters,
            inbox: inbox.map(mpsc::Sender::downgrade),
            stop: CancellationToken::new(),
            handback: None,
            updates: None,
            stopped_at: Arc::new(Mutex::new(None)),
            ended: CancellationToken::new(),
            pending_tx: None,
        }
    }

    /// Builds an instance of `stage` for its slot (which must exist).
    pub(super) fn launch(
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
        let metrics = self.telemetry.metrics(&name);
        let stopped_at = Arc::new(Mutex::new(None));
        let mut updates = None;
        // Every log line of the stage, from building it on, carries its name.
        let span = tracing::info_span!("stage", stage = name.as_str());
        let entered = span.enter();
        let task: StageTask = match &stage.component {
            ComponentConfig::Source(c) => {
                let mut control =
                    control.unwrap_or_else(|| SourceControl::plain(&name, stop.clone()));
                control.stopped_at = Some(stopped_at.clone());
                control.stop_on(stop.clone());
                c.component().build(SourceContext {
                    name: name.clone(),
                    out: output,
                    dead_letters,
                    control,
                    metrics,
                    batch_size: self.pipeline.batch_size(),
                    stopping: self.shutdown.clone(),
                    writers_done: self.writers.token_for(&name),
                    extensions: self.extensions.clone(),
                })?
            }
            ComponentConfig::Transform(c) => {
                let (tx, rx) = mpsc::unbounded_channel();
                updates = Some(tx);
                c.component().build(TransformContext {
                    name: name.clone(),
                    input: input.expect("transforms have an input"),
                    out: output,
                    dead_letters,
                    metrics,
                    updates: rx,
                    reporter: self.reporter(&name),
                    resume,
                    extensions: self.extensions.clone(),
                })?
            }
            ComponentConfig::Sink(c) => c.component().build(SinkContext {
                name: name.clone(),
                input: input
                    .expect("sinks have an input")
                    .with_tap(self.telemetry.tap(&name)),
                dead_letters,
                metrics,
                reporter: self.reporter(&name),
                dashboards: self.telemetry.dashboards().clone(),
                extensions: self.extensions.clone(),
            })?,
        };
        drop(entered);
        Ok(Launch {
            name,
            instance,
            fut: Box::pin(task.instrument(span)),
            stop,
            handback,
            updates,
            stopped_at,
        })
    }

    /// Starts a built instance; it becomes its slot's running instance.
    pub(super) fn spawn(&mut self, l: Launch) {
        let ended = CancellationToken::new();
        let guard = ended.clone().drop_guard();
        let (name, instance, fut) = (l.name.clone(), l.instance, l.fut);
        tracing::debug!(stage = name.as_str(), instance, "stage started");
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
}
