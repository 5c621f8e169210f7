//! Checkpoint storage: where the source positions and transform snapshots
//! of one checkpoint are made durable together. [`FileStore`] writes
//! `state_dir/checkpoint.json` atomically; with `guarantee =
//! "exactly-once"` a Kafka transaction is the store (`kafka::exactly_once`),
//! so a checkpoint commits the pipeline's output with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file a checkpoint is written to, inside `state_dir`.
pub const FILE: &str = "checkpoint.json";

/// A transform's saved state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedStage {
    /// The next sequence number the host assigns to input events.
    pub next_seq: u64,
    /// The plugin's snapshot, hex-encoded.
    pub state: String,
    /// A stage with one plugin instance per input partition: each task's
    /// own state, by partition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<i32, SavedStage>,
    /// A stage running several instances (`instances` > 1): the state of
    /// the instances after the first (whose state is `state`), by their
    /// index, every one of them, so a restart can tell how many there were.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lanes: BTreeMap<u32, SavedStage>,
    /// With `lanes`: how events were routed to the instances (a restart
    /// that routes another way would find keys' state in other instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<String>,
}

impl SavedStage {
    /// State `state` with the host's next sequence number `next_seq`.
    pub fn new(next_seq: u64, state: &[u8]) -> Self {
        let mut hex = String::with_capacity(state.len() * 2);
        for b in state {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
        }
        SavedStage {
            next_seq,
            state: hex,
            tasks: BTreeMap::new(),
            lanes: BTreeMap::new(),
            routing: None,
        }
    }

    /// This state without its partition tasks' (what one changelog record
    /// holds); the further instances' state stays with it.
    pub fn without_tasks(&self) -> SavedStage {
        SavedStage {
            next_seq: self.next_seq,
            state: self.state.clone(),
            tasks: BTreeMap::new(),
            lanes: self.lanes.clone(),
            routing: self.routing.clone(),
        }
    }

    /// The snapshot bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        if !self.state.len().is_multiple_of(2) {
            return Err("odd-length state".into());
        }
        (0..self.state.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&self.state[i..i + 2], 16).map_err(|e| e.to_string()))
            .collect()
    }
}

/// A checkpoint as stored on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Checkpoint number, increasing.
    pub id: u64,
    /// When it was written, Unix ms.
    pub written_ms: i64,
    /// Source positions by stage name.
    pub sources: BTreeMap<String, serde_json::Value>,
    /// Transform state by stage name.
    pub stages: BTreeMap<String, SavedStage>,
}

/// Why a saved checkpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file exists but cannot be read.
    #[error("cannot read checkpoint {}: {source}", file.display())]
    Read {
        /// The checkpoint file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a checkpoint (damaged, or written by something
    /// else).
    #[error("checkpoint {} is unreadable: {source}", file.display())]
    Unreadable {
        /// The checkpoint file.
        file: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The checkpoint could not be written; later ones may succeed.
    #[error("cannot write checkpoint to {store}: {reason}")]
    Write {
        /// Where.
        store: String,
        /// Why.
        reason: String,
    },
    /// The store cannot go on (a fenced or failed transaction): the
    /// pipeline must stop, and restart from the last checkpoint.
    #[error("{0}")]
    Fatal(String),
}

/// Where checkpoints are kept. The coordinator calls [`CheckpointStore::save`]
/// once every live stage has answered a checkpoint; the engine calls
/// [`CheckpointStore::load`] at start.
pub trait CheckpointStore: Send + Sync {
    /// The last checkpoint made durable, if any.
    fn load(&self) -> Result<Option<Saved>, CheckpointError>;
    /// Makes `saved` durable. May block (a file sync, a transaction
    /// commit).
    fn save(&self, saved: &Saved) -> Result<(), CheckpointError>;
    /// Where it keeps them, for messages.
    fn describe(&self) -> String;
    /// The longest a [`CheckpointStore::save`] may take: one that takes
    /// longer is hung, and the coordinator's watchdog stops the pipeline.
    fn save_limit(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }
    /// No checkpoint will be saved any more (a stage or the store failed):
    /// whatever waits for one must stop waiting.
    fn give_up(&self, _reason: &str) {}
}

/// Checkpoints in `DIR/checkpoint.json` (`state_dir = DIR`).
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// Checkpoints in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        FileStore { dir }
    }
}

impl CheckpointStore for FileStore {
    fn load(&self) -> Result<Option<Saved>, CheckpointError> {
        load(&self.dir)
    }

    fn save(&self, saved: &Saved) -> Result<(), CheckpointError> {
        store(&self.dir, saved).map_err(|e| CheckpointError::Write {
            store: self.dir.display().to_string(),
            reason: e.to_string(),
        })
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

/// Reads `dir/checkpoint.json`, if there is one.
pub fn load(dir: &Path) -> Result<Option<Saved>, CheckpointError> {
    let file = dir.join(FILE);
    match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| CheckpointError::Unreadable { file, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::Read { file, source }),
    }
}

fn store(dir: &Path, saved: &Saved) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    serde_json::to_writer_pretty(&mut f, saved)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(FILE))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_round_trips_and_is_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let saved = Saved {
            id: 3,
            written_ms: 1,
            sources: [("in".to_owned(), serde_json::json!({"offset": 10}))].into(),
            stages: [("t".to_owned(), SavedStage::new(7, &[0, 255, 16]))].into(),
        };
        store(dir.path(), &saved).unwrap();
        let back = load(dir.path()).unwrap().unwrap();
        assert_eq!(back, saved);
        assert_eq!(back.stages["t"].bytes().unwrap(), vec![0, 255, 16]);
        assert!(!dir.path().join(format!(".{FILE}.tmp")).exists());
    }
}
