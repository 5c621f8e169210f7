//! `type = "file"`: appends one line per event to a file, creating its
//! directory if needed.

use std::io::Write;
use std::path::PathBuf;

use futures_util::FutureExt;
use serde::Deserialize;

use super::{LineFormat, write_lines};
use crate::stage::{BoxError, Component, Item, Sink, SinkContext, StageTask, run_blocking};

/// Settings of the `file` sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to append to.
    pub path: PathBuf,
    /// `value` (default) or `json`.
    #[serde(default)]
    pub format: LineFormat,
}

impl Sink for FileConfig {
    fn build(&self, ctx: SinkContext) -> Result<StageTask, BoxError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("cannot open {} for appending: {e}", self.path.display()))?;
        let (path, format) = (self.path.clone(), self.format);
        Ok(run(ctx, file, path, format).boxed())
    }
}

impl Component for FileConfig {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.path]
    }
}

async fn run(
    ctx: SinkContext,
    file: std::fs::File,
    path: PathBuf,
    format: LineFormat,
) -> Result<(), BoxError> {
    // A dedicated blocking thread: file writes never stall async workers.
    run_blocking(move || write_all(ctx, file, path, format)).await?
}

fn write_all(
    mut ctx: SinkContext,
    mut file: std::fs::File,
    path: PathBuf,
    format: LineFormat,
) -> Result<(), BoxError> {
    let mut buf = Vec::new();
    while let Some(item) = ctx.input.blocking_recv() {
        let batch = match item {
            Item::Batch(b) => b,
            Item::Barrier { id, .. } => {
                file.sync_data()
                    .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
                ctx.reporter.sink_ready(id);
                continue;
            }
            Item::End | Item::Revoked { .. } => continue,
        };
        write_lines(batch, format, &mut buf, &ctx.metrics, |lines| {
            file.write_all(lines)
                .map_err(|e| format!("cannot write to {}: {e}", path.display()).into())
        })?;
    }
    file.sync_data()
        .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
    Ok(())
}
