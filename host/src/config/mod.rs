//! Pipeline files: TOML text → checked [`Pipeline`].
//!
//! A pipeline file names its stages in three tables, Vector-style:
//!
//! ```toml
//! [sources.shop_log]
//! type = "replay"
//! path = "../data/user_log.csv"
//! select = "gender"
//! rate = 10
//!
//! [transforms.count]
//! type = "wasm"
//! inputs = ["shop_log"]
//! plugin = "../plugins/gender-count"
//! config = { window = "1s", format = "seed" }
//!
//! [sinks.out]
//! type = "console"
//! inputs = ["count"]
//! ```
//!
//! The files of this module: the data model is here ([`Pipeline`],
//! [`Stage`], [`Options`]); [`compile`] turns text into it; `env` expands
//! `${VAR}`s; `graph` checks the stage graph; [`render`] draws it;
//! `diagnostic` holds the `FILE:LINE: message` errors.
//!
//! [`compile()`] checks everything it can without running anything and reports
//! every problem at once, each as `FILE:LINE: message`: syntax errors,
//! unknown stage types and keys (with a "did you mean"), wrong value types,
//! unset `${VAR}`s, missing or unknown inputs, cycles, and plugin files that
//! are missing or not Weir components. Relative paths in a pipeline file are
//! resolved against the directory of that file.

mod compile;
mod diagnostic;
mod env;
mod graph;
mod guarantee;
pub mod render;

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

pub use compile::{compile, known_types};
pub use diagnostic::{ConfigError, ConfigErrors};
pub use env::substitute;
pub use render::render_graph;

use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::stage::Component;
use crate::transforms::TransformConfig;

/// The role of a stage in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Produces events; has no inputs.
    Source,
    /// Consumes and produces events.
    Transform,
    /// Consumes events; has no outputs.
    Sink,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::Source => "sources",
            Kind::Transform => "transforms",
            Kind::Sink => "sinks",
        }
    }

    /// Lower-case name, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Sink => "sink",
        }
    }
}

/// What a stage is and how it is configured: a closed set of types.
#[derive(Debug, Clone, PartialEq)]
pub enum ComponentConfig {
    /// A source.
    Source(SourceConfig),
    /// A transform.
    Transform(TransformConfig),
    /// A sink.
    Sink(SinkConfig),
}

impl ComponentConfig {
    /// Source, transform or sink.
    pub fn kind(&self) -> Kind {
        match self {
            ComponentConfig::Source(_) => Kind::Source,
            ComponentConfig::Transform(_) => Kind::Transform,
            ComponentConfig::Sink(_) => Kind::Sink,
        }
    }

    /// The `type` written in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            ComponentConfig::Source(c) => c.type_name(),
            ComponentConfig::Transform(c) => c.type_name(),
            ComponentConfig::Sink(c) => c.type_name(),
        }
    }

    /// What the component answers about itself: files to watch, its
    /// fingerprint, what it reads and writes, ...
    pub fn hooks(&self) -> &dyn Component {
        match self {
            ComponentConfig::Source(c) => c.component(),
            ComponentConfig::Transform(c) => c.component(),
            ComponentConfig::Sink(c) => c.component(),
        }
    }

    /// [`ComponentConfig::hooks`], to resolve paths.
    pub fn hooks_mut(&mut self) -> &mut dyn Component {
        match self {
            ComponentConfig::Source(c) => c.component_mut(),
            ComponentConfig::Transform(c) => c.component_mut(),
            ComponentConfig::Sink(c) => c.component_mut(),
        }
    }

    /// Whether a running stage with `self` as its settings can take `new`
    /// in place, keeping its state, instead of being restarted.
    pub fn updates_in_place_to(&self, new: &ComponentConfig) -> bool {
        match (self, new) {
            (ComponentConfig::Transform(old), ComponentConfig::Transform(new)) => {
                old.type_name() == new.type_name() && new.component().updates_in_place()
            }
            _ => false,
        }
    }
}

/// One checked stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The stage's name: the key under `[sources]`, `[transforms]` or `[sinks]`.
    pub name: String,
    /// Line of the stage's table header, for messages.
    pub line: usize,
    /// Names of the stages this one reads from.
    pub inputs: Vec<String>,
    /// Sink that receives this stage's rejected records, if any.
    pub dead_letter: Option<String>,
    /// Type and type-specific settings.
    pub component: ComponentConfig,
}

/// Process-wide settings from the top of the pipeline file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Events per batch sent between stages (default 1024).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Batches buffered between two stages before the sender waits
    /// (backpressure; default 8).
    #[serde(default)]
    pub channel_capacity: Option<usize>,
    /// Directory for checkpoints (stage state with source positions);
    /// absent: no checkpoints.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// How often to checkpoint (default 10 s; with `guarantee =
    /// "exactly-once"`, how often a transaction commits: default 100 ms).
    #[serde(default)]
    pub checkpoint_interval: Option<crate::units::Duration>,
    /// What the pipeline promises when something fails: `at-least-once`
    /// (default: nothing is lost, a crash may repeat records) or
    /// `exactly-once` (Kafka to Kafka: every checkpoint is one Kafka
    /// transaction holding the output, the dead letters, the input offsets
    /// and the plugin state).
    #[serde(default)]
    pub guarantee: Guarantee,
    /// This process's identity among the processes running this pipeline
    /// (default: the `WEIR_INSTANCE_ID` environment variable; exactly-once
    /// without either: `0`). With it, Kafka sources are static members of
    /// their groups (`group.instance.id = weir-<pipeline>-<instance_id>-<stage>`),
    /// so a restarted process takes its partitions back at once, and a second
    /// live process with the same id on a host is refused; exactly-once, its
    /// transactional id is `weir-<pipeline>-<instance_id>`, so a restarted
    /// process fences its predecessor.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// How long a transaction may stay open before the broker aborts it
    /// (exactly-once; default 60 s, as Kafka's producer).
    #[serde(default)]
    pub transaction_timeout: Option<crate::units::Duration>,
    /// The compacted topic plugin state is kept in (exactly-once; default
    /// `weir-<pipeline>-state`, shared by every instance, with as many
    /// partitions as the input: a task's state moves with its partition).
    #[serde(default)]
    pub changelog: Option<String>,
    /// Address (`IP:PORT`) of the admin endpoint: status, metrics, reload,
    /// tap and dashboards. Absent: no endpoint (unless `--admin` is given).
    #[serde(default)]
    pub admin: Option<std::net::SocketAddr>,
    /// Bearer token the admin endpoint requires; needed to bind it to a
    /// non-loopback address. Use `${VAR}` to keep it out of the file.
    #[serde(default)]
    pub admin_token: Option<String>,
}

/// What a pipeline promises about its output when a process or broker
/// fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Nothing is lost; after a crash some records may be delivered twice.
    #[default]
    AtLeastOnce,
    /// Every record's effect appears once, to read_committed readers.
    ExactlyOnce,
}

impl Guarantee {
    /// As written in pipeline files.
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }
}

/// A checked pipeline, ready to build.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// The file it came from.
    pub file: PathBuf,
    /// Directory relative paths were resolved against.
    pub base_dir: PathBuf,
    /// Process-wide settings.
    pub options: Options,
    /// Stages in file order.
    pub stages: IndexMap<String, Stage>,
}

impl Pipeline {
    /// Stages that read from `name` (through `inputs`, not dead letters).
    pub fn consumers_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Stage> + 'a {
        self.stages
            .values()
            .filter(move |s| s.inputs.iter().any(|i| i == name))
    }

    /// Sources and transforms whose dead-letter output is `name`: each
    /// sends its checkpoint barriers and its end there too.
    pub fn dead_letter_feeders<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Stage> + 'a {
        self.stages.values().filter(move |s| {
            s.dead_letter.as_deref() == Some(name) && s.component.kind() != Kind::Sink
        })
    }

    /// The pipeline's name: its file name without the extension.
    pub fn name(&self) -> String {
        self.file.file_stem().map_or_else(
            || "pipeline".to_owned(),
            |s| s.to_string_lossy().into_owned(),
        )
    }

    /// How often checkpoints (or, exactly-once, transactions) happen.
    pub fn checkpoint_interval(&self) -> std::time::Duration {
        let default = match self.options.guarantee {
            Guarantee::AtLeastOnce => std::time::Duration::from_secs(10),
            Guarantee::ExactlyOnce => std::time::Duration::from_millis(100),
        };
        self.options
            .checkpoint_interval
            .map_or(default, |d| d.get())
            .max(std::time::Duration::from_millis(1))
    }

    /// The static group membership of this process's Kafka sources,
    /// `weir-<pipeline>-<instance_id>`: when an instance id is set (or from
    /// the environment), and always under exactly-once.
    pub fn static_member_id(&self) -> Option<String> {
        let explicit =
            self.options.instance_id.is_some() || std::env::var_os("WEIR_INSTANCE_ID").is_some();
        (explicit || self.options.guarantee == Guarantee::ExactlyOnce)
            .then(|| format!("weir-{}-{}", self.name(), self.instance_id()))
    }

    /// This process's instance id (exactly-once).
    pub fn instance_id(&self) -> String {
        self.options
            .instance_id
            .clone()
            .or_else(|| std::env::var("WEIR_INSTANCE_ID").ok())
            .unwrap_or_else(|| "0".to_owned())
    }

    /// Events per batch.
    pub fn batch_size(&self) -> usize {
        self.options.batch_size.unwrap_or(1024).max(1)
    }
}

/// Reads and compiles a pipeline file, taking `${VAR}`s from the environment.
pub fn load(file: &Path) -> Result<Pipeline, ConfigErrors> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.to_path_buf(),
            line: 0,
            message: format!("cannot read pipeline file: {e}"),
        }])
    })?;
    compile(&text, file, &|name| std::env::var(name).ok())
}
