//! What a failed write means: the cluster cannot take it now (retry), the
//! row itself is refused (dead letter, with Cassandra's message), or the
//! sink cannot go on (stop, with the reason).

use scylla::errors::{DbError, ExecutionError, RequestAttemptError};

/// The class of a failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// A node down, overloaded, timing out or restarting: try again later.
    Retry(String),
    /// Cassandra refused the row for its content.
    Content(String),
    /// Retrying cannot help: credentials, permissions, a table dropped.
    Fatal(String),
}

/// Classifies a failed request.
pub(super) fn classify(error: &ExecutionError) -> Failure {
    match error {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, message)) => {
            database(db, message)
        }
        // The bound values are always (text, bigint): a failure to send
        // them is the statement's, never one row's.
        ExecutionError::LastAttemptError(
            RequestAttemptError::SerializationError(_)
            | RequestAttemptError::CqlRequestSerialization(_),
        )
        | ExecutionError::BadQuery(_) => {
            Failure::Fatal(format!("the insert could not be sent: {error}"))
        }
        // Connections lost or refused, no node to ask, client timeouts,
        // metadata not readable while the cluster restarts.
        _ => Failure::Retry(error.to_string()),
    }
}

fn database(db: &DbError, message: &str) -> Failure {
    match db {
        DbError::Unavailable { .. }
        | DbError::Overloaded
        | DbError::IsBootstrapping
        | DbError::ReadTimeout { .. }
        | DbError::WriteTimeout { .. }
        | DbError::ReadFailure { .. }
        | DbError::WriteFailure { .. }
        | DbError::TruncateError
        | DbError::ServerError
        | DbError::RateLimitReached { .. }
        | DbError::Unprepared { .. } => Failure::Retry(format!("{db} ({message})")),
        DbError::Invalid | DbError::FunctionFailure { .. } => {
            // "Invalid" also says that the table, keyspace or a column went
            // away, which no row can be blamed for. Only the start of the
            // message is read: the rest may quote the row's own values.
            if schema_gone(message) {
                Failure::Fatal(format!(
                    "Cassandra: {message} (the table changed while weir was writing to it)"
                ))
            } else {
                Failure::Content(message.to_owned())
            }
        }
        DbError::AuthenticationError | DbError::Unauthorized => Failure::Fatal(format!(
            "Cassandra refused the write: {db} ({message}); check the user in `credentials`"
        )),
        _ => Failure::Fatal(format!("Cassandra refused the write: {db} ({message})")),
    }
}

/// Whether an `Invalid` answer says the schema changed under the sink.
fn schema_gone(message: &str) -> bool {
    let m = message.trim_start();
    m.starts_with("unconfigured table")
        || m.starts_with("Undefined column")
        || m.starts_with("JSON values map contains unrecognized column")
        || (m.starts_with("Keyspace ") && m.ends_with("does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(e: DbError, message: &str) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(e, message.into()))
    }

    #[test]
    fn errors_are_classified() {
        assert!(matches!(
            classify(&db(DbError::Overloaded, "busy")),
            Failure::Retry(_)
        ));
        assert_eq!(
            classify(&db(
                DbError::Invalid,
                "Error decoding JSON value for temperature: Unable to make float from 'warm'"
            )),
            Failure::Content(
                "Error decoding JSON value for temperature: Unable to make float from 'warm'"
                    .into()
            )
        );
        assert!(matches!(
            classify(&db(DbError::Invalid, "unconfigured table readings")),
            Failure::Fatal(_)
        ));
        // A row's value quoted in the message does not stop the stage.
        assert!(matches!(
            classify(&db(
                DbError::Invalid,
                "Error decoding JSON value for device: Unable to make float from 'does not exist'"
            )),
            Failure::Content(_)
        ));
        assert!(matches!(
            classify(&db(
                DbError::Invalid,
                "JSON values map contains unrecognized column: humidity"
            )),
            Failure::Fatal(_)
        ));
        assert!(matches!(
            classify(&db(DbError::Unauthorized, "no")),
            Failure::Fatal(_)
        ));
        assert!(matches!(
            classify(&ExecutionError::RequestTimeout(
                std::time::Duration::from_secs(1)
            )),
            Failure::Retry(_)
        ));
    }
}
