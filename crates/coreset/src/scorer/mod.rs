//! Scorers: the [`Scorer`] trait, one built-in per file, and the combinators that mix them.

mod annealed;
mod base;
mod beta;
mod columns;
mod disagreement;
mod el2n;
mod entropy;
mod error_vector;
mod forgetting;
mod given;
mod grad_norm;
mod loss;
mod margin;
mod moderate;
mod normalize;
mod random;
mod relative_entropy;
mod weighted;

pub use annealed::Annealed;
pub use base::{ModelSource, Scorer};
pub use beta::BetaSchedule;
pub use disagreement::Disagreement;
pub use el2n::El2n;
pub use entropy::Entropy;
pub use error_vector::ErrorVector;
pub use forgetting::Forgetting;
pub use given::GivenScores;
pub use grad_norm::GradNormLastLayer;
pub use loss::Loss;
pub use margin::Margin;
pub use moderate::Moderate;
pub use normalize::Normalization;
pub use random::RandomScore;
pub use relative_entropy::{Divergence, RelativeEntropy};
pub use weighted::WeightedSum;
