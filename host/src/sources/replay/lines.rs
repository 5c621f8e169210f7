//! The replay source's file reader: large chunks, lines as zero-copy
//! slices, and the byte offset a checkpoint resumes from.

use std::fs::File;
use std::io::Read;

use bytes::Bytes;

/// Reads a file in large chunks and yields its lines as zero-copy slices.
pub(super) struct Lines<R = File> {
    file: R,
    /// Bytes read at a time (past what is carried over).
    chunk_size: usize,
    chunk: Bytes,
    /// File offset of `chunk[0]`.
    chunk_base: u64,
    pos: usize,
    carry: Vec<u8>,
    eof: bool,
    pub(super) line_no: u64,
}

/// Bytes read from the file at a time.
pub(super) const CHUNK: usize = 1 << 20;

impl<R: Read + std::io::Seek> Lines<R> {
    pub(super) fn new(file: R) -> Self {
        Self::with_chunk(file, CHUNK)
    }

    pub(super) fn with_chunk(file: R, chunk_size: usize) -> Self {
        Lines {
            file,
            chunk_size: chunk_size.max(1),
            chunk: Bytes::new(),
            chunk_base: 0,
            pos: 0,
            carry: Vec::new(),
            eof: false,
            line_no: 0,
        }
    }

    /// File offset of the next unread line.
    pub(super) fn offset(&self) -> u64 {
        self.chunk_base + self.pos as u64
    }

    /// Continues reading at `offset`, which starts line `line_no + 1`.
    pub(super) fn seek(&mut self, offset: u64, line_no: u64) -> std::io::Result<()> {
        self.file.seek(std::io::SeekFrom::Start(offset))?;
        self.chunk = Bytes::new();
        self.chunk_base = offset;
        self.pos = 0;
        self.eof = false;
        self.line_no = line_no;
        Ok(())
    }

    /// The next line without its `\n` / `\r\n`, and its 1-based number.
    pub(super) fn next_line(&mut self) -> std::io::Result<Option<(u64, Bytes)>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.chunk[self.pos..]) {
                let start = self.pos;
                let mut end = start + i;
                self.pos = end + 1;
                if end > start && self.chunk[end - 1] == b'\r' {
                    end -= 1;
                }
                self.line_no += 1;
                return Ok(Some((self.line_no, self.chunk.slice(start..end))));
            }
            if self.eof {
                if self.pos < self.chunk.len() {
                    let rest = self.chunk.slice(self.pos..);
                    self.pos = self.chunk.len();
                    self.line_no += 1;
                    let rest = if rest.ends_with(b"\r") {
                        rest.slice(..rest.len() - 1)
                    } else {
                        rest
                    };
                    return Ok(Some((self.line_no, rest)));
                }
                return Ok(None);
            }
            self.chunk_base += self.pos as u64;
            self.carry.clear();
            self.carry.extend_from_slice(&self.chunk[self.pos..]);
            let mut buf = std::mem::take(&mut self.carry);
            let have = buf.len();
            buf.resize(have + self.chunk_size, 0);
            let mut filled = have;
            while filled < buf.len() {
                let n = self.file.read(&mut buf[filled..])?;
                if n == 0 {
                    self.eof = true;
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            self.chunk = Bytes::from(buf);
            self.pos = 0;
        }
    }
}
