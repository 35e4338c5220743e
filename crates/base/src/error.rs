//! The crate's error type, and the bridge into candle's.

use std::path::PathBuf;

/// Everything that can go wrong in `quarc-base`.
///
/// Converts from [`candle_core::Error`] (so `?` works on candle calls) and into it (so `?` works
/// inside a user's `candle_core::Result` function).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
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
    /// An unsupported dtype.
    #[error("unsupported dtype {dtype:?} in {context}")]
    UnsupportedDType {
        /// The dtype found.
        dtype: candle_core::DType,
        /// Where.
        context: String,
    },
    /// A value that is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An input that is empty where data is required.
    #[error("empty input: {0}")]
    Empty(String),
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

impl Error {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Error::InvalidConfig(msg.into())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Implements `From<$error> for candle_core::Error` for an error enum with a `Candle` variant:
/// the candle error comes back unwrapped, any other is wrapped, so `?` works inside a user's
/// `candle_core::Result` function. Every quarc crate's `Error` uses it.
#[macro_export]
macro_rules! bridge_to_candle_error {
    ($error:ident) => {
        impl From<$error> for candle_core::Error {
            fn from(e: $error) -> Self {
                match e {
                    $error::Candle(c) => c,
                    other => candle_core::Error::wrap(other),
                }
            }
        }
    };
}

bridge_to_candle_error!(Error);
