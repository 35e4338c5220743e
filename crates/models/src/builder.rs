//! Builds quantized layers with seeded weights and the first/middle/last-layer policy.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{BatchNorm, Conv2dConfig, VarMap};
pub use quarc_kernels::Activation;
use quarc_quant_core::{LayerPosition, LayerQuant, ParamStore, QConv2d, QLinear, QatConfig, Signedness};

use crate::Result;
use crate::init::{InitScheme, Initializer, insert};

/// What a model builder needs: where parameters live, the QAT policy, the seeded initializer.
pub struct Builder<'a> {
    pub(crate) varmap: &'a VarMap,
    pub(crate) qat: Option<QatConfig>,
    pub(crate) init: Initializer,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
}

impl<'a> Builder<'a> {
    /// Builds into `varmap`; `qat = None` gives the full-precision model (identity quantizers,
    /// the same parameter names as the quantized twin).
    pub fn new(
        varmap: &'a VarMap,
        qat: Option<QatConfig>,
        seed: u64,
        scheme: InitScheme,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self {
            varmap,
            qat,
            init: Initializer::new(seed, scheme, dtype, device),
            dtype,
            device: device.clone(),
        }
    }

    fn store(&self, prefix: &str) -> ParamStore<'a> {
        ParamStore::new(self.varmap, self.dtype, &self.device).pp(prefix)
    }

    /// The quantizers of a layer; `signed_input` marks inputs that can be negative.
    pub(crate) fn quant(&self, position: LayerPosition, signed_input: bool) -> LayerQuant {
        match &self.qat {
            None => LayerQuant::full_precision(),
            Some(q) => {
                let mut l = q.layer(position);
                if signed_input {
                    l.activation = l.activation.map(|a| a.with_signedness(Signedness::Signed));
                }
                l
            }
        }
    }

    /// A conv (seeded weights unless the map has them) with its quantizers.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn conv(
        &mut self,
        prefix: &str,
        inp: usize,
        out: usize,
        k: usize,
        stride: usize,
        groups: usize,
        position: LayerPosition,
        signed_input: bool,
    ) -> Result<QConv2d> {
        let (w, _) = self.init.conv(out, inp / groups, k, false)?;
        insert(self.varmap, format!("{prefix}.weight"), w)?;
        let cfg = Conv2dConfig {
            padding: k / 2,
            stride,
            dilation: 1,
            groups,
            cudnn_fwd_algo: None,
        };
        let quant = self.quant(position, signed_input);
        Ok(QConv2d::new(inp, out, k, cfg, false, &quant, &self.store(prefix))?)
    }

    /// A linear layer with bias.
    pub(crate) fn linear(
        &mut self,
        prefix: &str,
        inp: usize,
        out: usize,
        position: LayerPosition,
        signed_input: bool,
    ) -> Result<QLinear> {
        let (w, b) = self.init.linear(out, inp)?;
        insert(self.varmap, format!("{prefix}.weight"), w)?;
        insert(self.varmap, format!("{prefix}.bias"), b)?;
        let quant = self.quant(position, signed_input);
        Ok(QLinear::new(inp, out, true, &quant, &self.store(prefix))?)
    }

    /// The variable `name` of the map (created by an earlier layer constructor).
    pub(crate) fn var(&self, name: &str) -> Result<Var> {
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| crate::Error::InvalidConfig("the VarMap's lock is poisoned".to_string()))?;
        data.get(name)
            .cloned()
            .ok_or_else(|| crate::Error::InvalidConfig(format!("no variable `{name}` in the map")))
    }

    /// BatchNorm (γ = 1, β = 0, running mean 0, var 1; momentum 0.1, ε = 1e-5, as PyTorch).
    pub(crate) fn bn(&self, prefix: &str, c: usize) -> Result<BatchNorm> {
        Ok(candle_nn::batch_norm(
            c,
            candle_nn::BatchNormConfig {
                eps: 1e-5,
                momentum: 0.1,
                ..Default::default()
            },
            self.store(prefix).vb(),
        )?)
    }
}

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
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        b: &mut Builder<'_>,
        prefix: &str,
        inp: usize,
        out: usize,
        k: usize,
        stride: usize,
        groups: usize,
        position: LayerPosition,
        signed_input: bool,
    ) -> Result<Self> {
        Ok(Self {
            conv: b.conv(
                &format!("{prefix}.conv"),
                inp,
                out,
                k,
                stride,
                groups,
                position,
                signed_input,
            )?,
            bn: b.bn(&format!("{prefix}.bn"), out)?,
            running_mean: b.var(&format!("{prefix}.bn.running_mean"))?,
            running_var: b.var(&format!("{prefix}.bn.running_var"))?,
        })
    }

    /// conv → BN; with `calibrate`, initialises the conv's quantizers from `x` first.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_act(x, mode, Activation::Identity)
    }

    /// conv → BN → `act`. With batch statistics (training, calibration) the BatchNorm and the
    /// activation run as one fused op and the running statistics take a step (momentum as
    /// configured, unbiased variance, as PyTorch); in evaluation BatchNorm is the per-channel
    /// affine of the running statistics, applied with the activation inside the conv's own pass
    /// (`QConv2d::forward_affine_act`).
    pub fn forward_act(&self, x: &Tensor, mode: Mode, act: Activation) -> Result<Tensor> {
        if mode == Mode::Calibrate {
            self.conv.calibrate(x)?;
        }
        let (gamma, beta) = self
            .bn
            .weight_and_bias()
            .ok_or_else(|| crate::Error::InvalidConfig("ConvBn needs an affine BatchNorm".to_string()))?;
        if mode.batch_statistics() {
            let y = self.conv.forward_t(x, mode.train())?;
            let (out, stats) = quarc_kernels::batch_norm_train(&y, gamma, beta, self.bn.eps(), act)?;
            self.update_running(&stats)?;
            Ok(out)
        } else {
            // Running statistics: BatchNorm is a per-channel affine, folded into the conv's pass.
            let scale = (gamma / (self.running_var.as_tensor().detach() + self.bn.eps())?.sqrt()?)?;
            let shift = (beta - (self.running_mean.as_tensor().detach() * &scale)?)?;
            Ok(self.conv.forward_affine_act(x, &scale, &shift, act, mode.train())?)
        }
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
    /// Calibration: every quantizer is first initialised from its own input. BatchNorm uses
    /// batch statistics, as on a training batch (its running statistics take one momentum
    /// step), so activation ranges match what training will see; quantizers and observers run
    /// as in evaluation.
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

/// Calls `calibrate` on a linear layer in calibration mode, then runs it.
pub(crate) fn linear_forward(l: &QLinear, x: &Tensor, mode: Mode) -> Result<Tensor> {
    if mode == Mode::Calibrate {
        l.calibrate(x)?;
    }
    Ok(l.forward_t(x, mode.train())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::ModuleT;

    /// The fused training-mode BatchNorm gives candle-nn's output and running statistics.
    #[test]
    fn fused_batch_norm_matches_candle_nn_including_running_statistics() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let mut b = Builder::new(&varmap, None, 3, InitScheme::PyTorchDefault, DType::F32, &dev);
        let layer = ConvBn::new(&mut b, "l", 3, 8, 3, 1, 1, LayerPosition::Middle, false).unwrap();
        let x = (Tensor::arange(0f32, 2.0 * 3.0 * 36.0, &dev)
            .unwrap()
            .reshape((2, 3, 6, 6))
            .unwrap()
            * 0.01)
            .unwrap();
        let x = x.sin().unwrap();
        // candle-nn's BatchNorm on the same conv output, from fresh statistics
        let other = VarMap::new();
        let bn = Builder::new(&other, None, 3, InitScheme::PyTorchDefault, DType::F32, &dev)
            .bn("bn", 8)
            .unwrap();
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
