//! # quarc-coreset
//!
//! Coreset selection for quantization-aware training, usable inside any candle training loop:
//! choose the 1–10 % of the data that carries the quantization error, re-select as training
//! goes on, and train on that subset.
//!
//! - [`Scorer`]: per-sample importance, keyed by dataset index. Built-ins: [`ErrorVector`]
//!   (EVS), [`Disagreement`] (DS), [`RelativeEntropy`] (QuaRC's RES), the combinators
//!   [`Annealed`] (ACS: `β(t)·EVS + (1 − β(t))·DS`) and [`WeightedSum`] (QuaRC: ACS + λ·RES),
//!   and baselines [`RandomScore`], [`Loss`], [`El2n`], [`Entropy`], [`Margin`], [`Forgetting`],
//!   [`GradNormLastLayer`], [`Moderate`], and [`GivenScores`] (scores computed before training,
//!   e.g. by full-precision proxy runs; selected without a forward pass).
//! - [`Selector`]: [`TopK`], [`ClassBalanced`] (wraps any selector), [`Stratified`] (CCS),
//!   [`RandomSelector`]; deterministic tie-break by ascending index.
//! - [`ScoreTable`] (streaming, any batch order, shard merge, safetensors), [`SelectionSchedule`]
//!   (every R epochs or one-shot) and the [`Coreset`] orchestrator.
//!
//! Formulas and defaults follow the ACS paper and code and the QuaRC reports; where they
//! disagree (β schedule, RES direction) each reading is an option with the recommended default.
//!
//! ## The ACS loop with a toy candle model
//! Everything below comes from this crate (which re-exports [`candle_core`], [`ModelOutput`],
//! [`Progress`] and [`SplitMix64`]) and candle-nn; the student here is a plain linear layer,
//! in a QAT loop it is the quantized twin.
//! ```
//! use candle_core::{Device, Module, Tensor, Var};
//! use candle_nn::{Linear, Optimizer};
//! use quarc_coreset::*;
//!
//! let dev = Device::Cpu;
//! // 300 samples, 8 features, 3 classes, from a seeded stream.
//! let mut rng = SplitMix64::new(0);
//! let xs: Vec<f32> = (0..300 * 8).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect();
//! let x_all = Tensor::from_vec(xs, (300, 8), &dev)?;
//! let labels: Vec<u32> = (0..300).map(|i| (i % 3) as u32).collect();
//! let y_all = Tensor::new(labels.as_slice(), &dev)?;
//!
//! // A frozen reference and a student that starts from a copy of its weights.
//! let w = Tensor::from_vec((0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0).collect::<Vec<_>>(), (3, 8), &dev)?;
//! let reference = Linear::new(w.clone(), None);
//! let w_student = Var::from_tensor(&(w.copy()? * 0.9)?)?;
//! let student = Linear::new(w_student.as_tensor().clone(), None);
//!
//! let mut coreset = Coreset::new(
//!     Box::new(Annealed::acs()),                   // EVS → DS, β(t) = cos(πt/2E)
//!     Box::new(ClassBalanced::new(TopK::highest())),
//!     SelectionSchedule::every(2)?,                // R = 2
//!     Budget::Fraction(0.1),
//!     labels.clone(), 3, /* seed */ 42,
//! )?;
//! let mut opt = candle_nn::SGD::new(vec![w_student.clone()], 0.05)?;
//! let epochs = 4;
//! for epoch in 0..epochs {
//!     let progress = Progress::new(epoch, epochs);
//!     if coreset.needs_scoring(epoch) {
//!         coreset.begin_scoring(progress)?;
//!         for start in (0..300).step_by(100) {                 // the full data set, eval mode
//!             let idx: Vec<usize> = (start..start + 100).collect();
//!             let x = x_all.narrow(0, start, 100)?;
//!             let s = ModelOutput::logits_only(student.forward(&x)?);
//!             let r = ModelOutput::logits_only(reference.forward(&x)?);
//!             let y = y_all.narrow(0, start, 100)?;
//!             coreset.feed(&ScoreInput { indices: &idx, labels: &y, student: &s, reference: Some(&r) })?;
//!         }
//!         coreset.select()?;
//!     }
//!     // Train one epoch on the subset (here: one batch).
//!     let subset: Vec<u32> = coreset.current().unwrap().indices.iter().map(|&i| i as u32).collect();
//!     let ids = Tensor::new(subset.as_slice(), &dev)?;
//!     let (x, y) = (x_all.index_select(&ids, 0)?, y_all.index_select(&ids, 0)?);
//!     let loss = candle_nn::loss::cross_entropy(&student.forward(&x)?, &y)?;
//!     opt.backward_step(&loss)?;
//! }
//! let h = coreset.history();
//! assert_eq!(h.len(), 2);                                   // epochs 0 and 2
//! assert_eq!(h[0].size, 30);                                 // 10 % of each class of 100
//! assert_eq!(h[0].mixing_weights[0], ("beta".to_string(), 1.0)); // EVS only at t = 0
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod coreset;
mod diagnostics;
mod error;
mod input;
mod pool;
mod schedule;
pub mod scorer;
pub mod selector;
mod state;
mod table;

pub use config::{
    CCS_BINS, CCS_PRUNE_FRACTION, CoresetConfig, MAX_BINS, PRESETS, RECOMMENDED_PRESET, ScheduleConfig, ScorerConfig,
    SelectorConfig, WeightedPart,
};
pub use coreset::{Coreset, SelectionRecord};
pub use diagnostics::NoiseDiagnostics;
pub use error::{Error, Result};
pub use input::{Needs, ScoreInput};
pub use pool::CandidatePool;
/// The shared types of this crate's signatures, and candle itself, so that one dependency is enough.
pub use quarc_base::{FeatureMap, ModelOutput, Progress, SplitMix64, candle_core};
pub use schedule::SelectionSchedule;
pub use scorer::{
    Annealed, BetaSchedule, Disagreement, Divergence, El2n, Entropy, ErrorVector, Forgetting, GivenScores,
    GradNormLastLayer, Loss, Margin, ModelSource, Moderate, Normalization, RandomScore, RelativeEntropy, Scorer,
    WeightedSum,
};
pub use selector::{
    Budget, ClassBalanced, Direction, RandomSelector, Rs2, SelectContext, Selection, Selector, Stratified, TopK,
};
pub use state::StateRecord;
pub use table::ScoreTable;

/// The README example, compiled and run as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctest;
