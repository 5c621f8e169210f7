//! One task of a `wasm` stage: a plugin instance with its own state,
//! sequence numbers, snapshots and held acknowledgements, for one input
//! partition (or for the events that come from no partition). A failed call
//! fails only its batch: the batch goes to the dead-letter output (or is
//! logged and dropped), the error is counted, and the instance is
//! re-created from its last snapshot, with the calls since that snapshot
//! replayed so no state is lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use tokio::runtime::Handle;

use super::OnIncompatibleState;
use super::worker::Flow;
use crate::event::{Acks, Batch, Event, Origin};
use crate::stage::{BoxError, DeadLetters, Output, SavedStage};
use crate::telemetry::StageMetrics;
use crate::wasm::{CallError, Instance, Limits, Plugin, PluginInput, PluginOutput};

/// Which task an event belongs to: its input partition, or for events from
/// no partition one of the stage's instances (lanes; one unless
/// `instances` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TaskKey {
    /// Events from no partition routed to instance `n`.
    Lane(u32),
    /// Events of input partition `p`.
    Partition(i32),
}

impl TaskKey {
    /// The input partition, for a partition's task.
    pub fn partition(self) -> Option<i32> {
        match self {
            TaskKey::Partition(p) => Some(p),
            TaskKey::Lane(_) => None,
        }
    }

    /// The instance, for a task of events from no partition.
    pub fn lane(self) -> Option<u32> {
        match self {
            TaskKey::Lane(n) => Some(n),
            TaskKey::Partition(_) => None,
        }
    }

    /// The thread of `threads` this task runs on.
    pub fn thread(self, threads: u32) -> u32 {
        match self {
            TaskKey::Lane(n) => n % threads,
            TaskKey::Partition(p) => p.rem_euclid(threads as i32) as u32,
        }
    }
}

/// The input partition of `event`, if it came from one.
pub(super) fn partition_of(event: &Event) -> Option<i32> {
    match &event.origin {
        Some(Origin::Kafka { partition, .. } | Origin::Partition(partition)) => Some(*partition),
        _ => None,
    }
}

/// What every task of a stage shares: the compiled plugin, its settings
/// and the stage's outputs.
pub(super) struct Shared {
    pub name: String,
    pub plugin: Plugin,
    pub config_json: String,
    pub limits: Limits,
    /// Linear memory past which an instance is recycled.
    pub recycle_above: u64,
    pub on_incompatible_state: OnIncompatibleState,
    pub out: Output,
    pub dead_letters: DeadLetters,
    pub metrics: Arc<StageMetrics>,
    pub handle: Handle,
}

/// A call made since the last snapshot, replayed into a re-created instance.
enum LogEntry {
    Process(PluginInput),
    Tick(i64),
}

/// Snapshot at least this often (or every [`SNAPSHOT_EVERY_CALLS`] calls),
/// bounding the replay log kept for recovery.
const SNAPSHOT_EVERY: StdDuration = StdDuration::from_secs(1);
const SNAPSHOT_EVERY_CALLS: usize = 64;

/// One plugin instance and what goes with it.
pub(super) struct Task {
    key: TaskKey,
    instance: Instance,
    snapshot: Vec<u8>,
    /// Calls since `snapshot`.
    log: Vec<LogEntry>,
    last_snapshot: Instant,
    next_seq: u64,
    /// Acknowledgements of input batches, by the sequence number one past
    /// their last event, until the plugin no longer holds them.
    held: VecDeque<(u64, Acks)>,
    /// `snapshot` as saved state, made when first asked for.
    saved: Option<SavedStage>,
    /// It has state worth flushing: restored, or given input.
    touched: bool,
    /// A fresh instance holding just its state was past `recycle_memory`:
    /// recycling would not help, so it is not tried again.
    recycle_off: bool,
}

impl Task {
    /// A task with empty state.
    pub fn new(shared: &Shared, key: TaskKey) -> Result<Task, BoxError> {
        let mut instance = Instance::new(
            &shared.plugin,
            &shared.name,
            &shared.config_json,
            shared.limits,
        )?;
        let snapshot = instance
            .snapshot()
            .map_err(|e| format!("snapshot after start failed: {e}"))?;
        Ok(Task {
            key,
            instance,
            snapshot,
            log: Vec::new(),
            last_snapshot: Instant::now(),
            next_seq: 0,
            held: VecDeque::new(),
            saved: None,
            touched: false,
            recycle_off: false,
        })
    }

    /// A task starting from `saved` (a checkpoint, or state handed over
    /// with its partition: `from` says which).
    pub fn restored(
        shared: &Shared,
        key: TaskKey,
        saved: &SavedStage,
        from: &str,
    ) -> Result<Task, BoxError> {
        let mut task = Task::new(shared, key)?;
        let state = saved.bytes()?;
        match task.instance.restore(&state)? {
            Ok(()) => {
                task.next_seq = saved.next_seq;
                task.touched = true;
                tracing::info!(
                    partition = key.partition(),
                    instance = key.lane(),
                    bytes = state.len(),
                    "plugin state restored from the {from}"
                );
            }
            Err(reason) if shared.on_incompatible_state == OnIncompatibleState::Reset => {
                tracing::warn!(
                    partition = key.partition(),
                    instance = key.lane(),
                    reason,
                    "plugin refused the saved state; starting empty (on_incompatible_state = \"reset\")"
                );
                return Task::new(shared, key);
            }
            Err(reason) => {
                return Err(format!(
                    "plugin refused the checkpointed state: {reason} (set on_incompatible_state = \"reset\" to start with empty state)"
                )
                .into());
            }
        }
        task.snapshot = task
            .instance
            .snapshot()
            .map_err(|e| format!("snapshot after restore failed: {e}"))?;
        Ok(task)
    }

    /// Whether it has state worth keeping: restored, or given input.
    pub fn touched(&self) -> bool {
        self.touched
    }

    /// Size of the last snapshot.
    pub fn state_bytes(&self) -> usize {
        self.snapshot.len()
    }

    /// Linear memory of the instance.
    pub fn memory_bytes(&self) -> u64 {
        self.instance.memory_bytes()
    }

    /// The running instance (a swap takes its state).
    pub fn instance_mut(&mut self) -> &mut Instance {
        &mut self.instance
    }

    /// Goes on with `instance`, whose state is `snapshot` (a swap).
    pub fn replace(&mut self, instance: Instance, snapshot: Vec<u8>) {
        self.instance = instance;
        self.recycle_off = false;
        self.snapshot = snapshot;
        self.saved = None;
        self.log.clear();
        self.last_snapshot = Instant::now();
    }

    /// Ends the task without flushing: the records it holds are marked
    /// undelivered, so their offsets are not committed by this process.
    pub fn release(self) {
        for (_, acks) in &self.held {
            acks.fail();
        }
    }

    /// Ends the task without flushing once its state is kept elsewhere
    /// (the changelog): the acknowledgements of the records it holds, for
    /// the source to settle.
    pub fn hand_over(mut self) -> Acks {
        let mut acks = Acks::none();
        for (_, a) in self.held.drain(..) {
            acks.merge(a);
        }
        acks
    }

    pub fn process(&mut self, shared: &Shared, batch: Batch) -> Result<Flow, BoxError> {
        self.touched = true;
        let n = batch.events.len() as u64;
        StageMetrics::add(&shared.metrics.events_in, n);
        StageMetrics::add(&shared.metrics.batches, 1);
        let pb = PluginInput::from_events(self.next_seq, &batch.events);
        self.next_seq += n;
        self.held.push_back((self.next_seq, batch.acks.clone()));
        let started = Instant::now();
        let result = self.instance.process(&pb);
        shared.metrics.record_batch(started.elapsed());
        let flow = match result {
            Ok(res) => {
                self.log.push(LogEntry::Process(pb));
                self.handle_result(shared, res, Some(&batch))
            }
            Err(e) => {
                self.report(shared, &e, "process", batch.events.len());
                let reason = e.to_string();
                let rejected = batch
                    .events
                    .iter()
                    .cloned()
                    .map(|ev| (ev, reason.clone()))
                    .collect();
                shared
                    .dead_letters
                    .blocking_send(&shared.handle, rejected, batch.acks.clone());
                self.recover(shared)?;
                Flow::Continue
            }
        };
        self.maybe_snapshot(shared)?;
        self.maybe_recycle(shared)?;
        Ok(flow)
    }

    pub fn tick(&mut self, shared: &Shared, now: i64) -> Result<Flow, BoxError> {
        match self.instance.tick(now) {
            Ok(res) => {
                self.log.push(LogEntry::Tick(now));
                let flow = self.handle_result(shared, res, None);
                self.maybe_snapshot(shared)?;
                self.maybe_recycle(shared)?;
                Ok(flow)
            }
            Err(e) => {
                self.report(shared, &e, "tick", 0);
                self.recover(shared)?;
                Ok(Flow::Continue)
            }
        }
    }

    /// The input ended: the plugin emits what it holds (a task that was
    /// never given state or input has nothing to say).
    pub fn flush(&mut self, shared: &Shared) {
        if !self.touched {
            return;
        }
        match self.instance.flush() {
            Ok(res) => {
                self.log.clear();
                let _ = self.handle_result(shared, res, None);
            }
            Err(e) => self.report(shared, &e, "flush", 0),
        }
        // Whatever the plugin still holds is released now: the input ended.
        self.held.clear();
        self.saved = None;
    }

    /// The state as of now, for a checkpoint (snapshotting if anything
    /// happened since the last snapshot).
    pub fn saved_now(&mut self, shared: &Shared) -> SavedStage {
        if !self.log.is_empty() || self.saved.is_none() {
            // A failed snapshot is reported and the instance re-created
            // from the last good one, which is what is saved then.
            let _ = self.take_snapshot(shared);
        }
        self.saved
            .get_or_insert_with(|| SavedStage::new(self.next_seq, &self.snapshot))
            .clone()
    }

    /// The final state after a flush.
    pub fn saved_final(&mut self, _shared: &Shared) -> SavedStage {
        let state = self
            .instance
            .snapshot()
            .unwrap_or_else(|_| self.snapshot.clone());
        SavedStage::new(self.next_seq, &state)
    }

    fn report(&self, shared: &Shared, e: &CallError, call: &str, events: usize) {
        StageMetrics::add(&shared.metrics.errors, 1);
        let action = if events > 0 {
            if shared.dead_letters.is_configured() {
                "batch sent to the dead-letter output"
            } else {
                "batch dropped (no dead_letter set)"
            }
        } else {
            "call skipped"
        };
        tracing::error!(
            call,
            partition = self.key.partition(),
            instance = self.key.lane(),
            reason = %e,
            events,
            "plugin call failed; {action}; re-creating the instance from its last snapshot"
        );
    }

    fn handle_result(&mut self, shared: &Shared, res: PluginOutput, input: Option<&Batch>) -> Flow {
        if let Some(input) = input
            && !res.rejections.is_empty()
        {
            let rejected: Vec<(Event, String)> = res
                .rejections
                .into_iter()
                .filter_map(|r| {
                    input
                        .events
                        .get(r.index as usize)
                        .map(|e| (e.clone(), r.reason))
                })
                .collect();
            shared
                .dead_letters
                .blocking_send(&shared.handle, rejected, input.acks.clone());
        }
        let events = match res.events {
            Ok(mut events) => {
                if let Some(p) = self.key.partition() {
                    for e in &mut events {
                        e.origin = Some(Origin::Partition(p));
                    }
                }
                events
            }
            Err(msg) => {
                StageMetrics::add(&shared.metrics.errors, 1);
                tracing::error!(
                    reason = msg,
                    "plugin returned a malformed batch; output dropped"
                );
                Vec::new()
            }
        };
        let acks = self.release_acks(res.hold_from);
        if events.is_empty() {
            return Flow::Continue;
        }
        match shared
            .out
            .blocking_send(&shared.handle, Batch::with_acks(events, acks))
        {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    /// Takes the acknowledgements of every input batch the plugin no longer
    /// holds.
    fn release_acks(&mut self, hold_from: Option<u64>) -> Acks {
        let limit = hold_from.unwrap_or(u64::MAX);
        let mut acks = Acks::none();
        while let Some((end, _)) = self.held.front() {
            if *end > limit {
                break;
            }
            let (_, a) = self.held.pop_front().expect("front exists");
            acks.merge(a);
        }
        acks
    }

    fn maybe_snapshot(&mut self, shared: &Shared) -> Result<(), BoxError> {
        if self.log.len() < SNAPSHOT_EVERY_CALLS && self.last_snapshot.elapsed() < SNAPSHOT_EVERY {
            return Ok(());
        }
        self.take_snapshot(shared).map(drop)
    }

    /// Replaces an instance whose memory passed the recycle threshold by a
    /// fresh one restored from a snapshot taken now: a slow leak is shed
    /// between batches instead of failing one at the memory cap.
    fn maybe_recycle(&mut self, shared: &Shared) -> Result<(), BoxError> {
        let before = self.instance.memory_bytes();
        if before <= shared.recycle_above || self.recycle_off {
            return Ok(());
        }
        if !self.take_snapshot(shared)? {
            // The snapshot failed and the instance was re-created anyway.
            return Ok(());
        }
        // The running instance is healthy: if a fresh one cannot take its
        // state, keep it and stop trying.
        let fresh = Instance::new(
            &shared.plugin,
            &shared.name,
            &shared.config_json,
            shared.limits,
        )
        .map_err(|e| e.to_string())
        .and_then(|mut fresh| match fresh.restore(&self.snapshot) {
            Ok(Ok(())) => Ok(fresh),
            Ok(Err(reason)) => Err(format!("the plugin refused its own snapshot: {reason}")),
            Err(e) => Err(format!("the plugin trapped restoring its snapshot: {e}")),
        });
        let fresh = match fresh {
            Ok(fresh) => fresh,
            Err(reason) => {
                self.recycle_off = true;
                tracing::warn!(
                    partition = self.key.partition(),
                    instance = self.key.lane(),
                    reason,
                    "cannot recycle the plugin instance; it runs on, not recycled again"
                );
                return Ok(());
            }
        };
        self.instance = fresh;
        StageMetrics::add(&shared.metrics.recycles, 1);
        if self.instance.memory_bytes() > shared.recycle_above {
            self.recycle_off = true;
            tracing::warn!(
                partition = self.key.partition(),
                instance = self.key.lane(),
                memory_bytes = self.instance.memory_bytes(),
                threshold = shared.recycle_above,
                "a fresh instance holding only the plugin's state is past recycle_memory; no more recycling for it (raise memory_limit or recycle_memory)"
            );
        }
        tracing::info!(
            partition = self.key.partition(),
            instance = self.key.lane(),
            memory_bytes = before,
            threshold = shared.recycle_above,
            after_bytes = self.instance.memory_bytes(),
            "plugin instance recycled (memory past recycle_memory)"
        );
        Ok(())
    }

    /// Snapshots the instance, which empties the replay log; a failed
    /// snapshot is a failed call (reported, instance re-created), and
    /// `Ok(false)`.
    fn take_snapshot(&mut self, shared: &Shared) -> Result<bool, BoxError> {
        match self.instance.snapshot() {
            Ok(s) => {
                if s != self.snapshot {
                    self.snapshot = s;
                    self.saved = None;
                }
                if self
                    .saved
                    .as_ref()
                    .is_some_and(|v| v.next_seq != self.next_seq)
                {
                    self.saved = None;
                }
                self.log.clear();
                self.last_snapshot = Instant::now();
                Ok(true)
            }
            Err(e) => {
                self.report(shared, &e, "snapshot", 0);
                self.recover(shared)?;
                Ok(false)
            }
        }
    }

    /// Replaces a failed instance: a fresh one, restored from the last
    /// snapshot, with the calls since then replayed (their output was already
    /// sent, so it is discarded).
    fn recover(&mut self, shared: &Shared) -> Result<(), BoxError> {
        let new_instance = || {
            Instance::new(
                &shared.plugin,
                &shared.name,
                &shared.config_json,
                shared.limits,
            )
            .map_err(|e| format!("cannot re-create plugin instance: {e}"))
        };
        let mut fresh = new_instance()?;
        match fresh.restore(&self.snapshot) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                tracing::error!(
                    reason,
                    "plugin refused its own snapshot; continuing with empty state"
                )
            }
            Err(e) => return Err(format!("plugin trapped restoring its snapshot: {e}").into()),
        }
        let mut replayed = 0;
        fresh.set_quiet(true);
        for entry in &self.log {
            let r = match entry {
                LogEntry::Process(pb) => fresh.process(pb).map(drop),
                LogEntry::Tick(t) => fresh.tick(*t).map(drop),
            };
            if let Err(e) = r {
                tracing::error!(
                    reason = %e,
                    "replaying calls since the last snapshot failed; state since then is lost"
                );
                fresh = new_instance()?;
                let _ = fresh.restore(&self.snapshot);
                self.log.clear();
                break;
            }
            replayed += 1;
        }
        tracing::info!(
            replayed,
            partition = self.key.partition(),
            instance = self.key.lane(),
            "plugin instance re-created"
        );
        fresh.set_quiet(false);
        self.instance = fresh;
        Ok(())
    }
}
