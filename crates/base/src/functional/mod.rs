//! Numerically stable per-sample functions on logits, shared by the coreset scorers and the
//! correction losses. All take logits of shape `(B, K)` and return one value per sample,
//! `(B,)`, with gradients (nothing here uses candle's fused softmax, which records none).

mod divergence;
mod norms;
mod probs;

pub use divergence::{entropy_per_sample, kl_per_sample, soft_cross_entropy_per_sample};
pub use norms::{error_vector_norm, one_hot, probability_distance};
pub use probs::{log_softmax, softmax};

use candle_core::Tensor;

use crate::{Error, Result};

/// Checks that `logits` is `(B, K)` with `B, K ≥ 1` and returns `(B, K)`.
pub(crate) fn logits_dims(logits: &Tensor, what: &str) -> Result<(usize, usize)> {
    match logits.dims() {
        &[b, k] if b > 0 && k > 0 => Ok((b, k)),
        &[_, _] => Err(Error::Empty(format!("{what}: logits of shape {:?}", logits.dims()))),
        other => Err(Error::ShapeMismatch {
            context: format!("{what}: logits must be (batch, classes)"),
            expected: vec![0, 0],
            got: other.to_vec(),
        }),
    }
}

/// Checks that two logit tensors have the same `(B, K)` shape.
pub(crate) fn same_logits(a: &Tensor, b: &Tensor, what: &str) -> Result<(usize, usize)> {
    let dims = logits_dims(a, what)?;
    let other = logits_dims(b, what)?;
    if dims != other {
        return Err(Error::ShapeMismatch {
            context: what.to_string(),
            expected: vec![dims.0, dims.1],
            got: vec![other.0, other.1],
        });
    }
    Ok(dims)
}

pub(crate) fn check_temperature(t: f64) -> Result<()> {
    if t.is_finite() && t > 0.0 {
        Ok(())
    } else {
        Err(Error::config(format!("temperature must be finite and > 0, got {t}")))
    }
}
