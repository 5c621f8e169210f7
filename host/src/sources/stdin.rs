//! `type = "stdin"`: one event per line of standard input.

use bytes::Bytes;
use futures_util::FutureExt;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::event::{Batch, Event, Marker};
use crate::stage::{Action, BoxError, Component, Source, SourceContext, StageTask};
use crate::telemetry::StageMetrics;
use crate::util::now_ms;

/// Settings of the `stdin` source (none yet; the table may be empty).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {}

impl Source for StdinConfig {
    fn build(&self, ctx: SourceContext) -> Result<StageTask, BoxError> {
        Ok(run(ctx).boxed())
    }
}

impl Component for StdinConfig {}

async fn run(mut ctx: SourceContext) -> Result<(), BoxError> {
    let mut reader = BufReader::with_capacity(1 << 16, tokio::io::stdin());
    let mut line = Vec::new();
    let mut lines_read: u64 = 0;
    loop {
        let mut events = Vec::new();
        let mut action = None;
        let mut eof = false;
        // Wait for one line, then take every complete line already buffered.
        loop {
            line.clear();
            let n = tokio::select! {
                a = ctx.control.next(), if events.is_empty() => {
                    action = Some(a);
                    break;
                }
                n = reader.read_until(b'\n', &mut line) => n?,
            };
            if n == 0 {
                eof = true;
                break;
            }
            lines_read += 1;
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            events.push(Event::new(Bytes::copy_from_slice(&line), now_ms()));
            if events.len() >= ctx.batch_size || !reader.buffer().contains(&b'\n') {
                break;
            }
        }
        if !events.is_empty() {
            StageMetrics::add(&ctx.metrics.events_in, events.len() as u64);
            if ctx.out.send(Batch::new(events)).await.is_err() {
                return Ok(());
            }
        }
        let position = serde_json::json!({ "lines": lines_read });
        if eof {
            ctx.control.reporter.source_done(position);
            let _ = ctx.out.send(Batch::marker(Marker::End)).await;
            return Ok(());
        }
        match action {
            Some(Action::Stop) => return Ok(()),
            Some(a @ Action::Checkpoint { id, last }) => {
                ctx.control.reporter.position(id, position);
                if let Some(m) = a.marker() {
                    let _ = ctx.out.send(Batch::marker(m)).await;
                }
                if last {
                    return Ok(());
                }
            }
            None => {}
        }
    }
}
