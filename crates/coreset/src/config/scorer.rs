//! Serializable scorer configuration.

use serde::{Deserialize, Serialize};

use crate::{
    Annealed, BetaSchedule, Disagreement, Divergence, El2n, Entropy, Error, ErrorVector, Forgetting, GradNormLastLayer,
    Loss, Margin, ModelSource, Moderate, Normalization, RandomScore, RelativeEntropy, Result, Scorer, WeightedSum,
};

/// A scorer, as data: every built-in scorer and combinator. Tagged by `type`; unknown fields are
/// errors.
///
/// ```
/// use quarc_coreset::ScorerConfig;
/// let c: ScorerConfig = serde_json::from_str(r#"{"type": "res", "divergence": "quantized_to_reference", "temperature": 1.0}"#)?;
/// assert_eq!(c, ScorerConfig::Res { divergence: quarc_coreset::Divergence::QuantizedToReference, temperature: 1.0 });
/// assert!(serde_json::from_str::<ScorerConfig>(r#"{"type": "res", "temprature": 1.0}"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScorerConfig {
    /// Uniform random scores; `resample`: a new draw at every selection epoch.
    Random {
        /// Draw anew at every selection.
        resample: bool,
    },
    /// Cross-entropy loss of `source`.
    Loss {
        /// Which model's logits.
        source: ModelSource,
    },
    /// EL2N, `‖p − y‖₂` of `source`.
    El2n {
        /// Which model's logits.
        source: ModelSource,
    },
    /// Predictive entropy of `source`.
    Entropy {
        /// Which model's logits.
        source: ModelSource,
    },
    /// Smallest margin between the top two classes of `source`.
    Margin {
        /// Which model's logits.
        source: ModelSource,
    },
    /// Forgetting events seen during training.
    Forgetting {},
    /// Error vector score of the student (ACS's EVS).
    Evs {},
    /// Disagreement score between student and reference (ACS's DS).
    Ds {},
    /// QuaRC's relative entropy score.
    Res {
        /// Direction or symmetric form.
        divergence: Divergence,
        /// Softmax temperature (> 0).
        temperature: f64,
    },
    /// ACS: `β(t)·EVS + (1 − β(t))·DS`.
    Acs {
        /// β(t).
        beta: BetaSchedule,
        /// Rescaling of the two columns before mixing.
        normalization: Normalization,
    },
    /// `Σ wᵢ·scoreᵢ` of other scorers (QuaRC's score is ACS + λ·RES).
    WeightedSum {
        /// The weighted parts.
        parts: Vec<WeightedPart>,
        /// Rescaling of each part before summing.
        normalization: Normalization,
    },
    /// Last-layer gradient norm from the feature named `feature` of `source`.
    GradNormLastLayer {
        /// The classifier's input feature.
        feature: String,
        /// Which model.
        source: ModelSource,
    },
    /// Moderate coreset: distance to the class median of the feature `feature`.
    Moderate {
        /// The feature.
        feature: String,
        /// Which model.
        source: ModelSource,
    },
}

/// One term of [`ScorerConfig::WeightedSum`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedPart {
    /// Its weight (finite).
    pub weight: f64,
    /// The scorer.
    pub scorer: ScorerConfig,
}

fn invalid(m: String) -> Error {
    Error::InvalidConfig(m)
}

impl ScorerConfig {
    /// Checks every value (recursively); names the bad field.
    pub fn validate(&self) -> Result<()> {
        match self {
            ScorerConfig::Res { temperature, .. } if !(temperature.is_finite() && *temperature > 0.0) => Err(invalid(
                format!("scorer res: temperature must be > 0, got {temperature}"),
            )),
            ScorerConfig::WeightedSum { parts, .. } => {
                if parts.is_empty() {
                    return Err(invalid("scorer weighted_sum: parts is empty".into()));
                }
                for (i, p) in parts.iter().enumerate() {
                    if !p.weight.is_finite() {
                        return Err(invalid(format!(
                            "scorer weighted_sum: parts[{i}].weight is {}",
                            p.weight
                        )));
                    }
                    p.scorer.validate()?;
                }
                Ok(())
            }
            ScorerConfig::GradNormLastLayer { feature, .. } | ScorerConfig::Moderate { feature, .. }
                if feature.is_empty() =>
            {
                Err(invalid("scorer: feature must name a recorded feature".into()))
            }
            _ => Ok(()),
        }
    }

    /// The scorer; `num_samples` sizes per-sample state (forgetting), `seed` seeds random scores.
    pub fn build(&self, num_samples: usize, seed: u64) -> Result<Box<dyn Scorer>> {
        self.validate()?;
        Ok(match self {
            ScorerConfig::Random { resample } => Box::new(RandomScore {
                seed,
                resample_each_selection: *resample,
            }),
            ScorerConfig::Loss { source } => Box::new(Loss { source: *source }),
            ScorerConfig::El2n { source } => Box::new(El2n { source: *source }),
            ScorerConfig::Entropy { source } => Box::new(Entropy { source: *source }),
            ScorerConfig::Margin { source } => Box::new(Margin { source: *source }),
            ScorerConfig::Forgetting {} => Box::new(Forgetting::new(num_samples)?),
            ScorerConfig::Evs {} => Box::new(ErrorVector),
            ScorerConfig::Ds {} => Box::new(Disagreement),
            ScorerConfig::Res {
                divergence,
                temperature,
            } => Box::new(RelativeEntropy::new(*divergence, *temperature)?),
            ScorerConfig::Acs { beta, normalization } => Box::new(Annealed::acs_with(*beta, *normalization)),
            ScorerConfig::WeightedSum { parts, normalization } => {
                let built = parts
                    .iter()
                    .map(|p| Ok((p.weight, p.scorer.build(num_samples, seed)?)))
                    .collect::<Result<Vec<_>>>()?;
                Box::new(WeightedSum::new(built, *normalization)?)
            }
            ScorerConfig::GradNormLastLayer { feature, source } => Box::new(GradNormLastLayer {
                source: *source,
                feature: feature.clone(),
            }),
            ScorerConfig::Moderate { feature, source } => {
                let mut m = Moderate::new(feature.clone());
                m.source = *source;
                Box::new(m)
            }
        })
    }
}
