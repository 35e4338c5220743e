//! # quarc-quant-core
//!
//! Quantization-aware training (QAT) building blocks for [candle](https://docs.rs/candle-core):
//!
//! - **Quantizers** ([`Quantizer`]): [`Lsq`], [`LsqPlus`], [`Pact`], [`Uniform`] with
//!   [`MinMaxObserver`] / [`EmaMinMaxObserver`], and [`Identity`]; 2 to 8 bits, per tensor or
//!   per channel, configured by the serializable [`QuantizerConfig`].
//! - **STE ops** ([`lsq_fake_quant`], [`lsq_plus_fake_quant`], [`pact_fake_quant`],
//!   [`fake_quant`]): fused one-pass CPU kernels with closed-form backward, and composed twins
//!   in [`reference`](mod@reference) that run on CUDA and Metal. Rounding is half to even everywhere
//!   ([`round_half_even`]).
//! - **Quantized layers** [`QConv2d`], [`QLinear`] and the model-level [`QatConfig`]
//!   (first/last-layer policy).
//! - **Integer export** ([`export`]): packed codes, scales and offsets in safetensors,
//!   written atomically, loaded back bit-exact; BatchNorm folding.
//! - **A gradient guard** ([`check_gradients`]) for candle's silent graph cuts.
//! - **Shared types** for the other quarc crates: [`ModelOutput`], [`FeatureMap`],
//!   [`FeatureModule`], [`Progress`] and per-sample [`functional`] ops.
//!
//! ## Example: a 2-bit conv, a few steps of step-size training, an integer export
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{Conv2dConfig, Optimizer, VarMap};
//! use quarc_quant_core::{export, LayerPosition, ParamStore, QConv2d, QatConfig};
//!
//! let dev = Device::Cpu;
//! let varmap = VarMap::new();
//! let store = ParamStore::new(&varmap, DType::F32, &dev);
//! let qat = QatConfig::lsq(2, 2)?; // W2A2 LSQ
//! let conv = QConv2d::new(4, 8, 3, Conv2dConfig { padding: 1, ..Default::default() }, true,
//!                         &qat.layer(LayerPosition::Middle), &store.pp("conv"))?;
//! let x = Tensor::rand(0f32, 1.0, (8, 4, 6, 6), &dev)?;
//! let target = Tensor::rand(-1f32, 1.0, (8, 8, 6, 6), &dev)?;
//! conv.calibrate(&x)?; // LSQ init: s = 2·mean|x|/√Qp
//!
//! let step = varmap.data().lock().unwrap()["conv.wq.step"].clone();
//! let before = step.as_tensor().to_vec1::<f32>()?[0];
//! let mut sgd = candle_nn::SGD::new(varmap.all_vars(), 0.01)?;
//! for _ in 0..5 {
//!     let loss = (conv.forward_t(&x, true)? - &target)?.sqr()?.mean_all()?;
//!     let grads = loss.backward()?;
//!     quarc_quant_core::check_gradients(&varmap, &grads)?; // every parameter got a gradient
//!     sgd.step(&grads)?;
//! }
//! assert_ne!(step.as_tensor().to_vec1::<f32>()?[0], before); // the step size learned
//!
//! let path = std::env::temp_dir().join(format!("quarc-doc-{}.safetensors", std::process::id()));
//! let exported = export::IntegerExport { layers: vec![export::export_conv2d("conv", &conv, None)?], config: Some(qat) };
//! exported.save(&path)?;
//! let loaded = export::IntegerExport::load(&path)?;
//! let w = loaded.layer("conv").unwrap().dequantized_weight(&dev)?;
//! let fake = conv.quantized_weight(false)?;
//! assert_eq!(w.flatten_all()?.to_vec1::<f32>()?, fake.flatten_all()?.to_vec1::<f32>()?); // bit for bit
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Devices
//! Everything runs on CPU, CUDA and Metal: the fused kernels are used on CPU for f32/f64 and
//! the composed candle ops elsewhere ([`Backend`]). Enable the crate features `cuda`, `metal`,
//! `mkl` or `accelerate` to forward them to candle.

pub mod error;
pub mod export;
mod guard;
pub mod nn;
pub mod observer;
mod param_store;
pub mod quantizer;
mod range;
mod rounding;
pub mod ste;

pub use error::{Error, Result};
pub use export::fold_batch_norm;
pub use guard::{BUFFER_SUFFIXES, GradientReport, check_gradients, is_buffer};
pub use nn::{
    CalibratedLayer, Calibration, CalibrationReport, LayerPolicy, LayerPosition, LayerQuant, QConv2d, QLinear,
    QatConfig, conv2d_with_bias,
};
pub use observer::{EmaMinMaxObserver, MinMaxObserver, Observer};
pub use param_store::ParamStore;
pub use quantizer::{
    FusableLsq, GradScaleMode, Identity, InitMode, Lsq, LsqConfig, LsqPlus, LsqPlusConfig, Mode, ObserverKind, Pact,
    PactConfig, PactInit, QParams, Quantizer, QuantizerConfig, Role, Uniform, UniformConfig,
};
/// The shared types and per-sample ops live in `quarc-base`; re-exported here so that one
/// dependency is enough for a QAT loop.
pub use quarc_base::{
    BlockwiseModule, FeatureMap, FeatureModule, LogitsOnly, ModelOutput, Progress, SplitMix64, atomic_write,
    bridge_to_candle_error, functional, is_temp_file_name, mix, sync_dir,
};
pub use range::{MAX_BITS, MIN_BITS, QRange, Signedness, validate_bits};
pub use rounding::round_half_even;
pub use ste::{
    Backend, Granularity, LsqOptions, STEP_EPS, fake_quant, lsq_fake_quant, lsq_grad_scale, lsq_plus_fake_quant,
    pact_fake_quant, reference,
};
/// The candle crates of quant-core's public signatures, re-exported so that a user's candle is
/// the same version.
pub use {candle_core, candle_nn};

/// The README example, compiled and run as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctest;
