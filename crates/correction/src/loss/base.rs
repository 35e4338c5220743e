//! The `AlignmentLoss` trait.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// A loss that pulls a student tensor towards a reference tensor, per sample.
///
/// Implement [`AlignmentLoss::per_sample`]; the batch mean and the weighted mean are provided.
/// The reference is detached by the caller ([`crate::Cascade`] does it), so no gradient ever
/// reaches the reference model.
///
/// # Implementing your own
/// ```
/// use candle_core::{Device, Tensor};
/// use quarc_correction::{AlignmentLoss, Result};
/// /// Mean absolute error per sample.
/// #[derive(Debug)]
/// struct L1;
/// impl AlignmentLoss for L1 {
///     fn name(&self) -> String { "l1".into() }
///     fn per_sample(&self, s: &Tensor, r: &Tensor) -> Result<Tensor> {
///         Ok((s - r)?.abs()?.flatten_from(1)?.mean(1)?)
///     }
/// }
/// let s = Tensor::new(&[[1f32, 2.0], [0.0, 0.0]], &Device::Cpu)?;
/// let r = Tensor::new(&[[0f32, 0.0], [1.0, 1.0]], &Device::Cpu)?;
/// assert_eq!(L1.per_sample(&s, &r)?.to_vec1::<f32>()?, vec![1.5, 1.0]);
/// assert_eq!(L1.forward(&s, &r)?.to_scalar::<f32>()?, 1.25);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait AlignmentLoss: std::fmt::Debug + Send + Sync {
    /// Name for logs.
    fn name(&self) -> String;

    /// Per-sample loss `(B,)` of `student` against `reference`, both `(B, …)`.
    fn per_sample(&self, student: &Tensor, reference: &Tensor) -> Result<Tensor>;

    /// Batch mean of [`AlignmentLoss::per_sample`].
    fn forward(&self, student: &Tensor, reference: &Tensor) -> Result<Tensor> {
        Ok(self.per_sample(student, reference)?.mean_all()?)
    }

    /// `Σ w_i ℓ_i / Σ w_i` with per-sample weights `(B,)` (coreset weights).
    fn weighted(&self, student: &Tensor, reference: &Tensor, weights: &Tensor) -> Result<Tensor> {
        let l = self.per_sample(student, reference)?;
        if weights.dims() != l.dims() {
            return Err(Error::InvalidConfig(format!(
                "weights of shape {:?} for {} samples",
                weights.dims(),
                l.elem_count()
            )));
        }
        let w = weights.to_dtype(l.dtype())?;
        Ok((l * &w)?.sum_all()?.broadcast_div(&w.sum_all()?)?)
    }
}

/// Checks that two tensors to align have the same shape, a batch axis, and finite values.
pub(crate) fn check_pair(student: &Tensor, reference: &Tensor, layer: &str) -> Result<()> {
    if student.dims() != reference.dims() || student.rank() == 0 {
        return Err(Error::ShapeMismatch {
            layer: layer.into(),
            student: student.dims().to_vec(),
            reference: reference.dims().to_vec(),
        });
    }
    for (t, side) in [(student, "student"), (reference, "reference")] {
        let s = t.to_dtype(DType::F64)?.abs()?.sum_all()?.to_scalar::<f64>()?;
        if !s.is_finite() {
            return Err(Error::NonFinite {
                what: format!("layer `{layer}` ({side})"),
            });
        }
    }
    Ok(())
}

/// `(B, rest)` view of a `(B, …)` tensor.
pub(crate) fn flat(t: &Tensor) -> Result<Tensor> {
    Ok(if t.rank() == 1 {
        t.unsqueeze(1)?
    } else {
        t.flatten_from(1)?
    })
}
