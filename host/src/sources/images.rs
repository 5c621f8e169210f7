//! `type = "images"`: one event per file of a directory.
//!
//! ```toml
//! [sources.photos]
//! type = "images"
//! path = "../data/images"
//! pattern = ["*.jpg", "*.png"]   # or one pattern; `*` and `?` wildcards (default "*")
//! watch = false                  # true: keep polling for new files
//! poll_interval = "1s"
//! max_file_size = "64MiB"        # larger files are skipped with a warning
//! ```
//!
//! The event value is the file's bytes, the key and the `filename` header
//! its name, the timestamp its modification time. Files are read in name
//! order; an unreadable file is logged, counted as an error and skipped. In
//! `watch` mode a new file is taken once its size has not changed between
//! two polls (so half-written files are not read).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt;
use serde::Deserialize;

use crate::event::{Batch, Event};
use crate::stage::{BoxError, Component, Source, SourceContext, StageTask, run_blocking};
use crate::telemetry::StageMetrics;
use crate::units::{ByteSize, Duration};

/// One pattern or several.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Patterns {
    /// A single pattern.
    One(String),
    /// Any of these.
    Many(Vec<String>),
}

impl Default for Patterns {
    fn default() -> Self {
        Patterns::One("*".into())
    }
}

impl Patterns {
    fn matches(&self, name: &str) -> bool {
        match self {
            Patterns::One(p) => wildcard(p, name),
            Patterns::Many(ps) => ps.iter().any(|p| wildcard(p, name)),
        }
    }
}

/// `*` matches any run of characters, `?` any one character.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Settings of the `images` source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// Directory to read.
    pub path: PathBuf,
    /// File-name patterns.
    #[serde(default)]
    pub pattern: Patterns,
    /// Keep watching for new files.
    #[serde(default)]
    pub watch: bool,
    /// How often to look for new files when watching (default 1 s).
    #[serde(default)]
    pub poll_interval: Option<Duration>,
    /// Files larger than this are skipped (default 64 MiB).
    #[serde(default)]
    pub max_file_size: Option<ByteSize>,
}

impl ImagesConfig {
    /// Matching regular files and their sizes, by name.
    fn list(&self) -> std::io::Result<BTreeMap<String, u64>> {
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !self.pattern.matches(&name) {
                continue;
            }
            // Symbolic links are followed; one that cannot be followed is
            // listed anyway, so that reading it logs why it is skipped.
            match std::fs::metadata(entry.path()) {
                Ok(meta) if meta.is_file() => {
                    files.insert(name, meta.len());
                }
                Ok(_) => {} // directories and other non-files
                Err(_) => {
                    files.insert(name, 0);
                }
            }
        }
        Ok(files)
    }

    fn read(&self, path: &Path, limit: u64) -> Result<Event, String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        if meta.len() > limit {
            return Err(format!(
                "{} bytes is above max_file_size ({limit})",
                meta.len()
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let ts = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map_or_else(crate::util::now_ms, |d| d.as_millis() as i64);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut event = Event::new(Bytes::from(bytes), ts);
        event.key = Some(Bytes::from(name.clone()));
        event.headers.push(("filename".into(), Bytes::from(name)));
        Ok(event)
    }

    fn run(self, mut ctx: SourceContext, handle: tokio::runtime::Handle) -> Result<(), BoxError> {
        let limit = self.max_file_size.map_or(64 << 20, |b| b.0);
        let poll = self
            .poll_interval
            .map_or(StdDuration::from_secs(1), Duration::get);
        let mut seen: BTreeSet<String> = ctx
            .control
            .resume
            .as_ref()
            .and_then(|r| r["seen"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        // Watch mode: sizes at the previous poll, to take only settled files.
        let mut last_sizes: BTreeMap<String, u64> = BTreeMap::new();
        let position = |seen: &BTreeSet<String>| serde_json::json!({ "seen": seen });
        loop {
            let files = self
                .list()
                .map_err(|e| format!("cannot list {}: {e}", self.path.display()))?;
            for (name, size) in &files {
                if seen.contains(name) || (self.watch && last_sizes.get(name) != Some(size)) {
                    continue;
                }
                if let Some(action) = ctx.control.poll()
                    && ctx.act(&handle, action, || position(&seen))
                {
                    return Ok(());
                }
                seen.insert(name.clone());
                match self.read(&self.path.join(name), limit) {
                    Ok(event) => {
                        StageMetrics::add(&ctx.metrics.events_in, 1);
                        if ctx
                            .out
                            .blocking_send(&handle, Batch::new(vec![event]))
                            .is_err()
                        {
                            return Ok(());
                        }
                    }
                    Err(reason) => {
                        StageMetrics::add(&ctx.metrics.errors, 1);
                        tracing::warn!(file = name, reason, "cannot read file; skipped");
                    }
                }
            }
            if !self.watch {
                ctx.finish(&handle, position(&seen));
                tracing::info!(files = seen.len(), "images read");
                return Ok(());
            }
            last_sizes = files;
            // Sleep in small steps so stop and checkpoint requests are prompt.
            let until = std::time::Instant::now() + poll;
            while std::time::Instant::now() < until {
                if let Some(action) = ctx.control.poll()
                    && ctx.act(&handle, action, || position(&seen))
                {
                    return Ok(());
                }
                std::thread::sleep(StdDuration::from_millis(50).min(poll));
            }
        }
    }
}

impl Source for ImagesConfig {
    fn build(&self, ctx: SourceContext) -> Result<StageTask, BoxError> {
        if !self.path.is_dir() {
            return Err(format!("{} is not a directory", self.path.display()).into());
        }
        let config = self.clone();
        let handle = tokio::runtime::Handle::current();
        Ok(async move { run_blocking(move || config.run(ctx, handle)).await? }.boxed())
    }
}

impl Component for ImagesConfig {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.path]
    }

    fn resumes_where_stopped(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("*.jpg", "astronaut.jpg"));
        assert!(!wildcard("*.jpg", "astronaut.png"));
        assert!(wildcard("*", "anything"));
        assert!(wildcard("img-??.png", "img-01.png"));
        assert!(!wildcard("img-??.png", "img-1.png"));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXbYY"));
    }
}
