//! The integer-export file: safetensors with packed codes, scales, offsets and JSON metadata.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Module, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::integer::{IntegerTensor, channel_layout};
use super::pack::{pack_codes, packed_len, unpack_codes};
use crate::{Error, Granularity, QRange, QatConfig, Result, atomic_write};

/// Format tag stored in the file's metadata.
pub const FORMAT: &str = "quarc-integer-export/1";

/// What kind of layer an export entry describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerKind {
    /// 2-D convolution, NCHW.
    Conv2d {
        /// Padding.
        padding: usize,
        /// Stride.
        stride: usize,
        /// Dilation.
        dilation: usize,
        /// Groups.
        groups: usize,
    },
    /// Fully connected, `y = x Wᵀ + b`.
    Linear,
}

/// The input-activation grid of a layer (activations are quantized at run time).
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationGrid {
    /// Integer range.
    pub range: QRange,
    /// Granularity.
    pub granularity: Granularity,
    /// Scales.
    pub scale: Vec<f32>,
    /// Offsets (`None` = 0).
    pub offset: Option<Vec<f32>>,
}

/// One exported layer: `y = (conv|linear)(q(x), W) · multiplier + bias` with
/// `W = scale · code + offset` and `q` the input grid.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerExport {
    /// Layer name (tensor-name prefix in the file).
    pub name: String,
    /// Conv or linear, with conv settings.
    pub kind: LayerKind,
    /// Integer weight.
    pub weight: IntegerTensor,
    /// Bias after BatchNorm folding (per output channel).
    pub bias: Option<Vec<f32>>,
    /// Per-output-channel multiplier from a folded BatchNorm.
    pub output_multiplier: Option<Vec<f32>>,
    /// Input grid, when the input is quantized.
    pub input: Option<ActivationGrid>,
}

/// A set of exported layers plus the configuration that trained them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IntegerExport {
    /// Layers in model order.
    pub layers: Vec<LayerExport>,
    /// The QAT configuration, when known.
    pub config: Option<QatConfig>,
}

#[derive(Serialize, Deserialize)]
struct GridMeta {
    range: QRange,
    granularity: Granularity,
    has_offset: bool,
}

#[derive(Serialize, Deserialize)]
struct LayerMeta {
    name: String,
    kind: LayerKind,
    weight_shape: Vec<usize>,
    weight: GridMeta,
    has_bias: bool,
    has_output_multiplier: bool,
    input: Option<GridMeta>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl IntegerExport {
    /// Writes the export to `path` atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut buffers: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut metas = Vec::new();
        for l in &self.layers {
            let n = &l.name;
            let codes = pack_codes(&l.weight.unsigned_codes(), l.weight.range.bits())?;
            buffers.push((format!("{n}.weight.codes"), Dtype::U8, vec![codes.len()], codes));
            buffers.push((
                format!("{n}.weight.scale"),
                Dtype::F32,
                vec![l.weight.scale.len()],
                f32_bytes(&l.weight.scale),
            ));
            if let Some(o) = &l.weight.offset {
                buffers.push((format!("{n}.weight.offset"), Dtype::F32, vec![o.len()], f32_bytes(o)));
            }
            for (suffix, v) in [("bias", &l.bias), ("output_multiplier", &l.output_multiplier)] {
                if let Some(v) = v {
                    buffers.push((format!("{n}.{suffix}"), Dtype::F32, vec![v.len()], f32_bytes(v)));
                }
            }
            if let Some(g) = &l.input {
                buffers.push((
                    format!("{n}.input.scale"),
                    Dtype::F32,
                    vec![g.scale.len()],
                    f32_bytes(&g.scale),
                ));
                if let Some(o) = &g.offset {
                    buffers.push((format!("{n}.input.offset"), Dtype::F32, vec![o.len()], f32_bytes(o)));
                }
            }
            metas.push(LayerMeta {
                name: n.clone(),
                kind: l.kind,
                weight_shape: l.weight.shape.clone(),
                weight: GridMeta {
                    range: l.weight.range,
                    granularity: l.weight.granularity,
                    has_offset: l.weight.offset.is_some(),
                },
                has_bias: l.bias.is_some(),
                has_output_multiplier: l.output_multiplier.is_some(),
                input: l.input.as_ref().map(|g| GridMeta {
                    range: g.range,
                    granularity: g.granularity,
                    has_offset: g.offset.is_some(),
                }),
            });
        }
        let json = |e: serde_json::Error| Error::config(format!("serializing export metadata: {e}"));
        let mut meta = HashMap::new();
        meta.insert("quarc.format".to_string(), FORMAT.to_string());
        meta.insert("quarc.layers".to_string(), serde_json::to_string(&metas).map_err(json)?);
        if let Some(c) = &self.config {
            meta.insert("quarc.qat_config".to_string(), serde_json::to_string(c).map_err(json)?);
        }
        let views = buffers
            .iter()
            .map(|(name, dt, shape, data)| {
                Ok((
                    name.clone(),
                    TensorView::new(*dt, shape.clone(), data).map_err(|e| Error::config(e.to_string()))?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes = safetensors::tensor::serialize(views, Some(meta))
            .map_err(|e| Error::config(format!("safetensors: {e}")))?;
        Ok(atomic_write(path, &bytes)?)
    }

    /// Reads an export written by [`IntegerExport::save`], validating every tensor.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let corrupt = |reason: String| Error::CorruptExport {
            path: path.to_path_buf(),
            reason,
        };
        let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(format!("not a safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        match meta.get("quarc.format") {
            Some(f) if f == FORMAT => {}
            other => return Err(corrupt(format!("format tag {other:?}, expected {FORMAT:?}"))),
        }
        let metas: Vec<LayerMeta> = serde_json::from_str(
            meta.get("quarc.layers")
                .ok_or_else(|| corrupt("no layer metadata".into()))?,
        )
        .map_err(|e| corrupt(format!("layer metadata: {e}")))?;
        let config = match meta.get("quarc.qat_config") {
            Some(c) => Some(serde_json::from_str(c).map_err(|e| corrupt(format!("qat config: {e}")))?),
            None => None,
        };
        let raw = |name: &str, dtype: Dtype, len: usize| -> Result<Vec<u8>> {
            let t = st
                .tensor(name)
                .map_err(|_| corrupt(format!("missing tensor `{name}`")))?;
            if t.dtype() != dtype || t.shape() != [len] {
                return Err(corrupt(format!(
                    "tensor `{name}`: {:?} {:?}, expected {dtype:?} [{len}]",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.data().to_vec())
        };
        let floats = |name: &str, len: usize| -> Result<Vec<f32>> {
            let data = raw(name, Dtype::F32, len)?;
            let v: Vec<f32> = data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(corrupt(format!("tensor `{name}` holds non-finite values")));
            }
            Ok(v)
        };
        let mut layers = Vec::with_capacity(metas.len());
        for m in metas {
            let n = &m.name;
            let numel: usize = m.weight_shape.iter().product();
            let bits = m.weight.range.bits();
            crate::validate_bits(bits).map_err(|e| corrupt(e.to_string()))?;
            if let LayerKind::Conv2d {
                padding,
                stride,
                dilation,
                groups,
            } = m.kind
                && (stride == 0
                    || dilation == 0
                    || groups == 0
                    || padding > quarc_kernels::MAX_PAD_OR_DILATION
                    || dilation > quarc_kernels::MAX_PAD_OR_DILATION)
            {
                return Err(corrupt(format!(
                    "layer `{n}`: conv stride {stride}, padding {padding}, dilation {dilation}, groups {groups} \
                     (stride, dilation, groups positive; padding and dilation at most {})",
                    quarc_kernels::MAX_PAD_OR_DILATION
                )));
            }
            let (channels, _) =
                channel_layout(&m.weight_shape, m.weight.granularity).map_err(|e| corrupt(e.to_string()))?;
            let packed = raw(&format!("{n}.weight.codes"), Dtype::U8, packed_len(numel, bits))?;
            let unsigned = unpack_codes(&packed, bits, numel)?;
            let qn = m.weight.range.qn();
            let mut codes = Vec::with_capacity(numel);
            for u in unsigned {
                let q = i32::from(u) + qn;
                if q > m.weight.range.qp() {
                    return Err(corrupt(format!(
                        "`{n}`: code {q} outside [{qn}, {}]",
                        m.weight.range.qp()
                    )));
                }
                codes.push(q);
            }
            let out_channels = m.weight_shape.first().copied().unwrap_or(0);
            let weight = IntegerTensor {
                shape: m.weight_shape.clone(),
                range: m.weight.range,
                granularity: m.weight.granularity,
                codes,
                scale: floats(&format!("{n}.weight.scale"), channels)?,
                offset: if m.weight.has_offset {
                    Some(floats(&format!("{n}.weight.offset"), channels)?)
                } else {
                    None
                },
            };
            let input = match &m.input {
                Some(g) => {
                    let c = match g.granularity {
                        Granularity::PerTensor => 1,
                        Granularity::PerChannel { .. } => {
                            m.weight_shape.get(1).copied().unwrap_or(0) * groups_of(m.kind)
                        }
                    };
                    Some(ActivationGrid {
                        range: g.range,
                        granularity: g.granularity,
                        scale: floats(&format!("{n}.input.scale"), c)?,
                        offset: if g.has_offset {
                            Some(floats(&format!("{n}.input.offset"), c)?)
                        } else {
                            None
                        },
                    })
                }
                None => None,
            };
            layers.push(LayerExport {
                name: m.name.clone(),
                kind: m.kind,
                bias: if m.has_bias {
                    Some(floats(&format!("{n}.bias"), out_channels)?)
                } else {
                    None
                },
                output_multiplier: if m.has_output_multiplier {
                    Some(floats(&format!("{n}.output_multiplier"), out_channels)?)
                } else {
                    None
                },
                weight,
                input,
            });
        }
        Ok(Self { layers, config })
    }

    /// The layer called `name`.
    pub fn layer(&self, name: &str) -> Option<&LayerExport> {
        self.layers.iter().find(|l| l.name == name)
    }
}

fn groups_of(kind: LayerKind) -> usize {
    match kind {
        LayerKind::Conv2d { groups, .. } => groups,
        LayerKind::Linear => 1,
    }
}

impl LayerExport {
    /// Runs the exported layer on `x` (f32): input fake-quant from the stored grid, the
    /// dequantized weight, bias and output multiplier. Without a folded BatchNorm this equals
    /// the quantized layer's eval forward bit for bit.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let device = x.device();
        let x = match &self.input {
            Some(g) => {
                let scale = Tensor::new(g.scale.as_slice(), device)?;
                let offset = g
                    .offset
                    .as_ref()
                    .map(|o| Tensor::new(o.as_slice(), device))
                    .transpose()?;
                crate::fake_quant(x, &scale, offset.as_ref(), g.range, g.granularity)?
            }
            None => x.clone(),
        };
        let w = self.weight.dequantize(device)?;
        let out_c = *self
            .weight
            .shape
            .first()
            .ok_or_else(|| Error::config(format!("layer `{}` has an empty weight shape", self.name)))?;
        let tensor = |v: &Vec<f32>| Tensor::new(v.as_slice(), device);
        // Without a multiplier, the same candle-nn modules as the quantized layers: bit-exact.
        let bias = match (&self.bias, &self.output_multiplier) {
            (Some(b), None) => Some(tensor(b)?),
            _ => None,
        };
        let (y, bshape) = match self.kind {
            LayerKind::Conv2d {
                padding,
                stride,
                dilation,
                groups,
            } => {
                let params = quarc_kernels::Conv2dParams {
                    padding,
                    stride,
                    dilation,
                    groups,
                };
                (
                    crate::nn::conv2d_with_bias(&x, &w, bias.as_ref(), &params)?,
                    vec![1, out_c, 1, 1],
                )
            }
            LayerKind::Linear => (candle_nn::Linear::new(w, bias).forward(&x)?, vec![1, out_c]),
        };
        let Some(m) = &self.output_multiplier else {
            return Ok(y);
        };
        let y = y.broadcast_mul(&tensor(m)?.reshape(bshape.as_slice())?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(&tensor(b)?.reshape(bshape.as_slice())?)?,
            None => y,
        })
    }

    /// The dequantized weight on `device`.
    pub fn dequantized_weight(&self, device: &Device) -> Result<Tensor> {
        self.weight.dequantize(device)
    }
}
