//! The `cassandra` sink's settings: where the cluster is, which table, how
//! event fields map to its columns, and how hard to write.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use scylla::statement::Consistency;
use serde::Deserialize;

use crate::units::Duration;

/// Settings of the `cassandra` sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassandraConfig {
    /// Contact points, `host:port` (default `["127.0.0.1:9042"]`; an
    /// element may list several, separated by commas, as an environment
    /// variable would); the driver discovers the rest of the cluster.
    #[serde(default = "default_hosts")]
    pub hosts: Vec<String>,
    /// Keyspace of the table.
    pub keyspace: String,
    /// Table the rows go to.
    pub table: String,
    /// Column ← source: a top-level JSON field of the event's value,
    /// `@timestamp` (the event time, ms) or `@key` (the event key as text).
    /// Default: every column of the table from the field of the same name.
    #[serde(default)]
    pub columns: Option<BTreeMap<String, String>>,
    /// Write consistency (default `local_quorum`).
    #[serde(default)]
    pub consistency: Level,
    /// User name and password, from the environment.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Schema to create when it is missing.
    #[serde(default)]
    pub create: Option<Create>,
    /// Requests (single rows or batches) in flight at once (default 64).
    #[serde(default)]
    pub max_in_flight: Option<usize>,
    /// Most rows of one partition written as one unlogged batch (default
    /// 20; 1 writes every row on its own).
    #[serde(default)]
    pub batch_rows: Option<usize>,
    /// Timeout of one request (default 10 s).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// How long to wait for the first connection at start (default 10 s).
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    /// How long to keep retrying a write that the cluster cannot take
    /// (nodes down, overloaded, timing out) before the stage fails
    /// (default 10 min).
    #[serde(default)]
    pub retry_for: Option<Duration>,
}

fn default_hosts() -> Vec<String> {
    vec!["127.0.0.1:9042".to_owned()]
}

/// The environment variables holding the user name and password.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Variable holding the user name.
    pub username_env: String,
    /// Variable holding the password.
    pub password_env: String,
}

/// Schema the sink creates at start when it is missing (`IF NOT EXISTS`:
/// what exists is never changed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// The keyspace's replication, for example `{ class =
    /// "SimpleStrategy", replication_factor = 1 }`.
    #[serde(default)]
    pub keyspace: Option<BTreeMap<String, Scalar>>,
    /// The table's definition: its columns and primary key, as between the
    /// parentheses of `CREATE TABLE name (...)`.
    #[serde(default)]
    pub table: Option<String>,
    /// Table options, as after `WITH` (for example `CLUSTERING ORDER BY
    /// (time DESC)`).
    #[serde(default)]
    pub with: Option<String>,
}

/// A replication option's value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A number, such as a replication factor.
    Int(i64),
    /// Text, such as a strategy's class.
    Text(String),
}

/// Consistency levels a write may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Any node, hinted hand-off included.
    Any,
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// Three replicas.
    Three,
    /// A majority of all replicas.
    Quorum,
    /// Every replica.
    All,
    /// A majority of the replicas in the local datacenter.
    #[default]
    LocalQuorum,
    /// A majority in every datacenter.
    EachQuorum,
    /// One replica in the local datacenter.
    LocalOne,
}

impl Level {
    pub(super) fn cql(self) -> Consistency {
        match self {
            Level::Any => Consistency::Any,
            Level::One => Consistency::One,
            Level::Two => Consistency::Two,
            Level::Three => Consistency::Three,
            Level::Quorum => Consistency::Quorum,
            Level::All => Consistency::All,
            Level::LocalQuorum => Consistency::LocalQuorum,
            Level::EachQuorum => Consistency::EachQuorum,
            Level::LocalOne => Consistency::LocalOne,
        }
    }
}

impl CassandraConfig {
    /// Every contact point, lists split.
    pub(super) fn contact_points(&self) -> Vec<String> {
        self.hosts
            .iter()
            .flat_map(|h| h.split(','))
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .collect()
    }

    pub(super) fn max_in_flight(&self) -> usize {
        self.max_in_flight.unwrap_or(64).max(1)
    }

    pub(super) fn batch_rows(&self) -> usize {
        self.batch_rows.unwrap_or(20).max(1)
    }

    pub(super) fn timeout(&self) -> StdDuration {
        self.timeout
            .map_or(StdDuration::from_secs(10), Duration::get)
    }

    pub(super) fn connect_timeout(&self) -> StdDuration {
        self.connect_timeout
            .map_or(StdDuration::from_secs(10), Duration::get)
    }

    pub(super) fn retry_for(&self) -> StdDuration {
        self.retry_for
            .map_or(StdDuration::from_secs(600), Duration::get)
    }

    /// Checks what can be checked without the cluster.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.contact_points().is_empty() {
            return Err("`hosts` is empty: name at least one node, as \"host:port\"".into());
        }
        identifier("keyspace", &self.keyspace)?;
        identifier("table", &self.table)?;
        if let Some(columns) = &self.columns {
            if columns.is_empty() {
                return Err("`columns` is empty: map at least one column, or leave it out to write every column from the field of the same name".into());
            }
            for (column, source) in columns {
                identifier(&format!("columns.{column}"), column)?;
                if source.is_empty() {
                    return Err(format!(
                        "`columns.{column}`: the source is empty: name a JSON field, `@timestamp` or `@key`"
                    ));
                }
                if source.starts_with('@') && !matches!(source.as_str(), "@timestamp" | "@key") {
                    return Err(format!(
                        "`columns.{column}`: unknown source {source:?}: a JSON field, `@timestamp` or `@key`"
                    ));
                }
            }
        }
        if let Some(create) = &self.create
            && let Some(def) = &create.table
            && def.trim().is_empty()
        {
            return Err("`create.table` is empty: give the table's columns and primary key".into());
        }
        Ok(())
    }
}

/// Keyspace, table and column names are CQL identifiers without quotes:
/// a letter, then letters, digits and `_`; CQL folds them to lower case.
fn identifier(setting: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 48;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{setting}`: {name:?} is not a keyspace, table or column name (a letter, then letters, digits or _, at most 48)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<CassandraConfig, String> {
        toml::from_str(&format!("keyspace = \"ks\"\ntable = \"t\"\n{extra}"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_checks() {
        let c = config("").unwrap();
        assert_eq!(c.hosts, ["127.0.0.1:9042"]);
        assert_eq!(c.consistency, Level::LocalQuorum);
        assert_eq!((c.max_in_flight(), c.batch_rows()), (64, 20));
        c.check().unwrap();
        let c = config("columns = { ts = \"@time\" }").unwrap();
        assert!(c.check().unwrap_err().contains("unknown source \"@time\""));
        let c = config("columns = { \"bad-name\" = \"x\" }").unwrap();
        assert!(c.check().unwrap_err().contains("columns.bad-name"));
        assert!(config("consistency = \"local-quorum\"").is_err());
        let c = config(
            "create = { keyspace = { class = \"SimpleStrategy\", replication_factor = 1 }, table = \"a int primary key\" }",
        )
        .unwrap();
        let create = c.create.unwrap();
        assert_eq!(
            create.keyspace.unwrap()["replication_factor"],
            Scalar::Int(1)
        );
    }
}
