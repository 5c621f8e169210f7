//! `type = "replay"`: replays a CSV, JSONL or plain-text file.
//!
//! ```toml
//! [sources.shop_log]
//! type = "replay"
//! path = "../data/user_log.csv"
//! format = "csv"            # csv | jsonl | lines
//! select = "gender"         # value = that column / field as text
//! rate = 10                 # events per second; omit for full speed
//! timestamp = "arrival"     # or a column / field: Unix ms, RFC 3339, YYYY-MM-DD HH:MM:SS
//! loop = false
//! ```
//!
//! Without `select`, a CSV row becomes a JSON object keyed by the header
//! (`row = "json"`, numbers as numbers) or stays the original text
//! (`row = "text"`); a JSONL line or a text line is passed on as it is.
//! A row whose timestamp or selected field cannot be read goes to the
//! dead-letter output with the line number and the reason.

mod lines;

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use serde::Deserialize;

use crate::event::{Batch, Event, Origin};
use crate::stage::{Action, BoxError, Component, Source, SourceContext, StageTask, run_blocking};
use crate::telemetry::StageMetrics;
use crate::util::now_ms;
use weir_plugin::json::field as json_field;
use weir_plugin::time::parse_timestamp;

use lines::Lines;

/// File layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header row.
    #[default]
    Csv,
    /// One JSON document per line.
    Jsonl,
    /// One event per line of text.
    Lines,
}

/// What a CSV row becomes when no column is selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Row {
    /// A JSON object keyed by the header.
    #[default]
    Json,
    /// The row's original text.
    Text,
}

/// Settings of the `replay` source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// File to replay.
    pub path: PathBuf,
    /// File layout (default `csv`).
    #[serde(default)]
    pub format: Format,
    /// Column (CSV) or field (JSONL) to use as the event value.
    #[serde(default)]
    pub select: Option<String>,
    /// CSV rows without `select`: `json` object (default) or original `text`.
    #[serde(default)]
    pub row: Row,
    /// Events per second; absent means as fast as downstream accepts.
    #[serde(default)]
    pub rate: Option<f64>,
    /// `arrival` (default) or the column/field holding the event time.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Start again from the top at the end of the file.
    #[serde(default, rename = "loop")]
    pub loop_: bool,
}

/// Lines read between two looks at the control channel, at most (also
/// between every two batches, and every line of a paced replay).
const POLL_EVERY: u32 = 256;

/// Splits one CSV line into fields: unquoted fields are zero-copy slices
/// of the line.
pub(crate) fn split_csv(line: &Bytes, out: &mut Vec<Bytes>) -> Result<(), String> {
    let mut fields = Vec::new();
    weir_plugin::csv::split(line, &mut fields)?;
    out.clear();
    out.extend(fields.into_iter().map(|f| match f {
        std::borrow::Cow::Borrowed(slice) => line.slice_ref(slice),
        std::borrow::Cow::Owned(v) => Bytes::from(v),
    }));
    Ok(())
}

fn looks_like_json_number(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, rest) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    if int.is_empty() || (int.len() > 1 && int.starts_with('0')) {
        return false;
    }
    let rest = match rest.strip_prefix('.') {
        Some(r) => {
            let d = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if d == 0 {
                return false;
            }
            &r[d..]
        }
        None => rest,
    };
    match rest.strip_prefix(['e', 'E']) {
        None => rest.is_empty() && (int.len() <= 300 || fits_a_double(s)),
        Some(r) => {
            let r = r.strip_prefix(['+', '-']).unwrap_or(r);
            !r.is_empty() && r.bytes().all(|c| c.is_ascii_digit()) && fits_a_double(s)
        }
    }
}

/// `1e999` (or 400 digits) has a number's shape but no double holds it,
/// and JSON readers refuse it, so it stays text (found by the
/// `replay_rows` fuzz target). Only exponents and very long integer parts
/// are parsed to find out: ordinary numbers skip the cost.
fn fits_a_double(s: &str) -> bool {
    s.parse::<f64>().is_ok_and(f64::is_finite)
}

fn row_to_json(header: &[String], fields: &[Bytes]) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum::<usize>() + 16);
    out.push(b'{');
    for (i, name) in header.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, name).map_err(|e| e.to_string())?;
        out.push(b':');
        let field = fields.get(i).map(|f| &f[..]).unwrap_or(b"");
        let text =
            std::str::from_utf8(field).map_err(|_| format!("column {name:?} is not UTF-8"))?;
        if looks_like_json_number(text) {
            out.extend_from_slice(text.as_bytes());
        } else {
            serde_json::to_writer(&mut out, text).map_err(|e| e.to_string())?;
        }
    }
    out.push(b'}');
    Ok(Bytes::from(out))
}

enum Layout {
    Csv {
        header: Vec<String>,
        select: Option<usize>,
        timestamp: Option<usize>,
        row: Row,
    },
    Jsonl {
        select: Option<String>,
        timestamp: Option<String>,
    },
    Lines,
}

impl ReplayConfig {
    fn open_layout<R: Read + std::io::Seek>(
        &self,
        lines: &mut Lines<R>,
    ) -> Result<Layout, BoxError> {
        let ts_field = self.timestamp.clone().filter(|t| t != "arrival");
        Ok(match self.format {
            Format::Csv => {
                let Some((_, head)) = lines.next_line()? else {
                    return Err(format!(
                        "{} is empty; a CSV file needs a header row",
                        self.path.display()
                    )
                    .into());
                };
                let head = if head.starts_with(b"\xEF\xBB\xBF") {
                    head.slice(3..)
                } else {
                    head
                };
                let mut fields = Vec::new();
                split_csv(&head, &mut fields)
                    .map_err(|e| format!("{}: header: {e}", self.path.display()))?;
                let header: Vec<String> = fields
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).trim().to_owned())
                    .collect();
                let find = |name: &str, what: &str| -> Result<usize, BoxError> {
                    header.iter().position(|h| h == name).ok_or_else(|| {
                        let mut msg = format!(
                            "{what} column `{name}` is not in the header of {}",
                            self.path.display()
                        );
                        if let Some(s) =
                            crate::util::suggest(name, header.iter().map(String::as_str))
                        {
                            msg.push_str(&format!(" (did you mean `{s}`?)"));
                        }
                        msg.push_str(&format!("; columns: {}", header.join(", ")));
                        msg.into()
                    })
                };
                let select = self
                    .select
                    .as_deref()
                    .map(|s| find(s, "select"))
                    .transpose()?;
                let timestamp = ts_field
                    .as_deref()
                    .map(|s| find(s, "timestamp"))
                    .transpose()?;
                Layout::Csv {
                    header,
                    select,
                    timestamp,
                    row: self.row,
                }
            }
            Format::Jsonl => Layout::Jsonl {
                select: self.select.clone(),
                timestamp: ts_field,
            },
            Format::Lines => {
                if self.select.is_some() || ts_field.is_some() {
                    return Err("format = \"lines\" has no fields: `select` and `timestamp` need csv or jsonl".into());
                }
                Layout::Lines
            }
        })
    }
    /// Reads `bytes` as the file this source would replay, `chunk` bytes
    /// at a time, and returns each non-blank row's event or the reason it
    /// would be dead-lettered. The fuzz targets call it; a header or
    /// setting the source refuses at start is the `Err`.
    #[doc(hidden)]
    pub fn read_bytes(
        &self,
        bytes: &[u8],
        chunk: usize,
    ) -> Result<Vec<Result<Event, String>>, BoxError> {
        let mut lines = Lines::with_chunk(std::io::Cursor::new(bytes), chunk);
        let layout = self.open_layout(&mut lines)?;
        let mut fields = Vec::new();
        let mut out = Vec::new();
        while let Some((_, line)) = lines.next_line()? {
            if !line.iter().all(u8::is_ascii_whitespace) {
                out.push(Self::to_event(&layout, line, 0, &mut fields));
            }
        }
        Ok(out)
    }

    fn run(
        self,
        mut lines: Lines,
        layout: Layout,
        mut ctx: SourceContext,
        handle: tokio::runtime::Handle,
    ) -> Result<(), BoxError> {
        let started = Instant::now();
        let mut emitted: u64 = 0;
        let mut fields = Vec::new();
        let batch_size = ctx.batch_size;
        let mut batch: Vec<Event> = Vec::with_capacity(batch_size);
        let mut rejected: Vec<(Event, String)> = Vec::new();
        let mut since_poll = 0;
        let mut arrival = now_ms();
        let position =
            |lines: &Lines| serde_json::json!({ "offset": lines.offset(), "line": lines.line_no });
        loop {
            // Control (checkpoints, stop) is looked at between batches and
            // every POLL_EVERY lines, not per line: polling takes a lock,
            // which at millions of lines a second cost more than reading
            // them. Paced replays poll every line, as a batch may take long
            // to fill.
            since_poll += 1;
            let between_batches = batch.is_empty() && rejected.is_empty();
            let due = between_batches || since_poll >= POLL_EVERY || self.rate.is_some();
            if due {
                since_poll = 0;
            }
            if due && let Some(action) = ctx.control.poll() {
                if self
                    .flush(&ctx, &handle, &mut batch, &mut rejected)
                    .is_err()
                {
                    return Ok(());
                }
                let checkpoint = matches!(action, Action::Checkpoint { .. });
                if ctx.act(&handle, action, || position(&lines)) {
                    if checkpoint {
                        tracing::info!(
                            events = emitted,
                            line = lines.line_no,
                            "replay stopped at a checkpoint"
                        );
                        return Ok(());
                    }
                    break;
                }
            }
            // Pace: wait until the next event is due, flushing what we have.
            if let Some(rate) = self.rate {
                let due = started + Duration::from_secs_f64(emitted as f64 / rate);
                let now = Instant::now();
                if due > now {
                    if !batch.is_empty() || !rejected.is_empty() {
                        if self
                            .flush(&ctx, &handle, &mut batch, &mut rejected)
                            .is_err()
                        {
                            return Ok(());
                        }
                        continue;
                    }
                    std::thread::sleep((due - now).min(Duration::from_millis(50)));
                    continue;
                }
            }
            if batch.is_empty() {
                arrival = now_ms();
            }
            let Some((line_no, line)) = lines.next_line()? else {
                if self.loop_ {
                    let file = File::open(&self.path)?;
                    lines = Lines::new(file);
                    if matches!(layout, Layout::Csv { .. }) {
                        lines.next_line()?;
                    }
                    continue;
                }
                if self.flush(&ctx, &handle, &mut batch, &mut rejected).is_ok() {
                    ctx.finish(&handle, position(&lines));
                }
                tracing::info!(events = emitted, "replay finished");
                return Ok(());
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            emitted += 1;
            match Self::parse(&layout, &line, arrival, &mut fields) {
                Ok((ts, value)) => {
                    let mut e = Event::new(value.unwrap_or(line), ts);
                    e.origin = Some(Origin::Line(line_no));
                    batch.push(e)
                }
                Err(reason) => {
                    let mut e = Event::new(line, arrival);
                    e.origin = Some(Origin::Line(line_no));
                    rejected.push((e, reason));
                }
            }
            // Rejected lines leave in batches too: a file of nothing but
            // bad lines still reaches the dead-letter output as it is read.
            if (batch.len() >= batch_size || rejected.len() >= batch_size)
                && self
                    .flush(&ctx, &handle, &mut batch, &mut rejected)
                    .is_err()
            {
                return Ok(());
            }
        }
        let _ = self.flush(&ctx, &handle, &mut batch, &mut rejected);
        tracing::info!(events = emitted, "replay stopped");
        Ok(())
    }

    fn flush(
        &self,
        ctx: &SourceContext,
        handle: &tokio::runtime::Handle,
        batch: &mut Vec<Event>,
        rejected: &mut Vec<(Event, String)>,
    ) -> Result<(), crate::stage::Closed> {
        if !rejected.is_empty() {
            ctx.dead_letters.blocking_send(
                handle,
                std::mem::take(rejected),
                crate::event::Acks::none(),
            );
        }
        if batch.is_empty() {
            return Ok(());
        }
        let events = crate::event::take_staged(batch);
        StageMetrics::add(&ctx.metrics.events_in, events.len() as u64);
        ctx.out.blocking_send(handle, Batch::new(events))
    }

    /// The event a line makes, or why it makes none.
    fn to_event(
        layout: &Layout,
        line: Bytes,
        arrival: i64,
        fields: &mut Vec<Bytes>,
    ) -> Result<Event, String> {
        let (ts, value) = Self::parse(layout, &line, arrival, fields)?;
        Ok(Event::new(value.unwrap_or(line), ts))
    }

    /// A line's event time and, when it is not the whole line, its value.
    /// The line is borrowed: the hot loop moves it into its event rather
    /// than cloning it (a clone and a drop per line are two atomic
    /// operations on the chunk's shared count).
    fn parse(
        layout: &Layout,
        line: &Bytes,
        arrival: i64,
        fields: &mut Vec<Bytes>,
    ) -> Result<(i64, Option<Bytes>), String> {
        match layout {
            Layout::Lines => Ok((arrival, None)),
            Layout::Csv {
                header,
                select,
                timestamp,
                row,
            } => {
                split_csv(line, fields)?;
                let get = |i: usize| -> Result<&Bytes, String> {
                    fields.get(i).ok_or_else(|| {
                        format!(
                            "row has {} columns, column `{}` is missing",
                            fields.len(),
                            header[i]
                        )
                    })
                };
                let ts = match timestamp {
                    Some(i) => {
                        let text = String::from_utf8_lossy(get(*i)?);
                        parse_timestamp(&text)
                            .map_err(|e| format!("column `{}`: {e}", header[*i]))?
                    }
                    None => arrival,
                };
                let value = match (select, row) {
                    (Some(i), _) => Some(get(*i)?.clone()),
                    (None, Row::Text) => None,
                    (None, Row::Json) => Some(row_to_json(header, fields)?),
                };
                Ok((ts, value))
            }
            Layout::Jsonl { select, timestamp } => {
                let ts = match timestamp {
                    Some(f) => json_field(line, f)?
                        .ok_or_else(|| format!("no field {f:?}"))?
                        .as_timestamp(Default::default())
                        .map_err(|e| format!("field `{f}`: {e}"))?,
                    None => arrival,
                };
                let value = match select {
                    Some(f) => Some(Bytes::from(
                        json_field(line, f)?
                            .ok_or_else(|| format!("no field {f:?}"))?
                            .as_text()
                            .into_owned()
                            .into_bytes(),
                    )),
                    None => None,
                };
                Ok((ts, value))
            }
        }
    }
}

impl Source for ReplayConfig {
    fn build(&self, ctx: SourceContext) -> Result<StageTask, BoxError> {
        if let Some(rate) = self.rate
            && !(rate > 0.0 && rate.is_finite())
        {
            return Err(
                format!("rate must be a positive number of events per second, got {rate}").into(),
            );
        }
        let file = File::open(&self.path)
            .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
        let mut lines = Lines::new(file);
        let layout = self.open_layout(&mut lines)?;
        if let Some(resume) = &ctx.control.resume {
            let offset = resume["offset"].as_u64().unwrap_or(0);
            let line = resume["line"].as_u64().unwrap_or(0);
            if offset > 0 {
                lines.seek(offset, line).map_err(|e| {
                    format!(
                        "cannot resume {} at byte {offset}: {e}",
                        self.path.display()
                    )
                })?;
                tracing::info!(line, offset, "replay resumes from the checkpoint");
            }
        }
        let config = self.clone();
        let handle = tokio::runtime::Handle::current();
        Ok(
            async move { run_blocking(move || config.run(lines, layout, ctx, handle)).await? }
                .boxed(),
        )
    }
}

impl Component for ReplayConfig {
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.path]
    }

    fn resumes_where_stopped(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::lines::CHUNK;
    use super::*;

    #[test]
    fn csv_splitting() {
        let mut f = Vec::new();
        split_csv(&Bytes::from_static(b"1,\"a,\"\"b\"\"\",,x"), &mut f).unwrap();
        assert_eq!(
            f,
            vec![
                Bytes::from_static(b"1"),
                Bytes::from_static(b"a,\"b\""),
                Bytes::new(),
                Bytes::from_static(b"x")
            ]
        );
        assert!(split_csv(&Bytes::from_static(b"\"open"), &mut f).is_err());
    }

    #[test]
    fn json_numbers() {
        assert!(!looks_like_json_number("10.70000e00000000000777"));
        assert!(!looks_like_json_number("-1e309"));
        assert!(looks_like_json_number("1e308"));
        assert!(!looks_like_json_number(&"9".repeat(400)));
        assert!(looks_like_json_number(&"9".repeat(300)));
        for ok in [
            "0",
            "-1",
            "23.09",
            "1e5",
            "0.0047478887347541295",
            "-0.5E-3",
        ] {
            assert!(looks_like_json_number(ok), "{ok}");
        }
        for bad in [
            "",
            "01",
            "1.",
            ".5",
            "1e",
            "NaN",
            "0x10",
            "1,5",
            "2015-02-04",
        ] {
            assert!(!looks_like_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn rows_become_objects() {
        let header = vec!["id".to_owned(), "province".to_owned(), "t".to_owned()];
        let v = row_to_json(
            &header,
            &[
                Bytes::from_static(b"7"),
                Bytes::from("广西"),
                Bytes::from_static(b""),
            ],
        )
        .unwrap();
        assert_eq!(
            &v[..],
            "{\"id\":7,\"province\":\"广西\",\"t\":\"\"}".as_bytes()
        );
    }

    #[test]
    fn lines_handle_crlf_and_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.txt");
        let mut text = String::new();
        for i in 0..300_000 {
            text.push_str(&format!("line {i}\r\n"));
        }
        text.push_str("last");
        std::fs::write(&p, &text).unwrap();
        let mut l = Lines::new(File::open(&p).unwrap());
        let mut n = 0;
        while let Some((no, line)) = l.next_line().unwrap() {
            n += 1;
            assert_eq!(no, n);
            if n <= 300_000 {
                assert_eq!(line, format!("line {}", n - 1));
            } else {
                assert_eq!(line, "last");
            }
        }
        assert_eq!(n, 300_001);
    }

    #[test]
    fn any_chunk_size_reads_the_same_rows() {
        let cfg = ReplayConfig {
            path: "mem.csv".into(),
            format: Format::Csv,
            select: None,
            row: Row::Json,
            rate: None,
            timestamp: Some("ts".into()),
            loop_: false,
        };
        let text = b"\xEF\xBB\xBFts,name\r\n1000,\"a,\"\"b\"\"\"\r\n\r\nbad,c\n2000,d";
        let read = |chunk| -> Vec<Result<(i64, Vec<u8>), String>> {
            cfg.read_bytes(text, chunk)
                .unwrap()
                .into_iter()
                .map(|r| r.map(|e| (e.timestamp_ms, e.value.to_vec())))
                .collect()
        };
        let whole = read(CHUNK);
        assert_eq!(whole.len(), 3);
        assert_eq!(
            whole[0],
            Ok((1000, br#"{"ts":1000,"name":"a,\"b\""}"#.to_vec()))
        );
        assert!(whole[1].as_ref().unwrap_err().contains("column `ts`"));
        for chunk in 1..8 {
            assert_eq!(read(chunk), whole, "chunk {chunk}");
        }
    }
}
