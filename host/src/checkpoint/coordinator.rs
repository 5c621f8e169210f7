//! The checkpoint coordinator: asks every source for a checkpoint each
//! `checkpoint_interval`, collects positions, snapshots and sink
//! confirmations, and writes the checkpoint once every live stage has
//! answered. Reloads pause and resume it around graph changes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::control::{Action, CheckpointReport, CheckpointReporter, SourceControl};
use std::sync::Arc;

use super::store::{CheckpointError, CheckpointStore, Saved, SavedStage};

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
    store: Arc<dyn CheckpointStore>,
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
    /// A checkpoint now, out of turn (a source handing partitions over);
    /// ignored while paused or stopping.
    Now,
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
    /// Sets up checkpoints kept in `store`, resuming from `saved`.
    pub fn new(
        store: Arc<dyn CheckpointStore>,
        interval: Duration,
        members: Members,
        saved: Option<Saved>,
    ) -> Self {
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
                store,
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
        let mut c =
            SourceControl::checkpointing(Some(rx), reporter, None, CancellationToken::new());
        c.urgent = Some(control.clone());
        c
    }

    /// The control channel of source `stage`.
    pub fn source_control(&mut self, stage: &str, shutdown: CancellationToken) -> SourceControl {
        let mut c = SourceControl::checkpointing(
            self.commands.remove(stage),
            self.reporter(stage),
            self.coordinator.saved.sources.get(stage).cloned(),
            shutdown,
        );
        c.urgent = Some(self.control.clone());
        c
    }

    /// A reporter for `stage`.
    pub fn reporter(&self, stage: &str) -> CheckpointReporter {
        CheckpointReporter::new(stage, self.reports.clone())
    }

    /// Saved state of transform `stage`.
    pub fn saved_stage(&self, stage: &str) -> Option<SavedStage> {
        self.coordinator.saved.stages.get(stage).cloned()
    }

    /// Starts the coordinator; it ends when every stage has ended, with
    /// the reason when its store failed for good (the pipeline then stops).
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<Result<(), String>> {
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

/// The store failed for good: no further checkpoint, and the pipeline
/// stops (its last checkpoint stays what a restart resumes from).
fn fail(
    failed: &mut bool,
    fatal: &mut Option<String>,
    reason: String,
    shutdown: &CancellationToken,
    store: &dyn CheckpointStore,
) {
    tracing::error!(reason, "checkpoints cannot go on; stopping the pipeline");
    store.give_up(&reason);
    *failed = true;
    fatal.get_or_insert(reason);
    shutdown.cancel();
}

impl Coordinator {
    async fn run(
        mut self,
        shutdown: CancellationToken,
        mut reports: mpsc::UnboundedReceiver<CheckpointReport>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) -> Result<(), String> {
        let mut next_id = self.saved.id + 1;
        let mut fatal: Option<String> = None;
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
                    Control::Now => {
                        if !stopping && !is_paused && self.request(next_id, false, &live) {
                            pending.insert(next_id, Partial::default());
                            next_id += 1;
                        }
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
                        if !failed
                            && let Err(reason) = self.complete(&mut pending, &live, &done_positions, &done_stages)
                        {
                            fail(&mut failed, &mut fatal, reason, &shutdown, self.store.as_ref());
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
                    // Tracked even when no source was asked: one that joins
                    // later (a reload racing the shutdown) is asked for it,
                    // and exactly-once sinks that answer it wait for its
                    // commit.
                    self.request(next_id, true, &live);
                    pending.insert(next_id, Partial { last: true, ..Partial::default() });
                    next_id += 1;
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
                            self.store.give_up(&format!("stage `{stage}` failed; no checkpoint follows"));
                            failed = true;
                        }
                    }
                    if !failed
                        && let Err(reason) = self.complete(&mut pending, &live, &done_positions, &done_stages)
                    {
                        fail(&mut failed, &mut fatal, reason, &shutdown, self.store.as_ref());
                    }
                }
            }
        }
        // Every stage has ended. If they all ended with their data, save the
        // final state (positions at the end, flushed windows).
        if !failed && !done_positions.is_empty() && live.sources.is_empty() && !stopping {
            self.write(next_id, done_positions, done_stages)?;
        }
        match fatal {
            Some(reason) => Err(reason),
            None => Ok(()),
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
    ) -> Result<(), String> {
        let ready: Vec<u64> = pending
            .iter()
            .filter(|(_, p)| {
                live.sources.iter().all(|s| p.positions.contains_key(s))
                    && live.transforms.iter().all(|s| p.snapshots.contains_key(s))
                    && live.sinks.iter().all(|s| p.sinks.contains(s))
            })
            .map(|(id, _)| *id)
            .collect();
        let Some(&newest) = ready.last() else {
            return Ok(());
        };
        let p = pending.remove(&newest).expect("listed above");
        // Older checkpoints still pending are superseded.
        pending.retain(|id, _| *id > newest);
        let mut positions = done_positions.clone();
        positions.extend(p.positions);
        let mut stages = done_stages.clone();
        stages.extend(p.snapshots);
        self.write(newest, positions, stages)?;
        if p.last {
            tracing::info!(
                checkpoint = newest,
                store = self.store.describe(),
                "final checkpoint written"
            );
        }
        Ok(())
    }

    /// Saves checkpoint `id`; `Err` when the store cannot go on.
    fn write(
        &mut self,
        id: u64,
        sources: BTreeMap<String, serde_json::Value>,
        stages: BTreeMap<String, SavedStage>,
    ) -> Result<(), String> {
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
        let result = save_watched(&self.store, &saved);
        self.saved = saved;
        match result {
            Ok(()) => {
                tracing::debug!(
                    checkpoint = id,
                    store = self.store.describe(),
                    "checkpoint written"
                );
                Ok(())
            }
            Err(CheckpointError::Fatal(reason)) => Err(reason),
            Err(e) => {
                tracing::error!(checkpoint = id, error = %e, "cannot write checkpoint");
                Ok(())
            }
        }
    }
}

/// Saves `saved` on a thread of its own under a watchdog: a save that does
/// not return within the store's [`CheckpointStore::save_limit`] (a hung
/// broker call) is fatal, instead of holding the pipeline forever.
fn save_watched(store: &Arc<dyn CheckpointStore>, saved: &Saved) -> Result<(), CheckpointError> {
    let limit = store.save_limit();
    let (done, result) = std::sync::mpsc::channel();
    let (thread_store, thread_saved) = (store.clone(), saved.clone());
    std::thread::Builder::new()
        .name("weir-checkpoint".into())
        .spawn(move || {
            let _ = done.send(thread_store.save(&thread_saved));
        })
        .map_err(|e| CheckpointError::Write {
            store: store.describe(),
            reason: format!("cannot start the saving thread: {e}"),
        })?;
    tokio::task::block_in_place(|| result.recv_timeout(limit)).unwrap_or_else(|_| {
        Err(CheckpointError::Fatal(format!(
            "saving checkpoint {} to {} did not finish within {} s; stopping (watchdog)",
            saved.id,
            store.describe(),
            limit.as_secs()
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose saves take `delay`.
    struct Slow {
        delay: std::time::Duration,
    }

    impl CheckpointStore for Slow {
        fn load(&self) -> Result<Option<Saved>, CheckpointError> {
            Ok(None)
        }
        fn save(&self, _: &Saved) -> Result<(), CheckpointError> {
            std::thread::sleep(self.delay);
            Ok(())
        }
        fn describe(&self) -> String {
            "slow store".into()
        }
        fn save_limit(&self) -> std::time::Duration {
            std::time::Duration::from_millis(100)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_save_is_stopped_by_the_watchdog_and_a_prompt_one_is_not() {
        let saved = Saved {
            id: 7,
            ..Saved::default()
        };
        let prompt: Arc<dyn CheckpointStore> = Arc::new(Slow {
            delay: std::time::Duration::from_millis(1),
        });
        assert!(save_watched(&prompt, &saved).is_ok());
        let hung: Arc<dyn CheckpointStore> = Arc::new(Slow {
            delay: std::time::Duration::from_secs(5),
        });
        let started = std::time::Instant::now();
        match save_watched(&hung, &saved) {
            Err(CheckpointError::Fatal(reason)) => {
                assert!(reason.contains("checkpoint 7"), "{reason}");
                assert!(reason.contains("watchdog"), "{reason}");
            }
            other => panic!("expected the watchdog, got {other:?}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
