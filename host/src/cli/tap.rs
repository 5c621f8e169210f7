//! `weir tap STAGE`: prints a sample of what a stage emits, as it passes.

use std::io::Write;

use anyhow::{Context, Result, bail};
use weir::telemetry::TapEvent;

/// How `weir tap` prints events.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Stop after this many events.
    pub limit: Option<u64>,
    /// Print each event as JSON (timestamp, key, value, headers).
    pub json: bool,
}

/// Streams `/tap/STAGE` and prints events until `limit`, the pipeline
/// ends, or Ctrl-C.
pub fn run(client: &super::AdminClient, stage: &str, opts: Options) -> Result<()> {
    client.block_on(async {
        let mut path = format!("/tap/{}", encode_path(stage));
        if let Some(n) = opts.limit {
            path.push_str(&format!("?limit={n}"));
        }
        let mut resp = client.send(reqwest::Method::GET, &path, None).await?;
        let code = resp.status();
        if !code.is_success() {
            bail!("{}: {}", code, resp.text().await.unwrap_or_default().trim());
        }
        eprintln!(
            "tapping `{stage}` (sampled, at most {} events/s){}",
            weir::telemetry::TAP_EVENTS_PER_SECOND,
            opts.limit
                .map_or(String::new(), |n| format!("; stopping after {n}"))
        );
        let mut pending = Vec::new();
        let mut printed = 0u64;
        let stdout = std::io::stdout();
        while let Some(chunk) = resp.chunk().await.context("the tap stream broke")? {
            pending.extend_from_slice(&chunk);
            // Server-sent events are separated by a blank line.
            while let Some(end) = find_blank_line(&pending) {
                let block: Vec<u8> = pending.drain(..end.1).collect();
                let block = String::from_utf8_lossy(&block[..end.0]);
                let Some(line) = parse_event(&block) else {
                    continue;
                };
                match line {
                    Sse::Data(data) => {
                        let mut out = stdout.lock();
                        if opts.json {
                            writeln!(out, "{data}")?;
                        } else {
                            let e: TapEvent = serde_json::from_str(&data)
                                .with_context(|| format!("unexpected tap event: {data}"))?;
                            writeln!(out, "{}", e.value)?;
                        }
                        out.flush()?;
                        printed += 1;
                    }
                    Sse::Lagged(n) => {
                        eprintln!("weir tap: missed {n} events (the terminal was too slow)")
                    }
                }
                if opts.limit.is_some_and(|n| printed >= n) {
                    return Ok(());
                }
            }
        }
        eprintln!("weir tap: the stream ended after {printed} events (the pipeline stopped)");
        Ok(())
    })
}

/// Percent-encodes a stage name for a URL path.
fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

enum Sse {
    Data(String),
    Lagged(String),
}

/// The end of the first event block: (end of its text, end including the
/// separator).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let n = buf.windows(2).position(|w| w == b"\n\n")?;
    Some((n, n + 2))
}

/// One event block's data (several `data:` lines join with newlines);
/// comments (keep-alives) give `None`.
fn parse_event(block: &str) -> Option<Sse> {
    let mut data: Option<String> = None;
    let mut event = "message";
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("data:") {
            let v = v.strip_prefix(' ').unwrap_or(v);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_owned()),
            }
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim();
        }
    }
    let data = data?;
    Some(if event == "lagged" {
        Sse::Lagged(data)
    } else {
        Sse::Data(data)
    })
}
