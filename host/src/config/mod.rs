//! Pipeline files: TOML text → checked [`Pipeline`].
//!
//! A pipeline file names its stages in three tables, Vector-style:
//!
//! ```toml
//! [sources.shop_log]
//! type = "replay"
//! path = "../data/user_log.csv"
//! select = "gender"
//! rate = 10
//!
//! [transforms.count]
//! type = "wasm"
//! inputs = ["shop_log"]
//! plugin = "../plugins/gender-count"
//! config = { window = "1s", format = "seed" }
//!
//! [sinks.out]
//! type = "console"
//! inputs = ["count"]
//! ```
//!
//! [`compile`] checks everything it can without running anything and reports
//! every problem at once, each as `FILE:LINE: message`: syntax errors,
//! unknown stage types and keys (with a "did you mean"), wrong value types,
//! unset `${VAR}`s, missing or unknown inputs, cycles, and plugin files that
//! are missing or not Weir components. Relative paths in a pipeline file are
//! resolved against the directory of that file.

mod diagnostic;
pub mod units;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use diagnostic::{ConfigError, ConfigErrors, suggest};
use diagnostic::{Diagnostics, improve_message, list};

use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;

/// The role of a stage in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Produces events; has no inputs.
    Source,
    /// Consumes and produces events.
    Transform,
    /// Consumes events; has no outputs.
    Sink,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Source => "sources",
            Kind::Transform => "transforms",
            Kind::Sink => "sinks",
        }
    }

    /// Lower-case name, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Sink => "sink",
        }
    }
}

/// What a stage is and how it is configured: a closed set of types.
#[derive(Debug, Clone, PartialEq)]
pub enum Component {
    /// A source.
    Source(SourceConfig),
    /// A transform.
    Transform(TransformConfig),
    /// A sink.
    Sink(SinkConfig),
}

impl Component {
    /// Source, transform or sink.
    pub fn kind(&self) -> Kind {
        match self {
            Component::Source(_) => Kind::Source,
            Component::Transform(_) => Kind::Transform,
            Component::Sink(_) => Kind::Sink,
        }
    }

    /// The `type` written in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            Component::Source(c) => c.type_name(),
            Component::Transform(c) => c.type_name(),
            Component::Sink(c) => c.type_name(),
        }
    }

    /// Files this stage reads its behaviour from (plugins, models); a change
    /// to one of them reloads the stage.
    pub fn files_to_watch(&self) -> Vec<PathBuf> {
        match self {
            Component::Transform(c) => c.files_to_watch(),
            _ => Vec::new(),
        }
    }
}

/// One checked stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The stage's name: the key under `[sources]`, `[transforms]` or `[sinks]`.
    pub name: String,
    /// Line of the stage's table header, for messages.
    pub line: usize,
    /// Names of the stages this one reads from.
    pub inputs: Vec<String>,
    /// Sink that receives this stage's rejected records, if any.
    pub dead_letter: Option<String>,
    /// Type and type-specific settings.
    pub component: Component,
}

/// Process-wide settings from the top of the pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Events per batch sent between stages (default 1024).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Batches buffered between two stages before the sender waits
    /// (backpressure; default 8).
    #[serde(default)]
    pub channel_capacity: Option<usize>,
    /// Directory for checkpoints (stage state with source positions);
    /// absent: no checkpoints.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// How often to checkpoint (default 10 s).
    #[serde(default)]
    pub checkpoint_interval: Option<units::Duration>,
    /// Address (`IP:PORT`) of the admin endpoint: status, metrics, reload,
    /// tap and dashboards. Absent: no endpoint (unless `--admin` is given).
    #[serde(default)]
    pub admin: Option<std::net::SocketAddr>,
    /// Bearer token the admin endpoint requires; needed to bind it to a
    /// non-loopback address. Use `${VAR}` to keep it out of the file.
    #[serde(default)]
    pub admin_token: Option<String>,
}

/// A checked pipeline, ready to build.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The file it came from.
    pub file: PathBuf,
    /// Directory relative paths were resolved against.
    pub base_dir: PathBuf,
    /// Process-wide settings.
    pub options: Options,
    /// Stages in file order.
    pub stages: IndexMap<String, Stage>,
}

impl Pipeline {
    /// Stages that read from `name` (through `inputs`, not dead letters).
    pub fn consumers_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Stage> + 'a {
        self.stages
            .values()
            .filter(move |s| s.inputs.iter().any(|i| i == name))
    }

    /// Events per batch.
    pub fn batch_size(&self) -> usize {
        self.options.batch_size.unwrap_or(1024).max(1)
    }
}

/// Reads and compiles a pipeline file, taking `${VAR}`s from the environment.
pub fn load(file: &Path) -> Result<Pipeline, ConfigErrors> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            line: 0,
            message: format!("cannot read pipeline file: {e}"),
        }])
    })?;
    compile(&text, file, &|name| std::env::var(name).ok())
}

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
    if !options_table.is_empty() {
        let mut value = Spanned::new(root_span, DeValue::Table(options_table));
        interpolate(&mut value, env, &mut diag);
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
    let mut plugin_checks: Vec<(Range<usize>, Vec<PathBuf>)> = Vec::new();
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
        interpolate(&mut value, env, &mut diag);
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
        let plugin_span = rest.get("plugin").map(|p| p.span());
        let key_spans: Vec<(String, Range<usize>)> = rest
            .iter()
            .map(|(k, v)| (k.get_ref().to_string(), v.span()))
            .collect();
        let value = Spanned::new(table_span, DeValue::Table(rest));
        let de = toml::de::ValueDeserializer::from(value);
        let built = match kind {
            Kind::Source => {
                SourceConfig::deserialize_type(type_name.get_ref(), de).map(Component::Source)
            }
            Kind::Transform => {
                TransformConfig::deserialize_type(type_name.get_ref(), de).map(Component::Transform)
            }
            Kind::Sink => {
                SinkConfig::deserialize_type(type_name.get_ref(), de).map(Component::Sink)
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
        if let (Some(span), Component::Transform(t)) = (plugin_span, &component) {
            plugin_checks.push((span, t.files_to_watch()));
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

    for (span, files) in plugin_checks {
        for f in files {
            if let Err(msg) = crate::wasm::check_plugin_reference(&f) {
                diag.at(span.clone(), msg);
            }
        }
    }

    check_graph(&stages, &kinds, &input_spans, &dead_letter_spans, &mut diag);

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

fn resolve_paths(component: &mut Component, base: &Path) {
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() && !p.as_os_str().is_empty() && p != Path::new("-") {
            *p = normalize(&base.join(&*p));
        }
    };
    match component {
        Component::Source(c) => c.paths_mut().into_iter().for_each(resolve),
        Component::Transform(c) => c.paths_mut().into_iter().for_each(resolve),
        Component::Sink(c) => c.paths_mut().into_iter().for_each(resolve),
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

/// Replaces `${VAR}` (and `${VAR:-default}`) in every string value; `$$` is
/// a literal `$`.
fn interpolate(
    value: &mut Spanned<DeValue>,
    env: &dyn Fn(&str) -> Option<String>,
    diag: &mut Diagnostics<'_>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) if s.contains('$') => match substitute(s, env) {
            Ok(new) => *s = new.into(),
            Err(msg) => diag.at(span, msg),
        },
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate(item, env, diag);
            }
        }
        DeValue::Table(t) => {
            for (_, v) in t.iter_mut() {
                interpolate(v, env, diag);
            }
        }
        _ => {}
    }
}

/// Expands environment references in one string.
pub fn substitute(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unterminated `${{` in {text:?}"))?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name `{name}` in {text:?}"));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable `{name}` is not set (use `${{{name}:-default}}` for a default)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn check_graph(
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
            // Report in data-flow order (upstream first).
            c.reverse();
            return Some(c);
        }
    }
    None
}

/// Renders the stage graph as indented text (`--dot` gives Graphviz).
pub fn render_graph(p: &Pipeline, dot: bool) -> String {
    let mut out = String::new();
    if dot {
        out.push_str("digraph pipeline {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n");
        for s in p.stages.values() {
            let shape = match s.component.kind() {
                Kind::Source => "invhouse",
                Kind::Transform => "box",
                Kind::Sink => "house",
            };
            out.push_str(&format!(
                "  \"{}\" [shape={shape}, label=\"{}\\n({})\"];\n",
                s.name,
                s.name,
                s.component.type_name()
            ));
        }
        for s in p.stages.values() {
            for i in &s.inputs {
                out.push_str(&format!("  \"{i}\" -> \"{}\";\n", s.name));
            }
            if let Some(d) = &s.dead_letter {
                out.push_str(&format!(
                    "  \"{}\" -> \"{d}\" [style=dashed, label=\"dead letters\"];\n",
                    s.name
                ));
            }
        }
        out.push_str("}\n");
        return out;
    }
    for kind in [Kind::Source, Kind::Transform, Kind::Sink] {
        for s in p.stages.values().filter(|s| s.component.kind() == kind) {
            out.push_str(&format!(
                "{} {} ({})\n",
                kind.noun(),
                s.name,
                s.component.type_name()
            ));
            if !s.inputs.is_empty() {
                out.push_str(&format!("    <- {}\n", s.inputs.join(", ")));
            }
            let consumers: Vec<&str> = p.consumers_of(&s.name).map(|c| c.name.as_str()).collect();
            if !consumers.is_empty() {
                out.push_str(&format!("    -> {}\n", consumers.join(", ")));
            }
            if let Some(d) = &s.dead_letter {
                out.push_str(&format!("    dead letters -> {d}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "HOME_DIR").then(|| "/home/x".to_owned())
    }

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

    #[test]
    fn substitution() {
        assert_eq!(substitute("${HOME_DIR}/a", &env).unwrap(), "/home/x/a");
        assert_eq!(substitute("$${HOME_DIR}", &env).unwrap(), "${HOME_DIR}");
        assert_eq!(substitute("${NOPE:-d}", &env).unwrap(), "d");
        assert!(
            substitute("${NOPE}", &env)
                .unwrap_err()
                .contains("`NOPE` is not set")
        );
        assert!(substitute("${A", &env).is_err());
        assert_eq!(substitute("cost $5", &env).unwrap(), "cost $5");
    }
}
