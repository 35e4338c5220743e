//! DS: the disagreement score of ACS.

use candle_core::{DType, Tensor};
use quarc_base::{Progress, functional::probability_distance};

use crate::{Needs, Result, ScoreInput, Scorer};

/// Disagreement score (ACS): `‖softmax(z_Q) − softmax(z_F)‖₂` between the model being trained
/// and the full-precision reference, in `[0, √2]`. Reads no labels, so mislabelled samples do
/// not inflate it.
///
/// # Shapes
/// Student and reference logits `(B, K)` → `(B,)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Disagreement;

impl Scorer for Disagreement {
    fn name(&self) -> String {
        "ds".into()
    }
    fn needs(&self) -> Needs {
        Needs {
            reference: true,
            ..Needs::default()
        }
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        let reference = input.reference("ds")?;
        Ok(probability_distance(&input.student.logits, &reference.logits)?.to_dtype(DType::F32)?)
    }
}
