//! `guarantee = "exactly-once"`: every checkpoint of the pipeline is one
//! Kafka transaction.
//!
//! One transactional producer per process serves every Kafka sink (dead
//! letters included) and the state changelog. At each checkpoint the
//! coordinator hands the checkpoint to [`ExactlyOnce::save`] once every
//! stage has answered its barrier: the plugin snapshots that changed are
//! written to a compacted changelog topic (key = stage), the sources'
//! next offsets are added with `send_offsets_to_transaction` (each source's
//! consumer-group metadata, fresh from its last barrier), and the
//! transaction commits. Sinks take no input after a barrier until that
//! commit, so what they produce after it goes into the next transaction.
//!
//! A restarted process uses the same transactional id
//! (`weir-<pipeline>-<instance_id>`): `init_transactions` fences any
//! predecessor still alive and aborts its open transaction, the consumer
//! group resumes from the committed offsets, and [`ExactlyOnce::load`] reads
//! the changelog (read_committed) for the state that goes with them. So a
//! crash at any moment repeats nothing and loses nothing for read_committed
//! readers.
//!
//! Errors follow librdkafka's classes: a retriable error is retried with
//! the same arguments until the transaction timeout; an abortable one
//! aborts the transaction, a fatal one (fenced by a newer instance) ends
//! it; either stops the pipeline, which resumes from the last commit when
//! started again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::changelog;
use super::delivery::{DeliveryContext, Producer};
use super::instance_lock::{InstanceLock, lock_dir};
use super::{Brokers, KafkaSetupError, check_reachable};
use crate::checkpoint::{CheckpointError, CheckpointStore, Saved, SavedStage};
use crate::telemetry::TransactionStats;
use calls::{TxnError, retry_bounded, retry_until};

mod calls;
mod tasks;
#[cfg(test)]
mod tests;

/// How long one transactional call may wait before it is tried again; a
/// broker that is down for longer is waited for until [`OUTAGE`].
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long retriable errors (a broker restarting, a coordinator moving)
/// are retried before the pipeline gives up on a commit.
const OUTAGE: Duration = Duration::from_secs(120);

/// How long a stopping pipeline tries to abort its open transaction.
const ABORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long past its own timeout a transactional call may take before it
/// is taken for hung.
const HUNG_AFTER: Duration = Duration::from_secs(5);

/// Ends the reason of an aborted transaction: nothing of it reached
/// read_committed readers, and starting the pipeline again resumes from the
/// last commit (`weir run` does so itself).
pub const RESUME_HINT: &str = "restart to resume from the last commit";

/// How an exactly-once pipeline talks to its cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `brokers` setting of the pipeline's Kafka stages.
    pub brokers: Brokers,
    /// librdkafka settings for every client (security, timeouts).
    pub client: Vec<(String, String)>,
    /// `weir-<pipeline>-<instance_id>`.
    pub transactional_id: String,
    /// The compacted topic plugin state goes to, shared by every process
    /// of the pipeline.
    pub changelog: String,
    /// Partitions of the pipeline's Kafka input (the largest of its
    /// topics): the changelog has as many.
    pub input_partitions: i32,
    /// How long a transaction may stay open before the broker aborts it.
    pub transaction_timeout: Duration,
}

/// Where the transaction stands, for sinks waiting on a commit.
#[derive(Debug, Clone, Default)]
pub struct TxnState {
    /// The last checkpoint committed.
    pub committed: u64,
    /// Why transactions stopped, if they did.
    pub failed: Option<String>,
}

/// The transaction of an exactly-once pipeline.
pub struct ExactlyOnce {
    settings: Settings,
    bootstrap: String,
    /// Shared with the threads that run calls librdkafka may not end
    /// (see [`retry_bounded`]).
    producer: Arc<Producer>,
    state: watch::Sender<TxnState>,
    /// How to get each Kafka source's consumer-group metadata, fresh at
    /// each commit (a rebalance since the barrier changes its generation).
    groups: Mutex<HashMap<String, GroupMetadata>>,
    /// The positions last committed per source: unchanged ones (a source
    /// that has finished) are not sent again, so a group its member has
    /// long left is not asked to take them.
    committed_positions: Mutex<BTreeMap<String, serde_json::Value>>,
    /// The snapshot last committed per changelog key (a stage, or a
    /// stage's task): unchanged ones are not written again.
    committed_states: Mutex<BTreeMap<String, SavedStage>>,
    /// Partitions of the changelog (the input's).
    changelog_partitions: i32,
    stats: Arc<TransactionStats>,
    /// When the open transaction began: a fence after it was open longer
    /// than the transaction timeout is the broker's abort, not a rival.
    opened: Mutex<Instant>,
    /// This host's claim on the transactional id, while this producer may
    /// use it: released when the producer is given up for hung, so the
    /// pipeline can start again in this process (the new producer fences
    /// the stuck one).
    lock: Mutex<Option<InstanceLock>>,
}

impl std::fmt::Debug for ExactlyOnce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExactlyOnce")
            .field("transactional_id", &self.settings.transactional_id)
            .finish_non_exhaustive()
    }
}

impl ExactlyOnce {
    /// Connects, creates the changelog topic if needed, and takes over the
    /// transactional id: a predecessor is fenced and its open transaction
    /// aborted. Blocks (seconds at most, bounded by the transaction
    /// timeout).
    pub fn start(
        settings: Settings,
        stats: Arc<TransactionStats>,
    ) -> Result<Arc<ExactlyOnce>, KafkaSetupError> {
        let bootstrap = settings.brokers.bootstrap()?;
        let lock = InstanceLock::take(&lock_dir(), &settings.transactional_id)
            .map_err(KafkaSetupError::Transactions)?;
        let timeout_ms = settings
            .transaction_timeout
            .as_millis()
            .max(1000)
            .to_string();
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &bootstrap);
        // The user's settings first, then what transactions require.
        for (k, v) in &settings.client {
            config.set(k, v);
        }
        if config.get("message.max.bytes").is_none() {
            config.set("message.max.bytes", changelog::MAX_RECORD_BYTES);
        }
        config
            .set("transactional.id", &settings.transactional_id)
            .set("transaction.timeout.ms", &timeout_ms)
            // librdkafka refuses a message timeout above the transaction's.
            .set("message.timeout.ms", &timeout_ms)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("client.id", &settings.transactional_id);
        if config.get("linger.ms").is_none() {
            config.set("linger.ms", "5");
        }
        // Right after a commit the coordinator answers the next
        // transaction's first requests with CONCURRENT_TRANSACTIONS until
        // its markers are written (a few ms); librdkafka's default 100 ms
        // backoff would stall every checkpoint by that much.
        if config.get("retry.backoff.ms").is_none() {
            config.set("retry.backoff.ms", "5");
        }
        let connect = Duration::from_secs(10);
        check_reachable(&config, &settings.brokers, connect)?;
        let changelog_partitions = changelog::ensure(
            &config,
            &settings.brokers,
            &settings.changelog,
            settings.input_partitions,
            connect,
        )?;
        let producer: Producer = config
            .create_with_context(DeliveryContext)
            .map_err(KafkaSetupError::Settings)?;
        let deadline = Instant::now() + settings.transaction_timeout + connect;
        retry_until(deadline, || producer.init_transactions(connect)).map_err(|e| {
            KafkaSetupError::Transactions(format!(
                "cannot take over transactional id {}: {}",
                settings.transactional_id,
                String::from(e)
            ))
        })?;
        producer.begin_transaction().map_err(|e| {
            KafkaSetupError::Transactions(format!("cannot begin a transaction: {e}"))
        })?;
        let _ = stats
            .transactional_id
            .set(settings.transactional_id.clone());
        tracing::info!(
            transactional_id = settings.transactional_id,
            changelog = settings.changelog,
            "exactly-once: transactional id taken over; transactions begin"
        );
        Ok(Arc::new(ExactlyOnce {
            settings,
            bootstrap,
            producer: Arc::new(producer),
            state: watch::Sender::new(TxnState::default()),
            groups: Mutex::new(HashMap::new()),
            committed_positions: Mutex::new(BTreeMap::new()),
            lock: Mutex::new(Some(lock)),
            committed_states: Mutex::new(BTreeMap::new()),
            changelog_partitions,
            stats,
            opened: Mutex::new(Instant::now()),
        }))
    }

    /// The transactional producer the pipeline's Kafka sinks produce with.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.settings.transactional_id
    }

    /// How to get a Kafka source's consumer-group metadata: its offsets
    /// are committed in the transaction under the group as it is at the
    /// commit.
    pub fn register_group(
        &self,
        source: &str,
        metadata: impl Fn() -> Option<ConsumerGroupMetadata> + Send + Sync + 'static,
    ) {
        self.groups
            .lock()
            .expect("groups lock")
            .insert(source.to_owned(), Box::new(metadata));
    }

    /// Waits until checkpoint `id` (or a later one) has committed; `Err`
    /// with the reason when transactions have stopped.
    pub async fn committed(&self, id: u64) -> Result<(), String> {
        let mut rx = self.state.subscribe();
        let state = rx
            .wait_for(|s| s.committed >= id || s.failed.is_some())
            .await
            .map_err(|_| "the transaction has ended".to_owned())?;
        match &state.failed {
            Some(reason) if state.committed < id => Err(reason.clone()),
            _ => Ok(()),
        }
    }

    /// Stops transactions: whatever waits for a commit fails with `reason`.
    pub fn fail(&self, reason: &str) {
        self.state.send_modify(|s| {
            s.failed.get_or_insert_with(|| reason.to_owned());
        });
    }

    /// At the end of a run that succeeded: the last checkpoint committed
    /// everything, so the transaction begun after it holds nothing worth
    /// keeping (or the tail of a drain that did not reach a final
    /// checkpoint, which the next start processes again). Aborted, so it
    /// does not stay open until the broker's timeout.
    pub fn close(&self) {
        if let Err(e) = self.end("the pipeline finished") {
            tracing::debug!(error = %e, "closing the last transaction");
        }
    }

    /// Aborts the open transaction (the pipeline stopped without
    /// committing it), so read_committed readers are not held back until
    /// the broker's timeout.
    pub fn abort(&self) {
        match self.end("the pipeline stopped") {
            Ok(()) => {
                self.stats.aborted();
                tracing::info!(
                    transactional_id = self.settings.transactional_id,
                    "open transaction aborted"
                );
            }
            Err(e) => tracing::debug!(error = %e, "abort on the way out"),
        }
    }

    /// Ends transactions: whatever waits for a commit fails with `reason`;
    /// the open transaction is aborted, bounded by [`ABORT_TIMEOUT`] (with
    /// the coordinator out of reach the broker aborts it itself after
    /// `transaction_timeout`, and the next start fences it; a stopping
    /// process need not wait that long); the transactional id is released
    /// for a restart in this process; and last, outside any lock, the
    /// sources' consumers are dropped: they leave their groups, which may
    /// wait on a coordinator that is gone.
    fn end(&self, reason: &str) -> Result<(), KafkaError> {
        self.fail(reason);
        let aborted = self
            .producer
            .abort_transaction(self.settings.transaction_timeout.min(ABORT_TIMEOUT));
        self.lock.lock().expect("lock lock").take();
        let consumers = std::mem::take(&mut *self.groups.lock().expect("groups lock"));
        drop(consumers);
        aborted
    }

    /// Why the transaction cannot go on, from a failure's text and the
    /// producer's fatal error (a fence reaches a sink as a failed delivery
    /// first): a fence is named as such.
    pub fn explain(&self, failure: &str) -> String {
        let fatal = self
            .producer
            .client()
            .fatal_error()
            .map(|(code, text)| format!("{code:?}: {text}"));
        let seen = format!("{failure} {}", fatal.as_deref().unwrap_or_default()).to_lowercase();
        let open = self.opened.lock().expect("opened lock").elapsed();
        let timeout = self.settings.transaction_timeout;
        if (seen.contains("fenced") || seen.contains("producer_epoch")) && open > timeout {
            // Paused or stalled past the timeout: the broker aborted the
            // transaction and bumped the epoch. Nobody else holds the id.
            format!(
                "transactional id {} was fenced ({}): its transaction was open {} s, longer than transaction_timeout ({} s; was the process paused?), so the broker aborted it; {RESUME_HINT}",
                self.settings.transactional_id,
                fatal.as_deref().unwrap_or(failure),
                open.as_secs(),
                timeout.as_secs()
            )
        } else if seen.contains("fenced") || seen.contains("producer_epoch") {
            format!(
                "transactional id {} was fenced ({}): another process took it over; this instance stops",
                self.settings.transactional_id,
                fatal.as_deref().unwrap_or(failure),
            )
        } else if fatal.is_none() && (open > timeout || seen.contains("timed out")) {
            // Not fenced, but a record of the transaction was not delivered
            // in time (the process was paused, or the broker out of reach):
            // the transaction can only be aborted, which loses nothing, as
            // its offsets commit with it.
            format!(
                "a record was not delivered in time ({failure}; the transaction was open {} s, transaction_timeout {} s), so the transaction is aborted; {RESUME_HINT}",
                open.as_secs(),
                timeout.as_secs()
            )
        } else {
            format!("transactions cannot go on: {failure}")
        }
    }

    /// Adds the sources' offsets to the transaction.
    fn send_offsets(&self, saved: &Saved, deadline: Instant) -> Result<(), TxnError> {
        let committed = self
            .committed_positions
            .lock()
            .expect("positions lock")
            .clone();
        for (source, position) in &saved.sources {
            if committed.get(source) == Some(position) {
                continue;
            }
            let Some(positions) = position.as_object() else {
                continue;
            };
            let mut tpl = TopicPartitionList::new();
            for (tp, offset) in positions {
                let parsed = tp
                    .rsplit_once('/')
                    .and_then(|(t, p)| Some((t, p.parse::<i32>().ok()?, offset.as_i64()?)));
                if let Some((topic, partition, offset)) = parsed {
                    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
                        .map_err(|e| TxnError::Fatal(e.to_string()))?;
                }
            }
            if tpl.count() == 0 {
                continue;
            }
            // Not held during the call: a stopping pipeline clears it.
            let metadata = self
                .groups
                .lock()
                .expect("groups lock")
                .get(source)
                .and_then(|m| m())
                .ok_or_else(|| {
                    TxnError::Fatal(format!(
                        "source `{source}` reported offsets without its consumer group"
                    ))
                })?;
            let producer = self.producer.clone();
            retry_bounded(
                deadline,
                CALL_TIMEOUT + HUNG_AFTER,
                "send_offsets_to_transaction",
                move || producer.send_offsets_to_transaction(&tpl, &metadata, CALL_TIMEOUT),
            )?;
        }
        Ok(())
    }

    /// Waits until every record of the transaction is delivered.
    /// `commit_transaction` flushes too, but rdkafka's flush waits for
    /// delivery reports in 100 ms polls that the threaded producer's own
    /// thread answers instead, which costs up to 100 ms per commit; a
    /// zero-timeout flush (which also ends the linger at once) checked
    /// every millisecond leaves the commit nothing to wait for.
    fn flush(&self, deadline: Instant) -> Result<(), TxnError> {
        loop {
            match self.producer.flush(Duration::ZERO) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    return Err(TxnError::Abortable(format!(
                        "flushing the transaction: {e}"
                    )));
                }
            }
        }
    }

    fn commit(&self, saved: &Saved) -> Result<(), TxnError> {
        let started = Instant::now();
        let deadline = started + OUTAGE.max(self.settings.transaction_timeout);
        let written = self
            .write_states(saved.id, saved)
            .map_err(TxnError::Abortable)?;
        let states_written = started.elapsed();
        self.send_offsets(saved, deadline)?;
        let offsets_sent = started.elapsed();
        self.flush(deadline)?;
        retry_until(deadline, || self.producer.commit_transaction(CALL_TIMEOUT))?;
        tracing::debug!(
            checkpoint = saved.id,
            states = written.len(),
            states_us = states_written.as_micros() as u64,
            offsets_us = (offsets_sent - states_written).as_micros() as u64,
            commit_us = (started.elapsed() - offsets_sent).as_micros() as u64,
            "transaction committed"
        );
        self.committed_states
            .lock()
            .expect("states lock")
            .extend(written);
        self.committed_positions
            .lock()
            .expect("positions lock")
            .extend(saved.sources.clone());
        self.stats.committed(saved.id, started.elapsed());
        // The next transaction is open before sinks hear of the commit:
        // what they produce next belongs to it.
        self.producer
            .begin_transaction()
            .map_err(|e| TxnError::Fatal(format!("cannot begin the next transaction: {e}")))?;
        *self.opened.lock().expect("opened lock") = Instant::now();
        self.state.send_modify(|s| s.committed = saved.id);
        Ok(())
    }
}

/// Gets a source's consumer-group metadata as it is now.
type GroupMetadata = Box<dyn Fn() -> Option<ConsumerGroupMetadata> + Send + Sync>;

impl CheckpointStore for ExactlyOnce {
    /// The state committed with the group's offsets: every stage's last
    /// changelog record, read read_committed up to the end.
    fn load(&self) -> Result<Option<Saved>, CheckpointError> {
        let fail = |reason: String| CheckpointError::Write {
            store: format!("changelog {}", self.settings.changelog),
            reason,
        };
        let found = changelog::read(
            &self.bootstrap,
            &self.settings.client,
            &format!("{}-restore", self.settings.transactional_id),
            &self.settings.changelog,
            &[0],
            OUTAGE,
        )
        .map_err(fail)?;
        // Stages' own state; tasks' state is read when their partitions
        // are assigned.
        let stages: BTreeMap<String, SavedStage> = found
            .states
            .into_iter()
            .filter(|(key, _)| changelog::parse_key(key).1.is_none())
            .collect();
        if found.checkpoint == 0 && stages.is_empty() {
            return Ok(None);
        }
        self.committed_states
            .lock()
            .expect("states lock")
            .extend(stages.clone());
        self.state.send_modify(|s| s.committed = found.checkpoint);
        Ok(Some(Saved {
            id: found.checkpoint,
            stages,
            ..Saved::default()
        }))
    }

    fn save(&self, saved: &Saved) -> Result<(), CheckpointError> {
        match self.commit(saved) {
            Ok(()) => Ok(()),
            Err(TxnError::Abortable(reason)) => {
                let aborted = self
                    .producer
                    .abort_transaction(self.settings.transaction_timeout);
                self.stats.aborted();
                if self.producer.client().fatal_error().is_some() {
                    // The producer itself failed under the transaction: a
                    // fence (another process took the transactional id
                    // over) reaches a state write or the flush as a failed
                    // send first. Nothing can be aborted, and whether a
                    // restart may resume is for `explain` to say: not
                    // when a rival holds the id.
                    let failure = match &aborted {
                        Err(e) => format!("{reason}; the abort failed: {e}"),
                        Ok(()) => reason,
                    };
                    let reason = self.explain(&failure);
                    self.fail(&reason);
                    return Err(CheckpointError::Fatal(reason));
                }
                let reason = format!(
                    "transaction of checkpoint {} aborted ({reason}){}; {RESUME_HINT}",
                    saved.id,
                    aborted
                        .err()
                        .map_or(String::new(), |e| format!(", and the abort failed: {e}"))
                );
                self.fail(&reason);
                Err(CheckpointError::Fatal(reason))
            }
            Err(TxnError::Fatal(reason)) => {
                let reason = self.explain(&reason);
                self.fail(&reason);
                Err(CheckpointError::Fatal(reason))
            }
            Err(TxnError::Hung(reason)) => {
                // This producer is lost with the call; a new one (after a
                // restart) takes the transactional id over and fences it.
                self.lock.lock().expect("lock lock").take();
                let reason = format!(
                    "transaction of checkpoint {} given up ({reason}); {RESUME_HINT}",
                    saved.id
                );
                self.fail(&reason);
                Err(CheckpointError::Fatal(reason))
            }
        }
    }

    /// Retriable errors are retried for [`OUTAGE`]; one call more, and a
    /// commit is hung.
    fn save_limit(&self) -> Duration {
        OUTAGE.max(self.settings.transaction_timeout) + 2 * CALL_TIMEOUT
    }

    /// Sinks waiting for a commit stop waiting: the pipeline is going down
    /// and the open transaction will be aborted.
    fn give_up(&self, reason: &str) {
        self.fail(reason);
    }

    fn describe(&self) -> String {
        format!(
            "Kafka transactions ({}, changelog {})",
            self.settings.transactional_id, self.settings.changelog
        )
    }
}
