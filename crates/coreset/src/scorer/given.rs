//! Scores computed before training: by a proxy run, offline, or by another tool.

use candle_core::Tensor;
use quarc_base::Progress;

use crate::{Error, Needs, Result, ScoreInput, Scorer};

/// A fixed score per dataset index, given up front (for example EL2N averaged over early
/// full-precision proxy runs, or forgetting events counted over a full-data proxy run). The
/// selection needs no forward pass ([`Needs::index_only`]).
///
/// ```
/// use quarc_coreset::{Budget, CoresetConfig, GivenScores, Progress};
/// let scores = GivenScores::new("proxy_el2n", vec![0.1, 0.9, 0.5, 0.7])?;
/// let labels = vec![0, 0, 1, 1];
/// let mut c = CoresetConfig::preset("el2n", 0.5, 5)?.build_with_scorer(Box::new(scores), labels, 2, 0)?;
/// let picked = c.select_without_pass(Progress::new(0, 1))?.indices.clone();
/// assert_eq!(picked, vec![1, 3]); // the highest score of each class
/// assert!(GivenScores::new("bad", vec![f32::NAN]).is_err());
/// # Ok::<(), quarc_coreset::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct GivenScores {
    name: String,
    scores: Vec<f32>,
}

impl GivenScores {
    /// `scores[i]` is dataset index `i`'s score. Errors when empty or not finite.
    pub fn new(name: impl Into<String>, scores: Vec<f32>) -> Result<Self> {
        let name = name.into();
        if scores.is_empty() {
            return Err(Error::Empty(format!("given scores `{name}`")));
        }
        if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
            return Err(Error::NonFinite {
                what: format!("given scores `{name}`, sample {i}"),
            });
        }
        Ok(Self { name, scores })
    }

    /// How many samples the scores cover.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// Always false: [`GivenScores::new`] refuses empty scores.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    fn lookup(&self, indices: &[usize]) -> Result<Vec<f32>> {
        indices
            .iter()
            .map(|&i| {
                self.scores.get(i).copied().ok_or(Error::IndexOutOfRange {
                    index: i,
                    num_samples: self.scores.len(),
                })
            })
            .collect()
    }
}

impl Scorer for GivenScores {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn needs(&self) -> Needs {
        Needs {
            index_only: true,
            ..Needs::default()
        }
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        let v = self.lookup(input.indices)?;
        Ok(Tensor::from_vec(v, input.indices.len(), input.student.logits.device())?)
    }
    fn score_indices(&mut self, indices: &[usize], _p: &Progress) -> Option<Vec<f32>> {
        self.lookup(indices).ok()
    }
}
