//! The import rule of the host's modules, checked on the source text: each
//! top-level module may use only modules of a lower layer, so there is no
//! import cycle, components never see the engine, and the engine never
//! names a component. docs/architecture.md draws the same layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module and its layer: a module may use only modules of
/// a strictly lower layer.
const LAYERS: &[(&str, u32)] = &[
    ("util", 0),
    ("units", 0),
    ("event", 1),
    ("telemetry", 2),
    ("checkpoint", 2),
    ("stage", 3),
    ("wasm", 4),
    ("kafka", 4),
    ("sources", 5),
    ("transforms", 5),
    ("sinks", 5),
    ("config", 6),
    ("engine", 7),
    ("watch", 8),
    ("admin", 8),
    ("scaffold", 8),
    ("runner", 9),
];

/// Uses the layers alone would allow but the design does not: the engine
/// drives components only through the stage API.
const FORBIDDEN: &[(&str, &str)] = &[
    ("engine", "sources"),
    ("engine", "transforms"),
    ("engine", "sinks"),
    ("engine", "wasm"),
    ("engine", "kafka"),
    ("config", "wasm"),
    ("config", "kafka"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules a file's library code refers to through
/// `crate::` (comments and its trailing `#[cfg(test)]` module aside),
/// including `use crate::{a, b::c}` groups.
fn references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: Vec<&str> = text
        .lines()
        .take_while(|l| *l != "#[cfg(test)]")
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect();
    let code = code.join("\n");
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // Top-level names of a group: split on commas outside braces.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(head(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 || c != '{' {
                    item.push(c);
                }
            }
            found.insert(head(&item));
        } else {
            found.insert(head(after));
        }
        rest = after;
    }
    found.retain(|m| !m.is_empty());
    found
}

/// The identifier a path starts with.
fn head(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Module -> modules it uses, for the crate under `src`.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" || module == "cli" || module == "layering" {
            continue; // the crate root and the binary sit above every layer
        }
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue; // test-only files
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let entry = uses.entry(module.clone()).or_default();
        for m in references(&text) {
            if m != module {
                entry.insert(m);
            }
        }
    }
    uses
}

#[test]
fn references_are_read_from_code_not_comments() {
    let text = "//! see [`crate::engine`]\nuse crate::{event::Batch, stage::{Input, Output}};\nlet x = crate::util::now_ms();\n#[cfg(test)]\nuse crate::config;\n";
    let found: Vec<String> = references(text).into_iter().collect();
    assert_eq!(found, ["event", "stage", "util"]);
}

#[test]
fn every_module_uses_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut problems = Vec::new();
    for (module, used) in graph(&src) {
        let Some(&own) = layer.get(module.as_str()) else {
            problems.push(format!(
                "module `{module}` has no layer: add it to LAYERS in layering.rs and to docs/architecture.md"
            ));
            continue;
        };
        for u in used {
            match layer.get(u.as_str()) {
                None => problems.push(format!("`{module}` uses `{u}`, which has no layer")),
                Some(&l) if l >= own => problems.push(format!(
                    "`{module}` (layer {own}) uses `{u}` (layer {l}): only lower layers may be used"
                )),
                Some(_) if FORBIDDEN.contains(&(module.as_str(), u.as_str())) => {
                    problems.push(format!("`{module}` must not use `{u}`"))
                }
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
