//! KL divergence between softmax-normalised features: CLC's divergence.

use candle_core::Tensor;
use quarc_base::functional::kl_per_sample;
use serde::{Deserialize, Serialize};

use super::base::{AlignmentLoss, check_pair};
use crate::{Error, Result};

/// Over which axis a feature map is turned into a distribution (docs/methods.md, "Cascaded layer correction", readings i–iii).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SoftmaxAxis {
    /// (i) Global-average-pool `(B, C, H, W)` to `(B, C)`, softmax over channels (what the
    /// public re-implementation codes; the default).
    #[default]
    ChannelAfterGap,
    /// (ii) Softmax over the flattened `C·H·W` sample.
    Flattened,
    /// (iii) One spatial softmax per channel (channel-wise distillation), KL summed over channels.
    SpatialPerChannel,
}

/// Which distribution the expectation is taken under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlDirection {
    /// `KL(p_Q ‖ p_F)`: student first, as QuaRC reports.
    #[default]
    StudentToReference,
    /// `KL(p_F ‖ p_Q)`: the usual distillation direction.
    ReferenceToStudent,
}

/// `KL` between softmax-normalised student and reference features at temperature `T`.
///
/// # Shapes
/// `(B, C, H, W)` (or `(B, D)` for every axis but `SpatialPerChannel`) → `(B,)`.
#[derive(Clone, Copy, Debug)]
pub struct FeatureKl {
    /// Normalisation axis.
    pub axis: SoftmaxAxis,
    /// Temperature (> 0).
    pub temperature: f64,
    /// Direction.
    pub direction: KlDirection,
}

impl Default for FeatureKl {
    fn default() -> Self {
        Self {
            axis: SoftmaxAxis::default(),
            temperature: 1.0,
            direction: KlDirection::default(),
        }
    }
}

impl FeatureKl {
    /// A validated feature KL.
    pub fn new(axis: SoftmaxAxis, temperature: f64, direction: KlDirection) -> Result<Self> {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "feature KL temperature must be > 0, got {temperature}"
            )));
        }
        Ok(Self {
            axis,
            temperature,
            direction,
        })
    }

    /// The `(rows, classes)` logits the softmax runs over, and the number of rows per sample.
    fn logits(&self, t: &Tensor) -> Result<(Tensor, usize)> {
        let b = t.dim(0)?;
        Ok(match (self.axis, t.rank()) {
            (SoftmaxAxis::ChannelAfterGap, 4) => (t.mean((2, 3))?, 1),
            (SoftmaxAxis::ChannelAfterGap | SoftmaxAxis::Flattened, 2) => (t.clone(), 1),
            (SoftmaxAxis::Flattened, _) => (t.flatten_from(1)?, 1),
            (SoftmaxAxis::SpatialPerChannel, 4) => {
                let c = t.dim(1)?;
                (t.flatten_from(2)?.reshape((b * c, ()))?, c)
            }
            (axis, rank) => {
                return Err(Error::InvalidConfig(format!(
                    "feature KL over {axis:?} needs a rank-4 (or rank-2) feature, got rank {rank}"
                )));
            }
        })
    }
}

impl AlignmentLoss for FeatureKl {
    fn name(&self) -> String {
        "feature_kl".into()
    }
    fn per_sample(&self, s: &Tensor, r: &Tensor) -> Result<Tensor> {
        check_pair(s, r, "feature_kl")?;
        let b = s.dim(0)?;
        let (ls, rows) = self.logits(s)?;
        let (lr, _) = self.logits(r)?;
        let kl = match self.direction {
            KlDirection::StudentToReference => kl_per_sample(&ls, &lr, self.temperature)?,
            KlDirection::ReferenceToStudent => kl_per_sample(&lr, &ls, self.temperature)?,
        };
        Ok(if rows == 1 { kl } else { kl.reshape((b, rows))?.sum(1)? })
    }
}
