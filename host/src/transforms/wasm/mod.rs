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
//! recycle_memory = "48MiB"  # past this, a fresh instance takes the state between batches
//! tick_interval = "100ms"   # how often processing time is advanced
//! dead_letter = "rejected"  # sink for refused records and failed batches
//! scope = "partition"       # one instance per Kafka input partition (default), or "global"
//! instances = 2             # instances on threads of their own (default 1)
//! key_field = "gender"      # route events by this JSON field (default: by the event key)
//! route = "key"             # or "batch": each batch to the least busy instance, for plugins without state
//! ```
//!
//! Fed by Kafka, the stage runs one plugin instance (a *task*) per input
//! partition, all sharing the compiled component, each with its own state,
//! sequence numbers and snapshots; events from no partition (files, other
//! plugins) go to one more task. So a partition's state can move to another
//! `weir` process of the same consumer group with the partition. A stage
//! whose state must see every partition declares `scope = "global"` and is
//! refused at start unless its Kafka input has a single partition.
//!
//! `instances = N` runs N instances, each on a thread of its own, so a
//! stage can use more than one core. Events from no partition are routed
//! by key ([`route`]): every event of a key goes to the same instance, whose
//! state (and whose output) covers the keys routed to it; a windowed count
//! then emits one result per window *per instance*, each with its own keys.
//! Tasks of input partitions are spread over the threads. The saved state
//! is kept per instance, so `instances` can change only with a restart that
//! starts empty (`on_incompatible_state = "reset"`).
//!
//! Each stage runs its plugin on a dedicated thread (with one instance). A call that traps,
//! runs past its deadline or hits the memory cap fails only its batch: the
//! batch goes to the dead-letter output (or is logged and dropped), the error
//! is counted, and the instance is re-created from its last snapshot, with
//! the batches processed since that snapshot replayed so no state is lost.
//! An instance whose memory passes `recycle_memory` is replaced the same
//! way between batches, before it fails one (counted as recycles).

//!
//! The settings and the component's hooks are here; [`worker`] runs the
//! plugin (calls, acknowledgements, snapshots, recovery); [`swap`] replaces
//! the plugin of a running stage in place, with its state.

mod lane_state;
mod lanes;
mod load;
mod route;
mod swap;
mod task;
mod worker;

pub use route::Route;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::Deserialize;

use crate::stage::{
    BoxError, Component, Partitioning, StageTask, Transactional, Transform, TransformContext,
    Update, UpdateOutcome,
};
use crate::units::{ByteSize, Duration};
use crate::wasm::{Limits, Plugin, Runtime, resolve_plugin};

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
    /// Linear memory past which the instance is replaced between batches
    /// by a fresh one restored from its snapshot (default three quarters
    /// of `memory_limit`), so a plugin that leaks slowly is recycled
    /// before it reaches the cap and fails a batch.
    #[serde(default)]
    pub recycle_memory: Option<ByteSize>,
    /// How often `tick` advances processing time (default 100 ms).
    #[serde(default)]
    pub tick_interval: Option<Duration>,
    /// What to do when the plugin refuses saved state (from a checkpoint or
    /// an older build): `reject` (default: fail with the plugin's reason) or
    /// `reset` (log it and start with empty state).
    #[serde(default)]
    pub on_incompatible_state: OnIncompatibleState,
    /// Whether state is kept per input partition (default) or must see
    /// every partition (`global`: only for a one-partition input).
    #[serde(default)]
    pub scope: Scope,
    /// Plugin instances running side by side, each on a thread of its own
    /// (default 1, at most [`MAX_INSTANCES`]).
    #[serde(default)]
    pub instances: Option<NonZeroU32>,
    /// With several instances, how events from no partition are spread:
    /// `key` (default: every event of a key to one instance) or `batch`
    /// (each batch to the least busy instance).
    #[serde(default)]
    pub route: Route,
    /// With `route = "key"`: the top-level field of a JSON value that is
    /// the key, instead of the event key.
    #[serde(default)]
    pub key_field: Option<String>,
}

/// The most instances one stage may run.
pub const MAX_INSTANCES: u32 = 64;

/// See [`WasmConfig::scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One task per input partition.
    #[default]
    Partition,
    /// One state for the whole input, which must have one partition.
    Global,
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

    /// How many instances run (1 unless `instances` is set).
    pub fn instance_count(&self) -> u32 {
        self.instances.map_or(1, NonZeroU32::get)
    }

    /// The memory past which an instance is recycled.
    pub fn recycle_above(&self) -> u64 {
        self.recycle_memory
            .map_or(self.limits().memory / 4 * 3, |b| b.0)
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

    /// Resolves (building if needed), compiles and loads the plugin.
    pub fn load_plugin(&self) -> Result<Plugin, BoxError> {
        let (wasm, _) = resolve_plugin(&self.plugin)?;
        Ok(Runtime::global()?.load(&wasm)?)
    }
}

impl Transform for WasmConfig {
    fn build(&self, ctx: TransformContext) -> Result<StageTask, BoxError> {
        worker::start(self, ctx)
    }

    fn updates_in_place(&self) -> bool {
        true
    }

    fn prepare_update(&self, stage: &str) -> Result<(Update, UpdateOutcome), BoxError> {
        Ok(Update::new(swap::Swap::prepare(self, stage)?))
    }
}

impl Component for WasmConfig {
    fn partitioning(&self) -> Option<Partitioning> {
        Some(match self.scope {
            Scope::Partition => Partitioning::PerPartition,
            Scope::Global => Partitioning::Global,
        })
    }

    fn transactional(&self) -> Transactional {
        // Its state is in the checkpoint; it has no outside effect.
        Transactional::Neutral
    }

    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.plugin]
    }

    fn check_files(&self) -> Vec<(&'static str, String)> {
        match crate::wasm::check_plugin_reference(&self.plugin) {
            Ok(()) => Vec::new(),
            Err(message) => vec![("plugin", message)],
        }
    }

    fn check_settings(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let n = self.instance_count();
        if n > MAX_INSTANCES {
            problems.push((
                "instances",
                format!("`instances` is {n}; at most {MAX_INSTANCES} are allowed"),
            ));
        }
        if n > 1 && self.scope == Scope::Global {
            problems.push((
                "instances",
                "`scope = \"global\"` keeps one state for the whole input, so it runs one instance: remove `instances` or the scope".to_owned(),
            ));
        }
        match (&self.key_field, self.route) {
            (Some(_), Route::Batch) => problems.push((
                "key_field",
                "`key_field` picks the key events are routed by; with `route = \"batch\"` each batch goes to the least busy instance, so remove one of them".to_owned(),
            )),
            (Some(f), _) if f.is_empty() => {
                problems.push(("key_field", "`key_field` is empty: name a field of the JSON values".to_owned()))
            }
            _ => {}
        }
        problems
    }

    fn files_to_watch(&self) -> Vec<PathBuf> {
        vec![self.plugin.clone()]
    }

    fn fingerprint(&self) -> Result<Option<String>, BoxError> {
        let (wasm, _) = resolve_plugin(&self.plugin)?;
        Ok(Some(crate::util::file_digest(&wasm)?))
    }
}
