//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `quarc-models`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An invalid architecture setting (width multiplier, class count, …).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A checkpoint tensor whose shape differs from the model's.
    #[error("checkpoint {path:?}: `{name}` has shape {file:?}, the model has {model:?}")]
    CheckpointShape {
        /// The file.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// Shape in the file.
        file: Vec<usize>,
        /// Shape in the model.
        model: Vec<usize>,
    },
    /// A variable whose shape differs between the two models of a weight transfer.
    #[error("weight transfer: `{name}` has shape {from:?} in the source, {to:?} in the target")]
    TransferShape {
        /// The variable name.
        name: String,
        /// Shape in the source.
        from: Vec<usize>,
        /// Shape in the target.
        to: Vec<usize>,
    },
    /// A checkpoint that cannot be read.
    #[error("checkpoint {path:?}: {reason}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An error from quant-core.
    #[error(transparent)]
    Quant(#[from] quarc_quant_core::Error),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

quarc_quant_core::bridge_to_candle_error!(Error);
