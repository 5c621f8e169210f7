//! The shipped Rust plugins, natively, behind one object-safe trait so the
//! plugin targets can pick one by a fuzzed byte.

use weir_plugin::{Batch, Output, Transform};

/// What the targets call on a plugin.
pub trait Stage {
    fn process(&mut self, batch: &Batch, out: &mut Output);
    fn tick(&mut self, now_ms: i64, out: &mut Output);
    fn flush(&mut self, out: &mut Output);
    fn snapshot(&self) -> Vec<u8>;
    fn restore(&mut self, state: &[u8]) -> Result<(), String>;
}

impl<T: Transform> Stage for T {
    fn process(&mut self, batch: &Batch, out: &mut Output) {
        Transform::process(self, batch, out)
    }
    fn tick(&mut self, now_ms: i64, out: &mut Output) {
        Transform::tick(self, now_ms, out)
    }
    fn flush(&mut self, out: &mut Output) {
        Transform::flush(self, out)
    }
    fn snapshot(&self) -> Vec<u8> {
        Transform::snapshot(self)
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        Transform::restore(self, state)
    }
}

/// Window-stats over the room-sensor CSV, every function and window kind.
const SENSOR: &str = r#"{"input":"csv","columns":["date","t"],"time":"event","timestamp":"date",
 "batch":"5s","allowed_lateness":"10s","stats":[
 {"name":"m","field":"t","fn":"mean","window":"batch"},
 {"name":"s","field":"t","fn":"stddev","window":"since_start"},
 {"name":"x","field":"t","fn":"max","window":"45s","slide":"15s"},
 {"name":"g","field":"date","fn":"gaps","expect":"60s","window":"batch"}]}"#;

/// Plugin and config pairs. `deterministic` ones run on event time only,
/// so two runs over the same events give the same output.
pub const PLUGINS: &[(&str, &str, bool)] = &[
    ("gender-count", "{}", false),
    (
        "gender-count",
        r#"{"key":"gender","time":"event","window":"1s","slide":"250ms","allowed_lateness":"2s"}"#,
        true,
    ),
    (
        "gender-count",
        r#"{"columns":["user","gender"],"key":"gender","time":"event","window":"2s","format":"seed"}"#,
        true,
    ),
    ("window-stats", SENSOR, true),
    (
        "window-stats",
        r#"{"input":"json","stats":[{"name":"c","field":"v","fn":"count","window":"10s"},
          {"name":"sum","field":"v","fn":"sum","window":"since_start"},
          {"name":"min","field":"v","fn":"min","window":"batch"}],"format":"seed"}"#,
        false,
    ),
    ("grayscale", r#"{"max_pixels":65536}"#, true),
    (
        "grayscale",
        r#"{"input":"rgb","output":"raw","max_pixels":65536}"#,
        true,
    ),
];

/// Builds plugin `i` (modulo the list) and says whether it is deterministic.
pub fn build(i: u8) -> (Box<dyn Stage>, bool) {
    let (name, config, deterministic) = PLUGINS[usize::from(i) % PLUGINS.len()];
    let stage: Box<dyn Stage> = match name {
        "gender-count" => Box::new(gender_count::GenderCount::new(config).expect(config)),
        "window-stats" => Box::new(window_stats::WindowStats::new(config).expect(config)),
        _ => Box::new(grayscale::Grayscale::new(config).expect(config)),
    };
    (stage, deterministic)
}

/// An output's events and rejections, comparable.
pub type Seen = (Vec<(i64, Option<Vec<u8>>, Vec<u8>)>, Vec<(u32, String)>);

/// Takes what `out` holds.
pub fn seen(out: &Output) -> Seen {
    (
        (0..out.len())
            .map(|i| {
                (
                    out.timestamp(i),
                    out.key(i).map(<[u8]>::to_vec),
                    out.value(i).to_vec(),
                )
            })
            .collect(),
        out.rejections()
            .iter()
            .map(|r| (r.index, r.reason.clone()))
            .collect(),
    )
}
