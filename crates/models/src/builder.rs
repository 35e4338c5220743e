//! Builds quantized layers with seeded weights and the first/middle/last-layer policy.

use candle_core::{DType, Device, ModuleT, Tensor};
use candle_nn::{BatchNorm, Conv2dConfig, VarMap};
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
    /// The BatchNorm.
    pub bn: BatchNorm,
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
        })
    }

    /// conv → BN; with `calibrate`, initialises the conv's quantizers from `x` first.
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Calibrate {
            self.conv.calibrate(x)?;
        }
        let y = self.conv.forward_t(x, mode.train())?;
        Ok(self.bn.forward_t(&y, mode.batch_statistics())?)
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
