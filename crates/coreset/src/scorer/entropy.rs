//! Predictive entropy (uncertainty sampling).

use candle_core::{DType, Tensor};
use quarc_base::{Progress, functional::entropy_per_sample};

use crate::{ModelSource, Needs, Result, ScoreInput, Scorer};

/// Entropy of `softmax(z)` (nats): the most uncertain samples first (Coleman et al. 2020).
#[derive(Clone, Copy, Debug, Default)]
pub struct Entropy {
    /// Which model's logits (default: the reference).
    pub source: ModelSource,
}

impl Scorer for Entropy {
    fn name(&self) -> String {
        "entropy".into()
    }
    fn needs(&self) -> Needs {
        self.source.needs()
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        let z = &self.source.pick(input, "entropy")?.logits;
        Ok(entropy_per_sample(z, 1.0)?.to_dtype(DType::F32)?.maximum(0f32)?)
    }
}
