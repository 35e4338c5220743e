//! LSQ+: LSQ with a learnable offset (Bhalgat et al., CVPR-W 2020).

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::lsq::{check_channels, grad_scale_for};
use super::stats::{CalibrationFlag, at_least, check_finite, ensure_calibrated, mean_std, min_max, not_calibrated};
use super::{GradScaleMode, InitMode, QParams, Quantizer, Role};
use crate::ste::{Backend, LsqOptions};
use crate::{Granularity, ParamStore, QRange, Result, Signedness, lsq_plus_fake_quant};

/// Configuration of an [`LsqPlus`] quantizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LsqPlusConfig {
    /// Bit width, 2 to 8.
    pub bits: u32,
    /// LSQ+ uses unsigned codes with an offset for activations.
    pub signedness: Signedness,
    /// One step/offset per tensor or per channel.
    pub granularity: Granularity,
    /// How `N` in the gradient scale is counted.
    pub grad_scale: GradScaleMode,
    /// When the parameters are initialised.
    pub init: InitMode,
    /// Fused kernel (CPU) or composed ops.
    pub backend: Backend,
}

impl Default for LsqPlusConfig {
    fn default() -> Self {
        Self {
            bits: 4,
            signedness: Signedness::Unsigned,
            granularity: Granularity::PerTensor,
            grad_scale: GradScaleMode::PerSample,
            init: InitMode::Explicit,
            backend: Backend::Auto,
        }
    }
}

/// LSQ+ fake quantizer: learnable step `s` (`step`) and offset `o` (`offset`),
/// `y = s · clamp(round((x − o)/s), qn, qp) + o`.
///
/// Initialisation (docs/methods.md, "Quantizer defaults"): activations from the batch's min/max
/// (`s = (max − min)/(qp − qn)`, `o = min − qn·s`); weights from
/// `s = max(|μ − 3σ|, |μ + 3σ|) / 2^(b−1)`, `o = 0`.
#[derive(Debug)]
pub struct LsqPlus {
    name: String,
    config: LsqPlusConfig,
    role: Role,
    range: QRange,
    step: Var,
    offset: Var,
    calibrated: CalibrationFlag,
}

impl LsqPlus {
    /// An LSQ+ quantizer with `channels` steps/offsets, stored as `<prefix>.step` and
    /// `<prefix>.offset`.
    pub fn new(config: LsqPlusConfig, role: Role, channels: usize, store: &ParamStore<'_>) -> Result<Self> {
        let range = QRange::new(config.bits, config.signedness)?;
        check_channels(config.granularity, channels)?;
        Ok(Self {
            name: store.prefix(),
            range,
            step: store.var("step", channels, 0.0)?,
            offset: store.var("offset", channels, 0.0)?,
            config,
            role,
            calibrated: CalibrationFlag::default(),
        })
    }

    /// The step-size variable.
    pub fn step(&self) -> &Var {
        &self.step
    }

    /// The offset variable.
    pub fn offset(&self) -> &Var {
        &self.offset
    }
}

impl Quantizer for LsqPlus {
    fn kind(&self) -> &'static str {
        "lsq_plus"
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        ensure_calibrated(self, x, train, self.config.init, &self.name)?;
        let channels = self.step.elem_count();
        let opts = LsqOptions {
            grad_scale: grad_scale_for(self.config.grad_scale, self.role, x.dims(), channels, self.range),
            granularity: self.config.granularity,
            backend: self.config.backend,
        };
        lsq_plus_fake_quant(x, self.step.as_tensor(), self.offset.as_tensor(), self.range, opts)
    }

    fn calibrate(&self, x: &Tensor) -> Result<()> {
        check_finite(x, &format!("calibration data of lsq_plus `{}`", self.name))?;
        let x = x.detach();
        let g = self.config.granularity;
        let (qn, qp) = (self.range.qn() as f64, self.range.qp() as f64);
        let (step, offset) = match self.role {
            Role::Activation => {
                let (lo, hi) = min_max(&x, g)?;
                let step = at_least(&((hi - &lo)? / (qp - qn))?, 1e-8)?;
                let offset = (lo - (&step * qn)?)?;
                (step, offset)
            }
            Role::Weight => {
                let (mean, std) = mean_std(&x, g)?;
                let three = (std * 3.0)?;
                let a = (&mean - &three)?.abs()?.maximum(&(&mean + &three)?.abs()?)?;
                let step = at_least(&(a / f64::from(1u32 << (self.config.bits - 1)))?, 1e-8)?;
                (step.clone(), step.zeros_like()?)
            }
        };
        let dt = self.step.dtype();
        self.step.set(&step.to_dtype(dt)?.reshape(self.step.shape())?)?;
        self.offset.set(&offset.to_dtype(dt)?.reshape(self.offset.shape())?)?;
        self.calibrated.set();
        Ok(())
    }

    fn is_calibrated(&self) -> bool {
        self.calibrated.check(&self.step)
    }

    fn qparams(&self) -> Result<Option<QParams>> {
        if !self.is_calibrated() {
            return Err(not_calibrated(self, &self.name));
        }
        Ok(Some(QParams {
            scale: self.step.as_tensor().maximum(crate::STEP_EPS)?,
            offset: Some(self.offset.as_tensor().clone()),
            range: self.range,
            granularity: self.config.granularity,
        }))
    }
}
