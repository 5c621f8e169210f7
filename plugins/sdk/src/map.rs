//! Shorthands for one-in-one-out plugins: a [`Map`] writes one event for
//! each event it reads, a [`Filter`] passes some events on unchanged.
//!
//! The plugin type is its own config: the SDK parses the stage's `config`
//! table into it with [`config::parse`] (errors name the key), and keeps its
//! [`Map::State`] across reloads and restarts with [`state::save`] and
//! [`state::load`]. Register it with `export!(map Plugin)` or
//! `export!(filter Plugin)`; [`Mapped`] is the [`Transform`] that runs it,
//! natively too, for tests.
//!
//! ```
//! use weir_plugin::{Batch, Emit, Event, Map, Mapped, Output, Transform};
//!
//! /// Upper-cases each value, after a prefix.
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Upper {
//!     #[serde(default)]
//!     prefix: String,
//! }
//!
//! impl Map for Upper {
//!     type State = ();
//!     fn map(&mut self, event: &Event, _: &mut (), out: &mut Emit) -> Result<(), String> {
//!         out.extend_from_slice(self.prefix.as_bytes());
//!         out.extend_from_slice(&event.text()?.to_uppercase().into_bytes());
//!         Ok(())
//!     }
//! }
//! weir_plugin::export!(map Upper);
//!
//! let mut stage = Mapped::<Upper>::new(r#"{"prefix":">"}"#).unwrap();
//! let mut out = Output::default();
//! stage.process(&Batch::from_values(0, &[(1, b"abc".as_slice()), (2, b"\xff")]), &mut out);
//! assert_eq!(out.values_lossy(), [">ABC"]);
//! assert!(out.rejections()[0].reason.starts_with("value is not UTF-8"));
//! ```
//!
//! [`config::parse`]: crate::config::parse

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Batch, Emit, Event, Output, Transform, state};

/// A plugin that writes at most one event for each event it reads, with the
/// same timestamp and key. The type is its config; its state is
/// [`Map::State`]. Run it as [`Mapped`], registered with
/// `export!(map Plugin)`.
pub trait Map: DeserializeOwned + 'static {
    /// What the plugin keeps from event to event, across reloads and
    /// restarts: `()` if nothing. It is saved as a field of a struct, so
    /// any serde type will do.
    type State: Default + Serialize + DeserializeOwned;

    /// Version of the state's layout: raise it when `State` changes shape,
    /// and state of the old shape is refused rather than misread.
    const STATE_VERSION: u32 = 1;

    /// Called once the config is parsed: check what serde cannot (ranges,
    /// combinations) and prepare what the config implies.
    fn init(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Writes the event for `event` into `out` (or [`Emit::skip`]s it);
    /// `Err` refuses the event with that reason and drops what was written.
    fn map(
        &mut self,
        event: &Event<'_>,
        state: &mut Self::State,
        out: &mut Emit<'_>,
    ) -> Result<(), String>;
}

/// A plugin that passes some events on unchanged (value, key and headers)
/// and drops the others. The type is its config, as for [`Map`]; register
/// it with `export!(filter Plugin)`.
pub trait Filter: DeserializeOwned + 'static {
    /// What the plugin keeps from event to event; see [`Map::State`].
    type State: Default + Serialize + DeserializeOwned;

    /// Version of the state's layout; see [`Map::STATE_VERSION`].
    const STATE_VERSION: u32 = 1;

    /// Called once the config is parsed; see [`Map::init`].
    fn init(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Whether to pass `event` on; `Err` refuses it with that reason.
    fn keep(&mut self, event: &Event<'_>, state: &mut Self::State) -> Result<bool, String>;
}

impl<F: Filter> Map for F {
    type State = F::State;
    const STATE_VERSION: u32 = F::STATE_VERSION;

    fn init(&mut self) -> Result<(), String> {
        Filter::init(self)
    }

    fn map(
        &mut self,
        event: &Event<'_>,
        state: &mut F::State,
        out: &mut Emit<'_>,
    ) -> Result<(), String> {
        if self.keep(event, state)? {
            out.copy(event);
        } else {
            out.skip();
        }
        Ok(())
    }
}

/// The [`Transform`] that runs a [`Map`] (or a [`Filter`]).
pub struct Mapped<M: Map> {
    plugin: M,
    state: M::State,
}

/// The snapshot layout: `{"version":N,"state":…}`.
#[derive(Serialize, Deserialize)]
struct Saved<S> {
    state: S,
}

impl<M: Map> Mapped<M> {
    /// The plugin, as configured.
    pub fn plugin(&self) -> &M {
        &self.plugin
    }

    /// The plugin's state.
    pub fn state(&self) -> &M::State {
        &self.state
    }

    /// Whether there is state to save: not for `()` or empty structs.
    const STATEFUL: bool = size_of::<M::State>() != 0;
}

impl<M: Map> Transform for Mapped<M> {
    fn new(config: &str) -> Result<Self, String> {
        let mut plugin: M = crate::config::parse(config)?;
        plugin.init()?;
        Ok(Mapped {
            plugin,
            state: M::State::default(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) {
        for event in batch.iter() {
            out.emit_one(&event, |emit| {
                self.plugin.map(&event, &mut self.state, emit)
            });
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        if !Self::STATEFUL {
            return Vec::new();
        }
        state::save(M::STATE_VERSION, &Saved { state: &self.state })
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        if Self::STATEFUL {
            let saved: Saved<M::State> = state::load(M::STATE_VERSION, state)?;
            self.state = saved.state;
            Ok(())
        } else {
            state::none(state)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Passes each distinct value once; refuses empty values.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Distinct {
        #[serde(default)]
        limit: Option<usize>,
    }

    impl Filter for Distinct {
        type State = BTreeSet<Vec<u8>>;
        fn init(&mut self) -> Result<(), String> {
            match self.limit {
                Some(0) => Err("limit must be positive".into()),
                _ => Ok(()),
            }
        }
        fn keep(&mut self, event: &Event<'_>, seen: &mut Self::State) -> Result<bool, String> {
            if event.value.is_empty() {
                return Err("empty value".into());
            }
            let room = self.limit.is_none_or(|l| seen.len() < l);
            Ok(room && seen.insert(event.value.to_vec()))
        }
    }

    fn run<M: Map>(stage: &mut Mapped<M>, values: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut batch = Batch::from_values(0, &values.iter().map(|v| (1, *v)).collect::<Vec<_>>());
        batch.push_header(0, "h", b"v");
        let mut out = Output::default();
        stage.process(&batch, &mut out);
        let reasons = out.rejections().iter().map(|r| r.reason.clone()).collect();
        (out.values_lossy(), reasons)
    }

    #[test]
    fn filters_pass_events_unchanged_and_keep_state() {
        let mut a = Mapped::<Distinct>::new("{}").unwrap();
        assert_eq!(
            run(&mut a, &["x", "", "y", "x"]),
            (vec!["x".into(), "y".into()], vec!["empty value".into()])
        );
        let mut out = Output::default();
        a.process(&Batch::from_values(0, &[(7, "z")]), &mut out);
        assert_eq!((out.timestamp(0), out.headers().len()), (7, 0));
        let snapshot = a.snapshot();
        assert!(snapshot.starts_with(br#"{"version":1,"state":["#));
        let mut b = Mapped::<Distinct>::new(r#"{"limit":4}"#).unwrap();
        b.restore(&snapshot).unwrap();
        assert_eq!(b.state().len(), 3);
        assert_eq!(run(&mut b, &["x", "w", "v"]).0, ["w"]);
        assert_eq!(b.plugin().limit, Some(4));
        assert!(
            b.restore(b"{}")
                .unwrap_err()
                .contains("missing field `version`")
        );
    }

    #[test]
    fn configs_are_parsed_and_checked() {
        let e = Mapped::<Distinct>::new(r#"{"limt":1}"#).err().unwrap();
        assert!(e.starts_with("unknown field `limt`"), "{e}");
        let e = Mapped::<Distinct>::new(r#"{"limit":0}"#).err().unwrap();
        assert_eq!(e, "limit must be positive");
    }

    /// Writes the value's length, with a header.
    #[derive(Deserialize)]
    struct Len {}

    impl Map for Len {
        type State = ();
        fn map(&mut self, event: &Event<'_>, _: &mut (), out: &mut Emit<'_>) -> Result<(), String> {
            out.json(&event.value.len())?;
            out.header("len", b"1");
            Ok(())
        }
    }

    #[test]
    fn stateless_maps_save_nothing() {
        let mut m = Mapped::<Len>::new("").unwrap();
        assert_eq!(run(&mut m, &["abc", ""]).0, ["3", "0"]);
        assert!(m.snapshot().is_empty());
        assert_eq!(m.restore(b""), Ok(()));
    }
}
