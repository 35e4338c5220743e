//! Alignment losses: the [`AlignmentLoss`] trait and one built-in per file.

mod base;
mod cosine;
mod distillation;
mod feature_kl;
mod mse;

pub use base::AlignmentLoss;
pub use cosine::CosineDistance;
pub use distillation::{Distillation, KdForm};
pub use feature_kl::{FeatureKl, KlDirection, SoftmaxAxis};
pub use mse::{Mse, NormalizedMse};

pub(crate) use base::check_pair;
