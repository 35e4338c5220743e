//! `OnnxGraph`: the ops a model's ONNX description is made of. Quantized weights become int8
//! initializers + `DequantizeLinear`; input quantizers become QCDQ
//! (`QuantizeLinear → Clip(qmin, qmax) → DequantizeLinear`); evaluation-mode BatchNorm is folded
//! into the conv (into the dequantization scale of a quantized weight, which is exact).

use candle_core::Tensor;
use quarc_quant_core::export::IntegerTensor;
use quarc_quant_core::{Granularity, QConv2d, QLinear, Quantizer};

use super::proto::{Attr, Node, TensorData};
use crate::{Activation, ConvBn, Error, Result};

/// A weight in the graph, what quantized it, and the output-channel signs still to apply.
type WeightValue = (Value, Option<(&'static str, u32)>, Option<Vec<f32>>);

/// A tensor of the graph being built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value(pub(crate) String);

/// What one exported layer got (for the file's metadata).
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxLayer {
    /// The layer's parameter prefix.
    pub name: String,
    /// Weight quantizer kind and bits (`None`: full precision).
    pub weight: Option<(&'static str, u32)>,
    /// Input quantizer kind and bits (`None`: full precision).
    pub input: Option<(&'static str, u32)>,
}

/// The nodes and constants of a graph under construction; models describe themselves into it
/// through [`crate::ToOnnx`].
#[derive(Default)]
pub struct OnnxGraph {
    pub(crate) nodes: Vec<Node>,
    pub(crate) constants: Vec<TensorData>,
    pub(crate) layers: Vec<OnnxLayer>,
    counter: usize,
}

fn f32s(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

impl OnnxGraph {
    fn fresh(&mut self, base: &str) -> String {
        self.counter += 1;
        format!("{base}_{}", self.counter)
    }

    fn node(&mut self, op: &'static str, inputs: Vec<String>, attrs: Vec<(&'static str, Attr)>) -> Value {
        let out = self.fresh(&op.to_lowercase());
        self.nodes.push(Node {
            op,
            name: out.clone(),
            inputs,
            outputs: vec![out.clone()],
            attrs,
        });
        Value(out)
    }

    fn constant(&mut self, mut t: TensorData) -> String {
        t.name = self.fresh(&t.name);
        let name = t.name.clone();
        self.constants.push(t);
        name
    }

    fn f32_const(&mut self, base: &str, dims: &[usize], v: &[f32]) -> String {
        self.constant(TensorData::f32(base, dims, v))
    }

    /// `(x − mean_c) / std_c` per channel of an N×C×H×W input.
    pub fn normalize(&mut self, x: &Value, mean: &[f32], std: &[f32]) -> Result<Value> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(Error::InvalidConfig(format!(
                "normalize: {} means, {} stds",
                mean.len(),
                std.len()
            )));
        }
        let c = mean.len();
        let m = self.f32_const("mean", &[1, c, 1, 1], mean);
        let s = self.f32_const("std", &[1, c, 1, 1], std);
        let centred = self.node("Sub", vec![x.0.clone(), m], vec![]);
        Ok(self.node("Div", vec![centred.0, s], vec![]))
    }

    /// ReLU, ReLU6 (`Clip(0, 6)`) or nothing.
    pub fn activation(&mut self, x: &Value, act: Activation) -> Value {
        match act {
            Activation::Identity => x.clone(),
            Activation::Relu => self.node("Relu", vec![x.0.clone()], vec![]),
            Activation::Relu6 => {
                let lo = self.f32_const("zero", &[], &[0.0]);
                let hi = self.f32_const("six", &[], &[6.0]);
                self.node("Clip", vec![x.0.clone(), lo, hi], vec![])
            }
        }
    }

    /// `a + b` (with broadcasting).
    pub fn add(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Add", vec![a.0.clone(), b.0.clone()], vec![])
    }

    /// The spatial mean of N×C×H×W: N×C.
    pub fn global_avg_pool(&mut self, x: &Value) -> Value {
        let pooled = self.node("GlobalAveragePool", vec![x.0.clone()], vec![]);
        self.node("Flatten", vec![pooled.0], vec![("axis", Attr::Int(1))])
    }

    /// ResNet's option-A shortcut: every second row and column, then `extra` zero channels
    /// (half before, the rest after).
    pub fn subsample_pad_channels(&mut self, x: &Value, extra: usize) -> Value {
        let one = |v: i64| Attr::Ints(vec![v, v]);
        let sub = self.node(
            "MaxPool",
            vec![x.0.clone()],
            vec![("kernel_shape", one(1)), ("strides", one(2))],
        );
        let (before, after) = ((extra / 2) as i64, (extra - extra / 2) as i64);
        let pads = self.constant(TensorData::i64("pads", &[8], &[0, before, 0, 0, 0, after, 0, 0]));
        self.node("Pad", vec![sub.0, pads], vec![])
    }

    /// The QCDQ of an input quantizer (`None`: the input stays as is) on a tensor of `rank`
    /// dimensions with channels on axis 1; an LSQ+/uniform offset becomes a float shift around
    /// the integers (`Sub` before, `Add` after).
    fn quantize_input(
        &mut self,
        x: &Value,
        q: Option<&dyn Quantizer>,
        rank: usize,
    ) -> Result<(Value, Option<(&'static str, u32)>)> {
        let Some(q) = q else { return Ok((x.clone(), None)) };
        let Some(qp) = q.qparams()? else {
            return Ok((x.clone(), None));
        };
        let (range, scale) = (qp.range, f32s(&qp.scale)?);
        let n = scale.len();
        let per_channel = n > 1 || matches!(qp.granularity, Granularity::PerChannel { .. });
        let (dims, bshape): (Vec<usize>, Vec<usize>) = match per_channel {
            true => (
                vec![n],
                [1, n]
                    .into_iter()
                    .chain(std::iter::repeat_n(1, rank.saturating_sub(2)))
                    .collect(),
            ),
            false => (vec![], vec![]),
        };
        let offset = qp.offset.as_ref().map(f32s).transpose()?;
        let mut h = x.clone();
        if let Some(o) = &offset {
            let oc = self.f32_const("offset", &bshape, o);
            h = self.node("Sub", vec![h.0, oc], vec![]);
        }
        let s = self.f32_const("scale", &dims, &scale);
        let (zp, lo, hi) = if range.qn() < 0 {
            (
                self.constant(TensorData::i8("zp", &dims, &vec![0; n])),
                self.constant(TensorData::i8("qmin", &[], &[range.qn() as i8])),
                self.constant(TensorData::i8("qmax", &[], &[range.qp() as i8])),
            )
        } else {
            (
                self.constant(TensorData::u8("zp", &dims, &vec![0; n])),
                self.constant(TensorData::u8("qmin", &[], &[range.qn() as u8])),
                self.constant(TensorData::u8("qmax", &[], &[range.qp() as u8])),
            )
        };
        let ax = || match per_channel {
            true => vec![("axis", Attr::Int(1))],
            false => vec![],
        };
        let qn = self.node("QuantizeLinear", vec![h.0, s.clone(), zp.clone()], ax());
        let clipped = self.node("Clip", vec![qn.0, lo, hi], vec![]);
        let mut out = self.node("DequantizeLinear", vec![clipped.0, s, zp], ax());
        if let Some(o) = &offset {
            let oc = self.f32_const("offset", &bshape, o);
            out = self.node("Add", vec![out.0, oc], vec![]);
        }
        Ok((out, Some((q.kind(), range.bits()))))
    }

    /// The weight as a graph value: int8 codes + `DequantizeLinear` (per output channel when the
    /// grid is per channel or `out_scale` is given), or float. `out_scale` (the folded BatchNorm
    /// multiplier) is absorbed into the dequantization scale; its sign goes into the codes — except
    /// on an 8-bit signed grid, whose code −128 has no positive twin in int8: then the signs come
    /// back (third value) for a `Mul` after the conv.
    fn weight(&mut self, w: &Tensor, q: &dyn Quantizer, out_scale: Option<&[f32]>) -> Result<WeightValue> {
        let dims = w.dims().to_vec();
        let out_c = dims[0];
        let per_out = dims.iter().skip(1).product::<usize>();
        let Some(qp) = q.qparams()? else {
            let mut v = f32s(w)?;
            if let Some(k) = out_scale {
                for (c, chunk) in v.chunks_mut(per_out).enumerate() {
                    chunk.iter_mut().for_each(|x| *x *= k[c]);
                }
            }
            return Ok((Value(self.f32_const("weight", &dims, &v)), None, None));
        };
        let codes = IntegerTensor::quantize(w, &qp)?;
        if codes.offset.is_some() {
            return Err(Error::InvalidConfig(
                "ONNX export: a weight quantizer with an offset has no int8 + DequantizeLinear form".into(),
            ));
        }
        let base = |c: usize| codes.scale[if codes.scale.len() == 1 { 0 } else { c }];
        let mut int8: Vec<i8> = codes.codes.iter().map(|&c| c as i8).collect();
        let negate_codes = qp.range.qn() > i8::MIN as i32;
        let mut signs = vec![1f32; out_c];
        let scale: Vec<f32> = match out_scale {
            None if codes.scale.len() == 1 => codes.scale.clone(),
            _ => (0..out_c)
                .map(|c| {
                    let k = out_scale.map_or(1.0, |k| k[c]);
                    if k < 0.0 && negate_codes {
                        int8[c * per_out..(c + 1) * per_out].iter_mut().for_each(|x| *x = -*x);
                    } else if k < 0.0 {
                        signs[c] = -1.0;
                    }
                    base(c) * k.abs()
                })
                .collect(),
        };
        let signs = signs.contains(&-1.0).then_some(signs);
        let sdims: Vec<usize> = if scale.len() == 1 { vec![] } else { vec![scale.len()] };
        let c = self.constant(TensorData::i8("wcodes", &dims, &int8));
        let s = self.f32_const("wscale", &sdims, &scale);
        let zp = self.constant(TensorData::i8("wzp", &sdims, &vec![0; scale.len()]));
        let attrs = if scale.len() == 1 {
            vec![]
        } else {
            vec![("axis", Attr::Int(0))]
        };
        let dq = self.node("DequantizeLinear", vec![c, s, zp], attrs);
        Ok((dq, Some((q.kind(), qp.range.bits())), signs))
    }

    fn conv_node(&mut self, layer: &QConv2d, x: &Value, out_scale: Option<&[f32]>, bias: Vec<f32>) -> Result<Value> {
        let (xq, input) = self.quantize_input(x, layer.activation_quantizer(), 4)?;
        let (w, weight, signs) = self.weight(layer.conv().weight(), layer.weight_quantizer(), out_scale)?;
        let cfg = *layer.conv().config();
        let k = layer.conv().weight().dims()[2] as i64;
        let pair = |v: usize| Attr::Ints(vec![v as i64, v as i64]);
        let p = cfg.padding as i64;
        self.layers.push(OnnxLayer {
            name: layer.name().to_string(),
            weight,
            input,
        });
        let c = bias.len();
        let mut inputs = vec![xq.0, w.0];
        if signs.is_none() {
            inputs.push(self.f32_const("bias", &[c], &bias));
        }
        let y = self.node(
            "Conv",
            inputs,
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
                ("strides", pair(cfg.stride)),
                ("dilations", pair(cfg.dilation)),
                ("group", Attr::Int(cfg.groups as i64)),
            ],
        );
        let Some(signs) = signs else { return Ok(y) };
        let sc = self.f32_const("sign", &[1, c, 1, 1], &signs);
        let b = self.f32_const("bias", &[1, c, 1, 1], &bias);
        let flipped = self.node("Mul", vec![y.0, sc], vec![]);
        Ok(self.node("Add", vec![flipped.0, b], vec![]))
    }

    /// A quantized conv without BatchNorm.
    pub fn conv(&mut self, layer: &QConv2d, x: &Value) -> Result<Value> {
        let out_c = layer.conv().weight().dims()[0];
        let bias = match layer.conv().bias() {
            Some(b) => f32s(b)?,
            None => vec![0.0; out_c],
        };
        self.conv_node(layer, x, None, bias)
    }

    /// conv → BatchNorm (running statistics, folded into the conv) → `act`: what
    /// [`ConvBn::forward_act`] computes in evaluation mode.
    pub fn conv_bn(&mut self, layer: &ConvBn, x: &Value, act: Activation) -> Result<Value> {
        let (scale, shift) = layer.eval_affine()?;
        let (k, mut b) = (f32s(&scale)?, f32s(&shift)?);
        if let Some(bias) = layer.conv.conv().bias() {
            for ((bi, cb), ki) in b.iter_mut().zip(f32s(bias)?).zip(&k) {
                *bi += cb * ki;
            }
        }
        let y = self.conv_node(&layer.conv, x, Some(&k), b)?;
        Ok(self.activation(&y, act))
    }

    /// A quantized fully connected layer on an N×F input.
    pub fn linear(&mut self, layer: &QLinear, x: &Value) -> Result<Value> {
        let (xq, input) = self.quantize_input(x, layer.activation_quantizer(), 2)?;
        let (w, weight, _) = self.weight(layer.linear().weight(), layer.weight_quantizer(), None)?;
        let out = layer.linear().weight().dims()[0];
        let bias = match layer.linear().bias() {
            Some(b) => f32s(b)?,
            None => vec![0.0; out],
        };
        let b = self.f32_const("bias", &[out], &bias);
        self.layers.push(OnnxLayer {
            name: layer.name().to_string(),
            weight,
            input,
        });
        Ok(self.node("Gemm", vec![xq.0, w.0, b], vec![("transB", Attr::Int(1))]))
    }
}
