//! A plugin swap: a new plugin build or new settings for a running `wasm`
//! stage. Everything that can fail or take time (building, compiling,
//! instantiating) is done by [`Swap::prepare`] off the processing path; the
//! running worker then only moves its state over between two batches
//! ([`carry_state`]).

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
