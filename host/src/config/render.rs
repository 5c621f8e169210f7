//! `weir graph`: the stage graph as indented text or Graphviz DOT.

use super::{Kind, Pipeline};

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
