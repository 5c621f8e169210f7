//! Live views of a running pipeline: taps (a sampled copy of what a stage
//! emits, for `weir tap` and `/tap/STAGE`) and dashboards (what `dashboard`
//! sinks receive, pushed to browsers).
//!
//! Both are best-effort and bounded: a tap sends at most
//! [`TAP_EVENTS_PER_SECOND`] events a second and a slow viewer misses
//! events rather than slowing the pipeline; a stage pays for a tap only
//! while someone watches it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
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

/// What a `dashboard` sink shows: its settings and recent points.
#[derive(Debug)]
pub struct Dashboard {
    /// Page title.
    pub title: String,
    /// The settings the page reads (chart kind, fields, labels), as JSON.
    pub settings: serde_json::Value,
    history: Mutex<VecDeque<Arc<str>>>,
    keep: usize,
    tx: broadcast::Sender<Arc<str>>,
}

impl Dashboard {
    /// Adds a point (JSON) for current and future viewers.
    pub fn push(&self, point: String) {
        let point: Arc<str> = point.into();
        // Sent under the lock, so a viewer subscribing now gets the point
        // either in the history or live, never both.
        let mut h = self.history.lock().expect("dashboard lock");
        while h.len() >= self.keep {
            h.pop_front();
        }
        h.push_back(point.clone());
        let _ = self.tx.send(point);
    }

    /// The recent points, then the live ones.
    pub fn subscribe(&self) -> (Vec<Arc<str>>, broadcast::Receiver<Arc<str>>) {
        // Subscribe under the history lock so no point falls between.
        let h = self.history.lock().expect("dashboard lock");
        (h.iter().cloned().collect(), self.tx.subscribe())
    }
}

/// The process's taps and dashboards.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    taps: Mutex<HashMap<String, Arc<TapPoint>>>,
    dashboards: Mutex<indexmap::IndexMap<String, Arc<Dashboard>>>,
    served: AtomicBool,
}

impl Hub {
    /// The tap point of `stage` (created on first use; kept across
    /// restarts of the stage).
    pub fn tap(&self, stage: &str) -> Arc<TapPoint> {
        self.inner
            .taps
            .lock()
            .expect("taps lock")
            .entry(stage.to_owned())
            .or_default()
            .clone()
    }

    /// The tap point of `stage` if it has one (does not create it).
    pub fn find_tap(&self, stage: &str) -> Option<Arc<TapPoint>> {
        self.inner
            .taps
            .lock()
            .expect("taps lock")
            .get(stage)
            .cloned()
    }

    /// Marks the hub as served by an admin endpoint (dashboards need one).
    pub fn set_served(&self) {
        self.inner.served.store(true, Ordering::Relaxed);
    }

    /// Whether an admin endpoint serves the hub.
    pub fn is_served(&self) -> bool {
        self.inner.served.load(Ordering::Relaxed)
    }

    /// Registers (or replaces, on reload) the dashboard of sink `name`.
    pub fn dashboard(
        &self,
        name: &str,
        title: String,
        settings: serde_json::Value,
        keep: usize,
    ) -> Arc<Dashboard> {
        let keep = keep.max(1);
        let mut all = self.inner.dashboards.lock().expect("dashboards lock");
        // A restarted dashboard keeps its history and viewers.
        let (history, tx) = match all.get(name) {
            Some(d) => (
                d.history.lock().expect("dashboard lock").clone(),
                d.tx.clone(),
            ),
            None => (VecDeque::new(), broadcast::channel(256).0),
        };
        let d = Arc::new(Dashboard {
            title,
            settings,
            history: Mutex::new(history),
            keep,
            tx,
        });
        all.insert(name.to_owned(), d.clone());
        d
    }

    /// Drops the tap and dashboard of a stage removed from the pipeline:
    /// their viewers' streams end once the stage's last instance is gone.
    pub fn forget(&self, stage: &str) {
        self.inner.taps.lock().expect("taps lock").remove(stage);
        self.inner
            .dashboards
            .lock()
            .expect("dashboards lock")
            .shift_remove(stage);
    }

    /// The dashboard of sink `name`.
    pub fn find_dashboard(&self, name: &str) -> Option<Arc<Dashboard>> {
        self.inner
            .dashboards
            .lock()
            .expect("dashboards lock")
            .get(name)
            .cloned()
    }

    /// Names and titles of every dashboard.
    pub fn dashboards(&self) -> Vec<(String, String)> {
        self.inner
            .dashboards
            .lock()
            .expect("dashboards lock")
            .iter()
            .map(|(k, d)| (k.clone(), d.title.clone()))
            .collect()
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

    #[test]
    fn a_smaller_history_after_a_reload_is_trimmed() {
        let hub = Hub::default();
        let d = hub.dashboard("c", "C".into(), serde_json::json!({}), 5);
        for i in 0..5 {
            d.push(i.to_string());
        }
        let d = hub.dashboard("c", "C".into(), serde_json::json!({}), 2);
        d.push("5".into());
        assert_eq!(d.subscribe().0.len(), 2);
    }

    #[test]
    fn dashboards_replay_recent_points_to_new_viewers() {
        let hub = Hub::default();
        let d = hub.dashboard("c", "C".into(), serde_json::json!({}), 2);
        d.push("1".into());
        d.push("2".into());
        d.push("3".into());
        let (recent, mut live) = d.subscribe();
        assert_eq!(recent.iter().map(|s| &**s).collect::<Vec<_>>(), ["2", "3"]);
        d.push("4".into());
        assert_eq!(&*live.try_recv().unwrap(), "4");
        hub.forget("c");
        assert!(hub.find_dashboard("c").is_none());
        drop(d);
        assert_eq!(
            live.try_recv(),
            Err(broadcast::error::TryRecvError::Closed),
            "viewers see the end"
        );
    }
}
