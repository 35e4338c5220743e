//! `SmallCnn`: the Fashion-MNIST protocol model.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use quarc_quant_core::{FeatureMap, LayerPosition, ModelOutput, QLinear, QatConfig};

use crate::builder::{Activation, Builder, ConvBn, Mode, linear_forward};
use crate::init::InitScheme;
use crate::{Model, Result};

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
        crate::check_classes(num_classes)?;
        let mut b = Builder::new(varmap, qat, seed, InitScheme::PyTorchDefault, DType::F32, device);
        Ok(Self {
            conv1: ConvBn::new(&mut b, "conv1", 1, 32, 3, 1, 1, LayerPosition::First, true)?,
            conv2: ConvBn::new(&mut b, "conv2", 32, 64, 3, 2, 1, LayerPosition::Middle, false)?,
            conv3: ConvBn::new(&mut b, "conv3", 64, 128, 3, 2, 1, LayerPosition::Middle, false)?,
            fc: b.linear("fc", 128, num_classes, LayerPosition::Last, false)?,
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

    fn export(&self) -> Result<quarc_quant_core::export::IntegerExport> {
        let layers = [("conv1", &self.conv1), ("conv2", &self.conv2), ("conv3", &self.conv3)];
        crate::export_layers(layers.into_iter().map(|(n, l)| (n.to_string(), l)), &self.fc)
    }
}

crate::impl_feature_module!(SmallCnn);
