//! The transaction against librdkafka's mock cluster with injected
//! request errors: a failure is classified by what it means for a restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::*;
use crate::kafka::delivery::{Delivery, FirstFailure};

/// Takes over a transactional id on a one-broker mock cluster holding the
/// changelog `state` and the output `out`; then the next request of `api`
/// fails with `error`.
fn started(
    mock: &MockCluster<'static, DefaultProducerContext>,
    id: &str,
    (api, error): (RDKafkaApiKey, RDKafkaRespErr),
) -> Arc<ExactlyOnce> {
    for topic in ["state", "out"] {
        mock.create_topic(topic, 1, 1).unwrap();
    }
    let settings = Settings {
        brokers: Brokers::Cluster(mock.bootstrap_servers()),
        client: Vec::new(),
        transactional_id: format!("{id}-{}", std::process::id()),
        changelog: "state".to_owned(),
        input_partitions: 1,
        transaction_timeout: Duration::from_secs(10),
    };
    let txn = ExactlyOnce::start(settings, Arc::default()).unwrap();
    mock.request_errors(api, &[error]);
    txn
}

/// A checkpoint holding one stage's state.
fn checkpoint(id: u64) -> Saved {
    let stage = SavedStage::new(7, b"counts");
    Saved {
        id,
        stages: BTreeMap::from([("count".to_owned(), stage)]),
        ..Saved::default()
    }
}

/// A sink's record meets the fence (another process took the
/// transactional id over) and the producer fails for good before the
/// checkpoint writes its state. That write fails as an abortable send,
/// but nothing can be aborted and a restart would fence the rival back:
/// the reason names the takeover and does not ask for a restart (which
/// `weir run` would do itself).
#[test]
fn a_fence_a_sink_met_first_fails_the_checkpoint_naming_the_rival_without_a_restart() {
    let mock = MockCluster::new(1).unwrap();
    let txn = started(
        &mock,
        "weir-unit-fence",
        (
            RDKafkaApiKey::AddPartitionsToTxn,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
        ),
    );
    let failure = Arc::new(FirstFailure::default());
    txn.producer()
        .send(
            BaseRecord::with_opaque_to(
                "out",
                Box::new(Delivery {
                    target: failure.clone(),
                    index: 0,
                }),
            )
            .payload("a window")
            .key("k"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    let waited = Instant::now();
    while txn.producer().client().fatal_error().is_none() {
        assert!(waited.elapsed() < Duration::from_secs(10), "never fenced");
        std::thread::sleep(Duration::from_millis(10));
    }
    let err = txn.save(&checkpoint(1)).unwrap_err().to_string();
    assert!(err.contains("another process took it over"), "{err}");
    assert!(!err.contains(RESUME_HINT), "{err}");
    let told = txn.state.borrow().failed.clone().unwrap_or_default();
    assert!(
        told.contains("another process took it over"),
        "sinks waiting on the commit are told: {told}"
    );
}

/// An abortable failure with a healthy producer (here the checkpoint's
/// state record is refused once) still aborts and asks for a restart from
/// the last commit.
#[test]
fn an_abortable_failure_of_a_healthy_producer_still_resumes() {
    let mock = MockCluster::new(1).unwrap();
    let txn = started(
        &mock,
        "weir-unit-abort",
        (
            RDKafkaApiKey::Produce,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        ),
    );
    let err = txn.save(&checkpoint(1)).unwrap_err().to_string();
    assert!(txn.producer().client().fatal_error().is_none(), "{err}");
    assert!(err.contains(RESUME_HINT), "{err}");
    assert!(!err.contains("another process"), "{err}");
}
