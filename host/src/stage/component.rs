//! What a component (a source, transform or sink type) implements, and the
//! registry macro that lists the types of each kind.
//!
//! A component's settings are plain serde data; [`Source::build`],
//! [`Transform::build`] and [`Sink::build`] turn them into the running
//! stage. Everything else the engine or the config compiler needs to know
//! about a component is a method of [`Component`] with a default, so the
//! engine never names a component type: which files to watch, what to
//! digest for a reload, whether it resumes where it stopped, which external
//! data it reads or writes, whether it can take an update in place.

use std::path::PathBuf;

use futures_util::future::BoxFuture;

use super::{BoxError, SinkContext, SourceContext, TransformContext, Update};

/// A running stage: the future that drives it until its input ends, it is
/// stopped, or it fails.
pub type StageTask = BoxFuture<'static, Result<(), BoxError>>;

/// Something outside the pipeline that stages read or write, named so the
/// engine can match readers with writers without knowing what it is (for
/// example a Kafka topic on one cluster).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource(String);

impl Resource {
    /// The resource `id` of kind `kind` (`"kafka"`, ...).
    pub fn new(kind: &str, id: impl std::fmt::Display) -> Self {
        Resource(format!("{kind}:{id}"))
    }
}

/// How a stage can take part in an exactly-once pipeline, where every
/// checkpoint is one Kafka transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transactional {
    /// It has no effect outside the pipeline (a transform: its state is in
    /// the checkpoint).
    Neutral,
    /// Its reads or writes commit in a transaction on this Kafka cluster.
    Kafka {
        /// The `brokers` setting.
        brokers: Option<String>,
        /// librdkafka settings for a client of that cluster (security,
        /// timeouts), as the stage's `options` give them.
        client: Vec<(String, String)>,
    },
    /// It cannot, with the reason.
    No(String),
}

/// How a transform keeps state over partitioned input (a Kafka source's
/// partitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioning {
    /// One task per input partition: every Kafka input must have the same
    /// number of partitions (co-partitioned).
    PerPartition,
    /// One state for the whole input: its Kafka input must have one
    /// partition.
    Global,
}

/// Hooks every component type answers; each has a default for types that
/// have nothing to say.
pub trait Component: Send + Sync {
    /// Paths in the settings, resolved against the pipeline file's
    /// directory when the file is compiled.
    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        Vec::new()
    }

    /// Checks the files the settings name (exists, right format) without
    /// building anything; each problem as the settings key it concerns and
    /// a message, for `weir validate`.
    fn check_files(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Settings that contradict each other or are out of range, as
    /// `(key, message)` pairs, reported at the key's line by `weir
    /// validate` and at start.
    fn check_settings(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Files the stage's behaviour comes from (plugins, models): a change to
    /// one reloads the stage.
    fn files_to_watch(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// A digest of what the stage runs besides its settings (a plugin
    /// build, a model file); a reload changes the stage when it changes.
    /// May build (a plugin crate whose sources changed), so call it off
    /// the async workers.
    fn fingerprint(&self) -> Result<Option<String>, BoxError> {
        Ok(None)
    }

    /// Outside data this stage reads (sources). A source that stops at the
    /// end of its data waits for the stages of the same pipeline that
    /// write what it reads.
    fn reads(&self) -> Vec<Resource> {
        Vec::new()
    }

    /// Outside data this stage writes (sinks).
    fn writes(&self) -> Vec<Resource> {
        Vec::new()
    }

    /// Whether a replacement instance (a reload changed the settings) goes
    /// on from where the stopped one left off (sources with a position).
    fn resumes_where_stopped(&self) -> bool {
        false
    }

    /// Transforms that keep state per input partition, or need all of it in
    /// one place: checked against the partitions of their Kafka inputs at
    /// start.
    fn partitioning(&self) -> Option<Partitioning> {
        None
    }

    /// Sources: the partition count of every topic the stage reads (asks
    /// the cluster; blocks). `None` for sources without partitions.
    fn input_partitions(&self) -> Option<Result<Vec<(String, i32)>, BoxError>> {
        None
    }

    /// How the stage takes part in an exactly-once pipeline (by default it
    /// cannot: its effects could not be rolled back with a transaction).
    fn transactional(&self) -> Transactional {
        Transactional::No("its effects cannot be undone with a Kafka transaction".into())
    }
}

/// A source type: builds a stage that produces events.
pub trait Source: Component {
    /// Builds the source; the task runs until its data ends or it is told
    /// to stop.
    fn build(&self, ctx: SourceContext) -> Result<StageTask, BoxError>;
}

/// A transform type: builds a stage between inputs and outputs.
pub trait Transform: Component {
    /// Builds the transform; the task runs until its input ends.
    fn build(&self, ctx: TransformContext) -> Result<StageTask, BoxError>;

    /// Whether a running instance takes new settings of this type in place,
    /// keeping its state ([`Transform::prepare_update`]); otherwise a reload
    /// restarts it.
    fn updates_in_place(&self) -> bool {
        false
    }

    /// Prepares an in-place update of the running stage `stage` to these
    /// settings, doing everything that can fail or take time (loading,
    /// compiling) before the running instance is disturbed. Called only
    /// when [`Transform::updates_in_place`] is true.
    fn prepare_update(&self, stage: &str) -> Result<(Update, super::UpdateOutcome), BoxError> {
        let _ = stage;
        Err("this transform type restarts instead of updating in place".into())
    }
}

/// A sink type: builds a stage that delivers events.
pub trait Sink: Component {
    /// Builds the sink; the task runs until its input ends.
    fn build(&self, ctx: SinkContext) -> Result<StageTask, BoxError>;
}

/// Declares the closed set of types of one kind of stage: the settings
/// enum, selected by the `type` key, with its `TYPES` list, `type_name`,
/// deserialisation by type, and access to the component behind each
/// variant. Adding a type is one line here.
macro_rules! component_registry {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $kind:ident {
            $( $(#[$vmeta:meta])* $type_name:literal => $variant:ident($config:ty), )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($config), )*
        }

        impl $name {
            /// The `type` values this kind of stage accepts.
            pub const TYPES: &'static [&'static str] = &[$($type_name),*];

            /// The `type` of these settings.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $type_name, )*
                }
            }

            /// Reads the settings of a stage whose `type` is `type_name`.
            pub fn deserialize_type<'de, D: serde::Deserializer<'de>>(
                type_name: &str,
                de: D,
            ) -> Result<Self, D::Error> {
                match type_name {
                    $( $type_name => <$config as serde::Deserialize>::deserialize(de).map(Self::$variant), )*
                    other => Err(serde::de::Error::custom(format!("unknown type `{other}`"))),
                }
            }

            /// The component these settings configure.
            pub fn component(&self) -> &dyn $crate::stage::$kind {
                match self {
                    $( Self::$variant(c) => c, )*
                }
            }

            /// The component, for resolving its paths.
            pub fn component_mut(&mut self) -> &mut dyn $crate::stage::$kind {
                match self {
                    $( Self::$variant(c) => c, )*
                }
            }
        }
    };
}

pub(crate) use component_registry;
