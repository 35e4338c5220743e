//! ACS as a combinator: two scores mixed by an annealed weight β(t).

use candle_core::Tensor;
use quarc_base::Progress;

use super::columns::{as_columns, nest, split, unnest};
use crate::{BetaSchedule, Disagreement, ErrorVector, Needs, Normalization, Result, ScoreInput, Scorer, StateRecord};

/// `β(t)·norm(s₁) + (1 − β(t))·norm(s₂)`, β from a [`BetaSchedule`].
///
/// [`Annealed::acs`] is ACS (Huang et al., TMLR 2024): EVS first, DS second, β(t) = cos(πt/2E),
/// no normalisation (both lie in [0, √2]).
pub struct Annealed {
    first: Box<dyn Scorer>,
    second: Box<dyn Scorer>,
    schedule: BetaSchedule,
    normalization: Normalization,
}

impl Annealed {
    /// Mixes `first` and `second` with weight β(t) on `first`.
    pub fn new(
        first: Box<dyn Scorer>,
        second: Box<dyn Scorer>,
        schedule: BetaSchedule,
        normalization: Normalization,
    ) -> Self {
        Self {
            first,
            second,
            schedule,
            normalization,
        }
    }

    /// ACS with the paper's schedule.
    pub fn acs() -> Self {
        Self::new(
            Box::new(ErrorVector),
            Box::new(Disagreement),
            BetaSchedule::PaperCosine,
            Normalization::None,
        )
    }

    /// ACS with another schedule (e.g. [`BetaSchedule::CodeCosine`] to reproduce the official runs).
    pub fn acs_with(schedule: BetaSchedule, normalization: Normalization) -> Self {
        Self::new(Box::new(ErrorVector), Box::new(Disagreement), schedule, normalization)
    }

    /// The schedule.
    pub fn schedule(&self) -> BetaSchedule {
        self.schedule
    }
}

impl Scorer for Annealed {
    fn name(&self) -> String {
        format!("annealed({}, {})", self.first.name(), self.second.name())
    }
    fn needs(&self) -> Needs {
        self.first.needs().union(self.second.needs())
    }
    fn columns(&self) -> Vec<String> {
        let mut c = self.first.columns();
        c.extend(self.second.columns());
        c
    }
    fn score(&mut self, input: &ScoreInput<'_>, p: &Progress) -> Result<Tensor> {
        let a = as_columns(self.first.score(input, p)?)?;
        let b = as_columns(self.second.score(input, p)?)?;
        Ok(Tensor::cat(&[a, b], 1)?)
    }
    fn combine(&self, columns: &[&[f32]], labels: &[u32], p: &Progress) -> Result<Vec<f32>> {
        let groups = split(columns, &[self.first.columns().len(), self.second.columns().len()])?;
        let a = self.normalization.apply(&self.first.combine(groups[0], labels, p)?);
        let b = self.normalization.apply(&self.second.combine(groups[1], labels, p)?);
        let beta = self.schedule.beta(p) as f32;
        Ok(a.iter().zip(&b).map(|(x, y)| beta * x + (1.0 - beta) * y).collect())
    }
    fn observe(&mut self, input: &ScoreInput<'_>, p: &Progress) -> Result<()> {
        self.first.observe(input, p)?;
        self.second.observe(input, p)
    }
    fn mixing_weights(&self, p: &Progress) -> Vec<(String, f64)> {
        let mut w = vec![("beta".to_string(), self.schedule.beta(p))];
        w.extend(self.first.mixing_weights(p));
        w.extend(self.second.mixing_weights(p));
        w
    }
    fn state(&self) -> StateRecord {
        let mut r = StateRecord::default();
        nest(0, self.first.state(), &mut r);
        nest(1, self.second.state(), &mut r);
        r
    }
    fn load_state(&mut self, state: &StateRecord) -> Result<()> {
        self.first.load_state(&unnest(0, state))?;
        self.second.load_state(&unnest(1, state))
    }
}
