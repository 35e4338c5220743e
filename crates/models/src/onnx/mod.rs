//! Whole-model ONNX export (opset 13) in the QCDQ form that onnxruntime, TensorRT and tract run:
//! quantized weights as int8 initializers + `DequantizeLinear` (per axis where per channel),
//! input quantizers as `QuantizeLinear → Clip(qmin, qmax) → DequantizeLinear` with the learned
//! step, full-precision layers as float ops, evaluation-mode BatchNorm folded into its conv.
//! Graph input: images as f32 in [0, 1], N×C×H×W with a symbolic batch; the input
//! normalisation is the graph's first op; output: logits.

mod graph;
mod proto;

use std::path::Path;

use quarc_quant_core::QatConfig;

pub use graph::{OnnxGraph, OnnxLayer, Value};
use proto::{Message, value_info};

use crate::{Error, Result};

/// The ONNX opset the export targets.
pub const OPSET: i64 = 13;

/// A model that can describe its evaluation-mode forward pass as an ONNX graph, op by op, with
/// the same layers it computes with ([`OnnxGraph::conv_bn`], [`OnnxGraph::linear`], …).
pub trait ToOnnx {
    /// Appends the model's ops for input `x` (already normalised) and returns the logits.
    fn to_onnx(&self, g: &mut OnnxGraph, x: &Value) -> Result<Value>;
}

/// What the exported file's input looks like and carries along.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxSpec {
    /// Channels, height, width of one image.
    pub input: [usize; 3],
    /// Per-channel mean and standard deviation of the input normalisation (`None`: none).
    pub normalize: Option<(Vec<f32>, Vec<f32>)>,
    /// The QAT configuration, for the metadata.
    pub qat: Option<QatConfig>,
}

/// Builds the ONNX model of `model` and returns the file's bytes and the layers it exported.
/// An uncalibrated quantizer, or one the QCDQ form cannot express, is an error.
pub fn to_onnx_bytes(model: &dyn ToOnnx, spec: &OnnxSpec) -> Result<(Vec<u8>, Vec<OnnxLayer>)> {
    let [c, h, w] = spec.input;
    if c == 0 || h == 0 || w == 0 {
        return Err(Error::InvalidConfig(format!(
            "ONNX input {c}×{h}×{w}: sizes must be positive"
        )));
    }
    let mut g = OnnxGraph::default();
    let input = Value("images".into());
    let x = match &spec.normalize {
        Some((mean, std)) => g.normalize(&input, mean, std)?,
        None => input.clone(),
    };
    let logits = model.to_onnx(&mut g, &x)?;
    let mut graph = Message::default();
    for n in &g.nodes {
        graph.message(1, &n.encode());
    }
    graph.string(2, "quarc");
    for t in &g.constants {
        graph.message(5, &t.encode());
    }
    graph.message(11, &value_info(&input.0, &[None, Some(c), Some(h), Some(w)], "batch"));
    graph.message(12, &value_info(&logits.0, &[None, None], "batch"));
    let mut opset = Message::default();
    opset.string(1, "").int(2, OPSET);
    let mut m = Message::default();
    m.int(1, 8)
        .message(8, &opset)
        .string(2, "quarc")
        .string(3, env!("CARGO_PKG_VERSION"))
        .message(7, &graph);
    for (k, v) in metadata(&g.layers, spec)? {
        let mut e = Message::default();
        e.string(1, &k).string(2, &v);
        m.message(14, &e);
    }
    Ok((m.into_bytes(), g.layers))
}

fn metadata(layers: &[OnnxLayer], spec: &OnnxSpec) -> Result<Vec<(String, String)>> {
    let describe = |q: &Option<(&str, u32)>| q.map_or("fp32".to_string(), |(k, b)| format!("{k} {b}-bit"));
    let mut out = vec![("quarc_version".to_string(), env!("CARGO_PKG_VERSION").to_string())];
    if let Some(q) = &spec.qat {
        let json = serde_json::to_string(q).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        out.push(("qat_config".into(), json));
    }
    for l in layers {
        out.push((
            format!("layer.{}", l.name),
            format!("weight: {}; input: {}", describe(&l.weight), describe(&l.input)),
        ));
    }
    Ok(out)
}

/// Writes the ONNX model of `model` to `path` atomically and returns the layers it exported.
pub fn export_onnx(model: &dyn ToOnnx, spec: &OnnxSpec, path: impl AsRef<Path>) -> Result<Vec<OnnxLayer>> {
    let (bytes, layers) = to_onnx_bytes(model, spec)?;
    quarc_quant_core::atomic_write(path.as_ref(), &bytes).map_err(quarc_quant_core::Error::from)?;
    Ok(layers)
}
