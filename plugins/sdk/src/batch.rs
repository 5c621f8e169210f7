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

/// A batch of input events, laid out flat exactly as the host sent it.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub(crate) base_seq: u64,
    pub(crate) timestamps: Vec<i64>,
    pub(crate) values: Vec<u8>,
    pub(crate) value_ends: Vec<u32>,
    pub(crate) keys: Vec<u8>,
    pub(crate) key_ends: Vec<u32>,
    pub(crate) headers: Vec<Header>,
}

/// One event of a [`Batch`], borrowing its bytes from the batch.
#[derive(Debug, Clone, Copy)]
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

fn slice<'a>(data: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &data[start..ends[i] as usize]
}

impl Batch {
    /// Builds a batch from its flat parts (used by the generated bindings).
    #[doc(hidden)]
    pub fn from_parts(
        base_seq: u64,
        timestamps: Vec<i64>,
        values: Vec<u8>,
        value_ends: Vec<u32>,
        keys: Vec<u8>,
        key_ends: Vec<u32>,
        headers: Vec<Header>,
    ) -> Self {
        Batch {
            base_seq,
            timestamps,
            values,
            value_ends,
            keys,
            key_ends,
            headers,
        }
    }

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

    /// Appends an event (for tests, benchmarks and native hosts).
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: &[u8]) {
        self.timestamps.push(timestamp_ms);
        self.values.extend_from_slice(value);
        self.value_ends.push(self.values.len() as u32);
        if let Some(k) = key {
            self.keys.extend_from_slice(k);
        }
        self.key_ends.push(self.keys.len() as u32);
    }

    /// Attaches a header to the event at `index` (for tests).
    pub fn push_header(&mut self, index: u32, name: &str, value: &[u8]) {
        self.headers.push(Header {
            event: index,
            name: name.to_owned(),
            value: value.to_vec(),
        });
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// Whether the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Sequence number of the first event.
    pub fn base_seq(&self) -> u64 {
        self.base_seq
    }

    /// The event at `index`. Panics when out of range.
    pub fn get(&self, index: usize) -> Event<'_> {
        let key = slice(&self.keys, &self.key_ends, index);
        Event {
            index: index as u32,
            seq: self.base_seq + index as u64,
            timestamp_ms: self.timestamps[index],
            key: if key.is_empty() { None } else { Some(key) },
            value: slice(&self.values, &self.value_ends, index),
            headers: &self.headers,
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
    pub(crate) timestamps: Vec<i64>,
    pub(crate) values: Vec<u8>,
    pub(crate) value_ends: Vec<u32>,
    pub(crate) keys: Vec<u8>,
    pub(crate) key_ends: Vec<u32>,
    pub(crate) headers: Vec<Header>,
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
        self.timestamps.push(timestamp_ms);
        write(&mut self.values);
        self.value_ends.push(self.values.len() as u32);
        if let Some(k) = key {
            self.keys.extend_from_slice(k);
        }
        self.key_ends.push(self.keys.len() as u32);
    }

    /// Adds a header to the most recently emitted event. Panics if nothing
    /// has been emitted yet.
    pub fn header(&mut self, name: &str, value: &[u8]) {
        let event = self
            .timestamps
            .len()
            .checked_sub(1)
            .expect("Output::header called before any emit") as u32;
        self.headers.push(Header {
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
        self.timestamps.len()
    }

    /// Whether nothing has been emitted.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// Value of emitted event `i`.
    pub fn value(&self, i: usize) -> &[u8] {
        slice(&self.values, &self.value_ends, i)
    }

    /// Key of emitted event `i`, if any.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        let k = slice(&self.keys, &self.key_ends, i);
        if k.is_empty() { None } else { Some(k) }
    }

    /// Timestamp of emitted event `i`.
    pub fn timestamp(&self, i: usize) -> i64 {
        self.timestamps[i]
    }

    /// Headers of all emitted events.
    pub fn headers(&self) -> &[Header] {
        &self.headers
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
        self.timestamps.clear();
        self.values.clear();
        self.value_ends.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.headers.clear();
        self.rejections.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
