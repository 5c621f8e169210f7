//! `weir plugin new`: a plugin crate from a template that builds, passes
//! its native tests and runs in a generated example pipeline.
//!
//! The crate is a workspace of its own with a path dependency on the SDK
//! (`plugins/sdk` of a weir checkout), weir's `Cargo.lock` (the versions
//! weir was tested with, so the build works offline from a warm cache) and
//! weir's `rust-toolchain.toml` (the toolchain and the `wasm32-wasip2`
//! target, so no `rustup` step is needed) and `.cargo/config.toml` (the
//! WebAssembly code generation flags weir's own plugins are built with).
//!
//! [`script`] makes Python and JavaScript plugins.

pub mod script;

use std::path::{Path, PathBuf};

/// Why a plugin crate cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a usable crate name.
    #[error(
        "`{0}` is not a valid plugin name: use lowercase letters, digits, `-` and `_`, starting with a letter"
    )]
    BadName(String),
    /// The destination exists.
    #[error("{0} already exists; choose another name or --dir")]
    Exists(PathBuf),
    /// No SDK was found.
    #[error(
        "cannot find the weir-plugin SDK (plugins/sdk of a weir checkout): pass --sdk PATH or set WEIR_SDK"
    )]
    NoSdk,
    /// The SDK path given is not the SDK.
    #[error("{0} is not the weir-plugin SDK (expected a Cargo.toml with name = \"weir-plugin\")")]
    NotSdk(PathBuf),
    /// Writing failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

const CARGO_TOML: &str = include_str!("../../assets/plugin-template/Cargo.toml.in");
const LIB_RS: &str = include_str!("../../assets/plugin-template/lib.rs.in");
const PIPELINE: &str = include_str!("../../assets/plugin-template/pipeline.toml.in");
const INPUT: &str = include_str!("../../assets/plugin-template/input.txt.in");
const README: &str = include_str!("../../assets/plugin-template/README.md.in");
const GITIGNORE: &str = include_str!("../../assets/plugin-template/gitignore.in");
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");
/// weir's own build settings: the WebAssembly code generation flags plugins
/// are benchmarked with (SIMD, loop unrolling).
const CARGO_CONFIG: &str = include_str!("../../../.cargo/config.toml");
const LOCK: &str = include_str!("../../../Cargo.lock");

fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "name = \"weir-plugin\""))
}

/// Finds the SDK: `explicit` if given (it must be the SDK), else
/// `plugins/sdk` in an ancestor of the current directory or of the running
/// executable (a weir checkout built with cargo).
pub fn find_sdk(explicit: Option<&Path>) -> Result<PathBuf, ScaffoldError> {
    if let Some(dir) = explicit {
        return if is_sdk(dir) {
            Ok(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()))
        } else {
            Err(ScaffoldError::NotSdk(dir.to_path_buf()))
        };
    }
    let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let sdk = dir.join("plugins/sdk");
            if is_sdk(&sdk) {
                return Ok(sdk.canonicalize().unwrap_or(sdk));
            }
        }
    }
    Err(ScaffoldError::NoSdk)
}

/// Whether `name` can name a plugin crate.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Creates plugin crate `name` in directory `dest` (which must not exist),
/// depending on the SDK at `sdk`. Returns the files written.
pub fn create(name: &str, dest: &Path, sdk: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::BadName(name.to_owned()));
    }
    if dest.exists() {
        return Err(ScaffoldError::Exists(dest.to_path_buf()));
    }
    let wasm = format!(
        "target/wasm32-wasip2/plugin/{}.wasm",
        name.replace('-', "_")
    );
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            // In Cargo.toml: a TOML string, quoted and escaped.
            .replace(
                "\"{{sdk}}\"",
                &toml::Value::String(sdk.display().to_string()).to_string(),
            )
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{wasm}}", &wasm)
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("Cargo.lock", LOCK.to_owned()),
        ("rust-toolchain.toml", TOOLCHAIN.to_owned()),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        (".gitignore", GITIGNORE.to_owned()),
        ("README.md", fill(README)),
        ("src/lib.rs", fill(LIB_RS)),
        ("example/pipeline.toml", fill(PIPELINE)),
        ("example/input.txt", INPUT.to_owned()),
    ];
    write_all(dest, &files.map(|(rel, text)| (rel.to_owned(), text)))
}

/// Writes `files` (paths relative to `dest`, and their text) under `dest`.
fn write_all(dest: &Path, files: &[(String, String)]) -> Result<Vec<PathBuf>, ScaffoldError> {
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dest.join(rel);
        let write = || {
            std::fs::create_dir_all(path.parent().expect("files have a parent"))?;
            std::fs::write(&path, text)
        };
        write().map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_crate_names() {
        assert!(valid_name("my-plugin_2"));
        for bad in ["", "2x", "My", "a b", "a/b", "-x"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_sdk_of_this_checkout_is_found_and_filled_in() {
        let sdk = find_sdk(Some(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk"),
        ))
        .unwrap();
        let dir = std::env::temp_dir().join(format!("weir-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files = create("tally", &dir, &sdk).unwrap();
        assert_eq!(files.len(), 9);
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            toml.contains(&format!("path = \"{}\"", sdk.display())),
            "{toml}"
        );
        assert!(
            !std::fs::read_to_string(dir.join("README.md"))
                .unwrap()
                .contains("{{")
        );
        assert!(matches!(
            create("tally", &dir, &sdk),
            Err(ScaffoldError::Exists(_))
        ));
        assert!(matches!(
            find_sdk(Some(&dir)),
            Err(ScaffoldError::NotSdk(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
