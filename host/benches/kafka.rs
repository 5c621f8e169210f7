//! Benchmark: Kafka → identity plugin → Kafka through `weir run`, against a
//! plain rdkafka consume-and-produce loop with no plugin, on the same Apache
//! Kafka broker in the same run; then the same pipeline exactly-once at
//! three commit intervals, and end-to-end latency to a read_committed reader.
//!
//! Run with `cargo bench -p weir --bench kafka` (starts a single-node broker
//! with `scripts/kafka`, which needs Java and Maven). `WEIR_BENCH_RECORDS`
//! sets the record count (default 2,000,000 records of 100 bytes, 3
//! partitions: enough that process start-up and group joins do not decide
//! the ratios).

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

/// The weir pipeline Kafka → identity plugin → Kafka, at-least-once or
/// exactly-once with commits every `interval`.
fn pipeline(bootstrap: &str, input: &str, group: &str, output: &str, eos: Option<&str>) -> String {
    let guarantee = match eos {
        Some(interval) => format!(
            "guarantee = \"exactly-once\"\ncheckpoint_interval = \"{interval}\"\ninstance_id = \"{group}\"\nchangelog = \"{group}-state\"\n"
        ),
        None => String::new(),
    };
    format!(
        r#"{guarantee}
[sources.in]
type = "kafka"
brokers = "{bootstrap}"
topic = "{input}"
group = "{group}"
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
topic = "{output}"
"#,
        plugin = common::plugin("chaos").display()
    )
}

/// Runs `text` until its input ends; returns how long it took.
fn run(text: &str) -> Duration {
    let dir = common::tempdir();
    let file = common::write(dir.path(), "p.toml", text);
    let start = Instant::now();
    let status = common::weir()
        .args(["--log-level", "warn", "run"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success());
    start.elapsed()
}

/// End-to-end latency with records produced live at `rate`/s for `n`
/// records: from produce to a read_committed reader of the output.
fn latency(bootstrap: &str, name: &str, eos: Option<&str>, n: usize, rate: usize) -> (f64, f64) {
    let input = format!("{name}-in");
    let output = format!("{name}-out");
    create_topic(bootstrap, &input, 1);
    create_topic(bootstrap, &output, 1);
    let dir = common::tempdir();
    let text = pipeline(bootstrap, &input, name, &output, eos).replace("exit_at_end = true", "");
    let file = common::write(dir.path(), "p.toml", &text);
    let mut weir = common::weir()
        .args(["--log-level", "warn", "run"])
        .arg(&file)
        .spawn()
        .unwrap();
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{name}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    reader.subscribe(&[output.as_str()]).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "1")
        .create()
        .unwrap();
    let start = Instant::now();
    let payload = "x".repeat(90);
    let mut latencies = Vec::with_capacity(n);
    let mut sent = 0;
    while latencies.len() < n {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as usize;
        while sent < n && sent < due {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            let rec = BaseRecord::<[u8], str>::to(&input)
                .payload(&payload)
                .timestamp(now);
            if producer.send(rec).is_ok() {
                sent += 1;
            }
            producer.poll(Duration::ZERO);
        }
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(1)) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            if let Some(t) = m.timestamp().to_millis() {
                latencies.push((now - t) as f64);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "latency run stalled"
        );
    }
    unsafe { libc::kill(weir.id() as i32, libc::SIGTERM) };
    let _ = weir.wait();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (at(0.5), at(0.99))
}

fn main() {
    let n: usize = std::env::var("WEIR_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
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
    let weir = run(&pipeline(
        b,
        "bench-in",
        "bench-weir",
        "bench-weir-out",
        None,
    ));
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
    println!("exactly-once against at-least-once, same broker, same run:");
    for interval in ["100ms", "1s", "5s"] {
        let out = format!("bench-eos-{interval}-out");
        create_topic(b, &out, 3);
        let eos = run(&pipeline(
            b,
            "bench-in",
            &format!("bench-eos-{interval}"),
            &out,
            Some(interval),
        ));
        println!(
            "  exactly-once, commit every {interval:>5}: {:>10.0} records/s ({:.2} s), {:.2}x at-least-once",
            rate(eos),
            eos.as_secs_f64(),
            weir.as_secs_f64() / eos.as_secs_f64()
        );
    }
    let (n_lat, lat_rate) = (50_000, 10_000);
    println!("end-to-end latency at {lat_rate} records/s, produce to a read_committed reader:");
    let (p50, p99) = latency(b, "bench-lat-alo", None, n_lat, lat_rate);
    println!("  at-least-once                  p50 {p50:>6.0} ms  p99 {p99:>6.0} ms");
    for interval in ["100ms", "1s", "5s"] {
        let (p50, p99) = latency(
            b,
            &format!("bench-lat-{interval}"),
            Some(interval),
            n_lat,
            lat_rate,
        );
        println!("  exactly-once, commit every {interval:>5} p50 {p50:>6.0} ms  p99 {p99:>6.0} ms");
    }
}
