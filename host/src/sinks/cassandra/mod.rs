//! `type = "cassandra"`: rows in an Apache Cassandra (or ScyllaDB) table.
//!
//! ```toml
//! [sinks.store]
//! type = "cassandra"
//! inputs = ["sensor"]
//! hosts = ["127.0.0.1:9042"]                 # contact points (default)
//! keyspace = "sensors"
//! table = "readings"
//! columns = { device = "device", time = "@timestamp", temperature = "temperature", humidity = "humidity" }
//! consistency = "local_quorum"               # default
//! credentials = { username_env = "CASSANDRA_USER", password_env = "CASSANDRA_PASSWORD" }
//! create = { keyspace = { class = "SimpleStrategy", replication_factor = 1 }, table = "device text, time timestamp, temperature float, humidity float, PRIMARY KEY ((device), time)" }
//! max_in_flight = 64                         # requests at once
//! batch_rows = 20                            # rows of one partition per unlogged batch
//! dead_letter = "bad_rows"
//! ```
//!
//! Each event becomes one row, written with the prepared statement
//! `INSERT INTO ks.t JSON ? DEFAULT UNSET USING TIMESTAMP ?`: an upsert by
//! primary key, so a replay after a crash rewrites the same rows instead
//! of adding any. Cassandra converts the event's values to the column
//! types; a row it refuses for its content (a text where a float goes, a
//! missing key column) goes to the dead-letter output with Cassandra's
//! message. Nodes that are down, overloaded or timing out are retried with
//! backoff (counted in `weir_sink_retries_total`, logged) for up to
//! `retry_for`; input batches are acknowledged upstream in order, once all
//! their rows are written, so Kafka offsets follow the table. A keyspace or
//! table that does not exist stops the sink at start with its name, unless
//! `create` says how to create it.

mod outcome;
mod rows;
mod schema;
mod settings;
mod writer;

use futures_util::FutureExt;

pub use settings::{CassandraConfig, Create, Credentials, Level, Scalar};

use crate::stage::{BoxError, Component, Item, Sink, SinkContext, StageTask};

impl Sink for CassandraConfig {
    fn build(&self, mut ctx: SinkContext) -> Result<StageTask, BoxError> {
        self.check()?;
        let config = self.clone();
        Ok(async move {
            let result = async {
                let target = schema::open(&config).await?;
                tracing::info!(
                    hosts = %config.hosts.join(","),
                    keyspace = %config.keyspace,
                    table = %config.table,
                    "writing to Cassandra"
                );
                writer::Writer::new(target, config.clone())
                    .run(&mut ctx)
                    .await
            }
            .await;
            if result.is_err() {
                // What waits in the input was not written either: the
                // sources must not commit it.
                while let Some(Some(item)) = ctx.input.recv().now_or_never() {
                    if let Item::Batch(batch) = item {
                        batch.acks.fail();
                    }
                }
            }
            result
        }
        .boxed())
    }
}

impl Component for CassandraConfig {}
