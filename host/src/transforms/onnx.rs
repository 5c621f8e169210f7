//! `type = "onnx"`: predictions from an ONNX model (tract), appended to
//! each JSON event.
//!
//! ```toml
//! [transforms.predict]
//! type = "onnx"
//! inputs = ["sensors"]
//! model = "../models/rain-mlp.onnx"
//! features = ["temperature", "humidity"]     # JSON fields, in the model's input order
//! outputs = { label = "rain", probabilities = ["p_dry", "p_rain"] }
//! batch = 64                                  # rows per model run
//! dead_letter = "bad_readings"
//! ```
//!
//! `outputs` maps each model output to a field (one value per row: a label
//! or a regression value) or a list of fields (one per column: per-class
//! probabilities). The model is loaded, given a batch dimension and
//! optimised once, at start; a model tract cannot run fails the start with
//! the operator it does not implement. An event whose value is not a JSON
//! object, or lacks a feature or holds a non-number there, goes to the
//! dead-letter output.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::FutureExt;
use serde::Deserialize;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::event::Event;
use crate::stage::{
    BoxError, Component, Processed, StageTask, Transactional, Transform, TransformContext,
    run_blocking, run_stateless,
};

/// Where a model output goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Fields {
    /// One field per row.
    One(String),
    /// One field per column.
    Many(Vec<String>),
}

/// Settings of the `onnx` transform.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxConfig {
    /// The `.onnx` file.
    pub model: PathBuf,
    /// JSON fields fed to the model, in order.
    pub features: Vec<String>,
    /// Model output name -> field(s).
    pub outputs: BTreeMap<String, Fields>,
    /// Rows per model run (default 64).
    #[serde(default)]
    pub batch: Option<usize>,
}

/// A loaded, optimised model.
pub struct Predictor {
    /// Execution state kept between runs (its buffers are reused).
    state: TypedSimpleState,
    /// A plan for exactly this many rows, when configured.
    fixed: Option<(usize, TypedSimpleState)>,
    features: usize,
    /// (index of the model output, where it goes).
    outputs: Vec<(usize, Fields)>,
}

/// A model run's results, by column: for each configured output, its field
/// names and its values row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions<'a> {
    /// Rows predicted.
    pub rows: usize,
    /// (field names, values: `rows * names.len()`).
    pub columns: Vec<(Vec<&'a str>, Vec<Value>)>,
}

impl Predictions<'_> {
    /// The `(field, value)` pairs of row `i`.
    pub fn row(&self, i: usize) -> impl Iterator<Item = (&str, &Value)> + '_ {
        self.columns.iter().flat_map(move |(names, values)| {
            let w = names.len();
            names.iter().copied().zip(&values[i * w..(i + 1) * w])
        })
    }
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("features", &self.features)
            .finish()
    }
}

/// One row's output values.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number.
    Number(f64),
    /// An integer (labels).
    Int(i64),
    /// A string label.
    Text(String),
}

impl Value {
    /// As a JSON value.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Value::Number(x) => serde_json::json!(x),
            Value::Int(i) => serde_json::json!(i),
            Value::Text(s) => serde_json::json!(s),
        }
    }
}

impl Predictor {
    /// Loads `path` for rows of `features` floats and checks `outputs`.
    pub fn load(
        path: &std::path::Path,
        features: usize,
        outputs: &BTreeMap<String, Fields>,
    ) -> Result<Predictor, String> {
        Self::load_for_batch(path, features, outputs, None)
    }

    /// Like [`Predictor::load`], plus a plan specialised for exactly
    /// `batch` rows (tract optimises a fixed shape further than a symbolic
    /// one); other row counts use the general plan.
    pub fn load_for_batch(
        path: &std::path::Path,
        features: usize,
        outputs: &BTreeMap<String, Fields>,
        batch: Option<usize>,
    ) -> Result<Predictor, String> {
        let plan = |rows: Option<usize>| -> Result<(TypedSimpleState, Vec<String>), String> {
            let model = tract_onnx::onnx()
                .model_for_path(path)
                .map_err(|e| format!("cannot read ONNX model {}: {e:#}", path.display()))?;
            // Name a feature-count mismatch plainly instead of as the
            // shape error of whichever operator meets it first.
            let declared = model
                .input_fact(0)
                .ok()
                .and_then(|f| f.shape.dims().last().and_then(|d| d.concretize()))
                .and_then(|d| d.to_i64().ok());
            if let Some(n) = declared
                && n != features as i64
            {
                return Err(format!(
                    "model {} takes {n} value(s) per row, but `features` lists {features}",
                    path.display()
                ));
            }
            let first = match rows {
                Some(r) => (r as i64).to_dim(),
                None => model.symbols.sym("N").to_dim(),
            };
            let fact = InferenceFact::dt_shape(
                f32::datum_type(),
                tvec!(first, (features as i64).to_dim()),
            );
            let typed = model
                .with_input_fact(0, fact)
                .and_then(|m| m.into_optimized())
                .map_err(|e| format!("model {} is not supported: {e:#}", path.display()))?;
            let names: Vec<String> = typed
                .output_outlets()
                .map_err(|e| e.to_string())?
                .iter()
                .map(|o| {
                    typed
                        .outlet_label(*o)
                        .map(str::to_owned)
                        .unwrap_or_else(|| typed.node(o.node).name.clone())
                })
                .collect();
            let runnable = typed
                .into_runnable()
                .map_err(|e| format!("model {} cannot be prepared: {e:#}", path.display()))?;
            let state = TypedSimpleState::new(&runnable)
                .map_err(|e| format!("model {} cannot be prepared: {e:#}", path.display()))?;
            Ok((state, names))
        };
        let (state, names) = plan(None)?;
        let mut mapped = Vec::new();
        for (name, fields) in outputs {
            let index = names.iter().position(|n| n == name).ok_or_else(|| {
                format!(
                    "model has no output `{name}`; its outputs are {}",
                    names.join(", ")
                )
            })?;
            mapped.push((index, fields.clone()));
        }
        let fixed = match batch {
            Some(b) if b > 1 => Some((b, plan(Some(b))?.0)),
            _ => None,
        };
        Ok(Predictor {
            state,
            fixed,
            features,
            outputs: mapped,
        })
    }

    /// Runs the model on `rows` (row-major, `features` per row).
    pub fn predict(&mut self, rows: &[f32]) -> Result<Predictions<'_>, String> {
        let n = rows.len() / self.features;
        let input = Tensor::from_shape(&[n, self.features], rows).map_err(|e| e.to_string())?;
        let state = match &mut self.fixed {
            Some((rows, state)) if *rows == n => state,
            _ => &mut self.state,
        };
        let result = state
            .run(tvec!(input.into()))
            .map_err(|e| format!("model run failed: {e:#}"))?;
        let mut columns = Vec::with_capacity(self.outputs.len());
        for (index, fields) in &self.outputs {
            let values = tensor_values(&result[*index])?;
            let cols = values.len().checked_div(n).unwrap_or(0);
            let names: Vec<&str> = match fields {
                Fields::One(name) => vec![name.as_str()],
                Fields::Many(names) => names.iter().map(String::as_str).collect(),
            };
            if n > 0 && cols != names.len() {
                return Err(format!(
                    "model output has {cols} values per row but {} field name(s): {}",
                    names.len(),
                    names.join(", ")
                ));
            }
            columns.push((names, values));
        }
        Ok(Predictions { rows: n, columns })
    }
}

fn tensor_values(t: &Tensor) -> Result<Vec<Value>, String> {
    let dt = t.datum_type();
    let out: Vec<Value> = if dt == i64::datum_type() {
        t.to_plain_array_view::<i64>()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| Value::Int(*v))
            .collect()
    } else if dt == i32::datum_type() {
        t.to_plain_array_view::<i32>()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| Value::Int(*v as i64))
            .collect()
    } else if dt == f32::datum_type() {
        t.to_plain_array_view::<f32>()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| Value::Number(*v as f64))
            .collect()
    } else if dt == f64::datum_type() {
        t.to_plain_array_view::<f64>()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| Value::Number(*v))
            .collect()
    } else if dt == String::datum_type() {
        t.to_plain_array_view::<String>()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| Value::Text(v.clone()))
            .collect()
    } else if dt == TDim::datum_type() {
        // Integer labels sometimes come out of tract's optimiser as
        // symbolic-dimension integers.
        let t = t.cast_to::<i64>().map_err(|e| e.to_string())?;
        t.to_plain_array_view::<i64>()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| Value::Int(*v))
            .collect()
    } else if dt == bool::datum_type() {
        t.to_plain_array_view::<bool>()
            .map_err(|e| e.to_string())?
            .iter()
            .map(|v| Value::Int(*v as i64))
            .collect()
    } else {
        return Err(format!("unsupported output type {dt:?}"));
    };
    Ok(out)
}

impl Transform for OnnxConfig {
    fn build(&self, ctx: TransformContext) -> Result<StageTask, BoxError> {
        if self.features.is_empty() {
            return Err("`features` lists no fields".into());
        }
        if self.outputs.is_empty() {
            return Err("`outputs` maps no model output to a field".into());
        }
        let batch = self.batch.unwrap_or(64).max(1);
        let mut predictor = Predictor::load_for_batch(
            &self.model,
            self.features.len(),
            &self.outputs,
            Some(batch),
        )?;
        // One trial row checks, before the stage runs (or replaces a
        // running one on reload), that the model takes `features` inputs
        // and that its outputs fit the configured fields.
        predictor
            .predict(&vec![0.0; self.features.len()])
            .map_err(|e| format!("model {} failed its check run: {e}", self.model.display()))?;
        tracing::info!(model = %self.model.display(), "ONNX model loaded, optimised and checked");
        let features = self.features.clone();
        let handle = tokio::runtime::Handle::current();
        Ok(async move {
            run_blocking(move || {
                run_stateless(ctx, &handle, |events| {
                    predict_events(&mut predictor, &features, batch, events)
                })
            })
            .await?
        }
        .boxed())
    }
}

impl Component for OnnxConfig {
    fn transactional(&self) -> Transactional {
        // Its state is in the checkpoint; it has no outside effect.
        Transactional::Neutral
    }

    fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        vec![&mut self.model]
    }

    fn files_to_watch(&self) -> Vec<PathBuf> {
        vec![self.model.clone()]
    }

    fn fingerprint(&self) -> Result<Option<String>, BoxError> {
        Ok(Some(crate::util::file_digest(&self.model)?))
    }
}

/// Reads the features of one event.
fn features_of(value: &[u8], features: &[String], row: &mut Vec<f32>) -> Result<(), String> {
    for f in features {
        let v =
            weir_plugin::json::field(value, f)?.ok_or_else(|| format!("field {f:?} is missing"))?;
        let x = v
            .as_f64()
            .ok_or_else(|| format!("field {f:?} is not a number: {}", v.as_text()))?;
        row.push(x as f32);
    }
    Ok(())
}

/// Predicts for every event that has its features, `batch` rows a run.
pub fn predict_events(
    predictor: &mut Predictor,
    features: &[String],
    batch: usize,
    events: Vec<Event>,
) -> Processed {
    let mut rejected = Vec::new();
    let mut good: Vec<Event> = Vec::with_capacity(events.len());
    let mut rows: Vec<f32> = Vec::with_capacity(events.len() * features.len());
    for e in events {
        let before = rows.len();
        match features_of(&e.value, features, &mut rows) {
            Ok(()) => good.push(e),
            Err(reason) => {
                rows.truncate(before);
                rejected.push((e, reason));
            }
        }
    }
    let mut out = Vec::with_capacity(good.len());
    let width = features.len();
    for (chunk_events, chunk_rows) in good.chunks(batch).zip(rows.chunks(batch * width)) {
        match predictor.predict(chunk_rows) {
            Ok(preds) => {
                for (i, e) in chunk_events.iter().enumerate() {
                    let mut obj: serde_json::Map<String, serde_json::Value> =
                        match serde_json::from_slice(&e.value) {
                            Ok(serde_json::Value::Object(o)) => o,
                            _ => {
                                rejected.push((e.clone(), "value is not a JSON object".into()));
                                continue;
                            }
                        };
                    for (k, v) in preds.row(i) {
                        obj.insert(k.to_owned(), v.json());
                    }
                    let mut e = e.clone();
                    e.value = Bytes::from(serde_json::Value::Object(obj).to_string());
                    out.push(e);
                }
            }
            Err(reason) => {
                rejected.extend(chunk_events.iter().map(|e| (e.clone(), reason.clone())))
            }
        }
    }
    Processed {
        events: out,
        rejected,
    }
}
