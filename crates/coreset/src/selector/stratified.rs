//! Coverage-centric (CCS-style) stratified selection.

use quarc_base::{SplitMix64, mix};

use super::base::{by_score, check_k};
use crate::{Direction, Error, Result, SelectContext, Selector};

/// Coverage-centric coreset selection (Zheng et al., ICLR 2023): drop the hardest
/// `prune_fraction` of the candidates (the best end of the score order), split the rest into
/// `bins` equal-width score strata, and spread the budget evenly over the strata, smallest
/// first (a stratum smaller than its share gives the rest to the others); random inside a
/// stratum (seeded). At very small budgets this beats hardest-first selection.
#[derive(Clone, Copy, Debug)]
pub struct Stratified {
    /// Which end counts as "hardest" (pruned first).
    pub direction: Direction,
    /// Number of score strata (≥ 1).
    pub bins: usize,
    /// Fraction of the hardest candidates to drop first, in [0, 1).
    pub prune_fraction: f64,
}

impl Default for Stratified {
    fn default() -> Self {
        Self {
            direction: Direction::KeepHighest,
            bins: 50,
            prune_fraction: 0.1,
        }
    }
}

impl Stratified {
    /// A validated stratified selector.
    pub fn new(direction: Direction, bins: usize, prune_fraction: f64) -> Result<Self> {
        if bins == 0 {
            return Err(Error::InvalidConfig(
                "stratified selection needs at least one bin".into(),
            ));
        }
        if !(0.0..1.0).contains(&prune_fraction) {
            return Err(Error::InvalidConfig(format!(
                "prune fraction must be in [0, 1), got {prune_fraction}"
            )));
        }
        Ok(Self {
            direction,
            bins,
            prune_fraction,
        })
    }
}

impl Selector for Stratified {
    fn name(&self) -> String {
        "stratified".into()
    }
    fn choose(&self, candidates: &[usize], scores: &[f32], k: usize, ctx: &SelectContext) -> Result<Vec<usize>> {
        check_k(k, candidates.len(), scores.len())?;
        let n = candidates.len();
        if k == 0 {
            return Ok(Vec::new());
        }
        // Order hardest first and drop the pruned head (never below the budget).
        let mut pos: Vec<usize> = (0..n).collect();
        pos.sort_unstable_by(by_score(self.direction, candidates, scores));
        let prune = ((self.prune_fraction * n as f64).floor() as usize).min(n - k);
        let kept = &pos[prune..];
        let (lo, hi) = kept.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &p| {
            (a.min(scores[p]), b.max(scores[p]))
        });
        let bins = self.bins.max(1);
        let width = (hi - lo) / bins as f32;
        let mut strata: Vec<Vec<usize>> = vec![Vec::new(); bins];
        for &p in kept {
            let b = if width > 0.0 {
                (((scores[p] - lo) / width) as usize).min(bins - 1)
            } else {
                0
            };
            strata[b].push(p);
        }
        strata.retain(|s| !s.is_empty());
        strata.sort_by_key(|s| s.len());
        let mut rng = SplitMix64::derive(
            ctx.seed,
            mix(ctx.epoch as u64) ^ candidates.first().map_or(0, |&c| mix(c as u64 + 7)),
        );
        let mut budget = k;
        let mut out = Vec::with_capacity(k);
        let total = strata.len();
        for (done, mut stratum) in strata.into_iter().enumerate() {
            let share = budget / (total - done);
            let take = share.min(stratum.len());
            stratum.sort_unstable();
            for i in 0..take {
                let j = i + rng.below(stratum.len() - i);
                stratum.swap(i, j);
            }
            out.extend(stratum[..take].iter().map(|&p| candidates[p]));
            budget -= take;
        }
        // Integer shares can leave a remainder: fill it hardest-first from what is left.
        if budget > 0 {
            let taken: std::collections::HashSet<usize> = out.iter().copied().collect();
            out.extend(
                kept.iter()
                    .map(|&p| candidates[p])
                    .filter(|c| !taken.contains(c))
                    .take(budget),
            );
        }
        Ok(out)
    }
}
