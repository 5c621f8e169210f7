//! `type = "file"`: appends one line per event to a file, creating its
//! directory if needed.
//!
//! ```toml
//! [sinks.out]
//! type = "file"
//! inputs = ["count"]
//! path = "out/counts.jsonl"
//! format = "value"     # or json: timestamp, key, value, headers
//! linger = "5ms"       # gather batches arriving within this long into one write
//! ```
//!
//! Batches that arrive within `linger` of the first one (up to 1 MiB of
//! lines) are written with one `write`, like a Kafka producer's
//! `linger.ms`: a pipeline emitting many small batches makes far fewer
//! system calls (and file-change events for whoever watches the
//! directory). Their records are acknowledged once written, so the
//! source commits them at most `linger` later. `linger = "0s"` writes
//! what is queued at once.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration as StdDuration, Instant};

use futures_util::FutureExt;
use serde::Deserialize;

use super::{LineFormat, write_line};
use crate::event::Batch;
use crate::stage::{BoxError, Component, Item, Sink, SinkContext, StageTask, run_blocking};
use crate::telemetry::StageMetrics;
use crate::units::Duration;

/// Settings of the `file` sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to append to.
    pub path: PathBuf,
    /// `value` (default) or `json`.
    #[serde(default)]
    pub format: LineFormat,
    /// How long to gather batches into one write (default 5 ms).
    #[serde(default)]
    pub linger: Option<Duration>,
}

/// Lines gathered into one write at most.
const MAX_GATHERED: usize = 1 << 20;

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
        let linger = self
            .linger
            .map_or(StdDuration::from_millis(5), Duration::get);
        let writer = Writer {
            file,
            path: self.path.clone(),
            format: self.format,
            linger,
        };
        Ok(run(ctx, writer).boxed())
    }
}

impl Component for FileConfig {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.path]
    }
}

async fn run(ctx: SinkContext, writer: Writer) -> Result<(), BoxError> {
    // A dedicated blocking thread: file writes never stall async workers.
    run_blocking(move || writer.write_all(ctx)).await?
}

struct Writer {
    file: std::fs::File,
    path: PathBuf,
    format: LineFormat,
    linger: StdDuration,
}

impl Writer {
    fn write_all(mut self, mut ctx: SinkContext) -> Result<(), BoxError> {
        let mut buf = Vec::new();
        let mut gathered: Vec<Batch> = Vec::new();
        let mut next = ctx.input.blocking_recv();
        let mut closed = false;
        while let Some(item) = next.take() {
            match item {
                Item::Batch(batch) => {
                    let first = Instant::now();
                    self.add(&mut buf, batch, &mut gathered, &ctx.metrics);
                    // Gather what comes within `linger`; anything else
                    // (a barrier, the end) waits until this is written.
                    while buf.len() < MAX_GATHERED {
                        let left = self.linger.saturating_sub(first.elapsed());
                        match ctx.input.blocking_recv_within(left) {
                            Some(Some(Item::Batch(b))) => {
                                self.add(&mut buf, b, &mut gathered, &ctx.metrics)
                            }
                            Some(Some(other)) => {
                                next = Some(other);
                                break;
                            }
                            Some(None) => {
                                closed = true;
                                break;
                            }
                            None => break,
                        }
                    }
                    self.flush(&mut buf, &mut gathered, &ctx.metrics, first)?;
                    if next.is_some() || closed {
                        continue;
                    }
                }
                Item::Barrier { id, .. } => {
                    self.sync()?;
                    ctx.reporter.sink_ready(id);
                }
                Item::End | Item::Revoked { .. } => {}
            }
            next = next.or_else(|| ctx.input.blocking_recv());
        }
        self.sync()
    }

    /// Appends `batch`'s lines to `buf` and keeps the batch (with its
    /// acknowledgements) until they are written.
    fn add(&self, buf: &mut Vec<u8>, batch: Batch, gathered: &mut Vec<Batch>, m: &StageMetrics) {
        for e in &batch.events {
            write_line(buf, e, self.format);
        }
        StageMetrics::add(&m.events_in, batch.events.len() as u64);
        gathered.push(batch);
    }

    /// Writes `buf`, then releases the gathered batches' acknowledgements.
    fn flush(
        &mut self,
        buf: &mut Vec<u8>,
        gathered: &mut Vec<Batch>,
        m: &StageMetrics,
        since: Instant,
    ) -> Result<(), BoxError> {
        let started = Instant::now();
        self.file
            .write_all(buf)
            .map_err(|e| format!("cannot write to {}: {e}", self.path.display()))?;
        buf.clear();
        let n: usize = gathered.iter().map(|b| b.events.len()).sum();
        StageMetrics::add(&m.events_out, n as u64);
        m.record_batch(started.elapsed());
        tracing::trace!(
            batches = gathered.len(),
            gathered_us = since.elapsed().as_micros() as u64,
            "written"
        );
        gathered.clear(); // written: release the acknowledgements
        Ok(())
    }

    fn sync(&self) -> Result<(), BoxError> {
        self.file
            .sync_data()
            .map_err(|e| format!("cannot sync {}: {e}", self.path.display()).into())
    }
}
