//! How a transactional call failed, in librdkafka's classes, and retrying
//! the retriable ones until a deadline.

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// How a transactional call failed, as librdkafka classifies it.
#[derive(Debug)]
pub(super) enum TxnError {
    /// The transaction must be aborted.
    Abortable(String),
    /// The producer cannot go on (fenced by a newer instance, ...).
    Fatal(String),
}

/// Calls `f` until it succeeds, retrying retriable errors until `deadline`.
pub(super) fn retry_until(
    deadline: Instant,
    mut f: impl FnMut() -> Result<(), KafkaError>,
) -> Result<(), TxnError> {
    loop {
        match f() {
            Ok(()) => return Ok(()),
            // A commit flushes the transaction's records first; a flush
            // that timed out is resumed by calling again.
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                if Instant::now() < deadline =>
            {
                tracing::warn!("transaction records not all delivered yet; retrying the commit");
            }
            Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {
                tracing::warn!(error = %e, "transaction call not done yet (broker unreachable or busy); retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                return Err(TxnError::Abortable(e.to_string()));
            }
            Err(KafkaError::Transaction(e))
                if e.is_fatal() || e.code() == RDKafkaErrorCode::Fenced =>
            {
                return Err(TxnError::Fatal(e.to_string()));
            }
            Err(e) => return Err(TxnError::Fatal(e.to_string())),
        }
    }
}

impl From<TxnError> for String {
    fn from(e: TxnError) -> String {
        match e {
            TxnError::Abortable(s) | TxnError::Fatal(s) => s,
        }
    }
}
