//! Uniform fake quantization with a range observer (no learnable parameters).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::lsq::check_channels;
use super::{QParams, Quantizer};
use crate::observer::{EmaMinMaxObserver, MinMaxObserver, Observer};
use crate::{Error, Granularity, ParamStore, QRange, Result, Signedness, fake_quant, round_half_even};

/// Symmetric (zero offset) or asymmetric (integer zero point) grids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `scale = max(|min|, |max|) / qp`, offset 0.
    #[default]
    Symmetric,
    /// `scale = (max − min)/(qp − qn)` over a range that includes 0, integer zero point.
    Asymmetric,
}

/// Which observer a [`Uniform`] quantizer uses.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ObserverKind {
    /// Running min/max over every batch.
    #[default]
    MinMax,
    /// Exponential moving average of per-batch min/max.
    EmaMinMax {
        /// Weight of the new batch, in (0, 1].
        momentum: f64,
    },
}

/// Configuration of a [`Uniform`] quantizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UniformConfig {
    /// Bit width, 2 to 8.
    pub bits: u32,
    /// Signed or unsigned codes.
    pub signedness: Signedness,
    /// Symmetric or asymmetric grid.
    pub mode: Mode,
    /// Per tensor or per channel.
    pub granularity: Granularity,
    /// The range observer.
    pub observer: ObserverKind,
}

impl Default for UniformConfig {
    fn default() -> Self {
        Self {
            bits: 8,
            signedness: Signedness::Signed,
            mode: Mode::Symmetric,
            granularity: Granularity::PerTensor,
            observer: ObserverKind::MinMax,
        }
    }
}

/// Uniform fake quantizer: in training mode the observer sees each tensor first; the grid is
/// derived from the observed range; the gradient passes straight through inside the range.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use quarc_quant_core::{ParamStore, Quantizer, Uniform, UniformConfig};
/// let varmap = candle_nn::VarMap::new();
/// let store = ParamStore::new(&varmap, DType::F32, &Device::Cpu);
/// let q = Uniform::new(UniformConfig { bits: 2, ..Default::default() }, 1, &store)?;
/// // symmetric signed 2-bit: scale = 1.0 / 1, codes in [−2, 1]
/// let y = q.forward_t(&Tensor::new(&[-1f32, -0.4, 0.6, 1.0], &Device::Cpu)?, true)?;
/// assert_eq!(y.to_vec1::<f32>()?, vec![-1.0, -0.0, 1.0, 1.0]);
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Uniform {
    name: String,
    config: UniformConfig,
    range: QRange,
    observer: Box<dyn Observer>,
}

impl Uniform {
    /// A uniform quantizer with `channels` ranges; observer state under the store's prefix.
    pub fn new(config: UniformConfig, channels: usize, store: &ParamStore<'_>) -> Result<Self> {
        let range = QRange::new(config.bits, config.signedness)?;
        check_channels(config.granularity, channels)?;
        let observer: Box<dyn Observer> = match config.observer {
            ObserverKind::MinMax => Box::new(MinMaxObserver::new(config.granularity, channels, store)?),
            ObserverKind::EmaMinMax { momentum } => {
                Box::new(EmaMinMaxObserver::new(momentum, config.granularity, channels, store)?)
            }
        };
        Ok(Self {
            name: store.prefix(),
            config,
            range,
            observer,
        })
    }

    /// Scale and offset from the observed range so far.
    fn current_grid(&self) -> Result<(Tensor, Option<Tensor>)> {
        let (lo, hi) = self.observer.min_max()?.ok_or_else(|| Error::NotCalibrated {
            quantizer: format!("uniform `{}`", self.name),
        })?;
        self.grid(&lo, &hi)
    }

    /// Scale and offset from an observed range.
    fn grid(&self, lo: &Tensor, hi: &Tensor) -> Result<(Tensor, Option<Tensor>)> {
        let (qn, qp) = (self.range.qn() as f64, self.range.qp() as f64);
        match self.config.mode {
            Mode::Symmetric => {
                let a = match self.config.signedness {
                    Signedness::Signed => lo.abs()?.maximum(&hi.abs()?)?,
                    Signedness::Unsigned => hi.maximum(0.0)?,
                };
                Ok(((a / qp)?.maximum(1e-8)?, None))
            }
            Mode::Asymmetric => {
                let (lo, hi) = (lo.minimum(0.0)?, hi.maximum(0.0)?);
                let scale = ((hi - &lo)? / (qp - qn))?.maximum(1e-8)?;
                let zero_point = (round_half_even(&(lo / &scale)?)?.neg()? + qn)?.clamp(qn, qp)?;
                let offset = (zero_point.neg()? * &scale)?;
                Ok((scale, Some(offset)))
            }
        }
    }
}

impl Quantizer for Uniform {
    fn kind(&self) -> &'static str {
        "uniform"
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            self.observer.update(x)?;
        }
        let (scale, offset) = self.current_grid()?;
        fake_quant(x, &scale, offset.as_ref(), self.range, self.config.granularity)
    }

    fn calibrate(&self, x: &Tensor) -> Result<()> {
        self.observer.update(x)
    }

    fn is_calibrated(&self) -> bool {
        matches!(self.observer.min_max(), Ok(Some(_)))
    }

    fn qparams(&self) -> Result<Option<QParams>> {
        let (scale, offset) = self.current_grid()?;
        Ok(Some(QParams {
            scale,
            offset,
            range: self.range,
            granularity: self.config.granularity,
        }))
    }
}
