//! A plugin swap: a new plugin build or new settings for a running `wasm`
//! stage. Everything that can fail or take time (building, compiling,
//! instantiating) is done by [`Swap::prepare`] off the processing path; the
//! running worker then only moves its state over between two batches
//! ([`carry_state`]).

use std::collections::BTreeMap;

use super::lane_state::router_of;
use super::route::Router;
use super::task::{Task, TaskKey};
use super::{OnIncompatibleState, WasmConfig};
use crate::stage::BoxError;
use crate::wasm::{Instance, Plugin};

/// A new plugin build or configuration for a running `wasm` stage, compiled
/// and instantiated, waiting to receive the running instance's state.
pub(super) struct Swap {
    pub config: WasmConfig,
    pub plugin: Plugin,
    pub instance: Instance,
}

impl Swap {
    /// Resolves, compiles and instantiates the plugin of `config` for the
    /// running stage `stage`.
    pub fn prepare(config: &WasmConfig, stage: &str) -> Result<Swap, BoxError> {
        let plugin = config.load_plugin()?;
        let instance = Instance::new(&plugin, stage, &config.config_json(), config.limits())
            .map_err(|e| format!("cannot instantiate the new plugin: {e}"))?;
        Ok(Swap {
            config: config.clone(),
            plugin,
            instance,
        })
    }
}

/// What carrying the state over gave.
pub(super) struct Carried {
    /// The new plugin refused the state and started empty, with this reason
    /// (`on_incompatible_state = "reset"`).
    pub reset: Option<String>,
    /// Size of the state carried over.
    pub state_bytes: usize,
    /// The new instance's first snapshot.
    pub snapshot: Vec<u8>,
}

/// Gives the state of `running` to `swap`'s instance. On any failure the
/// running instance stays as it was and the reason goes back to the reload.
pub(super) fn carry_state(
    stage: &str,
    running: &mut Instance,
    swap: &mut Swap,
) -> Result<Carried, String> {
    let state = running
        .snapshot()
        .map_err(|e| format!("the running instance failed to snapshot its state: {e}"))?;
    let mut reset = None;
    match swap.instance.restore(&state) {
        Ok(Ok(())) => {}
        Ok(Err(reason)) if swap.config.on_incompatible_state == OnIncompatibleState::Reset => {
            tracing::warn!(
                reason,
                "the new plugin refused the running state; starting it empty (on_incompatible_state = \"reset\")"
            );
            // The refusal may have left it half-restored.
            swap.instance = Instance::new(
                &swap.plugin,
                stage,
                &swap.config.config_json(),
                swap.config.limits(),
            )
            .map_err(|e| format!("cannot instantiate the new plugin: {e}"))?;
            reset = Some(reason);
        }
        Ok(Err(reason)) => {
            return Err(format!(
                "the new plugin refused the running state: {reason} (set on_incompatible_state = \"reset\" to start it with empty state)"
            ));
        }
        Err(e) => {
            return Err(format!(
                "the new plugin trapped restoring the running state: {e}"
            ));
        }
    }
    let snapshot = swap
        .instance
        .snapshot()
        .map_err(|e| format!("the new plugin failed to snapshot after restore: {e}"))?;
    Ok(Carried {
        reset,
        state_bytes: state.len(),
        snapshot,
    })
}

/// Every task's new instance with its carried state, ready to replace the
/// running ones: nothing has changed yet when this is built.
pub(super) struct Prepared {
    /// The new settings.
    pub config: WasmConfig,
    /// The new plugin.
    pub plugin: Plugin,
    /// Per task: the new instance and its state snapshot.
    pub instances: Vec<(TaskKey, Instance, Vec<u8>)>,
    /// State carried over, all tasks together.
    pub state_bytes: usize,
    /// Tasks whose state the new plugin refused (they start empty).
    pub resets: usize,
}

/// Builds an instance of `swap`'s plugin for every task of a stage with
/// `instances` instances and routing rule `routing`, each holding its
/// task's state. All or nothing: refuses a changed instance count or
/// routing, and any task whose state cannot move, leaving every running
/// instance as it was.
pub(super) fn swap_instances(
    stage: &str,
    tasks: &mut BTreeMap<TaskKey, Task>,
    instances: u32,
    routing: Option<&str>,
    swap: Swap,
) -> Result<Prepared, String> {
    if swap.config.instance_count() != instances {
        return Err(format!(
            "`instances` cannot change while the stage runs (from {} to {}): each instance holds the state of its own keys; restart weir to change it",
            instances,
            swap.config.instance_count()
        ));
    }
    let new_routing = router_of(&swap.config).as_ref().map(Router::describe);
    if new_routing.as_deref() != routing {
        return Err(
            "`route` and `key_field` cannot change while the stage runs: each instance holds the state of the keys routed to it; restart weir to change them"
                .to_owned(),
        );
    }
    let Swap {
        config,
        plugin,
        instance,
    } = swap;
    let mut first = Some(instance);
    let mut prepared = Vec::with_capacity(tasks.len());
    let mut state_bytes = 0;
    let mut resets = 0;
    for (key, task) in tasks.iter_mut() {
        let instance = match first.take() {
            Some(i) => i,
            None => Instance::new(&plugin, stage, &config.config_json(), config.limits())
                .map_err(|e| format!("cannot instantiate the new plugin: {e}"))?,
        };
        let mut one = Swap {
            config: config.clone(),
            plugin: plugin.clone(),
            instance,
        };
        let carried = carry_state(stage, task.instance_mut(), &mut one).map_err(|e| match key {
            TaskKey::Partition(p) => format!("task of partition {p}: {e}"),
            TaskKey::Lane(n) if instances > 1 => format!("instance {n}: {e}"),
            TaskKey::Lane(_) => e,
        })?;
        state_bytes += carried.state_bytes;
        resets += usize::from(carried.reset.is_some());
        prepared.push((*key, one.instance, carried.snapshot));
    }
    Ok(Prepared {
        config,
        plugin,
        instances: prepared,
        state_bytes,
        resets,
    })
}
