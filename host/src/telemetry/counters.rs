//! Per-stage counters: written by the running stage, read by every view
//! (`/status`, `/metrics`, `weir top`, the exit summary).
//!
//! Each counter is declared once, in `counters!` (below): its field on
//! [`StageMetrics`] (the live atomics), its field on [`Counters`] (a reading,
//! as `/status` serves it) and its Prometheus family come from that one
//! line, so a new counter cannot be forgotten by one of the views.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A monotonically increasing counter's description, for Prometheus.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Metric name.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
    /// Its value in a reading.
    pub read: fn(&Counters) -> u64,
}

macro_rules! counters {
    ($( $(#[$doc:meta])* $field:ident => $metric:literal, $help:literal; )*) => {
        /// Counters and gauges of one stage, updated lock-free by the stage.
        #[derive(Debug, Default)]
        pub struct StageMetrics {
            $( $(#[$doc])* pub $field: AtomicU64, )*
            /// Total time spent in plugin or stage calls, nanoseconds.
            pub busy_ns: AtomicU64,
            /// Plugins: linear memory allocated by the running instance (a
            /// gauge).
            pub memory_bytes: AtomicU64,
            /// Stages with one plugin instance per input partition: the
            /// partitions whose tasks run here, and each task's state size
            /// in bytes (its last snapshot); -1 is the task of events that
            /// come from no partition.
            pub tasks: Mutex<Vec<(i32, u64)>>,
            /// Time to process one batch (plugin call, model run, sink
            /// write).
            pub batch_time: Histogram,
            /// Kafka sources: consumer lag per `(topic, partition)`, from the
            /// client's statistics.
            pub lag: Mutex<Vec<(String, i32, i64)>>,
        }

        /// A stage's counters at the time they were read.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct Counters {
            $( $(#[$doc])* pub $field: u64, )*
            /// Time spent in stage calls, ms.
            pub busy_ms: u64,
            /// Kafka sources: messages behind the end of the assigned
            /// partitions.
            #[serde(default)]
            pub lag: i64,
            /// WASM transforms: the plugin instances' linear memory, bytes.
            #[serde(default)]
            pub memory_bytes: u64,
            /// WASM transforms fed by Kafka: the input partitions whose
            /// tasks (plugin instances with their own state) run in this
            /// process.
            #[serde(default, skip_serializing_if = "Vec::is_empty")]
            pub partitions: Vec<i32>,
            /// WASM transforms: the size of the state of every task (their
            /// last snapshots), bytes.
            #[serde(default)]
            pub state_bytes: u64,
        }

        impl StageMetrics {
            /// Reads every counter.
            pub fn read(&self) -> Counters {
                let (partitions, state_bytes) = self.task_reading();
                Counters {
                    $( $field: self.$field.load(Ordering::Relaxed), )*
                    busy_ms: self.busy_ns.load(Ordering::Relaxed) / 1_000_000,
                    lag: self.total_lag(),
                    memory_bytes: self.memory_bytes.load(Ordering::Relaxed),
                    partitions,
                    state_bytes,
                }
            }
        }

        /// The Prometheus family of every counter.
        pub const FAMILIES: &[Family] = &[
            $( Family { name: $metric, help: $help, read: |c| c.$field }, )*
        ];
    };
}

counters! {
    /// Events received from inputs (sources: events produced).
    events_in => "weir_events_in_total", "Events received by the stage (sources: produced).";
    /// Events sent downstream (sinks: events written).
    events_out => "weir_events_out_total", "Events sent on by the stage (sinks: written).";
    /// Events sent to the dead-letter output, or dropped for lack of one.
    rejected => "weir_events_rejected_total", "Events sent to the dead-letter output or dropped.";
    /// Failures: plugin traps, timeouts, write errors, failed reads.
    errors => "weir_errors_total", "Failures: plugin traps and timeouts, failed writes and reads.";
    /// Batches processed.
    batches => "weir_batches_total", "Batches processed.";
    /// Kafka sources: partition assignments received (each consumer-group
    /// rebalance that reaches this member counts once).
    rebalances => "weir_kafka_rebalances_total", "Partition assignments received by a Kafka source.";
    /// Plugins: instances replaced by a fresh one, with their state,
    /// because their memory passed `recycle_memory`.
    recycles => "weir_plugin_recycles_total", "Plugin instances replaced with their state because their memory passed recycle_memory.";
    /// Streaming sources: connections made again after a drop, a stall
    /// or an error.
    reconnects => "weir_source_reconnects_total", "Connections a streaming source made again after a drop, stall or error.";
    /// Streaming sources: messages a server sent again, dropped.
    duplicates => "weir_source_duplicates_total", "Messages a streaming source received again and dropped.";
    /// Streaming sources: time spent waiting for downstream to take
    /// batches, not reading the input meanwhile.
    backpressure_ms => "weir_source_backpressure_ms_total", "Milliseconds a streaming source waited for downstream, not reading its input.";
    /// Sinks: writes sent again after a timeout, a node down or
    /// overloaded, or a lost connection.
    retries => "weir_sink_retries_total", "Writes a sink sent again after a timeout, a node down or overloaded, or a lost connection.";
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

    /// The partitions with tasks here, and their state's total size.
    fn task_reading(&self) -> (Vec<i32>, u64) {
        let tasks = self.tasks.lock().expect("tasks lock");
        (
            tasks.iter().map(|t| t.0).filter(|p| *p >= 0).collect(),
            tasks.iter().map(|t| t.1).sum(),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_and_the_families_see_every_counter() {
        let m = StageMetrics::default();
        StageMetrics::add(&m.events_in, 3);
        StageMetrics::add(&m.rebalances, 2);
        StageMetrics::add(&m.recycles, 4);
        StageMetrics::add(&m.reconnects, 6);
        StageMetrics::add(&m.retries, 7);
        m.record_batch(Duration::from_millis(5));
        let c = m.read();
        assert_eq!((c.events_in, c.rebalances, c.busy_ms), (3, 2, 5));
        let by_name = |n: &str| FAMILIES.iter().find(|f| f.name == n).map(|f| (f.read)(&c));
        assert_eq!(by_name("weir_events_in_total"), Some(3));
        assert_eq!(by_name("weir_kafka_rebalances_total"), Some(2));
        assert_eq!(by_name("weir_plugin_recycles_total"), Some(4));
        assert_eq!(by_name("weir_source_reconnects_total"), Some(6));
        assert_eq!(by_name("weir_sink_retries_total"), Some(7));
        assert_eq!(FAMILIES.len(), 11);
    }
}
