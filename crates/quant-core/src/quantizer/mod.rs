//! Fake quantizers: the [`Quantizer`] trait, the built-ins (one file each) and their
//! serializable configuration.

mod base;
mod config;
mod identity;
mod lsq;
mod lsq_plus;
mod pact;
pub(crate) mod stats;
mod uniform;

pub use base::{FusableLsq, QParams, Quantizer, Role};
pub use config::QuantizerConfig;
pub use identity::Identity;
pub use lsq::{Lsq, LsqConfig};
pub use lsq_plus::{LsqPlus, LsqPlusConfig};
pub use pact::{Pact, PactConfig, PactInit};
pub use uniform::{Mode, ObserverKind, Uniform, UniformConfig};

use serde::{Deserialize, Serialize};

/// How `N` is counted in LSQ's gradient scale `g = 1/√(N·Qp)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradScaleMode {
    /// The LSQ paper: elements sharing a step, per sample for activations (batch excluded);
    /// all elements sharing the step for weights.
    #[default]
    PerSample,
    /// The ACS code: activations count the batch too (`x.numel()`).
    IncludeBatch,
    /// No scaling (`g = 1`).
    Off,
}

/// When a quantizer's parameters are initialised from data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitMode {
    /// Only by an explicit [`Quantizer::calibrate`] (or a loaded checkpoint); a forward pass
    /// before that is [`crate::Error::NotCalibrated`].
    #[default]
    Explicit,
    /// On the first forward pass in training mode, from that batch.
    FirstTrainBatch,
}
