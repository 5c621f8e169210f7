//! Reloads on file changes: the pipeline file and every file a stage runs
//! (plugin components, plugin crate sources, models) are watched; a burst of
//! changes is collected until the files have been quiet for a moment, then
//! one reload is requested.
//!
//! Directories are watched rather than files, so a file replaced by rename
//! (`cp new.wasm x.tmp && mv x.tmp plugin.wasm`, how editors and build tools
//! save) is seen like one written in place. Build output (`target/`, tool
//! caches, hidden entries; see [`crate::wasm::lang::is_generated`]) and
//! editor scratch files are ignored.

use std::collections::BTreeMap;
use std::path::{Component as PathPart, Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot};

use crate::config::Pipeline;
use crate::engine::ReloadRequest;

/// How long files must be quiet before a reload starts.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// What is watched: files by exact path, crate directories by prefix.
#[derive(Debug, Default, PartialEq, Eq)]
struct Targets {
    files: Vec<PathBuf>,
    trees: Vec<PathBuf>,
}

impl Targets {
    fn of(pipeline: &Pipeline) -> Targets {
        let mut t = Targets {
            files: vec![absolute(&pipeline.file)],
            trees: Vec::new(),
        };
        for stage in pipeline.stages.values() {
            for f in stage.component.hooks().files_to_watch() {
                let f = absolute(&f);
                if f.is_dir() {
                    t.trees.push(f);
                } else {
                    t.files.push(f);
                }
            }
        }
        t.files.sort();
        t.files.dedup();
        t.trees.sort();
        t.trees.dedup();
        t
    }

    /// Directories to watch, and how.
    fn dirs(&self) -> BTreeMap<PathBuf, RecursiveMode> {
        let mut dirs = BTreeMap::new();
        for f in &self.files {
            if let Some(parent) = f.parent() {
                dirs.entry(parent.to_path_buf())
                    .or_insert(RecursiveMode::NonRecursive);
            }
        }
        for t in &self.trees {
            dirs.insert(t.clone(), RecursiveMode::Recursive);
        }
        dirs
    }

    /// Whether a change to `path` matters.
    fn wants(&self, path: &Path) -> bool {
        if self.files.iter().any(|f| f == path) {
            return true;
        }
        self.trees.iter().any(|t| {
            path.strip_prefix(t).is_ok_and(|rel| {
                let ignored = rel.components().any(|c| match c {
                    PathPart::Normal(n) => crate::wasm::lang::is_generated(&n.to_string_lossy()),
                    _ => false,
                });
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                !ignored && !name.ends_with('~') && !name.ends_with(".swp")
            })
        })
    }
}

/// An absolute, cleaned path, resolving symlinks in the directory part when
/// it exists (inotify reports real paths).
fn absolute(p: &Path) -> PathBuf {
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => match dir.canonicalize() {
            Ok(d) => d.join(name),
            Err(_) => abs,
        },
        _ => abs,
    }
}

/// Watches `pipeline`'s files and sends a reload request when they change.
/// Runs until `requests` closes; after each reload the watched set follows
/// the pipeline file's new contents.
pub fn spawn(
    pipeline: &Pipeline,
    requests: mpsc::UnboundedSender<ReloadRequest>,
) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let _ = tx.send(res);
    })?;
    let file = pipeline.file.clone();
    let mut w = Watch {
        watcher,
        watching: BTreeMap::new(),
        targets: Targets::default(),
    };
    w.retarget(Targets::of(pipeline));
    Ok(tokio::spawn(w.run(file, rx, requests)))
}

struct Watch {
    watcher: RecommendedWatcher,
    watching: BTreeMap<PathBuf, RecursiveMode>,
    targets: Targets,
}

impl Watch {
    fn retarget(&mut self, targets: Targets) {
        let want = targets.dirs();
        for (dir, mode) in &self.watching {
            if want.get(dir) != Some(mode) {
                let _ = self.watcher.unwatch(dir);
            }
        }
        for (dir, mode) in &want {
            if self.watching.get(dir) != Some(mode)
                && let Err(e) = self.watcher.watch(dir, *mode)
            {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch for changes");
            }
        }
        self.watching = want;
        self.targets = targets;
    }

    fn relevant(&self, event: &notify::Event) -> Option<PathBuf> {
        if matches!(event.kind, EventKind::Access(_)) {
            return None;
        }
        event.paths.iter().find(|p| self.targets.wants(p)).cloned()
    }

    async fn run(
        mut self,
        file: PathBuf,
        mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
        requests: mpsc::UnboundedSender<ReloadRequest>,
    ) {
        loop {
            // Wait for a relevant change.
            let first = loop {
                match events.recv().await {
                    None => return,
                    Some(Ok(e)) => {
                        tracing::trace!(kind = ?e.kind, paths = ?e.paths, "file event");
                        if let Some(p) = self.relevant(&e) {
                            break p;
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "file watcher error"),
                }
            };
            // Then for the watched files to be quiet (other files in the
            // same directories may be busy: logs, outputs).
            let mut quiet_until = tokio::time::Instant::now() + DEBOUNCE;
            loop {
                match tokio::time::timeout_at(quiet_until, events.recv()).await {
                    Err(_) => break,
                    Ok(None) => return,
                    Ok(Some(Ok(e))) if self.relevant(&e).is_some() => {
                        quiet_until = tokio::time::Instant::now() + DEBOUNCE;
                    }
                    Ok(Some(_)) => {}
                }
            }
            tracing::info!(file = %first.display(), "change detected; reloading");
            let (reply, outcome) = oneshot::channel();
            let request = ReloadRequest {
                trigger: format!("file change: {}", first.display()),
                reply: Some(reply),
            };
            if requests.send(request).is_err() {
                return;
            }
            let _ = outcome.await;
            // Follow what the file now names (it may fail to parse: keep
            // watching what we had, including the file itself).
            let reloaded = tokio::task::spawn_blocking({
                let file = file.clone();
                move || crate::config::load(&file).ok()
            })
            .await;
            if let Ok(Some(p)) = reloaded {
                self.retarget(Targets::of(&p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_trees_ignore_build_output_and_scratch_files() {
        let t = Targets {
            files: vec![PathBuf::from("/p/pipeline.toml")],
            trees: vec![PathBuf::from("/p/plugins/x")],
        };
        assert!(t.wants(Path::new("/p/pipeline.toml")));
        assert!(t.wants(Path::new("/p/plugins/x/src/lib.rs")));
        assert!(t.wants(Path::new("/p/plugins/x/Cargo.toml")));
        assert!(!t.wants(Path::new("/p/plugins/x/target/wasm32-wasip2/x.wasm")));
        assert!(!t.wants(Path::new("/p/plugins/x/src/.lib.rs.swp")));
        assert!(!t.wants(Path::new("/p/plugins/x/src/lib.rs~")));
        assert!(t.wants(Path::new("/p/plugins/x/plugin.py")));
        assert!(!t.wants(Path::new("/p/plugins/x/__pycache__/plugin.pyc")));
        assert!(!t.wants(Path::new("/p/plugins/x/.weir/componentize-py-0.25.1/x")));
        assert!(!t.wants(Path::new("/p/plugins/x/node_modules/y/index.js")));
        assert!(!t.wants(Path::new("/p/other.toml")));
        let dirs = t.dirs();
        assert_eq!(dirs[Path::new("/p")], RecursiveMode::NonRecursive);
        assert_eq!(dirs[Path::new("/p/plugins/x")], RecursiveMode::Recursive);
    }
}
