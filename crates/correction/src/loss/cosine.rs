//! Cosine distance.

use candle_core::Tensor;

use super::base::{AlignmentLoss, check_pair, flat};
use crate::Result;

/// `1 − cos(s, r)` per sample over the flattened sample, in [0, 2].
#[derive(Clone, Copy, Debug)]
pub struct CosineDistance {
    /// Guards the norms (default 1e-8).
    pub eps: f64,
}

impl Default for CosineDistance {
    fn default() -> Self {
        Self { eps: 1e-8 }
    }
}

impl AlignmentLoss for CosineDistance {
    fn name(&self) -> String {
        "cosine".into()
    }
    fn per_sample(&self, s: &Tensor, r: &Tensor) -> Result<Tensor> {
        check_pair(s, r, "cosine")?;
        let (s, r) = (flat(s)?, flat(r)?);
        let dot = (&s * &r)?.sum(1)?;
        let norms = ((s.sqr()?.sum(1)? * r.sqr()?.sum(1)?)?.sqrt()? + self.eps)?;
        Ok((1.0 - (dot / norms)?)?)
    }
}
