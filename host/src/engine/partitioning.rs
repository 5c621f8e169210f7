//! The start-time check of stages that keep state per input partition:
//! the Kafka topics feeding one such stage must have the same number of
//! partitions (co-partitioned: partition `p` of each is task `p`), and a
//! stage that needs every partition in one place (`scope = "global"`) must
//! be fed by one partition.

use crate::config::Pipeline;
use crate::stage::Partitioning;

use super::StageError;

/// Every stage whose partitioning its inputs do not allow, with the reason
/// naming the topics. Asks the cluster for partition counts (blocks).
pub(super) fn check(pipeline: &Pipeline) -> Vec<StageError> {
    let mut errors = Vec::new();
    for stage in pipeline.stages.values() {
        let Some(partitioning) = stage.component.hooks().partitioning() else {
            continue;
        };
        let mut topics: Vec<(String, i32)> = Vec::new();
        for input in &stage.inputs {
            let Some(source) = pipeline.stages.get(input) else {
                continue;
            };
            match source.component.hooks().input_partitions() {
                Some(Ok(counts)) => topics.extend(counts),
                Some(Err(e)) => {
                    tracing::debug!(stage = input, error = %e, "cannot count partitions; not checked")
                }
                None => {}
            }
        }
        if let Some(reason) = problem(partitioning, &topics) {
            errors.push(StageError {
                stage: stage.name.clone(),
                source: reason.into(),
            });
        }
    }
    errors
}

/// What is wrong with feeding a stage of `partitioning` from `topics`.
fn problem(partitioning: Partitioning, topics: &[(String, i32)]) -> Option<String> {
    let list = || {
        topics
            .iter()
            .map(|(t, n)| format!("`{t}` has {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match partitioning {
        Partitioning::PerPartition => {
            let first = topics.first()?.1;
            topics.iter().any(|(_, n)| *n != first).then(|| {
                format!(
                    "its Kafka inputs are not co-partitioned ({}): it runs one task per partition number, so every input topic needs the same number of partitions (repartition one, or set scope = \"global\" for a one-partition input)",
                    list()
                )
            })
        }
        Partitioning::Global => topics.iter().any(|(_, n)| *n != 1).then(|| {
            format!(
                "scope = \"global\" keeps one state for the whole input, but its Kafka input has more than one partition ({}): processes sharing the consumer group would each see part of it. Use a one-partition topic, or the default scope = \"partition\" with records keyed so each key stays in one partition",
                list()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn co_partitioned_inputs_pass_and_others_are_named() {
        let t = |n: &str, p: i32| (n.to_owned(), p);
        assert!(problem(Partitioning::PerPartition, &[t("a", 12), t("b", 12)]).is_none());
        assert!(problem(Partitioning::PerPartition, &[]).is_none());
        let e = problem(Partitioning::PerPartition, &[t("a", 12), t("b", 3)]).unwrap();
        assert!(e.contains("`a` has 12, `b` has 3"), "{e}");
        assert!(problem(Partitioning::Global, &[t("a", 1)]).is_none());
        let e = problem(Partitioning::Global, &[t("a", 4)]).unwrap();
        assert!(e.contains("`a` has 4"), "{e}");
    }
}
