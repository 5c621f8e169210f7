//! Flat batches in and out of a plugin.

/// A header carried by one event of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Index of the event in its batch.
    pub event: u32,
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: Vec<u8>,
}

/// A record refused by the plugin, with the reason operators will read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the refused event in the input batch.
    pub index: u32,
    /// Why it was refused.
    pub reason: String,
}

/// Events laid out flat, as they cross the component boundary: the values
/// one after the other in one buffer, event `i`'s ending at
/// `value_ends[i]`, and the keys likewise (an empty key is no key).
#[derive(Debug, Clone, Default)]
pub(crate) struct Events {
    pub(crate) timestamps: Vec<i64>,
    pub(crate) values: Vec<u8>,
    pub(crate) value_ends: Vec<u32>,
    pub(crate) keys: Vec<u8>,
    pub(crate) key_ends: Vec<u32>,
    pub(crate) headers: Vec<Header>,
}

impl Events {
    /// Ends the event whose value was just appended to `values`.
    fn end(&mut self, timestamp_ms: i64, key: Option<&[u8]>) {
        self.timestamps.push(timestamp_ms);
        self.value_ends.push(self.values.len() as u32);
        if let Some(k) = key {
            self.keys.extend_from_slice(k);
        }
        self.key_ends.push(self.keys.len() as u32);
    }

    fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Checks that the parts agree, so that reading any event is in
    /// bounds: one value end and one key end per timestamp, ends never
    /// going back and none past its buffer.
    pub(crate) fn check(&self) -> Result<(), String> {
        let n = self.timestamps.len();
        for (what, ends, data) in [
            ("value", &self.value_ends, &self.values),
            ("key", &self.key_ends, &self.keys),
        ] {
            if ends.len() != n {
                return Err(format!("{n} timestamps but {} {what} ends", ends.len()));
            }
            // The common case in one branch-free pass (no early exit, so it
            // vectorises): ends never go back and the last is in bounds.
            let ordered = ends.windows(2).fold(true, |ok, w| ok & (w[0] <= w[1]));
            if ordered && ends.last().is_none_or(|&end| end as usize <= data.len()) {
                continue;
            }
            let mut last = 0;
            for (i, &end) in ends.iter().enumerate() {
                if end < last || end as usize > data.len() {
                    return Err(format!(
                        "event {i}'s {what} ends at {end}, after {last}, in {} bytes",
                        data.len()
                    ));
                }
                last = end;
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn value(&self, i: usize) -> &[u8] {
        slice(&self.values, &self.value_ends, i)
    }

    #[inline(always)]
    fn key(&self, i: usize) -> Option<&[u8]> {
        let k = slice(&self.keys, &self.key_ends, i);
        if k.is_empty() { None } else { Some(k) }
    }
}

/// A batch of input events, laid out flat exactly as the host sent it.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(crate) base_seq: u64,
    pub(crate) events: Events,
}

/// One event of a [`Batch`], borrowing its bytes from the batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Event<'a> {
    /// Position in the batch (use it with [`Output::reject`]).
    pub index: u32,
    /// Host-assigned sequence number, increasing across batches.
    pub seq: u64,
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The key, if the event has one.
    pub key: Option<&'a [u8]>,
    /// The value bytes.
    pub value: &'a [u8],
    headers: &'a [Header],
}

impl<'a> Event<'a> {
    /// The value as UTF-8 text; an error (to reject the event with) when it
    /// is not.
    pub fn text(&self) -> Result<&'a str, String> {
        std::str::from_utf8(self.value).map_err(|e| format!("value is not UTF-8: {e}"))
    }

    /// The value of the first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.event == self.index && h.name == name)
            .map(|h| h.value.as_slice())
    }

    /// Every header of this event.
    pub fn headers(&self) -> impl Iterator<Item = &'a Header> + 'a {
        let index = self.index;
        self.headers.iter().filter(move |h| h.event == index)
    }
}

#[inline(always)]
fn slice<'a>(data: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &data[start..ends[i] as usize]
}

impl Batch {
    /// Builds a batch of unkeyed events from `(timestamp_ms, value)` pairs,
    /// for tests and benchmarks.
    pub fn from_values<V: AsRef<[u8]>>(base_seq: u64, events: &[(i64, V)]) -> Self {
        let mut b = Batch {
            base_seq,
            ..Batch::default()
        };
        for (ts, v) in events {
            b.push(*ts, None, v.as_ref());
        }
        b
    }

    /// Builds a batch from its flat parts as they cross the component
    /// boundary, refusing parts that disagree (the WebAssembly adapter and
    /// the fuzz targets use it).
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        base_seq: u64,
        timestamps: Vec<i64>,
        values: Vec<u8>,
        value_ends: Vec<u32>,
        keys: Vec<u8>,
        key_ends: Vec<u32>,
        headers: Vec<Header>,
    ) -> Result<Self, String> {
        let events = Events {
            timestamps,
            values,
            value_ends,
            keys,
            key_ends,
            headers,
        };
        events.check()?;
        Ok(Batch { base_seq, events })
    }

    /// Appends an event (for tests, benchmarks and native hosts).
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: &[u8]) {
        self.events.values.extend_from_slice(value);
        self.events.end(timestamp_ms, key);
    }

    /// Attaches a header to the event at `index` (for tests).
    pub fn push_header(&mut self, index: u32, name: &str, value: &[u8]) {
        self.events.headers.push(Header {
            event: index,
            name: name.to_owned(),
            value: value.to_vec(),
        });
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sequence number of the first event.
    pub fn base_seq(&self) -> u64 {
        self.base_seq
    }

    /// The event at `index`. Panics when out of range.
    #[inline(always)]
    pub fn get(&self, index: usize) -> Event<'_> {
        Event {
            index: index as u32,
            seq: self.base_seq + index as u64,
            timestamp_ms: self.events.timestamps[index],
            key: self.events.key(index),
            value: self.events.value(index),
            headers: &self.events.headers,
        }
    }

    /// Iterates over the events in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Event<'_>> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

/// Events a plugin emits and records it refuses, written into flat buffers.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub(crate) events: Events,
    pub(crate) rejections: Vec<Rejection>,
}

impl Output {
    /// Emits an unkeyed event.
    pub fn emit(&mut self, timestamp_ms: i64, value: &[u8]) {
        self.emit_keyed(timestamp_ms, None, value);
    }

    /// Emits an event with an optional key.
    pub fn emit_keyed(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: &[u8]) {
        self.emit_with_key(timestamp_ms, key, |buf| buf.extend_from_slice(value));
    }

    /// Emits an event whose value `write` appends straight into the output
    /// buffer, avoiding a temporary allocation.
    pub fn emit_with(&mut self, timestamp_ms: i64, write: impl FnOnce(&mut Vec<u8>)) {
        self.emit_with_key(timestamp_ms, None, write);
    }

    /// Like [`Output::emit_with`], with a key.
    pub fn emit_with_key(
        &mut self,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        write(&mut self.events.values);
        self.events.end(timestamp_ms, key);
    }

    /// Lets `write` emit at most one event for `event`, with its timestamp
    /// and key: what `write` wrote is kept when it returns `Ok` (unless it
    /// skipped the event), dropped when it returns `Err`, and the event is
    /// then refused with that reason.
    pub(crate) fn emit_one(
        &mut self,
        event: &Event<'_>,
        write: impl FnOnce(&mut Emit<'_>) -> Result<(), String>,
    ) {
        let events = &mut self.events;
        let (values, headers) = (events.values.len(), events.headers.len());
        let mut emit = Emit {
            value: &mut events.values,
            headers: &mut events.headers,
            index: events.timestamps.len() as u32,
            skip: false,
        };
        match write(&mut emit) {
            Ok(()) if !emit.skip => events.end(event.timestamp_ms, event.key),
            result => {
                events.values.truncate(values);
                events.headers.truncate(headers);
                if let Err(reason) = result {
                    self.reject(event.index, reason);
                }
            }
        }
    }

    /// Adds a header to the most recently emitted event. Panics if nothing
    /// has been emitted yet.
    pub fn header(&mut self, name: &str, value: &[u8]) {
        let event = self
            .len()
            .checked_sub(1)
            .expect("Output::header called before any emit") as u32;
        self.events.headers.push(Header {
            event,
            name: name.to_owned(),
            value: value.to_vec(),
        });
    }

    /// Refuses input record `index` with a reason; the host sends the
    /// original record to the stage's dead-letter output.
    pub fn reject(&mut self, index: u32, reason: impl Into<String>) {
        self.rejections.push(Rejection {
            index,
            reason: reason.into(),
        });
    }

    /// Number of events emitted so far.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether nothing has been emitted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value of emitted event `i`.
    pub fn value(&self, i: usize) -> &[u8] {
        self.events.value(i)
    }

    /// Key of emitted event `i`, if any.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.events.key(i)
    }

    /// Timestamp of emitted event `i`.
    pub fn timestamp(&self, i: usize) -> i64 {
        self.events.timestamps[i]
    }

    /// Headers of all emitted events.
    pub fn headers(&self) -> &[Header] {
        &self.events.headers
    }

    /// Records refused so far.
    pub fn rejections(&self) -> &[Rejection] {
        &self.rejections
    }

    /// Emitted values as UTF-8 strings (lossy), for tests.
    pub fn values_lossy(&self) -> Vec<String> {
        (0..self.len())
            .map(|i| String::from_utf8_lossy(self.value(i)).into_owned())
            .collect()
    }

    /// Empties the output, keeping its buffers' capacity.
    pub fn clear(&mut self) {
        let e = &mut self.events;
        e.timestamps.clear();
        e.values.clear();
        e.value_ends.clear();
        e.keys.clear();
        e.key_ends.clear();
        e.headers.clear();
        self.rejections.clear();
    }
}

/// The one event a [`Map`](crate::Map) writes for an input event. It keeps
/// the input's timestamp and key; write its value (`Emit` is an
/// [`std::io::Write`], and [`Emit::json`] writes JSON) and add headers.
pub struct Emit<'o> {
    value: &'o mut Vec<u8>,
    headers: &'o mut Vec<Header>,
    /// Index the event gets in the output.
    index: u32,
    skip: bool,
}

impl Emit<'_> {
    /// Appends bytes to the value.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.value.extend_from_slice(bytes);
    }

    /// The buffer the value is appended to, for writers that want a `Vec`.
    /// It holds the values emitted before this one: append only.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        self.value
    }

    /// Appends `value` as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<(), String> {
        serde_json::to_writer(&mut *self.value, value).map_err(|e| e.to_string())
    }

    /// Adds a header to the event.
    pub fn header(&mut self, name: &str, value: &[u8]) {
        self.headers.push(Header {
            event: self.index,
            name: name.to_owned(),
            value: value.to_vec(),
        });
    }

    /// Emits nothing for this input event (a filter dropping it).
    pub fn skip(&mut self) {
        self.skip = true;
    }

    /// Writes `event` unchanged: its value and headers.
    pub fn copy(&mut self, event: &Event<'_>) {
        self.extend_from_slice(event.value);
        for h in event.headers() {
            self.header(&h.name, &h.value);
        }
    }
}

impl std::io::Write for Emit<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.value.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_that_disagree_are_refused() {
        let ok = Batch::from_parts(
            0,
            vec![1, 2],
            b"abc".to_vec(),
            vec![1, 3],
            vec![],
            vec![0, 0],
            vec![],
        );
        assert_eq!(ok.unwrap().get(1).value, b"bc");
        let cases = [
            (vec![1], vec![0, 0], "2 timestamps but 1 value ends"),
            (
                vec![2, 1],
                vec![0, 0],
                "event 1's value ends at 1, after 2, in 3 bytes",
            ),
            (
                vec![1, 4],
                vec![0, 0],
                "event 1's value ends at 4, after 1, in 3 bytes",
            ),
            (vec![1, 3], vec![0], "2 timestamps but 1 key ends"),
            (
                vec![1, 3],
                vec![0, 1],
                "event 1's key ends at 1, after 0, in 0 bytes",
            ),
        ];
        for (value_ends, key_ends, why) in cases {
            let err = Batch::from_parts(
                0,
                vec![1, 2],
                b"abc".to_vec(),
                value_ends,
                vec![],
                key_ends,
                vec![],
            )
            .unwrap_err();
            assert_eq!(err, why);
        }
    }

    #[test]
    fn batch_views_borrow_flat_buffers() {
        let mut b = Batch::from_values(10, &[(1, b"a".as_slice()), (2, b"bc")]);
        b.push(3, Some(b"k"), b"");
        b.push_header(1, "h", b"v");
        assert_eq!(b.len(), 3);
        let e = b.get(1);
        assert_eq!(
            (e.seq, e.timestamp_ms, e.value, e.key),
            (11, 2, &b"bc"[..], None)
        );
        assert_eq!(e.header("h"), Some(&b"v"[..]));
        assert_eq!(b.get(0).header("h"), None);
        let e = b.get(2);
        assert_eq!((e.value, e.key), (&b""[..], Some(&b"k"[..])));
    }

    #[test]
    fn output_collects_events_headers_and_rejections() {
        let mut o = Output::default();
        o.emit(5, b"x");
        o.emit_with_key(6, Some(b"key"), |b| b.extend_from_slice(b"yz"));
        o.header("n", b"1");
        o.reject(3, "bad");
        assert_eq!(o.values_lossy(), ["x", "yz"]);
        assert_eq!(o.key(1), Some(&b"key"[..]));
        assert_eq!(o.key(0), None);
        assert_eq!(o.headers()[0].event, 1);
        assert_eq!(o.rejections()[0].reason, "bad");
        o.clear();
        assert!(o.is_empty());
    }

    #[test]
    fn emit_one_keeps_or_drops_what_was_written() {
        let mut b = Batch::from_values(0, &[(1, b"a".as_slice())]);
        b.push(2, Some(b"k"), b"b");
        b.push(3, None, b"c");
        b.push_header(1, "h", b"v");
        let mut o = Output::default();
        o.emit_one(&b.get(0), |e| {
            e.extend_from_slice(b"half");
            e.header("x", b"y");
            Err("no".into())
        });
        o.emit_one(&b.get(1), |e| {
            e.copy(&b.get(1));
            Ok(())
        });
        o.emit_one(&b.get(2), |e| {
            e.extend_from_slice(b"gone");
            e.skip();
            Ok(())
        });
        assert_eq!(o.values_lossy(), ["b"]);
        assert_eq!((o.timestamp(0), o.key(0)), (2, Some(&b"k"[..])));
        assert_eq!(o.headers().len(), 1);
        assert_eq!(
            (o.headers()[0].event, o.headers()[0].name.as_str()),
            (0, "h")
        );
        assert_eq!(o.rejections()[0].index, 0);
        assert!(b.get(0).text().is_ok());
        assert!(
            Batch::from_values(0, &[(0, [0xffu8])])
                .get(0)
                .text()
                .unwrap_err()
                .starts_with("value is not UTF-8")
        );
    }
}
