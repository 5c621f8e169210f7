//! The worker of a `wasm` stage: a thread that feeds batches to the
//! plugin's tasks (one instance per input partition, see [`super::task`]),
//! forwards their output with the acknowledgements they release
//! (`hold-from`), answers checkpoint barriers with every task's snapshot,
//! releases the tasks of partitions the consumer group moved away, and
//! takes plugin swaps between batches, for every task. With several
//! `instances` it routes events from no partition to one task per instance
//! ([`super::route`]) and runs the calls on a thread per instance
//! ([`super::lanes`]). Where each batch goes is in [`batches`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::WasmConfig;
use super::lane_state::{lane_tasks, router_of};
use super::lanes::{Figures, Lanes};
use super::route::Router;
use super::swap::{Prepared, Swap, swap_instances};
use super::task::{Shared, Task, TaskKey};
use crate::event::{Event, Marker};
use crate::stage::{
    BoxError, Handover, Input, Item, SavedStage, StageTask, TransformContext, Update, Updated,
};
use crate::util::now_ms;

mod batches;

/// Instantiates the plugin of `config` (restoring checkpointed state) and
/// returns the task that runs it on a thread of its own.
pub(super) fn start(config: &WasmConfig, ctx: TransformContext) -> Result<StageTask, BoxError> {
    let plugin = config.load_plugin()?;
    let TransformContext {
        name,
        input,
        out,
        dead_letters,
        metrics,
        updates,
        reporter,
        resume,
        extensions,
    } = ctx;
    let instances = config.instance_count();
    let shared = Arc::new(Shared {
        name: name.clone(),
        plugin,
        config_json: config.config_json(),
        limits: config.limits(),
        recycle_above: config.recycle_above(),
        on_incompatible_state: config.on_incompatible_state,
        out,
        dead_letters,
        metrics,
        handle: Handle::current(),
    });
    let saved_tasks = resume.as_ref().map(|s| s.tasks.clone()).unwrap_or_default();
    let router = router_of(config);
    let routing = router.as_ref().map(Router::describe);
    let tasks = lane_tasks(&shared, instances, routing.as_deref(), resume.as_ref())?;
    let lanes = match instances {
        1 => None,
        n => Some(Lanes::start(n, &name)?),
    };
    let worker = Worker {
        shared,
        tasks,
        saved_tasks,
        handover: extensions.get::<Handover>(),
        reporter,
        keep_windows: false,
        tick_every: config.tick_every(),
        instances,
        router,
        routing,
        lanes,
        staged: (0..instances).map(|_| Vec::new()).collect(),
    };
    worker.publish();
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

struct Worker {
    shared: Arc<Shared>,
    /// Every task at home (see [`Lanes`]): `Lane(n)` for events from no
    /// partition (always there, one per instance), `Partition(p)` for
    /// input partition `p`.
    tasks: BTreeMap<TaskKey, Task>,
    /// Partition tasks' state from the checkpoint this run started from,
    /// restored when the partition's first event arrives.
    saved_tasks: BTreeMap<i32, SavedStage>,
    /// Where state of partitions assigned to this process waits, and which
    /// partitions a revoke took.
    handover: Option<Arc<Handover>>,
    reporter: crate::stage::CheckpointReporter,
    /// A final checkpoint holds the open windows: do not flush them.
    keep_windows: bool,
    tick_every: StdDuration,
    /// `instances`: tasks of events from no partition, and threads.
    instances: u32,
    /// Where events from no partition go, with several instances.
    router: Option<Router>,
    /// The router's rule, saved with the instances' state.
    routing: Option<String>,
    /// The threads the tasks run on, with several instances.
    lanes: Option<Lanes>,
    /// Per instance, where routed events gather before they leave for its
    /// thread (kept on this thread: [`crate::event::take_staged`]).
    staged: Vec<Vec<Event>>,
}

/// What woke the worker.
enum Wake {
    Update(Option<Update>),
    Input(Option<Item>),
    Tick,
}

/// Whether the worker goes on after an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
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
            let msg = self.shared.handle.block_on(async {
                tokio::select! {
                    biased;
                    u = updates.recv(), if updates_open => Wake::Update(u),
                    item = input.recv() => Wake::Input(item),
                    _ = tokio::time::sleep_until(next_tick.into()) => Wake::Tick,
                }
            });
            match msg {
                Wake::Update(Some(update)) => {
                    if self.home()? == Flow::Stop {
                        return Ok(());
                    }
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
                    if self.home()? == Flow::Stop {
                        return Ok(());
                    }
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

    /// Routes an input item: data to the tasks, barriers, revokes and the
    /// end to the checkpoint, hand-over and shutdown logic.
    fn dispatch(&mut self, item: Item) -> Result<Flow, BoxError> {
        if !matches!(item, Item::Batch(_)) && self.home()? == Flow::Stop {
            return Ok(Flow::Stop);
        }
        match item {
            Item::Batch(batch) => self.on_batch(batch),
            Item::Barrier { id, last } => self.on_barrier(id, last),
            Item::Revoked { generation } => self.on_revoked(generation),
            Item::End => {
                self.on_end()?;
                let saved = self.saved(false);
                self.reporter.stage_done_saved(saved);
                let _ = self
                    .shared
                    .out
                    .blocking_marker(&self.shared.handle, Marker::End);
                Ok(Flow::Stop)
            }
        }
    }

    /// Brings the tasks home from the instances' threads (see [`Lanes`]).
    fn home(&mut self) -> Result<Flow, BoxError> {
        match &mut self.lanes {
            Some(lanes) => lanes.bring_home(&mut self.tasks),
            None => Ok(Flow::Continue),
        }
    }

    fn on_tick(&mut self, now: i64) -> Result<Flow, BoxError> {
        // Tasks out on the instances' threads tick there, after the batches
        // queued before; unless a thread stopped, when bringing them home
        // says why.
        if let Some(lanes) = &self.lanes
            && lanes.any_away()
            && !lanes.stopped()
        {
            lanes.tick(now)?;
            self.publish();
            return Ok(Flow::Continue);
        }
        if self.home()? == Flow::Stop {
            return Ok(Flow::Stop);
        }
        let Worker { shared, tasks, .. } = self;
        for task in tasks.values_mut() {
            if task.tick(shared, now)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        self.publish();
        Ok(Flow::Continue)
    }

    fn on_end(&mut self) -> Result<(), BoxError> {
        let Worker { shared, tasks, .. } = self;
        for task in tasks.values_mut() {
            task.flush(shared);
        }
        Ok(())
    }

    /// Every input delivered barrier `id`: snapshot, report, forward.
    fn on_barrier(&mut self, id: u64, last: bool) -> Result<Flow, BoxError> {
        let saved = self.saved(true);
        self.reporter.snapshot_saved(id, saved);
        self.publish();
        if last {
            self.keep_windows = true;
        }
        if self
            .shared
            .out
            .blocking_marker(&self.shared.handle, Marker::Barrier { id, last })
            .is_err()
        {
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    /// The consumer group moved partitions away: their tasks end without
    /// flushing. Their state goes with the partition: in the transaction
    /// committed before this marker (exactly-once), to the keeper the
    /// source gave (at-least-once: the changelog, before the records the
    /// task holds are let go), or else by re-reading from the committed
    /// offsets, which stay behind what the tasks hold.
    fn on_revoked(&mut self, generation: u64) -> Result<Flow, BoxError> {
        let (partitions, keeper) = self
            .handover
            .as_ref()
            .map(|h| h.revoked(generation))
            .unwrap_or_default();
        for p in &partitions {
            if let Some(mut task) = self.tasks.remove(&TaskKey::Partition(*p)) {
                let Some(keep) = &keeper else {
                    task.release();
                    tracing::info!(partition = p, "task released: its partition moved away");
                    continue;
                };
                let saved = task.saved_now(&self.shared);
                let bytes = task.state_bytes();
                match keep(&self.shared.name, *p, &saved) {
                    Ok(()) => {
                        if let Some(h) = &self.handover {
                            h.park(generation, task.hand_over());
                        }
                        tracing::info!(
                            partition = p,
                            state_bytes = bytes,
                            "task released: its state went to the changelog with its partition"
                        );
                    }
                    Err(reason) => {
                        task.release();
                        tracing::warn!(
                            partition = p,
                            reason,
                            "task released without its state: the partition's next owner reads its records again"
                        );
                    }
                }
            }
            self.saved_tasks.remove(p);
        }
        self.publish();
        if self
            .shared
            .out
            .blocking_marker(&self.shared.handle, Marker::Revoked { generation })
            .is_err()
        {
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    /// Every task's state, snapshotting those that changed when `fresh`.
    fn saved(&mut self, fresh: bool) -> SavedStage {
        let Worker { shared, tasks, .. } = self;
        // The tasks of events from no partition, in a stage fed by Kafka,
        // never run: their state is nobody's (and several processes would
        // write it under one key). With several instances, all or none are
        // saved, so a restart can tell how many there were.
        let lanes_touched = tasks.iter().any(|(k, t)| k.lane().is_some() && t.touched());
        let mut global = None;
        let mut lanes = BTreeMap::new();
        let mut by_partition = BTreeMap::new();
        for (key, task) in tasks.iter_mut() {
            if key.lane().is_some() && !lanes_touched {
                continue;
            }
            let saved = if fresh {
                task.saved_now(shared)
            } else {
                task.saved_final(shared)
            };
            match *key {
                TaskKey::Lane(0) => global = Some(saved),
                TaskKey::Lane(n) => {
                    lanes.insert(n, saved);
                }
                TaskKey::Partition(p) => {
                    by_partition.insert(p, saved);
                }
            }
        }
        let mut saved = global.unwrap_or_else(|| SavedStage::new(0, &[]));
        saved.tasks = by_partition;
        if !lanes.is_empty() {
            saved.routing = self.routing.clone();
        }
        saved.lanes = lanes;
        saved
    }

    /// Tells the stage's counters which tasks run and their state sizes.
    fn publish(&self) {
        let mut figures: BTreeMap<TaskKey, Figures> = match &self.lanes {
            Some(lanes) if lanes.any_away() => lanes.figures(),
            _ => BTreeMap::new(),
        };
        figures.extend(self.tasks.iter().map(|(k, t)| (*k, Figures::of(t))));
        let mut memory = 0;
        let tasks = figures
            .iter()
            .map(|(k, f)| {
                memory += f.memory_bytes;
                let id = match k {
                    TaskKey::Partition(p) => *p,
                    // Not a partition: negative.
                    TaskKey::Lane(n) => -1 - *n as i32,
                };
                (id, f.state_bytes)
            })
            .collect();
        *self.shared.metrics.tasks.lock().expect("tasks lock") = tasks;
        crate::telemetry::StageMetrics::set(&self.shared.metrics.memory_bytes, memory);
    }

    /// Replaces every task's instance with one of `swap`'s plugin, each
    /// keeping its own state, between two batches. All or nothing: on any
    /// failure every task keeps its running instance and the reason goes
    /// back to the reload.
    fn swap(&mut self, swap: Swap) -> Result<Updated, String> {
        let started = Instant::now();
        let routing = self.routing.as_deref();
        let prepared = swap_instances(
            &self.shared.name,
            &mut self.tasks,
            self.instances,
            routing,
            swap,
        )?;
        let Prepared {
            config,
            plugin,
            instances,
            state_bytes,
            resets,
        } = prepared;
        for (key, instance, snapshot) in instances {
            if let Some(task) = self.tasks.get_mut(&key) {
                task.replace(instance, snapshot);
            }
        }
        let shared = Arc::get_mut(&mut self.shared)
            .expect("the instances' threads hold no shared parts while the tasks are home");
        shared.plugin = plugin;
        shared.config_json = config.config_json();
        shared.limits = config.limits();
        shared.recycle_above = config.recycle_above();
        shared.on_incompatible_state = config.on_incompatible_state;
        self.tick_every = config.tick_every();
        self.publish();
        let pause_us = started.elapsed().as_micros() as u64;
        // Tasks of input partitions (the tasks of events from no partition
        // are always there).
        let partitions = self.tasks.len() - self.instances as usize;
        if resets == self.tasks.len() {
            tracing::info!(pause_us, tasks = resets, "plugin swapped in, empty");
        } else if resets == 0 {
            tracing::info!(
                partitions,
                state_bytes,
                pause_us,
                "plugin swapped in with the running state"
            );
        } else {
            tracing::info!(
                partitions,
                resets,
                pause_us,
                "plugin swapped in; tasks whose state it refused start empty"
            );
        }
        Ok(Updated { pause_us })
    }
}
