//! `type = "console"`: prints each event on its own line of standard output.

use std::io::Write;

use futures_util::FutureExt;
use serde::Deserialize;

use super::{LineFormat, write_lines};
use crate::stage::{BoxError, Component, Sink, SinkContext, StageTask, run_blocking};

/// Settings of the `console` sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `value` (default) or `json` (timestamp, key, value and headers).
    #[serde(default)]
    pub format: LineFormat,
}

impl Sink for ConsoleConfig {
    fn build(&self, ctx: SinkContext) -> Result<StageTask, BoxError> {
        let format = self.format;
        Ok(run(ctx, format).boxed())
    }
}

impl Component for ConsoleConfig {}

async fn run(ctx: SinkContext, format: LineFormat) -> Result<(), BoxError> {
    // Standard output may block (a pipe to a slow reader): keep it on its
    // own thread.
    run_blocking(move || write_all(ctx, format)).await?
}

fn write_all(mut ctx: SinkContext, format: LineFormat) -> Result<(), BoxError> {
    let mut buf = Vec::new();
    while let Some(batch) = ctx.blocking_next_batch() {
        write_lines(batch, format, &mut buf, &ctx.metrics, |lines| {
            let mut out = std::io::stdout().lock();
            out.write_all(lines)?;
            Ok(out.flush()?)
        })?;
    }
    Ok(())
}
