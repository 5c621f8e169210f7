//! Taps: a sampled copy of what a stage emits, for `weir tap` and
//! `/tap/STAGE`. Best-effort and bounded: a tap sends at most
//! [`TAP_EVENTS_PER_SECOND`] events a second, a slow viewer misses events
//! rather than slowing the pipeline, and a stage pays for its tap only while
//! someone watches it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::event::Event;

/// At most this many events a second go to a stage's tap viewers.
pub const TAP_EVENTS_PER_SECOND: u32 = 100;

/// Values longer than this are cut short in taps.
pub const TAP_VALUE_BYTES: usize = 4096;

/// One event as a tap shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TapEvent {
    /// Event time, Unix ms.
    pub timestamp: i64,
    /// The key, as text (lossy) when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The value: text, or base64 when it is not UTF-8 (see `base64`).
    pub value: String,
    /// Whether `value` is base64.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub base64: bool,
    /// The value's full size, when it was cut to [`TAP_VALUE_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated_from: Option<usize>,
    /// Headers, as text (lossy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

impl TapEvent {
    /// How `e` appears in a tap.
    pub fn of(e: &Event) -> Self {
        let cut = &e.value[..e.value.len().min(TAP_VALUE_BYTES)];
        let (value, base64) = match std::str::from_utf8(cut) {
            Ok(s) => (s.to_owned(), false),
            // Text cut inside a character stays text.
            Err(err) if err.error_len().is_none() => (
                String::from_utf8_lossy(&cut[..err.valid_up_to()]).into_owned(),
                false,
            ),
            Err(_) => (base64::engine::general_purpose::STANDARD.encode(cut), true),
        };
        TapEvent {
            timestamp: e.timestamp_ms,
            key: e
                .key
                .as_ref()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            value,
            base64,
            truncated_from: (e.value.len() > TAP_VALUE_BYTES).then_some(e.value.len()),
            headers: e
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
        }
    }
}

/// Where a stage's events are offered to tap viewers.
#[derive(Debug)]
pub struct TapPoint {
    tx: broadcast::Sender<Arc<str>>,
    /// (start of the current second, events sent in it).
    budget: Mutex<(Instant, u32)>,
}

impl Default for TapPoint {
    fn default() -> Self {
        TapPoint {
            tx: broadcast::channel(1024).0,
            budget: Mutex::new((Instant::now(), 0)),
        }
    }
}

impl TapPoint {
    /// Offers a batch's events; a no-op unless someone is watching.
    pub fn offer(&self, events: &[Event]) {
        if self.tx.receiver_count() == 0 || events.is_empty() {
            return;
        }
        let allowed = {
            let mut b = self.budget.lock().expect("tap budget lock");
            if b.0.elapsed().as_secs() >= 1 {
                *b = (Instant::now(), 0);
            }
            let n = (TAP_EVENTS_PER_SECOND - b.1.min(TAP_EVENTS_PER_SECOND)) as usize;
            let n = n.min(events.len());
            b.1 += n as u32;
            n
        };
        if allowed == 0 {
            return;
        }
        // Spread the sample over the batch.
        let step = events.len() / allowed;
        for e in events.iter().step_by(step.max(1)).take(allowed) {
            let json = serde_json::to_string(&TapEvent::of(e)).expect("tap events serialise");
            let _ = self.tx.send(json.into());
        }
    }

    /// A new viewer.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_cost_nothing_unwatched_and_are_capped_per_second() {
        let t = TapPoint::default();
        let events: Vec<Event> = (0..1000).map(|i| Event::new(format!("{i}"), i)).collect();
        t.offer(&events); // nobody watching
        let mut rx = t.subscribe();
        t.offer(&events);
        t.offer(&events);
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(serde_json::from_str::<TapEvent>(&e).unwrap());
        }
        assert_eq!(got.len(), TAP_EVENTS_PER_SECOND as usize);
        assert_eq!(got[0].value, "0");
        assert_eq!(got[1].value, "10", "sampled across the batch");
    }

    #[test]
    fn binary_and_long_values_are_encoded_and_cut() {
        let e = Event::new(vec![0xffu8; TAP_VALUE_BYTES + 10], 5);
        let t = TapEvent::of(&e);
        assert!(t.base64);
        assert_eq!(t.truncated_from, Some(TAP_VALUE_BYTES + 10));
        // Long text cut inside a character stays text.
        let e = Event::new("é".repeat(TAP_VALUE_BYTES), 5);
        let t = TapEvent::of(&e);
        assert!(!t.base64);
        assert_eq!(t.value.len(), TAP_VALUE_BYTES);
    }
}
