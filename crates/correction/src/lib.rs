//! # quarc-correction
//!
//! Layer-alignment losses for quantization-aware training with candle: distillation on logits,
//! feature alignment, and QuaRC's Cascaded Layer Correction (CLC), which aligns the quantized
//! model's intermediate outputs with the full-precision model's so that quantization error
//! cannot pile up layer after layer when training on 1 % of the data.
//!
//! - [`AlignmentLoss`] (per sample `(B,)`, batch mean provided): [`Distillation`] (KL or soft
//!   CE, temperature, T², optional hard-label CE), [`Mse`], [`NormalizedMse`],
//!   [`CosineDistance`], [`FeatureKl`] (softmax over channels after GAP, the flattened map, or
//!   per channel over space; either direction).
//! - [`Cascade`]: named [`LayerPair`]s, per-layer weights, global β, a per-layer report, and
//!   the modes [`CascadeMode::NaturalForward`], [`CascadeMode::ReferenceInputs`] and
//!   [`CascadeMode::Progressive`].
//!
//! The exact CLC of the QuaRC paper is not public; every reading listed in the repository's
//! docs/methods.md is an option here, the recommended one the default.
//!
//! ## The QuaRC objective `KD + β·CLC` in a user's loop
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::{Optimizer, VarMap};
//! use quarc_correction::*;
//! // The quantized layers come from quarc-quant-core; everything else from this crate.
//! use quarc_quant_core::{LayerPosition, ParamStore, QLinear, QatConfig, QuantizerConfig};
//!
//! let dev = Device::Cpu;
//! let x = Tensor::rand(-1f32, 1.0, (16, 6), &dev)?;
//! // Full-precision reference: two linear blocks; the student is its W2 twin.
//! let (w1, w2) = (Tensor::rand(-0.5f32, 0.5, (8, 6), &dev)?, Tensor::rand(-0.5f32, 0.5, (4, 8), &dev)?);
//! let (f1, f2) = (candle_nn::Linear::new(w1.clone(), None), candle_nn::Linear::new(w2.clone(), None));
//! let varmap = VarMap::new();
//! varmap.data().lock().unwrap().insert("b1.weight".into(), candle_core::Var::from_tensor(&w1)?);
//! varmap.data().lock().unwrap().insert("b2.weight".into(), candle_core::Var::from_tensor(&w2)?);
//! let store = ParamStore::new(&varmap, DType::F32, &dev);
//! let q = QatConfig { activation: QuantizerConfig::Identity, ..QatConfig::lsq(2, 2)? };
//! let (q1, q2) = (QLinear::new(6, 8, false, &q.layer(LayerPosition::Middle), &store.pp("b1"))?,
//!                 QLinear::new(8, 4, false, &q.layer(LayerPosition::Middle), &store.pp("b2"))?);
//! q1.calibrate(&x)?;
//! q2.calibrate(&f1.forward(&x)?.relu()?)?;
//!
//! let forward_fp = |x: &Tensor| -> candle_core::Result<ModelOutput> {
//!     let h = f1.forward(x)?.relu()?;
//!     let mut features = FeatureMap::new();
//!     features.insert("block1", h.clone());
//!     Ok(ModelOutput { logits: f2.forward(&h)?, features })
//! };
//! let forward_q = |x: &Tensor| -> candle_core::Result<ModelOutput> {
//!     let h = q1.forward_t(x, true)?.relu()?;
//!     let mut features = FeatureMap::new();
//!     features.insert("block1", h.clone());
//!     Ok(ModelOutput { logits: q2.forward_t(&h, true)?, features })
//! };
//!
//! let kd = Distillation::default();                          // T = 1, KL(p_F ‖ p_Q)
//! let clc = Cascade::new(vec![LayerPair::same("block1")], Box::new(FeatureKl::default()), 10.0)?;
//! let mut opt = candle_nn::SGD::new(varmap.all_vars(), 0.05)?;
//! for step in 0..3 {
//!     let reference = forward_fp(&x)?.detach();              // no gradient into the FP model
//!     let student = forward_q(&x)?;
//!     let correction = clc.loss(&student, &reference, &Progress::new(0, 1))?;
//!     let loss = (kd.forward(&student.logits, &reference.logits)? + &correction.total)?;
//!     let per_layer = correction.values()?;                  // raw CLC magnitudes, to choose β
//!     assert_eq!(per_layer[0].0, "block1");
//!     opt.backward_step(&loss)?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cascade;
mod error;
pub mod loss;

pub use cascade::{Cascade, CascadeMode, CascadeReport, LayerLoss, LayerPair};
pub use error::{Error, Result};
pub use loss::{
    AlignmentLoss, CosineDistance, Distillation, FeatureKl, KdForm, KlDirection, Mse, NormalizedMse, SoftmaxAxis,
};
/// The shared types of this crate's signatures, and candle itself, so that one dependency is enough.
pub use quarc_base::{BlockwiseModule, FeatureMap, ModelOutput, Progress, candle_core};

/// The README example, compiled and run as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctest;
