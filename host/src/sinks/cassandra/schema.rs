//! Start-up of the `cassandra` sink: the session, the keyspace and table
//! (checked, or created when `create` says how), the column mapping checked
//! against the table, and the prepared insert.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::prepared::PreparedStatement;

use super::rows::{Mapping, Source};
use super::settings::{CassandraConfig, Scalar};
use crate::util::{env_setting, suggest};

/// A column of the table, as `system_schema.columns` describes it.
#[derive(Debug, Clone)]
pub(super) struct Column {
    pub name: String,
    /// `partition_key`, `clustering` or `regular`.
    pub kind: String,
    pub position: i32,
}

/// What the writer needs: the session, the prepared insert and the mapping.
pub(super) struct Target {
    pub session: Arc<Session>,
    pub insert: PreparedStatement,
    pub mapping: Mapping,
}

/// Connects, makes sure the keyspace and table are there, and prepares
/// `INSERT INTO ks.t JSON ? DEFAULT UNSET USING TIMESTAMP ?`.
pub(super) async fn open(config: &CassandraConfig) -> Result<Target, String> {
    let contact_points = config.contact_points();
    let hosts = contact_points.join(", ");
    let mut builder = SessionBuilder::new()
        .known_nodes(&contact_points)
        .connection_timeout(config.connect_timeout());
    if let Some(c) = &config.credentials {
        let user = env_setting("credentials.username_env", &c.username_env)?;
        let password = env_setting("credentials.password_env", &c.password_env)?;
        builder = builder.user(user, password);
    }
    let session = builder
        .build()
        .await
        .map_err(|e| format!("cannot connect to Cassandra at {hosts}: {e}"))?;
    let keyspace = config.keyspace.to_lowercase();
    let table = config.table.to_lowercase();

    let keyspaces = names(
        &session,
        "SELECT keyspace_name FROM system_schema.keyspaces",
        (),
    )
    .await?;
    if !keyspaces.contains(&keyspace) {
        match config.create.as_ref().and_then(|c| c.keyspace.as_ref()) {
            Some(replication) => {
                let options: Vec<String> = replication
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Scalar::Int(i) => i.to_string(),
                            Scalar::Text(s) => s.clone(),
                        };
                        format!("'{}': '{}'", k.replace('\'', "''"), v.replace('\'', "''"))
                    })
                    .collect();
                let cql = format!(
                    "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {{{}}}",
                    options.join(", ")
                );
                ddl(&session, &cql).await?;
                tracing::info!(keyspace, "created keyspace");
            }
            None => {
                let user: Vec<&str> = keyspaces
                    .iter()
                    .map(String::as_str)
                    .filter(|k| !k.starts_with("system"))
                    .collect();
                return Err(format!(
                    "keyspace {keyspace:?} does not exist on the Cassandra cluster at {hosts}{}; create it, or set `create.keyspace` (its replication) to have weir create it",
                    did_you_mean(&keyspace, user)
                ));
            }
        }
    }

    let tables = names(
        &session,
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
        (&keyspace,),
    )
    .await?;
    if !tables.contains(&table) {
        let create = config.create.as_ref();
        match create.and_then(|c| c.table.as_ref()) {
            Some(def) => {
                let with = create
                    .and_then(|c| c.with.as_deref())
                    .map(|w| format!(" WITH {w}"))
                    .unwrap_or_default();
                let cql = format!("CREATE TABLE IF NOT EXISTS {keyspace}.{table} ({def}){with}");
                ddl(&session, &cql).await?;
                tracing::info!(keyspace, table, "created table");
            }
            None => {
                return Err(format!(
                    "table {keyspace}.{table} does not exist{}; create it, or set `create.table` (its columns and primary key) to have weir create it",
                    did_you_mean(&table, tables.iter().map(String::as_str))
                ));
            }
        }
    }

    let columns = columns(&session, &keyspace, &table).await?;
    let mapping = mapping(config, &keyspace, &table, &columns)?;
    let mut insert = session
        .prepare(format!(
            "INSERT INTO {keyspace}.{table} JSON ? DEFAULT UNSET USING TIMESTAMP ?"
        ))
        .await
        .map_err(|e| {
            format!("Cassandra could not prepare the insert into {keyspace}.{table}: {e}")
        })?;
    insert.set_consistency(config.consistency.cql());
    insert.set_request_timeout(Some(config.timeout()));
    // An upsert with a fixed write time: sending it twice is harmless.
    insert.set_is_idempotent(true);
    Ok(Target {
        session: Arc::new(session),
        insert,
        mapping,
    })
}

/// Checks `columns` against the table (or maps every column from its
/// field) and finds the partition key.
fn mapping(
    config: &CassandraConfig,
    keyspace: &str,
    table: &str,
    columns: &[Column],
) -> Result<Mapping, String> {
    let mut mapped: Vec<(String, Source)> = Vec::new();
    match &config.columns {
        Some(map) => {
            for (name, source) in map {
                let lower = name.to_lowercase();
                let Some(column) = columns.iter().find(|c| c.name == lower) else {
                    return Err(format!(
                        "`columns.{name}`: table {keyspace}.{table} has no column {lower:?}{} (its columns: {})",
                        did_you_mean(&lower, columns.iter().map(|c| c.name.as_str())),
                        columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                };
                if mapped.iter().any(|(n, _)| *n == column.name) {
                    return Err(format!(
                        "`columns` maps column {lower:?} twice (names are not case-sensitive)"
                    ));
                }
                mapped.push((column.name.clone(), Source::parse(source)));
            }
            let keys = columns
                .iter()
                .filter(|c| matches!(c.kind.as_str(), "partition_key" | "clustering"));
            for key in keys {
                if !mapped.iter().any(|(n, _)| *n == key.name) {
                    return Err(format!(
                        "`columns` does not map {:?}, a column of the primary key of {keyspace}.{table}: every row needs it",
                        key.name
                    ));
                }
            }
        }
        None => {
            for c in columns {
                mapped.push((c.name.clone(), Source::Field(c.name.clone())));
            }
        }
    }
    let mut partition: Vec<&Column> = columns
        .iter()
        .filter(|c| c.kind == "partition_key")
        .collect();
    partition.sort_by_key(|c| c.position);
    let partition = partition
        .iter()
        .filter_map(|key| mapped.iter().position(|(n, _)| *n == key.name))
        .collect();
    Ok(Mapping::new(mapped, partition))
}

async fn columns(session: &Session, keyspace: &str, table: &str) -> Result<Vec<Column>, String> {
    let result = session
        .query_unpaged(
            "SELECT column_name, kind, position FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, table),
        )
        .await
        .map_err(|e| format!("cannot read the columns of {keyspace}.{table}: {e}"))?;
    let rows = result
        .into_rows_result()
        .map_err(|e| format!("cannot read the columns of {keyspace}.{table}: {e}"))?;
    let mut out = Vec::new();
    for row in rows
        .rows::<(String, String, i32)>()
        .map_err(|e| format!("cannot read the columns of {keyspace}.{table}: {e}"))?
    {
        let (name, kind, position) =
            row.map_err(|e| format!("cannot read the columns of {keyspace}.{table}: {e}"))?;
        out.push(Column {
            name,
            kind,
            position,
        });
    }
    Ok(out)
}

/// The first column of every row a query returns, as text.
async fn names(
    session: &Session,
    cql: &str,
    values: impl scylla::serialize::row::SerializeRow,
) -> Result<Vec<String>, String> {
    let failed = |e: &dyn std::fmt::Display| format!("cannot read Cassandra's schema ({cql}): {e}");
    let result = session
        .query_unpaged(cql, values)
        .await
        .map_err(|e| failed(&e))?;
    let rows = result.into_rows_result().map_err(|e| failed(&e))?;
    let mut out = Vec::new();
    for row in rows.rows::<(String,)>().map_err(|e| failed(&e))? {
        out.push(row.map_err(|e| failed(&e))?.0);
    }
    Ok(out)
}

async fn ddl(session: &Session, cql: &str) -> Result<(), String> {
    session
        .query_unpaged(cql, ())
        .await
        .map(drop)
        .map_err(|e| format!("Cassandra refused `{cql}`: {e}"))
}

fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> String {
    suggest(word, candidates)
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}
