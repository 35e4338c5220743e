//! RES: the relative entropy score of QuaRC.

use candle_core::{DType, Tensor};
use quarc_base::{
    Progress,
    functional::{kl_per_sample, log_softmax},
};
use serde::{Deserialize, Serialize};

use crate::{Error, Needs, Result, ScoreInput, Scorer};

/// Which divergence between the quantized (Q) and full-precision (F) predictions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Divergence {
    /// `KL(p_Q ‖ p_F)`, the direction QuaRC reports (docs/methods.md, "Scores").
    #[default]
    QuantizedToReference,
    /// `KL(p_F ‖ p_Q)`, the distillation direction.
    ReferenceToQuantized,
    /// `KL(p_Q ‖ p_F) + KL(p_F ‖ p_Q)`.
    Symmetric,
    /// Jensen–Shannon: `½ KL(p_Q ‖ m) + ½ KL(p_F ‖ m)`, `m = ½(p_Q + p_F)`.
    JensenShannon,
}

/// Relative entropy score (QuaRC, Tong et al. 2025): a per-sample divergence between the
/// quantized model's and the reference's softmax outputs at temperature `T`. Unbounded above
/// (except JS, ≤ ln 2). Reads no labels.
///
/// # Shapes
/// Student and reference logits `(B, K)` → `(B,)`.
#[derive(Clone, Copy, Debug)]
pub struct RelativeEntropy {
    /// The divergence.
    pub divergence: Divergence,
    /// Softmax temperature (default 1).
    pub temperature: f64,
}

impl Default for RelativeEntropy {
    fn default() -> Self {
        Self {
            divergence: Divergence::default(),
            temperature: 1.0,
        }
    }
}

impl RelativeEntropy {
    /// RES with the given divergence at temperature `temperature` (> 0).
    pub fn new(divergence: Divergence, temperature: f64) -> Result<Self> {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "RES temperature must be > 0, got {temperature}"
            )));
        }
        Ok(Self {
            divergence,
            temperature,
        })
    }
}

fn js(q: &Tensor, f: &Tensor, t: f64) -> Result<Tensor> {
    let (lq, lf) = (log_softmax(q, t)?, log_softmax(f, t)?);
    let (pq, pf) = (lq.exp()?, lf.exp()?);
    let lm = ((&pq + &pf)? * 0.5)?.log()?;
    let a = (&pq * (lq - &lm)?)?.sum(1)?;
    let b = (&pf * (lf - &lm)?)?.sum(1)?;
    Ok(((a + b)? * 0.5)?)
}

impl Scorer for RelativeEntropy {
    fn name(&self) -> String {
        "res".into()
    }
    fn needs(&self) -> Needs {
        Needs {
            reference: true,
            ..Needs::default()
        }
    }
    fn score(&mut self, input: &ScoreInput<'_>, _p: &Progress) -> Result<Tensor> {
        let q = &input.student.logits;
        let f = &input.reference("res")?.logits;
        let t = self.temperature;
        let s = match self.divergence {
            Divergence::QuantizedToReference => kl_per_sample(q, f, t)?,
            Divergence::ReferenceToQuantized => kl_per_sample(f, q, t)?,
            Divergence::Symmetric => (kl_per_sample(q, f, t)? + kl_per_sample(f, q, t)?)?,
            Divergence::JensenShannon => js(q, f, t)?,
        };
        // KL is ≥ 0 in exact arithmetic; clamp the f32 round-off below zero.
        Ok(s.to_dtype(DType::F32)?.maximum(0f32)?)
    }
}
