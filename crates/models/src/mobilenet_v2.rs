//! MobileNetV2 for CIFAR (Sandler et al. 2018; CIFAR strides as in the ACS code).

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use quarc_quant_core::{Calibration, FeatureMap, LayerPosition, ModelOutput, QLinear, QatConfig};

use crate::conv_bn::{Activation, ConvBn, Mode, linear_forward};
use crate::{ConvSpec, Error, Layers, LinearSpec, Model, ModelBuilder, Result};

/// (expansion t, output channels c, repeats n, first stride s); the second stage and the stem
/// use stride 1 for 32×32 inputs.
const CONFIG: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let new = ((v + d / 2.0) / d).floor().max(1.0) * d;
    (if new < 0.9 * v { new + d } else { new }) as usize
}

#[derive(Debug)]
struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl InvertedResidual {
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = match &self.expand {
            Some(e) => e.forward_act(x, mode, Activation::Relu6)?,
            None => x.clone(),
        };
        let h = self.depthwise.forward_act(&h, mode, Activation::Relu6)?;
        let h = self.project.forward(&h, mode)?;
        Ok(if self.residual { (h + x)? } else { h })
    }
}

/// MobileNetV2 with a width multiplier (ACS/QuaRC use 0.5 on CIFAR-100). Every conv of the
/// inverted-residual blocks is quantized, depthwise included; the stem follows the first-layer
/// policy, the final 1×1 conv and the classifier the last-layer policy (the ACS code keeps all
/// three in full precision). Inputs that follow a linear projection get signed activation codes.
/// Features: `stem`, `block{i}`, `head`, `pool`.
#[derive(Debug)]
pub struct MobileNetV2 {
    stem: ConvBn,
    blocks: Vec<InvertedResidual>,
    head: ConvBn,
    fc: QLinear,
    calibration: Calibration,
}

impl MobileNetV2 {
    /// Builds the model; `width` in (0, 4].
    pub fn new(
        varmap: &VarMap,
        qat: Option<QatConfig>,
        width: f64,
        num_classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let b = ModelBuilder::new(varmap, device).qat(qat).seed(seed);
        Ok(b.build(|l| Self::build(l, width, num_classes))?.model)
    }

    /// The model's constructor, for [`ModelBuilder::build`] (to add per-layer overrides).
    pub fn build(b: &Layers<'_>, width: f64, num_classes: usize) -> Result<Self> {
        crate::check_classes(num_classes)?;
        if !(width > 0.0 && width <= 4.0) {
            return Err(Error::InvalidConfig(format!(
                "width multiplier must be in (0, 4], got {width}"
            )));
        }
        let mut inp = make_divisible(32.0 * width, 8);
        let last = make_divisible(1280.0 * width.max(1.0), 8);
        let stem = ConvBn::new(b, "stem", ConvSpec::new(3, inp, 3).signed_input())?;
        let mut blocks = Vec::new();
        for (t, c, n, s) in CONFIG {
            let out = make_divisible(c as f64 * width, 8);
            for k in 0..n {
                let stride = if k == 0 { s } else { 1 };
                let hidden = inp * t;
                let name = format!("block{}", blocks.len());
                // The block input follows a linear projection (or the stem's ReLU6 for block 0).
                let signed_in = !blocks.is_empty();
                let expand = if t != 1 {
                    Some(ConvBn::new(
                        b,
                        &format!("{name}.expand"),
                        ConvSpec {
                            signed_input: signed_in,
                            ..ConvSpec::new(inp, hidden, 1)
                        },
                    )?)
                } else {
                    None
                };
                let depthwise = ConvBn::new(
                    b,
                    &format!("{name}.depthwise"),
                    ConvSpec {
                        signed_input: t == 1 && signed_in,
                        ..ConvSpec::new(hidden, hidden, 3).stride(stride).groups(hidden)
                    },
                )?;
                let project = ConvBn::new(b, &format!("{name}.project"), ConvSpec::new(hidden, out, 1))?;
                blocks.push(InvertedResidual {
                    expand,
                    depthwise,
                    project,
                    residual: stride == 1 && inp == out,
                });
                inp = out;
            }
        }
        let head = ConvBn::new(
            b,
            "head",
            ConvSpec::new(inp, last, 1).position(LayerPosition::Last).signed_input(),
        )?;
        let fc = b.linear("fc", LinearSpec::new(last, num_classes))?;
        Ok(Self {
            stem,
            blocks,
            head,
            fc,
            calibration: b.calibration().clone(),
        })
    }
}

impl Model for MobileNetV2 {
    fn forward_mode(&self, x: &Tensor, mode: Mode) -> Result<ModelOutput> {
        let mut f = FeatureMap::new();
        let mut h = self.stem.forward_act(x, mode, Activation::Relu6)?;
        f.insert("stem", h.clone());
        for (i, block) in self.blocks.iter().enumerate() {
            h = block.forward(&h, mode)?;
            f.insert(format!("block{i}"), h.clone());
        }
        let h = self.head.forward_act(&h, mode, Activation::Relu6)?;
        f.insert("head", h.clone());
        let pooled = h.mean((2, 3))?;
        f.insert("pool", pooled.clone());
        Ok(ModelOutput {
            logits: linear_forward(&self.fc, &pooled, mode)?,
            features: f,
        })
    }

    fn calibration(&self) -> Option<&Calibration> {
        Some(&self.calibration)
    }

    fn export(&self) -> Result<quarc_quant_core::export::IntegerExport> {
        let mut layers = vec![("stem".to_string(), &self.stem)];
        for (i, b) in self.blocks.iter().enumerate() {
            if let Some(e) = &b.expand {
                layers.push((format!("block{i}.expand"), e));
            }
            layers.push((format!("block{i}.depthwise"), &b.depthwise));
            layers.push((format!("block{i}.project"), &b.project));
        }
        layers.push(("head".to_string(), &self.head));
        crate::export_layers(layers, &self.fc)
    }
}

crate::impl_feature_module!(MobileNetV2);

impl crate::ToOnnx for MobileNetV2 {
    fn to_onnx(&self, g: &mut crate::OnnxGraph, x: &crate::onnx::Value) -> Result<crate::onnx::Value> {
        let mut h = g.conv_bn(&self.stem, x, Activation::Relu6)?;
        for b in &self.blocks {
            let mut y = h.clone();
            if let Some(e) = &b.expand {
                y = g.conv_bn(e, &y, Activation::Relu6)?;
            }
            let y = g.conv_bn(&b.depthwise, &y, Activation::Relu6)?;
            let y = g.conv_bn(&b.project, &y, Activation::Identity)?;
            h = if b.residual { g.add(&y, &h) } else { y };
        }
        let h = g.conv_bn(&self.head, &h, Activation::Relu6)?;
        let pooled = g.global_avg_pool(&h);
        g.linear(&self.fc, &pooled)
    }
}
