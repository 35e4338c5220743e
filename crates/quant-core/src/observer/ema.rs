//! Exponential moving average of per-batch min/max.

use candle_core::Tensor;

use super::{Observer, ObserverState};
use crate::{Error, Granularity, ParamStore, Result};

/// `min ← (1 − m)·min + m·batch_min` (likewise max); the first batch sets the range.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use quarc_quant_core::{EmaMinMaxObserver, Granularity, Observer, ParamStore};
/// let varmap = candle_nn::VarMap::new();
/// let store = ParamStore::new(&varmap, DType::F32, &Device::Cpu);
/// let obs = EmaMinMaxObserver::new(0.5, Granularity::PerTensor, 1, &store)?;
/// obs.update(&Tensor::new(&[0f32, 4.0], &Device::Cpu)?)?;
/// obs.update(&Tensor::new(&[-2f32, 2.0], &Device::Cpu)?)?; // min 0.5·0 + 0.5·(−2), max 0.5·4 + 0.5·2
/// let (lo, hi) = obs.min_max()?.unwrap();
/// assert_eq!((lo.to_vec1::<f32>()?, hi.to_vec1::<f32>()?), (vec![-1.0], vec![3.0]));
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Debug)]
pub struct EmaMinMaxObserver {
    momentum: f64,
    state: ObserverState,
}

impl EmaMinMaxObserver {
    /// An EMA observer; `momentum` in `(0, 1]` (PyTorch's default averaging constant is 0.01).
    pub fn new(momentum: f64, granularity: Granularity, channels: usize, store: &ParamStore<'_>) -> Result<Self> {
        if !(momentum > 0.0 && momentum <= 1.0) {
            return Err(Error::config(format!("EMA momentum must be in (0, 1], got {momentum}")));
        }
        Ok(Self {
            momentum,
            state: ObserverState::new(granularity, channels, store)?,
        })
    }
}

impl Observer for EmaMinMaxObserver {
    fn kind(&self) -> &'static str {
        "ema_min_max"
    }

    fn update(&self, x: &Tensor) -> Result<()> {
        let (lo, hi) = self.state.batch_range(x)?;
        let m = self.momentum;
        let (lo, hi) = match self.state.get()? {
            None => (lo, hi),
            Some((old_lo, old_hi)) => (
                ((old_lo * (1.0 - m))? + (lo * m)?)?,
                ((old_hi * (1.0 - m))? + (hi * m)?)?,
            ),
        };
        self.state.store(&lo, &hi)
    }

    fn min_max(&self) -> Result<Option<(Tensor, Tensor)>> {
        self.state.get()
    }
}
