//! EL2N (Paul et al. 2021).

use candle_core::{DType, Tensor};
use quarc_base::{Progress, functional::error_vector_norm};

use crate::{ModelSource, Needs, Result, ScoreInput, Scorer};

/// EL2N: `‖softmax(z) − onehot(y)‖₂` of the full-precision reference by default (the same
/// formula as EVS, on a proxy model instead of the model being trained).
#[derive(Clone, Copy, Debug, Default)]
pub struct El2n {
    /// Which model's logits (default: the reference).
    pub source: ModelSource,
}

impl Scorer for El2n {
    fn name(&self) -> String {
        "el2n".into()
    }
    fn needs(&self) -> Needs {
        Needs {
            labels: true,
            ..self.source.needs()
        }
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        let z = &self.source.pick(input, "el2n")?.logits;
        Ok(error_vector_norm(z, input.labels)?.to_dtype(DType::F32)?)
    }
}
