//! EVS: the error vector score of ACS.

use candle_core::{DType, Tensor};
use quarc_base::{Progress, functional::error_vector_norm};

use crate::{Needs, Result, ScoreInput, Scorer};

/// Error vector score (ACS, Huang et al. 2024): `‖softmax(z_Q) − onehot(y)‖₂` of the model being
/// trained, in `[0, √2]`. Needs labels.
///
/// # Shapes
/// Student logits `(B, K)`, labels `(B,)` → `(B,)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorVector;

impl Scorer for ErrorVector {
    fn name(&self) -> String {
        "evs".into()
    }
    fn needs(&self) -> Needs {
        Needs {
            labels: true,
            ..Needs::default()
        }
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        Ok(error_vector_norm(&input.student.logits, input.labels)?.to_dtype(DType::F32)?)
    }
}
