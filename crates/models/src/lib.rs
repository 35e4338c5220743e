//! # quarc-models
//!
//! Bring your own candle model: [`ModelBuilder`] builds one model definition (written against
//! [`Layers`]) as the full-precision model or as its quantized twin with the same parameter
//! names, applies the first/last-layer policy from the build order and per-layer overrides by
//! name pattern; [`checkpoint::transfer`] deep-copies FP weights into the twin; [`Model::calibrate`]
//! initialises every quantizer with one forward pass and reports it. The crate's README (a user's
//! residual CNN trained in a plain loop) runs as a doc-test.
//!
//! quarc's own models are built the same way, with seeded initialisation (candle's CPU RNG
//! cannot be seeded), named feature taps for scorers and correction losses, block-wise forwards
//! for the ResNets, and checkpoints.
//!
//! - [`SmallCnn`] (Fashion-MNIST), [`ResNet::resnet20`] and [`ResNet::resnet18`] (CIFAR),
//!   [`MobileNetV2`] with a width multiplier.
//! - Build with `qat = None` for full precision, `Some(QatConfig)` for the quantized twin: the
//!   same parameter names, so [`checkpoint::load`] moves FP weights into the twin.
//! - [`Model::forward_mode`] runs in train, eval or calibrate mode; every model also implements
//!   quant-core's `FeatureModule` and candle's `ModuleT`.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use candle_nn::VarMap;
//! use quarc_models::{Model, SmallCnn, checkpoint};
//! use quarc_quant_core::{FeatureModule, QatConfig};
//!
//! let dev = Device::Cpu;
//! let (fp_vars, q_vars) = (VarMap::new(), VarMap::new());
//! let fp = SmallCnn::new(&fp_vars, None, 10, /* seed */ 0, &dev)?;
//! let q = SmallCnn::new(&q_vars, Some(QatConfig::lsq(2, 2)?), 10, 1, &dev)?;
//! let path = std::env::temp_dir().join(format!("quarc-models-doc-{}.safetensors", std::process::id()));
//! checkpoint::save(&fp_vars, &path)?;
//! let report = checkpoint::load(&q_vars, &path)?;          // FP weights into the W2A2 twin
//! assert!(report.missing.iter().all(|n| n.contains(".wq.") || n.contains(".aq.")));
//! let x = Tensor::zeros((2, 1, 28, 28), candle_core::DType::F32, &dev)?;
//! q.calibrate(&x)?;                                       // quantizers from data, after loading
//! let out = q.forward_features(&x, false)?;
//! assert_eq!(out.logits.dims(), &[2, 10]);
//! assert_eq!(out.features.names().collect::<Vec<_>>(), ["conv1", "conv2", "conv3", "pool"]);
//! # std::fs::remove_file(&path).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builder;
pub mod checkpoint;
mod conv_bn;
mod error;
mod init;
mod mobilenet_v2;
pub mod onnx;
mod resnet;
mod small_cnn;

pub use builder::{Built, ConvSpec, LayerInfo, LayerOverride, Layers, LinearSpec, ModelBuilder, name_matches};
pub use conv_bn::{Activation, ConvBn, Mode};
pub use error::{Error, Result};
pub use init::{InitScheme, Initializer};
pub use mobilenet_v2::MobileNetV2;
pub use onnx::{OnnxGraph, OnnxSpec, ToOnnx, export_onnx};
/// candle and the QAT types of this crate's signatures, so that one dependency is enough.
pub use quarc_quant_core::{
    Calibration, CalibrationReport, FeatureMap, LayerPosition, ModelOutput, QConv2d, QLinear, QatConfig, candle_core,
    candle_nn,
};
pub use resnet::{ResNet, ResNetSpec, ShortcutKind};
pub use small_cnn::SmallCnn;

use candle_core::Tensor;

/// The README example (a user's model, its twin, calibration and a plain training loop),
/// compiled and run as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctest;

/// A model the trainer and the scorers can drive: quarc's built-in models and yours.
///
/// Object safe. Implement [`Model::forward_mode`] (and [`Model::calibration`] when you keep the
/// switch of [`Layers::calibration`] yourself; a model wrapped in [`Built`] has it already).
pub trait Model: Send + Sync {
    /// Forward pass in the given mode, with the model's named features.
    fn forward_mode(&self, x: &Tensor, mode: Mode) -> Result<ModelOutput>;

    /// The calibration switch the model's quantized layers registered with (`None`: the model
    /// has no quantized layers built through [`ModelBuilder`]).
    fn calibration(&self) -> Option<&Calibration> {
        None
    }

    /// Initialises every quantizer from its own input with one forward pass over batch `x` in
    /// [`Mode::Calibrate`] (BatchNorm uses the batch's statistics and takes one running-statistics
    /// step). Call it after loading weights and before the first scoring pass. Returns what was
    /// calibrated; a quantized layer the pass did not reach is an error naming it.
    fn calibrate(&self, x: &Tensor) -> Result<CalibrationReport> {
        match self.calibration() {
            Some(c) => c.run(|| self.forward_mode(x, Mode::Calibrate)),
            None => Err(Error::InvalidConfig(
                "this model has no calibration switch: build it with `ModelBuilder` and return \
                 `Layers::calibration()` from `Model::calibration`, or use the `Built` wrapper"
                    .into(),
            )),
        }
    }

    /// The quantized layers as integers (codes, scales, BatchNorm as an output affine), in
    /// model order; full-precision layers are left out (they are in the checkpoint). Empty by
    /// default.
    fn export(&self) -> Result<quarc_quant_core::export::IntegerExport> {
        Ok(quarc_quant_core::export::IntegerExport {
            layers: Vec::new(),
            config: None,
        })
    }
}

/// Exports the quantized ones of `layers` and the classifier.
pub(crate) fn export_layers<'a>(
    layers: impl IntoIterator<Item = (String, &'a ConvBn)>,
    fc: &quarc_quant_core::QLinear,
) -> Result<quarc_quant_core::export::IntegerExport> {
    let mut out = Vec::new();
    for (name, l) in layers {
        out.extend(l.export(&name)?);
    }
    if fc.weight_quantizer().qparams()?.is_some() {
        out.push(quarc_quant_core::export::export_linear("fc", fc)?);
    }
    Ok(quarc_quant_core::export::IntegerExport {
        layers: out,
        config: None,
    })
}

pub(crate) fn check_classes(n: usize) -> Result<()> {
    if n < 2 {
        return Err(Error::InvalidConfig(format!(
            "a classifier needs at least 2 classes, got {n}"
        )));
    }
    Ok(())
}

/// Implements quant-core's `FeatureModule` and candle's `ModuleT` through [`Model::forward_mode`].
#[macro_export]
#[doc(hidden)]
macro_rules! impl_feature_module {
    ($t:ty) => {
        impl quarc_quant_core::FeatureModule for $t {
            fn forward_features(
                &self,
                xs: &candle_core::Tensor,
                train: bool,
            ) -> candle_core::Result<quarc_quant_core::ModelOutput> {
                Ok($crate::Model::forward_mode(
                    self,
                    xs,
                    $crate::Mode::from_train(train),
                )?)
            }
        }
        impl candle_core::ModuleT for $t {
            fn forward_t(&self, xs: &candle_core::Tensor, train: bool) -> candle_core::Result<candle_core::Tensor> {
                Ok($crate::Model::forward_mode(self, xs, $crate::Mode::from_train(train))?.logits)
            }
        }
    };
}
