//! # quarc-train
//!
//! The reference QAT loop, composed from quarc's crates exactly as a user's own loop would be:
//!
//! 1. a full-precision reference trained on all data (or loaded from its checkpoint);
//! 2. the quantized twin initialised from it and calibrated before the first scoring pass;
//! 3. at each scheduled epoch a scoring pass in eval mode with deterministic preprocessing,
//!    streamed in batches, and a selection (`quarc-coreset`);
//! 4. an epoch on the coreset with `kd·KD + ce·CE + CLC` (`quarc-correction`), SGD or AdamW with
//!    parameter groups and a per-epoch LR schedule;
//! 5. test accuracy every epoch, a JSONL log, the selected indices, an SVG plot, atomic
//!    per-epoch checkpoints (weights, optimiser, coreset) from which a stopped run resumes
//!    bit-identically, and the final checkpoint plus integer export.
//!
//! ```no_run
//! use std::sync::Arc;
//! use quarc_data::{fashion_mnist, Normalize, Split};
//! use quarc_train::{Experiment, Method, TrainConfig};
//! let exp = Experiment {
//!     // The defaults train on RS2; `Method::Acs` is the best scored coreset (ACS + CCS, 10× pool).
//!     config: TrainConfig { method: Method::Acs, fraction: 0.1, epochs: 20, ..TrainConfig::default() },
//!     train: Arc::new(fashion_mnist::bundled_subset(Split::Train)?),
//!     test: Arc::new(fashion_mnist::bundled_subset(Split::Test)?),
//!     normalize: Some(Normalize::fashion_mnist()),
//!     run_dir: "runs/acs".into(),
//!     device: candle_core::Device::Cpu,
//!     verbose: true,
//!     noise: None,
//!     custom: Default::default(),
//! };
//! let summary = exp.run()?;
//! println!("{:.2}%", 100.0 * summary.final_accuracy);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod method;
mod optim;
pub mod report;
mod schedule;
mod trainer;

pub use config::{ClcConfig, ClcLoss, Method, ModelKind, ObjectiveConfig, ReferenceConfig, SelectorKind, TrainConfig};
pub use error::{Error, Result};
pub use method::{build_coreset, coreset_config};
pub use optim::{GroupPolicy, Optimizer, OptimizerConfig, ParamGroup};
/// candle, as this crate's signatures use it.
pub use quarc_quant_core::{candle_core, candle_nn};
pub use schedule::{LrPlan, LrSchedule};
pub use trainer::{
    BuiltIn, CoresetFactory, Custom, EpochLosses, EpochParts, Experiment, LogitCache, MAX_PROXY_RUNS, ModelFactory,
    ProxyConfig, ProxyScores, RunDir, RunSummary, SelectionOutcome, accuracy, select_if_due, train_epoch,
};
