//! What a reload changes: the running pipeline and the new one compared
//! stage by stage, by name, settings and the digest of the plugin or model
//! each stage runs.

use std::collections::HashMap;

use crate::config::{Kind, Pipeline};

/// Per-stage digests of plugin and model files.
pub(crate) type Fingerprints = HashMap<String, String>;

/// The changes a reload makes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Untouched (possibly rewired).
    pub keep: Vec<String>,
    /// `wasm` stages given a new plugin build or settings in place.
    pub swap: Vec<String>,
    /// Replaced by a new instance built from the new settings.
    pub restart: Vec<String>,
    /// New stages.
    pub add: Vec<String>,
    /// Stages no longer in the file.
    pub remove: Vec<String>,
    /// Stages whose inputs or dead-letter output changed.
    pub rewire: Vec<String>,
}

impl Plan {
    /// Whether the graph's shape changes (stages or edges come or go, or a
    /// source restarts).
    pub fn is_structural(&self, new: &Pipeline) -> bool {
        !self.add.is_empty()
            || !self.remove.is_empty()
            || !self.rewire.is_empty()
            || self
                .restart
                .iter()
                .any(|s| new.stages[s].component.kind() == Kind::Source)
    }
}

/// A change a running pipeline cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Top-level settings changed.
    #[error(
        "top-level settings (batch_size, channel_capacity, state_dir, checkpoint_interval, admin) apply at start: restart weir to change them"
    )]
    Options,
    /// A stage changed its kind under the same name.
    #[error("stage `{stage}` changes from a {} to a {}: give the new stage another name", .was.noun(), .is.noun())]
    Kind {
        /// The stage.
        stage: String,
        /// Its kind in the running pipeline.
        was: Kind,
        /// Its kind in the new file.
        is: Kind,
    },
    /// Exactly-once: a source would restart or go away mid-transaction.
    #[error(
        "source `{stage}` would restart or be removed, but in an exactly-once pipeline what it read since the last commit is in the open transaction and would be read again: restart weir to change it"
    )]
    ExactlyOnceSource {
        /// The source.
        stage: String,
    },
}

/// Compares `old` and `new`. Fails when a change cannot be applied while
/// running.
pub(crate) fn diff(
    old: &Pipeline,
    new: &Pipeline,
    old_prints: &Fingerprints,
    new_prints: &Fingerprints,
) -> Result<Plan, PlanError> {
    if old.options != new.options {
        return Err(PlanError::Options);
    }
    let mut plan = Plan::default();
    for (name, stage) in &new.stages {
        let Some(before) = old.stages.get(name) else {
            plan.add.push(name.clone());
            continue;
        };
        let (was, is) = (before.component.kind(), stage.component.kind());
        if was != is {
            return Err(PlanError::Kind {
                stage: name.clone(),
                was,
                is,
            });
        }
        if before.inputs != stage.inputs || before.dead_letter != stage.dead_letter {
            plan.rewire.push(name.clone());
        }
        let same_files = old_prints.get(name) == new_prints.get(name);
        if before.component == stage.component && same_files {
            plan.keep.push(name.clone());
        } else if before.component.updates_in_place_to(&stage.component) {
            plan.swap.push(name.clone());
        } else {
            plan.restart.push(name.clone());
        }
    }
    plan.remove = old
        .stages
        .keys()
        .filter(|n| !new.stages.contains_key(*n))
        .cloned()
        .collect();
    if new.options.guarantee == crate::config::Guarantee::ExactlyOnce
        && let Some(stage) = plan
            .restart
            .iter()
            .chain(&plan.remove)
            .find(|n| old.stages[*n].component.kind() == Kind::Source)
    {
        return Err(PlanError::ExactlyOnceSource {
            stage: stage.clone(),
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(text: &str) -> Pipeline {
        crate::config::compile(text, std::path::Path::new("p.toml"), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const BASE: &str =
        "[sources.a]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"a\"]\n";

    #[test]
    fn exactly_once_refuses_to_restart_or_remove_a_source_but_not_a_sink() {
        let head = "guarantee = \"exactly-once\"\n\n[sources.a]\ntype = \"kafka\"\nbrokers = \"k:9092\"\ntopic = \"in\"\ngroup = \"g\"\n\n";
        let sink = |topic: &str| {
            format!(
                "[sinks.out]\ntype = \"kafka\"\ninputs = [\"a\"]\nbrokers = \"k:9092\"\ntopic = \"{topic}\"\n"
            )
        };
        let old = pipeline(&format!("{head}{}", sink("x")));
        let new_sink = pipeline(&format!("{head}{}", sink("y")));
        let plan = diff(&old, &new_sink, &HashMap::new(), &HashMap::new()).unwrap();
        assert_eq!(plan.restart, ["out"]);
        let new_source = pipeline(&format!(
            "{}{}",
            head.replace("group = \"g\"", "group = \"h\""),
            sink("x")
        ));
        let err = diff(&old, &new_source, &HashMap::new(), &HashMap::new()).unwrap_err();
        assert_eq!(err, PlanError::ExactlyOnceSource { stage: "a".into() });
        assert!(err.to_string().contains("restart weir"), "{err}");
    }

    #[test]
    fn an_unchanged_file_keeps_everything() {
        let p = pipeline(BASE);
        let plan = diff(&p, &p, &HashMap::new(), &HashMap::new()).unwrap();
        assert_eq!(plan.keep, ["a", "out"]);
        assert!(plan.swap.is_empty() && plan.restart.is_empty() && plan.rewire.is_empty());
    }

    #[test]
    fn a_changed_sink_restarts_only_that_sink_and_a_new_one_is_added() {
        let old = pipeline(BASE);
        let new = pipeline(
            "[sources.a]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"a\"]\nformat = \"json\"\n\n[sinks.file]\ntype = \"file\"\ninputs = [\"a\"]\npath = \"/tmp/x\"\n",
        );
        let plan = diff(&old, &new, &HashMap::new(), &HashMap::new()).unwrap();
        assert_eq!(plan.keep, ["a"]);
        assert_eq!(plan.restart, ["out"]);
        assert_eq!(plan.add, ["file"]);
        assert!(plan.remove.is_empty() && plan.rewire.is_empty());
    }

    #[test]
    fn a_new_plugin_build_is_a_swap_and_a_removed_stage_is_removed() {
        let mut old = pipeline(BASE);
        let wasm = crate::transforms::wasm::WasmConfig {
            plugin: "p.wasm".into(),
            config: None,
            timeout: None,
            memory_limit: None,
            recycle_memory: None,
            tick_interval: None,
            on_incompatible_state: Default::default(),
            scope: Default::default(),
            instances: None,
            route: Default::default(),
            key_field: None,
        };
        old.stages.insert(
            "t".into(),
            crate::config::Stage {
                name: "t".into(),
                line: 9,
                inputs: vec!["a".into()],
                dead_letter: None,
                component: crate::config::ComponentConfig::Transform(
                    crate::transforms::TransformConfig::Wasm(wasm),
                ),
            },
        );
        let mut new = old.clone();
        new.stages.shift_remove("out");
        let before = HashMap::from([("t".to_owned(), "aa".to_owned())]);
        let after = HashMap::from([("t".to_owned(), "bb".to_owned())]);
        let plan = diff(&old, &new, &before, &after).unwrap();
        assert_eq!(plan.swap, ["t"]);
        assert_eq!(plan.remove, ["out"]);
    }

    #[test]
    fn changing_a_stage_kind_or_a_top_level_setting_is_refused() {
        let old = pipeline(BASE);
        let new = pipeline(
            "[sources.out]\ntype = \"stdin\"\n\n[sinks.a]\ntype = \"console\"\ninputs = [\"out\"]\n",
        );
        let err = diff(&old, &new, &HashMap::new(), &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("changes from a sink to a source"), "{err}");
        let new = pipeline(&format!("batch_size = 5\n{BASE}"));
        let err = diff(&old, &new, &HashMap::new(), &HashMap::new()).unwrap_err();
        assert_eq!(err, PlanError::Options);
        assert!(err.to_string().contains("restart weir"), "{err}");
    }
}
