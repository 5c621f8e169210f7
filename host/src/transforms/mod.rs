//! Transforms: stages between sources and sinks. The registry below lists
//! every transform type; each implements [`crate::stage::Transform`] in its
//! own file.

pub mod onnx;
pub mod wasm;

use crate::stage::component_registry;

component_registry! {
    /// Every transform type, with its settings (selected by `type`).
    pub enum TransformConfig: Transform {
        /// Predictions from an ONNX model.
        "onnx" => Onnx(onnx::OnnxConfig),
        /// A sandboxed WebAssembly plugin.
        "wasm" => Wasm(wasm::WasmConfig),
    }
}
