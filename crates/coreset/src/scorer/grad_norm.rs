//! Closed-form last-layer gradient norm (GraNd restricted to the classifier).

use candle_core::{D, DType, Tensor};
use quarc_base::{
    Progress,
    functional::{one_hot, softmax},
};

use crate::{Error, ModelSource, Needs, Result, ScoreInput, Scorer};

/// `‖∂CE/∂(W, b)‖` of the last linear layer `z = W h + b`, in closed form with no per-sample
/// backward: the gradient is `(p − y) hᵀ` for W and `p − y` for b, so its norm is
/// `‖p − y‖ · √(‖h‖² + 1)`. `feature` names the classifier's input in [`quarc_base::FeatureMap`].
#[derive(Clone, Debug)]
pub struct GradNormLastLayer {
    /// Which model.
    pub source: ModelSource,
    /// Name of the penultimate feature (the classifier input), `(B, D)` or `(B, C, H, W)`
    /// (flattened).
    pub feature: String,
}

impl GradNormLastLayer {
    /// Reads the classifier input recorded under `feature`.
    pub fn new(feature: impl Into<String>) -> Self {
        Self {
            source: ModelSource::default(),
            feature: feature.into(),
        }
    }
}

impl Scorer for GradNormLastLayer {
    fn name(&self) -> String {
        "grad_norm".into()
    }
    fn needs(&self) -> Needs {
        Needs {
            labels: true,
            features: true,
            ..self.source.needs()
        }
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        let out = self.source.pick(input, "grad_norm")?;
        let h = out.features.get(&self.feature).ok_or_else(|| Error::MissingInput {
            scorer: "grad_norm".into(),
            what: format!("feature `{}`", self.feature),
        })?;
        let (b, k) = out.logits.dims2()?;
        let y = one_hot(input.labels, b, k, DType::F32)?;
        let err = (softmax(&out.logits, 1.0)?.to_dtype(DType::F32)? - y)?
            .sqr()?
            .sum(D::Minus1)?;
        let h2 = h.to_dtype(DType::F32)?.flatten_from(1)?.sqr()?.sum(D::Minus1)?;
        Ok((err * (h2 + 1.0)?)?.sqrt()?)
    }
}
