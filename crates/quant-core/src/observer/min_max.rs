//! Running min/max over every batch seen.

use candle_core::Tensor;

use super::{Observer, ObserverState};
use crate::{Granularity, ParamStore, Result};

/// Keeps the smallest minimum and largest maximum over all observed tensors.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use quarc_quant_core::{Granularity, MinMaxObserver, Observer, ParamStore};
/// let varmap = candle_nn::VarMap::new();
/// let obs = MinMaxObserver::new(Granularity::PerTensor, 1, &ParamStore::new(&varmap, DType::F32, &Device::Cpu))?;
/// assert!(obs.min_max()?.is_none());
/// obs.update(&Tensor::new(&[-1f32, 2.0], &Device::Cpu)?)?;
/// obs.update(&Tensor::new(&[-3f32, 1.0], &Device::Cpu)?)?;
/// let (lo, hi) = obs.min_max()?.unwrap();
/// assert_eq!((lo.to_vec1::<f32>()?, hi.to_vec1::<f32>()?), (vec![-3.0], vec![2.0]));
/// # Ok::<(), quarc_quant_core::Error>(())
/// ```
#[derive(Debug)]
pub struct MinMaxObserver {
    state: ObserverState,
}

impl MinMaxObserver {
    /// An observer with `channels` ranges (1 for per-tensor).
    pub fn new(granularity: Granularity, channels: usize, store: &ParamStore<'_>) -> Result<Self> {
        Ok(Self {
            state: ObserverState::new(granularity, channels, store)?,
        })
    }
}

impl Observer for MinMaxObserver {
    fn kind(&self) -> &'static str {
        "min_max"
    }

    fn update(&self, x: &Tensor) -> Result<()> {
        let (lo, hi) = self.state.batch_range(x)?;
        let (lo, hi) = match self.state.get()? {
            None => (lo, hi),
            Some((old_lo, old_hi)) => (old_lo.minimum(&lo)?, old_hi.maximum(&hi)?),
        };
        self.state.store(&lo, &hi)
    }

    fn min_max(&self) -> Result<Option<(Tensor, Tensor)>> {
        self.state.get()
    }
}
