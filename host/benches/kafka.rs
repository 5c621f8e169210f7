//! Benchmark: Kafka → identity plugin → Kafka through `weir run`, against a
//! plain rdkafka consume-and-produce loop with no plugin, on the same Apache
//! Kafka broker in the same run.
//!
//! Run with `cargo bench -p weir --bench kafka` (starts a single-node broker
//! with `scripts/kafka`, which needs Java and Maven). `WEIR_BENCH_RECORDS` sets the record count
//! (default 500 000 records of 100 bytes, 3 partitions).

#[path = "../../tests/common/mod.rs"]
#[allow(missing_docs)]
mod common;

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use common::kafka::{broker, count, create_topic, produce};

/// The baseline: subscribe as a group, forward every record to the output
/// topic with the same producer settings weir uses, wait for delivery.
fn plain_loop(bootstrap: &str, n: usize) -> Duration {
    let start = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-plain")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .create()
        .unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    consumer.subscribe(&["bench-in"]).unwrap();
    let mut forwarded = 0;
    while forwarded < n {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.unwrap();
        let mut rec = BaseRecord::<[u8], [u8]>::to("bench-plain-out")
            .payload(m.payload().unwrap_or_default());
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => panic!("{e}"),
            }
        }
        producer.poll(Duration::ZERO);
        forwarded += 1;
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    start.elapsed()
}

fn through_weir(bootstrap: &str) -> Duration {
    let dir = common::tempdir();
    let file = common::write(
        dir.path(),
        "p.toml",
        &format!(
            r#"
[sources.in]
type = "kafka"
brokers = "{bootstrap}"
topic = "bench-in"
group = "bench-weir"
start = "earliest"
exit_at_end = true

[transforms.identity]
type = "wasm"
inputs = ["in"]
plugin = "{plugin}"

[sinks.out]
type = "kafka"
inputs = ["identity"]
brokers = "{bootstrap}"
topic = "bench-weir-out"
"#,
            plugin = common::plugin("chaos").display()
        ),
    );
    let start = Instant::now();
    let status = common::weir()
        .args(["--log-level", "warn", "run"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

fn main() {
    let n: usize = std::env::var("WEIR_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let b = broker();
    create_topic(b, "bench-in", 3);
    create_topic(b, "bench-plain-out", 3);
    create_topic(b, "bench-weir-out", 3);
    let payload = "x".repeat(90);
    produce(
        b,
        "bench-in",
        (0..n).map(|i| format!("{i:09}{payload}").into_bytes()),
    );
    println!(
        "Kafka -> identity -> Kafka, {n} records of 100 bytes, 3 partitions, Apache Kafka (1 node) on loopback"
    );
    // Warm the plugin compile cache so the weir run measures the data path.
    common::plugin("chaos");
    let plain = plain_loop(b, n);
    let weir = through_weir(b);
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    assert!(count(b, "bench-weir-out", 3) > 0);
    println!(
        "  plain rdkafka loop (no plugin)  {:>10.0} records/s ({:.2} s)",
        rate(plain),
        plain.as_secs_f64()
    );
    println!(
        "  weir run with the chaos identity plugin {:>10.0} records/s ({:.2} s, including start-up and group join)",
        rate(weir),
        weir.as_secs_f64()
    );
    println!(
        "  weir / plain                    {:>10.2}",
        plain.as_secs_f64() / weir.as_secs_f64()
    );
}
