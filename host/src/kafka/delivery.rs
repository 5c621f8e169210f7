//! Producer delivery reports, routed to whoever produced each record: one
//! producer context serves a sink's own producer and the transactional
//! producer several sinks share.

use std::sync::Arc;

use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};

/// Learns the outcome of records it produced.
pub trait DeliveryTarget: Send + Sync {
    /// Record `index` was delivered, or failed with `error`.
    fn delivered(&self, index: usize, error: Option<&KafkaError>);
}

/// What each produced record carries to its delivery report.
pub struct Delivery {
    /// Who to tell.
    pub target: Arc<dyn DeliveryTarget>,
    /// Which of its records this is.
    pub index: usize,
}

/// The producer context: hands each report to the record's target.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Delivery>;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: Box<Delivery>) {
        let error = result.as_ref().err().map(|(e, _)| e);
        delivery.target.delivered(delivery.index, error);
    }
}

/// A producer whose reports go to each record's [`DeliveryTarget`].
pub type Producer = ThreadedProducer<DeliveryContext>;

/// A target that only remembers the first failure (records whose outcome
/// matters as a whole, like the changelog of a transaction).
#[derive(Debug, Default)]
pub struct FirstFailure(std::sync::Mutex<Option<String>>);

impl FirstFailure {
    /// The first failure reported, if any.
    pub fn take(&self) -> Option<String> {
        self.0.lock().expect("failure lock").take()
    }
}

impl DeliveryTarget for FirstFailure {
    fn delivered(&self, _index: usize, error: Option<&KafkaError>) {
        if let Some(e) = error {
            self.0
                .lock()
                .expect("failure lock")
                .get_or_insert_with(|| e.to_string());
        }
    }
}
