//! Checkpoints: stage state and source positions saved together, so a
//! restarted pipeline continues exactly where the saved state ends.
//!
//! With `state_dir` set, a coordinator asks every source, every
//! `checkpoint_interval`, to record its position and send a **barrier**
//! downstream, in order with its data. A transform that has received the
//! barrier from all its inputs (buffering inputs that delivered theirs
//! early) snapshots its plugin and forwards the barrier; a sink reports once
//! everything before the barrier is written or delivered. When every live
//! stage has answered, the coordinator writes
//! `state_dir/checkpoint.json` atomically: the source positions and the
//! snapshots reflect exactly the same records.
//!
//! On SIGINT/SIGTERM the coordinator takes a final checkpoint the same way
//! (sources stop after sending it, and transforms keep their open windows in
//! it instead of flushing them). On restart, `weir run` restores each
//! stage's snapshot and resumes each source from its saved position: replay
//! sources seek to the saved byte offset, Kafka sources commit the saved
//! offsets to their group before subscribing. A SIGKILL loses only the
//! work since the last checkpoint, which is read again.
//!
//! The parts, one file each: [`store`] reads and writes `checkpoint.json`;
//! [`control`] is what stages hold (a source's [`SourceControl`], every
//! stage's [`CheckpointReporter`]); [`align`] lines barriers up across a
//! stage's inputs; [`coordinator`] asks for checkpoints, collects the
//! answers and writes them.

pub mod align;
pub mod control;
pub mod coordinator;
pub mod store;

pub use align::Alignment;
pub use control::{Action, CheckpointReport, CheckpointReporter, SourceControl};
pub use coordinator::{CheckpointSetup, Control, Members};
pub use store::{CheckpointError, CheckpointStore, FILE, FileStore, Saved, SavedStage, load};
