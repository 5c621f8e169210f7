//! The threads of a several-instance `wasm` stage (`instances` > 1): each
//! runs the tasks given to it (task `Lane(n)` and the partitions `p` with
//! `p % instances == n`), calling their plugins as batches arrive, so the
//! instances work on different cores.
//!
//! Only `process` runs out there. Everything else a task does (ticks,
//! snapshots for checkpoints, flushes, swaps, releases) happens on the
//! stage's own thread with every task *home*: [`Lanes::bring_home`] asks
//! each thread for its tasks, which it gives back once the batches queued
//! before the request are done. So the worker's logic for one thread is
//! the logic for many, and a barrier the worker forwards follows every
//! output the tasks made from the batches before it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::task::{Shared, Task, TaskKey};
use super::worker::Flow;
use crate::event::Batch;
use crate::stage::BoxError;

/// Batches queued per thread before the worker waits: enough to keep a
/// thread busy while the worker routes the next batch, few enough that
/// bringing tasks home is quick.
const QUEUE: usize = 2;

/// What the worker tells a thread.
enum ToLane {
    /// Run these tasks, with the stage's shared parts.
    Take(Vec<(TaskKey, Task)>, Arc<Shared>),
    /// One more task (a partition seen for the first time), boxed: a task
    /// is large and this message rare.
    Adopt(TaskKey, Box<Task>),
    /// A batch for one of its tasks.
    Batch(TaskKey, Batch),
    /// Give every task back.
    Return,
}

/// What a thread gives back: its tasks, and whether a call ended the
/// stage (downstream gone, or an instance that could not be re-created).
struct Returned {
    tasks: Vec<(TaskKey, Task)>,
    ended: Option<Result<Flow, BoxError>>,
}

struct Lane {
    to: SyncSender<ToLane>,
    from: Receiver<Returned>,
}

/// The threads, and whether the tasks are out on them.
pub(super) struct Lanes {
    lanes: Vec<Lane>,
    /// The tasks out on the threads (none when they are home).
    away: BTreeSet<TaskKey>,
    /// Set when the worker ends: batches still queued are not processed
    /// but failed, so the source does not take them as delivered.
    abandoned: Arc<AtomicBool>,
}

impl Drop for Lanes {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::Release);
    }
}

impl Lanes {
    /// Starts `count` threads named after the stage, in its span.
    pub fn start(count: u32, stage: &str) -> Result<Lanes, BoxError> {
        let mut lanes = Vec::with_capacity(count as usize);
        let abandoned = Arc::new(AtomicBool::new(false));
        for n in 0..count {
            let (to, inbox) = sync_channel(QUEUE);
            let (reply, from) = sync_channel(1);
            let span = tracing::Span::current();
            let gone = Arc::clone(&abandoned);
            std::thread::Builder::new()
                .name(format!("wasm-{stage}-{n}"))
                .spawn(move || {
                    let _entered = span.enter();
                    run(&inbox, &reply, &gone);
                })
                .map_err(|e| format!("cannot start plugin thread {n}: {e}"))?;
            lanes.push(Lane { to, from });
        }
        Ok(Lanes {
            lanes,
            away: BTreeSet::new(),
            abandoned,
        })
    }

    fn count(&self) -> u32 {
        self.lanes.len() as u32
    }

    fn send(&self, key: TaskKey, msg: ToLane) -> Result<(), BoxError> {
        let n = key.thread(self.count()) as usize;
        self.lanes[n]
            .to
            .send(msg)
            .map_err(|_| format!("plugin thread {n} stopped").into())
    }

    /// Sends every task in `tasks` to its thread (if they are home).
    pub fn hand_out(
        &mut self,
        tasks: &mut BTreeMap<TaskKey, Task>,
        shared: &Arc<Shared>,
    ) -> Result<(), BoxError> {
        if !self.away.is_empty() {
            return Ok(());
        }
        let mut per_lane: Vec<Vec<(TaskKey, Task)>> =
            (0..self.lanes.len()).map(|_| Vec::new()).collect();
        for (key, task) in std::mem::take(tasks) {
            self.away.insert(key);
            per_lane[key.thread(self.count()) as usize].push((key, task));
        }
        for (n, given) in per_lane.into_iter().enumerate() {
            self.lanes[n]
                .to
                .send(ToLane::Take(given, Arc::clone(shared)))
                .map_err(|_| format!("plugin thread {n} stopped"))?;
        }
        Ok(())
    }

    /// Whether any task is out on a thread.
    pub fn any_away(&self) -> bool {
        !self.away.is_empty()
    }

    /// Whether the task of `key` is out on a thread.
    pub fn holds(&self, key: TaskKey) -> bool {
        self.away.contains(&key)
    }

    /// Gives a new task to its thread (the tasks are out).
    pub fn adopt(&mut self, key: TaskKey, task: Task) -> Result<(), BoxError> {
        self.away.insert(key);
        self.send(key, ToLane::Adopt(key, Box::new(task)))
    }

    /// Queues a batch for the task of `key` (the tasks are out).
    pub fn process(&self, key: TaskKey, batch: Batch) -> Result<(), BoxError> {
        self.send(key, ToLane::Batch(key, batch))
    }

    /// Waits for every thread to finish what it was given and takes its
    /// tasks back into `tasks`. `Stop` when a call found downstream gone;
    /// an error when an instance could not be re-created.
    pub fn bring_home(&mut self, tasks: &mut BTreeMap<TaskKey, Task>) -> Result<Flow, BoxError> {
        if self.away.is_empty() {
            return Ok(Flow::Continue);
        }
        self.away.clear();
        for (n, lane) in self.lanes.iter().enumerate() {
            lane.to
                .send(ToLane::Return)
                .map_err(|_| format!("plugin thread {n} stopped"))?;
        }
        let mut flow = Ok(Flow::Continue);
        for (n, lane) in self.lanes.iter().enumerate() {
            let returned = lane
                .from
                .recv()
                .map_err(|_| format!("plugin thread {n} stopped"))?;
            tasks.extend(returned.tasks);
            match returned.ended {
                Some(Err(e)) if flow.is_ok() => flow = Err(e),
                Some(Ok(Flow::Stop)) if matches!(flow, Ok(Flow::Continue)) => flow = Ok(Flow::Stop),
                _ => {}
            }
        }
        flow
    }
}

/// One thread: runs its tasks' batches until the worker goes away.
fn run(inbox: &Receiver<ToLane>, reply: &SyncSender<Returned>, abandoned: &AtomicBool) {
    let mut tasks: BTreeMap<TaskKey, Task> = BTreeMap::new();
    let mut shared: Option<Arc<Shared>> = None;
    let mut ended: Option<Result<Flow, BoxError>> = None;
    while let Ok(msg) = inbox.recv() {
        match msg {
            ToLane::Take(given, with) => {
                tasks.extend(given);
                shared = Some(with);
            }
            ToLane::Adopt(key, task) => {
                tasks.insert(key, *task);
            }
            ToLane::Batch(key, batch) => {
                let gone = abandoned.load(Ordering::Acquire);
                let (Some(with), Some(task), None, false) =
                    (&shared, tasks.get_mut(&key), &ended, gone)
                else {
                    // The stage is ending: the batch is not delivered.
                    batch.acks.fail();
                    if gone {
                        continue;
                    }
                    if ended.is_none() {
                        ended = Some(Err(format!("no task for {key:?} on its thread").into()));
                    }
                    continue;
                };
                match task.process(with, batch) {
                    Ok(Flow::Continue) => {}
                    other => ended = Some(other),
                }
            }
            ToLane::Return => {
                // The worker may change the shared parts (a swap) once it
                // has everything back: let go of them first.
                shared = None;
                let returned = Returned {
                    tasks: std::mem::take(&mut tasks).into_iter().collect(),
                    ended: ended.take(),
                };
                if reply.send(returned).is_err() {
                    return;
                }
            }
        }
    }
}
