//! Transforms: stages between sources and sinks.

pub mod onnx;
pub mod wasm;

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use serde::Deserialize;

use crate::topology::{BoxError, TransformContext};

/// Every transform type, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum TransformConfig {
    /// Predictions from an ONNX model.
    Onnx(onnx::OnnxConfig),
    /// A sandboxed WebAssembly plugin.
    Wasm(wasm::WasmConfig),
}

impl TransformConfig {
    /// The `type` values transforms accept.
    pub const TYPES: &'static [&'static str] = &["onnx", "wasm"];

    /// The `type` of this transform.
    pub fn type_name(&self) -> &'static str {
        match self {
            TransformConfig::Onnx(_) => "onnx",
            TransformConfig::Wasm(_) => "wasm",
        }
    }

    pub(crate) fn deserialize_type<'de, D: serde::Deserializer<'de>>(
        type_name: &str,
        de: D,
    ) -> Result<Self, D::Error> {
        Ok(match type_name {
            "onnx" => TransformConfig::Onnx(onnx::OnnxConfig::deserialize(de)?),
            "wasm" => TransformConfig::Wasm(wasm::WasmConfig::deserialize(de)?),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "unknown transform type `{other}`"
                )));
            }
        })
    }

    pub(crate) fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        match self {
            TransformConfig::Onnx(c) => vec![&mut c.model],
            TransformConfig::Wasm(c) => vec![&mut c.plugin],
        }
    }

    /// Files whose change should reload this stage.
    pub fn files_to_watch(&self) -> Vec<PathBuf> {
        match self {
            TransformConfig::Onnx(c) => vec![c.model.clone()],
            TransformConfig::Wasm(c) => vec![c.plugin.clone()],
        }
    }

    /// A digest of what this stage runs besides its settings: the plugin
    /// component (building a plugin crate first if its sources changed) or
    /// the model file. A reload swaps the stage when this changes.
    pub fn fingerprint(&self) -> Result<String, BoxError> {
        let file = match self {
            TransformConfig::Onnx(c) => c.model.clone(),
            TransformConfig::Wasm(c) => crate::wasm::resolve_plugin(&c.plugin)?.0,
        };
        crate::util::file_digest(&file).map_err(Into::into)
    }

    /// Builds the transform; the future runs until its input closes.
    pub fn build(
        &self,
        ctx: TransformContext,
    ) -> Result<BoxFuture<'static, Result<(), BoxError>>, BoxError> {
        match self {
            TransformConfig::Onnx(c) => c.build(ctx),
            TransformConfig::Wasm(c) => c.build(ctx),
        }
    }
}
