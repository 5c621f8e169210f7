//! `type = "console"`: prints each event on its own line of standard output.

use std::io::Write;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;

use super::{LineFormat, write_line};
use crate::metrics::StageMetrics;
use crate::topology::{BoxError, SinkContext};

/// Settings of the `console` sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `value` (default) or `json` (timestamp, key, value and headers).
    #[serde(default)]
    pub format: LineFormat,
}

impl ConsoleConfig {
    pub(crate) fn build(
        &self,
        ctx: SinkContext,
    ) -> Result<BoxFuture<'static, Result<(), BoxError>>, BoxError> {
        let format = self.format;
        Ok(run(ctx, format).boxed())
    }
}

async fn run(ctx: SinkContext, format: LineFormat) -> Result<(), BoxError> {
    // Standard output may block (a pipe to a slow reader): keep it on its
    // own thread.
    tokio::task::spawn_blocking(move || write_all(ctx, format)).await?
}

fn write_all(mut ctx: SinkContext, format: LineFormat) -> Result<(), BoxError> {
    let mut buf = Vec::new();
    while let Some(batch) = ctx.blocking_next_batch() {
        let started = std::time::Instant::now();
        buf.clear();
        for e in &batch.events {
            write_line(&mut buf, e, format);
        }
        let n = batch.events.len() as u64;
        StageMetrics::add(&ctx.metrics.events_in, n);
        let mut out = std::io::stdout().lock();
        out.write_all(&buf)?;
        out.flush()?;
        drop(out);
        StageMetrics::add(&ctx.metrics.events_out, n);
        ctx.metrics.record_batch(started.elapsed());
        drop(batch); // written: release the acknowledgements
    }
    Ok(())
}
