//! Per-class budgets around any selector.

use rayon::prelude::*;

use super::base::check_inputs;
use crate::{Budget, Result, SelectContext, Selection, Selector};

/// Applies the budget within each class: class `c` with `n_c` samples gets `round(f·n_c)`,
/// at least one for every non-empty class, at most `n_c` (ACS's `--balance`). The inner
/// selector chooses within the class; classes run in parallel.
///
/// Note: `Σ_c round(f·n_c)` can differ from `round(f·N)` by a few samples.
pub struct ClassBalanced {
    inner: Box<dyn Selector>,
}

impl ClassBalanced {
    /// Balances `inner` across classes.
    pub fn new(inner: impl Selector + 'static) -> Self {
        Self { inner: Box::new(inner) }
    }

    /// Balances a boxed selector.
    pub fn boxed(inner: Box<dyn Selector>) -> Self {
        Self { inner }
    }

    /// The per-class count for a class of `n_c` samples under fraction `f`.
    pub fn class_count(f: f64, n_c: usize) -> usize {
        if n_c == 0 {
            0
        } else {
            ((f * n_c as f64).round() as usize).clamp(1, n_c)
        }
    }
}

impl Selector for ClassBalanced {
    fn name(&self) -> String {
        format!("class_balanced({})", self.inner.name())
    }
    fn choose(&self, candidates: &[usize], scores: &[f32], k: usize, ctx: &SelectContext) -> Result<Vec<usize>> {
        // Without labels there is nothing to balance: defer to the inner selector.
        self.inner.choose(candidates, scores, k, ctx)
    }
    fn select(&self, scores: &[f32], labels: &[u32], budget: Budget, ctx: &SelectContext) -> Result<Selection> {
        check_inputs(scores, labels)?;
        budget.validate(scores.len())?;
        let f = budget.fraction(scores.len());
        // Grouped by the labels that occur (in label order): memory follows the data, never the
        // largest label value.
        let mut by_label: std::collections::BTreeMap<u32, Vec<usize>> = std::collections::BTreeMap::new();
        for (i, &y) in labels.iter().enumerate() {
            by_label.entry(y).or_default().push(i);
        }
        let members: Vec<Vec<usize>> = by_label.into_values().collect();
        let chosen = members
            .par_iter()
            .map(|m| {
                let s: Vec<f32> = m.iter().map(|&i| scores[i]).collect();
                self.inner.choose(m, &s, Self::class_count(f, m.len()), ctx)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut indices: Vec<usize> = chosen.into_iter().flatten().collect();
        indices.par_sort_unstable();
        Ok(Selection { indices })
    }
}
