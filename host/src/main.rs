//! The `weir` command line: parse arguments, call the library (or a command
//! in `cli/`), print errors with their causes.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

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
    /// Create a plugin from a template: it builds, has a passing native
    /// test, and runs in its example pipeline.
    New {
        /// Plugin name (lowercase letters, digits, `-`, `_`).
        name: String,
        /// The language: a Rust crate using the SDK by path, or a Python or
        /// JavaScript plugin with the SDK copied in.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Rust only: the weir-plugin SDK (plugins/sdk of a weir checkout)
        /// [env: WEIR_SDK] (default: found next to this weir binary or
        /// above the current directory).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin's WebAssembly component, check it, and compile it for
    /// this machine; prints the .wasm path. A Rust crate builds with cargo;
    /// a Python (plugin.py) or JavaScript (plugin.js) plugin with
    /// componentize-py or componentize-js, installed on first use into the
    /// plugin's .weir/ [or $WEIR_TOOLCHAINS].
    Build {
        /// The plugin directory (default: the current directory).
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

/// A language `weir plugin new` writes plugins in.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    /// A Rust crate (cargo, wasm32-wasip2).
    Rust,
    /// Python (componentize-py).
    #[value(alias = "py")]
    Python,
    /// JavaScript (componentize-js).
    #[value(alias = "js")]
    Javascript,
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

    /// A client for repeated requests.
    fn client(&self) -> Result<cli::AdminClient> {
        let (addr, token) = self.resolve()?;
        cli::AdminClient::new(addr, token)
    }
}

/// Logging without `--log-level` or `RUST_LOG`: Weir at info; the CQL
/// driver only when something goes wrong (at info it reports every node
/// and connection it finds).
const DEFAULT_LOG_FILTER: &str = "info,scylla=warn";

fn init_logging(filter: Option<&str>) {
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
        }
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
        } => cli::run::run(
            &file,
            weir::runner::RunOptions {
                admin,
                watch: !no_watch,
            },
        ),
        Command::Reload { endpoint } => cli::status::reload(&endpoint.client()?),
        Command::Status { endpoint, json } => cli::status::status(&endpoint.client()?, json),
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
        Command::Plugin(PluginCommand::New {
            name,
            lang,
            dir,
            sdk,
        }) => {
            use weir::wasm::lang::Language;
            let lang = match lang {
                Lang::Rust => None,
                Lang::Python => Some(Language::Python),
                Lang::Javascript => Some(Language::JavaScript),
            };
            cli::plugin::new(&name, lang, dir.as_deref(), sdk.as_deref())?;
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
