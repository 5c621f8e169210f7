//! The `weir` command line: parse arguments, call the library, print errors
//! with their causes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use weir::metrics::{Registry, StageMetrics};

/// Weir runs stream-processing pipelines described in TOML: sources,
/// sandboxed WebAssembly transforms, and sinks.
#[derive(Parser)]
#[command(name = "weir", version, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `debug`, `weir=debug,wasmtime=warn`
    /// (overrides RUST_LOG; default `info`).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline until its sources end or Ctrl-C / SIGTERM.
    ///
    /// On the first signal the sources stop, in-flight events drain, open
    /// windows are flushed and sinks finish writing; a second signal exits
    /// at once.
    Run {
        /// The pipeline file.
        file: PathBuf,
    },
    /// Check pipeline files without running them.
    ///
    /// Prints every problem as FILE:LINE: message and exits 1 if any file
    /// has one.
    Validate {
        /// Pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print a pipeline's stage graph.
    Graph {
        /// The pipeline file.
        file: PathBuf,
        /// Print Graphviz DOT instead of text (`weir graph p.toml --dot | dot -Tsvg`).
        #[arg(long)]
        dot: bool,
    },
}

fn init_logging(filter: Option<&str>) {
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref());
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run { file } => run(file),
        Command::Validate { files } => Ok(validate(&files)),
        Command::Graph { file, dot } => {
            let pipeline = weir::config::load(&file)?;
            print!("{}", weir::config::render_graph(&pipeline, dot));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match weir::config::load(f) {
            Ok(p) => println!("{}: ok ({} stages)", f.display(), p.stages.len()),
            Err(errors) => {
                ok = false;
                for e in &errors.0 {
                    println!("{e}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(file: PathBuf) -> Result<ExitCode> {
    let pipeline = weir::config::load(&file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-worker")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let registry = Registry::default();
        let shutdown = CancellationToken::new();
        let started = std::time::Instant::now();
        let running = tokio::task::block_in_place(|| {
            weir::topology::start(&pipeline, &registry, shutdown.clone())
        })?;
        tracing::info!(
            pipeline = %file.display(),
            stages = pipeline.stages.len(),
            "pipeline running; Ctrl-C to stop"
        );
        tokio::spawn(watch_signals(shutdown));
        let result = running.wait().await;
        summarise(&registry, started.elapsed());
        result?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    tracing::info!(
        signal = name,
        "stopping: draining in-flight events (signal again to exit at once)"
    );
    shutdown.cancel();
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    eprintln!("weir: second signal, exiting without draining");
    std::process::exit(130);
}

fn summarise(registry: &Registry, elapsed: std::time::Duration) {
    for (stage, m) in registry.all() {
        tracing::info!(
            stage,
            events_in = StageMetrics::get(&m.events_in),
            events_out = StageMetrics::get(&m.events_out),
            rejected = StageMetrics::get(&m.rejected),
            errors = StageMetrics::get(&m.errors),
            "stage totals"
        );
    }
    tracing::info!(elapsed_ms = elapsed.as_millis() as u64, "pipeline finished");
}
