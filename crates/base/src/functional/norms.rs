//! L2 distances between probability vectors (EVS, DS, EL2N).

use candle_core::{D, DType, Tensor};

use super::{logits_dims, same_logits, softmax};
use crate::{Error, Result};

/// `‖softmax(logits) − onehot(y)‖₂` per sample: the error vector score (EVS of ACS, EL2N of
/// Paul et al. 2021). Labels out of range give [`Error::InvalidConfig`] naming the label.
///
/// # Shapes
/// `logits`: `(B, K)`; `labels`: `(B,)`, an integer dtype (u8, u32 or i64) → `(B,)`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// // p = [0.5, 0.5], y = 0: ‖[−0.5, 0.5]‖ = √0.5
/// let z = Tensor::new(&[[0f32, 0.0]], &Device::Cpu)?;
/// let y = Tensor::new(&[0u32], &Device::Cpu)?;
/// let e = quarc_base::functional::error_vector_norm(&z, &y)?.to_vec1::<f32>()?;
/// assert!((e[0] - 0.5f32.sqrt()).abs() < 1e-6);
/// # Ok::<(), quarc_base::Error>(())
/// ```
pub fn error_vector_norm(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let (b, k) = logits_dims(logits, "error_vector_norm")?;
    let onehot = one_hot(labels, b, k, logits.dtype())?;
    let p = softmax(logits, 1.0)?;
    Ok((p - onehot)?.sqr()?.sum(D::Minus1)?.sqrt()?)
}

/// `‖softmax(a) − softmax(b)‖₂` per sample: the disagreement score (DS of ACS).
///
/// # Shapes
/// `(B, K)`, `(B, K)` → `(B,)`.
pub fn probability_distance(a_logits: &Tensor, b_logits: &Tensor) -> Result<Tensor> {
    same_logits(a_logits, b_logits, "probability_distance")?;
    let d = (softmax(a_logits, 1.0)? - softmax(b_logits, 1.0)?)?;
    Ok(d.sqr()?.sum(D::Minus1)?.sqrt()?)
}

/// One-hot `(B, K)` in `dtype`, after checking the labels' shape and range.
pub fn one_hot(labels: &Tensor, batch: usize, classes: usize, dtype: DType) -> Result<Tensor> {
    if labels.dims() != [batch] {
        return Err(Error::ShapeMismatch {
            context: "labels for (batch, classes) logits".into(),
            expected: vec![batch],
            got: labels.dims().to_vec(),
        });
    }
    if !matches!(labels.dtype(), DType::U8 | DType::U32 | DType::I64) {
        return Err(Error::UnsupportedDType {
            dtype: labels.dtype(),
            context: "labels (need u8, u32 or i64)".into(),
        });
    }
    let as_i64 = labels.to_dtype(DType::I64)?;
    let (lo, hi) = (as_i64.min(0)?.to_scalar::<i64>()?, as_i64.max(0)?.to_scalar::<i64>()?);
    if lo < 0 || hi >= classes as i64 {
        let bad = if lo < 0 { lo } else { hi };
        return Err(Error::config(format!(
            "label {bad} is out of range for {classes} classes"
        )));
    }
    let classes_t = Tensor::arange(0u32, classes as u32, labels.device())?.unsqueeze(0)?;
    let labels_t = labels.to_dtype(DType::U32)?.unsqueeze(1)?;
    Ok(labels_t.broadcast_eq(&classes_t)?.to_dtype(dtype)?)
}
