//! A real Kafka-protocol broker (tansu) for the tests, shared by the whole
//! test binary; librdkafka's mock cluster for fault injection; and small
//! rdkafka helpers to produce, read and inspect.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// The tansu binary: the one `cargo install` put in Cargo's `bin`
/// directory, else whichever is on the PATH.
fn tansu_binary() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let p = cargo_home.join("bin/tansu");
    if p.is_file() {
        return p;
    }
    PathBuf::from("tansu")
}

/// Bootstrap address of the shared tansu broker, started on first use and
/// killed when the test binary exits.
pub fn broker() -> &'static str {
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER.get_or_init(|| {
        let port = super::free_port();
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let log = super::target_dir().join(format!("tansu-{port}.log"));
        let (tx, rx) = std::sync::mpsc::channel();
        // The broker is spawned from a thread that lives as long as the test
        // binary: PR_SET_PDEATHSIG then kills it when the binary exits.
        std::thread::spawn(move || {
            let mut cmd = Command::new(tansu_binary());
            cmd.args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", "memory://tansu/"])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(&log).unwrap());
            // SAFETY: prctl is async-signal-safe and touches only this process.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn();
            let ok = child.is_ok();
            tx.send(child.map_err(|e| e.to_string()).map(|_| ())).unwrap();
            if ok {
                loop {
                    std::thread::park();
                }
            }
        });
        rx.recv()
            .unwrap()
            .expect("cannot start tansu; scripts/test installs it (cargo install tansu --locked --features dynostore)");
        let start = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "tansu did not start listening on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        addr
    })
}

/// A client configuration for the brokers at `bootstrap`.
fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates a topic on the shared broker.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    weir::kafka::ensure_topic(
        &client(bootstrap),
        &weir::kafka::Brokers::Cluster(bootstrap.to_owned()),
        topic,
        partitions,
        1,
        Duration::from_secs(10),
    )
    .unwrap();
}

/// A producer that sends one record per batch.
///
/// tansu (0.6) answers a fetch that starts inside a stored batch with the
/// *next* batch, silently skipping the rest of the one asked for. A
/// consumer group resuming from a committed offset inside a batch would
/// then miss records, which is a broker bug, not a client one;
/// single-record batches keep every offset a batch boundary.
fn producer(bootstrap: &str) -> BaseProducer {
    client(bootstrap)
        .set("linger.ms", "0")
        .set("batch.num.messages", "1")
        .create()
        .unwrap()
}

/// Queues `rec`, waiting for room in the producer's queue.
fn send<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(p: &BaseProducer, mut rec: BaseRecord<K, P>) {
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, back)) => {
                rec = back;
                p.poll(Duration::from_millis(10));
            }
        }
    }
}

/// Produces `values` (key = none), one record per batch (see
/// [`producer`]), and waits until all are acknowledged.
pub fn produce(bootstrap: &str, topic: &str, values: impl IntoIterator<Item = Vec<u8>>) {
    let p = producer(bootstrap);
    for v in values {
        send(&p, BaseRecord::<(), [u8]>::to(topic).payload(&v[..]));
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// A record to produce: explicit partition, optional key, timestamp and
/// headers.
#[derive(Debug, Clone, Default)]
pub struct Rec {
    /// The partition it goes to.
    pub partition: i32,
    /// Its key, if any.
    pub key: Option<String>,
    /// Its value.
    pub value: String,
    /// Its timestamp, if set (else the producer's clock).
    pub timestamp_ms: Option<i64>,
    /// Its headers, in order.
    pub headers: Vec<(String, String)>,
}

impl Rec {
    /// A plain record for `partition`.
    pub fn plain(partition: i32, value: String) -> Rec {
        Rec {
            partition,
            value,
            ..Rec::default()
        }
    }
}

/// Produces `records` to `topic`, one record per batch (see [`producer`]),
/// and waits until all are acknowledged.
pub fn produce_records(bootstrap: &str, topic: &str, records: &[Rec]) {
    let p = producer(bootstrap);
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut rec = BaseRecord::<str, str>::to(topic)
            .partition(r.partition)
            .payload(&r.value)
            .headers(headers);
        if let Some(k) = &r.key {
            rec = rec.key(k);
        }
        if let Some(t) = r.timestamp_ms {
            rec = rec.timestamp(t);
        }
        send(&p, rec);
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// High watermarks as the broker reports them to ListOffsets (tansu
/// answers with the last batch's base offset + 1: a lower bound, good for
/// watching progress; use [`true_end_offsets`] for exact ends).
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = client(bootstrap).create().unwrap();
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_or(0, |w| w.1)
        })
        .collect()
}

/// Committed offsets of `group` per partition (-1 when none).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    weir::sources::kafka::committed_offsets(bootstrap, group, topic, partitions).unwrap()
}

/// A record read back by [`read_all`].
#[derive(Debug, Clone)]
pub struct Record {
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its value.
    pub value: Vec<u8>,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its timestamp, if it has one.
    pub timestamp_ms: Option<i64>,
    /// Its headers, in order, values as text.
    pub headers: Vec<(String, String)>,
}

/// Every record of `topic`, read from the beginning of each partition up to
/// the end-of-partition events librdkafka reports.
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Record> {
    use rdkafka::error::KafkaError;
    use rdkafka::message::Headers;
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", "test-reader")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut at_end = vec![false; partitions as usize];
    let mut out = Vec::new();
    let start = Instant::now();
    while at_end.iter().any(|e| !e) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "read {} records of {topic}, no end yet",
            out.len()
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                at_end[m.partition() as usize] = false;
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    value: m.payload().unwrap_or_default().to_vec(),
                    key: m.key().map(<[u8]>::to_vec),
                    timestamp_ms: m.timestamp().to_millis(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_owned(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            }
            Some(Err(KafkaError::PartitionEOF(p))) => at_end[p as usize] = true,
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The true end offset (last offset + 1, or 0 when empty) of each
/// partition, from the records themselves.
pub fn true_end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let mut ends = vec![0; partitions as usize];
    for r in read_all(bootstrap, topic, partitions) {
        ends[r.partition as usize] = ends[r.partition as usize].max(r.offset + 1);
    }
    ends
}

/// Total records in a topic.
pub fn count(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    end_offsets(bootstrap, topic, partitions).iter().sum()
}

/// A record of a one-partition topic read back as text by [`read_text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRecord {
    /// Its key, if any.
    pub key: Option<String>,
    /// Its value.
    pub value: String,
    /// Its timestamp, if it has one.
    pub timestamp_ms: Option<i64>,
    /// Its headers, in order.
    pub headers: Vec<(String, String)>,
}

/// Every record of a one-partition `topic`, as text, with timestamps.
pub fn read_text(bootstrap: &str, topic: &str) -> Vec<TextRecord> {
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    read_all(bootstrap, topic, 1)
        .into_iter()
        .map(|r| TextRecord {
            key: r.key.map(text),
            value: text(r.value),
            timestamp_ms: r.timestamp_ms,
            headers: r.headers,
        })
        .collect()
}

/// librdkafka's mock cluster, in this test process: real TCP listeners the
/// `weir` binary connects to, with fault-injection controls.
pub struct MockCluster(rdkafka::mocking::MockCluster<'static, DefaultProducerContext>);

// SAFETY: librdkafka's mock API is thread-safe; see weir::kafka::Embedded.
unsafe impl Send for MockCluster {}
// SAFETY: as above.
unsafe impl Sync for MockCluster {}

impl MockCluster {
    /// A cluster of `brokers` brokers (ids 1 to `brokers`) with the topic
    /// `topic` of `partitions` partitions.
    pub fn with_topic(brokers: i32, topic: &str, partitions: i32) -> MockCluster {
        let mock = rdkafka::mocking::MockCluster::new(brokers).unwrap();
        mock.create_topic(topic, partitions, 1).unwrap();
        MockCluster(mock)
    }

    /// The bootstrap address.
    pub fn bootstrap(&self) -> String {
        self.0.bootstrap_servers()
    }

    /// Takes brokers `1..=n` down.
    pub fn brokers_down(&self, n: i32) {
        for id in 1..=n {
            self.0.broker_down(id).unwrap();
        }
    }

    /// Brings brokers `1..=n` back up.
    pub fn brokers_up(&self, n: i32) {
        for id in 1..=n {
            self.0.broker_up(id).unwrap();
        }
    }

    /// Makes the next `errors.len()` requests of `api` fail with `errors`.
    pub fn request_errors(
        &self,
        api: rdkafka::types::RDKafkaApiKey,
        errors: &[rdkafka::types::RDKafkaRespErr],
    ) {
        self.0.request_errors(api, errors);
    }
}
