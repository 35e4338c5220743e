//! Range observers for uniform fake quantization: they watch tensors in training mode and
//! report a running minimum and maximum. State lives in variables of the layer's
//! [`crate::ParamStore`] (`obs_min`, `obs_max`, `obs_count`), so it is saved with the model,
//! like BatchNorm's running statistics.

mod ema;
mod min_max;

pub use ema::EmaMinMaxObserver;
pub use min_max::MinMaxObserver;

use candle_core::{Tensor, Var};

use crate::{Granularity, ParamStore, Result};

/// Watches tensors and reports the range they span.
pub trait Observer: std::fmt::Debug + Send + Sync {
    /// Short name (`"min_max"`, `"ema_min_max"`).
    fn kind(&self) -> &'static str;
    /// Folds a new tensor into the running range.
    fn update(&self, x: &Tensor) -> Result<()>;
    /// The observed `(min, max)`, each `(C,)`; `None` before the first update.
    fn min_max(&self) -> Result<Option<(Tensor, Tensor)>>;
}

/// The three variables every built-in observer keeps.
#[derive(Debug)]
pub(crate) struct ObserverState {
    pub granularity: Granularity,
    pub min: Var,
    pub max: Var,
    pub count: Var,
}

impl ObserverState {
    pub fn new(granularity: Granularity, channels: usize, store: &ParamStore<'_>) -> Result<Self> {
        Ok(Self {
            granularity,
            min: store.var("obs_min", channels, 0.0)?,
            max: store.var("obs_max", channels, 0.0)?,
            count: store.var("obs_count", 1, 0.0)?,
        })
    }

    pub fn count(&self) -> Result<f64> {
        Ok(self
            .count
            .as_tensor()
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?[0])
    }

    pub fn batch_range(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        crate::quantizer::stats::check_finite(x, "observed tensor")?;
        let (lo, hi) = crate::quantizer::stats::min_max(&x.detach(), self.granularity)?;
        if lo.elem_count() != self.min.elem_count() {
            return Err(crate::Error::ShapeMismatch {
                context: "observer channels".into(),
                expected: self.min.dims().to_vec(),
                got: lo.dims().to_vec(),
            });
        }
        let dt = self.min.dtype();
        Ok((lo.to_dtype(dt)?, hi.to_dtype(dt)?))
    }

    pub fn store(&self, lo: &Tensor, hi: &Tensor) -> Result<()> {
        self.min.set(lo)?;
        self.max.set(hi)?;
        let c = (self.count.as_tensor() + 1.0)?;
        self.count.set(&c)?;
        Ok(())
    }

    pub fn get(&self) -> Result<Option<(Tensor, Tensor)>> {
        if self.count()? <= 0.0 {
            return Ok(None);
        }
        Ok(Some((self.min.as_tensor().clone(), self.max.as_tensor().clone())))
    }
}
