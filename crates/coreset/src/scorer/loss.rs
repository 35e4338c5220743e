//! Per-sample cross-entropy.

use candle_core::{D, DType, Tensor};
use quarc_base::{Progress, functional::log_softmax};

use crate::{ModelSource, Needs, Result, ScoreInput, Scorer};

/// Per-sample cross-entropy `−log softmax(z)_y` of the chosen model (hard samples first).
#[derive(Clone, Copy, Debug, Default)]
pub struct Loss {
    /// Which model's logits.
    pub source: ModelSource,
}

impl Scorer for Loss {
    fn name(&self) -> String {
        "loss".into()
    }
    fn needs(&self) -> Needs {
        Needs {
            labels: true,
            ..self.source.needs()
        }
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        let z = &self.source.pick(input, "loss")?.logits;
        let lp = log_softmax(z, 1.0)?;
        let y = input.labels.to_dtype(DType::U32)?.unsqueeze(1)?;
        Ok(lp.gather(&y, D::Minus1)?.squeeze(1)?.neg()?.to_dtype(DType::F32)?)
    }
}
