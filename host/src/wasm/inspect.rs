//! Reading a `.wasm` file without compiling it: is it a component, what
//! does it import and export, is it a Weir plugin this host can run.

use std::path::Path;

use super::EXPORT_NAME;

/// What a `.wasm` file is, read without compiling it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentInfo {
    /// Whether the file is a component (not a core module).
    pub is_component: bool,
    /// Top-level import names.
    pub imports: Vec<String>,
    /// Top-level export names.
    pub exports: Vec<String>,
    /// What `weir plugin build` recorded in the `weir-build` section
    /// (`language=python;toolchain=componentize-py 0.25.1`), if it built it.
    pub built_by: Option<String>,
    /// Languages and tools named by the `producers` sections of the
    /// component and its modules (`language: Python`, `processed-by:
    /// wit-component 0.240.0`), without repeats.
    pub producers: Vec<String>,
}

impl ComponentInfo {
    /// Checks that the component exports the Weir transform interface and
    /// imports nothing the host does not provide.
    pub fn check_weir_plugin(&self) -> Result<(), String> {
        if !self.is_component {
            return Err("it is a core WebAssembly module, not a component; build it for the wasm32-wasip2 target with the weir-plugin SDK".into());
        }
        if self.exports.iter().any(|e| e == EXPORT_NAME) {
            return super::capabilities::check_imports(&self.imports);
        }
        let weir: Vec<&String> = self
            .exports
            .iter()
            .filter(|e| e.starts_with("weir:plugin/"))
            .collect();
        if let Some(other) = weir.first() {
            return Err(format!(
                "it exports `{other}`, but this host supports `{EXPORT_NAME}`; rebuild it against this version of the SDK"
            ));
        }
        Err(format!(
            "it does not export `{EXPORT_NAME}` (exports: {}); implement weir_plugin::Transform and call weir_plugin::export!",
            if self.exports.is_empty() {
                "none".to_owned()
            } else {
                self.exports.join(", ")
            }
        ))
    }
}

/// Reads a component's top-level imports and exports.
pub fn inspect_bytes(bytes: &[u8]) -> Result<ComponentInfo, String> {
    use wasmparser::{Encoding, KnownCustom, Parser, Payload};
    if !bytes.starts_with(b"\0asm") {
        return Err(format!(
            "not a WebAssembly file: it does not start with the `\\0asm` magic number ({} bytes{})",
            bytes.len(),
            if bytes.is_empty() { ", empty" } else { "" }
        ));
    }
    let mut info = ComponentInfo::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not valid WebAssembly: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 {
                    info.is_component = encoding == Encoding::Component;
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| format!("not valid WebAssembly: {e}"))?;
                    info.imports.push(import.name.name.to_owned());
                }
            }
            Payload::CustomSection(reader) => match reader.as_known() {
                KnownCustom::Producers(fields) => {
                    for field in fields.into_iter().flatten() {
                        let name = field.name;
                        for value in field.values.into_iter().flatten() {
                            let entry = if value.version.is_empty() {
                                format!("{name}: {}", value.name)
                            } else {
                                format!("{name}: {} {}", value.name, value.version)
                            };
                            if !info.producers.contains(&entry) {
                                info.producers.push(entry);
                            }
                        }
                    }
                }
                _ if depth == 1 && reader.name() == super::lang::BUILD_SECTION => {
                    info.built_by = Some(String::from_utf8_lossy(reader.data()).into_owned());
                }
                _ => {}
            },
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let export = export.map_err(|e| format!("not valid WebAssembly: {e}"))?;
                    info.exports.push(export.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Checks a `plugin =` reference from a pipeline file without building or
/// compiling anything: a plugin directory must hold a `Cargo.toml` (Rust),
/// a `plugin.py` or a `plugin.js`; a file must exist and be a Weir
/// component.
pub fn check_plugin_reference(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        if path.join("Cargo.toml").is_file() || super::lang::Language::of_dir(path).is_some() {
            return Ok(());
        }
        return Err(format!(
            "plugin directory {} has no Cargo.toml, plugin.py or plugin.js; point `plugin` at a .wasm file or a plugin directory",
            path.display()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("plugin file {} does not exist", path.display()),
        _ => format!("cannot read plugin {}: {e}", path.display()),
    })?;
    inspect_bytes(&bytes)
        .and_then(|info| info.check_weir_plugin())
        .map_err(|reason| format!("{} is not a Weir plugin: {reason}", path.display()))
}
