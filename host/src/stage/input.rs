//! A stage's input: its channel, barrier alignment across the upstream
//! stages feeding it, and the hand-over of both to a replacing instance when
//! a reload restarts the stage.
//!
//! The channel belongs to the stage *name*, not to one running instance:
//! when a reload restarts a stage, the old instance stops at a batch
//! boundary and hands its [`Inbox`] (channel, alignment state, batches held
//! back) to the new one, so nothing queued is lost and upstream stages never
//! notice.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Alignment;
use crate::event::{Batch, Marker};
use crate::telemetry::TapPoint;

/// What a stage receives.
#[derive(Debug)]
pub enum Item {
    /// Data (with the acknowledgements of the records behind it).
    Batch(Batch),
    /// Every input has delivered checkpoint barrier `id`.
    Barrier {
        /// Checkpoint id.
        id: u64,
        /// The final checkpoint before stopping.
        last: bool,
    },
    /// Every input has ended for good: flush and finish.
    End,
    /// An upstream Kafka source gave partitions away (see
    /// [`Marker::Revoked`]); stages without per-partition state pass it on.
    Revoked {
        /// Which revocation.
        generation: u64,
    },
}

/// The state of a stage's input that survives restarts of the stage.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Batch>,
    align: Alignment,
    /// Hold back batches of an input that delivered a pending barrier until
    /// every input has (transforms, whose snapshots must be consistent).
    /// Sinks take everything as it comes.
    hold_back: bool,
    backlog: VecDeque<Batch>,
    ready: VecDeque<Batch>,
}

impl Inbox {
    /// A new inbox fed by `inputs` data inputs.
    pub(crate) fn new(rx: mpsc::Receiver<Batch>, inputs: usize, hold_back: bool) -> Self {
        Inbox {
            rx,
            align: Alignment::new(inputs),
            hold_back,
            backlog: VecDeque::new(),
            ready: VecDeque::new(),
        }
    }

    /// Routes one batch; returns what the stage must see, if anything.
    fn accept(&mut self, batch: Batch) -> Option<Item> {
        if self.hold_back && self.align.blocks(batch.from) {
            self.backlog.push_back(batch);
            return None;
        }
        match batch.marker {
            None => Some(Item::Batch(batch)),
            Some(Marker::Join) => {
                self.align.join();
                None
            }
            Some(Marker::Barrier { id, last }) => {
                let done = self.align.barrier(batch.from, id, last);
                self.completed(done)
            }
            Some(Marker::Revoked { generation }) => Some(Item::Revoked { generation }),
            Some(Marker::End) => {
                let (done, all_ended) = self.align.end();
                if all_ended {
                    Some(Item::End)
                } else {
                    self.completed(done)
                }
            }
        }
    }

    fn completed(&mut self, done: Option<Marker>) -> Option<Item> {
        match done {
            Some(Marker::Barrier { id, last }) => {
                // What waited for the barrier goes first, in order.
                while let Some(b) = self.backlog.pop_back() {
                    self.ready.push_front(b);
                }
                Some(Item::Barrier { id, last })
            }
            _ => None,
        }
    }
}

impl Drop for Inbox {
    /// Batches still queued when the inbox goes (its stage ended or failed
    /// without handing it on) never reached the stage: their records were
    /// not delivered, so their sources must not commit them. Closing first
    /// makes later sends fail, which [`super::Output::send`] reports the
    /// same way.
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(batch) = self.rx.try_recv() {
            batch.acks.fail();
        }
        for batch in self.backlog.iter().chain(&self.ready) {
            batch.acks.fail();
        }
    }
}

enum State {
    /// Waiting for the instance this one replaces to hand over.
    Pending(oneshot::Receiver<Inbox>),
    Ready(Inbox),
    Gone,
}

/// A running stage instance's end of its input.
///
/// [`Input::recv`] returns `None` when every upstream stage has gone away
/// or when a reload asked this instance to stop; in the latter case the
/// inbox passes to the replacing instance when the `Input` is dropped.
pub struct Input {
    state: State,
    stop: CancellationToken,
    handback: Option<oneshot::Sender<Inbox>>,
    handle: tokio::runtime::Handle,
    tap: Option<Arc<TapPoint>>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("stopping", &self.stop.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Input {
    /// An input that owns `inbox` from the start.
    pub(crate) fn ready(
        inbox: Inbox,
        stop: CancellationToken,
        handback: Option<oneshot::Sender<Inbox>>,
    ) -> Self {
        Input {
            state: State::Ready(inbox),
            stop,
            handback,
            handle: tokio::runtime::Handle::current(),
            tap: None,
        }
    }

    /// An input that receives its inbox from the instance it replaces.
    pub(crate) fn pending(
        from: oneshot::Receiver<Inbox>,
        stop: CancellationToken,
        handback: Option<oneshot::Sender<Inbox>>,
    ) -> Self {
        Input {
            state: State::Pending(from),
            stop,
            handback,
            handle: tokio::runtime::Handle::current(),
            tap: None,
        }
    }

    /// Offers every data batch received to `tap` (a sink's tap shows what
    /// it receives, as it has no output).
    pub(crate) fn with_tap(mut self, tap: Arc<TapPoint>) -> Self {
        self.tap = Some(tap);
        self
    }

    /// A stand-alone input over `rx` (tests, benchmarks).
    pub fn from_channel(rx: mpsc::Receiver<Batch>, inputs: usize) -> Self {
        Input::ready(Inbox::new(rx, inputs, true), CancellationToken::new(), None)
    }

    /// Whether a reload asked this instance to stop (as opposed to the
    /// input having ended). A stopping stage must not flush open windows:
    /// its successor carries on with them.
    pub fn is_handing_over(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// The next item; `None` once the input is closed or this instance must
    /// stop. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Item> {
        if let State::Pending(rx) = &mut self.state {
            let got = tokio::select! {
                biased;
                _ = self.stop.cancelled() => return None,
                got = rx => got,
            };
            self.state = match got {
                Ok(inbox) => State::Ready(inbox),
                Err(_) => {
                    tracing::error!(
                        "the stage instance being replaced did not hand over its input"
                    );
                    State::Gone
                }
            };
        }
        let State::Ready(inbox) = &mut self.state else {
            return None;
        };
        loop {
            if self.stop.is_cancelled() {
                return None;
            }
            let batch = match inbox.ready.pop_front() {
                Some(b) => b,
                None => tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => return None,
                    b = inbox.rx.recv() => b?,
                },
            };
            if let Some(item) = inbox.accept(batch) {
                if let (Some(tap), Item::Batch(b)) = (&self.tap, &item) {
                    tap.offer(&b.events);
                }
                return Some(item);
            }
        }
    }

    /// [`Input::recv`] from a blocking thread.
    pub fn blocking_recv(&mut self) -> Option<Item> {
        let handle = self.handle.clone();
        handle.block_on(self.recv())
    }

    /// [`Input::blocking_recv`] waiting at most `wait`: `None` when nothing
    /// came by then (with a zero `wait`, only what is already queued).
    pub fn blocking_recv_within(&mut self, wait: std::time::Duration) -> Option<Option<Item>> {
        let handle = self.handle.clone();
        handle.block_on(async { tokio::time::timeout(wait, self.recv()).await.ok() })
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        // Hand over only when asked to: a stage that ended or failed drops
        // its channel, so upstream stages learn it is gone.
        if !self.stop.is_cancelled() {
            return;
        }
        let Some(to) = self.handback.take() else {
            return;
        };
        match std::mem::replace(&mut self.state, State::Gone) {
            State::Ready(inbox) => {
                let _ = to.send(inbox);
            }
            State::Pending(from) => {
                // Stopped before its own predecessor handed over: pass the
                // inbox straight on when it arrives.
                self.handle.spawn(async move {
                    if let Ok(inbox) = from.await {
                        let _ = to.send(inbox);
                    }
                });
            }
            State::Gone => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    fn data(from: u32, v: &str) -> Batch {
        let mut b = Batch::with_acks(vec![Event::new(v.to_owned(), 0)], Default::default());
        b.from = from;
        b
    }

    fn marker(from: u32, m: Marker) -> Batch {
        let mut b = Batch::marker(m);
        b.from = from;
        b
    }

    fn value(item: Option<Item>) -> String {
        match item {
            Some(Item::Batch(b)) => String::from_utf8(b.events[0].value.to_vec()).unwrap(),
            other => panic!("expected data, got {other:?}"),
        }
    }

    /// Where a test's acknowledgements resolve: (id, delivered).
    #[derive(Default)]
    struct Resolved(std::sync::Mutex<Vec<(u64, bool)>>);

    impl crate::event::AckTarget for Resolved {
        fn resolved(&self, id: u64, delivered: bool) {
            self.0.lock().unwrap().push((id, delivered));
        }
    }

    fn acked(id: u64, to: &Arc<Resolved>) -> Batch {
        let ack = crate::event::Ack::new(id, to.clone());
        Batch::with_acks(vec![Event::new("r", 0)], crate::event::Acks::one(ack))
    }

    /// A stage that fails with batches queued (a sink failing at start)
    /// leaves their records undelivered, and so does every batch sent to
    /// it afterwards; a batch it took and finished with is delivered.
    /// Dropped unseen, they used to count as delivered, and a Kafka source
    /// committed records no sink had written.
    #[tokio::test]
    async fn batches_a_gone_stage_never_took_are_not_delivered() {
        let resolved = Arc::new(Resolved::default());
        let (tx, rx) = mpsc::channel(16);
        let mut input = Input::from_channel(rx, 1);
        let output = super::super::Output::new(
            vec![super::super::Route {
                to: "sink".into(),
                tx: tx.clone(),
            }],
            Default::default(),
            Default::default(),
            0,
            None,
        );
        output.send(acked(1, &resolved)).await.unwrap();
        output.send(acked(2, &resolved)).await.unwrap();
        let taken = input.recv().await;
        drop(taken);
        drop(input);
        assert!(output.send(acked(3, &resolved)).await.is_err());
        let mut got = resolved.0.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, vec![(1, true), (2, false), (3, false)]);
    }

    #[tokio::test]
    async fn barrier_alignment_holds_back_the_input_that_is_ahead() {
        let (tx, rx) = mpsc::channel(16);
        let mut input = Input::from_channel(rx, 2);
        for b in [
            marker(1, Marker::Barrier { id: 7, last: false }),
            data(1, "after"),
            data(2, "before"),
            marker(2, Marker::Barrier { id: 7, last: false }),
        ] {
            tx.send(b).await.unwrap();
        }
        assert_eq!(value(input.recv().await), "before");
        assert!(matches!(
            input.recv().await,
            Some(Item::Barrier { id: 7, last: false })
        ));
        assert_eq!(value(input.recv().await), "after");
    }

    #[tokio::test]
    async fn join_and_end_track_the_number_of_inputs() {
        let (tx, rx) = mpsc::channel(16);
        let mut input = Input::from_channel(rx, 1);
        tx.send(marker(2, Marker::Join)).await.unwrap();
        tx.send(marker(1, Marker::End)).await.unwrap();
        tx.send(data(2, "x")).await.unwrap();
        tx.send(marker(2, Marker::End)).await.unwrap();
        assert_eq!(value(input.recv().await), "x");
        assert!(matches!(input.recv().await, Some(Item::End)));
    }

    #[tokio::test]
    async fn a_stopped_instance_hands_its_queue_to_the_next() {
        let (tx, rx) = mpsc::channel(16);
        let (give, take) = oneshot::channel();
        let stop = CancellationToken::new();
        let mut old = Input::ready(Inbox::new(rx, 1, true), stop.clone(), Some(give));
        tx.send(data(1, "a")).await.unwrap();
        tx.send(data(1, "b")).await.unwrap();
        assert_eq!(value(old.recv().await), "a");
        stop.cancel();
        assert!(old.recv().await.is_none());
        let mut new = Input::pending(take, CancellationToken::new(), None);
        drop(old);
        assert_eq!(value(new.recv().await), "b");
        tx.send(data(1, "c")).await.unwrap();
        assert_eq!(value(new.recv().await), "c");
    }

    #[tokio::test]
    async fn a_stage_that_ends_on_its_own_drops_its_channel() {
        let (tx, rx) = mpsc::channel(16);
        let (give, take) = oneshot::channel();
        let input = Input::ready(
            Inbox::new(rx, 1, true),
            CancellationToken::new(),
            Some(give),
        );
        drop(input);
        assert!(take.await.is_err());
        assert!(tx.send(data(1, "x")).await.is_err());
    }
}
