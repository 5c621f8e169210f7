//! `weir run`: the library's runner under a process's signals. SIGINT and
//! SIGTERM drain and stop the pipeline (a second one exits at once with
//! status 130); SIGHUP reloads it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use std::sync::{Arc, Mutex};

use weir::kafka::exactly_once::RESUME_HINT;
use weir::runner::{Controls, RunOptions};

/// How many times an aborted transaction restarts the pipeline in this
/// process within [`RESTART_WINDOW`] before `weir run` gives up.
const RESTARTS: usize = 5;
const RESTART_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// Runs the pipeline in `file` until its sources end or a signal stops it.
/// Under exactly-once, an aborted transaction (for example a commit that
/// met a consumer-group rebalance) starts the pipeline again from its last
/// commit, as a supervisor would.
pub fn run(file: &Path, options: RunOptions) -> Result<ExitCode> {
    let mut pipeline = weir::config::load(file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-worker")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        // Installed before anything starts: a signal that arrives as the
        // pipeline comes up stops it cleanly instead of killing weir.
        let current: Current = Arc::default();
        tokio::spawn(watch_signals(Signals::install(), current.clone()));
        let mut restarts: Vec<std::time::Instant> = Vec::new();
        loop {
            let running = weir::runner::start(pipeline, options.clone()).await?;
            {
                let mut current = current.lock().expect("controls lock");
                current.1 = Some(running.controls());
                if current.0 {
                    // A signal came while it started.
                    running.controls().shutdown();
                }
            }
            let outcome = running.wait().await.result;
            let stopping = current.lock().expect("controls lock").0;
            match outcome {
                Err(e) if !stopping && e.to_string().contains(RESUME_HINT) => {
                    restarts.retain(|t| t.elapsed() < RESTART_WINDOW);
                    if restarts.len() >= RESTARTS {
                        return Err(anyhow::Error::from(e).context(format!(
                            "{RESTARTS} aborted transactions within {} s; giving up",
                            RESTART_WINDOW.as_secs()
                        )));
                    }
                    restarts.push(std::time::Instant::now());
                    tracing::warn!(error = %e, "the pipeline stopped on an aborted transaction; starting it again from the last commit");
                    pipeline = weir::config::load(file)?;
                }
                Err(e) => return Err(e.into()),
                Ok(()) => return Ok(ExitCode::SUCCESS),
            }
        }
    });
    // A read of standard input blocks a runtime thread until a line
    // arrives; do not wait for it once the pipeline has finished.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

/// Whether a signal asked to stop, and the running pipeline's controls.
type Current = Arc<Mutex<(bool, Option<Controls>)>>;

/// The signals `weir run` answers, listened for from installation on.
struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(int), Ok(term), Ok(hup)) => Signals(Some((int, term, hup))),
            _ => {
                tracing::warn!("cannot install signal handlers");
                Signals(None)
            }
        }
    }
}

async fn watch_signals(signals: Signals, current: Current) {
    let Signals(Some((mut int, mut term, mut hup))) = signals else {
        return;
    };
    let controls = || current.lock().expect("controls lock").1.clone();
    let name = loop {
        tokio::select! {
            _ = int.recv() => break "SIGINT",
            _ = term.recv() => break "SIGTERM",
            _ = hup.recv() => {
                tracing::info!(signal = "SIGHUP", "reloading the pipeline");
                if let Some(c) = controls() {
                    c.request_reload("SIGHUP");
                }
            }
        }
    };
    tracing::info!(
        signal = name,
        "stopping: draining in-flight events (signal again to exit at once)"
    );
    current.lock().expect("controls lock").0 = true;
    // Still starting: the run loop stops it once it is up.
    if let Some(c) = controls() {
        c.shutdown();
    }
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    eprintln!("weir: second signal, exiting without draining");
    std::process::exit(130);
}
