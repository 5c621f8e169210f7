//! Graph checks: every input and dead-letter target exists and has the
//! right kind, nothing reads from a sink or from itself, and there is no
//! cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use indexmap::IndexMap;

use super::diagnostic::Diagnostics;
use super::{Kind, Stage};
use crate::util::suggest;

/// Checks the graph of `stages`, reporting problems at the spans given.
pub(super) fn check(
    stages: &IndexMap<String, Stage>,
    kinds: &BTreeMap<String, Kind>,
    input_spans: &BTreeMap<(String, String), Range<usize>>,
    dead_letter_spans: &BTreeMap<String, Range<usize>>,
    diag: &mut Diagnostics<'_>,
) {
    let dead_letter_targets: BTreeSet<&str> = stages
        .values()
        .filter_map(|s| s.dead_letter.as_deref())
        .collect();
    let upstream_names = || {
        kinds
            .iter()
            .filter(|(_, k)| **k != Kind::Sink)
            .map(|(n, _)| n.as_str())
    };
    for stage in stages.values() {
        let kind = stage.component.kind();
        if kind != Kind::Source
            && stage.inputs.is_empty()
            && (kind == Kind::Transform || !dead_letter_targets.contains(stage.name.as_str()))
        {
            diag.at_line(
                stage.line,
                format!(
                    "{} `{}` has no `inputs`; add inputs = [\"<stage>\"]",
                    kind.noun(),
                    stage.name
                ),
            );
        }
        let mut seen = BTreeSet::new();
        for input in &stage.inputs {
            let span = input_spans
                .get(&(stage.name.clone(), input.clone()))
                .cloned()
                .unwrap_or(0..0);
            if !seen.insert(input) {
                diag.at(span, format!("input `{input}` is listed twice"));
                continue;
            }
            match kinds.get(input) {
                None => {
                    let mut msg = format!(
                        "{} `{}` reads from unknown stage `{input}`",
                        kind.noun(),
                        stage.name
                    );
                    if let Some(s) = suggest(input, upstream_names()) {
                        msg.push_str(&format!(" (did you mean `{s}`?)"));
                    }
                    diag.at(span, msg);
                }
                Some(Kind::Sink) => diag.at(
                    span,
                    format!("`{input}` is a sink and produces no events; it cannot be an input"),
                ),
                Some(_) if input == &stage.name => {
                    diag.at(span, format!("stage `{input}` cannot read from itself"))
                }
                Some(_) => {}
            }
        }
        if let Some(dl) = &stage.dead_letter {
            let span = dead_letter_spans.get(&stage.name).cloned().unwrap_or(0..0);
            match kinds.get(dl) {
                Some(Kind::Sink) if dl == &stage.name => diag.at(
                    span,
                    format!("sink `{dl}` cannot be its own dead-letter output"),
                ),
                Some(Kind::Sink) => {}
                Some(k) => diag.at(
                    span,
                    format!("dead_letter must name a sink, but `{dl}` is a {}", k.noun()),
                ),
                None => {
                    let mut msg = format!("dead_letter names unknown sink `{dl}`");
                    let sinks = kinds
                        .iter()
                        .filter(|(_, k)| **k == Kind::Sink)
                        .map(|(n, _)| n.as_str());
                    if let Some(s) = suggest(dl, sinks) {
                        msg.push_str(&format!(" (did you mean `{s}`?)"));
                    }
                    diag.at(span, msg);
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(stages) {
        let first = &stages[&cycle[0]];
        diag.at_line(
            first.line,
            format!("stages form a cycle: {}", cycle.join(" -> ")),
        );
    }
}

/// A cycle through `inputs` edges, as a closed path of names.
fn find_cycle(stages: &IndexMap<String, Stage>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        name: &str,
        stages: &IndexMap<String, Stage>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(name).copied().unwrap_or(Mark::New) {
            Mark::Done => return None,
            Mark::Active => {
                let start = path.iter().position(|p| p == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].to_vec();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks.insert(name.to_owned(), Mark::Active);
        path.push(name.to_owned());
        if let Some(stage) = stages.get(name) {
            for input in &stage.inputs {
                if input != name
                    && stages.contains_key(input)
                    && let Some(c) = visit(input, stages, marks, path)
                {
                    return Some(c);
                }
            }
        }
        path.pop();
        marks.insert(name.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in stages.keys() {
        let mut path = Vec::new();
        if let Some(mut c) = visit(name, stages, &mut marks, &mut path) {
            // CheckpointReport in data-flow order (upstream first).
            c.reverse();
            return Some(c);
        }
    }
    None
}
