//! `plugin = "path/to/dir"`: building plugin directories on demand.
//!
//! A plugin reference that names a directory is a Rust crate (its
//! component built with `cargo build --target wasm32-wasip2`, profile
//! `plugin` when the workspace defines one, else `release`) or a Python or
//! JavaScript plugin (built by [`super::lang`]). It is built when the
//! `.wasm` is missing or older than any file of the directory, and the
//! build is logged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use serde::Deserialize;

use super::PluginError;

/// What [`resolve_plugin`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildOutcome {
    /// The reference was a `.wasm` file.
    File,
    /// The crate's component was up to date.
    UpToDate,
    /// The crate was (re)built.
    Built,
}

#[derive(Deserialize)]
struct Metadata {
    target_directory: PathBuf,
    workspace_root: PathBuf,
    packages: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    crate_types: Vec<String>,
}

/// Where a plugin crate's component lives and how to build it.
#[derive(Debug, Clone)]
pub struct CrateInfo {
    /// Package name.
    pub package: String,
    /// The `.wasm` cargo produces.
    pub artifact: PathBuf,
    /// Cargo profile used.
    pub profile: String,
    /// The crate's `Cargo.toml`.
    pub manifest: PathBuf,
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Reads a plugin crate's metadata.
pub fn crate_info(dir: &Path) -> Result<CrateInfo, PluginError> {
    let manifest = dir.join("Cargo.toml");
    let out = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| {
            PluginError::Build(format!(
                "cannot run cargo to inspect {}: {e}",
                dir.display()
            ))
        })?;
    if !out.status.success() {
        return Err(PluginError::Build(format!(
            "cargo metadata failed for {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let meta: Metadata = serde_json::from_slice(&out.stdout)
        .map_err(|e| PluginError::Build(format!("unexpected cargo metadata output: {e}")))?;
    let manifest_canon = manifest.canonicalize().unwrap_or(manifest.clone());
    let package = meta
        .packages
        .iter()
        .find(|p| p.manifest_path.canonicalize().ok().as_ref() == Some(&manifest_canon))
        .ok_or_else(|| PluginError::Build(format!("{} defines no package", manifest.display())))?;
    let lib = package
        .targets
        .iter()
        .find(|t| t.crate_types.iter().any(|c| c == "cdylib"))
        .ok_or_else(|| {
            PluginError::Build(format!(
                "crate {} is not a plugin: add `[lib] crate-type = [\"cdylib\"]` to its Cargo.toml",
                package.name
            ))
        })?;
    let root_manifest =
        std::fs::read_to_string(meta.workspace_root.join("Cargo.toml")).unwrap_or_default();
    let profile = if root_manifest.contains("[profile.plugin]") {
        "plugin"
    } else {
        "release"
    };
    let artifact = meta
        .target_directory
        .join("wasm32-wasip2")
        .join(profile)
        .join(format!("{}.wasm", lib.name.replace('-', "_")));
    Ok(CrateInfo {
        package: package.name.clone(),
        artifact,
        profile: profile.to_owned(),
        manifest,
    })
}

/// Newest modification time of the plugin's files (ignoring what builds
/// and tools write: `target/`, hidden entries, caches; following links, so
/// a change to an SDK linked in counts).
fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest: Option<SystemTime> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if super::lang::is_generated(&name.to_string_lossy()) {
                continue;
            }
            let Ok(meta) = std::fs::metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if let Ok(m) = meta.modified() {
                newest = Some(newest.map_or(m, |n| n.max(m)));
            }
        }
    }
    newest
}

/// Builds the crate's component now, showing cargo's progress on stderr.
pub fn build_crate(dir: &Path, info: &CrateInfo) -> Result<PathBuf, PluginError> {
    let status = cargo()
        .args(["build", "--target", "wasm32-wasip2", "--profile"])
        .arg(&info.profile)
        .args(["-p", &info.package, "--manifest-path"])
        .arg(&info.manifest)
        .status()
        .map_err(|e| {
            PluginError::Build(format!("cannot run cargo to build {}: {e}", dir.display()))
        })?;
    if !status.success() {
        return Err(PluginError::Build(format!(
            "building plugin {} failed (cargo exited with {status}); see the compiler output above",
            info.package
        )));
    }
    if !info.artifact.is_file() {
        return Err(PluginError::Build(format!(
            "cargo built {} but {} is missing",
            info.package,
            info.artifact.display()
        )));
    }
    Ok(info.artifact.clone())
}

/// Why the component at `artifact` needs building, if it does.
fn staleness(dir: &Path, artifact: &Path) -> Option<&'static str> {
    let built = std::fs::metadata(artifact).and_then(|m| m.modified()).ok();
    match (built, newest_source(dir)) {
        (None, _) => Some("not built yet"),
        (Some(b), Some(src)) if src > b => Some("sources changed"),
        _ => None,
    }
}

/// Turns a plugin reference into a `.wasm` path, building a plugin
/// directory if its component is missing or stale.
pub fn resolve_plugin(path: &Path) -> Result<(PathBuf, BuildOutcome), PluginError> {
    if !path.is_dir() {
        return Ok((path.to_path_buf(), BuildOutcome::File));
    }
    if let Some(lang) = super::lang::Language::of_dir(path) {
        let artifact = super::lang::artifact(path);
        let stale = staleness(path, &artifact).or_else(|| {
            (!super::lang::built_here(&artifact, lang))
                .then_some("built by another version of weir")
        });
        return match stale {
            None => Ok((artifact, BuildOutcome::UpToDate)),
            Some(reason) => {
                tracing::info!(
                    "weir: building {} plugin {} ({reason}) with {} ...",
                    lang.name(),
                    path.display(),
                    lang.toolchain()
                );
                let wasm = super::lang::build(path, lang)?;
                tracing::info!("weir: built {}", wasm.display());
                Ok((wasm, BuildOutcome::Built))
            }
        };
    }
    let info = crate_info(path)?;
    match staleness(path, &info.artifact) {
        None => Ok((info.artifact, BuildOutcome::UpToDate)),
        Some(reason) => {
            // Logged, not printed: the library never writes to the
            // terminal itself (cargo's own progress still shows).
            tracing::info!(
                "weir: building plugin {} from {} ({reason}) ...",
                info.package,
                path.display()
            );
            let wasm = build_crate(path, &info)?;
            tracing::info!("weir: built {}", wasm.display());
            Ok((wasm, BuildOutcome::Built))
        }
    }
}
