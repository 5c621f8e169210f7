//! The threads of a several-instance `wasm` stage (`instances` > 1): each
//! runs the tasks given to it (task `Lane(n)` and the partitions `p` with
//! `p % instances == n`), calling their plugins as batches arrive, so the
//! instances work on different cores.
//!
//! Only `process` and `tick` run out there, in the order the worker queued
//! them. Everything else a task does (snapshots for checkpoints, flushes,
//! swaps, releases) happens on the stage's own thread with every task
//! *home*: [`Lanes::bring_home`] asks each thread for its tasks, which it
//! gives back once the batches queued before the request are done. So the
//! worker's logic for one thread is the logic for many, and a barrier the
//! worker forwards follows every output the tasks made from the batches
//! before it. Ticks stay out on the threads because bringing the tasks
//! home drains them: every thread waits for the slowest, which for a
//! plugin taking milliseconds per batch (images) cost a third of the
//! second instance's work at one tick per 100 ms.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::load::Load;
use super::task::{Shared, Task, TaskKey};
use super::worker::Flow;
use crate::event::Batch;
use crate::stage::BoxError;

/// The most batches queued or running per thread. Routed by key, a
/// thread whose queue is full holds the worker up while the others may
/// run dry, so for quick batches the queue is this deep (one large image
/// among small ones: 260 images over two threads took 1.37-1.43 s eight
/// deep against 1.61-1.66 s two deep, BENCHMARKS.md); for slow ones
/// [`Load`] keeps it to about 100 ms of work, so bringing the tasks
/// home, which waits for what is queued, stays quick.
const QUEUE: usize = 8;

/// With `route = "batch"`, a thread is given no more batches while it has
/// this many queued or running, unless every thread has: one to run and
/// one waiting keeps it busy, and more would only make the batches behind
/// a slow one wait while another thread could take them.
const BUSY: usize = 2;

/// What the worker tells a thread.
enum ToLane {
    /// Run these tasks, with the stage's shared parts.
    Take(Vec<(TaskKey, Task)>, Arc<Shared>),
    /// One more task (a partition seen for the first time), boxed: a task
    /// is large and this message rare.
    Adopt(TaskKey, Box<Task>),
    /// A batch for one of its tasks.
    Batch(TaskKey, Batch),
    /// Tick every task it holds (the plugin's `tick`), after the batches
    /// before it.
    Tick(i64),
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
    /// Set by a thread that stopped calling its tasks (downstream gone, or
    /// an instance that could not be re-created): bringing the tasks home
    /// tells the worker which.
    stopped: Arc<AtomicBool>,
    /// The tasks out on the threads with their memory and state size, as
    /// the threads last saw them (at hand-out and after each tick), for
    /// the stage's status.
    figures: Arc<Mutex<BTreeMap<TaskKey, Figures>>>,
    /// Batches given to each thread and not yet done.
    load: Arc<Load>,
}

/// A task's memory and state size, for the status.
#[derive(Debug, Clone, Copy)]
pub(super) struct Figures {
    /// Linear memory of its instance.
    pub memory_bytes: u64,
    /// Size of its last snapshot.
    pub state_bytes: u64,
}

impl Figures {
    /// The figures of `task` now.
    pub fn of(task: &Task) -> Figures {
        Figures {
            memory_bytes: task.memory_bytes(),
            state_bytes: task.state_bytes() as u64,
        }
    }
}

/// What a thread shares with the worker besides its messages.
struct Signals {
    abandoned: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    figures: Arc<Mutex<BTreeMap<TaskKey, Figures>>>,
    load: Arc<Load>,
    /// This thread's number.
    thread: usize,
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
        let stopped = Arc::new(AtomicBool::new(false));
        let figures = Arc::new(Mutex::new(BTreeMap::new()));
        let load = Arc::new(Load::new(count as usize));
        for n in 0..count {
            let (to, inbox) = sync_channel(QUEUE);
            let (reply, from) = sync_channel(1);
            let span = tracing::Span::current();
            let signals = Signals {
                abandoned: Arc::clone(&abandoned),
                stopped: Arc::clone(&stopped),
                figures: Arc::clone(&figures),
                load: Arc::clone(&load),
                thread: n as usize,
            };
            std::thread::Builder::new()
                .name(format!("wasm-{stage}-{n}"))
                .spawn(move || {
                    let _entered = span.enter();
                    run(&inbox, &reply, &signals);
                })
                .map_err(|e| format!("cannot start plugin thread {n}: {e}"))?;
            lanes.push(Lane { to, from });
        }
        Ok(Lanes {
            lanes,
            away: BTreeSet::new(),
            abandoned,
            stopped,
            figures,
            load,
        })
    }

    fn count(&self) -> u32 {
        self.lanes.len() as u32
    }

    fn send(&self, key: TaskKey, msg: ToLane) -> Result<(), BoxError> {
        let n = key.thread(self.count()) as usize;
        self.lanes[n].to.send(msg).map_err(|unsent| {
            // Not delivered: the source must not take it as such.
            if let ToLane::Batch(_, batch) = &unsent.0 {
                batch.acks.fail();
            }
            format!("plugin thread {n} stopped").into()
        })
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
        let mut figures = self.figures.lock().expect("figures lock");
        for (key, task) in std::mem::take(tasks) {
            self.away.insert(key);
            figures.insert(key, Figures::of(&task));
            per_lane[key.thread(self.count()) as usize].push((key, task));
        }
        drop(figures);
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
        self.figures
            .lock()
            .expect("figures lock")
            .insert(key, Figures::of(&task));
        self.send(key, ToLane::Adopt(key, Box::new(task)))
    }

    /// Queues a batch for the task of `key` (the tasks are out).
    /// Waits while its thread has as much queued as [`Load`] allows for
    /// batches that take as long as they do (about 100 ms of work, at most
    /// [`QUEUE`] batches).
    pub fn process(&self, key: TaskKey, batch: Batch) -> Result<(), BoxError> {
        let thread = key.thread(self.count()) as usize;
        self.load.reserve(thread, QUEUE);
        self.send(key, ToLane::Batch(key, batch))
    }

    /// The thread with the fewest batches queued or running (equals take
    /// turns), waiting while every thread has a batch running and one
    /// queued: where a batch that may go to any instance (`route =
    /// "batch"`) goes. A thread that ended is named at once, so the send
    /// to it fails.
    pub fn least_busy(&self) -> u32 {
        self.load.least_busy(BUSY) as u32
    }

    /// Queues a tick for every task out on the threads, after the batches
    /// queued before it (the tasks are out).
    pub fn tick(&self, now: i64) -> Result<(), BoxError> {
        for (n, lane) in self.lanes.iter().enumerate() {
            lane.to
                .send(ToLane::Tick(now))
                .map_err(|_| format!("plugin thread {n} stopped"))?;
        }
        Ok(())
    }

    /// Whether a thread stopped calling its tasks: [`Lanes::bring_home`]
    /// says why.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The figures of the tasks out on the threads.
    pub fn figures(&self) -> BTreeMap<TaskKey, Figures> {
        self.figures.lock().expect("figures lock").clone()
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
        // Every thread has replied: none touches the figures until the
        // next hand-out.
        self.figures.lock().expect("figures lock").clear();
        self.stopped.store(false, Ordering::Release);
        flow
    }
}

/// Tells the worker a batch is done, and how long it took, when dropped
/// (the thread's [`Load`]).
struct Done<'a> {
    signals: &'a Signals,
    started: Instant,
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        self.signals.load.done(self.signals.thread, took);
    }
}

/// Tells the worker the thread ended when dropped, however it ends (the
/// worker went away, or a panic): nothing queued on it will be done.
struct Ended<'a>(&'a Signals);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.load.gone(self.0.thread);
    }
}

/// One thread: runs its tasks' batches and ticks until the worker goes
/// away.
fn run(inbox: &Receiver<ToLane>, reply: &SyncSender<Returned>, signals: &Signals) {
    let _ended = Ended(signals);
    let mut tasks: BTreeMap<TaskKey, Task> = BTreeMap::new();
    let mut shared: Option<Arc<Shared>> = None;
    let mut ended: Option<Result<Flow, BoxError>> = None;
    // Records why the thread stops calling its tasks, and tells the worker.
    let end = |ended: &mut Option<Result<Flow, BoxError>>, why: Result<Flow, BoxError>| {
        *ended = Some(why);
        signals.stopped.store(true, Ordering::Release);
    };
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
                // However it goes, the batch is off this thread's hands.
                let _done = Done {
                    signals,
                    started: Instant::now(),
                };
                let gone = signals.abandoned.load(Ordering::Acquire);
                let (Some(with), Some(task), None, false) =
                    (&shared, tasks.get_mut(&key), &ended, gone)
                else {
                    // The stage is ending: the batch is not delivered.
                    batch.acks.fail();
                    if gone {
                        continue;
                    }
                    if ended.is_none() {
                        let why = Err(format!("no task for {key:?} on its thread").into());
                        end(&mut ended, why);
                    }
                    continue;
                };
                match task.process(with, batch) {
                    Ok(Flow::Continue) => {}
                    other => end(&mut ended, other),
                }
            }
            ToLane::Tick(now) => {
                let (Some(with), None) = (&shared, &ended) else {
                    continue;
                };
                if signals.abandoned.load(Ordering::Acquire) {
                    continue;
                }
                for task in tasks.values_mut() {
                    match task.tick(with, now) {
                        Ok(Flow::Continue) => {}
                        other => {
                            end(&mut ended, other);
                            break;
                        }
                    }
                }
                let mut figures = signals.figures.lock().expect("figures lock");
                for (key, task) in &tasks {
                    figures.insert(*key, Figures::of(task));
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
