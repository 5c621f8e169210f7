//! Events, batches, and delivery acknowledgements.
//!
//! Values stay bytes end to end: stages that need fields parse them. Stages
//! exchange [`Batch`]es over bounded channels, so a slow sink slows its
//! sources instead of growing memory.
//!
//! Every batch carries the [`Acks`] of the source records it was derived
//! from. An [`Ack`] is a shared token; when the last copy is dropped (the
//! sink wrote the batch, a dead-letter sink took it, or a plugin dropped the
//! records on purpose) the source hears that the record is finished and may
//! commit its position. Fan-out clones the acks, a window holds them until
//! the window's output is delivered, so a source never commits past work
//! that could still be lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

/// Where a record came from, for dead-letter headers and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A Kafka record.
    Kafka {
        /// Topic name.
        topic: Arc<str>,
        /// Partition.
        partition: i32,
        /// Offset within the partition.
        offset: i64,
    },
    /// A line of a file (1-based).
    Line(u64),
    /// Derived from the records of one input partition (the output of a
    /// plugin task), so stages further on keep it in that partition's task.
    Partition(i32),
}

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Optional key (Kafka record key, file name, ...).
    pub key: Option<Bytes>,
    /// The payload.
    pub value: Bytes,
    /// Event time in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Headers, in order. Empty for most events (no allocation).
    pub headers: Vec<(String, Bytes)>,
    /// Where the event was read, when known.
    pub origin: Option<Origin>,
}

impl Event {
    /// An event with only a value and a timestamp.
    pub fn new(value: impl Into<Bytes>, timestamp_ms: i64) -> Self {
        Event {
            key: None,
            value: value.into(),
            timestamp_ms,
            headers: Vec::new(),
            origin: None,
        }
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// This event as a dead letter: the original bytes with headers
    /// `weir.stage`, `weir.reason` and, for Kafka records, `weir.topic`,
    /// `weir.partition` and `weir.offset`.
    pub fn into_dead_letter(mut self, stage: &str, reason: &str) -> Event {
        self.headers.push((
            "weir.stage".into(),
            Bytes::copy_from_slice(stage.as_bytes()),
        ));
        self.headers.push((
            "weir.reason".into(),
            Bytes::copy_from_slice(reason.as_bytes()),
        ));
        match &self.origin {
            Some(Origin::Kafka {
                topic,
                partition,
                offset,
            }) => {
                self.headers.push((
                    "weir.topic".into(),
                    Bytes::copy_from_slice(topic.as_bytes()),
                ));
                self.headers
                    .push(("weir.partition".into(), Bytes::from(partition.to_string())));
                self.headers
                    .push(("weir.offset".into(), Bytes::from(offset.to_string())));
            }
            Some(Origin::Line(line)) => {
                self.headers
                    .push(("weir.line".into(), Bytes::from(line.to_string())));
            }
            Some(Origin::Partition(partition)) => {
                self.headers
                    .push(("weir.partition".into(), Bytes::from(partition.to_string())));
            }
            None => {}
        }
        self
    }
}

/// Receives the outcome of acknowledged source records.
pub trait AckTarget: Send + Sync {
    /// Token `id` is finished: `delivered` is false when some derived event
    /// was abandoned (for example a shutdown that could not drain).
    fn resolved(&self, id: u64, delivered: bool);
}

struct AckInner {
    id: u64,
    failed: AtomicBool,
    target: Arc<dyn AckTarget>,
}

impl Drop for AckInner {
    fn drop(&mut self) {
        self.target
            .resolved(self.id, !self.failed.load(Ordering::Acquire));
    }
}

/// A share of a source's acknowledgement; see the module docs.
#[derive(Clone)]
pub struct Ack(Arc<AckInner>);

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ack({})", self.0.id)
    }
}

impl Ack {
    /// A new token that reports to `target` under `id`.
    pub fn new(id: u64, target: Arc<dyn AckTarget>) -> Self {
        Ack(Arc::new(AckInner {
            id,
            failed: AtomicBool::new(false),
            target,
        }))
    }

    /// Marks the records as not delivered: the source will not commit them.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Release);
    }

    /// The id this token reports under, when it reports to `target`.
    pub fn id_for(&self, target: &dyn AckTarget) -> Option<u64> {
        std::ptr::addr_eq(Arc::as_ptr(&self.0.target), target as *const dyn AckTarget)
            .then_some(self.0.id)
    }
}

/// The acknowledgements a batch carries.
#[derive(Debug, Clone, Default)]
pub struct Acks(Vec<Ack>);

impl Acks {
    /// No acknowledgements (sources that do not track delivery).
    pub fn none() -> Self {
        Acks(Vec::new())
    }

    /// One token.
    pub fn one(ack: Ack) -> Self {
        Acks(vec![ack])
    }

    /// Adds all of `other`.
    pub fn merge(&mut self, other: Acks) {
        if self.0.is_empty() {
            self.0 = other.0;
        } else {
            self.0.extend(other.0);
        }
    }

    /// Marks every token as not delivered.
    pub fn fail(&self) {
        self.0.iter().for_each(Ack::fail);
    }

    /// The ids of the tokens that report to `target`.
    pub fn ids_for(&self, target: &dyn AckTarget) -> Vec<u64> {
        self.0.iter().filter_map(|a| a.id_for(target)).collect()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A control marker travelling in order with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// Checkpoint barrier `id`: everything before it from this input is part
    /// of checkpoint `id`. `last` marks the final checkpoint of a shutdown:
    /// stages keep their open windows (they are in the checkpoint) instead of
    /// flushing them.
    Barrier {
        /// Checkpoint id.
        id: u64,
        /// Final checkpoint before stopping.
        last: bool,
    },
    /// This input has ended for good (its source reached the end of its data,
    /// or a reload removed the edge).
    End,
    /// A new input joins (a reload added an edge); alignment now waits for
    /// it too. Consumed by the receiving stage's input, never seen by stages.
    Join,
    /// The source's consumer group took partitions away from this process
    /// (`generation` names the list in the pipeline's
    /// [`Handover`](crate::stage::Handover)): everything of theirs came
    /// before this marker, and stages that keep state per partition release
    /// it.
    Revoked {
        /// Which revocation.
        generation: u64,
    },
}

/// A batch of events and the acknowledgements of the records behind them,
/// or a control [`Marker`].
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The events.
    pub events: Vec<Event>,
    /// Released when the batch (and every copy of it) is done.
    pub acks: Acks,
    /// A marker, for control batches (which carry no events).
    pub marker: Option<Marker>,
    /// Index of the stage that sent the batch (set by its output).
    pub from: u32,
}

impl Batch {
    /// A batch of events without acknowledgement tracking.
    pub fn new(events: Vec<Event>) -> Self {
        Batch {
            events,
            ..Batch::default()
        }
    }

    /// A batch with acknowledgements.
    pub fn with_acks(events: Vec<Event>, acks: Acks) -> Self {
        Batch {
            events,
            acks,
            ..Batch::default()
        }
    }

    /// A control batch.
    pub fn marker(marker: Marker) -> Self {
        Batch {
            marker: Some(marker),
            ..Batch::default()
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether there are no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// The events gathered in `staged`, moved with one copy into a vector of
/// their own, for a batch that leaves this thread; `staged` is left empty
/// with its capacity, for the next batch.
///
/// A thread that gathers events one by one into a new vector and sends it
/// away writes them into memory the allocator handed back from the
/// receiving thread's last batch, whose cache lines sit in the other core's
/// cache: each of those writes waits on the other core. Gathering into a
/// buffer that never leaves the thread and copying the whole batch once
/// (the copy moves cache lines in bulk) took replay -> gender-count from
/// 0.72-0.80 s to 0.53-0.59 s for 3 M events in the build machine's slow
/// spells, and cost nothing in its fast ones (BENCHMARKS.md, "Both
/// cores").
pub fn take_staged(staged: &mut Vec<Event>) -> Vec<Event> {
    let mut events = Vec::with_capacity(staged.len());
    events.append(staged);
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn take_staged_moves_every_event_in_order_and_keeps_the_buffer() {
        let mut staged = Vec::with_capacity(8);
        for i in 0..5 {
            staged.push(Event::new(format!("e{i}"), i));
        }
        let events = take_staged(&mut staged);
        let values: Vec<_> = events
            .iter()
            .map(|e| (e.value.clone(), e.timestamp_ms))
            .collect();
        assert_eq!(
            values,
            (0..5)
                .map(|i| (Bytes::from(format!("e{i}")), i))
                .collect::<Vec<_>>()
        );
        assert!(
            events.capacity() < 8,
            "the batch gets a vector of its own size"
        );
        assert!(staged.is_empty());
        assert!(staged.capacity() >= 8, "the buffer keeps its capacity");
    }

    #[derive(Default)]
    struct Log(Mutex<Vec<(u64, bool)>>);
    impl AckTarget for Log {
        fn resolved(&self, id: u64, delivered: bool) {
            self.0.lock().unwrap().push((id, delivered));
        }
    }

    #[test]
    fn ack_resolves_when_last_copy_drops() {
        let log = Arc::new(Log::default());
        let a = Ack::new(7, log.clone());
        let mut acks = Acks::one(a.clone());
        drop(a);
        let copy = acks.clone();
        acks.merge(Acks::one(Ack::new(8, log.clone())));
        drop(acks);
        assert_eq!(*log.0.lock().unwrap(), vec![(8, true)]);
        copy.fail();
        drop(copy);
        assert_eq!(*log.0.lock().unwrap(), vec![(8, true), (7, false)]);
    }

    #[test]
    fn dead_letters_carry_their_origin() {
        let mut e = Event::new("x", 1);
        e.origin = Some(Origin::Kafka {
            topic: "t".into(),
            partition: 2,
            offset: 9,
        });
        let d = e.into_dead_letter("count", "late");
        assert_eq!(d.header("weir.reason").unwrap(), "late");
        assert_eq!(d.header("weir.offset").unwrap(), "9");
        assert_eq!(d.value, "x");
    }
}
