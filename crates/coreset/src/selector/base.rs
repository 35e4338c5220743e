//! The `Selector` trait, budgets and selections.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How many samples to keep.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Budget {
    /// A fraction in (0, 1] of the data set (or of each class, under [`crate::ClassBalanced`]).
    Fraction(f64),
    /// An exact number of samples, 1 ≤ k ≤ N.
    Count(usize),
}

impl Budget {
    /// Checks the budget against a data set of `n` samples.
    pub fn validate(&self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::Empty("cannot select from an empty data set".into()));
        }
        match *self {
            Budget::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                Err(Error::InvalidBudget(format!("fraction must be in (0, 1], got {f}")))
            }
            Budget::Count(k) if k == 0 || k > n => {
                Err(Error::InvalidBudget(format!("count must be in 1..={n}, got {k}")))
            }
            _ => Ok(()),
        }
    }

    /// The fraction of `n` this budget stands for.
    pub fn fraction(&self, n: usize) -> f64 {
        match *self {
            Budget::Fraction(f) => f,
            Budget::Count(k) => k as f64 / n.max(1) as f64,
        }
    }

    /// The number of samples out of `n`: `round(f·n)` clamped to `[1, n]`, or the count.
    ///
    /// ```
    /// use quarc_coreset::Budget;
    /// assert_eq!(Budget::Fraction(0.1).count(1000), 100);
    /// assert_eq!(Budget::Fraction(0.01).count(20), 1); // at least one
    /// assert_eq!(Budget::Count(7).count(1000), 7);
    /// ```
    pub fn count(&self, n: usize) -> usize {
        match *self {
            Budget::Fraction(f) => ((f * n as f64).round() as usize).clamp(1, n.max(1)),
            Budget::Count(k) => k.min(n),
        }
    }
}

/// Which end of the score order to keep.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The highest scores (the convention of every built-in scorer).
    #[default]
    KeepHighest,
    /// The lowest scores.
    KeepLowest,
}

/// Randomness and position in the run for a selection: every random choice derives from
/// `(seed, epoch)`, so nothing needs checkpointing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelectContext {
    /// The run's seed.
    pub seed: u64,
    /// The 0-based epoch of the selection.
    pub epoch: usize,
}

/// A selected subset: dataset indices, sorted ascending and unique.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    /// Sorted, unique dataset indices.
    pub indices: Vec<usize>,
}

impl Selection {
    /// Number of selected samples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Chooses a subset from per-sample scores.
///
/// Implement [`Selector::choose`] (pick exactly `k` of some candidates); the provided
/// [`Selector::select`] applies it to the whole data set with a global budget, and
/// [`crate::ClassBalanced`] applies it within each class.
///
/// # Implementing your own
/// ```
/// use quarc_coreset::{Selector, SelectContext, Budget, Result};
/// /// Keeps the samples with the smallest dataset indices (a toy).
/// struct FirstK;
/// impl Selector for FirstK {
///     fn name(&self) -> String { "first_k".into() }
///     fn choose(&self, candidates: &[usize], _scores: &[f32], k: usize, _ctx: &SelectContext) -> Result<Vec<usize>> {
///         let mut c = candidates.to_vec();
///         c.sort_unstable();
///         Ok(c.into_iter().take(k).collect())
///     }
/// }
/// let s = FirstK.select(&[0.3, 0.1, 0.2, 0.9], &[0, 0, 1, 1], Budget::Count(2), &SelectContext::default())?;
/// assert_eq!(s.indices, vec![0, 1]);
/// # Ok::<(), quarc_coreset::Error>(())
/// ```
pub trait Selector: Send + Sync {
    /// Name for logs.
    fn name(&self) -> String;

    /// Chooses exactly `k` (≤ `candidates.len()`) of `candidates` (dataset indices);
    /// `scores[j]` is the score of `candidates[j]`. Order of the result is free.
    fn choose(&self, candidates: &[usize], scores: &[f32], k: usize, ctx: &SelectContext) -> Result<Vec<usize>>;

    /// Selects from the whole data set: `scores[i]` and `labels[i]` belong to sample `i`.
    fn select(&self, scores: &[f32], labels: &[u32], budget: Budget, ctx: &SelectContext) -> Result<Selection> {
        check_inputs(scores, labels)?;
        budget.validate(scores.len())?;
        let candidates: Vec<usize> = (0..scores.len()).collect();
        let mut indices = self.choose(&candidates, scores, budget.count(scores.len()), ctx)?;
        indices.sort_unstable();
        Ok(Selection { indices })
    }
}

/// Shared validation: same lengths, finite scores.
pub(crate) fn check_inputs(scores: &[f32], labels: &[u32]) -> Result<()> {
    if scores.is_empty() {
        return Err(Error::Empty("no scores to select from".into()));
    }
    if scores.len() != labels.len() {
        return Err(Error::ShapeMismatch {
            context: "scores and labels".into(),
            expected: vec![scores.len()],
            got: vec![labels.len()],
        });
    }
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(Error::NonFinite {
            what: format!("score of sample {i}"),
        });
    }
    Ok(())
}

/// Orders positions by score in `direction`, ties by ascending dataset index.
pub(crate) fn by_score(
    direction: Direction,
    candidates: &[usize],
    scores: &[f32],
) -> impl Fn(&usize, &usize) -> std::cmp::Ordering {
    move |&a, &b| {
        let ord = scores[a].total_cmp(&scores[b]);
        let ord = if direction == Direction::KeepHighest {
            ord.reverse()
        } else {
            ord
        };
        ord.then(candidates[a].cmp(&candidates[b]))
    }
}

pub(crate) fn check_k(k: usize, n: usize, scores: usize) -> Result<()> {
    if scores != n {
        return Err(Error::ShapeMismatch {
            context: "candidates and scores".into(),
            expected: vec![n],
            got: vec![scores],
        });
    }
    if k > n {
        return Err(Error::InvalidBudget(format!("cannot choose {k} of {n} candidates")));
    }
    Ok(())
}
