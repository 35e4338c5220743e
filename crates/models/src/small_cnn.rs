//! `SmallCnn`: the Fashion-MNIST protocol model.

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use quarc_quant_core::{Calibration, FeatureMap, ModelOutput, QLinear, QatConfig};

use crate::conv_bn::{Activation, ConvBn, Mode, linear_forward};
use crate::{ConvSpec, Layers, LinearSpec, Model, ModelBuilder, Result};

/// For 1×28×28 inputs: conv 1→32 3×3, BN, ReLU; conv 32→64 3×3 stride 2, BN, ReLU;
/// conv 64→128 3×3 stride 2, BN, ReLU; global average pool; fc 128→`num_classes`.
/// Features: `conv1`, `conv2`, `conv3`, `pool`. The first conv and the fc follow the
/// [`QatConfig`]'s first/last-layer policy.
#[derive(Debug)]
pub struct SmallCnn {
    conv1: ConvBn,
    conv2: ConvBn,
    conv3: ConvBn,
    fc: QLinear,
    calibration: Calibration,
}

impl SmallCnn {
    /// Builds the model into `varmap` (full precision when `qat` is `None`), weights from `seed`.
    pub fn new(
        varmap: &VarMap,
        qat: Option<QatConfig>,
        num_classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let b = ModelBuilder::new(varmap, device).qat(qat).seed(seed);
        Ok(b.build(|l| Self::build(l, num_classes))?.model)
    }

    /// The model's constructor, for [`ModelBuilder::build`] (to add per-layer overrides).
    pub fn build(b: &Layers<'_>, num_classes: usize) -> Result<Self> {
        crate::check_classes(num_classes)?;
        // The first layer built (conv1) follows the first-layer policy, the last (fc) the last-layer one.
        Ok(Self {
            conv1: ConvBn::new(b, "conv1", ConvSpec::new(1, 32, 3).signed_input())?,
            conv2: ConvBn::new(b, "conv2", ConvSpec::new(32, 64, 3).stride(2))?,
            conv3: ConvBn::new(b, "conv3", ConvSpec::new(64, 128, 3).stride(2))?,
            fc: b.linear("fc", LinearSpec::new(128, num_classes))?,
            calibration: b.calibration().clone(),
        })
    }
}

impl Model for SmallCnn {
    fn forward_mode(&self, x: &Tensor, mode: Mode) -> Result<ModelOutput> {
        let mut f = FeatureMap::new();
        let h = self.conv1.forward_act(x, mode, Activation::Relu)?;
        f.insert("conv1", h.clone());
        let h = self.conv2.forward_act(&h, mode, Activation::Relu)?;
        f.insert("conv2", h.clone());
        let h = self.conv3.forward_act(&h, mode, Activation::Relu)?;
        f.insert("conv3", h.clone());
        let h = h.mean((2, 3))?;
        f.insert("pool", h.clone());
        Ok(ModelOutput {
            logits: linear_forward(&self.fc, &h, mode)?,
            features: f,
        })
    }

    fn calibration(&self) -> Option<&Calibration> {
        Some(&self.calibration)
    }

    fn export(&self) -> Result<quarc_quant_core::export::IntegerExport> {
        let layers = [("conv1", &self.conv1), ("conv2", &self.conv2), ("conv3", &self.conv3)];
        crate::export_layers(layers.into_iter().map(|(n, l)| (n.to_string(), l)), &self.fc)
    }
}

crate::impl_feature_module!(SmallCnn);

impl crate::ToOnnx for SmallCnn {
    fn to_onnx(&self, g: &mut crate::OnnxGraph, x: &crate::onnx::Value) -> Result<crate::onnx::Value> {
        let h = g.conv_bn(&self.conv1, x, Activation::Relu)?;
        let h = g.conv_bn(&self.conv2, &h, Activation::Relu)?;
        let h = g.conv_bn(&self.conv3, &h, Activation::Relu)?;
        let pooled = g.global_avg_pool(&h);
        g.linear(&self.fc, &pooled)
    }
}
