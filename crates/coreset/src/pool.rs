//! Candidate pools: score a fresh class-stratified random share of the data set at each
//! selection instead of all of it, so that selection costs a fixed multiple of the budget.

use std::collections::BTreeMap;

use quarc_base::{SplitMix64, mix};
use serde::{Deserialize, Serialize};

use crate::{Budget, ClassBalanced, Error, Result};

/// Stream tag of the pool draws (kept apart from the selectors' streams).
const POOL_STREAM: u64 = 0x9001_C0DE;

/// Score only a random candidate pool of `multiple` × the budget at each selection.
///
/// At a selection epoch the pool is drawn afresh — `min(1, multiple · f)` of every class,
/// uniformly at random from a stream derived from the seed and the epoch — the loop scores the
/// pool alone ([`crate::Coreset::scoring_indices`]) and the selector takes the budget from it.
/// A pass then costs `multiple · k` forward passes instead of `N`: at a 1 % budget and
/// `multiple` = 10 that is a tenth of the data set. Where `multiple · f ≥ 1` the pool is the
/// whole data set and nothing changes.
///
/// ```
/// use quarc_coreset::{Budget, CandidatePool};
/// let pool = CandidatePool { multiple: 10.0 };
/// let labels: Vec<u32> = (0..1000).map(|i| i % 10).collect();
/// let drawn = pool.draw(&labels, Budget::Fraction(0.01), 0, 5)?.unwrap();
/// assert_eq!(drawn.len(), 100);                                   // 10 per class
/// assert!(drawn.windows(2).all(|w| w[0] < w[1]));                 // sorted dataset indices
/// assert_eq!(pool.draw(&labels, Budget::Fraction(0.01), 0, 5)?.unwrap(), drawn); // seeded
/// assert_ne!(pool.draw(&labels, Budget::Fraction(0.01), 0, 10)?.unwrap(), drawn); // fresh per epoch
/// assert!(pool.draw(&labels, Budget::Fraction(0.1), 0, 5)?.is_none()); // 10 × 10 % = all
/// assert!(CandidatePool { multiple: 0.5 }.validate().is_err());
/// # Ok::<(), quarc_coreset::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidatePool {
    /// Pool size as a multiple of the budget, finite and ≥ 1.
    pub multiple: f64,
}

impl CandidatePool {
    /// The pool of the recommended scored coreset: 10× the budget (validated in docs/tuning.md:
    /// the same accuracy as scoring the whole data set at 1 % and 10 %).
    pub const RECOMMENDED: CandidatePool = CandidatePool { multiple: 10.0 };

    /// Checks the multiple.
    pub fn validate(&self) -> Result<()> {
        if !(self.multiple.is_finite() && self.multiple >= 1.0) {
            return Err(Error::InvalidConfig(format!(
                "candidate pool: multiple must be finite and ≥ 1, got {}",
                self.multiple
            )));
        }
        Ok(())
    }

    /// The pool's share of each class under `budget` over `n` samples: `min(1, multiple · f)`.
    pub fn fraction(&self, budget: Budget, n: usize) -> f64 {
        (self.multiple * budget.fraction(n)).min(1.0)
    }

    /// The pool for the selection at `epoch`: sorted dataset indices, `round(p · n_c)` (at least
    /// one) of every class `c` present, or `None` when the pool would be the whole data set.
    pub fn draw(&self, labels: &[u32], budget: Budget, seed: u64, epoch: usize) -> Result<Option<Vec<usize>>> {
        self.validate()?;
        budget.validate(labels.len())?;
        let p = self.fraction(budget, labels.len());
        if p >= 1.0 {
            return Ok(None);
        }
        let mut by_label: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, &y) in labels.iter().enumerate() {
            by_label.entry(y).or_default().push(i);
        }
        let mut pool = Vec::new();
        for (label, mut members) in by_label {
            let stream = POOL_STREAM ^ mix(epoch as u64) ^ mix(u64::from(label) + 1);
            SplitMix64::derive(seed, stream).shuffle(&mut members);
            members.truncate(self.class_pool_size(budget, labels.len(), members.len()));
            pool.extend(members);
        }
        pool.sort_unstable();
        Ok(Some(pool))
    }

    /// The pool size of a class of `n_c` samples: about `p · n_c`, moved so that the selector's
    /// per-class count inside the pool (under [`CandidatePool::budget_within`]) is exactly the
    /// class's count without a pool, `round(f · n_c)`, for fraction budgets.
    fn class_pool_size(&self, budget: Budget, n: usize, n_c: usize) -> usize {
        let mut x = ClassBalanced::class_count(self.fraction(budget, n), n_c);
        let Budget::Fraction(f) = budget else {
            return x;
        };
        let (want, inner) = (ClassBalanced::class_count(f, n_c), f / self.fraction(budget, n));
        let count = |x: usize| ClassBalanced::class_count(inner.min(1.0), x);
        while x < n_c && count(x) < want {
            x += 1;
        }
        while x > want && count(x - 1) >= want && count(x) > want {
            x -= 1;
        }
        x
    }

    /// The budget to take from a pool of `pool_len` samples drawn for `budget` over `n`: the
    /// same share of each class as `budget` asks of the data set.
    pub fn budget_within(&self, budget: Budget, n: usize, pool_len: usize) -> Budget {
        match budget {
            Budget::Fraction(f) => Budget::Fraction((f / self.fraction(budget, n)).min(1.0)),
            Budget::Count(k) => Budget::Count(k.min(pool_len)),
        }
    }
}
