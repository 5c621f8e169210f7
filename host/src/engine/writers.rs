//! Sources that read what stages of the same pipeline write (a Kafka topic
//! produced and consumed in one pipeline): such a source may call its data
//! ended (`exit_at_end`) only once those writers have finished, not at a
//! topic that is still filling. Readers and writers are matched by the
//! [`Resource`]s their components declare.

use std::collections::{HashMap, HashSet};

use tokio_util::sync::CancellationToken;

use crate::config::Pipeline;
use crate::stage::Resource;

/// Who waits for whom, by stage name.
#[derive(Default)]
pub(super) struct WriterWaits {
    /// Reading stage -> (writing stages still running, cancelled when none
    /// is left).
    waits: HashMap<String, (HashSet<String>, CancellationToken)>,
    /// Stages that have ended.
    ended: HashSet<String>,
}

impl WriterWaits {
    pub fn new(pipeline: &Pipeline) -> Self {
        let mut w = WriterWaits::default();
        w.update(pipeline);
        w
    }

    /// Recomputes who waits for whom (after a reload), keeping the tokens
    /// already handed out.
    pub fn update(&mut self, pipeline: &Pipeline) {
        for reader in pipeline.stages.values() {
            let reads: HashSet<Resource> = reader.component.hooks().reads().into_iter().collect();
            if reads.is_empty() {
                continue;
            }
            let writers: HashSet<String> = pipeline
                .stages
                .values()
                .filter(|w| {
                    w.name != reader.name
                        && w.component
                            .hooks()
                            .writes()
                            .iter()
                            .any(|r| reads.contains(r))
                })
                .map(|w| w.name.clone())
                .filter(|w| !self.ended.contains(w))
                .collect();
            match self.waits.get_mut(&reader.name) {
                Some((running, token)) => {
                    *running = writers;
                    if running.is_empty() {
                        token.cancel();
                    }
                }
                None if !writers.is_empty() => {
                    self.waits
                        .insert(reader.name.clone(), (writers, CancellationToken::new()));
                }
                None => {}
            }
        }
    }

    /// Cancelled once every writer of what `reader` reads has finished;
    /// `None` when nothing in the pipeline writes it.
    pub fn token_for(&self, reader: &str) -> Option<CancellationToken> {
        self.waits.get(reader).map(|(_, t)| t.clone())
    }

    /// A stage ended: release readers whose writers have all finished.
    pub fn ended(&mut self, stage: &str) {
        self.ended.insert(stage.to_owned());
        for (writers, token) in self.waits.values_mut() {
            if writers.remove(stage) && writers.is_empty() {
                token.cancel();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(text: &str) -> Pipeline {
        crate::config::compile(text, std::path::Path::new("p.toml"), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_reader_of_its_own_pipelines_topic_waits_for_the_writer() {
        let p = pipeline(
            r#"
[sources.file]
type = "stdin"

[sinks.to_topic]
type = "kafka"
inputs = ["file"]
brokers = "localhost:9092"
topic = "t"

[sources.from_topic]
type = "kafka"
brokers = "localhost:9092"
topic = "t"

[sources.other]
type = "kafka"
brokers = "localhost:9092"
topic = "u"
"#,
        );
        let mut w = WriterWaits::new(&p);
        let token = w.token_for("from_topic").expect("waits for to_topic");
        assert!(w.token_for("other").is_none());
        assert!(!token.is_cancelled());
        w.ended("file");
        assert!(!token.is_cancelled());
        w.ended("to_topic");
        assert!(token.is_cancelled());
    }
}
