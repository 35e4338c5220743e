//! Mean squared error and its normalised form.

use candle_core::Tensor;

use super::base::{AlignmentLoss, check_pair, flat};
use crate::Result;

/// Mean squared error per sample, averaged over the non-batch elements.
///
/// # Shapes
/// `(B, …)`, `(B, …)` → `(B,)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mse;

impl AlignmentLoss for Mse {
    fn name(&self) -> String {
        "mse".into()
    }
    fn per_sample(&self, s: &Tensor, r: &Tensor) -> Result<Tensor> {
        check_pair(s, r, "mse")?;
        Ok(flat(&(s - r)?)?.sqr()?.mean(1)?)
    }
}

/// Normalised MSE per sample: `‖s − r‖² / (‖r‖² + ε)` over the flattened sample, so layers of
/// different scale weigh alike.
#[derive(Clone, Copy, Debug)]
pub struct NormalizedMse {
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
}

impl Default for NormalizedMse {
    fn default() -> Self {
        Self { eps: 1e-8 }
    }
}

impl AlignmentLoss for NormalizedMse {
    fn name(&self) -> String {
        "normalized_mse".into()
    }
    fn per_sample(&self, s: &Tensor, r: &Tensor) -> Result<Tensor> {
        check_pair(s, r, "normalized_mse")?;
        let num = flat(&(s - r)?)?.sqr()?.sum(1)?;
        let den = (flat(r)?.sqr()?.sum(1)? + self.eps)?;
        Ok((num / den)?)
    }
}
