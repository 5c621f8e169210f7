//! The worker of a `wasm` stage: a thread that feeds batches to the
//! plugin, forwards its output with the acknowledgements it releases
//! (`hold-from`), answers checkpoint barriers with snapshots, takes plugin
//! swaps between batches, and recovers from a failed call by re-creating
//! the instance from its last snapshot and replaying the calls since.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::swap::{Swap, carry_state};
use super::{OnIncompatibleState, WasmConfig};
use crate::event::{Acks, Batch, Event, Marker};
use crate::stage::{
    BoxError, CheckpointReporter, DeadLetters, Input, Item, Output, StageTask, TransformContext,
    Update, Updated,
};
use crate::telemetry::StageMetrics;
use crate::util::now_ms;
use crate::wasm::{CallError, Instance, Limits, Plugin, PluginInput, PluginOutput};

/// Instantiates the plugin of `config` (restoring checkpointed state) and
/// returns the task that runs it on a thread of its own.
pub(super) fn start(config: &WasmConfig, ctx: TransformContext) -> Result<StageTask, BoxError> {
    let plugin = config.load_plugin()?;
    let limits = config.limits();
    let config_json = config.config_json();
    let mut instance = Instance::new(&plugin, &ctx.name, &config_json, limits)?;
    let mut next_seq = 0;
    if let Some(saved) = &ctx.resume {
        let state = saved.bytes()?;
        match instance.restore(&state)? {
            Ok(()) => {
                next_seq = saved.next_seq;
                tracing::info!(
                    bytes = state.len(),
                    "plugin state restored from the checkpoint"
                );
            }
            Err(reason) if config.on_incompatible_state == OnIncompatibleState::Reset => {
                tracing::warn!(
                    reason,
                    "plugin refused the checkpointed state; starting empty (on_incompatible_state = \"reset\")"
                );
            }
            Err(reason) => {
                return Err(format!(
                    "plugin refused the checkpointed state: {reason} (set on_incompatible_state = \"reset\" to start with empty state)"
                )
                .into());
            }
        }
    }
    let snapshot = instance
        .snapshot()
        .map_err(|e| format!("snapshot after start failed: {e}"))?;
    let tick_every = config.tick_every();
    let TransformContext {
        name,
        input,
        out,
        dead_letters,
        metrics,
        updates,
        reporter,
        resume: _,
        extensions: _,
    } = ctx;
    let worker = Worker {
        name: name.clone(),
        plugin,
        config_json,
        limits,
        instance,
        snapshot,
        log: Vec::new(),
        last_snapshot: Instant::now(),
        next_seq,
        held: VecDeque::new(),
        out,
        dead_letters,
        metrics,
        handle: Handle::current(),
        reporter,
        keep_windows: false,
        tick_every,
    };
    Ok(async move {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        // The stage's span follows the work onto the plugin thread.
        let span = tracing::Span::current();
        std::thread::Builder::new()
            .name(format!("wasm-{name}"))
            .spawn(move || {
                let _entered = span.enter();
                let result = worker.run(input, updates);
                let _ = done_tx.send(result);
            })
            .map_err(|e| format!("cannot start plugin thread: {e}"))?;
        done_rx
            .await
            .map_err(|_| -> BoxError { "plugin thread ended without a result".into() })?
    }
    .boxed())
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

struct Worker {
    name: String,
    plugin: Plugin,
    config_json: String,
    limits: Limits,
    instance: Instance,
    snapshot: Vec<u8>,
    log: Vec<LogEntry>,
    last_snapshot: Instant,
    next_seq: u64,
    /// Acknowledgements of input batches, by the sequence number one past
    /// their last event, until the plugin no longer holds them.
    held: VecDeque<(u64, Acks)>,
    out: Output,
    dead_letters: DeadLetters,
    metrics: Arc<StageMetrics>,
    handle: Handle,
    reporter: CheckpointReporter,
    /// A final checkpoint holds the open windows: do not flush them.
    keep_windows: bool,
    tick_every: StdDuration,
}

/// What woke the worker.
enum Wake {
    Update(Option<Update>),
    Input(Option<Item>),
    Tick,
}

/// Whether the worker goes on after an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Keep processing.
    Continue,
    /// Stop: downstream has gone away, or every input ended and the stage
    /// flushed.
    Stop,
}

impl Worker {
    fn run(
        mut self,
        mut input: Input,
        mut updates: mpsc::UnboundedReceiver<Update>,
    ) -> Result<(), BoxError> {
        let mut next_tick = Instant::now() + self.tick_every;
        let mut updates_open = true;
        loop {
            let msg = self.handle.block_on(async {
                tokio::select! {
                    biased;
                    u = updates.recv(), if updates_open => Wake::Update(u),
                    item = input.recv() => Wake::Input(item),
                    _ = tokio::time::sleep_until(next_tick.into()) => Wake::Tick,
                }
            });
            match msg {
                Wake::Update(Some(update)) => {
                    if let Some((swap, reply)) = update.open::<Swap>() {
                        reply.send(self.swap(swap));
                    }
                }
                Wake::Update(None) => updates_open = false,
                Wake::Input(Some(item)) => {
                    if self.dispatch(item)? == Flow::Stop {
                        return Ok(());
                    }
                }
                Wake::Input(None) => {
                    // Every upstream is gone without an end marker (a
                    // shutdown), or a reload replaces this stage with one of
                    // another type. Flush unless a final checkpoint kept the
                    // windows.
                    if !self.keep_windows {
                        self.on_end()?;
                    }
                    return Ok(());
                }
                Wake::Tick => {}
            }
            if Instant::now() >= next_tick {
                if self.on_tick(now_ms())? == Flow::Stop {
                    return Ok(());
                }
                next_tick = Instant::now() + self.tick_every;
            }
        }
    }

    /// Routes an input item: data to the plugin, barriers and the end to
    /// the checkpoint and shutdown logic.
    fn dispatch(&mut self, item: Item) -> Result<Flow, BoxError> {
        match item {
            Item::Batch(batch) => self.on_batch(batch),
            Item::Barrier { id, last } => self.on_barrier(id, last),
            Item::End => {
                self.on_end()?;
                let state = self
                    .instance
                    .snapshot()
                    .unwrap_or_else(|_| self.snapshot.clone());
                self.reporter.stage_done(self.next_seq, &state);
                let _ = self.out.blocking_marker(&self.handle, Marker::End);
                Ok(Flow::Stop)
            }
        }
    }

    /// Every input delivered barrier `id`: snapshot, report, forward.
    fn on_barrier(&mut self, id: u64, last: bool) -> Result<Flow, BoxError> {
        self.take_snapshot()?;
        self.reporter.snapshot(id, self.next_seq, &self.snapshot);
        if last {
            self.keep_windows = true;
        }
        if self
            .out
            .blocking_marker(&self.handle, Marker::Barrier { id, last })
            .is_err()
        {
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    /// Replaces the running instance with `swap`'s, carrying the state
    /// over, between two batches. On any failure the running instance
    /// stays and the reason goes back to the reload.
    fn swap(&mut self, mut swap: Swap) -> Result<Updated, String> {
        let started = Instant::now();
        let carried = carry_state(&self.name, &mut self.instance, &mut swap)?;
        let Swap {
            config,
            plugin,
            instance,
        } = swap;
        self.instance = instance;
        self.plugin = plugin;
        self.snapshot = carried.snapshot;
        self.config_json = config.config_json();
        self.limits = config.limits();
        self.tick_every = config.tick_every();
        self.log.clear();
        self.last_snapshot = Instant::now();
        let pause_us = started.elapsed().as_micros() as u64;
        if carried.reset.is_none() {
            tracing::info!(
                state_bytes = carried.state_bytes,
                pause_us,
                "plugin swapped in with the running state"
            );
        } else {
            tracing::info!(pause_us, "plugin swapped in, empty");
        }
        Ok(Updated { pause_us })
    }

    fn on_batch(&mut self, batch: Batch) -> Result<Flow, BoxError> {
        let n = batch.events.len() as u64;
        StageMetrics::add(&self.metrics.events_in, n);
        StageMetrics::add(&self.metrics.batches, 1);
        let pb = PluginInput::from_events(self.next_seq, &batch.events);
        self.next_seq += n;
        self.held.push_back((self.next_seq, batch.acks.clone()));
        let started = Instant::now();
        let result = self.instance.process(&pb);
        self.metrics.record_batch(started.elapsed());
        StageMetrics::set(&self.metrics.memory_bytes, self.instance.memory_bytes());
        let flow = match result {
            Ok(res) => {
                self.log.push(LogEntry::Process(pb));
                self.handle_result(res, Some(&batch))
            }
            Err(e) => {
                self.report(&e, "process", batch.events.len());
                let reason = e.to_string();
                let rejected = batch
                    .events
                    .iter()
                    .cloned()
                    .map(|ev| (ev, reason.clone()))
                    .collect();
                self.dead_letters
                    .blocking_send(&self.handle, rejected, batch.acks.clone());
                self.recover()?;
                Flow::Continue
            }
        };
        self.maybe_snapshot()?;
        Ok(flow)
    }

    fn on_tick(&mut self, now: i64) -> Result<Flow, BoxError> {
        match self.instance.tick(now) {
            Ok(res) => {
                self.log.push(LogEntry::Tick(now));
                let flow = self.handle_result(res, None);
                self.maybe_snapshot()?;
                Ok(flow)
            }
            Err(e) => {
                self.report(&e, "tick", 0);
                self.recover()?;
                Ok(Flow::Continue)
            }
        }
    }

    fn on_end(&mut self) -> Result<(), BoxError> {
        match self.instance.flush() {
            Ok(res) => {
                let _ = self.handle_result(res, None);
            }
            Err(e) => self.report(&e, "flush", 0),
        }
        // Whatever the plugin still holds is released now: the input ended.
        self.held.clear();
        Ok(())
    }

    fn report(&self, e: &CallError, call: &str, events: usize) {
        StageMetrics::add(&self.metrics.errors, 1);
        let action = if events > 0 {
            if self.dead_letters.is_configured() {
                "batch sent to the dead-letter output"
            } else {
                "batch dropped (no dead_letter set)"
            }
        } else {
            "call skipped"
        };
        tracing::error!(
            call,
            reason = %e,
            events,
            "plugin call failed; {action}; re-creating the instance from its last snapshot"
        );
    }

    fn handle_result(&mut self, res: PluginOutput, input: Option<&Batch>) -> Flow {
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
            self.dead_letters
                .blocking_send(&self.handle, rejected, input.acks.clone());
        }
        let events = match res.events {
            Ok(events) => events,
            Err(msg) => {
                StageMetrics::add(&self.metrics.errors, 1);
                tracing::error!(
                    reason = msg,
                    "plugin returned a malformed batch; output dropped"
                );
                Vec::new()
            }
        };
        let acks = self.release(res.hold_from);
        if events.is_empty() {
            return Flow::Continue;
        }
        match self
            .out
            .blocking_send(&self.handle, Batch::with_acks(events, acks))
        {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    /// Takes the acknowledgements of every input batch the plugin no longer
    /// holds.
    fn release(&mut self, hold_from: Option<u64>) -> Acks {
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

    fn maybe_snapshot(&mut self) -> Result<(), BoxError> {
        if self.log.len() < SNAPSHOT_EVERY_CALLS && self.last_snapshot.elapsed() < SNAPSHOT_EVERY {
            return Ok(());
        }
        self.take_snapshot()
    }

    /// Snapshots the instance, which empties the replay log; a failed
    /// snapshot is a failed call (reported, instance re-created).
    fn take_snapshot(&mut self) -> Result<(), BoxError> {
        match self.instance.snapshot() {
            Ok(s) => {
                self.snapshot = s;
                self.log.clear();
                self.last_snapshot = Instant::now();
            }
            Err(e) => {
                self.report(&e, "snapshot", 0);
                self.recover()?;
            }
        }
        Ok(())
    }

    /// Replaces a failed instance: a fresh one, restored from the last
    /// snapshot, with the calls since then replayed (their output was already
    /// sent, so it is discarded).
    fn recover(&mut self) -> Result<(), BoxError> {
        let mut fresh = Instance::new(&self.plugin, &self.name, &self.config_json, self.limits)
            .map_err(|e| format!("cannot re-create plugin instance: {e}"))?;
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
                fresh = Instance::new(&self.plugin, &self.name, &self.config_json, self.limits)
                    .map_err(|e| format!("cannot re-create plugin instance: {e}"))?;
                let _ = fresh.restore(&self.snapshot);
                self.log.clear();
                break;
            }
            replayed += 1;
        }
        tracing::info!(replayed, "plugin instance re-created");
        self.instance = fresh;
        Ok(())
    }
}
