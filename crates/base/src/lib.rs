//! # quarc-base
//!
//! The types and small ops that the quarc crates share, with no dependency beyond candle:
//!
//! - [`ModelOutput`] (logits plus a [`FeatureMap`] of named intermediate outputs), what models
//!   hand to coreset scorers and correction losses, and the [`FeatureModule`] / [`BlockwiseModule`]
//!   traits a model implements to produce it;
//! - [`Progress`], the epoch a scorer or loss schedule is at;
//! - [`SplitMix64`], the seeded random stream behind every random choice in quarc (the same seed
//!   gives the same stream on every machine and release);
//! - [`atomic_write`], the crash-safe file write every quarc file goes through;
//! - [`functional`]: numerically stable per-sample ops on logits (softmax, KL, entropy, the error
//!   vector and disagreement norms), with gradients;
//! - [`Error`] and [`bridge_to_candle_error!`], so `?` works between quarc and candle errors.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use quarc_base::{functional::kl_per_sample, ModelOutput, Progress, SplitMix64};
//!
//! let mut rng = SplitMix64::new(0);
//! let v: Vec<f32> = (0..8).map(|_| rng.next_f64() as f32).collect();
//! let student = ModelOutput::logits_only(Tensor::from_vec(v, (2, 4), &Device::Cpu)?);
//! let reference = Tensor::zeros((2, 4), candle_core::DType::F32, &Device::Cpu)?;
//! let kl = kl_per_sample(&student.logits, &reference, 1.0)?.to_vec1::<f32>()?;
//! assert!(kl.iter().all(|&d| d >= 0.0)); // a divergence per sample
//! assert_eq!(Progress::new(3, 10).epoch, 3);
//! # Ok::<(), quarc_base::Error>(())
//! ```

pub mod error;
pub mod functional;
mod io;
mod output;
mod rng;

pub use candle_core;
pub use error::{Error, Result};
pub use io::{atomic_write, is_temp_file_name, sync_dir};
pub use output::{BlockwiseModule, FeatureMap, FeatureModule, LogitsOnly, ModelOutput, Progress};
pub use rng::{SplitMix64, mix};
