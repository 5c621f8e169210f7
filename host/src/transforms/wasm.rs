//! `type = "wasm"`: a sandboxed WebAssembly plugin as a pipeline stage.
//!
//! ```toml
//! [transforms.count]
//! type = "wasm"
//! inputs = ["shop_log"]
//! plugin = "../plugins/gender-count"   # a plugin crate (built on demand) or a .wasm file
//! config = { window = "1s", format = "seed" }
//! timeout = "1s"            # wall-clock deadline per call
//! memory_limit = "64MiB"    # linear memory cap
//! tick_interval = "100ms"   # how often processing time is advanced
//! dead_letter = "rejected"  # sink for refused records and failed batches
//! ```
//!
//! Each stage runs its plugin on a dedicated thread. A call that traps,
//! runs past its deadline or hits the memory cap fails only its batch: the
//! batch goes to the dead-letter output (or is logged and dropped), the error
//! is counted, and the instance is re-created from its last snapshot, with
//! the batches processed since that snapshot replayed so no state is lost.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::Reporter;
use crate::config::units::{ByteSize, Duration};
use crate::event::{Acks, Batch, Event, Marker};
use crate::metrics::StageMetrics;
use crate::topology::{BoxError, DeadLetters, Input, Item, Output, TransformContext, Update};
use crate::util::now_ms;
use crate::wasm::{
    CallError, Instance, Limits, Plugin, PluginBatch, PluginEvents, PluginHeader, PluginResult,
    Runtime, resolve_plugin,
};

/// Settings of the `wasm` transform.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmConfig {
    /// A `.wasm` component or a plugin crate directory.
    pub plugin: PathBuf,
    /// The plugin's own settings, passed to it as JSON.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Wall-clock deadline per call (default 1 s).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Linear memory cap (default 64 MiB).
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
    /// How often `tick` advances processing time (default 100 ms).
    #[serde(default)]
    pub tick_interval: Option<Duration>,
    /// What to do when the plugin refuses saved state (from a checkpoint or
    /// an older build): `reject` (default: fail with the plugin's reason) or
    /// `reset` (log it and start with empty state).
    #[serde(default)]
    pub on_incompatible_state: OnIncompatibleState,
}

/// See [`WasmConfig::on_incompatible_state`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnIncompatibleState {
    /// Refuse to start (or to swap) and report the plugin's reason.
    #[default]
    Reject,
    /// Start with empty state.
    Reset,
}

impl WasmConfig {
    /// The limits this stage runs under.
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            timeout: self.timeout.map_or(d.timeout, Duration::get),
            memory: self.memory_limit.map_or(d.memory, |b| b.0),
        }
    }

    /// The `config` table as the JSON the plugin receives.
    pub fn config_json(&self) -> String {
        match &self.config {
            Some(v) => v.to_string(),
            None => "{}".to_owned(),
        }
    }

    /// How often processing time advances.
    pub fn tick_every(&self) -> StdDuration {
        self.tick_interval
            .map_or(StdDuration::from_millis(100), Duration::get)
            .max(StdDuration::from_millis(1))
    }

    /// Prepares an in-place update of a running stage `stage` to these
    /// settings: resolves and compiles the plugin and instantiates it, all
    /// off the processing path. The running stage then only has to carry
    /// its state over ([`Swap`]).
    pub(crate) fn prepare_swap(&self, stage: &str) -> Result<(Swap, SwapReply), BoxError> {
        let plugin = self.load_plugin()?;
        let instance = Instance::new(&plugin, stage, &self.config_json(), self.limits())
            .map_err(|e| format!("cannot instantiate the new plugin: {e}"))?;
        let (reply, outcome) = oneshot::channel();
        Ok((
            Swap {
                config: self.clone(),
                plugin,
                instance,
                reply,
            },
            outcome,
        ))
    }

    /// Resolves (building if needed), compiles and loads the plugin.
    pub fn load_plugin(&self) -> Result<Plugin, BoxError> {
        let (wasm, _) = resolve_plugin(&self.plugin)?;
        Ok(Runtime::global()?.load(&wasm)?)
    }

    pub(crate) fn build(
        &self,
        ctx: TransformContext,
    ) -> Result<BoxFuture<'static, Result<(), BoxError>>, BoxError> {
        let plugin = self.load_plugin()?;
        let limits = self.limits();
        let config_json = self.config_json();
        let mut instance = Instance::new(&plugin, &ctx.name, &config_json, limits)?;
        let mut next_seq = 0;
        if let Some(saved) = &ctx.resume {
            let state = saved.bytes()?;
            match instance.restore(&state)? {
                Ok(()) => {
                    next_seq = saved.next_seq;
                    tracing::info!(
                        stage = ctx.name,
                        bytes = state.len(),
                        "plugin state restored from the checkpoint"
                    );
                }
                Err(reason) if self.on_incompatible_state == OnIncompatibleState::Reset => {
                    tracing::warn!(
                        stage = ctx.name,
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
        let tick_every = self.tick_every();
        let TransformContext {
            name,
            input,
            out,
            dead_letters,
            metrics,
            updates,
            reporter,
            resume: _,
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
            std::thread::Builder::new()
                .name(format!("wasm-{name}"))
                .spawn(move || {
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
}

/// A new plugin build or configuration for a running `wasm` stage, compiled
/// and instantiated, waiting to receive the running instance's state.
pub struct Swap {
    config: WasmConfig,
    plugin: Plugin,
    instance: Instance,
    reply: oneshot::Sender<Result<SwapOutcome, String>>,
}

impl std::fmt::Debug for Swap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swap")
            .field("plugin", &self.config.plugin)
            .finish_non_exhaustive()
    }
}

/// Where a [`Swap`]'s outcome arrives.
pub type SwapReply = oneshot::Receiver<Result<SwapOutcome, String>>;

/// How a swap went.
#[derive(Debug, Clone)]
pub struct SwapOutcome {
    /// Size of the state carried over.
    pub state_bytes: usize,
    /// The new plugin refused the state and started empty, with this reason
    /// (`on_incompatible_state = "reset"`).
    pub reset: Option<String>,
    /// How long processing paused for the swap, microseconds.
    pub pause_us: u64,
}

/// A call made since the last snapshot, replayed into a re-created instance.
enum LogEntry {
    Process(PluginBatch),
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
    reporter: Reporter,
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

/// Why the worker stops early.
enum Stop {
    /// Downstream has gone away.
    Downstream,
    /// Every input ended and the stage flushed.
    Finished,
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
                Wake::Update(Some(Update::Wasm(swap))) => self.swap(*swap),
                Wake::Update(None) => updates_open = false,
                Wake::Input(Some(item)) => {
                    if self.dispatch(item)?.is_err() {
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
                if self.on_tick(now_ms())?.is_err() {
                    return Ok(());
                }
                next_tick = Instant::now() + self.tick_every;
            }
        }
    }

    /// Routes an input item: data to the plugin, barriers and the end to
    /// the checkpoint and shutdown logic.
    fn dispatch(&mut self, item: Item) -> Result<Result<(), Stop>, BoxError> {
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
                Ok(Err(Stop::Finished))
            }
        }
    }

    /// Every input delivered barrier `id`: snapshot, report, forward.
    fn on_barrier(&mut self, id: u64, last: bool) -> Result<Result<(), Stop>, BoxError> {
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
        self.reporter.snapshot(id, self.next_seq, &self.snapshot);
        if last {
            self.keep_windows = true;
        }
        if self
            .out
            .blocking_marker(&self.handle, Marker::Barrier { id, last })
            .is_err()
        {
            return Ok(Err(Stop::Downstream));
        }
        Ok(Ok(()))
    }

    /// Replaces the running instance with `swap`'s, carrying the state
    /// over, between two batches. On any failure the running instance
    /// stays and the reason goes back to the reload.
    fn swap(&mut self, swap: Swap) {
        let started = Instant::now();
        let Swap {
            config,
            plugin,
            mut instance,
            reply,
        } = swap;
        let outcome = self.carry_state(&config, &plugin, &mut instance).map(
            |(reset, state_bytes, snapshot)| {
                self.instance = instance;
                self.plugin = plugin;
                self.snapshot = snapshot;
                self.config_json = config.config_json();
                self.limits = config.limits();
                self.tick_every = config.tick_every();
                self.log.clear();
                self.last_snapshot = Instant::now();
                let pause_us = started.elapsed().as_micros() as u64;
                if reset.is_none() {
                    tracing::info!(
                        stage = self.name,
                        state_bytes,
                        pause_us,
                        "plugin swapped in with the running state"
                    );
                } else {
                    tracing::info!(stage = self.name, pause_us, "plugin swapped in, empty");
                }
                SwapOutcome {
                    state_bytes,
                    reset,
                    pause_us,
                }
            },
        );
        let _ = reply.send(outcome);
    }

    /// Gives the running instance's state to `instance`. Returns the
    /// refusal reason when the state was reset, the state size and the new
    /// instance's first snapshot.
    fn carry_state(
        &mut self,
        config: &WasmConfig,
        plugin: &Plugin,
        instance: &mut Instance,
    ) -> Result<(Option<String>, usize, Vec<u8>), String> {
        let state = self
            .instance
            .snapshot()
            .map_err(|e| format!("the running instance failed to snapshot its state: {e}"))?;
        let mut reset = None;
        match instance.restore(&state) {
            Ok(Ok(())) => {}
            Ok(Err(reason)) if config.on_incompatible_state == OnIncompatibleState::Reset => {
                tracing::warn!(
                    stage = self.name,
                    reason,
                    "the new plugin refused the running state; starting it empty (on_incompatible_state = \"reset\")"
                );
                // The refusal may have left it half-restored.
                *instance =
                    Instance::new(plugin, &self.name, &config.config_json(), config.limits())
                        .map_err(|e| format!("cannot instantiate the new plugin: {e}"))?;
                reset = Some(reason);
            }
            Ok(Err(reason)) => {
                return Err(format!(
                    "the new plugin refused the running state: {reason} (set on_incompatible_state = \"reset\" to start it with empty state)"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "the new plugin trapped restoring the running state: {e}"
                ));
            }
        }
        let snapshot = instance
            .snapshot()
            .map_err(|e| format!("the new plugin failed to snapshot after restore: {e}"))?;
        Ok((reset, state.len(), snapshot))
    }

    fn on_batch(&mut self, batch: Batch) -> Result<Result<(), Stop>, BoxError> {
        let n = batch.events.len() as u64;
        StageMetrics::add(&self.metrics.events_in, n);
        StageMetrics::add(&self.metrics.batches, 1);
        let pb = to_plugin_batch(self.next_seq, &batch.events);
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
                Ok(())
            }
        };
        self.maybe_snapshot()?;
        Ok(flow)
    }

    fn on_tick(&mut self, now: i64) -> Result<Result<(), Stop>, BoxError> {
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
                Ok(Ok(()))
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
            stage = self.name,
            call,
            reason = %e,
            events,
            "plugin call failed; {action}; re-creating the instance from its last snapshot"
        );
    }

    fn handle_result(&mut self, res: PluginResult, input: Option<&Batch>) -> Result<(), Stop> {
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
        let events = match from_plugin_events(res.events) {
            Ok(events) => events,
            Err(msg) => {
                StageMetrics::add(&self.metrics.errors, 1);
                tracing::error!(
                    stage = self.name,
                    reason = msg,
                    "plugin returned a malformed batch; output dropped"
                );
                Vec::new()
            }
        };
        let acks = self.release(res.hold_from);
        if events.is_empty() {
            return Ok(());
        }
        self.out
            .blocking_send(&self.handle, Batch::with_acks(events, acks))
            .map_err(|_| Stop::Downstream)
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
                    stage = self.name,
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
                    stage = self.name,
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
        tracing::info!(stage = self.name, replayed, "plugin instance re-created");
        self.instance = fresh;
        Ok(())
    }
}

/// Lays a batch out flat for the plugin.
pub fn to_plugin_batch(base_seq: u64, events: &[Event]) -> PluginBatch {
    let total: usize = events.iter().map(|e| e.value.len()).sum();
    let key_total: usize = events
        .iter()
        .map(|e| e.key.as_ref().map_or(0, |k| k.len()))
        .sum();
    let mut values = Vec::with_capacity(total);
    let mut value_ends = Vec::with_capacity(events.len());
    let mut keys = Vec::with_capacity(key_total);
    let mut key_ends = Vec::with_capacity(events.len());
    let mut timestamps = Vec::with_capacity(events.len());
    let mut headers = Vec::new();
    for (i, e) in events.iter().enumerate() {
        values.extend_from_slice(&e.value);
        value_ends.push(values.len() as u32);
        if let Some(k) = &e.key {
            keys.extend_from_slice(k);
        }
        key_ends.push(keys.len() as u32);
        timestamps.push(e.timestamp_ms);
        for (name, value) in &e.headers {
            headers.push(PluginHeader {
                event: i as u32,
                name: name.clone(),
                value: value.to_vec(),
            });
        }
    }
    PluginBatch {
        base_seq,
        events: PluginEvents {
            timestamps,
            values,
            value_ends,
            keys,
            key_ends,
            headers,
        },
    }
}

/// Turns a plugin's flat output back into events, checking its layout.
pub fn from_plugin_events(ev: PluginEvents) -> Result<Vec<Event>, String> {
    let n = ev.timestamps.len();
    if ev.value_ends.len() != n || ev.key_ends.len() != n {
        return Err(format!(
            "{n} timestamps but {} value ends and {} key ends",
            ev.value_ends.len(),
            ev.key_ends.len()
        ));
    }
    let values = Bytes::from(ev.values);
    let keys = Bytes::from(ev.keys);
    let mut events = Vec::with_capacity(n);
    let (mut v0, mut k0) = (0usize, 0usize);
    for i in 0..n {
        let (v1, k1) = (ev.value_ends[i] as usize, ev.key_ends[i] as usize);
        if v1 < v0 || v1 > values.len() || k1 < k0 || k1 > keys.len() {
            return Err(format!("event {i} has offsets out of range"));
        }
        events.push(Event {
            key: (k1 > k0).then(|| keys.slice(k0..k1)),
            value: values.slice(v0..v1),
            timestamp_ms: ev.timestamps[i],
            headers: Vec::new(),
            origin: None,
        });
        (v0, k0) = (v1, k1);
    }
    for h in ev.headers {
        let e = events
            .get_mut(h.event as usize)
            .ok_or_else(|| format!("header {:?} names event {} of {n}", h.name, h.event))?;
        e.headers.push((h.name, Bytes::from(h.value)));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_layout_round_trips() {
        let mut a = Event::new("abc", 1);
        a.key = Some(Bytes::from_static(b"k"));
        a.headers.push(("h".into(), Bytes::from_static(b"v")));
        let b = Event::new("", 2);
        let c = Event::new("xy", 3);
        let pb = to_plugin_batch(5, &[a.clone(), b.clone(), c.clone()]);
        assert_eq!(pb.events.value_ends, vec![3, 3, 5]);
        let back = from_plugin_events(pb.events).unwrap();
        assert_eq!(back, vec![a, b, c]);
    }

    #[test]
    fn malformed_plugin_output_is_refused() {
        let bad = PluginEvents {
            timestamps: vec![1],
            values: vec![1, 2],
            value_ends: vec![5],
            keys: vec![],
            key_ends: vec![0],
            headers: vec![],
        };
        assert!(
            from_plugin_events(bad)
                .unwrap_err()
                .contains("out of range")
        );
    }
}
