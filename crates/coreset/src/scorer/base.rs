//! The `Scorer` trait.

use candle_core::Tensor;
use quarc_base::Progress;

use crate::{Error, Needs, Result, ScoreInput, StateRecord};

/// Scores samples by importance for the coreset: higher = more worth keeping.
///
/// A scoring pass calls [`Scorer::score`] on every batch of the data set (any order, keyed by
/// dataset index), the raw columns are gathered in a [`crate::ScoreTable`], and
/// [`Scorer::combine`] turns them into one score per sample. Simple scorers return `(B,)` and
/// keep the provided `columns`/`combine`; combinators return several columns and mix them after
/// the pass, which is where dataset-wide normalisation happens.
///
/// # Implementing your own
/// ```
/// use candle_core::Tensor;
/// use quarc_coreset::{Needs, Scorer, ScoreInput, Result};
/// use quarc_base::Progress;
///
/// /// Prefers samples whose top logit is small.
/// struct LowConfidence;
/// impl Scorer for LowConfidence {
///     fn name(&self) -> String { "low_confidence".into() }
///     fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
///         Ok(input.student.logits.max(1)?.neg()?)
///     }
/// }
/// assert_eq!(LowConfidence.needs(), Needs::default());
/// assert_eq!(LowConfidence.columns(), vec!["low_confidence".to_string()]);
/// ```
pub trait Scorer: Send {
    /// Name used in logs and column names.
    fn name(&self) -> String;

    /// What the training loop must provide.
    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// Names of the raw columns [`Scorer::score`] returns (one by default).
    fn columns(&self) -> Vec<String> {
        vec![self.name()]
    }

    /// Raw scores of one batch: `(B,)` for one column, `(B, C)` for `C` columns; f32.
    fn score(&mut self, input: &ScoreInput<'_>, progress: &Progress) -> Result<Tensor>;

    /// The final per-sample scores from the full pass's raw columns (`columns[c][i]` is column
    /// `c` of dataset sample `i`). The default returns the single column.
    fn combine(&self, columns: &[&[f32]], _labels: &[u32], _progress: &Progress) -> Result<Vec<f32>> {
        match columns {
            [single] => Ok(single.to_vec()),
            _ => Err(Error::InvalidConfig(format!(
                "scorer `{}` produced {} columns but does not override `combine`",
                self.name(),
                columns.len()
            ))),
        }
    }

    /// The scores of `indices` without any model output, for scorers whose
    /// [`Scorer::needs`] says `index_only` (one column). `None` (the default): the scorer
    /// reads model outputs.
    fn score_indices(&mut self, _indices: &[usize], _progress: &Progress) -> Option<Vec<f32>> {
        None
    }

    /// Called on every training batch when [`Needs::observe_training`] is set.
    fn observe(&mut self, _input: &ScoreInput<'_>, _progress: &Progress) -> Result<()> {
        Ok(())
    }

    /// Mixing weights in force at `progress` (e.g. ACS's β(t)), for logs.
    fn mixing_weights(&self, _progress: &Progress) -> Vec<(String, f64)> {
        Vec::new()
    }

    /// State to checkpoint (stateful scorers).
    fn state(&self) -> StateRecord {
        StateRecord::default()
    }

    /// Restores [`Scorer::state`].
    fn load_state(&mut self, _state: &StateRecord) -> Result<()> {
        Ok(())
    }
}

/// Where a baseline scorer reads its logits and features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSource {
    /// The model being trained (the quantized student).
    Student,
    /// The frozen full-precision reference (the usual proxy model for baselines).
    #[default]
    Reference,
}

impl ModelSource {
    /// The chosen model's outputs.
    pub fn pick<'a>(&self, input: &ScoreInput<'a>, scorer: &str) -> Result<&'a quarc_base::ModelOutput> {
        match self {
            ModelSource::Student => Ok(input.student),
            ModelSource::Reference => input.reference(scorer),
        }
    }

    /// Needs implied by reading this source.
    pub fn needs(&self) -> Needs {
        Needs {
            reference: *self == ModelSource::Reference,
            ..Needs::default()
        }
    }
}
