//! Plugins written in Python and JavaScript: a directory holding
//! `plugin.py` (componentize-py) or `plugin.js` (componentize-js), with the
//! SDK beside it (`weir_plugin/` or `weir-plugin/`).
//!
//! Building one installs its toolchain, pinned, from PyPI or npm into
//! `.weir/` of the plugin directory (or `$WEIR_TOOLCHAINS`, shared between
//! plugins), copies the plugin into `target/stage/` with the bindings that
//! connect the SDK's class to the host and the WIT contract this host
//! speaks, and builds `target/NAME.wasm`. The component is then marked with
//! a `weir-build` custom section naming the language and the toolchain, so
//! `weir plugin inspect` can say what built it.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::PluginError;

/// The contract every plugin is built against.
const WIT: &str = include_str!("../../../wit/weir.wit");
const PY_APP: &str = include_str!("../../../plugins/sdk-python/bindings/app.py");
const PY_TRANSFORM: &str = include_str!("../../../plugins/sdk-python/bindings/transform.py");
const JS_COMPONENT: &str = include_str!("../../../plugins/sdk-js/bindings/component.js");

/// Name of the custom section `weir plugin build` adds to a component.
pub const BUILD_SECTION: &str = "weir-build";

/// A language plugins are written in, other than Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `plugin.py`, built with componentize-py.
    Python,
    /// `plugin.js`, built with componentize-js.
    JavaScript,
}

/// A pinned component toolchain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toolchain {
    /// Tool name, as its registry knows it.
    pub name: &'static str,
    /// The release installed.
    pub version: &'static str,
}

impl std::fmt::Display for Toolchain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.version)
    }
}

impl Language {
    /// The language of plugin directory `dir`, by its entry file.
    pub fn of_dir(dir: &Path) -> Option<Language> {
        if dir.join("plugin.py").is_file() {
            Some(Language::Python)
        } else if dir.join("plugin.js").is_file() {
            Some(Language::JavaScript)
        } else {
            None
        }
    }

    /// Lowercase name, as `--lang` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
        }
    }

    /// The entry module of a plugin directory.
    pub fn entry(self) -> &'static str {
        match self {
            Language::Python => "plugin.py",
            Language::JavaScript => "plugin.js",
        }
    }

    /// The SDK directory a plugin keeps beside its entry.
    pub fn sdk_dir(self) -> &'static str {
        match self {
            Language::Python => "weir_plugin",
            Language::JavaScript => "weir-plugin",
        }
    }

    /// The toolchain this host builds the language with.
    pub fn toolchain(self) -> Toolchain {
        match self {
            Language::Python => Toolchain {
                name: "componentize-py",
                version: "0.25.1",
            },
            Language::JavaScript => Toolchain {
                name: "@bytecodealliance/componentize-js",
                version: "0.23.0",
            },
        }
    }

    /// Files the bindings add to the staged plugin.
    fn bindings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Language::Python => &[("app.py", PY_APP), ("transform.py", PY_TRANSFORM)],
            Language::JavaScript => &[
                ("component.js", JS_COMPONENT),
                (
                    "package.json",
                    "{ \"type\": \"module\", \"private\": true }\n",
                ),
            ],
        }
    }
}

/// Where the toolchain for `lang` lives for plugin directory `dir`:
/// `$WEIR_TOOLCHAINS/TOOL-VERSION` when that is set, else
/// `DIR/.weir/TOOL-VERSION`.
pub fn toolchain_dir(dir: &Path, lang: Language) -> PathBuf {
    let tc = lang.toolchain();
    let base = std::env::var_os("WEIR_TOOLCHAINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join(".weir"));
    let short = tc.name.rsplit('/').next().unwrap_or(tc.name);
    base.join(format!("{short}-{}", tc.version))
}

fn run(what: &str, command: &mut Command) -> Result<(), PluginError> {
    let output = command
        .output()
        .map_err(|e| PluginError::Build(format!("cannot run {what}: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if said.is_empty() {
        said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    }
    // The end of a long tool output is where the reason is.
    let tail: Vec<&str> = said.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(PluginError::Build(format!(
        "{what} failed ({}):\n{}",
        output.status,
        tail.join("\n")
    )))
}

/// Installs the toolchain for `lang` unless already there; returns its
/// directory. Announced on stderr by the caller's log.
pub fn ensure_toolchain(dir: &Path, lang: Language) -> Result<PathBuf, PluginError> {
    let tc = lang.toolchain();
    let home = toolchain_dir(dir, lang);
    let marker = home.join(".installed");
    let spec = match lang {
        Language::Python => format!("{}=={}", tc.name, tc.version),
        Language::JavaScript => format!("{}@{}", tc.name, tc.version),
    };
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(spec.as_str()) {
        return Ok(home);
    }
    std::fs::create_dir_all(&home)
        .map_err(|e| PluginError::Build(format!("cannot create {}: {e}", home.display())))?;
    tracing::info!(
        "weir: installing {tc} for {} plugins into {} ...",
        lang.name(),
        home.display()
    );
    match lang {
        Language::Python => {
            let python = std::env::var_os("WEIR_PYTHON").unwrap_or_else(|| "python3".into());
            run(
                "python3 -m venv (Python 3.10 or newer is needed)",
                Command::new(python).args(["-m", "venv"]).arg(&home),
            )?;
            run(
                &format!("pip install {spec}"),
                Command::new(home.join("bin/pip")).args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    &spec,
                ]),
            )?;
        }
        Language::JavaScript => run(
            &format!("npm install {spec} (Node.js 18 or newer is needed)"),
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&home)
                .arg(&spec),
        )?,
    }
    std::fs::write(&marker, &spec)
        .map_err(|e| PluginError::Build(format!("cannot write {}: {e}", marker.display())))?;
    Ok(home)
}

/// The plugin's name: its directory's.
pub fn plugin_name(dir: &Path) -> String {
    dir.canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map_or_else(|| "plugin".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// The component a plugin directory builds to: `target/NAME.wasm`.
pub fn artifact(dir: &Path) -> PathBuf {
    dir.join("target")
        .join(format!("{}.wasm", plugin_name(dir)))
}

/// Entries of a plugin directory, at any depth, that are not part of its
/// source: build output, tool caches, hidden entries.
pub fn is_generated(name: &str) -> bool {
    name.starts_with('.') || matches!(name, "target" | "node_modules" | "__pycache__")
}

/// Copies the plugin's sources (following links, so an SDK linked in is
/// copied; a link loop ends at the depth limit) into `to`, without the
/// top-level `example/` (pipelines to run the plugin, not its code).
fn copy_sources(from: &Path, to: &Path, depth: usize) -> std::io::Result<()> {
    if depth > 16 {
        return Err(std::io::Error::other(format!(
            "{} is nested too deep (a link loop?)",
            from.display()
        )));
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        if is_generated(&text) || (depth == 0 && text == "example") {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path)?.is_dir() {
            copy_sources(&path, &to.join(&name), depth + 1)?;
        } else {
            std::fs::copy(&path, to.join(&name))?;
        }
    }
    Ok(())
}

/// Stages the plugin in `DIR/target/stage` with the bindings and the WIT.
fn stage(dir: &Path, lang: Language) -> Result<PathBuf, PluginError> {
    let io = |what: &str, e: std::io::Error| PluginError::Build(format!("{what}: {e}"));
    if !dir.join(lang.sdk_dir()).is_dir() {
        return Err(PluginError::Build(format!(
            "{} has no {}/ (the weir SDK for {}); `weir plugin new NAME --lang {}` writes one",
            dir.display(),
            lang.sdk_dir(),
            lang.name(),
            lang.name()
        )));
    }
    for (name, _) in lang.bindings() {
        if *name != "package.json" && dir.join(name).exists() {
            return Err(PluginError::Build(format!(
                "{} has a file named {name}, which the build adds itself (the bindings); rename it",
                dir.display()
            )));
        }
    }
    let stage = dir.join("target/stage");
    if stage.exists() {
        std::fs::remove_dir_all(&stage).map_err(|e| io("cannot clear target/stage", e))?;
    }
    copy_sources(dir, &stage, 0).map_err(|e| io("cannot copy the plugin to target/stage", e))?;
    std::fs::create_dir_all(stage.join("wit")).map_err(|e| io("cannot write the WIT", e))?;
    std::fs::write(stage.join("wit/weir.wit"), WIT).map_err(|e| io("cannot write the WIT", e))?;
    for (name, text) in lang.bindings() {
        std::fs::write(stage.join(name), text).map_err(|e| io("cannot write the bindings", e))?;
    }
    Ok(stage)
}

/// Builds plugin directory `dir` into [`artifact`]: installs the
/// toolchain if needed, stages, builds, and marks the component.
pub fn build(dir: &Path, lang: Language) -> Result<PathBuf, PluginError> {
    let home = ensure_toolchain(dir, lang)?;
    let stage = stage(dir, lang)?;
    let done = artifact(dir);
    // Built and marked beside, then renamed: a failed build never leaves
    // a component that looks newer than the sources.
    let out = done.with_extension("wasm.partial");
    let wit = stage.join("wit");
    match lang {
        Language::Python => run(
            "componentize-py",
            Command::new(home.join("bin/componentize-py"))
                .arg("-d")
                .arg(&wit)
                .args(["-w", "transform-plugin", "componentize", "app", "-p"])
                .arg(&stage)
                .arg("-o")
                .arg(&out),
        )?,
        // Without the wasi:http imports componentize-js adds by default:
        // the host grants no network.
        Language::JavaScript => run(
            "componentize-js",
            Command::new(home.join("node_modules/.bin/componentize-js"))
                .arg("--wit")
                .arg(&wit)
                .args(["--world-name", "transform-plugin"])
                .args(["-d", "http", "-d", "fetch-event", "-o"])
                .arg(&out)
                .arg(stage.join("component.js")),
        )?,
    }
    mark(&out, lang)
        .and_then(|()| std::fs::rename(&out, &done))
        .map_err(|e| PluginError::Build(format!("cannot finish {}: {e}", done.display())))?;
    Ok(done)
}

/// What the `weir-build` section of a component built by this weir says:
/// the language, the toolchain, and a digest of the contract and bindings
/// compiled into this weir (so a component built by another version of
/// weir is rebuilt).
pub fn build_mark(lang: Language) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(WIT);
    for (name, text) in lang.bindings() {
        h.update(name);
        h.update(text);
    }
    let digest = h.finalize();
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "language={};toolchain={};bindings={short}",
        lang.name(),
        lang.toolchain()
    )
}

/// Whether the component at `wasm` was built by this weir for `lang`.
pub fn built_here(wasm: &Path, lang: Language) -> bool {
    std::fs::read(wasm)
        .ok()
        .and_then(|bytes| super::inspect_bytes(&bytes).ok())
        .and_then(|info| info.built_by)
        .is_some_and(|b| b == build_mark(lang))
}

/// Appends the `weir-build` custom section ([`build_mark`]).
fn mark(wasm: &Path, lang: Language) -> std::io::Result<()> {
    let payload = build_mark(lang);
    let mut section = Vec::new();
    leb128(&mut section, BUILD_SECTION.len());
    section.extend_from_slice(BUILD_SECTION.as_bytes());
    section.extend_from_slice(payload.as_bytes());
    let mut bytes = vec![0u8];
    leb128(&mut bytes, section.len());
    bytes.extend_from_slice(&section);
    let mut file = std::fs::OpenOptions::new().append(true).open(wasm)?;
    std::io::Write::write_all(&mut file, &bytes)
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_told_by_their_entry_file() {
        let dir = std::env::temp_dir().join(format!("weir-lang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Language::of_dir(&dir), None);
        std::fs::write(dir.join("plugin.js"), "").unwrap();
        assert_eq!(Language::of_dir(&dir), Some(Language::JavaScript));
        std::fs::write(dir.join("plugin.py"), "").unwrap();
        assert_eq!(Language::of_dir(&dir), Some(Language::Python));
        assert!(artifact(&dir).ends_with(format!("target/weir-lang-{}.wasm", std::process::id())));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_build_mark_is_a_custom_section_the_parser_reads() {
        let path = std::env::temp_dir().join(format!("weir-mark-{}.wasm", std::process::id()));
        // The smallest component: magic, version 0x0d, layer 1.
        std::fs::write(&path, b"\0asm\x0d\0\x01\0").unwrap();
        mark(&path, Language::Python).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let info = super::super::inspect_bytes(&bytes).unwrap();
        let built = info.built_by.unwrap();
        assert!(
            built.starts_with("language=python;toolchain=componentize-py 0.25.1;bindings="),
            "{built}"
        );
        assert!(built_here(&path, Language::Python));
        assert!(!built_here(&path, Language::JavaScript));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn leb128_encodes_lengths() {
        let mut v = Vec::new();
        leb128(&mut v, 300);
        assert_eq!(v, [0xac, 0x02]);
    }
}
