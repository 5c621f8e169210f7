//! `/metrics`: every stage's counters, latency histogram, plugin memory and
//! Kafka lag in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;
use std::sync::Arc;

use super::counters::{BUCKETS, Counters, FAMILIES, StageMetrics};

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
    let readings: Vec<Counters> = stages.iter().map(|(_, m)| m.read()).collect();
    for family in FAMILIES {
        let (name, help) = (family.name, family.help);
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for ((l, _), c) in stages.iter().zip(&readings) {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(l), (family.read)(c));
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

/// Appends the pipeline's delivery guarantee as an info-style gauge.
pub fn render_guarantee(out: &mut String, guarantee: &str) {
    if guarantee.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP weir_pipeline_guarantee The pipeline's delivery guarantee (the label; the value is always 1).\n# TYPE weir_pipeline_guarantee gauge\nweir_pipeline_guarantee{{guarantee=\"{}\"}} 1",
        escape(guarantee)
    );
}

/// Appends the families of an exactly-once pipeline's transactions.
pub fn render_transactions(out: &mut String, t: &super::TransactionStatus) {
    let id = escape(&t.transactional_id);
    let _ = writeln!(
        out,
        "# HELP weir_transactions_committed_total Kafka transactions committed (exactly-once).\n# TYPE weir_transactions_committed_total counter\nweir_transactions_committed_total{{transactional_id=\"{id}\"}} {}",
        t.commits
    );
    let _ = writeln!(
        out,
        "# HELP weir_transactions_aborted_total Kafka transactions aborted (exactly-once).\n# TYPE weir_transactions_aborted_total counter\nweir_transactions_aborted_total{{transactional_id=\"{id}\"}} {}",
        t.aborts
    );
    let _ = writeln!(
        out,
        "# HELP weir_transaction_commit_seconds How long the last commit took (offsets, state, commit).\n# TYPE weir_transaction_commit_seconds gauge\nweir_transaction_commit_seconds{{transactional_id=\"{id}\"}} {}",
        t.last_commit_ms / 1000.0
    );
}
