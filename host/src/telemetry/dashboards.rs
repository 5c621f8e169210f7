//! Dashboards: what `dashboard` sinks receive, kept briefly and pushed to
//! browsers by the admin endpoint. A slow viewer misses points rather than
//! slowing the pipeline.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

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

/// The pipeline's dashboards, by sink name, and whether an admin endpoint
/// serves them.
#[derive(Debug, Clone, Default)]
pub struct Dashboards {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    all: Mutex<indexmap::IndexMap<String, Arc<Dashboard>>>,
    served: AtomicBool,
}

impl Dashboards {
    /// Marks the dashboards as served by an admin endpoint (they need one).
    pub fn set_served(&self) {
        self.inner.served.store(true, Ordering::Relaxed);
    }

    /// Whether an admin endpoint serves the dashboards.
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
        let mut all = self.inner.all.lock().expect("dashboards lock");
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

    /// Drops the dashboard of a sink removed from the pipeline: its
    /// viewers' streams end once the sink's last instance is gone.
    pub fn forget(&self, name: &str) {
        self.inner
            .all
            .lock()
            .expect("dashboards lock")
            .shift_remove(name);
    }

    /// The dashboard of sink `name`.
    pub fn find(&self, name: &str) -> Option<Arc<Dashboard>> {
        self.inner
            .all
            .lock()
            .expect("dashboards lock")
            .get(name)
            .cloned()
    }

    /// Names and titles of every dashboard.
    pub fn list(&self) -> Vec<(String, String)> {
        self.inner
            .all
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
    fn a_smaller_history_after_a_reload_is_trimmed() {
        let dashboards = Dashboards::default();
        let d = dashboards.dashboard("c", "C".into(), serde_json::json!({}), 5);
        for i in 0..5 {
            d.push(i.to_string());
        }
        let d = dashboards.dashboard("c", "C".into(), serde_json::json!({}), 2);
        d.push("5".into());
        assert_eq!(d.subscribe().0.len(), 2);
    }

    #[test]
    fn dashboards_replay_recent_points_to_new_viewers() {
        let dashboards = Dashboards::default();
        let d = dashboards.dashboard("c", "C".into(), serde_json::json!({}), 2);
        d.push("1".into());
        d.push("2".into());
        d.push("3".into());
        let (recent, mut live) = d.subscribe();
        assert_eq!(recent.iter().map(|s| &**s).collect::<Vec<_>>(), ["2", "3"]);
        d.push("4".into());
        assert_eq!(&*live.try_recv().unwrap(), "4");
        dashboards.forget("c");
        assert!(dashboards.find("c").is_none());
        drop(d);
        assert_eq!(
            live.try_recv(),
            Err(broadcast::error::TryRecvError::Closed),
            "viewers see the end"
        );
    }
}
