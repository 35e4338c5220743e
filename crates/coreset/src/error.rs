//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `quarc-coreset`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A budget fraction outside (0, 1] or a count above the data set size.
    #[error("invalid budget: {0}")]
    InvalidBudget(String),
    /// No samples to score or select from.
    #[error("empty input: {0}")]
    Empty(String),
    /// A scorer needs something the caller did not provide.
    #[error("scorer `{scorer}` needs {what}, but the score input has none")]
    MissingInput {
        /// The scorer's name.
        scorer: String,
        /// What it needs (the reference outputs, a feature, labels).
        what: String,
    },
    /// A dataset index at or beyond the data set size.
    #[error("dataset index {index} is out of range for {num_samples} samples")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// The data set size.
        num_samples: usize,
    },
    /// A sample fed to a pass that scores a candidate pool it is not part of.
    #[error("sample {index} is not in this pass's candidate pool (feed `Coreset::scoring_indices` only)")]
    NotInPool {
        /// The index.
        index: usize,
    },
    /// A sample scored twice in one pass (or present in two merged shards).
    #[error("sample {index} was scored twice in one pass")]
    DuplicateIndex {
        /// The index.
        index: usize,
    },
    /// A selection that lists one sample twice.
    #[error("sample {index} appears twice in the selection")]
    DuplicateSelection {
        /// The index.
        index: usize,
    },
    /// Samples never scored in a pass that was declared complete.
    #[error("{count} sample(s) were not scored in this pass (first: {first:?})")]
    MissingScores {
        /// How many.
        count: usize,
        /// The first few missing indices.
        first: Vec<usize>,
    },
    /// A NaN or infinite score, logit or feature.
    #[error("non-finite value in {what}")]
    NonFinite {
        /// Where, with the sample index when known.
        what: String,
    },
    /// A label at or above the number of classes.
    #[error("label {label} of sample {index} is out of range for {num_classes} classes")]
    LabelOutOfRange {
        /// The label.
        label: u32,
        /// The sample's dataset index.
        index: usize,
        /// The number of classes.
        num_classes: usize,
    },
    /// Shapes that must agree do not.
    #[error("shape mismatch in {context}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// Where.
        context: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Actual shape.
        got: Vec<usize>,
    },
    /// A configuration value out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A saved score table or scorer state that is malformed.
    #[error("corrupt file {path:?}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `select` was called with no scoring pass in progress or completed.
    #[error("no scores to select from: call `begin_scoring` and feed a full pass first")]
    NoScores,
    /// An I/O failure.
    #[error("i/o error on {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
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
