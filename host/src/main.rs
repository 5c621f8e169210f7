//! The `weir` command line: parse arguments, call the library, print errors
//! with their causes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use weir::metrics::{Registry, StageMetrics};

mod cli;

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
    ///
    /// While it runs, the pipeline reloads when its file, a plugin or a
    /// model changes, on SIGHUP, and on `weir reload`: only the stages that
    /// changed are touched, and plugin state carries over.
    Run {
        /// The pipeline file.
        file: PathBuf,
        /// Serve the admin endpoint (status, reload) on this address,
        /// overriding the file's `admin` setting.
        #[arg(long, value_name = "IP:PORT")]
        admin: Option<std::net::SocketAddr>,
        /// Do not reload when files change (SIGHUP and `weir reload` still
        /// work).
        #[arg(long)]
        no_watch: bool,
    },
    /// Reload a running pipeline from its file and report what changed.
    ///
    /// Exits 0 when every change was applied, 1 with the reason when the
    /// new file was rejected or a stage could not be changed (those stages
    /// keep running as they were).
    Reload {
        #[command(flatten)]
        endpoint: Endpoint,
    },
    /// Show a running pipeline's stages, counters and last reload.
    Status {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// A live view of a running pipeline: per-stage rates, errors, Kafka
    /// lag and plugin memory, refreshed every second; `q` quits.
    Top {
        #[command(flatten)]
        endpoint: Endpoint,
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
        interval: f64,
        /// Exit after this many frames (for scripts; default: until `q`).
        #[arg(long, value_name = "N")]
        frames: Option<u64>,
    },
    /// Print events as they leave a stage of a running pipeline (sampled:
    /// at most 100 a second), then exit after --limit or Ctrl-C.
    Tap {
        /// The stage to watch (for a sink: what it receives).
        stage: String,
        #[command(flatten)]
        endpoint: Endpoint,
        /// Exit after this many events.
        #[arg(long, short = 'n', value_name = "N")]
        limit: Option<u64>,
        /// Print each event as JSON with its timestamp, key and headers.
        #[arg(long)]
        json: bool,
    },
    /// Create, build and inspect plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
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

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a plugin crate from a template: it builds, has a passing
    /// native test, and runs in its example pipeline.
    New {
        /// Crate name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The weir-plugin SDK (plugins/sdk of a weir checkout) [env:
        /// WEIR_SDK] (default: found next to this weir binary or above the
        /// current directory).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate's WebAssembly component, check it, and compile
    /// it for this machine; prints the .wasm path.
    Build {
        /// The crate (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Show a .wasm file's WIT package and version, exports, imports and
    /// size, and whether this host can run it (exit 1 if not).
    Inspect {
        /// The component.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How a client command finds a running pipeline's admin endpoint.
#[derive(clap::Args)]
struct Endpoint {
    /// Admin address of the running pipeline [env: WEIR_ADMIN] (default:
    /// the `admin` setting of PIPELINE, else 127.0.0.1:7470).
    #[arg(long, value_name = "IP:PORT")]
    admin: Option<String>,
    /// Bearer token, when the endpoint requires one [env: WEIR_ADMIN_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Pipeline file to read the admin address (and token) from.
    #[arg(value_name = "PIPELINE")]
    pipeline: Option<PathBuf>,
}

/// Where `weir reload` and `weir status` look when told nothing.
const DEFAULT_ADMIN: &str = "127.0.0.1:7470";

impl Endpoint {
    fn resolve(&self) -> Result<(String, Option<String>)> {
        let mut addr = self
            .admin
            .clone()
            .or_else(|| std::env::var("WEIR_ADMIN").ok());
        let mut token = self
            .token
            .clone()
            .or_else(|| std::env::var("WEIR_ADMIN_TOKEN").ok());
        if let Some(file) = &self.pipeline {
            let p = weir::config::load(file)?;
            if addr.is_none() {
                addr = Some(
                    p.options
                        .admin
                        .with_context(|| {
                            format!("{} sets no `admin` address; pass --admin", file.display())
                        })?
                        .to_string(),
                );
            }
            if token.is_none() {
                token = p.options.admin_token;
            }
        }
        Ok((addr.unwrap_or_else(|| DEFAULT_ADMIN.to_owned()), token))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> Result<(u16, String)> {
        self.client()?.request(method, path)
    }

    /// A client for repeated requests.
    fn client(&self) -> Result<cli::AdminClient> {
        let (addr, token) = self.resolve()?;
        cli::AdminClient::new(addr, token)
    }
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
        Command::Run {
            file,
            admin,
            no_watch,
        } => run(file, admin, !no_watch),
        Command::Reload { endpoint } => reload(&endpoint),
        Command::Status { endpoint, json } => status(&endpoint, json),
        Command::Top {
            endpoint,
            interval,
            frames,
        } => {
            anyhow::ensure!(
                interval.is_finite() && interval >= 0.1,
                "--interval must be at least 0.1 seconds"
            );
            let client = endpoint.client()?;
            cli::top::run(
                || {
                    let (code, body) = client.request(reqwest::Method::GET, "/status")?;
                    serde_json::from_str(&body).with_context(|| {
                        format!("unexpected answer from the admin endpoint ({code}): {body}")
                    })
                },
                std::time::Duration::from_secs_f64(interval),
                frames,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tap {
            stage,
            endpoint,
            limit,
            json,
        } => {
            cli::tap::run(
                &endpoint.client()?,
                &stage,
                cli::tap::Options { limit, json },
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::New { name, dir, sdk }) => {
            cli::plugin::new(&name, dir.as_deref(), sdk.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::Build { dir }) => {
            cli::plugin::build(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCommand::Inspect { file, json }) => {
            Ok(if cli::plugin::inspect(&file, json)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
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

fn run(file: PathBuf, admin: Option<std::net::SocketAddr>, watch: bool) -> Result<ExitCode> {
    let pipeline = weir::config::load(&file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weir-worker")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        let registry = Registry::default();
        let board = weir::status::Board::new(&file);
        let shutdown = CancellationToken::new();
        let started = std::time::Instant::now();
        let (reloads, requests) = tokio::sync::mpsc::unbounded_channel();
        let admin_stop = CancellationToken::new();
        // The admin endpoint binds before anything starts, so a bad address
        // fails the start instead of a running pipeline.
        let admin = match admin.or(pipeline.options.admin) {
            Some(addr) => {
                let state = weir::admin::AdminState {
                    board: board.clone(),
                    registry: registry.clone(),
                    reloads: reloads.clone(),
                    token: pipeline.options.admin_token.clone(),
                    shutdown: admin_stop.clone(),
                };
                Some(weir::admin::Admin::bind(addr, state).await?)
            }
            None => None,
        };
        let stages = pipeline.stages.len();
        let watched = watch.then(|| pipeline.clone());
        let running = tokio::task::block_in_place(|| {
            weir::topology::Topology::start(pipeline, &registry, &board, shutdown.clone())
        })?;
        let mut served = None;
        if let Some(admin) = admin {
            let address = admin.local_addr()?;
            tracing::info!(%address, "admin endpoint listening");
            for (name, title) in board.hub().dashboards() {
                tracing::info!(url = %format!("http://{address}/dashboard/{name}"), title, "dashboard");
            }
            served = Some(tokio::spawn(admin.serve(admin_stop.clone())));
        }
        if let Some(p) = &watched {
            match weir::watch::spawn(p, reloads.clone()) {
                Ok(_) => tracing::debug!("watching the pipeline's files for changes"),
                Err(e) => tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP or `weir reload`"),
            }
        }
        tracing::info!(
            pipeline = %file.display(),
            stages,
            "pipeline running; Ctrl-C to stop"
        );
        tokio::spawn(watch_signals(shutdown, reloads));
        let result = running.run(requests).await;
        // Let open taps and dashboard streams end cleanly.
        admin_stop.cancel();
        if let Some(served) = served {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), served).await;
        }
        summarise(&registry, started.elapsed());
        result?;
        Ok(ExitCode::SUCCESS)
    });
    // A read of standard input blocks a runtime thread until a line
    // arrives; do not wait for it once the pipeline has finished.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

fn reload(endpoint: &Endpoint) -> Result<ExitCode> {
    let (code, body) = endpoint.request(reqwest::Method::POST, "/reload")?;
    let report: weir::status::ReloadReport = serde_json::from_str(&body)
        .with_context(|| format!("unexpected answer from the admin endpoint ({code}): {body}"))?;
    if report.ok {
        println!("reload {}: {}", report.id, report.summary());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: reload {}: {}", report.id, report.summary());
        Ok(ExitCode::FAILURE)
    }
}

fn status(endpoint: &Endpoint, json: bool) -> Result<ExitCode> {
    let (code, body) = endpoint.request(reqwest::Method::GET, "/status")?;
    if json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let s: weir::status::Status = serde_json::from_str(&body)
        .with_context(|| format!("unexpected answer from the admin endpoint ({code}): {body}"))?;
    println!("pipeline {} (pid {})", s.pipeline, s.pid);
    println!(
        "{:<20} {:<9} {:<11} {:>8} {:<8} {:>12} {:>12} {:>9} {:>7}",
        "STAGE", "KIND", "TYPE", "INSTANCE", "STATE", "IN", "OUT", "REJECTED", "ERRORS"
    );
    for st in &s.stages {
        println!(
            "{:<20} {:<9} {:<11} {:>8} {:<8} {:>12} {:>12} {:>9} {:>7}",
            st.name,
            st.kind,
            st.type_name,
            st.instance,
            format!("{:?}", st.state).to_lowercase(),
            st.counters.events_in,
            st.counters.events_out,
            st.counters.rejected,
            st.counters.errors
        );
    }
    println!(
        "reloads: {} applied, {} failed",
        s.reloads_ok, s.reloads_failed
    );
    if let Some(r) = &s.last_reload {
        println!(
            "last reload {} ({}, {} ms): {}",
            r.id,
            r.trigger,
            r.duration_ms,
            r.summary()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch_signals(
    shutdown: CancellationToken,
    reloads: tokio::sync::mpsc::UnboundedSender<weir::topology::ReloadRequest>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    let name = loop {
        tokio::select! {
            _ = int.recv() => break "SIGINT",
            _ = term.recv() => break "SIGTERM",
            _ = hup.recv() => {
                tracing::info!(signal = "SIGHUP", "reloading the pipeline");
                let _ = reloads.send(weir::topology::ReloadRequest {
                    trigger: "SIGHUP".into(),
                    reply: None,
                });
            }
        }
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
