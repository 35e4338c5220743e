//! Random scores (seeded): the baseline every table needs.

use candle_core::Tensor;
use quarc_base::{Progress, SplitMix64, mix};

use crate::{Needs, Result, ScoreInput, Scorer};

/// A uniform random score per sample, a pure function of `(seed, index[, epoch])`, so it does
/// not depend on batch order or worker. With `resample_each_selection`, every selection epoch
/// draws anew (the "resample every R" control of docs/methods.md, "Controls"); otherwise one fixed draw.
#[derive(Clone, Copy, Debug)]
pub struct RandomScore {
    /// The seed.
    pub seed: u64,
    /// Draw again at every selection epoch.
    pub resample_each_selection: bool,
}

impl RandomScore {
    /// A fixed random draw.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            resample_each_selection: false,
        }
    }
}

impl Scorer for RandomScore {
    fn name(&self) -> String {
        "random".into()
    }
    fn needs(&self) -> Needs {
        Needs {
            index_only: true,
            ..Needs::default()
        }
    }
    fn score(&mut self, input: &ScoreInput<'_>, p: &Progress) -> Result<Tensor> {
        let v = self.draw(input.indices, p);
        Ok(Tensor::from_vec(v, input.indices.len(), input.student.logits.device())?)
    }
    fn score_indices(&mut self, indices: &[usize], p: &Progress) -> Option<Vec<f32>> {
        Some(self.draw(indices, p))
    }
}

impl RandomScore {
    /// `U(0, 1)` per index, from `(seed, index[, epoch])`.
    fn draw(&self, indices: &[usize], p: &Progress) -> Vec<f32> {
        let epoch = if self.resample_each_selection {
            p.epoch as u64
        } else {
            0
        };
        indices
            .iter()
            .map(|&i| SplitMix64::derive(self.seed ^ mix(epoch), i as u64).next_f64() as f32)
            .collect()
    }
}
