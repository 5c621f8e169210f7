//! Per-stage counters, shared between the running stages and the operator
//! surface (status, metrics, exit summary), and their rendering as
//! Prometheus text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indexmap::IndexMap;

/// Counters of one stage. All are monotonically increasing.
#[derive(Debug, Default)]
pub struct StageMetrics {
    /// Events received from inputs (sources: events produced).
    pub events_in: AtomicU64,
    /// Events sent downstream (sinks: events written).
    pub events_out: AtomicU64,
    /// Events sent to the dead-letter output, or dropped for lack of one.
    pub rejected: AtomicU64,
    /// Failures: plugin traps, timeouts, write errors, failed reads.
    pub errors: AtomicU64,
    /// Batches processed.
    pub batches: AtomicU64,
    /// Total time spent in plugin or stage calls, nanoseconds.
    pub busy_ns: AtomicU64,
    /// Kafka sources: partition assignments received (each consumer-group
    /// rebalance that reaches this member counts once).
    pub rebalances: AtomicU64,
    /// Plugins: linear memory allocated by the running instance (a gauge).
    pub memory_bytes: AtomicU64,
    /// Time to process one batch (plugin call, model run, sink write).
    pub batch_time: Histogram,
    /// Kafka sources: consumer lag per `(topic, partition)`, from the
    /// client's statistics.
    pub lag: Mutex<Vec<(String, i32, i64)>>,
}

/// Upper bounds of [`Histogram`] buckets, seconds.
pub const BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

/// A latency histogram with fixed buckets ([`BUCKETS`]), lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket; the last counts those above every bound.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (Prometheus `le` semantics; the last
    /// is `+Inf`, the total), and the sum in seconds.
    pub fn cumulative(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let counts = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        (counts, self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9)
    }
}

impl StageMetrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Records one batch's processing time (busy time and histogram).
    pub fn record_batch(&self, took: Duration) {
        Self::add(&self.busy_ns, took.as_nanos() as u64);
        self.batch_time.observe(took);
    }

    /// Sets a gauge.
    pub fn set(gauge: &AtomicU64, v: u64) {
        gauge.store(v, Ordering::Relaxed);
    }

    /// Total consumer lag over every partition (0 when unknown).
    pub fn total_lag(&self) -> i64 {
        self.lag
            .lock()
            .expect("lag lock")
            .iter()
            .map(|(_, _, l)| (*l).max(0))
            .sum()
    }
}

/// What identifies a stage in metric labels.
#[derive(Debug, Clone)]
pub struct StageLabels {
    /// Stage name.
    pub stage: String,
    /// `source`, `transform`, `sink`.
    pub kind: String,
    /// The stage's `type`.
    pub type_name: String,
}

/// A counter family: name, help text, and how to read it.
type Counter = (&'static str, &'static str, fn(&StageMetrics) -> u64);

/// Renders every stage's metrics in the Prometheus text exposition format
/// (version 0.0.4).
pub fn render_prometheus(
    stages: &[(StageLabels, Arc<StageMetrics>)],
    reloads: (u64, u64),
) -> String {
    let mut out = String::new();
    let labels = |l: &StageLabels| {
        format!(
            "stage=\"{}\",kind=\"{}\",type=\"{}\"",
            escape(&l.stage),
            l.kind,
            l.type_name
        )
    };
    let counters: [Counter; 6] = [
        (
            "weir_events_in_total",
            "Events received by the stage (sources: produced).",
            |m| StageMetrics::get(&m.events_in),
        ),
        (
            "weir_events_out_total",
            "Events sent on by the stage (sinks: written).",
            |m| StageMetrics::get(&m.events_out),
        ),
        (
            "weir_events_rejected_total",
            "Events sent to the dead-letter output or dropped.",
            |m| StageMetrics::get(&m.rejected),
        ),
        (
            "weir_errors_total",
            "Failures: plugin traps and timeouts, failed writes and reads.",
            |m| StageMetrics::get(&m.errors),
        ),
        ("weir_batches_total", "Batches processed.", |m| {
            StageMetrics::get(&m.batches)
        }),
        (
            "weir_kafka_rebalances_total",
            "Partition assignments received by a Kafka source.",
            |m| StageMetrics::get(&m.rebalances),
        ),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (l, m) in stages {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(l), get(m));
        }
    }
    let _ = writeln!(
        out,
        "# HELP weir_stage_busy_seconds_total Time spent in the stage's calls (for plugins: in the plugin).\n# TYPE weir_stage_busy_seconds_total counter"
    );
    for (l, m) in stages {
        let secs = StageMetrics::get(&m.busy_ns) as f64 / 1e9;
        let _ = writeln!(out, "weir_stage_busy_seconds_total{{{}}} {secs}", labels(l));
    }
    let _ = writeln!(
        out,
        "# HELP weir_batch_duration_seconds Time to process one batch.\n# TYPE weir_batch_duration_seconds histogram"
    );
    for (l, m) in stages {
        let (counts, sum) = m.batch_time.cumulative();
        let base = labels(l);
        for (bound, c) in BUCKETS.iter().zip(&counts) {
            let _ = writeln!(
                out,
                "weir_batch_duration_seconds_bucket{{{base},le=\"{bound}\"}} {c}"
            );
        }
        let total = counts.last().copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "weir_batch_duration_seconds_bucket{{{base},le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(out, "weir_batch_duration_seconds_sum{{{base}}} {sum}");
        let _ = writeln!(out, "weir_batch_duration_seconds_count{{{base}}} {total}");
    }
    let _ = writeln!(
        out,
        "# HELP weir_plugin_memory_bytes Linear memory allocated by a plugin instance.\n# TYPE weir_plugin_memory_bytes gauge"
    );
    for (l, m) in stages.iter().filter(|(l, _)| l.type_name == "wasm") {
        let _ = writeln!(
            out,
            "weir_plugin_memory_bytes{{{}}} {}",
            labels(l),
            StageMetrics::get(&m.memory_bytes)
        );
    }
    let _ = writeln!(
        out,
        "# HELP weir_kafka_consumer_lag Messages between a Kafka source group's committed offset and the partition's end (from librdkafka statistics, each second).\n# TYPE weir_kafka_consumer_lag gauge"
    );
    for (l, m) in stages {
        for (topic, partition, lag) in m.lag.lock().expect("lag lock").iter() {
            let _ = writeln!(
                out,
                "weir_kafka_consumer_lag{{{},topic=\"{}\",partition=\"{partition}\"}} {lag}",
                labels(l),
                escape(topic)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP weir_reloads_total Pipeline reloads, by outcome.\n# TYPE weir_reloads_total counter\nweir_reloads_total{{result=\"ok\"}} {}\nweir_reloads_total{{result=\"failed\"}} {}",
        reloads.0, reloads.1
    );
    out
}

/// Escapes a label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counters of every stage of a pipeline, by name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    stages: Arc<std::sync::RwLock<IndexMap<String, Arc<StageMetrics>>>>,
}

impl Registry {
    /// The counters for `stage`, created on first use. A reloaded stage keeps
    /// its counters.
    pub fn stage(&self, stage: &str) -> Arc<StageMetrics> {
        if let Some(m) = self.stages.read().expect("metrics lock").get(stage) {
            return m.clone();
        }
        self.stages
            .write()
            .expect("metrics lock")
            .entry(stage.to_owned())
            .or_default()
            .clone()
    }

    /// A snapshot of every stage's counters.
    pub fn all(&self) -> Vec<(String, Arc<StageMetrics>)> {
        self.stages
            .read()
            .expect("metrics lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Forgets a removed stage.
    pub fn remove(&self, stage: &str) {
        self.stages
            .write()
            .expect("metrics lock")
            .shift_remove(stage);
    }
}
