//! Cutting a long-lived HTTP response body into messages: one per line
//! (`lines`, `ndjson`: blank keep-alive lines skipped) or one per
//! Server-Sent Event (`sse`: `event`, `id`, `data` fields, multi-line data,
//! comments and blank keep-alives skipped, `retry` remembered).
//!
//! Bytes arrive in arbitrary chunks; a [`Framer`] keeps the unfinished
//! tail between them, bounded by `max_message` so a server that never
//! sends a line end cannot grow it without limit.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

/// How the body is framed: the source's `format` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON document per line (the default); each line's JSON is checked.
    #[default]
    Ndjson,
    /// Server-Sent Events; each event's `data` is one message.
    Sse,
    /// One message per line, any text.
    Lines,
}

/// One message cut from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The line, or the event's data (lines joined by `\n`).
    pub data: Bytes,
    /// SSE: the event's type (`event:`), when given.
    pub event: Option<String>,
    /// SSE: the event's id (`id:`), when given.
    pub id: Option<String>,
}

/// What a message that is too long looks like to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    /// Its first bytes, for the dead-letter output.
    pub head: Bytes,
    /// The limit it passed.
    pub limit: usize,
}

/// The framing state of one connection.
#[derive(Debug)]
pub struct Framer {
    format: Format,
    max_message: usize,
    tail: BytesMut,
    /// Skipping the rest of a line already reported too long.
    skipping: bool,
    /// At the start of a connection's body (a byte-order mark is dropped).
    at_start: bool,
    /// SSE: the event being assembled is over the limit and is dropped.
    event_too_long: bool,
    /// SSE: the event being assembled.
    data: Vec<u8>,
    has_data: bool,
    event: Option<String>,
    id: Option<String>,
    /// SSE: the last event id seen (sent back as `Last-Event-ID`).
    pub last_id: Option<String>,
    /// SSE: the reconnection time the server asked for (`retry:`), ms.
    pub retry_ms: Option<u64>,
    /// Lines skipped as keep-alives or comments.
    pub keep_alives: u64,
}

impl Framer {
    /// A framer for `format`, refusing messages longer than `max_message`.
    pub fn new(format: Format, max_message: usize, last_id: Option<String>) -> Self {
        Framer {
            format,
            max_message,
            tail: BytesMut::new(),
            skipping: false,
            at_start: true,
            event_too_long: false,
            data: Vec::new(),
            has_data: false,
            event: None,
            id: None,
            last_id,
            retry_ms: None,
            keep_alives: 0,
        }
    }

    /// Starts a new connection: a partial line or event of the old one is
    /// dropped (the server resends from its own position).
    pub fn reset(&mut self) {
        self.tail.clear();
        self.skipping = false;
        self.at_start = true;
        self.event_too_long = false;
        self.data.clear();
        self.has_data = false;
        self.event = None;
        self.id = self.last_id.clone();
    }

    /// Feeds a chunk of the body; complete messages go to `out`, messages
    /// over the limit to `too_long`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Message>, too_long: &mut Vec<TooLong>) {
        let mut rest = chunk;
        if self.at_start && !chunk.is_empty() {
            self.at_start = false;
            rest = rest.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(rest);
        }
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let (line, after) = rest.split_at(i);
            rest = &after[1..];
            if self.skipping {
                self.skipping = false;
                continue;
            }
            let whole;
            let line = if self.tail.is_empty() {
                line
            } else {
                self.tail.extend_from_slice(line);
                whole = self.tail.split().freeze();
                &whole[..]
            };
            if line.len() > self.max_message {
                too_long.push(TooLong {
                    head: Bytes::copy_from_slice(&line[..self.max_message.min(1024)]),
                    limit: self.max_message,
                });
            } else {
                self.line(strip_cr(line), out, too_long);
            }
        }
        if self.skipping {
            return;
        }
        self.tail.extend_from_slice(rest);
        if self.tail.len() > self.max_message {
            let head = self
                .tail
                .split()
                .freeze()
                .slice(..self.max_message.min(1024));
            too_long.push(TooLong {
                head,
                limit: self.max_message,
            });
            self.skipping = true;
        }
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<Message>, too_long: &mut Vec<TooLong>) {
        match self.format {
            Format::Ndjson | Format::Lines => {
                if line.iter().all(u8::is_ascii_whitespace) {
                    self.keep_alives += 1;
                } else {
                    out.push(Message {
                        data: Bytes::copy_from_slice(line),
                        event: None,
                        id: None,
                    });
                }
            }
            Format::Sse => self.sse_line(line, out, too_long),
        }
    }

    fn sse_line(&mut self, line: &[u8], out: &mut Vec<Message>, too_long: &mut Vec<TooLong>) {
        if line.is_empty() {
            // Dispatch: the id takes effect, and an event with data becomes
            // a message (one over the limit was reported when it passed it).
            if let Some(id) = &self.id {
                self.last_id = (!id.is_empty()).then(|| id.clone());
            }
            if self.event_too_long {
                self.event_too_long = false;
            } else if self.has_data {
                out.push(Message {
                    data: Bytes::from(std::mem::take(&mut self.data)),
                    event: self.event.take(),
                    id: self.id.clone(),
                });
            } else {
                self.keep_alives += 1;
            }
            self.has_data = false;
            self.data.clear();
            self.event = None;
            return;
        }
        if line[0] == b':' {
            self.keep_alives += 1;
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.event_too_long {
                    return;
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
                if self.data.len() > self.max_message {
                    too_long.push(TooLong {
                        head: Bytes::copy_from_slice(&self.data[..self.max_message.min(1024)]),
                        limit: self.max_message,
                    });
                    self.data.clear();
                    self.has_data = false;
                    self.event_too_long = true;
                }
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            // An id with a NUL is ignored, as the specification says.
            // It takes effect when the event is dispatched.
            b"id" if !value.contains(&0) => {
                self.id = Some(String::from_utf8_lossy(value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(ms) = std::str::from_utf8(value).unwrap_or("").parse() {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(format: Format, chunks: &[&str]) -> (Vec<Message>, Framer) {
        let mut f = Framer::new(format, 64, None);
        let mut out = Vec::new();
        let mut long = Vec::new();
        for c in chunks {
            f.push(c.as_bytes(), &mut out, &mut long);
        }
        assert!(long.is_empty());
        (out, f)
    }

    fn data(m: &[Message]) -> Vec<String> {
        m.iter()
            .map(|m| String::from_utf8_lossy(&m.data).into_owned())
            .collect()
    }

    #[test]
    fn lines_are_cut_across_chunks_and_keep_alives_skipped() {
        let (out, f) = feed(
            Format::Ndjson,
            &["{\"a\":1}\r\n\r\n{\"b\"", ":2}\n", "\n{\"c\":3"],
        );
        assert_eq!(data(&out), ["{\"a\":1}", "{\"b\":2}"]);
        assert_eq!(f.keep_alives, 2);
    }

    #[test]
    fn sse_events_join_data_lines_and_remember_the_last_id() {
        let (out, f) = feed(
            Format::Sse,
            &[
                ": hello\n\nretry: 1500\nevent: edit\nid: 7\ndata: {\"a\":\ndata:1}\n\n",
                "data: x\n",
                "\nid: 9\n\n",
            ],
        );
        assert_eq!(data(&out), ["{\"a\":\n1}", "x"]);
        assert_eq!(out[0].event.as_deref(), Some("edit"));
        assert_eq!(out[0].id.as_deref(), Some("7"));
        assert_eq!(out[1].event, None);
        assert_eq!(out[1].id.as_deref(), Some("7"), "the id carries over");
        assert_eq!(f.last_id.as_deref(), Some("9"));
        assert_eq!(f.retry_ms, Some(1500));
        assert!(f.keep_alives >= 2);
    }

    #[test]
    fn a_message_past_the_limit_is_reported_once_and_skipped() {
        let mut f = Framer::new(Format::Lines, 8, None);
        let (mut out, mut long) = (Vec::new(), Vec::new());
        f.push(b"0123456789", &mut out, &mut long);
        f.push(b"abc\nok\n", &mut out, &mut long);
        f.push(b"0123456789\nfine\n", &mut out, &mut long);
        assert_eq!(long.len(), 2);
        assert_eq!(&long[0].head[..], b"01234567");
        assert_eq!(data(&out), ["ok", "fine"]);
    }

    #[test]
    fn an_id_counts_once_its_event_is_complete_and_a_bom_is_dropped() {
        let mut f = Framer::new(Format::Sse, 64, Some("3".into()));
        let (mut out, mut long) = (Vec::new(), Vec::new());
        f.push(
            b"\xEF\xBB\xBFid: 4\ndata: a\n\nid: 5\ndata: b\n",
            &mut out,
            &mut long,
        );
        assert_eq!(data(&out), ["a"]);
        assert_eq!(f.last_id.as_deref(), Some("4"), "event 5 is not complete");
        f.reset();
        f.push(b"id:\ndata: c\n\n", &mut out, &mut long);
        assert_eq!(f.last_id, None, "an empty id clears it");
    }

    #[test]
    fn an_event_over_the_limit_is_reported_and_dropped_whole() {
        // Each line is under the limit of 12; the data of the event is not.
        let mut f = Framer::new(Format::Sse, 12, None);
        let (mut out, mut long) = (Vec::new(), Vec::new());
        f.push(
            b"data: 12345\ndata: 67890\ndata: x\ndata: y\n\ndata: ok\n\n",
            &mut out,
            &mut long,
        );
        assert_eq!(long.len(), 1);
        assert_eq!(data(&out), ["ok"]);
    }

    #[test]
    fn reset_drops_a_partial_message() {
        let mut f = Framer::new(Format::Sse, 64, Some("3".into()));
        let (mut out, mut long) = (Vec::new(), Vec::new());
        f.push(b"data: half", &mut out, &mut long);
        f.reset();
        f.push(b"data: new\n\n", &mut out, &mut long);
        assert_eq!(data(&out), ["new"]);
        assert_eq!(f.last_id.as_deref(), Some("3"));
    }
}
