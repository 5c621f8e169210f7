//! Checkpoints: stage state and source positions saved together, so a
//! restarted pipeline continues exactly where the saved state ends.
//!
//! With `state_dir` set, a coordinator asks every source, every
//! `checkpoint_interval`, to record its position and send a **barrier**
//! downstream, in order with its data. A transform that has received the
//! barrier from all its inputs (buffering inputs that delivered theirs
//! early) snapshots its plugin and forwards the barrier; a sink reports once
//! everything before the barrier is written or delivered. When every live
//! stage has answered, the coordinator writes
//! `state_dir/checkpoint.json` atomically: the source positions and the
//! snapshots reflect exactly the same records.
//!
//! On SIGINT/SIGTERM the coordinator takes a final checkpoint the same way
//! (sources stop after sending it, and transforms keep their open windows in
//! it instead of flushing them). On restart, `weir run` restores each
//! stage's snapshot and resumes each source from its saved position: replay
//! sources seek to the saved byte offset, Kafka sources commit the saved
//! offsets to their group before subscribing. A SIGKILL loses only the
//! work since the last checkpoint, which is read again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::event::Marker;

/// The file a checkpoint is written to, inside `state_dir`.
pub const FILE: &str = "checkpoint.json";

/// A transform's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedStage {
    /// The next sequence number the host assigns to input events.
    pub next_seq: u64,
    /// The plugin's snapshot, hex-encoded.
    pub state: String,
}

impl SavedStage {
    fn new(next_seq: u64, state: &[u8]) -> Self {
        SavedStage {
            next_seq,
            state: state.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// The snapshot bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        if !self.state.len().is_multiple_of(2) {
            return Err("odd-length state".into());
        }
        (0..self.state.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&self.state[i..i + 2], 16).map_err(|e| e.to_string()))
            .collect()
    }
}

/// A checkpoint as stored on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Checkpoint number, increasing.
    pub id: u64,
    /// When it was written, Unix ms.
    pub written_ms: i64,
    /// Source positions by stage name.
    pub sources: BTreeMap<String, serde_json::Value>,
    /// Transform state by stage name.
    pub stages: BTreeMap<String, SavedStage>,
}

/// Reads `dir/checkpoint.json`, if there is one.
pub fn load(dir: &Path) -> Result<Option<Saved>, String> {
    let file = dir.join(FILE);
    match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("checkpoint {} is unreadable: {e}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read checkpoint {}: {e}", file.display())),
    }
}

fn store(dir: &Path, saved: &Saved) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    serde_json::to_writer_pretty(&mut f, saved)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(FILE))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// What stages tell the coordinator.
#[derive(Debug)]
pub enum Report {
    /// A source's position at barrier `id`.
    Position {
        /// Checkpoint.
        id: u64,
        /// Source stage.
        stage: String,
        /// Where it is.
        position: serde_json::Value,
    },
    /// A source reached the end of its data at `position`.
    SourceDone {
        /// Source stage.
        stage: String,
        /// Final position.
        position: serde_json::Value,
    },
    /// A transform's state at barrier `id`.
    Snapshot {
        /// Checkpoint.
        id: u64,
        /// Transform stage.
        stage: String,
        /// Saved state.
        saved: SavedStage,
    },
    /// A transform's final state after its inputs ended.
    StageDone {
        /// Transform stage.
        stage: String,
        /// Saved state.
        saved: SavedStage,
    },
    /// A sink wrote everything before barrier `id`.
    SinkReady {
        /// Checkpoint.
        id: u64,
        /// Sink stage.
        stage: String,
    },
    /// A stage's task ended normally.
    Ended {
        /// Stage.
        stage: String,
    },
    /// A stage failed: no further checkpoint is written this run, so the
    /// last good one stays.
    Failed {
        /// Stage.
        stage: String,
    },
}

/// A stage's handle for reporting to the coordinator; does nothing when
/// checkpoints are off.
#[derive(Debug, Clone)]
pub struct Reporter {
    stage: String,
    tx: Option<mpsc::UnboundedSender<Report>>,
}

impl Reporter {
    /// A reporter sending to `tx` (a coordinator's report channel).
    pub(crate) fn new(stage: &str, tx: mpsc::UnboundedSender<Report>) -> Self {
        Reporter {
            stage: stage.to_owned(),
            tx: Some(tx),
        }
    }

    /// A reporter that reports nothing.
    pub fn off(stage: &str) -> Self {
        Reporter {
            stage: stage.to_owned(),
            tx: None,
        }
    }

    /// Whether checkpoints are on.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    fn send(&self, r: Report) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(r);
        }
    }

    /// A source's position at barrier `id`.
    pub fn position(&self, id: u64, position: serde_json::Value) {
        self.send(Report::Position {
            id,
            stage: self.stage.clone(),
            position,
        });
    }

    /// A source ended at `position`.
    pub fn source_done(&self, position: serde_json::Value) {
        self.send(Report::SourceDone {
            stage: self.stage.clone(),
            position,
        });
    }

    /// A transform's state at barrier `id`.
    pub fn snapshot(&self, id: u64, next_seq: u64, state: &[u8]) {
        self.send(Report::Snapshot {
            id,
            stage: self.stage.clone(),
            saved: SavedStage::new(next_seq, state),
        });
    }

    /// A transform's final state.
    pub fn stage_done(&self, next_seq: u64, state: &[u8]) {
        self.send(Report::StageDone {
            stage: self.stage.clone(),
            saved: SavedStage::new(next_seq, state),
        });
    }

    /// A sink is ready for barrier `id`.
    pub fn sink_ready(&self, id: u64) {
        self.send(Report::SinkReady {
            id,
            stage: self.stage.clone(),
        });
    }
}

/// What a source should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Record the position, report it, send barrier `id` downstream; stop
    /// afterwards when `last`.
    Checkpoint {
        /// Checkpoint id.
        id: u64,
        /// Stop after it.
        last: bool,
    },
    /// Stop now (shutdown without checkpoints).
    Stop,
}

impl Action {
    /// The barrier to send for a checkpoint action.
    pub fn marker(self) -> Option<Marker> {
        match self {
            Action::Checkpoint { id, last } => Some(Marker::Barrier { id, last }),
            Action::Stop => None,
        }
    }
}

/// A source's control channel: checkpoint requests and shutdown.
pub struct SourceControl {
    commands: Option<mpsc::UnboundedReceiver<Action>>,
    shutdown: CancellationToken,
    /// Cancelled when this instance must stop: a reload replacing it (with
    /// checkpoints the pipeline's own shutdown comes as a final checkpoint
    /// instead).
    replaced: Option<CancellationToken>,
    /// Reports to the coordinator.
    pub reporter: Reporter,
    /// Where to resume: from the last checkpoint, or where the instance
    /// this one replaces (a reload) stopped.
    pub resume: Option<serde_json::Value>,
    /// Filled with the source's position when it stops on request, so a
    /// replacing instance can go on from there.
    pub(crate) stopped_at: Option<std::sync::Arc<std::sync::Mutex<Option<serde_json::Value>>>>,
}

impl SourceControl {
    /// Without checkpoints: only the shutdown signal.
    pub fn plain(stage: &str, shutdown: CancellationToken) -> Self {
        SourceControl {
            commands: None,
            shutdown,
            replaced: None,
            reporter: Reporter::off(stage),
            resume: None,
            stopped_at: None,
        }
    }

    /// Whether this control takes checkpoint requests.
    pub(crate) fn checkpoints(&self) -> bool {
        self.commands.is_some()
    }

    /// `token` stops this instance (a reload replacing or removing it; for
    /// sources without checkpoints also the pipeline's shutdown).
    pub(crate) fn stop_on(&mut self, token: CancellationToken) {
        self.replaced = Some(token);
    }

    /// The next action, if any, without waiting.
    pub fn poll(&mut self) -> Option<Action> {
        if self.replaced.as_ref().is_some_and(|t| t.is_cancelled()) {
            return Some(Action::Stop);
        }
        match &mut self.commands {
            Some(rx) => rx.try_recv().ok(),
            None => self.shutdown.is_cancelled().then_some(Action::Stop),
        }
    }

    /// Waits for the next action.
    pub async fn next(&mut self) -> Action {
        let replaced = self.replaced.clone().unwrap_or_default();
        match &mut self.commands {
            Some(rx) => tokio::select! {
                _ = replaced.cancelled() => Action::Stop,
                a = rx.recv() => a.unwrap_or(Action::Stop),
            },
            None => {
                tokio::select! {
                    _ = self.shutdown.cancelled() => {}
                    _ = replaced.cancelled() => {}
                }
                Action::Stop
            }
        }
    }
}

/// Barrier alignment for stages with several inputs: once an input has
/// delivered barrier `n`, its later batches wait until every live input has
/// delivered it.
#[derive(Debug)]
pub struct Alignment {
    live: usize,
    pending: Option<(u64, bool, HashSet<u32>)>,
}

impl Alignment {
    /// For a stage with `inputs` data inputs.
    pub fn new(inputs: usize) -> Self {
        Alignment {
            live: inputs,
            pending: None,
        }
    }

    /// Whether batches from input `from` must be held back.
    pub fn blocks(&self, from: u32) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|(_, _, seen)| seen.contains(&from))
    }

    fn complete(&mut self) -> Option<Marker> {
        match &self.pending {
            Some((id, last, seen)) if seen.len() >= self.live => {
                let m = Marker::Barrier {
                    id: *id,
                    last: *last,
                };
                self.pending = None;
                Some(m)
            }
            _ => None,
        }
    }

    /// Barrier `id` arrived from `from`; returns the barrier once aligned.
    pub fn barrier(&mut self, from: u32, id: u64, last: bool) -> Option<Marker> {
        let entry = self
            .pending
            .get_or_insert_with(|| (id, last, HashSet::new()));
        if entry.0 != id {
            // A newer barrier while one is pending (an input skipped one):
            // align on the newer one.
            *entry = (id, last, HashSet::new());
        }
        entry.1 |= last;
        entry.2.insert(from);
        self.complete()
    }

    /// A new input joined.
    pub fn join(&mut self) {
        self.live += 1;
    }

    /// An input ended: returns a barrier completed by its absence, and
    /// whether every input has ended.
    pub fn end(&mut self) -> (Option<Marker>, bool) {
        self.live = self.live.saturating_sub(1);
        if self.live == 0 {
            return (None, true);
        }
        (self.complete(), false)
    }
}

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
pub struct Wiring {
    /// Runs the coordinator until every stage has ended.
    pub coordinator: Coordinator,
    /// Stages report here.
    pub reports: mpsc::UnboundedSender<Report>,
    /// Reloads talk to the coordinator here.
    pub control: mpsc::UnboundedSender<Control>,
    control_rx: mpsc::UnboundedReceiver<Control>,
    reports_rx: mpsc::UnboundedReceiver<Report>,
    commands: BTreeMap<String, mpsc::UnboundedReceiver<Action>>,
}

impl Wiring {
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
        Wiring {
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
        reporter: Reporter,
        control: &mpsc::UnboundedSender<Control>,
    ) -> SourceControl {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = control.send(Control::Source {
            stage: stage.to_owned(),
            commands: tx,
        });
        SourceControl {
            commands: Some(rx),
            shutdown: CancellationToken::new(),
            replaced: None,
            reporter,
            resume: None,
            stopped_at: None,
        }
    }

    /// The control channel of source `stage`.
    pub fn source_control(&mut self, stage: &str, shutdown: CancellationToken) -> SourceControl {
        SourceControl {
            commands: self.commands.remove(stage),
            shutdown,
            replaced: None,
            reporter: self.reporter(stage),
            resume: self.coordinator.saved.sources.get(stage).cloned(),
            stopped_at: None,
        }
    }

    /// A reporter for `stage`.
    pub fn reporter(&self, stage: &str) -> Reporter {
        Reporter {
            stage: stage.to_owned(),
            tx: Some(self.reports.clone()),
        }
    }

    /// Saved state of transform `stage`.
    pub fn saved_stage(&self, stage: &str) -> Option<SavedStage> {
        self.coordinator.saved.stages.get(stage).cloned()
    }

    /// Starts the coordinator; it ends when every stage has ended.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let Wiring {
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
        mut reports: mpsc::UnboundedReceiver<Report>,
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
                        Report::Position { id, stage, position } => {
                            if let Some(p) = pending.get_mut(&id) {
                                p.positions.insert(stage, position);
                            }
                        }
                        Report::Snapshot { id, stage, saved } => {
                            if let Some(p) = pending.get_mut(&id) {
                                p.snapshots.insert(stage, saved);
                            }
                        }
                        Report::SinkReady { id, stage } => {
                            if let Some(p) = pending.get_mut(&id) {
                                p.sinks.insert(stage);
                            }
                        }
                        Report::SourceDone { stage, position } => {
                            live.sources.remove(&stage);
                            done_positions.insert(stage, position);
                        }
                        Report::StageDone { stage, saved } => {
                            live.transforms.remove(&stage);
                            done_stages.insert(stage, saved);
                        }
                        Report::Ended { stage } => {
                            live.sources.remove(&stage);
                            live.transforms.remove(&stage);
                            live.sinks.remove(&stage);
                        }
                        Report::Failed { stage } => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_waits_for_every_live_input() {
        let mut a = Alignment::new(2);
        assert_eq!(a.barrier(0, 1, false), None);
        assert!(a.blocks(0));
        assert!(!a.blocks(1));
        assert_eq!(
            a.barrier(1, 1, false),
            Some(Marker::Barrier { id: 1, last: false })
        );
        assert!(!a.blocks(0));
        // One input ends while a barrier is pending: it completes.
        assert_eq!(a.barrier(1, 2, true), None);
        assert_eq!(
            a.end(),
            (Some(Marker::Barrier { id: 2, last: true }), false)
        );
        assert_eq!(a.end(), (None, true));
    }

    #[test]
    fn saved_state_round_trips_and_is_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let saved = Saved {
            id: 3,
            written_ms: 1,
            sources: [("in".to_owned(), serde_json::json!({"offset": 10}))].into(),
            stages: [("t".to_owned(), SavedStage::new(7, &[0, 255, 16]))].into(),
        };
        store(dir.path(), &saved).unwrap();
        let back = load(dir.path()).unwrap().unwrap();
        assert_eq!(back, saved);
        assert_eq!(back.stages["t"].bytes().unwrap(), vec![0, 255, 16]);
        assert!(!dir.path().join(format!(".{FILE}.tmp")).exists());
    }
}
