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
        ExecutionError::LastAttemptError(
            RequestAttemptError::SerializationError(_)
            | RequestAttemptError::CqlRequestSerialization(_),
        )
        | ExecutionError::BadQuery(_) => Failure::Content(error.to_string()),
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
            // "Invalid" also says that the table or keyspace went away,
            // which no row can be blamed for.
            let lower = message.to_lowercase();
            if lower.contains("unconfigured table") || lower.contains("does not exist") {
                Failure::Fatal(format!("Cassandra: {message}"))
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
