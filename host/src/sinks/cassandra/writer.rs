//! The `cassandra` sink's write loop: rows of each input batch grouped by
//! partition into requests, up to `max_in_flight` requests at once, the
//! ones the cluster cannot take now retried with backoff, rows it refuses
//! dead-lettered, and input batches released (their acknowledgements
//! dropped) strictly in arrival order once every row is written or
//! dead-lettered.
//!
//! Every row carries its write time (`USING TIMESTAMP`), taken when the
//! row arrives and increasing from row to row, so the last event for a
//! primary key wins however requests overtake each other or are retried,
//! and a replay after a crash writes the same values again.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use scylla::client::session::Session;
use scylla::errors::ExecutionError;
use scylla::statement::batch::{Batch as CqlBatch, BatchStatement, BatchType};
use scylla::statement::prepared::PreparedStatement;

use super::outcome::{Failure, classify};
use super::rows::Mapping;
use super::schema::Target;
use super::settings::CassandraConfig;
use crate::event::{Batch, Event};
use crate::stage::{BoxError, Item, SinkContext};
use crate::telemetry::StageMetrics;

/// One row bound for the insert.
struct Bound {
    /// Index of its event in the input batch.
    index: usize,
    json: String,
    /// Write time, µs since the epoch.
    written_at: i64,
}

/// One request: a row, or an unlogged batch of rows of one partition.
struct Request {
    /// Which input batch (its sequence number) the rows come from.
    batch: u64,
    rows: Vec<Bound>,
    /// Failed attempts so far.
    attempts: u32,
    /// When its first attempt failed.
    failing_since: Option<Instant>,
}

/// An input batch whose rows are not all settled.
struct Pending {
    batch: Batch,
    left: usize,
    dead: Vec<(usize, String)>,
    arrived: Instant,
}

type Flight = Pin<Box<dyn Future<Output = (Request, Result<(), ExecutionError>)> + Send>>;

/// The writer's state between input batches.
pub(super) struct Writer {
    session: Arc<Session>,
    insert: PreparedStatement,
    mapping: Mapping,
    config: CassandraConfig,
    /// Last write time given out, µs.
    clock: i64,
    /// Input batches not yet released, oldest first; `first` is the
    /// sequence number of the front one.
    pending: VecDeque<Pending>,
    first: u64,
    /// Requests waiting for a slot.
    queue: VecDeque<Request>,
    in_flight: FuturesUnordered<Flight>,
    /// Since when writes have been failing, and how many retries since.
    outage: Option<(Instant, u64)>,
    last_warning: Option<Instant>,
}

impl Writer {
    pub(super) fn new(target: Target, config: CassandraConfig) -> Writer {
        Writer {
            session: target.session,
            insert: target.insert,
            mapping: target.mapping,
            config,
            clock: 0,
            pending: VecDeque::new(),
            first: 0,
            queue: VecDeque::new(),
            in_flight: FuturesUnordered::new(),
            outage: None,
            last_warning: None,
        }
    }

    /// Writes everything the input brings, until it closes.
    pub(super) async fn run(mut self, ctx: &mut SinkContext) -> Result<(), BoxError> {
        let max = self.config.max_in_flight();
        let mut closed = false;
        let result = loop {
            while self.in_flight.len() < max
                && let Some(r) = self.queue.pop_front()
            {
                self.launch(r, None);
            }
            let can_take = !closed && self.queue.is_empty() && self.in_flight.len() < max;
            if closed && self.in_flight.is_empty() && self.queue.is_empty() {
                break Ok(());
            }
            tokio::select! {
                biased;
                Some((request, outcome)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    if let Err(e) = self.settle(request, outcome, &ctx.metrics) {
                        break Err(e);
                    }
                }
                item = ctx.input.recv(), if can_take => match item {
                    None => closed = true,
                    Some(Item::Batch(batch)) => self.accept(batch, &ctx.metrics),
                    Some(Item::Barrier { id, .. }) => {
                        // Everything received before the barrier is written
                        // before the barrier is acknowledged.
                        if let Err(e) = self.drain(ctx).await {
                            break Err(e);
                        }
                        ctx.reporter.sink_ready(id);
                    }
                    Some(Item::End | Item::Revoked { .. }) => {}
                },
            }
            self.release(ctx).await;
        };
        if result.is_err() {
            // Not written: the sources must not commit these records.
            for p in &self.pending {
                p.batch.acks.fail();
            }
        }
        result
    }

    /// Settles every request in flight or queued.
    async fn drain(&mut self, ctx: &mut SinkContext) -> Result<(), BoxError> {
        let max = self.config.max_in_flight();
        loop {
            while self.in_flight.len() < max
                && let Some(r) = self.queue.pop_front()
            {
                self.launch(r, None);
            }
            let Some((request, outcome)) = self.in_flight.next().await else {
                break;
            };
            self.settle(request, outcome, &ctx.metrics)?;
            self.release(ctx).await;
        }
        self.release(ctx).await;
        Ok(())
    }

    /// Turns an input batch into requests: rows of one partition together
    /// (at most `batch_rows` a request), others alone.
    fn accept(&mut self, batch: Batch, metrics: &StageMetrics) {
        StageMetrics::add(&metrics.events_in, batch.events.len() as u64);
        let seq = self.first + self.pending.len() as u64;
        let per_request = self.config.batch_rows();
        let mut dead = Vec::new();
        let mut groups: indexmap::IndexMap<String, Vec<Bound>> = indexmap::IndexMap::new();
        let mut rows = 0;
        for (index, event) in batch.events.iter().enumerate() {
            match self.mapping.row(event) {
                Ok(row) => {
                    rows += 1;
                    let bound = Bound {
                        index,
                        json: row.json,
                        written_at: self.tick(),
                    };
                    match row.partition {
                        Some(key) if per_request > 1 => {
                            let group = groups.entry(key).or_default();
                            group.push(bound);
                            if group.len() == per_request {
                                let rows = std::mem::take(group);
                                self.queue.push_back(request(seq, rows));
                            }
                        }
                        _ => self.queue.push_back(request(seq, vec![bound])),
                    }
                }
                Err(reason) => dead.push((index, reason)),
            }
        }
        for (_, rows) in groups {
            if !rows.is_empty() {
                self.queue.push_back(request(seq, rows));
            }
        }
        self.pending.push_back(Pending {
            batch,
            left: rows,
            dead,
            arrived: Instant::now(),
        });
    }

    /// The next write time: now, or one µs after the last one.
    fn tick(&mut self) -> i64 {
        let now = crate::util::now_ms() * 1000;
        self.clock = now.max(self.clock + 1);
        self.clock
    }

    fn launch(&mut self, request: Request, delay: Option<Duration>) {
        let session = self.session.clone();
        let insert = self.insert.clone();
        let consistency = self.config.consistency.cql();
        let timeout = self.config.timeout();
        self.in_flight.push(Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            let outcome = if request.rows.len() == 1 {
                let row = &request.rows[0];
                session
                    .execute_unpaged(&insert, (row.json.as_str(), row.written_at))
                    .await
                    .map(drop)
            } else {
                let mut batch = CqlBatch::new_with_statements(
                    BatchType::Unlogged,
                    vec![BatchStatement::PreparedStatement(insert); request.rows.len()],
                );
                batch.set_consistency(consistency);
                batch.set_request_timeout(Some(timeout));
                batch.set_is_idempotent(true);
                let values: Vec<(&str, i64)> = request
                    .rows
                    .iter()
                    .map(|r| (r.json.as_str(), r.written_at))
                    .collect();
                session.batch(&batch, values).await.map(drop)
            };
            (request, outcome)
        }));
    }

    /// Books the outcome of one request.
    fn settle(
        &mut self,
        mut request: Request,
        outcome: Result<(), ExecutionError>,
        metrics: &StageMetrics,
    ) -> Result<(), BoxError> {
        let at = (request.batch - self.first) as usize;
        let error = match outcome {
            Ok(()) => {
                let n = request.rows.len();
                self.pending[at].left -= n;
                StageMetrics::add(&metrics.events_out, n as u64);
                if let Some((since, retries)) = self.outage.take() {
                    tracing::info!(
                        outage_ms = since.elapsed().as_millis() as u64,
                        retries,
                        "Cassandra takes writes again"
                    );
                    self.last_warning = None;
                }
                return Ok(());
            }
            Err(e) => e,
        };
        StageMetrics::add(&metrics.errors, 1);
        match classify(&error) {
            Failure::Content(_) if request.rows.len() > 1 => {
                // One of the rows is at fault: find it by writing each alone.
                let batch = request.batch;
                for row in request.rows.drain(..).rev() {
                    self.queue.push_front(self::request(batch, vec![row]));
                }
            }
            Failure::Content(reason) => {
                let row = &request.rows[0];
                let pending = &mut self.pending[at];
                pending.left -= 1;
                pending
                    .dead
                    .push((row.index, format!("Cassandra refused the row: {reason}")));
            }
            Failure::Retry(reason) => {
                let since = *request.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= self.config.retry_for() {
                    return Err(format!(
                        "Cassandra has not taken a write for {:?} ({} attempts); last error: {reason}",
                        since.elapsed(),
                        request.attempts + 1
                    )
                    .into());
                }
                // 100 ms, doubling, at most 5 s.
                let delay = Duration::from_millis(100)
                    .saturating_mul(1 << request.attempts.min(6))
                    .min(Duration::from_secs(5));
                request.attempts += 1;
                StageMetrics::add(&metrics.retries, 1);
                let outage = self.outage.get_or_insert((Instant::now(), 0));
                outage.1 += 1;
                let quiet = self
                    .last_warning
                    .is_some_and(|t| t.elapsed() < Duration::from_secs(5));
                if !quiet {
                    tracing::warn!(
                        reason,
                        failing_ms = outage.0.elapsed().as_millis() as u64,
                        retries = outage.1,
                        in_flight = self.in_flight.len(),
                        "Cassandra write failed; retrying"
                    );
                    self.last_warning = Some(Instant::now());
                }
                self.launch(request, Some(delay));
            }
            Failure::Fatal(reason) => return Err(reason.into()),
        }
        Ok(())
    }

    /// Releases settled input batches from the front, in arrival order:
    /// dead letters first, then the batch's acknowledgements.
    async fn release(&mut self, ctx: &mut SinkContext) {
        while self.pending.front().is_some_and(|p| p.left == 0) {
            let p = self.pending.pop_front().expect("checked");
            self.first += 1;
            if !p.dead.is_empty() {
                let events: Vec<(Event, String)> = p
                    .dead
                    .into_iter()
                    .map(|(i, reason)| (p.batch.events[i].clone(), reason))
                    .collect();
                ctx.dead_letters.send(events, p.batch.acks.clone()).await;
            }
            ctx.metrics.record_batch(p.arrived.elapsed());
            drop(p.batch); // every row written or dead-lettered
        }
    }
}

fn request(batch: u64, rows: Vec<Bound>) -> Request {
    Request {
        batch,
        rows,
        attempts: 0,
        failing_since: None,
    }
}
