//! Apache Kafka for the tests: a single-node broker shared by the whole test
//! binary, and a 3-node cluster for the replication tests, both started by
//! `scripts/kafka` (KRaft, jars fetched with Maven) and stopped by its
//! watchdog when the test binary exits; librdkafka's mock cluster for
//! injected request errors; and small rdkafka helpers to produce, read and
//! inspect.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// A Kafka cluster started for this test binary.
#[derive(Debug)]
pub struct Cluster {
    /// Where its nodes keep their data, logs and PIDs.
    pub dir: PathBuf,
    /// The bootstrap list.
    pub bootstrap: String,
}

impl Cluster {
    /// Starts `nodes` nodes with `scripts/kafka`; they stop when this
    /// process exits (`--parent`).
    fn start(nodes: u32) -> Cluster {
        Self::start_named(nodes, &format!("kafka-test-{}-{nodes}", std::process::id()))
    }

    /// A cluster of `nodes` nodes for one test alone (a test that restarts
    /// brokers must not disturb the others); stopped when dropped.
    pub fn dedicated(nodes: u32, name: &str) -> Dedicated {
        Dedicated(Self::start_named(
            nodes,
            &format!("kafka-{name}-{}", std::process::id()),
        ))
    }

    fn start_named(nodes: u32, name: &str) -> Cluster {
        let dir = super::target_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let started = Instant::now();
        let out = Command::new(super::repo().join("scripts/kafka"))
            .arg("start")
            .arg(&dir)
            .args(["--brokers", &nodes.to_string()])
            .args(["--parent", &std::process::id().to_string()])
            .output()
            .expect("run scripts/kafka");
        assert!(
            out.status.success(),
            "scripts/kafka start failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let bootstrap = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        eprintln!(
            "Apache Kafka ({nodes} node{}) ready at {bootstrap} in {:.1}s",
            if nodes == 1 { "" } else { "s" },
            started.elapsed().as_secs_f64()
        );
        Cluster { dir, bootstrap }
    }

    /// Kills node `node` (1-based) with SIGKILL.
    pub fn kill(&self, node: u32) {
        self.script("kill", node);
    }

    /// Restarts node `node` on its data and waits until it is back in sync.
    pub fn restart(&self, node: u32) {
        self.script("restart", node);
    }

    fn script(&self, what: &str, node: u32) {
        let out = Command::new(super::repo().join("scripts/kafka"))
            .arg(what)
            .arg(&self.dir)
            .arg(node.to_string())
            .output()
            .expect("run scripts/kafka");
        assert!(
            out.status.success(),
            "scripts/kafka {what} {node} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A cluster of one test's own, stopped when dropped.
#[derive(Debug)]
pub struct Dedicated(pub Cluster);

impl Drop for Dedicated {
    fn drop(&mut self) {
        let _ = Command::new(super::repo().join("scripts/kafka"))
            .arg("stop")
            .arg(&self.0.dir)
            .output();
    }
}

/// The node (1-based) leading `topic`'s `partition`.
pub fn leader_of(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    leader_of_checked(bootstrap, topic, partition).expect("partition has a leader")
}

/// The leader of a partition, if it has one now.
fn leader_of_checked(bootstrap: &str, topic: &str, partition: i32) -> Option<i32> {
    let c: BaseConsumer = client(bootstrap).create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .map(|p| p.leader())
        .filter(|&l| l >= 0)
}

/// The shared single-node broker, started on first use.
pub fn single() -> &'static Cluster {
    static ONE: OnceLock<Cluster> = OnceLock::new();
    ONE.get_or_init(|| Cluster::start(1))
}

/// Bootstrap address of the shared single-node broker.
pub fn broker() -> &'static str {
    &single().bootstrap
}

/// The shared 3-node cluster (`min.insync.replicas = 2`), for the tests of
/// replication and broker failures.
pub fn cluster3() -> &'static Cluster {
    static THREE: OnceLock<Cluster> = OnceLock::new();
    THREE.get_or_init(|| Cluster::start(3))
}

/// A client configuration for the brokers at `bootstrap`.
fn client(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Creates a topic (replication 1) on the brokers at `bootstrap`.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    create_topic_with(bootstrap, topic, partitions, 1, &[]);
}

/// Creates a topic with `replication` replicas and topic settings `config`.
pub fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication: i32,
    config: &[(&str, &str)],
) {
    let mut spec = weir::kafka::TopicSpec::new(partitions, replication);
    for (k, v) in config {
        spec.config.insert((*k).to_owned(), (*v).to_owned());
    }
    weir::kafka::ensure_topic(
        &client(bootstrap),
        &weir::kafka::Brokers::Cluster(bootstrap.to_owned()),
        topic,
        &spec,
        Duration::from_secs(10),
    )
    .unwrap();
}

/// Creates a one-partition topic whose replicas are `replicas`, the first
/// of them its leader, with topic settings `config`.
pub fn create_topic_on(bootstrap: &str, topic: &str, replicas: &[i32], config: &[(&str, &str)]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = client(bootstrap).create().unwrap();
    let assignment = [replicas];
    let mut new = NewTopic::new(topic, 1, TopicReplication::Variable(&assignment));
    for (k, v) in config {
        new = new.set(k, v);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = runtime
        .block_on(admin.create_topics([&new], &options))
        .unwrap();
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("cannot create {t}: {e}"));
    }
    super::wait_until(
        Duration::from_secs(30),
        || leader_of_checked(bootstrap, topic, 0) == Some(replicas[0]),
        || format!("{topic} has no leader {}", replicas[0]),
    );
}

/// The broker coordinating transactional id `id`: the leader of its
/// partition of `__transaction_state` (Kafka's `abs(id.hashCode()) %
/// partitions`, with the test clusters' 3 partitions).
pub fn transaction_coordinator(bootstrap: &str, id: &str) -> i32 {
    let hash = id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let partition = if hash == i32::MIN { 0 } else { hash.abs() } % 3;
    leader_of(bootstrap, "__transaction_state", partition)
}

/// A producer with librdkafka's ordinary batching (acks=all, idempotent).
fn producer(bootstrap: &str) -> BaseProducer {
    client(bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
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

/// Produces `values` (key = none) and waits until all are acknowledged.
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

/// Produces `records` to `topic` and waits until all are acknowledged.
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

/// End offsets of each partition as a `read_committed` reader sees them
/// (librdkafka's default), from ListOffsets.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    end_offsets_isolated(bootstrap, topic, partitions, "read_committed")
}

/// End offsets of `topic` per partition as a reader with `isolation`
/// sees them: the last stable offset for `read_committed` (before any open
/// transaction), the high watermark for `read_uncommitted`.
pub fn end_offsets_isolated(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Vec<i64> {
    let reader = EndOffsets::new(bootstrap, isolation);
    (0..partitions).map(|p| reader.get(topic, p)).collect()
}

/// A client kept open for asking end offsets again and again: each look
/// is one ListOffsets request, not a new connection, so two looks in a row
/// are milliseconds apart.
pub struct EndOffsets(BaseConsumer);

impl EndOffsets {
    /// A reader with `isolation` (`read_committed` or `read_uncommitted`).
    pub fn new(bootstrap: &str, isolation: &str) -> Self {
        Self(
            client(bootstrap)
                .set("isolation.level", isolation)
                .create()
                .unwrap(),
        )
    }

    /// The end offset of one partition (0 when it cannot be read).
    pub fn get(&self, topic: &str, partition: i32) -> i64 {
        self.0
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_or(0, |w| w.1)
    }
}

/// Committed offsets of `group` per partition (0 when none).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    // A partition with nothing committed (-1) is at its start: the
    // producer's sticky partitioner may leave a partition empty, and an
    // empty partition has nothing to commit.
    weir::sources::kafka::committed_offsets(bootstrap, group, topic, partitions)
        .unwrap()
        .into_iter()
        .map(|o| o.max(0))
        .collect()
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
/// the end-of-partition events librdkafka reports (read_committed:
/// records of aborted transactions are not seen).
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Record> {
    read_isolated(bootstrap, topic, partitions, "read_committed")
}

/// [`read_all`] with the isolation level `isolation` (`read_committed` or
/// `read_uncommitted`).
pub fn read_isolated(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Vec<Record> {
    use rdkafka::error::KafkaError;
    use rdkafka::message::Headers;
    let c: BaseConsumer = client(bootstrap)
        .set("group.id", "test-reader")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
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

    /// Adds the topic `topic` of `partitions` partitions (the mock does
    /// not serve CreateTopics).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.0.create_topic(topic, partitions, 1).unwrap();
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
