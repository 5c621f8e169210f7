//! The instances of a stage at start: the router that spreads events from
//! no partition over them, and their tasks, restored from the checkpoint
//! only when it was kept by as many instances routed the same way (each
//! held the state of the keys routed to it).

use std::collections::BTreeMap;

use super::WasmConfig;
use super::route::Router;
use super::task::{Shared, Task, TaskKey};
use crate::stage::{BoxError, SavedStage};

/// The router of a stage with several instances.
pub(super) fn router_of(config: &WasmConfig) -> Option<Router> {
    let n = config.instance_count();
    (n > 1).then(|| Router::new(n, config.route, config.key_field.as_deref()))
}

/// The tasks of events from no partition, one per instance, from the
/// checkpoint when it holds them. The checkpoint must come from as many
/// instances routed the same way: each held the state of its own keys.
pub(super) fn lane_tasks(
    shared: &Shared,
    instances: u32,
    routing: Option<&str>,
    resume: Option<&SavedStage>,
) -> Result<BTreeMap<TaskKey, Task>, BoxError> {
    let mut tasks = BTreeMap::new();
    // Empty when the tasks of events from no partition never ran.
    let saved = resume.filter(|s| !s.state.is_empty() || !s.lanes.is_empty());
    let mismatch = saved.and_then(|s| {
        let had = s.lanes.len() as u32 + 1;
        if had != instances {
            Some(format!(
                "the saved state was kept by {had} instance(s) and `instances` is now {instances}; each instance holds the state of its own keys, so the state cannot be split another way (set instances = {had} again"
            ))
        } else if had > 1 && s.routing.as_deref() != routing {
            Some(format!(
                "the saved state was routed to the instances by {} and would now be routed by {}; each instance holds the state of the keys routed to it (set route and key_field back",
                s.routing.as_deref().unwrap_or("an unknown rule"),
                routing.unwrap_or("nothing")
            ))
        } else {
            None
        }
    });
    let saved = match mismatch {
        Some(reason) => {
            if shared.on_incompatible_state != super::OnIncompatibleState::Reset {
                return Err(format!(
                    "{reason}, or set on_incompatible_state = \"reset\" to start with empty state)"
                )
                .into());
            }
            tracing::warn!(
                reason,
                "starting with empty state (on_incompatible_state = \"reset\")"
            );
            None
        }
        None => saved,
    };
    for n in 0..instances {
        let key = TaskKey::Lane(n);
        let own = saved.and_then(|s| if n == 0 { Some(s) } else { s.lanes.get(&n) });
        let task = match own {
            Some(own) if !own.state.is_empty() => Task::restored(shared, key, own, "checkpoint")?,
            _ => Task::new(shared, key)?,
        };
        tasks.insert(key, task);
    }
    Ok(tasks)
}
