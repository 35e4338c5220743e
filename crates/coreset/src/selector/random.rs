//! Seeded uniform random selection.

use quarc_base::{SplitMix64, mix};

use super::base::check_k;
use crate::{Result, SelectContext, Selector};

/// `k` candidates uniformly at random (partial Fisher–Yates), from a stream derived from the
/// seed, the epoch and the candidate set, so class-balanced random draws are independent per
/// class and the same seed gives the same subset.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomSelector;

impl Selector for RandomSelector {
    fn name(&self) -> String {
        "random".into()
    }
    fn choose(&self, candidates: &[usize], scores: &[f32], k: usize, ctx: &SelectContext) -> Result<Vec<usize>> {
        check_k(k, candidates.len(), scores.len())?;
        let stream = mix(ctx.epoch as u64) ^ candidates.first().map_or(0, |&c| mix(c as u64 + 1));
        let mut rng = SplitMix64::derive(ctx.seed, stream);
        let mut pool = candidates.to_vec();
        for i in 0..k {
            let j = i + rng.below(pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(k);
        Ok(pool)
    }
}
