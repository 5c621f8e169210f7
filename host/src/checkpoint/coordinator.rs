//! The checkpoint coordinator: asks every source for a checkpoint each
//! `checkpoint_interval`, collects positions, snapshots and sink
//! confirmations, and writes the checkpoint once every live stage has
//! answered. Reloads pause and resume it around graph changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::control::{Action, CheckpointReport, CheckpointReporter, SourceControl};
use super::store::{Saved, SavedStage, store};

/// Who the coordinator waits for.
#[derive(Debug, Clone, Default)]
pub struct Members {
    /// Source stages.
    pub sources: BTreeSet<String>,
    /// Stateful transforms.
    pub transforms: BTreeSet<String>,
    /// Sinks with data inputs.
    pub sinks: BTreeSet<String>,
}

#[derive(Default)]
struct Partial {
    last: bool,
    positions: BTreeMap<String, serde_json::Value>,
    snapshots: BTreeMap<String, SavedStage>,
    sinks: BTreeSet<String>,
}

/// Collects reports and writes checkpoints.
pub struct Coordinator {
    dir: PathBuf,
    interval: Duration,
    members: Members,
    sources: BTreeMap<String, mpsc::UnboundedSender<Action>>,
    saved: Saved,
}

/// What a reload asks of the coordinator.
#[derive(Debug)]
pub enum Control {
    /// Stop requesting checkpoints; answer once none is in flight (every
    /// barrier has left the pipeline), so the graph can change.
    Pause(oneshot::Sender<()>),
    /// Take checkpoint requests for `stage` on `commands` (a source that
    /// is new or replaced).
    Source {
        /// The source stage.
        stage: String,
        /// Where its requests go.
        commands: mpsc::UnboundedSender<Action>,
    },
    /// Request checkpoints again, from the stages in `members` (the
    /// pipeline after the reload). Stages no longer in it are forgotten,
    /// saved state included; new ones, and those in `started` (restarted
    /// by the reload), are waited for from now on.
    Resume {
        /// Every member of the reloaded pipeline.
        members: Members,
        /// Stages the reload started or restarted.
        started: Vec<String>,
    },
}

/// The parts topology wires into stages.
pub struct CheckpointSetup {
    /// Runs the coordinator until every stage has ended.
    pub coordinator: Coordinator,
    /// Stages report here.
    pub reports: mpsc::UnboundedSender<CheckpointReport>,
    /// Reloads talk to the coordinator here.
    pub control: mpsc::UnboundedSender<Control>,
    control_rx: mpsc::UnboundedReceiver<Control>,
    reports_rx: mpsc::UnboundedReceiver<CheckpointReport>,
    commands: BTreeMap<String, mpsc::UnboundedReceiver<Action>>,
}

impl CheckpointSetup {
    /// Sets up checkpoints in `dir`, resuming from `saved`.
    pub fn new(dir: PathBuf, interval: Duration, members: Members, saved: Option<Saved>) -> Self {
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let (control, control_rx) = mpsc::unbounded_channel();
        let mut senders = BTreeMap::new();
        let mut commands = BTreeMap::new();
        for s in &members.sources {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.insert(s.clone(), tx);
            commands.insert(s.clone(), rx);
        }
        CheckpointSetup {
            coordinator: Coordinator {
                dir,
                interval,
                members,
                sources: senders,
                saved: saved.unwrap_or_default(),
            },
            reports,
            control,
            control_rx,
            reports_rx,
            commands,
        }
    }

    /// A checkpointing control for a source started by a reload: requests
    /// come on a new channel, registered with the coordinator by `control`.
    pub fn joined_source(
        stage: &str,
        reporter: CheckpointReporter,
        control: &mpsc::UnboundedSender<Control>,
    ) -> SourceControl {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = control.send(Control::Source {
            stage: stage.to_owned(),
            commands: tx,
        });
        SourceControl::checkpointing(Some(rx), reporter, None, CancellationToken::new())
    }

    /// The control channel of source `stage`.
    pub fn source_control(&mut self, stage: &str, shutdown: CancellationToken) -> SourceControl {
        SourceControl::checkpointing(
            self.commands.remove(stage),
            self.reporter(stage),
            self.coordinator.saved.sources.get(stage).cloned(),
            shutdown,
        )
    }

    /// A reporter for `stage`.
    pub fn reporter(&self, stage: &str) -> CheckpointReporter {
        CheckpointReporter::new(stage, self.reports.clone())
    }

    /// Saved state of transform `stage`.
    pub fn saved_stage(&self, stage: &str) -> Option<SavedStage> {
        self.coordinator.saved.stages.get(stage).cloned()
    }

    /// Starts the coordinator; it ends when every stage has ended.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let CheckpointSetup {
            coordinator,
            reports,
            reports_rx,
            control_rx,
            ..
        } = self;
        drop(reports);
        tokio::spawn(coordinator.run(shutdown, reports_rx, control_rx))
    }
}

impl Coordinator {
    async fn run(
        mut self,
        shutdown: CancellationToken,
        mut reports: mpsc::UnboundedReceiver<CheckpointReport>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let mut next_id = self.saved.id + 1;
        let mut pending: BTreeMap<u64, Partial> = BTreeMap::new();
        let mut live = self.members.clone();
        let mut done_positions: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        let mut done_stages: BTreeMap<String, SavedStage> = BTreeMap::new();
        let mut ticker = tokio::time::interval(self.interval);
        ticker.tick().await;
        let mut stopping = false;
        let mut failed = false;
        let mut paused: Vec<oneshot::Sender<()>> = Vec::new();
        let mut is_paused = false;
        // The final checkpoint's id, once shutdown has asked for it: a
        // source that joins later (a reload racing the shutdown) is asked
        // for it too.
        let mut final_id: Option<u64> = None;
        loop {
            if is_paused && pending.is_empty() {
                for p in paused.drain(..) {
                    let _ = p.send(());
                }
            }
            tokio::select! {
                Some(c) = control.recv() => match c {
                    Control::Pause(reply) => {
                        is_paused = true;
                        paused.push(reply);
                    }
                    Control::Source { stage, commands } => {
                        if let Some(id) = final_id {
                            let _ = commands.send(Action::Checkpoint { id, last: true });
                        }
                        self.sources.insert(stage, commands);
                    }
                    Control::Resume { members, started } => {
                        is_paused = false;
                        self.change_members(members, &started, &mut live, &mut done_positions, &mut done_stages);
                        if let Some(id) = final_id {
                            // Sources that joined are asked too; those asked
                            // before have stopped or ignore the repeat.
                            for s in &started {
                                if live.sources.contains(s)
                                    && let Some(tx) = self.sources.get(s)
                                {
                                    let _ = tx.send(Action::Checkpoint { id, last: true });
                                }
                            }
                        }
                        if !failed {
                            self.complete(&mut pending, &live, &done_positions, &done_stages);
                        }
                    }
                },
                _ = ticker.tick(), if !stopping && !is_paused => {
                    if self.request(next_id, false, &live) {
                        pending.insert(next_id, Partial::default());
                        next_id += 1;
                    }
                }
                _ = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    final_id = Some(next_id);
                    if self.request(next_id, true, &live) {
                        pending.insert(next_id, Partial { last: true, ..Partial::default() });
                        next_id += 1;
                    }
                }
                report = reports.recv() => {
                    let Some(report) = report else { break };
                    match report {
                        CheckpointReport::Position { id, stage, position } => {
                            if let Some(p) = pending.get_mut(&id) {
                                p.positions.insert(stage, position);
                            }
                        }
                        CheckpointReport::Snapshot { id, stage, saved } => {
                            if let Some(p) = pending.get_mut(&id) {
                                p.snapshots.insert(stage, saved);
                            }
                        }
                        CheckpointReport::SinkReady { id, stage } => {
                            if let Some(p) = pending.get_mut(&id) {
                                p.sinks.insert(stage);
                            }
                        }
                        CheckpointReport::SourceDone { stage, position } => {
                            live.sources.remove(&stage);
                            done_positions.insert(stage, position);
                        }
                        CheckpointReport::StageDone { stage, saved } => {
                            live.transforms.remove(&stage);
                            done_stages.insert(stage, saved);
                        }
                        CheckpointReport::Ended { stage } => {
                            live.sources.remove(&stage);
                            live.transforms.remove(&stage);
                            live.sinks.remove(&stage);
                        }
                        CheckpointReport::Failed { stage } => {
                            tracing::warn!(stage, "a stage failed; keeping the last checkpoint");
                            failed = true;
                        }
                    }
                    if !failed {
                        self.complete(&mut pending, &live, &done_positions, &done_stages);
                    }
                }
            }
        }
        // Every stage has ended. If they all ended with their data, save the
        // final state (positions at the end, flushed windows).
        if !failed && !done_positions.is_empty() && live.sources.is_empty() && !stopping {
            self.write(next_id, done_positions, done_stages);
        }
    }

    /// Takes the members of a reloaded pipeline: stages that left are
    /// forgotten (with their saved state, so a later stage of the same
    /// name starts fresh), new ones are waited for.
    fn change_members(
        &mut self,
        members: Members,
        started: &[String],
        live: &mut Members,
        done_positions: &mut BTreeMap<String, serde_json::Value>,
        done_stages: &mut BTreeMap<String, SavedStage>,
    ) {
        fn update(
            old: &BTreeSet<String>,
            new: &BTreeSet<String>,
            live: &mut BTreeSet<String>,
        ) -> Vec<String> {
            let gone: Vec<String> = old.difference(new).cloned().collect();
            for g in &gone {
                live.remove(g);
            }
            for n in new.difference(old) {
                live.insert(n.clone());
            }
            gone
        }
        let mut gone = update(&self.members.sources, &members.sources, &mut live.sources);
        gone.extend(update(
            &self.members.transforms,
            &members.transforms,
            &mut live.transforms,
        ));
        gone.extend(update(&self.members.sinks, &members.sinks, &mut live.sinks));
        for g in &gone {
            self.sources.remove(g);
            self.saved.sources.remove(g);
            self.saved.stages.remove(g);
            done_positions.remove(g);
            done_stages.remove(g);
        }
        for s in started {
            done_positions.remove(s);
            done_stages.remove(s);
            for (all, live) in [
                (&members.sources, &mut live.sources),
                (&members.transforms, &mut live.transforms),
                (&members.sinks, &mut live.sinks),
            ] {
                if all.contains(s) {
                    live.insert(s.clone());
                }
            }
        }
        self.members = members;
    }

    /// Asks every live source for checkpoint `id`; false when there is none.
    fn request(&self, id: u64, last: bool, live: &Members) -> bool {
        let mut asked = false;
        for s in &live.sources {
            if let Some(tx) = self.sources.get(s) {
                asked |= tx.send(Action::Checkpoint { id, last }).is_ok();
            }
        }
        asked
    }

    fn complete(
        &mut self,
        pending: &mut BTreeMap<u64, Partial>,
        live: &Members,
        done_positions: &BTreeMap<String, serde_json::Value>,
        done_stages: &BTreeMap<String, SavedStage>,
    ) {
        let ready: Vec<u64> = pending
            .iter()
            .filter(|(_, p)| {
                live.sources.iter().all(|s| p.positions.contains_key(s))
                    && live.transforms.iter().all(|s| p.snapshots.contains_key(s))
                    && live.sinks.iter().all(|s| p.sinks.contains(s))
            })
            .map(|(id, _)| *id)
            .collect();
        let Some(&newest) = ready.last() else { return };
        let p = pending.remove(&newest).expect("listed above");
        // Older checkpoints still pending are superseded.
        pending.retain(|id, _| *id > newest);
        let mut positions = done_positions.clone();
        positions.extend(p.positions);
        let mut stages = done_stages.clone();
        stages.extend(p.snapshots);
        self.write(newest, positions, stages);
        if p.last {
            tracing::info!(checkpoint = newest, dir = %self.dir.display(), "final checkpoint written");
        }
    }

    fn write(
        &mut self,
        id: u64,
        sources: BTreeMap<String, serde_json::Value>,
        stages: BTreeMap<String, SavedStage>,
    ) {
        // Stages that did not report (they ended earlier) keep what the
        // previous checkpoint holds for them.
        let mut all_sources = self.saved.sources.clone();
        all_sources.extend(sources);
        let mut all_stages = self.saved.stages.clone();
        all_stages.extend(stages);
        // Only stages of the pipeline as it is now (a reload may have
        // removed some).
        all_sources.retain(|k, _| self.members.sources.contains(k));
        all_stages.retain(|k, _| self.members.transforms.contains(k));
        let saved = Saved {
            id,
            written_ms: crate::util::now_ms(),
            sources: all_sources,
            stages: all_stages,
        };
        match store(&self.dir, &saved) {
            Ok(()) => {
                tracing::debug!(checkpoint = id, dir = %self.dir.display(), "checkpoint written")
            }
            Err(e) => {
                tracing::error!(checkpoint = id, dir = %self.dir.display(), error = %e, "cannot write checkpoint")
            }
        }
        self.saved = saved;
    }
}
