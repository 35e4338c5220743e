//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `quarc-quant-core`.
///
/// Converts from [`candle_core::Error`] (so `?` works on candle calls) and into it (so `?` works
/// inside a user's `candle_core::Result` function).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bit width outside what the quantizer supports.
    #[error("unsupported bit width {bits}: quantizers support 2 to 8 bits")]
    InvalidBits {
        /// The bit width that was asked for.
        bits: u32,
    },
    /// A quantizer was used for a forward pass before its parameters were initialised.
    #[error(
        "quantizer `{quantizer}` is not calibrated: call `calibrate` on a batch first (or enable first-batch init)"
    )]
    NotCalibrated {
        /// Which quantizer (its kind and, where known, its name).
        quantizer: String,
    },
    /// Quantized layers that a calibration pass did not reach (see [`crate::Calibration`]).
    #[error(
        "{} quantized layer(s) were not reached by the calibration forward pass and stay uncalibrated: {}",
        .layers.len(), .layers.join(", ")
    )]
    Uncalibrated {
        /// The layers' names, in construction order.
        layers: Vec<String>,
    },
    /// An unsigned activation quantizer (codes from 0) was calibrated on inputs with negative
    /// values, which it would clip to 0.
    #[error(
        "layer `{layer}`: its input quantizer is unsigned but the calibration input reaches {min}; \
         negative inputs would be clipped to 0 — give this layer a signed input quantizer \
         (`QuantizerConfig::with_signedness`, or the model builder's `signed_input`)"
    )]
    NegativeInput {
        /// The layer.
        layer: String,
        /// The smallest input value seen.
        min: f32,
    },
    /// A tensor held NaN (or, where stated, infinite) values.
    #[error("non-finite values in {what}")]
    NonFinite {
        /// What held them.
        what: String,
    },
    /// Two shapes that must agree do not.
    #[error("shape mismatch in {context}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Where the shapes were compared.
        context: String,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// A per-channel axis that the tensor does not have.
    #[error("axis {axis} is out of range for a tensor of rank {rank}")]
    InvalidAxis {
        /// The axis asked for.
        axis: usize,
        /// The tensor's rank.
        rank: usize,
    },
    /// An unsupported dtype.
    #[error("unsupported dtype {dtype:?} in {context}")]
    UnsupportedDType {
        /// The dtype found.
        dtype: candle_core::DType,
        /// Where.
        context: String,
    },
    /// A configuration value that is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An input that is empty where data is required.
    #[error("empty input: {0}")]
    Empty(String),
    /// Trainable variables that received no gradient after `backward`.
    #[error("{} trainable variable(s) received no gradient: {}", .names.len(), .names.join(", "))]
    NoGradient {
        /// The names of the variables without a gradient, sorted.
        names: Vec<String>,
    },
    /// An integer-export file that is malformed.
    #[error("corrupt integer export {path:?}: {reason}")]
    CorruptExport {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O failure, with the file involved.
    #[error("i/o error on {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

quarc_base::bridge_to_candle_error!(Error);

/// The shared ops' errors map onto the variants of the same name.
impl From<quarc_base::Error> for Error {
    fn from(e: quarc_base::Error) -> Self {
        use quarc_base::Error as B;
        match e {
            B::ShapeMismatch { context, expected, got } => Error::ShapeMismatch { context, expected, got },
            B::UnsupportedDType { dtype, context } => Error::UnsupportedDType { dtype, context },
            B::InvalidConfig(m) => Error::InvalidConfig(m),
            B::Empty(m) => Error::Empty(m),
            B::Io { path, source } => Error::Io { path, source },
            B::Candle(c) => Error::Candle(c),
            other => Error::InvalidConfig(other.to_string()),
        }
    }
}

impl Error {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Error::InvalidConfig(msg.into())
    }
}
