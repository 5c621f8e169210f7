//! How a transactional call failed, in librdkafka's classes, and retrying
//! the retriable ones until a deadline.

use std::sync::Arc;
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
    /// A call did not return although its timeout had passed: librdkafka
    /// is stuck in it, and the producer with it.
    Hung(String),
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

/// [`retry_until`] with each attempt on a thread of its own, given up after
/// `limit`: for calls that librdkafka does not always end at their timeout
/// (`send_offsets_to_transaction` waits without a bound for the group
/// coordinator's lookup, which never ends when the coordinator's broker
/// has left the cluster: librdkafka issues #5456 and #5511). A call given
/// up is [`TxnError::Hung`]; its thread stays blocked.
pub(super) fn retry_bounded(
    deadline: Instant,
    limit: Duration,
    what: &str,
    f: impl Fn() -> Result<(), KafkaError> + Send + Sync + 'static,
) -> Result<(), TxnError> {
    let f = Arc::new(f);
    let (mut hung, mut failed) = (None, None);
    let result = retry_until(deadline, || {
        let (done, result) = std::sync::mpsc::channel();
        let call = f.clone();
        let started = std::thread::Builder::new()
            .name("weir-txn-call".into())
            .spawn(move || {
                let _ = done.send(call());
            });
        if let Err(e) = started {
            failed = Some(format!("cannot start a thread for {what}: {e}"));
            return Ok(());
        }
        match result.recv_timeout(limit) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                hung = Some(format!(
                    "{what} did not return within {} s (librdkafka is stuck in it)",
                    limit.as_secs()
                ));
                // Ends the retries; `hung` says why.
                Ok(())
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                failed = Some(format!("{what} panicked"));
                Ok(())
            }
        }
    });
    match (hung, failed) {
        (Some(why), _) => Err(TxnError::Hung(why)),
        (None, Some(why)) => Err(TxnError::Fatal(why)),
        (None, None) => result,
    }
}

impl From<TxnError> for String {
    fn from(e: TxnError) -> String {
        match e {
            TxnError::Abortable(s) | TxnError::Fatal(s) | TxnError::Hung(s) => s,
        }
    }
}
