//! Why a plugin cannot be loaded or started ([`PluginError`]), and why one
//! call into it failed ([`CallError`]).

use std::path::PathBuf;
use std::time::Duration;

/// Failure to load or start a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a Weir component (core module, other world, garbage).
    #[error("{path} is not a Weir plugin: {reason}")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Compilation or linking failed.
    #[error("cannot load plugin {path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Cause.
        reason: String,
    },
    /// The plugin refused its configuration.
    #[error("plugin rejected its config: {0}")]
    Config(String),
    /// Creating the instance trapped or hit a limit.
    #[error("plugin failed to start: {0}")]
    Start(CallError),
    /// Building a plugin crate failed.
    #[error("{0}")]
    Build(String),
}

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call ran past its deadline and was interrupted.
    #[error("deadline of {0:?} exceeded (plugin interrupted)")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past the cap.
    #[error("memory limit of {} MiB exceeded (plugin asked for {:.1} MiB)", *.limit as f64 / 1048576.0, *.wanted as f64 / 1048576.0)]
    MemoryLimit {
        /// Cap, bytes.
        limit: u64,
        /// Requested size, bytes.
        wanted: u64,
    },
    /// The plugin trapped (panic, unreachable, out-of-bounds access, ...).
    #[error("plugin trapped: {0}")]
    Trap(String),
}
