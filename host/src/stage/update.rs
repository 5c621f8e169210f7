//! In-place updates: a change to a running transform (a new plugin build,
//! new settings) prepared off the hot path by the component, carried to the
//! running instance by the engine without the engine knowing what it holds,
//! and applied by the instance between two batches.

use std::any::Any;

use tokio::sync::oneshot;

/// How an applied update went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Updated {
    /// How long processing paused for the update, microseconds.
    pub pause_us: u64,
}

/// Where the running instance answers an [`Update`].
#[derive(Debug)]
pub struct UpdateReply(oneshot::Sender<Result<Updated, String>>);

impl UpdateReply {
    /// Tells the engine how the update went; `Err` keeps the running
    /// instance as it was, with the reason for the reload report.
    pub fn send(self, outcome: Result<Updated, String>) {
        let _ = self.0.send(outcome);
    }
}

/// Where the engine waits for the outcome of an [`Update`].
pub type UpdateOutcome = oneshot::Receiver<Result<Updated, String>>;

/// A prepared change for a running transform. The payload is whatever the
/// transform type prepared (for `wasm`: a compiled, instantiated plugin);
/// only that type's running instance opens it.
pub struct Update {
    payload: Box<dyn Any + Send>,
    reply: UpdateReply,
}

impl std::fmt::Debug for Update {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Update").finish_non_exhaustive()
    }
}

impl Update {
    /// Wraps a prepared change; the engine awaits the returned outcome.
    pub fn new<T: Any + Send>(payload: T) -> (Update, UpdateOutcome) {
        let (tx, rx) = oneshot::channel();
        (
            Update {
                payload: Box::new(payload),
                reply: UpdateReply(tx),
            },
            rx,
        )
    }

    /// The prepared change, if it is a `T`, and where to answer. An update
    /// of another type is answered with an error at once.
    pub fn open<T: Any>(self) -> Option<(T, UpdateReply)> {
        match self.payload.downcast::<T>() {
            Ok(p) => Some((*p, self.reply)),
            Err(_) => {
                self.reply
                    .send(Err("this stage cannot take that kind of update".into()));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_opens_its_own_kind_and_answers() {
        let (u, mut outcome) = Update::new(41u32);
        let (n, reply) = u.open::<u32>().unwrap();
        reply.send(Ok(Updated {
            pause_us: n as u64 + 1,
        }));
        assert_eq!(outcome.try_recv().unwrap(), Ok(Updated { pause_us: 42 }));

        let (u, mut outcome) = Update::new("text");
        assert!(u.open::<u32>().is_none());
        assert!(outcome.try_recv().unwrap().is_err());
    }
}
