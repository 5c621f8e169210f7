//! Events to the contract's flat batch layout and back.
//!
//! The WIT contract passes a batch as one byte list of all values with end
//! offsets (and the same for keys), a list of timestamps and a sparse list
//! of headers, which costs one copy per direction instead of an allocation
//! per event. [`PluginInput`] is a batch laid out that way (kept for replay
//! after a trap); [`PluginOutput`] is what a call returned, turned back into
//! events.

use bytes::Bytes;

use super::bindings::{PluginBatch, PluginEvents, PluginHeader, PluginResult};
use crate::event::Event;

/// A batch of events laid out for a plugin call, numbered from `base_seq`.
#[derive(Debug, Clone)]
pub struct PluginInput(pub(super) PluginBatch);

impl PluginInput {
    /// Lays `events` out flat; the first gets sequence number `base_seq`.
    pub fn from_events(base_seq: u64, events: &[Event]) -> Self {
        PluginInput(to_plugin_batch(base_seq, events))
    }
}

/// A record the plugin refused, by its index in the input batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the refused event in the batch.
    pub index: u32,
    /// The plugin's reason.
    pub reason: String,
}

/// What a `process`, `tick` or `flush` call returned.
#[derive(Debug)]
pub struct PluginOutput {
    /// The events to send on, or why the plugin's batch was malformed.
    pub events: Result<Vec<Event>, String>,
    /// Input records refused, with the reason.
    pub rejections: Vec<Rejection>,
    /// The lowest input sequence number the plugin still holds in its
    /// state; `None` when it holds nothing.
    pub hold_from: Option<u64>,
}

impl From<PluginResult> for PluginOutput {
    fn from(r: PluginResult) -> Self {
        PluginOutput {
            events: from_plugin_events(r.events),
            rejections: r
                .rejections
                .into_iter()
                .map(|x| Rejection {
                    index: x.index,
                    reason: x.reason,
                })
                .collect(),
            hold_from: r.hold_from,
        }
    }
}

/// Lays a batch out flat for the plugin.
fn to_plugin_batch(base_seq: u64, events: &[Event]) -> PluginBatch {
    let total: usize = events.iter().map(|e| e.value.len()).sum();
    let key_total: usize = events
        .iter()
        .map(|e| e.key.as_ref().map_or(0, |k| k.len()))
        .sum();
    let mut values = Vec::with_capacity(total);
    let mut value_ends = Vec::with_capacity(events.len());
    let mut keys = Vec::with_capacity(key_total);
    let mut key_ends = Vec::with_capacity(events.len());
    let mut timestamps = Vec::with_capacity(events.len());
    let mut headers = Vec::new();
    for (i, e) in events.iter().enumerate() {
        values.extend_from_slice(&e.value);
        value_ends.push(values.len() as u32);
        if let Some(k) = &e.key {
            keys.extend_from_slice(k);
        }
        key_ends.push(keys.len() as u32);
        timestamps.push(e.timestamp_ms);
        for (name, value) in &e.headers {
            headers.push(PluginHeader {
                event: i as u32,
                name: name.clone(),
                value: value.to_vec(),
            });
        }
    }
    PluginBatch {
        base_seq,
        events: PluginEvents {
            timestamps,
            values,
            value_ends,
            keys,
            key_ends,
            headers,
        },
    }
}

/// Turns a plugin's flat output back into events, checking its layout.
fn from_plugin_events(ev: PluginEvents) -> Result<Vec<Event>, String> {
    let n = ev.timestamps.len();
    if ev.value_ends.len() != n || ev.key_ends.len() != n {
        return Err(format!(
            "{n} timestamps but {} value ends and {} key ends",
            ev.value_ends.len(),
            ev.key_ends.len()
        ));
    }
    let values = Bytes::from(ev.values);
    let keys = Bytes::from(ev.keys);
    let mut events = Vec::with_capacity(n);
    let (mut v0, mut k0) = (0usize, 0usize);
    for i in 0..n {
        let (v1, k1) = (ev.value_ends[i] as usize, ev.key_ends[i] as usize);
        if v1 < v0 || v1 > values.len() || k1 < k0 || k1 > keys.len() {
            return Err(format!("event {i} has offsets out of range"));
        }
        events.push(Event {
            key: (k1 > k0).then(|| keys.slice(k0..k1)),
            value: values.slice(v0..v1),
            timestamp_ms: ev.timestamps[i],
            headers: Vec::new(),
            origin: None,
        });
        (v0, k0) = (v1, k1);
    }
    for h in ev.headers {
        let e = events
            .get_mut(h.event as usize)
            .ok_or_else(|| format!("header {:?} names event {} of {n}", h.name, h.event))?;
        e.headers.push((h.name, Bytes::from(h.value)));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_layout_round_trips() {
        let mut a = Event::new("abc", 1);
        a.key = Some(Bytes::from_static(b"k"));
        a.headers.push(("h".into(), Bytes::from_static(b"v")));
        let b = Event::new("", 2);
        let c = Event::new("xy", 3);
        let pb = to_plugin_batch(5, &[a.clone(), b.clone(), c.clone()]);
        assert_eq!(pb.events.value_ends, vec![3, 3, 5]);
        let back = from_plugin_events(pb.events).unwrap();
        assert_eq!(back, vec![a, b, c]);
    }

    #[test]
    fn malformed_plugin_output_is_refused() {
        let bad = PluginEvents {
            timestamps: vec![1],
            values: vec![1, 2],
            value_ends: vec![5],
            keys: vec![],
            key_ends: vec![0],
            headers: vec![],
        };
        assert!(
            from_plugin_events(bad)
                .unwrap_err()
                .contains("out of range")
        );
    }
}
