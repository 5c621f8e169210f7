//! The worker's batches: each to the task of its input partition, or,
//! for events from no partition, to one instance's task or spread over
//! the instances by the router; the tasks of partitions created on first
//! use; a batch that cannot be handed to a task failed, so its source does
//! not take it as delivered.

use std::collections::BTreeMap;

use super::{Flow, Worker};
use crate::event::{Acks, Batch, Event};
use crate::stage::BoxError;
use crate::transforms::wasm::lanes::Lanes;
use crate::transforms::wasm::route::Spread;
use crate::transforms::wasm::task::{Task, TaskKey, partition_of};

impl Worker {
    /// Makes sure the task of `key` exists, created (with the state this
    /// process was handed for the partition, or that the checkpoint holds)
    /// on first use.
    pub(super) fn ensure_task(&mut self, key: TaskKey) -> Result<(), BoxError> {
        let away = self.lanes.as_ref().is_some_and(|l| l.holds(key));
        if !away && !self.tasks.contains_key(&key) {
            let TaskKey::Partition(partition) = key else {
                unreachable!("the tasks of events from no partition always exist")
            };
            let handed = self
                .handover
                .as_ref()
                .and_then(|h| h.take(&self.shared.name, partition));
            let task = match (handed, self.saved_tasks.remove(&partition)) {
                (Some(saved), _) => Task::restored(&self.shared, key, &saved, "changelog")?,
                (None, Some(saved)) => Task::restored(&self.shared, key, &saved, "checkpoint")?,
                (None, None) => Task::new(&self.shared, key)?,
            };
            tracing::info!(partition, state_bytes = task.state_bytes(), "task started");
            self.tasks.insert(key, task);
            // With the other tasks out on their threads, the next tick
            // publishes them all.
            if !self.lanes.as_ref().is_some_and(Lanes::any_away) {
                self.publish();
            }
        }
        Ok(())
    }

    pub(super) fn on_batch(&mut self, batch: Batch) -> Result<Flow, BoxError> {
        // A Kafka source sends one partition per batch; split otherwise.
        let first = batch.events.first().and_then(partition_of);
        let one_partition = batch.events.iter().all(|e| partition_of(e) == first);
        if one_partition {
            if let Some(p) = first {
                return self.on_task_batch(TaskKey::Partition(p), batch);
            }
            return self.on_unpartitioned(batch.events, &batch.acks);
        }
        let mut groups: BTreeMap<Option<i32>, Vec<Event>> = BTreeMap::new();
        for e in batch.events {
            groups.entry(partition_of(&e)).or_default().push(e);
        }
        for (partition, events) in groups {
            let flow = match partition {
                Some(p) => self.on_task_batch(
                    TaskKey::Partition(p),
                    Batch::with_acks(events, batch.acks.clone()),
                )?,
                None => self.on_unpartitioned(events, &batch.acks)?,
            };
            if flow == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// Events from no partition: to the first instance's task, or spread
    /// over the instances by the router.
    fn on_unpartitioned(&mut self, events: Vec<Event>, acks: &Acks) -> Result<Flow, BoxError> {
        let spread = match &self.router {
            None => Spread::One(0),
            Some(router) => router.spread(&events),
        };
        let one = match spread {
            Spread::One(n) => n,
            Spread::AnyOne => self.lanes.as_ref().map_or(0, Lanes::least_busy),
            Spread::Each(lanes) => return self.on_spread(events, &lanes, acks),
        };
        self.on_task_batch(TaskKey::Lane(one), Batch::with_acks(events, acks.clone()))
    }

    /// Events of one batch for several instances: each instance's part
    /// gathered in its buffer on this thread, then sent.
    fn on_spread(
        &mut self,
        events: Vec<Event>,
        lanes: &[u32],
        acks: &Acks,
    ) -> Result<Flow, BoxError> {
        for (e, n) in events.into_iter().zip(lanes) {
            self.staged[*n as usize].push(e);
        }
        // Every buffer is emptied before any part is sent, so an early
        // return leaves nothing behind for the next batch's acks.
        let parts: Vec<(u32, Vec<Event>)> = self
            .staged
            .iter_mut()
            .enumerate()
            .filter(|(_, staged)| !staged.is_empty())
            .map(|(n, staged)| (n as u32, crate::event::take_staged(staged)))
            .collect();
        for (n, events) in parts {
            let part = Batch::with_acks(events, acks.clone());
            if self.on_task_batch(TaskKey::Lane(n), part)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    fn on_task_batch(&mut self, key: TaskKey, batch: Batch) -> Result<Flow, BoxError> {
        // A batch that is not handed to a task is failed, so its source
        // does not take it as delivered (an acknowledgement dropped
        // unfailed counts as delivered).
        if let Err(e) = self.ensure_task(key) {
            batch.acks.fail();
            return Err(e);
        }
        let Worker {
            shared,
            tasks,
            lanes,
            ..
        } = self;
        let Some(lanes) = lanes else {
            return tasks
                .get_mut(&key)
                .expect("created above")
                .process(shared, batch);
        };
        let ready = (|| -> Result<Flow, BoxError> {
            // A thread that stopped calling its tasks (downstream gone, or
            // an instance that could not be re-created) would fail every
            // batch given to it, and the least busy is often that one:
            // bringing the tasks home now says why, not at the next tick.
            if lanes.stopped() && lanes.bring_home(tasks)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
            lanes.hand_out(tasks, shared)?;
            // A task created while the others were out joins them.
            if let Some(task) = tasks.remove(&key) {
                lanes.adopt(key, task)?;
            }
            Ok(Flow::Continue)
        })();
        if !matches!(ready, Ok(Flow::Continue)) {
            batch.acks.fail();
            return ready;
        }
        lanes.process(key, batch)?;
        Ok(Flow::Continue)
    }
}
