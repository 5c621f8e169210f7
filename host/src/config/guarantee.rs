//! Which pipelines can have `guarantee = "exactly-once"`: every source and
//! sink must take part in one Kafka transaction (Kafka stages, all on the
//! same brokers), and state goes to Kafka, not to `state_dir`.

use indexmap::IndexMap;

use super::diagnostic::Diagnostics;
use super::{Guarantee, Options, Stage};
use crate::stage::Transactional;

/// Reports why the pipeline cannot be exactly-once; `line` is that of the
/// `guarantee` setting.
pub(super) fn check(
    options: &Options,
    stages: &IndexMap<String, Stage>,
    line: usize,
    diag: &mut Diagnostics<'_>,
) {
    if options.guarantee != Guarantee::ExactlyOnce {
        return;
    }
    if options.state_dir.is_some() {
        diag.at_line(
            line,
            "exactly-once keeps plugin state in Kafka (a changelog topic committed with each transaction); remove `state_dir`",
        );
    }
    let mut cluster: Option<(String, Option<String>)> = None;
    let mut producer: Option<(String, Vec<(String, String)>)> = None;
    for stage in stages.values() {
        let kind = stage.component.kind();
        if kind == super::Kind::Sink && stage.dead_letter.is_some() {
            diag.at_line(
                stage.line,
                format!(
                    "sink `{}` sets `dead_letter`: under exactly-once a record a sink cannot write fails the transaction (the pipeline stops and resumes from the last commit); remove it",
                    stage.name
                ),
            );
        }
        match stage.component.hooks().transactional() {
            Transactional::Neutral => {}
            Transactional::No(reason) => diag.at_line(
                stage.line,
                format!(
                    "{} `{}` ({}) cannot be part of an exactly-once pipeline: {reason}; only Kafka sources and sinks can",
                    kind.noun(),
                    stage.name,
                    stage.component.type_name()
                ),
            ),
            Transactional::Kafka { brokers, client } => {
                match &cluster {
                    None => cluster = Some((stage.name.clone(), brokers)),
                    Some((first, theirs)) if *theirs != brokers => diag.at_line(
                        stage.line,
                        format!(
                            "{} `{}` uses brokers {}, but `{first}` uses {}: one exactly-once transaction spans one Kafka cluster",
                            kind.noun(),
                            stage.name,
                            describe(&brokers),
                            describe(theirs)
                        ),
                    ),
                    Some(_) => {}
                }
                if kind == super::Kind::Sink {
                    match &producer {
                        None => producer = Some((stage.name.clone(), client)),
                        Some((first, theirs)) if *theirs != client => diag.at_line(
                            stage.line,
                            format!(
                                "sink `{}` sets producer settings (`compression`, `options`) other than sink `{first}`'s: under exactly-once every sink writes through one transactional producer; make them the same",
                                stage.name
                            ),
                        ),
                        Some(_) => {}
                    }
                }
            }
        }
    }
    if cluster.is_none() && !stages.is_empty() {
        diag.at_line(
            line,
            "exactly-once needs Kafka sources and sinks; this pipeline has none",
        );
    }
}

fn describe(brokers: &Option<String>) -> String {
    match brokers {
        Some(b) => format!("`{b}`"),
        None => "the embedded broker".to_owned(),
    }
}
