//! What a plugin may import, stated once: the linker is built from this
//! list, and `weir validate`, `weir plugin inspect` and loading a plugin
//! check a component's imports against it.
//!
//! A plugin gets what a language runtime needs to run and nothing that
//! reaches outside its sandbox:
//! - `wasi:io` (streams, polls: every wait ends at the call's deadline),
//!   `wasi:clocks` (the real wall and monotonic clocks), `wasi:random` (real
//!   randomness), `wasi:cli` (an empty environment, no arguments, an empty
//!   stdin, stdout and stderr as log lines), `wasi:filesystem` with nothing
//!   preopened (the runtimes' file code links, but there is no directory to
//!   open a file in);
//! - the contract's own `weir:plugin/host` and `weir:plugin/types`.
//!
//! `wasi:sockets` is not provided; toolchains built on wasi-libc import it
//! whether a plugin uses it or not, so it is linked as traps: a plugin
//! that opens a socket traps. Any other import (`wasi:http`, a newer WASI,
//! a custom interface) is refused when the plugin is checked, naming it.

use super::IMPORT_NAME;

/// WASI 0.2 interfaces the host links (any 0.2.x version of them).
const PROVIDED_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// Packages whose imports are linked as traps.
const TRAPPED: &[&str] = &["wasi:sockets/"];

/// The error a denied import's function traps with (`wasi:sockets/...`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the sandbox denies `{0}` (no sockets for plugins)")]
pub struct Denied(pub String);

/// How the host answers one import of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Import {
    /// Linked.
    Provided,
    /// Linked as functions that trap when called (sockets).
    Trapped,
    /// Not provided: the plugin cannot be loaded.
    Missing,
}

impl Import {
    /// How the host answers the import `name` (`package/interface@version`).
    pub fn of(name: &str) -> Import {
        let (path, version) = name.split_once('@').unwrap_or((name, ""));
        let weir_types = IMPORT_NAME.replace("/host@", "/types@");
        if name == IMPORT_NAME || name == weir_types {
            return Import::Provided;
        }
        let release_0_2 = version
            .strip_prefix("0.2.")
            .is_some_and(|patch| patch.bytes().all(|b| b.is_ascii_digit()));
        if PROVIDED_WASI.contains(&path) && (version == "0.2" || release_0_2) {
            return Import::Provided;
        }
        if TRAPPED.iter().any(|p| path.starts_with(p)) {
            return Import::Trapped;
        }
        Import::Missing
    }

    /// A word for `weir plugin inspect`.
    pub fn label(self) -> &'static str {
        match self {
            Import::Provided => "provided",
            Import::Trapped => "denied (traps if called)",
            Import::Missing => "NOT PROVIDED",
        }
    }
}

/// Refuses a component importing what the host does not provide, naming
/// every such import.
pub fn check_imports(imports: &[String]) -> Result<(), String> {
    let missing: Vec<&str> = imports
        .iter()
        .filter(|i| Import::of(i) == Import::Missing)
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "it imports {}, which this host does not provide (plugins get wasi:io, wasi:clocks, wasi:random, wasi:cli and wasi:filesystem 0.2 with nothing granted, and {IMPORT_NAME}); remove what uses {} and rebuild",
        missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", "),
        if missing.len() == 1 { "it" } else { "them" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_provided_trapped_or_missing() {
        assert_eq!(Import::of("wasi:io/poll@0.2.0"), Import::Provided);
        assert_eq!(Import::of("wasi:cli/stdout@0.2.6"), Import::Provided);
        assert_eq!(Import::of("weir:plugin/host@0.1.0"), Import::Provided);
        assert_eq!(Import::of("weir:plugin/types@0.1.0"), Import::Provided);
        assert_eq!(Import::of("wasi:sockets/tcp@0.2.0"), Import::Trapped);
        assert_eq!(Import::of("wasi:http/types@0.2.0"), Import::Missing);
        assert_eq!(Import::of("wasi:io/poll@0.3.0"), Import::Missing);
        assert_eq!(
            Import::of("wasi:io/poll@0.2.0-rc-2023-11-10"),
            Import::Missing
        );
        assert_eq!(Import::of("weir:plugin/host@0.2.0"), Import::Missing);
    }

    #[test]
    fn the_refusal_names_each_missing_import() {
        let imports = vec![
            "wasi:io/poll@0.2.0".to_owned(),
            "wasi:http/types@0.2.0".to_owned(),
            "wasi:http/outgoing-handler@0.2.0".to_owned(),
            "wasi:sockets/tcp@0.2.0".to_owned(),
        ];
        let err = check_imports(&imports).unwrap_err();
        assert!(
            err.starts_with(
                "it imports `wasi:http/types@0.2.0`, `wasi:http/outgoing-handler@0.2.0`, which"
            ),
            "{err}"
        );
        assert!(check_imports(&imports[..1]).is_ok());
        assert!(check_imports(&imports[3..]).is_ok());
    }
}
