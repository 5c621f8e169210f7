//! `weir run`: the library's runner under a process's signals. SIGINT and
//! SIGTERM drain and stop the pipeline (a second one exits at once with
//! status 130); SIGHUP reloads it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use weir::runner::{Controls, RunOptions};

/// Runs the pipeline in `file` until its sources end or a signal stops it.
pub fn run(file: &Path, options: RunOptions) -> Result<ExitCode> {
    let pipeline = weir::config::load(file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-worker")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        // Installed before anything starts: a signal that arrives as the
        // pipeline comes up stops it cleanly instead of killing weir.
        let signals = Signals::install();
        let running = weir::runner::start(pipeline, options).await?;
        tokio::spawn(watch_signals(signals, running.controls()));
        running.wait().await.result?;
        Ok(ExitCode::SUCCESS)
    });
    // A read of standard input blocks a runtime thread until a line
    // arrives; do not wait for it once the pipeline has finished.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

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

async fn watch_signals(signals: Signals, controls: Controls) {
    let Signals(Some((mut int, mut term, mut hup))) = signals else {
        return;
    };
    let name = loop {
        tokio::select! {
            _ = int.recv() => break "SIGINT",
            _ = term.recv() => break "SIGTERM",
            _ = hup.recv() => {
                tracing::info!(signal = "SIGHUP", "reloading the pipeline");
                controls.request_reload("SIGHUP");
            }
        }
    };
    tracing::info!(
        signal = name,
        "stopping: draining in-flight events (signal again to exit at once)"
    );
    controls.shutdown();
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    eprintln!("weir: second signal, exiting without draining");
    std::process::exit(130);
}
