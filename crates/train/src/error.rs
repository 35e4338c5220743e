//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in `quarc-train`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value out of range or inconsistent; checked before any work starts.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A run directory or checkpoint that cannot be used.
    #[error("{path:?}: {reason}")]
    Run {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process has the run directory open (its advisory lock is held).
    #[error("run directory {path:?} is in use by another process: {holder}")]
    Locked {
        /// The run directory.
        path: PathBuf,
        /// What the lock file says about the holder (its process id).
        holder: String,
    },
    /// An I/O failure.
    #[error("i/o error on {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// From quant-core.
    #[error(transparent)]
    Quant(#[from] quarc_quant_core::Error),
    /// An error from the shared ops (quarc-base): file writes, per-sample functions.
    #[error(transparent)]
    Base(#[from] quarc_base::Error),
    /// From the coreset crate.
    #[error(transparent)]
    Coreset(#[from] quarc_coreset::Error),
    /// From the correction crate.
    #[error(transparent)]
    Correction(#[from] quarc_correction::Error),
    /// From the data crate.
    #[error(transparent)]
    Data(#[from] quarc_data::Error),
    /// From the models crate.
    #[error(transparent)]
    Models(#[from] quarc_models::Error),
    /// From candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A closure that turns an I/O error on `path` into [`Error::Io`], for `map_err`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
