//! Per-tensor / per-channel statistics used to initialise quantizers.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor, Var};

use crate::{Error, Granularity, Result};

/// `x` as `(C, rest)` rows, one row per step-sharing group.
fn rows(x: &Tensor, granularity: Granularity) -> Result<Tensor> {
    Ok(match granularity {
        Granularity::PerTensor => x.flatten_all()?.unsqueeze(0)?,
        Granularity::PerChannel { axis } => {
            if axis >= x.rank() {
                return Err(Error::InvalidAxis { axis, rank: x.rank() });
            }
            x.transpose(0, axis)?.contiguous()?.flatten_from(1)?
        }
    })
}

/// Errors unless every element of `x` is finite and `x` is non-empty.
pub(crate) fn check_finite(x: &Tensor, what: &str) -> Result<()> {
    if x.elem_count() == 0 {
        return Err(Error::Empty(format!("{what} has no elements")));
    }
    let s = x.to_dtype(DType::F64)?.abs()?.sum_all()?.to_scalar::<f64>()?;
    if !s.is_finite() {
        return Err(Error::NonFinite { what: what.to_string() });
    }
    Ok(())
}

/// Mean of `|x|` per group, `(C,)`.
pub(crate) fn abs_mean(x: &Tensor, g: Granularity) -> Result<Tensor> {
    Ok(rows(x, g)?.abs()?.mean(1)?)
}

/// Mean and (biased) standard deviation per group, `(C,)` each.
pub(crate) fn mean_std(x: &Tensor, g: Granularity) -> Result<(Tensor, Tensor)> {
    let r = rows(x, g)?;
    let mean = r.mean_keepdim(1)?;
    let var = r.broadcast_sub(&mean)?.sqr()?.mean(1)?;
    Ok((mean.squeeze(1)?, var.sqrt()?))
}

/// Minimum and maximum per group, `(C,)` each.
pub(crate) fn min_max(x: &Tensor, g: Granularity) -> Result<(Tensor, Tensor)> {
    let r = rows(x, g)?;
    Ok((r.min(1)?, r.max(1)?))
}

/// Remembers that a step variable became positive, so the check costs one read at most.
#[derive(Debug, Default)]
pub(crate) struct CalibrationFlag(AtomicBool);

impl CalibrationFlag {
    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed)
    }

    /// True once every element of `var` is > 0 (a loaded checkpoint counts as calibrated).
    pub fn check(&self, var: &Var) -> bool {
        if self.0.load(Ordering::Relaxed) {
            return true;
        }
        let positive = var
            .as_tensor()
            .to_dtype(DType::F64)
            .and_then(|t| t.min_all())
            .and_then(|t| t.to_scalar::<f64>())
            .map(|m| m > 0.0)
            .unwrap_or(false);
        if positive {
            self.set();
        }
        positive
    }
}

/// Runs first-batch init when allowed, else errors unless `q` is calibrated.
pub(crate) fn ensure_calibrated(
    q: &dyn super::Quantizer,
    x: &Tensor,
    train: bool,
    init: super::InitMode,
    name: &str,
) -> Result<()> {
    if q.is_calibrated() {
        return Ok(());
    }
    if train && init == super::InitMode::FirstTrainBatch {
        return q.calibrate(x);
    }
    Err(not_calibrated(q, name))
}

/// The `NotCalibrated` error for `q`.
pub(crate) fn not_calibrated(q: &dyn super::Quantizer, name: &str) -> Error {
    Error::NotCalibrated {
        quantizer: format!("{} `{name}`", q.kind()),
    }
}

/// Floors every element at `floor`: keeps initial steps strictly positive on all-zero data.
pub(crate) fn at_least(t: &Tensor, floor: f64) -> Result<Tensor> {
    Ok(t.maximum(floor)?)
}
