//! The host's only `bindgen!` of `wit/weir.wit`. The generated types stay
//! inside `wasm/`: the rest of the crate sees [`super::PluginInput`] and
//! [`super::PluginOutput`].

#![allow(missing_docs, clippy::all)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "transform-plugin",
});

pub(super) use self::weir::plugin::types::{
    Batch as PluginBatch, BatchResult as PluginResult, Events as PluginEvents,
    Header as PluginHeader, Level as PluginLevel,
};
