//! The crate's error type.

/// Everything that can go wrong in `quarc-correction`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A feature named in a layer pair is not in the model output.
    #[error("layer `{layer}`: the {side} output has no feature `{name}`")]
    MissingFeature {
        /// The pair's name (student side).
        layer: String,
        /// `"student"` or `"reference"`.
        side: &'static str,
        /// The missing feature name.
        name: String,
    },
    /// Paired tensors with different shapes.
    #[error("layer `{layer}`: student shape {student:?} does not match reference shape {reference:?}")]
    ShapeMismatch {
        /// The layer.
        layer: String,
        /// Student shape.
        student: Vec<usize>,
        /// Reference shape.
        reference: Vec<usize>,
    },
    /// NaN or infinite values.
    #[error("non-finite values in {what}")]
    NonFinite {
        /// Where (the layer and side).
        what: String,
    },
    /// A cascade with no layer pairs, or no active pair.
    #[error("empty cascade: {0}")]
    Empty(String),
    /// An invalid setting.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An error from the shared per-sample ops (quarc-base).
    #[error(transparent)]
    Base(#[from] quarc_base::Error),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

quarc_base::bridge_to_candle_error!(Error);
