//! Running a pipeline in-process: the library's entry point, used by
//! `weir run` and by tests.
//!
//! [`start`] binds the admin endpoint (if any), builds and starts every
//! stage, and starts file watching; the returned [`Running`] pipeline can be
//! reloaded, inspected and stopped, and [`Running::wait`] returns its
//! [`Outcome`]. Signals are the caller's business: `weir run` maps SIGINT
//! and SIGTERM to [`Controls::shutdown`] and SIGHUP to a reload.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = weir::config::load(std::path::Path::new("pipelines/gender-count-local.toml"))?;
//! let running = weir::runner::start(pipeline, weir::runner::RunOptions::default()).await?;
//! let stop = running.controls();
//! tokio::spawn(async move {
//!     tokio::time::sleep(std::time::Duration::from_secs(5)).await;
//!     stop.shutdown(); // drain and finish, like Ctrl-C
//! });
//! let outcome = running.wait().await;
//! outcome.result?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::admin::{Admin, AdminError, AdminState};
use crate::config::{Guarantee, Kind, Pipeline};
use crate::engine::{ReloadRequest, RunError, Services, Topology};
use crate::kafka::exactly_once::{self, ExactlyOnce};
use crate::kafka::instance_lock::{InstanceLock, lock_dir};
use crate::kafka::state_log::Changelog;
use crate::kafka::{Brokers, KafkaSetupError, StaticMembership};
use crate::stage::{Handover, Partitioning, Transactional};
use crate::telemetry::{Counters, ReloadReport, Telemetry};

/// How long a finished exactly-once pipeline waits for its transaction's
/// last abort (itself bounded at 10 s) and its consumers' close.
const TRANSACTION_END: Duration = Duration::from_secs(30);

/// How [`start`] runs a pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Serve the admin endpoint here, overriding the file's `admin`
    /// setting (port 0 picks a free port; see [`Running::admin_addr`]).
    pub admin: Option<SocketAddr>,
    /// Reload when the pipeline file, a plugin or a model changes.
    pub watch: bool,
}

/// Why a pipeline did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The admin endpoint cannot listen.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Some stages could not be built; nothing runs.
    #[error(transparent)]
    Build(#[from] RunError),
    /// The Kafka transaction of an exactly-once pipeline could not begin.
    #[error("exactly-once: {0}")]
    Transactions(#[from] KafkaSetupError),
    /// Another process on this host runs with the same instance id.
    #[error("instance id: {0}")]
    Instance(String),
}

/// What a run ended with.
#[derive(Debug)]
pub struct Outcome {
    /// `Ok` when every stage finished; the failed stages otherwise.
    pub result: Result<(), RunError>,
    /// How long it ran.
    pub elapsed: Duration,
    /// Every stage's final counters.
    pub totals: Vec<(String, Counters)>,
}

/// Stops or reloads a running pipeline from anywhere (a signal handler, a
/// test); cheap to clone.
#[derive(Debug, Clone)]
pub struct Controls {
    shutdown: CancellationToken,
    reloads: mpsc::UnboundedSender<ReloadRequest>,
}

impl Controls {
    /// Stops the sources; in-flight events drain, open windows are flushed
    /// (or kept in a final checkpoint), sinks finish writing.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Whether [`Controls::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Asks for a reload without waiting for its outcome.
    pub fn request_reload(&self, trigger: &str) {
        let _ = self.reloads.send(ReloadRequest {
            trigger: trigger.to_owned(),
            reply: None,
        });
    }

    /// Reloads the pipeline from its file and returns the outcome; `None`
    /// when the pipeline has already ended.
    pub async fn reload(&self, trigger: &str) -> Option<ReloadReport> {
        let (tx, rx) = oneshot::channel();
        self.reloads
            .send(ReloadRequest {
                trigger: trigger.to_owned(),
                reply: Some(tx),
            })
            .ok()?;
        rx.await.ok()
    }
}

/// A pipeline that runs.
pub struct Running {
    controls: Controls,
    telemetry: Telemetry,
    admin_addr: Option<SocketAddr>,
    admin_stop: CancellationToken,
    served: Option<JoinHandle<()>>,
    engine: JoinHandle<Result<(), RunError>>,
    started: Instant,
    /// Exactly-once: the pipeline's transaction.
    transactions: Option<Arc<ExactlyOnce>>,
    /// At-least-once with an instance id: this host's claim on it.
    _instance_lock: Option<InstanceLock>,
}

/// Builds and starts `pipeline`. Must run on a multi-threaded Tokio
/// runtime: building may block (plugin compilation) and does so in
/// `block_in_place`.
pub async fn start(pipeline: Pipeline, options: RunOptions) -> Result<Running, StartError> {
    let telemetry = Telemetry::new(&pipeline.file);
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let (reloads, requests) = mpsc::unbounded_channel();
    let admin_stop = CancellationToken::new();
    // The admin endpoint binds before anything starts, so a bad address
    // fails the start instead of a running pipeline.
    let admin = match options.admin.or(pipeline.options.admin) {
        Some(addr) => {
            let state = AdminState {
                telemetry: telemetry.clone(),
                reloads: reloads.clone(),
                token: pipeline.options.admin_token.clone(),
                shutdown: admin_stop.clone(),
            };
            Some(Admin::bind(addr, state).await?)
        }
        None => None,
    };
    let stages = pipeline.stages.len();
    let watched = options.watch.then(|| pipeline.clone());
    let file = pipeline.file.clone();
    telemetry.set_guarantee(pipeline.options.guarantee.as_str());
    let mut services = Services::default();
    // Stages with a task per partition learn here which partitions their
    // Kafka sources gave away or took over.
    services.extensions.insert(Arc::new(Handover::default()));
    let member = pipeline.static_member_id();
    let mut instance_lock = None;
    if let Some(id) = &member {
        telemetry.set_instance(id);
        services
            .extensions
            .insert(Arc::new(StaticMembership { id: id.clone() }));
        if pipeline.options.guarantee == Guarantee::AtLeastOnce {
            // Exactly-once takes the same lock for its transactional id.
            instance_lock = Some(
                InstanceLock::take(&lock_dir(), id)
                    .map_err(|e| StartError::Instance(e.to_string()))?,
            );
        }
    }
    let transactions = match pipeline.options.guarantee {
        Guarantee::AtLeastOnce => {
            if pipeline
                .stages
                .values()
                .any(|s| s.component.hooks().partitioning() == Some(Partitioning::PerPartition))
            {
                // Tasks' state moves through the changelog with their
                // partitions.
                let (topic, input_partitions) =
                    tokio::task::block_in_place(|| changelog(&pipeline));
                services.extensions.insert(Arc::new(Changelog {
                    topic,
                    input_partitions,
                }));
            }
            None
        }
        Guarantee::ExactlyOnce => {
            let txn = tokio::task::block_in_place(|| {
                ExactlyOnce::start(transaction_settings(&pipeline), telemetry.transactions())
            })?;
            services.checkpoints = Some(txn.clone());
            services.extensions.insert(txn.clone());
            Some(txn)
        }
    };
    let topology = tokio::task::block_in_place(|| {
        Topology::start(pipeline, &telemetry, services, shutdown.clone())
    })?;
    let mut admin_addr = None;
    let mut served = None;
    if let Some(admin) = admin {
        let address = admin.local_addr().ok();
        if let Some(address) = address {
            tracing::info!(%address, "admin endpoint listening");
            for (name, title) in telemetry.dashboards().list() {
                tracing::info!(url = %format!("http://{address}/dashboard/{name}"), title, "dashboard");
            }
        }
        admin_addr = address;
        served = Some(tokio::spawn(admin.serve(admin_stop.clone())));
    }
    if let Some(p) = &watched {
        match crate::watch::spawn(p, reloads.clone()) {
            Ok(_) => tracing::debug!("watching the pipeline's files for changes"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP or `weir reload`")
            }
        }
    }
    tracing::info!(
        pipeline = %file.display(),
        stages,
        "pipeline running; Ctrl-C to stop"
    );
    let engine = tokio::spawn(topology.run(requests));
    Ok(Running {
        controls: Controls { shutdown, reloads },
        telemetry,
        admin_addr,
        admin_stop,
        served,
        engine,
        started,
        transactions,
        _instance_lock: instance_lock,
    })
}

/// How an exactly-once pipeline's transaction reaches its cluster: the
/// client settings of its Kafka stages (sinks first), its transactional id
/// and its changelog topic.
fn transaction_settings(pipeline: &Pipeline) -> exactly_once::Settings {
    let mut stages: Vec<&crate::config::Stage> = pipeline.stages.values().collect();
    stages.sort_by_key(|s| s.component.kind() != Kind::Sink);
    let (brokers, client) = stages
        .iter()
        .find_map(|s| match s.component.hooks().transactional() {
            Transactional::Kafka { brokers, client } => Some((brokers, client)),
            _ => None,
        })
        .unwrap_or_default();
    let (changelog, input_partitions) = changelog(pipeline);
    exactly_once::Settings {
        brokers: Brokers::from_setting(brokers.as_deref()),
        client,
        transactional_id: format!("weir-{}-{}", pipeline.name(), pipeline.instance_id()),
        changelog,
        input_partitions,
        transaction_timeout: pipeline
            .options
            .transaction_timeout
            .map_or(Duration::from_secs(60), |d| d.get()),
    }
}

/// The pipeline's changelog topic (`changelog`, default
/// `weir-<pipeline>-state`) and the partition count of its input (asks the
/// cluster).
fn changelog(pipeline: &Pipeline) -> (String, i32) {
    let topic = pipeline
        .options
        .changelog
        .clone()
        .unwrap_or_else(|| format!("weir-{}-state", pipeline.name()));
    let input_partitions = pipeline
        .stages
        .values()
        .filter_map(|s| s.component.hooks().input_partitions())
        .filter_map(Result::ok)
        .flatten()
        .map(|(_, n)| n)
        .max()
        .unwrap_or(1);
    (topic, input_partitions)
}

impl Running {
    /// Stops or reloads the pipeline.
    pub fn controls(&self) -> Controls {
        self.controls.clone()
    }

    /// Its status, counters, taps and dashboards.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Where the admin endpoint listens, if it was asked for.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Waits until every stage has finished (the sources' data ended, or
    /// [`Controls::shutdown`]), then stops the admin endpoint and logs each
    /// stage's totals.
    pub async fn wait(self) -> Outcome {
        let result = match self.engine.await {
            Ok(result) => result,
            Err(e) => Err(RunError::Failed(vec![crate::engine::StageError {
                stage: "<engine>".into(),
                source: format!("the engine task failed: {e}").into(),
            }])),
        };
        // The transaction open at the end is never committed: abort it now
        // rather than at the broker's timeout (read_committed readers wait
        // on an open transaction). After a failed run it may hold records.
        if let Some(txn) = &self.transactions {
            let txn = txn.clone();
            let failed = result.is_err();
            let ending =
                tokio::task::spawn_blocking(move || if failed { txn.abort() } else { txn.close() });
            // Bounded: the abort is, but closing the sources' consumers
            // (their last owner is the transaction) waits on a group
            // coordinator that may be gone. Their offsets are committed in
            // the transactions already; nothing is lost by not waiting.
            if tokio::time::timeout(TRANSACTION_END, ending).await.is_err() {
                tracing::warn!(
                    waited_s = TRANSACTION_END.as_secs(),
                    "the Kafka clients of the transaction did not close in time; leaving them"
                );
            }
        }
        // Let open taps and dashboard streams end cleanly.
        self.admin_stop.cancel();
        if let Some(served) = self.served {
            let _ = tokio::time::timeout(Duration::from_secs(2), served).await;
        }
        let totals = self.telemetry.totals();
        for (stage, c) in &totals {
            tracing::info!(
                stage,
                events_in = c.events_in,
                events_out = c.events_out,
                rejected = c.rejected,
                errors = c.errors,
                "stage totals"
            );
        }
        let elapsed = self.started.elapsed();
        tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "pipeline finished");
        Outcome {
            result,
            elapsed,
            totals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pipeline_runs_in_process_and_answers_its_admin_routes() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        std::fs::write(
            &input,
            (0..100_000).map(|i| format!("{i}\n")).collect::<String>(),
        )
        .unwrap();
        let out = dir.path().join("out.txt");
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            format!(
                "[sources.nums]\ntype = \"replay\"\nformat = \"lines\"\npath = {input:?}\nrate = 1000\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"nums\"]\npath = {out:?}\n"
            ),
        )
        .unwrap();
        let pipeline = crate::config::load(&file).unwrap();
        let running = start(pipeline, RunOptions::default()).await.unwrap();
        assert_eq!(running.admin_addr(), None, "no endpoint unless asked");

        // The routes answer from the running pipeline's telemetry, in
        // process, without a port.
        let controls = running.controls();
        let router = crate::admin::router(AdminState {
            telemetry: running.telemetry().clone(),
            reloads: controls.reloads.clone(),
            token: None,
            shutdown: CancellationToken::new(),
        });
        let get = |path: &str| {
            axum::http::Request::get(path)
                .header("host", "localhost")
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let response = router.clone().oneshot(get("/status")).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let status: crate::telemetry::Status = serde_json::from_slice(&body).unwrap();
        assert_eq!(status.stages.len(), 2);
        let response = router.oneshot(get("/metrics")).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains("weir_events_in_total{stage=\"nums\""));

        // A reload through the controls, then a clean stop.
        let report = controls.reload("test").await.unwrap();
        assert!(report.ok && report.is_noop(), "{}", report.summary());
        controls.shutdown();
        let outcome = running.wait().await;
        outcome.result.unwrap();
        let written = std::fs::read_to_string(&out).unwrap().lines().count() as u64;
        let (_, sink) = outcome.totals.iter().find(|(n, _)| n == "out").unwrap();
        assert_eq!(sink.events_out, written);
        assert!(written < 100_000, "stopped by the shutdown");
    }
}
