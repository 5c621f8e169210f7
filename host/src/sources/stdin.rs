//! `type = "stdin"`: one event per line of standard input.

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::event::{Batch, Event};
use crate::metrics::StageMetrics;
use crate::topology::{BoxError, SourceContext};
use crate::util::now_ms;

/// Settings of the `stdin` source (none yet; the table may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {}

impl StdinConfig {
    pub(crate) fn build(
        &self,
        ctx: SourceContext,
    ) -> Result<BoxFuture<'static, Result<(), BoxError>>, BoxError> {
        Ok(run(ctx).boxed())
    }
}

async fn run(ctx: SourceContext) -> Result<(), BoxError> {
    let mut reader = BufReader::with_capacity(1 << 16, tokio::io::stdin());
    let mut line = Vec::new();
    loop {
        let mut events = Vec::new();
        // Wait for one line, then take every complete line already buffered.
        loop {
            line.clear();
            let n = tokio::select! {
                _ = ctx.shutdown.cancelled(), if events.is_empty() => 0,
                n = reader.read_until(b'\n', &mut line) => n?,
            };
            if n == 0 {
                break;
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            events.push(Event::new(Bytes::copy_from_slice(&line), now_ms()));
            if events.len() >= ctx.batch_size || !reader.buffer().contains(&b'\n') {
                break;
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        StageMetrics::add(&ctx.metrics.events_in, events.len() as u64);
        if ctx.out.send(Batch::new(events)).await.is_err() {
            return Ok(());
        }
    }
}
