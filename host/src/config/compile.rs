//! Compilation: TOML text to a checked [`Pipeline`], every problem of the
//! file collected and reported as `FILE:LINE: message`.
//!
//! 1. `DeTable::parse_recoverable` parses, keeping spans;
//! 2. each stage table is split into the common keys (`type`, `inputs`,
//!    `dead_letter`) and the type-specific rest, and `${VAR}`s are expanded;
//! 3. the rest is deserialised by the stage type's settings (unknown keys
//!    and wrong types come back with a span; messages name the key and
//!    suggest the closest valid one);
//! 4. paths are resolved against the file's directory, the files the
//!    settings name are checked, and the graph is checked (`graph`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Diagnostics, improve_message, list};
use super::{ComponentConfig, ConfigErrors, Kind, Options, Pipeline, Stage, env, graph, guarantee};
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;
use crate::util::suggest;

/// Compiles pipeline text. `file` names it in messages and anchors relative
/// paths; `env` resolves `${VAR}` references.
pub fn compile(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, ConfigErrors> {
    let mut diag = Diagnostics::new(file, text);
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let span = e.span().unwrap_or(0..0);
            diag.at(span, first_line(e.message()));
        }
        return Err(ConfigErrors(diag.errors));
    }
    let base_dir = file
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));

    let mut options_table = DeTable::default();
    let mut stage_tables: Vec<(Kind, Spanned<String>, Spanned<DeValue>)> = Vec::new();
    let root_span = root.span();
    for (key, value) in root.into_inner() {
        let kind = match key.get_ref().as_ref() {
            "sources" => Kind::Source,
            "transforms" => Kind::Transform,
            "sinks" => Kind::Sink,
            _ => {
                options_table.insert(key, value);
                continue;
            }
        };
        let span = value.span();
        match value.into_inner() {
            DeValue::Table(t) => {
                for (name, stage) in t {
                    let name = Spanned::new(name.span(), name.get_ref().to_string());
                    stage_tables.push((kind, name, stage));
                }
            }
            other => diag.at(
                span,
                format!(
                    "`{}` must be a table, found {}",
                    kind.table(),
                    other.type_str()
                ),
            ),
        }
    }

    let mut options = Options::default();
    let guarantee_line = options_table
        .get("guarantee")
        .map_or(1, |v| diag.line_of(v.span().start));
    if !options_table.is_empty() {
        let mut value = Spanned::new(root_span, DeValue::Table(options_table));
        env::interpolate(&mut value, env, &mut diag);
        match Options::deserialize(toml::de::ValueDeserializer::from(value)) {
            Ok(o) => options = o,
            Err(e) => report(&mut diag, &e, "top level", &[]),
        }
    }
    if let Some(dir) = options.state_dir.as_mut()
        && dir.is_relative()
    {
        *dir = normalize(&base_dir.join(&*dir));
    }

    let mut stages: IndexMap<String, Stage> = IndexMap::new();
    let mut kinds: BTreeMap<String, Kind> = BTreeMap::new();
    let mut input_spans: BTreeMap<(String, String), Range<usize>> = BTreeMap::new();
    let mut dead_letter_spans: BTreeMap<String, Range<usize>> = BTreeMap::new();
    let mut file_problems: Vec<(Range<usize>, String)> = Vec::new();
    for (kind, name, mut value) in stage_tables {
        let header_line = diag.line_of(name.span().start);
        let name_str = name.get_ref().clone();
        if let Some(previous) = kinds.get(&name_str) {
            diag.at(
                name.span(),
                format!(
                    "stage name `{name_str}` is already used by a {}; names must be unique across sources, transforms and sinks",
                    previous.noun()
                ),
            );
            continue;
        }
        if !valid_name(&name_str) {
            diag.at(
                name.span(),
                format!("stage name `{name_str}` may contain only letters, digits, `_` and `-`"),
            );
        }
        kinds.insert(name_str.clone(), kind);
        env::interpolate(&mut value, env, &mut diag);
        let table_span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            diag.at(
                table_span,
                format!("{} `{name_str}` must be a table", kind.noun()),
            );
            continue;
        };
        let mut rest = DeTable::default();
        let mut type_name: Option<Spanned<String>> = None;
        let mut inputs: Vec<String> = Vec::new();
        let mut dead_letter: Option<String> = None;
        for (k, v) in table {
            match k.get_ref().as_ref() {
                "type" => match v.get_ref().as_str() {
                    Some(t) => type_name = Some(Spanned::new(v.span(), t.to_owned())),
                    None => diag.at(v.span(), "`type` must be a string"),
                },
                "inputs" if kind != Kind::Source => {
                    let span = v.span();
                    match v.into_inner() {
                        DeValue::Array(items) => {
                            for item in items {
                                match item.get_ref().as_str() {
                                    Some(s) => {
                                        input_spans
                                            .insert((name_str.clone(), s.to_owned()), item.span());
                                        inputs.push(s.to_owned());
                                    }
                                    None => diag.at(
                                        item.span(),
                                        "`inputs` must list stage names as strings",
                                    ),
                                }
                            }
                        }
                        DeValue::String(s) => {
                            input_spans.insert((name_str.clone(), s.to_string()), span);
                            inputs.push(s.into_owned());
                        }
                        _ => diag.at(
                            span,
                            "`inputs` must be a list of stage names, like inputs = [\"source\"]",
                        ),
                    }
                }
                "inputs" => diag.at(
                    k.span(),
                    format!("source `{name_str}` cannot have `inputs`"),
                ),
                "dead_letter" => match v.get_ref().as_str() {
                    Some(s) => {
                        dead_letter_spans.insert(name_str.clone(), v.span());
                        dead_letter = Some(s.to_owned());
                    }
                    None => diag.at(v.span(), "`dead_letter` must name a sink"),
                },
                _ => {
                    rest.insert(k, v);
                }
            }
        }
        let Some(type_name) = type_name else {
            diag.at_line(
                header_line,
                format!(
                    "{} `{name_str}` has no `type`; expected one of {}",
                    kind.noun(),
                    list(known_types(kind))
                ),
            );
            continue;
        };
        if !known_types(kind).contains(&type_name.get_ref().as_str()) {
            let t = type_name.get_ref();
            let mut msg = format!("unknown {} type `{t}`", kind.noun());
            match suggest(t, known_types(kind).iter().copied()) {
                Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
                None => msg.push_str(&format!("; expected one of {}", list(known_types(kind)))),
            }
            diag.at(type_name.span(), msg);
            continue;
        }
        let key_spans: Vec<(String, Range<usize>)> = rest
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), v.span()))
            .collect();
        let value = Spanned::new(table_span.clone(), DeValue::Table(rest));
        let de = toml::de::ValueDeserializer::from(value);
        let built = match kind {
            Kind::Source => {
                SourceConfig::deserialize_type(type_name.get_ref(), de).map(ComponentConfig::Source)
            }
            Kind::Transform => TransformConfig::deserialize_type(type_name.get_ref(), de)
                .map(ComponentConfig::Transform),
            Kind::Sink => {
                SinkConfig::deserialize_type(type_name.get_ref(), de).map(ComponentConfig::Sink)
            }
        };
        let mut component = match built {
            Ok(c) => c,
            Err(e) => {
                report(
                    &mut diag,
                    &e,
                    &format!("{} `{name_str}`", kind.noun()),
                    &key_spans,
                );
                continue;
            }
        };
        resolve_paths(&mut component, &base_dir);
        let hooks = component.hooks();
        let problems = hooks
            .check_settings()
            .into_iter()
            .chain(hooks.check_files());
        for (key, message) in problems {
            let span = key_spans
                .iter()
                .find(|(k, _)| k == key)
                .map_or(table_span.clone(), |(_, s)| s.clone());
            file_problems.push((span, message));
        }
        stages.insert(
            name_str.clone(),
            Stage {
                name: name_str,
                line: header_line,
                inputs,
                dead_letter,
                component,
            },
        );
    }

    for (span, message) in file_problems {
        diag.at(span, message);
    }

    graph::check(&stages, &kinds, &input_spans, &dead_letter_spans, &mut diag);
    guarantee::check(&options, &stages, guarantee_line, &mut diag);

    if diag.errors.is_empty() {
        Ok(Pipeline {
            file: file.to_path_buf(),
            base_dir,
            options,
            stages,
        })
    } else {
        diag.errors.sort_by_key(|e| e.line);
        Err(ConfigErrors(diag.errors))
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or("").trim().to_owned()
}

/// Every `type` each kind of stage accepts.
pub fn known_types(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Source => SourceConfig::TYPES,
        Kind::Transform => TransformConfig::TYPES,
        Kind::Sink => SinkConfig::TYPES,
    }
}

/// Reports a deserialisation error, naming the key whose value is wrong
/// when the error points inside one of `keys` (name, value span).
fn report(
    diag: &mut Diagnostics<'_>,
    e: &toml::de::Error,
    context: &str,
    keys: &[(String, Range<usize>)],
) {
    let span = e.span().unwrap_or(0..0);
    let mut msg = improve_message(&first_line(e.message()));
    for (from, to) in [
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected a boolean", "expected true or false"),
    ] {
        msg = msg.replace(from, to);
    }
    if msg.starts_with("missing field") {
        msg = format!("{context}: {}", msg.replace("missing field", "missing key"));
    } else if !msg.starts_with("unknown key") {
        let key = keys
            .iter()
            .filter(|(_, r)| r.start <= span.start && span.end <= r.end)
            .min_by_key(|(_, r)| r.len());
        if let Some((k, _)) = key {
            msg = format!("`{k}`: {msg}");
        }
    }
    diag.at(span, msg);
}

fn resolve_paths(component: &mut ComponentConfig, base: &Path) {
    for p in component.hooks_mut().paths_mut() {
        if p.is_relative() && !p.as_os_str().is_empty() && p != Path::new("-") {
            *p = normalize(&base.join(&*p));
        }
    }
}

/// Removes `.` and `name/..` pairs without touching the filesystem, so
/// `pipelines/../data/x.csv` reads `data/x.csv` in messages.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component as C;
    let mut out: Vec<C<'_>> = Vec::new();
    for c in path.components() {
        match c {
            C::CurDir => {}
            C::ParentDir if matches!(out.last(), Some(C::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        return PathBuf::from(".");
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_lexically() {
        assert_eq!(
            normalize(Path::new("pipelines/../data/x.csv")),
            PathBuf::from("data/x.csv")
        );
        assert_eq!(normalize(Path::new("./a/./b")), PathBuf::from("a/b"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(normalize(Path::new("/tmp/../etc")), PathBuf::from("/etc"));
    }
}
