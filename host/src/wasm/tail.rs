//! A never-failing output stream for a plugin's stdout/stderr that keeps
//! only the last few kilobytes, so a panic message can be quoted in the
//! error that reports the trap.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Keeps the last `capacity` bytes written.
#[derive(Clone)]
pub struct TailPipe {
    capacity: usize,
    buf: Arc<Mutex<VecDeque<u8>>>,
}

impl TailPipe {
    pub fn new(capacity: usize) -> Self {
        TailPipe {
            capacity,
            buf: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut buf = self.buf.lock().expect("tail lock");
        let data = &data[data.len().saturating_sub(self.capacity)..];
        let overflow = (buf.len() + data.len()).saturating_sub(self.capacity);
        buf.drain(..overflow);
        buf.extend(data);
    }

    /// The last `n` non-empty lines, joined with " | ", then cleared.
    pub fn last_lines(&self, n: usize) -> String {
        let mut buf = self.buf.lock().expect("tail lock");
        let text = String::from_utf8_lossy(buf.make_contiguous()).into_owned();
        buf.clear();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    }
}

impl IsTerminal for TailPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for TailPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for TailPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(data);
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
        let t = TailPipe::new(32);
        t.push(b"first line\n");
        t.push(b"panicked at x\nsecond\n");
        assert_eq!(t.last_lines(2), "panicked at x | second");
        assert_eq!(t.last_lines(2), "");
    }
}
