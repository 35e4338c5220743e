//! A weighted sum of scorers, each normalised over the whole pass.

use candle_core::Tensor;
use quarc_base::Progress;

use super::columns::{as_columns, nest, split, unnest};
use crate::{Error, Needs, Normalization, Result, ScoreInput, Scorer, StateRecord};

/// `Σ_j w_j · norm(s_j)`: mixes any scorers with fixed weights after the pass.
///
/// [`WeightedSum::quarc`] builds QuaRC's selection score, `ACS + λ·RES` (docs/methods.md, "Scores").
pub struct WeightedSum {
    parts: Vec<(f64, Box<dyn Scorer>)>,
    normalization: Normalization,
}

impl WeightedSum {
    /// A weighted sum; weights must be finite, at least one part.
    pub fn new(parts: Vec<(f64, Box<dyn Scorer>)>, normalization: Normalization) -> Result<Self> {
        if parts.is_empty() {
            return Err(Error::InvalidConfig("a weighted sum needs at least one scorer".into()));
        }
        if let Some((w, _)) = parts.iter().find(|(w, _)| !w.is_finite()) {
            return Err(Error::InvalidConfig(format!("weight {w} is not finite")));
        }
        Ok(Self { parts, normalization })
    }

    /// QuaRC's score: `β(t)·EVS + (1 − β(t))·DS + λ·RES` with the paper's cosine β, RES as
    /// KL(p_Q ‖ p_F), no normalisation (as reported; see [`Normalization`] for options).
    pub fn quarc(lambda: f64) -> Result<Self> {
        Self::new(
            vec![
                (1.0, Box::new(crate::Annealed::acs())),
                (lambda, Box::new(crate::RelativeEntropy::default())),
            ],
            Normalization::None,
        )
    }

    fn sizes(&self) -> Vec<usize> {
        self.parts.iter().map(|(_, s)| s.columns().len()).collect()
    }
}

impl Scorer for WeightedSum {
    fn name(&self) -> String {
        let inner: Vec<String> = self.parts.iter().map(|(w, s)| format!("{w}·{}", s.name())).collect();
        format!("sum({})", inner.join(" + "))
    }
    fn needs(&self) -> Needs {
        self.parts.iter().fold(Needs::default(), |n, (_, s)| n.union(s.needs()))
    }
    fn columns(&self) -> Vec<String> {
        self.parts.iter().flat_map(|(_, s)| s.columns()).collect()
    }
    fn score(&mut self, input: &ScoreInput<'_>, p: &Progress) -> Result<Tensor> {
        let cols = self
            .parts
            .iter_mut()
            .map(|(_, s)| as_columns(s.score(input, p)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&cols, 1)?)
    }
    fn combine(&self, columns: &[&[f32]], labels: &[u32], p: &Progress) -> Result<Vec<f32>> {
        let groups = split(columns, &self.sizes())?;
        let n = columns.first().map_or(0, |c| c.len());
        let mut out = vec![0f32; n];
        for ((w, s), cols) in self.parts.iter().zip(groups) {
            let v = self.normalization.apply(&s.combine(cols, labels, p)?);
            for (o, x) in out.iter_mut().zip(v) {
                *o += (*w as f32) * x;
            }
        }
        Ok(out)
    }
    fn observe(&mut self, input: &ScoreInput<'_>, p: &Progress) -> Result<()> {
        self.parts.iter_mut().try_for_each(|(_, s)| s.observe(input, p))
    }
    fn mixing_weights(&self, p: &Progress) -> Vec<(String, f64)> {
        self.parts.iter().flat_map(|(_, s)| s.mixing_weights(p)).collect()
    }
    fn state(&self) -> StateRecord {
        let mut r = StateRecord::default();
        for (i, (_, s)) in self.parts.iter().enumerate() {
            nest(i, s.state(), &mut r);
        }
        r
    }
    fn load_state(&mut self, state: &StateRecord) -> Result<()> {
        for (i, (_, s)) in self.parts.iter_mut().enumerate() {
            s.load_state(&unnest(i, state))?;
        }
        Ok(())
    }
}
