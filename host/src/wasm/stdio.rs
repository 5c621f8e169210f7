//! A plugin's standard output and error: each line becomes a log line
//! tagged with the plugin's stage (stdout at `info`, stderr at `warn`),
//! at most [`LINES_PER_SECOND`] a second per instance with the rest counted
//! and reported once output resumes; and the last few kilobytes of both are
//! kept so that a panic message can be quoted in the error that reports
//! the trap. Writing never fails and never blocks.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Log lines a plugin instance may write per second; more are dropped and
/// counted.
pub const LINES_PER_SECOND: u32 = 50;

/// The longest line logged; longer ones are cut.
const MAX_LINE: usize = 4096;

/// Which stream a [`PluginStdio`] writer serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output: `info` lines.
    Stdout,
    /// Standard error: `warn` lines.
    Stderr,
}

/// A plugin instance's output, shared by its stdout and stderr writers.
#[derive(Clone)]
pub struct PluginStdio {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    stage: Arc<str>,
    tail: VecDeque<u8>,
    tail_capacity: usize,
    /// The unfinished last line of each stream.
    partial: [Vec<u8>; 2],
    /// Start of the current one-second window and lines logged in it.
    window: Instant,
    logged: u32,
    /// Lines dropped by the rate limit since the last report.
    suppressed: u64,
    /// Calls being replayed into a re-created instance: what they print
    /// was logged the first time.
    quiet: bool,
}

impl PluginStdio {
    /// Output of stage `stage`'s instance, keeping the last
    /// `tail_capacity` bytes.
    pub fn new(stage: Arc<str>, tail_capacity: usize) -> Self {
        PluginStdio {
            inner: Arc::new(Mutex::new(Inner {
                stage,
                tail: VecDeque::with_capacity(tail_capacity),
                tail_capacity,
                partial: [Vec::new(), Vec::new()],
                window: Instant::now(),
                logged: 0,
                suppressed: 0,
                quiet: false,
            })),
        }
    }

    /// The writer of one stream, for the WASI context.
    pub fn stream(&self, stream: Stream) -> StdioStream {
        StdioStream {
            output: self.clone(),
            stream,
        }
    }

    fn write(&self, stream: Stream, data: &[u8]) {
        let mut inner = self.inner.lock().expect("plugin output lock");
        inner.keep(data);
        let i = stream as usize;
        let mut rest = data;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut inner.partial[i]);
            line.extend_from_slice(&rest[..end]);
            inner.log(stream, &line);
            rest = &rest[end + 1..];
        }
        let partial = &mut inner.partial[i];
        let room = MAX_LINE.saturating_sub(partial.len());
        partial.extend_from_slice(&rest[..rest.len().min(room)]);
    }

    /// Stops (or resumes) logging lines; the tail is kept either way.
    pub fn set_quiet(&self, quiet: bool) {
        let mut inner = self.inner.lock().expect("plugin output lock");
        if inner.quiet && !quiet {
            // An unfinished line of the replay was logged the first time.
            inner.partial = [Vec::new(), Vec::new()];
        }
        inner.quiet = quiet;
    }

    /// The last `n` non-empty lines, joined with " | ", then cleared.
    pub fn last_lines(&self, n: usize) -> String {
        let mut inner = self.inner.lock().expect("plugin output lock");
        let text = String::from_utf8_lossy(inner.tail.make_contiguous()).into_owned();
        inner.tail.clear();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }
}

impl Inner {
    fn keep(&mut self, data: &[u8]) {
        let data = &data[data.len().saturating_sub(self.tail_capacity)..];
        let overflow = (self.tail.len() + data.len()).saturating_sub(self.tail_capacity);
        self.tail.drain(..overflow);
        self.tail.extend(data);
    }

    fn log(&mut self, stream: Stream, line: &[u8]) {
        if self.quiet {
            return;
        }
        let line = String::from_utf8_lossy(&line[..line.len().min(MAX_LINE)]);
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            return;
        }
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.logged = 0;
        }
        if self.logged >= LINES_PER_SECOND {
            self.suppressed += 1;
            return;
        }
        self.logged += 1;
        self.report_suppressed();
        let stage = &*self.stage;
        match stream {
            Stream::Stdout => tracing::info!(stage, stream = "stdout", "{line}"),
            Stream::Stderr => tracing::warn!(stage, stream = "stderr", "{line}"),
        }
    }

    fn report_suppressed(&mut self) {
        if self.suppressed > 0 {
            tracing::warn!(
                stage = &*self.stage,
                suppressed = self.suppressed,
                "plugin output over {LINES_PER_SECOND} lines/s; lines dropped"
            );
            self.suppressed = 0;
        }
    }
}

impl Drop for Inner {
    /// The instance has gone: what it wrote last is not held back.
    fn drop(&mut self) {
        for i in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.partial[i as usize]);
            if !line.is_empty() {
                self.log(i, &line);
            }
        }
        self.report_suppressed();
    }
}

/// One stream of a [`PluginStdio`].
#[derive(Clone)]
pub struct StdioStream {
    output: PluginStdio,
    stream: Stream,
}

impl IsTerminal for StdioStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StdioStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for StdioStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.write(self.stream, data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_tail() {
        let t = PluginStdio::new("s".into(), 32);
        t.write(Stream::Stderr, b"first line\n");
        t.write(Stream::Stderr, b"panicked at x\nsecond\n");
        assert_eq!(t.last_lines(2), "panicked at x | second");
        assert_eq!(t.last_lines(2), "");
    }

    #[test]
    fn lines_are_split_across_writes_and_limited_per_second() {
        let t = PluginStdio::new("s".into(), 64);
        t.write(Stream::Stdout, b"hel");
        t.write(Stream::Stdout, b"lo\nwor");
        assert_eq!(t.inner.lock().unwrap().logged, 1, "one whole line");
        assert_eq!(t.inner.lock().unwrap().partial[0], b"wor");
        let many: String = (0..2 * LINES_PER_SECOND)
            .map(|i| format!("{i}\n"))
            .collect();
        t.write(Stream::Stderr, many.as_bytes());
        assert_eq!(t.inner.lock().unwrap().logged, LINES_PER_SECOND);
        assert_eq!(
            t.inner.lock().unwrap().suppressed,
            u64::from(LINES_PER_SECOND) + 1
        );
    }
}
