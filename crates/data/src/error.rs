//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `quarc-data`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A data file that is truncated, has a wrong magic number or inconsistent sizes.
    #[error("corrupt data file {path:?}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A data set that is not where it was looked for.
    #[error("{what} not found; looked in: {looked:?}. {hint}")]
    NotFound {
        /// What was looked for.
        what: String,
        /// The places tried.
        looked: Vec<PathBuf>,
        /// How to get it.
        hint: String,
    },
    /// An I/O failure.
    #[error("i/o error on {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An index at or beyond the data set size.
    #[error("index {index} is out of range for a data set of {len} samples")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// The size.
        len: usize,
    },
    /// A label at or above the number of classes.
    #[error("label {label} of sample {index} is out of range for {num_classes} classes")]
    LabelOutOfRange {
        /// The label.
        label: u32,
        /// The sample.
        index: usize,
        /// Classes.
        num_classes: usize,
    },
    /// An invalid setting (batch size 0, bad normalisation, …).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An empty data set or selection where samples are needed.
    #[error("empty: {0}")]
    Empty(String),
    /// An error from candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

quarc_base::bridge_to_candle_error!(Error);
