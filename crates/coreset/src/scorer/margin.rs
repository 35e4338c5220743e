//! Margin uncertainty.

use candle_core::{D, DType, Tensor};
use quarc_base::{Progress, functional::softmax};

use crate::{Error, ModelSource, Needs, Result, ScoreInput, Scorer};

/// `1 − (p₍₁₎ − p₍₂₎)`: one minus the gap between the two largest probabilities, so small
/// margins (uncertain samples) score high. Needs at least two classes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Margin {
    /// Which model's logits (default: the reference).
    pub source: ModelSource,
}

impl Scorer for Margin {
    fn name(&self) -> String {
        "margin".into()
    }
    fn needs(&self) -> Needs {
        self.source.needs()
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        let z = &self.source.pick(input, "margin")?.logits;
        if z.dim(D::Minus1)? < 2 {
            return Err(Error::InvalidConfig("margin needs at least two classes".into()));
        }
        let p = softmax(z, 1.0)?.to_dtype(DType::F32)?;
        let top1 = p.max_keepdim(D::Minus1)?;
        // Remove the first maximum only: subtract 2 at its position, then take the max again.
        let arg = p.argmax_keepdim(D::Minus1)?;
        let classes = Tensor::arange(0u32, p.dim(1)? as u32, p.device())?.unsqueeze(0)?;
        let is_top = classes.broadcast_eq(&arg)?.to_dtype(DType::F32)?;
        let top2 = (p - (is_top * 2.0)?)?.max_keepdim(D::Minus1)?;
        Ok((1.0 - (top1 - top2.maximum(0f32)?)?)?.squeeze(1)?)
    }
}
