//! LSQ: learned step size quantization (Esser et al., ICLR 2020).

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::stats::{CalibrationFlag, abs_mean, at_least, check_finite, ensure_calibrated, not_calibrated};
use super::{GradScaleMode, InitMode, QParams, Quantizer, Role};
use crate::ste::{Backend, LsqOptions};
use crate::{Error, Granularity, ParamStore, QRange, Result, Signedness, lsq_fake_quant, lsq_grad_scale};

/// Configuration of an [`Lsq`] quantizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LsqConfig {
    /// Bit width, 2 to 8.
    pub bits: u32,
    /// Signed (weights) or unsigned (post-ReLU activations).
    pub signedness: Signedness,
    /// One step per tensor or per channel.
    pub granularity: Granularity,
    /// How `N` in the gradient scale `1/√(N·Qp)` is counted.
    pub grad_scale: GradScaleMode,
    /// When the step is initialised.
    pub init: InitMode,
    /// Fused kernel (CPU) or composed ops.
    pub backend: Backend,
}

impl Default for LsqConfig {
    fn default() -> Self {
        Self {
            bits: 4,
            signedness: Signedness::Signed,
            granularity: Granularity::PerTensor,
            grad_scale: GradScaleMode::PerSample,
            init: InitMode::Explicit,
            backend: Backend::Auto,
        }
    }
}

impl LsqConfig {
    /// `bits`-bit LSQ with the given signedness, per tensor.
    pub fn new(bits: u32, signedness: Signedness) -> Self {
        Self {
            bits,
            signedness,
            ..Default::default()
        }
    }
}

/// Gradient-scale `g` for an input of shape `dims` sharing steps over `channels`.
pub(crate) fn grad_scale_for(mode: GradScaleMode, role: Role, dims: &[usize], channels: usize, range: QRange) -> f64 {
    let numel: usize = dims.iter().product();
    let per_step = numel / channels.max(1);
    let n = match (mode, role) {
        (GradScaleMode::Off, _) => return 1.0,
        (GradScaleMode::PerSample, Role::Activation) => per_step / dims.first().copied().unwrap_or(1).max(1),
        (GradScaleMode::PerSample, Role::Weight) | (GradScaleMode::IncludeBatch, _) => per_step,
    };
    lsq_grad_scale(n, range)
}

/// LSQ fake quantizer with a learnable step `s` (variable `step`, shape `(C,)`).
///
/// Forward `y = s · clamp(round(x / s), qn, qp)`; backward: straight through inside the range,
/// LSQ's step gradient scaled by `g = 1/√(N·Qp)`. `N` is the number of elements that share a
/// step, counted **per sample** for activations as in the LSQ paper
/// ([`GradScaleMode::PerSample`]); [`GradScaleMode::IncludeBatch`] reproduces the ACS code,
/// which counts the batch too. Initialisation: `s = 2·mean|x| / √Qp` by [`Quantizer::calibrate`]
/// (or on the first training batch with [`InitMode::FirstTrainBatch`]).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use quarc_quant_core::{Lsq, LsqConfig, ParamStore, Quantizer, Role, Signedness};
/// let varmap = candle_nn::VarMap::new();
/// let store = ParamStore::new(&varmap, DType::F32, &Device::Cpu);
/// let q = Lsq::new(LsqConfig::new(2, Signedness::Signed), Role::Weight, 1, &store.pp("wq"))?;
/// let w = Tensor::new(&[0.5f32, -0.5, 1.0, -1.0], &Device::Cpu)?;
/// assert!(q.forward_t(&w, true).is_err()); // not calibrated yet
/// q.calibrate(&w)?; // s = 2 · 0.75 / √1 = 1.5
/// assert_eq!(q.forward_t(&w, true)?.to_vec1::<f32>()?, vec![0.0, -0.0, 1.5, -1.5]);
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Lsq {
    name: String,
    config: LsqConfig,
    role: Role,
    range: QRange,
    step: Var,
    calibrated: CalibrationFlag,
}

impl Lsq {
    /// An LSQ quantizer with `channels` steps (1 for per-tensor), its step stored as
    /// `<prefix>.step`.
    pub fn new(config: LsqConfig, role: Role, channels: usize, store: &ParamStore<'_>) -> Result<Self> {
        let range = QRange::new(config.bits, config.signedness)?;
        check_channels(config.granularity, channels)?;
        let step = store.var("step", channels, 0.0)?;
        Ok(Self {
            name: store.prefix(),
            config,
            role,
            range,
            step,
            calibrated: CalibrationFlag::default(),
        })
    }

    /// The step-size variable.
    pub fn step(&self) -> &Var {
        &self.step
    }

    /// The configuration.
    pub fn config(&self) -> &LsqConfig {
        &self.config
    }
}

pub(crate) fn check_channels(granularity: Granularity, channels: usize) -> Result<()> {
    match (granularity, channels) {
        (_, 0) => Err(Error::config("a quantizer needs at least one channel")),
        (Granularity::PerTensor, c) if c != 1 => Err(Error::config(format!("per-tensor quantizer with {c} channels"))),
        _ => Ok(()),
    }
}

impl Quantizer for Lsq {
    fn kind(&self) -> &'static str {
        "lsq"
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        ensure_calibrated(self, x, train, self.config.init, &self.name)?;
        let channels = self.step.elem_count();
        let opts = LsqOptions {
            grad_scale: grad_scale_for(self.config.grad_scale, self.role, x.dims(), channels, self.range),
            granularity: self.config.granularity,
            backend: self.config.backend,
        };
        lsq_fake_quant(x, self.step.as_tensor(), self.range, opts)
    }

    fn calibrate(&self, x: &Tensor) -> Result<()> {
        check_finite(x, &format!("calibration data of lsq `{}`", self.name))?;
        let s = (abs_mean(&x.detach(), self.config.granularity)? * (2.0 / (self.range.qp() as f64).sqrt()))?;
        let s = at_least(&s, 1e-8)?.to_dtype(self.step.dtype())?;
        if s.elem_count() != self.step.elem_count() {
            return Err(Error::ShapeMismatch {
                context: format!("calibration of lsq `{}`", self.name),
                expected: self.step.dims().to_vec(),
                got: s.dims().to_vec(),
            });
        }
        self.step.set(&s.reshape(self.step.shape())?)?;
        self.calibrated.set();
        Ok(())
    }

    fn is_calibrated(&self) -> bool {
        self.calibrated.check(&self.step)
    }

    fn fusable_lsq(&self, x: &Tensor, train: bool) -> Result<Option<super::FusableLsq>> {
        let fusable = self.config.granularity == Granularity::PerTensor
            && self.config.backend == Backend::Auto
            && x.device().is_cpu()
            && x.dtype() == candle_core::DType::F32
            && self.step.dtype() == candle_core::DType::F32;
        if !fusable {
            return Ok(None);
        }
        ensure_calibrated(self, x, train, self.config.init, &self.name)?;
        let grad_scale = grad_scale_for(self.config.grad_scale, self.role, x.dims(), 1, self.range);
        Ok(Some(super::FusableLsq {
            step: self.step.as_tensor().clone(),
            spec: quarc_kernels::LsqInput {
                qn: self.range.qn() as f32,
                qp: self.range.qp() as f32,
                eps: crate::ste::STEP_EPS as f32,
                grad_scale,
            },
        }))
    }

    fn qparams(&self) -> Result<Option<QParams>> {
        if !self.is_calibrated() {
            return Err(not_calibrated(self, &self.name));
        }
        Ok(Some(QParams {
            scale: self.step.as_tensor().maximum(crate::STEP_EPS)?,
            offset: None,
            range: self.range,
            granularity: self.config.granularity,
        }))
    }
}
