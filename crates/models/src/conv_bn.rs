//! `ConvBn` (a quantized conv and its BatchNorm) and the forward [`Mode`]s of quarc's models.

use candle_core::{Tensor, Var};
use candle_nn::BatchNorm;
pub use quarc_kernels::Activation;
use quarc_quant_core::{QConv2d, QLinear};

use crate::Result;
use crate::builder::{ConvSpec, Layers};

/// A quantized conv followed by BatchNorm.
#[derive(Debug)]
pub struct ConvBn {
    /// The conv.
    pub conv: QConv2d,
    /// The BatchNorm (its parameters and running statistics; the training-mode forward runs
    /// quarc-kernels' fused BatchNorm).
    pub bn: BatchNorm,
    running_mean: Var,
    running_var: Var,
}

impl ConvBn {
    /// The conv `<name>.conv` (no bias: the BatchNorm's shift replaces it) and the BatchNorm
    /// `<name>.bn` (γ = 1, β = 0, running mean 0, variance 1; momentum 0.1, ε = 1e-5, as PyTorch).
    pub fn new(b: &Layers<'_>, name: &str, spec: ConvSpec) -> Result<Self> {
        let b = b.pp(name);
        Ok(Self {
            conv: b.conv2d("conv", spec.no_bias())?,
            bn: b.batch_norm("bn", spec.out_channels)?,
            running_mean: b.var("bn.running_mean")?,
            running_var: b.var("bn.running_var")?,
        })
    }

    /// conv → BN.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_act(x, mode, Activation::Identity)
    }

    /// conv → BN → `act`. Under [`quarc_quant_core::Calibration::run`] the conv first
    /// initialises its quantizers from `x`. With batch statistics (training, calibration) the BatchNorm and the
    /// activation run as one fused op and the running statistics take a step (momentum as
    /// configured, unbiased variance, as PyTorch); in evaluation BatchNorm is the per-channel
    /// affine of the running statistics, applied with the activation inside the conv's own pass
    /// (`QConv2d::forward_affine_act`).
    pub fn forward_act(&self, x: &Tensor, mode: Mode, act: Activation) -> Result<Tensor> {
        if mode.batch_statistics() {
            let (gamma, beta) = self.gamma_beta()?;
            let y = self.conv.forward_t(x, mode.train())?;
            let (out, stats) = quarc_kernels::batch_norm_train(&y, gamma, beta, self.bn.eps(), act)?;
            self.update_running(&stats)?;
            Ok(out)
        } else {
            // Running statistics: BatchNorm is a per-channel affine, folded into the conv's pass.
            let (scale, shift) = self.eval_affine()?;
            Ok(self.conv.forward_affine_act(x, &scale, &shift, act, mode.train())?)
        }
    }

    fn gamma_beta(&self) -> Result<(&Tensor, &Tensor)> {
        self.bn
            .weight_and_bias()
            .ok_or_else(|| crate::Error::InvalidConfig("ConvBn needs an affine BatchNorm".to_string()))
    }

    /// Evaluation-mode BatchNorm as a per-channel affine of the conv's output:
    /// `scale = γ / √(running_var + ε)`, `shift = β − running_mean · scale` (the conv's own bias,
    /// if any, not included).
    pub fn eval_affine(&self) -> Result<(Tensor, Tensor)> {
        let (gamma, beta) = self.gamma_beta()?;
        let scale = (gamma / (self.running_var.as_tensor().detach() + self.bn.eps())?.sqrt()?)?;
        let shift = (beta - (self.running_mean.as_tensor().detach() * &scale)?)?;
        Ok((scale, shift))
    }

    fn update_running(&self, stats: &quarc_kernels::BatchStats) -> Result<()> {
        let m = self.bn.momentum();
        let (dev, dtype) = (self.running_mean.device().clone(), self.running_mean.dtype());
        let c = stats.mean.len();
        let unbias = if stats.count > 1 {
            stats.count as f64 / (stats.count as f64 - 1.0)
        } else {
            1.0
        };
        let mean = Tensor::from_slice(&stats.mean, c, &dev)?.to_dtype(dtype)?;
        let var = (Tensor::from_slice(&stats.var, c, &dev)?.to_dtype(dtype)? * unbias)?;
        let rm = ((self.running_mean.as_tensor().detach() * (1.0 - m))? + (mean * m)?)?;
        let rv = ((self.running_var.as_tensor().detach() * (1.0 - m))? + (var * m)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        Ok(())
    }
}

impl ConvBn {
    /// The integer export of this layer with its BatchNorm folded into the output affine;
    /// `None` when the conv is kept in full precision.
    pub fn export(&self, name: &str) -> Result<Option<quarc_quant_core::export::LayerExport>> {
        if self.conv.weight_quantizer().qparams()?.is_none() {
            return Ok(None);
        }
        Ok(Some(quarc_quant_core::export::export_conv2d(
            name,
            &self.conv,
            Some(&self.bn),
        )?))
    }
}

/// How a forward pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: BatchNorm batch statistics, observers update.
    Train,
    /// Evaluation: running statistics.
    Eval,
    /// Calibration ([`crate::Model::calibrate`] runs the forward pass in this mode under the
    /// model's [`quarc_quant_core::Calibration`], so every quantizer is first initialised from
    /// its own input). BatchNorm uses batch statistics, as on a training batch (its running
    /// statistics take one momentum step), so activation ranges match what training will see;
    /// quantizers and observers run as in evaluation.
    Calibrate,
}

impl Mode {
    /// Whether layers run in training mode.
    pub fn train(self) -> bool {
        self == Mode::Train
    }

    /// Whether BatchNorm normalises with the batch's statistics (training and calibration).
    pub fn batch_statistics(self) -> bool {
        self != Mode::Eval
    }

    /// From candle's `train` flag.
    pub fn from_train(train: bool) -> Self {
        if train { Mode::Train } else { Mode::Eval }
    }
}

/// Runs a linear layer in `mode` (training or not; under a calibration pass it initialises its
/// quantizers first).
pub(crate) fn linear_forward(l: &QLinear, x: &Tensor, mode: Mode) -> Result<Tensor> {
    Ok(l.forward_t(x, mode.train())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelBuilder;
    use candle_core::{Device, ModuleT};
    use candle_nn::VarMap;

    /// The fused training-mode BatchNorm gives candle-nn's output and running statistics.
    #[test]
    fn fused_batch_norm_matches_candle_nn_including_running_statistics() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let layer = ModelBuilder::new(&varmap, &dev)
            .seed(3)
            .build(|b| ConvBn::new(b, "l", ConvSpec::new(3, 8, 3)))
            .unwrap()
            .model;
        let x = (Tensor::arange(0f32, 2.0 * 3.0 * 36.0, &dev)
            .unwrap()
            .reshape((2, 3, 6, 6))
            .unwrap()
            * 0.01)
            .unwrap();
        let x = x.sin().unwrap();
        // candle-nn's BatchNorm on the same conv output, from fresh statistics
        let other = VarMap::new();
        let bn = ModelBuilder::new(&other, &dev)
            .build(|b| b.batch_norm("bn", 8))
            .unwrap()
            .model;
        let conv_out = layer.conv.forward_t(&x, true).unwrap();
        let expected = bn.forward_t(&conv_out, true).unwrap().relu().unwrap();
        let got = layer.forward_act(&x, Mode::Train, Activation::Relu).unwrap();
        let diff = (got - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
        for (mine, theirs) in [
            (layer.bn.running_mean(), bn.running_mean()),
            (layer.bn.running_var(), bn.running_var()),
        ] {
            let d = (mine - theirs)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(d < 1e-6, "running statistics differ by {d}");
            // the step really happened (mean from 0, var from 1)
            assert!(mine.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
        }
        // evaluation uses the running statistics, like candle-nn's eval forward
        let got = layer.forward_act(&x, Mode::Eval, Activation::Identity).unwrap();
        let expected = bn.forward_t(&layer.conv.forward_t(&x, false).unwrap(), false).unwrap();
        let diff = (got - expected)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "{diff}");
    }
}
